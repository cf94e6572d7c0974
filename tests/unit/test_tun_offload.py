"""TUN offloads (lab.daemon.offload): TSO super-packets cut into segments, checksums completed,
in-order TCP segments coalesced, all checked against packets scapy builds and checksums."""
from __future__ import annotations

import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP, ICMP, IPOption_Router_Alert
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt
from scapy.packet import Raw

from lab.daemon.offload import (DATA_VALID, F_DATA_VALID, F_NEEDS_CSUM, GSO_ECN, GSO_NONE, GSO_TCPV4, GSO_TCPV6,
                                GSO_UDP_L4, VNET_HDR, VNET_HDR_LEN, OffloadError, coalesce, complete_checksum,
                                segment_tcp, split)

SRC4, DST4 = "10.1.0.10", "10.2.0.10"
SRC6, DST6 = "fd00:1::10", "fd00:2::10"
TIMESTAMPS = [("NOP", None), ("NOP", None), ("Timestamp", (123456, 654321))]


def ones_sum(data: bytes) -> int:
    """RFC 1071's one's-complement sum of 16-bit words, the slow obvious way."""
    if len(data) % 2:
        data += b"\0"
    s = 0
    for i in range(0, len(data), 2):
        s += data[i] << 8 | data[i + 1]
        s = (s & 0xFFFF) + (s >> 16)
    return s


def packet(version: int = 4, payload: bytes = b"", seq: int = 1000, flags: str = "A", ident: int = 7,
           ip_options: bool = False, tcp_options=(), ext_header: bool = False, tos: int = 0, ttl: int = 63,
           sport: int = 40000) -> bytes:
    """A TCP/IP packet as scapy builds it, lengths and checksums its own."""
    tcp = TCP(sport=sport, dport=5201, seq=seq, ack=99, flags=flags, window=501, options=list(tcp_options))
    if version == 4:
        ip = IP(src=SRC4, dst=DST4, id=ident, flags="DF", tos=tos, ttl=ttl,
                options=[IPOption_Router_Alert()] if ip_options else [])
    else:
        ip = IPv6(src=SRC6, dst=DST6, tc=tos, hlim=ttl, fl=0x12345)
        if ext_header:
            ip = ip / IPv6ExtHdrDestOpt()
    return bytes(ip / tcp / Raw(payload))


def l4_offset(raw: bytes) -> int:
    if raw[0] >> 4 == 4:
        return (raw[0] & 0x0F) * 4
    return len(raw) - len(bytes(IPv6(raw)[TCP])) if TCP in IPv6(raw) else len(raw) - len(bytes(IPv6(raw)[UDP]))


def pseudo_partial(raw: bytes, l4: int, proto: int) -> int:
    """The uncomplemented pseudo-header sum a NEEDS_CSUM packet carries in its checksum field."""
    length = len(raw) - l4
    if raw[0] >> 4 == 4:
        pseudo = raw[12:20] + bytes((0, proto)) + struct.pack("!H", length)
    else:
        pseudo = raw[8:40] + struct.pack("!IxxxB", length, proto)
    return ones_sum(pseudo)


def partial(raw: bytes, proto: int = 6) -> tuple[bytes, int]:
    """`raw` as the kernel hands it over with CHECKSUM_PARTIAL: (packet, transport offset)."""
    l4 = l4_offset(raw)
    at = l4 + (16 if proto == 6 else 6)
    out = bytearray(raw)
    out[at:at + 2] = struct.pack("!H", pseudo_partial(raw, l4, proto))
    return bytes(out), l4


def tso(raw: bytes, mss: int, ecn: bool = False) -> bytes:
    """A TUN read of a TCP super-packet: virtio_net_hdr (NEEDS_CSUM, TCPV4/6, gso_size) + packet."""
    body, l4 = partial(raw)
    gso = (GSO_TCPV4 if raw[0] >> 4 == 4 else GSO_TCPV6) | (GSO_ECN if ecn else 0)
    hl = l4 + (body[l4 + 12] >> 4) * 4
    return VNET_HDR.pack(F_NEEDS_CSUM, gso, hl, mss, l4, 16) + body


def rebuilt(raw: bytes) -> bytes:
    """scapy's own rendering of a packet with lengths and checksums recomputed."""
    pkt = IP(raw) if raw[0] >> 4 == 4 else IPv6(raw)
    if IP in pkt:
        del pkt[IP].chksum
        del pkt[IP].len
    else:
        del pkt[IPv6].plen
    for layer in (TCP, UDP):
        if layer in pkt:
            del pkt[layer].chksum
    if UDP in pkt:
        del pkt[UDP].len
    return bytes(pkt)


