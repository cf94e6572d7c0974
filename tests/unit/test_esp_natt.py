"""Transport mode across a NAT: the TCP/UDP checksum fix-up (RFC 3948 §3.1.2), judged by scapy.

Every expected checksum here is scapy's own, computed from scratch over the packet's header as
it arrives; ours is an incremental update of the sender's. Both directions of a client behind a
NAT box are played through lab.esp with the box rewriting the outer header in between.
"""
from __future__ import annotations

import random

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.packet import Raw

from lab.esp import EspConfigError, InboundSA, Mode, OutboundSA, UdpEncap
from lab.esp.ip import pack_address
from lab.esp.natt import adjust_checksum, checksum_fixup
from lab.ike.const import EncrId, IntegId

CLIENT = "192.168.1.11"   # IP1: the client's own address, behind the NAT box
NATTED = "198.51.100.1"   # IP2: the NAT box's public address, the client as the server sees it
SERVER = "198.51.100.10"  # IP3 = IP4: the server, not behind a NAT
GCM = dict(encr_id=EncrId.AES_GCM_16, encr_key=bytes(range(20)), integ_id=IntegId.NONE)


def _l4(pkt):
    for kind, field in ((TCP, "chksum"), (UDP, "chksum"), (ICMPv6EchoRequest, "cksum")):
        layer = pkt.getlayer(kind)
        if layer is not None:
            return layer, field
    raise AssertionError("no TCP, UDP or ICMPv6 layer")


def _parse(raw: bytes):
    return IP(raw) if raw[0] >> 4 == 4 else IPv6(raw)


def scapy_checksum(raw: bytes) -> int:
    """The L4 checksum scapy computes from scratch for `raw` as it stands."""
    pkt = _parse(raw)
    layer, field = _l4(pkt)
    delattr(layer, field)
    again, field = _l4(_parse(bytes(pkt)))
    return getattr(again, field)


def wire_checksum(raw: bytes) -> int:
    layer, field = _l4(_parse(raw))
    return getattr(layer, field)


def rewrite(raw: bytes, src: str | None = None, dst: str | None = None) -> bytes:
    """What a NAT box does to a transport-mode packet's addresses: the IP header only (IPv4
    header checksum redone), the L4 checksum untouched since it cannot reach it."""
    pkt = _parse(raw)
    layer, field = _l4(pkt)
    setattr(layer, field, getattr(layer, field))  # pin the sender's checksum
    if src:
        pkt.src = src
    if dst:
        pkt.dst = dst
    if isinstance(pkt, IP):
        del pkt.chksum
    return bytes(pkt)


def tcp(src=CLIENT, dst=SERVER, payload=b"GET / HTTP/1.1\r\n\r\n") -> bytes:
    return bytes(IP(src=src, dst=dst, id=7) / TCP(sport=40001, dport=8080, flags="PA", seq=99) / Raw(payload))


def udp(src=CLIENT, dst=SERVER, payload=b"a query", chksum=None) -> bytes:
    layer = UDP(sport=5353, dport=53) if chksum is None else UDP(sport=5353, dport=53, chksum=chksum)
    return bytes(IP(src=src, dst=dst) / layer / Raw(payload))


@pytest.mark.parametrize("make", [tcp, udp], ids=["tcp", "udp"])
def test_source_rewritten_by_the_nat_is_fixed(make) -> None:
    sent = make()
    arrived = rewrite(sent, src=NATTED)
    assert wire_checksum(arrived) != scapy_checksum(arrived)  # what the server's stack would drop
    fixed = checksum_fixup(arrived, pack_address(CLIENT), pack_address(SERVER))
    assert wire_checksum(fixed) == scapy_checksum(fixed)
    assert fixed[:12] == arrived[:12] and fixed[12:20] == arrived[12:20]