def expected_segments(version, payload, mss, flags="PA", seq=1000, ident=7, **kw) -> list[bytes]:
    chunks = [payload[i:i + mss] for i in range(0, len(payload), mss)]
    out = []
    for k, chunk in enumerate(chunks):
        last = k == len(chunks) - 1
        f = flags if last else flags.replace("P", "").replace("F", "")
        if k:
            f = f.replace("C", "")
        out.append(packet(version, chunk, seq=(seq + k * mss) & 0xFFFFFFFF, flags=f, ident=(ident + k) & 0xFFFF,
                          **kw))
    return out


# ------------------------------------------------------------------ segmentation (TUN reads)

@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize("mss,length", [(1348, 1348 * 20), (1348, 1348 * 20 + 77), (1001, 5005 + 1),
                                        (1000, 999 * 3), (1448, 65535 - 40 - 32 - 20)])
def test_tso_segments_match_scapy(version, mss, length):
    payload = os.urandom(length)
    raw = packet(version, payload, flags="PA", tcp_options=TIMESTAMPS)
    segments = split(tso(raw, mss))
    assert segments == expected_segments(version, payload, mss, tcp_options=TIMESTAMPS)
    for seg in segments:
        assert rebuilt(seg) == seg
    assert [len(s) for s in segments[:-1]] == [len(segments[0])] * (len(segments) - 1)


def test_tso_fin_and_psh_only_on_last_segment_ipv4_options():
    payload = os.urandom(3 * 700 + 5)
    raw = packet(4, payload, flags="FPA", ip_options=True, ident=0xFFFF)
    segments = split(tso(raw, 700))
    assert len(segments) == 4
    flags = [str(IP(s)[TCP].flags) for s in segments]
    assert flags == ["A", "A", "A", "FPA"]
    assert [IP(s).id for s in segments] == [0xFFFF, 0, 1, 2]
    assert segments == expected_segments(4, payload, 700, flags="FPA", ip_options=True, ident=0xFFFF)
    assert all(IP(s).options and rebuilt(s) == s for s in segments)


def test_tso_sequence_numbers_wrap_and_cwr_on_first_only():
    payload = os.urandom(4 * 500)
    seq = 0xFFFFFFFF - 700
    raw = packet(4, payload, flags="CA", seq=seq)
    segments = split(tso(raw, 500, ecn=True))
    assert [IP(s)[TCP].seq for s in segments] == [seq, (seq + 500), (seq + 1000) & 0xFFFFFFFF,
                                                  (seq + 1500) & 0xFFFFFFFF]
    assert [str(IP(s)[TCP].flags) for s in segments] == ["AC", "A", "A", "A"]
    assert segments == expected_segments(4, payload, 500, flags="CA", seq=seq)


def test_tso_ipv6_with_extension_header():
    payload = os.urandom(2 * 1200 + 333)
    raw = packet(6, payload, flags="PA", ext_header=True, tcp_options=TIMESTAMPS)
    segments = split(tso(raw, 1200))
    assert segments == expected_segments(6, payload, 1200, ext_header=True, tcp_options=TIMESTAMPS)
    assert all(IPv6ExtHdrDestOpt in IPv6(s) and rebuilt(s) == s for s in segments)


def test_tso_single_short_segment():
    payload = b"x" * 99
    raw = packet(4, payload, flags="PA")
    assert split(tso(raw, 1400)) == [raw]


@given(version=st.sampled_from([4, 6]), mss=st.integers(1, 1500), length=st.integers(1, 20000),
       flags=st.sampled_from(["A", "PA", "FA", "FPA"]), seq=st.integers(0, 0xFFFFFFFF),
       ident=st.integers(0, 0xFFFF))