def test_destination_rewritten_by_the_nat_is_fixed() -> None:
    # the server answers the client's public address; the box hands it to IP1
    sent = tcp(src=SERVER, dst=NATTED)
    arrived = rewrite(sent, dst=CLIENT)
    fixed = checksum_fixup(arrived, pack_address(SERVER), pack_address(NATTED))
    assert wire_checksum(fixed) == scapy_checksum(fixed)


def test_both_addresses_rewritten_two_nats() -> None:
    # RFC 7296 §2.23.1's full picture: IP1 -> IP2 by NAT A, IP3 -> IP4 by NAT B
    sent = udp(src="192.168.1.11", dst="203.0.113.7")
    arrived = rewrite(sent, src="198.51.100.1", dst="172.17.0.2")
    fixed = checksum_fixup(arrived, pack_address("192.168.1.11"), pack_address("203.0.113.7"))
    assert wire_checksum(fixed) == scapy_checksum(fixed)


def test_udp_without_checksum_stays_without() -> None:
    arrived = rewrite(udp(chksum=0), src=NATTED)
    assert checksum_fixup(arrived, pack_address(CLIENT), pack_address(SERVER)) == arrived


def test_udp_computed_zero_is_sent_as_all_ones() -> None:
    # a payload word chosen so that the checksum over the NATed header sums to all ones
    probe = udp(src=NATTED, payload=b"\x00\x00")
    word = scapy_checksum(probe)
    sent = udp(payload=word.to_bytes(2, "big"))
    arrived = rewrite(sent, src=NATTED)
    assert scapy_checksum(arrived) == 0xFFFF  # scapy's RFC 768 all ones
    fixed = checksum_fixup(arrived, pack_address(CLIENT), pack_address(SERVER))
    assert wire_checksum(fixed) == 0xFFFF


def test_ipv6_tcp_and_icmpv6() -> None:
    for layer in (TCP(sport=1, dport=2, flags="S"), ICMPv6EchoRequest(id=5, seq=1)):
        sent = bytes(IPv6(src="fd00:1::11", dst="2001:db8::10") / layer / Raw(b"x" * 33))
        arrived = rewrite(sent, src="2001:db8:1::1")
        fixed = checksum_fixup(arrived, pack_address("fd00:1::11"), pack_address("2001:db8::10"))
        assert wire_checksum(fixed) == scapy_checksum(fixed)


def test_icmpv4_has_no_pseudo_header_and_is_left_alone() -> None:
    sent = bytes(IP(src=CLIENT, dst=SERVER) / ICMP(id=3, seq=1) / Raw(b"ping"))
    arrived = bytes(IP(src=NATTED, dst=SERVER) / ICMP(IP(sent)[ICMP].build()))
    assert checksum_fixup(arrived, pack_address(CLIENT), pack_address(SERVER)) == arrived


def test_random_packets_agree_with_scapy() -> None:
    rng = random.Random(3948)
    for _ in range(300):
        real_src, real_dst, seen_src, seen_dst = (".".join(str(rng.randrange(1, 255)) for _ in range(4))
                                                  for _ in range(4))
        payload = rng.randbytes(rng.randrange(0, 200))
        make = rng.choice([tcp, udp])
        arrived = rewrite(make(src=real_src, dst=real_dst, payload=payload), src=seen_src, dst=seen_dst)
        fixed = checksum_fixup(arrived, pack_address(real_src), pack_address(real_dst))
        assert wire_checksum(fixed) == scapy_checksum(fixed), (make.__name__, real_src, real_dst, seen_src, seen_dst)


def test_adjust_checksum_matches_rfc1624_example() -> None:
    # RFC 1624 §4: HC = 0xDD2F, m = 0x5555 -> m' = 0x3285 gives HC' = 0x0000
    assert adjust_checksum(0xDD2F, b"\x55\x55", b"\x32\x85") == 0x0000