@settings(max_examples=60, deadline=None)
def test_tso_any_size(version, mss, length, flags, seq, ident):
    payload = os.urandom(length)
    raw = packet(version, payload, flags=flags, seq=seq, ident=ident)
    segments = split(tso(raw, mss))
    assert segments == expected_segments(version, payload, mss, flags=flags, seq=seq, ident=ident)


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize("length", [0, 1, 100, 1351])
def test_needs_csum_tcp_completed(version, length):
    raw = packet(version, os.urandom(length), flags="PA", tcp_options=TIMESTAMPS)
    body, l4 = partial(raw)
    assert body != raw or length == 0
    assert split(VNET_HDR.pack(F_NEEDS_CSUM, GSO_NONE, 0, 0, l4, 16) + body) == [raw]


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize("length", [0, 1, 100, 1351])
def test_needs_csum_udp_completed(version, length):
    ip = IP(src=SRC4, dst=DST4) if version == 4 else IPv6(src=SRC6, dst=DST6)
    raw = bytes(ip / UDP(sport=5000, dport=5001) / Raw(os.urandom(length)))
    body, l4 = partial(raw, proto=17)
    out = split(VNET_HDR.pack(F_NEEDS_CSUM, GSO_NONE, 0, 0, l4, 6) + body)
    assert out == [raw] and rebuilt(raw) == raw


def test_udp_checksum_zero_sent_as_all_ones():
    """A payload whose UDP checksum computes to zero: it goes out as all ones (RFC 768)."""
    base = IP(src=SRC4, dst=DST4) / UDP(sport=5000, dport=5001)
    tail = bytes(base / Raw(b"ab\0\0"))[26:28]
    raw = bytes(base / Raw(b"ab" + tail))
    assert raw[26:28] == b"\xff\xff"
    body, l4 = partial(raw, proto=17)
    assert complete_checksum(body, l4, 6) == raw


def test_plain_reads_pass_through():
    raw = bytes(IP(src=SRC4, dst=DST4) / ICMP() / Raw(b"ping"))
    assert split(VNET_HDR.pack(0, GSO_NONE, 0, 0, 0, 0) + raw) == [raw]
    assert split(VNET_HDR.pack(F_DATA_VALID, GSO_NONE, 0, 0, 0, 0) + raw) == [raw]


def test_unusable_offload_requests_raise():
    """UDP GSO (never offered: no TUN_F_USO4), csum_start off the IPv4 header length, gso_size 0,
    truncated headers."""
    raw = packet(4, os.urandom(3000))
    with pytest.raises(OffloadError):
        split(b"\x01\x00")
    with pytest.raises(OffloadError):
        split(VNET_HDR.pack(F_NEEDS_CSUM, GSO_UDP_L4, 28, 1000, 20, 6) + raw)
    with pytest.raises(OffloadError):
        split(VNET_HDR.pack(F_NEEDS_CSUM, GSO_TCPV4, 52, 1000, 24, 16) + raw)
    with pytest.raises(OffloadError):
        split(VNET_HDR.pack(F_NEEDS_CSUM, GSO_TCPV4, 52, 0, 20, 16) + raw)
    with pytest.raises(OffloadError):
        segment_tcp(raw[:30], 20, 1000)
    with pytest.raises(OffloadError):
        split(tso(packet(4), 1000))
    with pytest.raises(OffloadError):
        complete_checksum(raw[:30], 20, 16)


# ------------------------------------------------------------------ coalescing (TUN writes)

def flow(version=4, count=10, mss=1348, last=None, flags="A", last_flags=None, seq=5000, ident=100, **kw):
    """`count` in-order segments of one flow: mss payload bytes each, the last `last` bytes."""
    out = []
    for k in range(count):
        size = last if (last is not None and k == count - 1) else mss
        f = last_flags if (last_flags and k == count - 1) else flags
        out.append(packet(version, os.urandom(size), seq=(seq + k * mss) & 0xFFFFFFFF, flags=f,
                          ident=(ident + k) & 0xFFFF, **kw))
    return out


def joined(vector) -> bytes:
    return b"".join(bytes(part) for part in vector)


def check_super_packet(vector, originals):
    """The vector is a GSO super-packet that the kernel (here: split) cuts back into `originals`,
    and whose partial checksum completes to the right checksum of the whole."""
    buf = joined(vector)
    flags, gso, hdr_len, gso_size, csum_start, csum_offset = VNET_HDR.unpack_from(buf)
    first = originals[0]
    l4 = 20 if first[0] >> 4 == 4 else 40
    hl = l4 + (first[l4 + 12] >> 4) * 4
    assert (flags, gso, hdr_len, csum_start, csum_offset) == (
        F_NEEDS_CSUM, GSO_TCPV4 if l4 == 20 else GSO_TCPV6, hl, l4, 16)
    assert gso_size == len(first) - hl
    body = buf[VNET_HDR_LEN:]
    assert len(body) == hl + sum(len(p) - hl for p in originals)
    whole = complete_checksum(body, l4, 16)
    assert rebuilt(whole) == whole
    assert split(buf) == originals


@pytest.mark.parametrize("version", [4, 6])
def test_coalesce_one_flow(version):
    packets = flow(version, count=12, tcp_options=TIMESTAMPS)
    (vector,) = coalesce(packets)
    check_super_packet(vector, packets)


@pytest.mark.parametrize("version", [4, 6])
def test_coalesce_short_last_and_psh(version):
    packets = flow(version, count=5, mss=1001, last=333, last_flags="PA")
    (vector,) = coalesce(packets)
    check_super_packet(vector, packets)
    assert str(TCP(joined(vector)[VNET_HDR_LEN + (20 if version == 4 else 40):]).flags) == "PA"


def test_short_segment_and_psh_end_a_super_packet():
    short = flow(count=4, last=500) + flow(count=3, seq=5000 + 3 * 1348 + 500, ident=104)
    vectors = coalesce(short)
    assert len(vectors) == 2
    check_super_packet(vectors[0], short[:4])
    check_super_packet(vectors[1], short[4:])
    pushed = flow(count=6)
    pushed[2] = packet(4, IP(pushed[2]).load, seq=5000 + 2 * 1348, flags="PA", ident=102)
    vectors = coalesce(pushed)
    assert [len(v) - 3 for v in vectors] == [3, 3]
    check_super_packet(vectors[0], pushed[:3])
    check_super_packet(vectors[1], pushed[3:])


def test_psh_on_first_segment_goes_alone():
    packets = flow(count=3)
    packets[0] = packet(4, IP(packets[0]).load, seq=5000, flags="PA", ident=100)
    vectors = coalesce(packets)
    assert vectors[0] == [DATA_VALID, packets[0]]
    check_super_packet(vectors[1], packets[1:])


@pytest.mark.parametrize("flags", ["SA", "FA", "RA", "UA", "EA", "CA", "S", "R"])
def test_other_flags_are_not_coalesced(flags):
    packets = flow(count=4)
    packets[2] = packet(4, IP(packets[2]).load, seq=5000 + 2 * 1348, flags=flags, ident=102)
    vectors = coalesce(packets)
    assert [joined(v) for v in vectors[1:3]] == [DATA_VALID + packets[2], DATA_VALID + packets[3]]
    check_super_packet(vectors[0], packets[:2])


def test_gaps_and_other_flows_break_runs():
    a = flow(count=6)
    gap = a[:3] + a[4:]
    vectors = coalesce(gap)
    assert len(vectors) == 2
    check_super_packet(vectors[0], gap[:3])
    check_super_packet(vectors[1], gap[3:])
    b = flow(count=6, sport=40001)
    mixed = [a[0], a[1], b[0], b[1], a[2], a[3]]
    vectors = coalesce(mixed)
    assert len(vectors) == 3
    for vector, originals in zip(vectors, (mixed[0:2], mixed[2:4], mixed[4:6])):
        check_super_packet(vector, originals)


@pytest.mark.parametrize("change", ["ttl", "tos", "ack", "window", "timestamp", "ident", "longer"])
def test_header_differences_break_runs(change):
    """The last two segments differ from the first two in one field, consistently."""
    packets = flow(count=4, tcp_options=TIMESTAMPS)
    seq = 5000 + 2 * 1348
    for k in (2, 3):
        load = IP(packets[k]).load + (b"x" if change == "longer" else b"")
        kw = dict(seq=seq, ident=100 + k, tcp_options=TIMESTAMPS)
        if change == "ttl":
            kw["ttl"] = 10
        elif change == "tos":
            kw["tos"] = 3  # RFC 3168 §5: CE
        elif change == "timestamp":
            kw["tcp_options"] = [("NOP", None), ("NOP", None), ("Timestamp", (123457, 654321))]
        elif change == "ident":
            kw["ident"] = 200 + k
        pkt = packet(4, load, **kw)
        if change in ("ack", "window"):
            p = IP(pkt)
            setattr(p[TCP], change, 1234)
            pkt = rebuilt(bytes(p))
        packets[k] = pkt
        seq += len(load)
    vectors = coalesce(packets)
    assert len(vectors) == 2
    check_super_packet(vectors[0], packets[:2])
    check_super_packet(vectors[1], packets[2:])