def test_unchanged_fragment_or_other_protocol() -> None:
    arrived = rewrite(tcp(), src=NATTED)
    frag = bytearray(arrived)
    frag[6] = 0x20  # more fragments
    assert checksum_fixup(bytes(frag), pack_address(CLIENT), pack_address(SERVER)) == bytes(frag)
    gre = bytes(IP(src=NATTED, dst=SERVER, proto=47) / Raw(b"\x00" * 20))
    assert checksum_fixup(gre, pack_address(CLIENT), pack_address(SERVER)) == gre


def _nat_outer(datagram: bytes, src: str | None = None, dst: str | None = None, sport: int | None = None,
               dport: int | None = None) -> bytes:
    """The NAT box on the outer IP + UDP 4500 header of ESP-in-UDP (the ESP part untouched)."""
    pkt = IP(datagram)
    if src:
        pkt.src = src
    if dst:
        pkt.dst = dst
    if sport:
        pkt[UDP].sport = sport
    if dport:
        pkt[UDP].dport = dport
    del pkt.chksum
    pkt[UDP].chksum = 0
    return bytes(pkt)


@pytest.mark.parametrize("fixup", [True, False], ids=["fixed", "without-fixup"])
def test_client_to_server_through_esp_and_a_nat(fixup: bool) -> None:
    # the client protects a TCP segment IP1 -> IP3; the box maps the outer source to IP2:4501;
    # the server's inbound SA knows IP1 and IP3 from the traffic selectors as received
    client_out = OutboundSA(0x1001, mode=Mode.TRANSPORT, local=CLIENT, remote=SERVER, encap=UdpEncap(), **GCM)
    server_in = InboundSA(0x1001, mode=Mode.TRANSPORT, local=SERVER, remote=NATTED, encap=UdpEncap(4500, 4501),
                          real_src=CLIENT if fixup else None, real_dst=SERVER if fixup else None, **GCM)
    segment = tcp()
    wire = _nat_outer(client_out.protect(segment), src=NATTED, sport=4501)
    got = server_in.unprotect_datagram(wire)
    assert IP(got).src == NATTED and IP(got)[TCP].load == IP(segment)[TCP].load
    assert (wire_checksum(got) == scapy_checksum(got)) is fixup
    assert server_in.checksums_fixed == (1 if fixup else 0)


@pytest.mark.parametrize("fixup", [True, False], ids=["fixed", "without-fixup"])
def test_server_to_client_through_esp_and_a_nat(fixup: bool) -> None:
    # the server answers IP2 (all it knows); the box maps the outer destination back to IP1;
    # the client's inbound SA knows IP3 and IP2 from the traffic selectors the server returned
    server_out = OutboundSA(0x2002, mode=Mode.TRANSPORT, local=SERVER, remote=NATTED, encap=UdpEncap(4500, 4501),
                            **GCM)
    client_in = InboundSA(0x2002, mode=Mode.TRANSPORT, local=CLIENT, remote=SERVER, encap=UdpEncap(),
                          real_src=SERVER if fixup else None, real_dst=NATTED if fixup else None, **GCM)
    for make in (tcp, udp):
        reply = make(src=SERVER, dst=NATTED, payload=b"200 OK" * 9)
        wire = _nat_outer(server_out.protect(reply), dst=CLIENT, dport=4500)
        got = client_in.unprotect_datagram(wire)
        assert IP(got).dst == CLIENT
        assert (wire_checksum(got) == scapy_checksum(got)) is fixup
        # the same through the UDP 4500 socket's payload (ESP only, header rebuilt from the SA)
        esp_only = server_out.protect_payload(reply)
        got = client_in.unprotect(esp_only)
        assert (wire_checksum(got) == scapy_checksum(got)) is fixup


def test_fixup_is_for_transport_mode_only() -> None:
    with pytest.raises(EspConfigError):
        InboundSA(1, mode=Mode.TUNNEL, local=SERVER, remote=NATTED, real_src=CLIENT, **GCM)