def test_not_coalesced_singles_are_marked_data_valid():
    icmp = bytes(IP(src=SRC4, dst=DST4) / ICMP() / Raw(b"x" * 56))
    udp = bytes(IP(src=SRC4, dst=DST4) / UDP(sport=1, dport=2) / Raw(b"y" * 1000))
    ack = packet(4)
    options = flow(count=3, ip_options=True)
    six = flow(6, count=2, ext_header=True)
    packets = [icmp, udp, ack, ack, *options, *six]
    vectors = coalesce(packets)
    assert vectors == [[DATA_VALID, p] for p in packets]
    assert VNET_HDR.unpack(DATA_VALID) == (F_DATA_VALID, GSO_NONE, 0, 0, 0, 0)


def test_limits_of_a_super_packet():
    """At most 65535 bytes (46 segments of 1400 after 40 header bytes) and 64 segments."""
    packets = flow(count=60, mss=1400)
    vectors = coalesce(packets)
    assert [len(v) - 3 for v in vectors] == [46, 14]
    check_super_packet(vectors[0], packets[:46])
    check_super_packet(vectors[1], packets[46:])
    small = flow(count=70, mss=100)
    assert [len(v) - 3 for v in coalesce(small)] == [64, 6]


def test_sequence_numbers_wrap_in_a_run():
    packets = flow(count=5, seq=0xFFFFFFFF - 2000)
    (vector,) = coalesce(packets)
    check_super_packet(vector, packets)


@given(version=st.sampled_from([4, 6]), mss=st.integers(1, 1400), count=st.integers(2, 50),
       last=st.integers(1, 1400), seq=st.integers(0, 0xFFFFFFFF), ident=st.integers(0, 0xFFFF))
@settings(max_examples=40, deadline=None)
def test_coalesce_then_split_gives_the_packets_back(version, mss, count, last, seq, ident):
    packets = flow(version, count=count, mss=mss, last=min(last, mss), seq=seq, ident=ident)
    rebuilt_packets = []
    for vector in coalesce(packets):
        if len(vector) == 2 and vector[0] == DATA_VALID:
            rebuilt_packets.append(vector[1])
        else:
            rebuilt_packets.extend(split(joined(vector)))
    assert rebuilt_packets == packets


# ------------------------------------------------------------------ the data plane around them (no root)

class FakeUdp:
    """The UDP 4500 socket: remembers each datagram, UDP GSO sends cut at their segment size."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.gso_sends = 0

    def sendto(self, data, addr) -> None:
        self.sent.append(bytes(data))

    def sendmsg(self, buffers, ancillary, flags, addr) -> None:
        data = b"".join(buffers)
        ((_, _, value),) = ancillary
        size = struct.unpack("H", value)[0]
        self.sent.extend(data[i:i + size] for i in range(0, len(data), size))
        self.gso_sends += 1


class FakeGateway:
    def __init__(self) -> None:
        self.sockets = {4500: FakeUdp()}
        self.sockets6: dict = {}  # no IPv6 here
        self.loop = None
        self.lines: list[str] = []
        self.esp_flush = None
        self.tcp = None  # no RFC 9329 streams

    def say(self, line: str) -> None:
        self.lines.append(line)

    def now(self) -> float:
        return 0.0


@pytest.fixture
def plane():
    """The data plane's packet path with one ESP-in-UDP SA pair to itself; a SOCK_SEQPACKET pair
    stands in for the TUN device (one read, one packet; writev keeps a vector together)."""
    import socket

    from lab.daemon.packets import PacketPath, attach_route
    from lab.esp import InboundSA, OutboundSA, UdpEncap
    from lab.esp.spd import Policy
    from lab.iana import EncrId

    tun, kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    tun.setblocking(False)
    kernel.settimeout(1)
    dp = PacketPath(FakeGateway())
    dp.tun_fd, dp.offload = tun.fileno(), True
    key = os.urandom(20)
    common = dict(encr_id=EncrId.AES_GCM_16, encr_key=key, encap=UdpEncap())
    out = OutboundSA(0x1001, local="198.51.100.1", remote="198.51.100.2", **common)
    attach_route(out, ("198.51.100.2", 4500), udp=True, ah=False)
    inb = InboundSA(0x1001, local="198.51.100.2", remote="198.51.100.1", **common)
    dp.spd.add(Policy.of("protect", sa=out, local="10.1.0.0/16", remote="10.2.0.0/16"))
    dp.sad.add(inb)
    dp.sad.add(out)
    yield dp, kernel, out, inb
    tun.close()
    kernel.close()


def test_dataplane_reads_super_packets_and_sends_segments(plane):
    dp, kernel, _out, inb = plane
    payload = os.urandom(30 * 1348 + 100)
    raw = packet(4, payload, flags="PA", tcp_options=TIMESTAMPS)
    ping = bytes(IP(src=SRC4, dst=DST4) / ICMP() / Raw(b"x" * 56))
    kernel.send(tso(raw, 1348))
    kernel.send(VNET_HDR.pack(0, GSO_NONE, 0, 0, 0, 0) + ping)
    dp._tun_readable()
    udp = dp.gateway.sockets[4500]
    assert [inb.unprotect(esp) for esp in udp.sent] == expected_segments(4, payload, 1348,
                                                                         tcp_options=TIMESTAMPS) + [ping]
    assert udp.gso_sends >= 1 and dp.stats["tso_reads"] == 1 and dp.stats["packets_out"] == 32


def test_dataplane_drops_what_it_cannot_segment(plane):
    dp, kernel, _out, _inb = plane
    raw = packet(4, os.urandom(3000))
    kernel.send(VNET_HDR.pack(F_NEEDS_CSUM, GSO_UDP_L4, 28, 1000, 20, 6) + raw)
    dp._tun_readable()
    assert dp.stats["dropped_offload"] == 1 and not dp.gateway.sockets[4500].sent


def test_dataplane_writes_coalesced_and_single_packets(plane):
    dp, kernel, out, _inb = plane
    packets = flow(count=20, tcp_options=TIMESTAMPS)
    ping = bytes(IP(src=SRC4, dst=DST4) / ICMP() / Raw(b"x" * 56))
    for p in packets + [ping]:
        dp.on_udp_esp(out.protect_payload(p), ("198.51.100.1", 4500), ("198.51.100.2", 4500))
    assert dp._rx and not dp.stats["packets_in"]
    dp.flush()
    first, second = kernel.recv(70000), kernel.recv(70000)
    assert VNET_HDR.unpack_from(first)[:2] == (F_NEEDS_CSUM, GSO_TCPV4)
    assert split(first) == packets
    assert second == DATA_VALID + ping
    assert dp.stats["packets_in"] == 21 and dp.stats["gro_writes"] == 1


def test_dataplane_without_offload_writes_bare_packets(plane):
    dp, kernel, out, _inb = plane
    dp.offload = False
    packets = flow(count=3)
    for p in packets:
        dp.on_udp_esp(out.protect_payload(p), ("198.51.100.1", 4500), ("198.51.100.2", 4500))
    assert [kernel.recv(70000) for _ in packets] == packets


def test_refused_offloads_fall_back_to_a_plain_tun(monkeypatch):
    import errno
    import fcntl as fcntl_module

    from lab.daemon import packets

    opened, closed, flags_seen = [], [], []
    real_open, real_close = os.open, os.close

    def fake_open(path, flags, *args):
        fd = real_open(os.devnull if path == "/dev/net/tun" else path, flags, *args)
        opened.append(fd)
        return fd

    def fake_close(fd):
        closed.append(fd)
        real_close(fd)

    def fake_ioctl(fd, request, arg=0, *rest):
        if request == packets.TUNSETIFF:
            flags_seen.append(struct.unpack("16sH", arg)[1])
            return arg
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(packets.os, "open", fake_open)
    monkeypatch.setattr(packets.os, "close", fake_close)
    monkeypatch.setattr(fcntl_module, "ioctl", fake_ioctl)
    dp = packets.PacketPath(FakeGateway())
    fd, why = dp._open_tun_offload()
    assert fd is None and why == "Invalid argument"
    assert flags_seen == [packets.IFF_TUN | packets.IFF_NO_PI | packets.IFF_VNET_HDR]
    assert closed == opened[:1]
    fd = dp._open_tun(0)
    assert flags_seen[-1] == packets.IFF_TUN | packets.IFF_NO_PI
    real_close(fd)


def test_no_offload_option_reaches_the_gateway(monkeypatch):
    import lab.daemon.gateway as gateway
    from lab.cli import build_parser, main

    assert build_parser().parse_args(["daemon", "--config", "swanctl.conf"]).no_offload is False
    seen = []
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(gateway, "run_gateway", lambda *args, **kwargs: seen.append(kwargs) and 0)
    main(["daemon", "--config", "swanctl.conf", "--no-offload"])
    main(["daemon", "--config", "swanctl.conf"])
    assert [kw["offload"] for kw in seen] == [False, True]
