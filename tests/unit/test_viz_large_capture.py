"""Large captures (tcp-over-tcp's taps hold 76,000 packets, 90 MB): lab.viz.decode reads plain pcap
files itself, without scapy's dissectors (about a millisecond a packet), with the same frames, times
and IP packets; every packet is still analysed and counted; and a run's figures, report.html,
narration and audit read each capture once (lab.viz.analysis.shared_analyses)."""
from __future__ import annotations

import struct
from collections import Counter
from pathlib import Path

import pytest

from lab.viz import analysis, decode
from lab.viz.analysis import analyze_capture, shared_analyses
from lab.viz.decode import _read_frames, _scapy_frames

DEMO = Path(__file__).resolve().parent.parent / "data" / "demo"
N = 200_000   # bulk packets after the demo's exchange
BASE = 1_800_000_000


def _ipv4(src: bytes, dst: bytes, protocol: int, payload: bytes, ident: int = 0) -> bytes:
    return struct.pack("!BBHHHBB2s4s4s", 0x45, 0, 20 + len(payload), ident & 0xFFFF, 0x4000, 64, protocol, b"\0\0",
                       src, dst) + payload


def _write(path: Path, linktype: int, records: list[tuple[int, int, bytes]], nano: bool = False) -> None:
    """A pcap file (little-endian; nanosecond stamps with `nano`) of (seconds, fraction, frame) records."""
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    parts = [struct.pack("<IHHiIII", magic, 2, 4, 0, 0, 262144, linktype)]
    for seconds, fraction, frame in records:
        parts += [struct.pack("<IIII", seconds, fraction, len(frame), len(frame)), frame]
    path.write_bytes(b"".join(parts))


ETH = b"\x02\0\0\0\0\x01\x02\0\0\0\0\x02"


def _large(tmp_path: Path) -> tuple[Path, int, Counter]:
    """The demo's capture outside its NAT box (IKE and ESP in UDP, with keys), then N packets a
    bulk transfer would leave: ESP in UDP 4500 of an SA without keys, TCP segments and their ACKs."""
    linktype, frames = decode._pcap_records(DEMO / "captures" / "nat-outside.pcap")
    assert linktype == 1
    demo = [frame for _, frame, _ in frames]
    records = [(BASE - 1000, n, frame) for n, frame in enumerate(demo)]
    a, b = bytes([198, 51, 100, 1]), bytes([198, 51, 100, 2])
    esp = struct.pack("!HHHH", 4500, 4500, 8 + 8 + 64, 0) + struct.pack("!II", 0xC0FFEE01, 1) + bytes(64)
    segment = struct.pack("!HHIIBBHHH", 40000, 5201, 1, 0, 0x50, 0x10, 65535, 0, 0) + bytes(100)
    ack = struct.pack("!HHIIBBHHH", 5201, 40000, 1, 101, 0x50, 0x10, 65535, 0, 0)
    bulk = [ETH + b"\x08\x00" + _ipv4(a, b, 17, esp), ETH + b"\x08\x00" + _ipv4(a, b, 6, segment),
            ETH + b"\x08\x00" + _ipv4(b, a, 6, ack)]
    for n in range(N):
        records.append((BASE + n // 1000, (n % 1000) * 1000, bulk[n % 3]))
    path = tmp_path / "large.pcap"
    _write(path, 1, records)
    expected = Counter(p.kind for p in analyze_capture(DEMO / "captures" / "nat-outside.pcap", DEMO / "keys").packets)
    expected["esp"] += len(range(0, N, 3))
    expected["other"] += N - len(range(0, N, 3))
    return path, len(demo), expected


def test_a_large_capture_is_read_without_scapy_and_every_packet_counted(tmp_path, monkeypatch):
    path, demo, expected = _large(tmp_path)
    dissected = []

    def counting(path):
        for item in _scapy_frames(path):
            dissected.append(item[0])
            yield item
    monkeypatch.setattr(decode, "_scapy_frames", counting)
    found = analyze_capture(path, DEMO / "keys")
    assert dissected == []   # no packet went through scapy's dissectors
    assert len(found.packets) == demo + N
    assert [p.frame for p in found.packets] == list(range(1, demo + N + 1))
    assert Counter(p.kind for p in found.packets) == expected
    # the demo's exchange still decrypted: IKE inside SK, ESP to its inner packet
    assert any(p.ike is not None and p.ike.inner for p in found.packets[:demo])
    assert any(p.ipsec is not None and p.ipsec.decrypted for p in found.packets[:demo])
    last = found.packets[-1]
    assert (last.time, last.src, last.dst, last.sport, last.dport) == \
        (BASE + (N - 1) // 1000 + 0.999, "198.51.100.1", "198.51.100.2", 40000, 5201)   # frame N: bulk[(N - 1) % 3]
    assert found.packets[demo].ipsec.spi == 0xC0FFEE01 and found.packets[demo].ipsec.encap


def _frames_of_each_link_type() -> dict[int, list[bytes]]:
    ip4 = _ipv4(bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]), 17, struct.pack("!HHHH", 500, 500, 12, 0) + b"abcd")
    ip6 = struct.pack("!IHBB16s16s", 6 << 28, 12, 17, 64, bytes(15) + b"\1", bytes(15) + b"\2") + \
        struct.pack("!HHHH", 4500, 4500, 12, 0) + b"\0\0\0\0"
    arp = ETH + b"\x08\x06" + bytes(28)
    short = ETH + b"\x08\x00" + _ipv4(bytes(4), bytes(4), 1, b"\x08\0\0\0\0\0\0\0") + bytes(18)  # Ethernet padding
    return {
        1: [ETH + b"\x08\x00" + ip4, ETH + b"\x86\xdd" + ip6, ETH + b"\x81\x00\x00\x05\x08\x00" + ip4, arp, short],
        113: [struct.pack("!HHH8sH", 0, 1, 6, bytes(8), 0x0800) + ip4, struct.pack("!HHH8sH", 4, 1, 6, bytes(8), 0x86DD) + ip6],
        276: [struct.pack("!HHIHBB8s", 0x0800, 0, 2, 1, 0, 6, bytes(8)) + ip4],
        101: [ip4, ip6],
        228: [ip4],
        229: [ip6],
        0: [struct.pack("<I", 2) + ip4],
    }


@pytest.mark.parametrize("linktype", sorted(_frames_of_each_link_type()))
def test_the_pcap_reader_gives_what_scapy_gives(tmp_path, linktype):
    frames = _frames_of_each_link_type()[linktype]
    for nano in (False, True):
        path = tmp_path / f"{linktype}-{nano}.pcap"
        _write(path, linktype, [(BASE + n, 123456789 if nano else 123456, frame) for n, frame in enumerate(frames)], nano)
        assert decode._pcap_records(path) is not None   # read here, not by scapy
        ours, scapys = list(_read_frames(path)), list(_scapy_frames(path))
        assert ours == scapys
        assert [data is None for _, _, data in ours] == [frame[12:14] == b"\x08\x06" for frame in frames]  # ARP: no IP


def test_a_record_cut_short_at_the_end_is_read_as_scapy_reads_it(tmp_path):
    path = tmp_path / "cut.pcap"
    frames = _frames_of_each_link_type()[1][:2]
    _write(path, 1, [(BASE, 0, frame) for frame in frames])
    path.write_bytes(path.read_bytes()[:-10])   # a tap stopped in the middle of writing the last packet
    assert list(_read_frames(path)) == list(_scapy_frames(path))
    assert len(list(_read_frames(path))) == 2


def test_pcapng_still_goes_to_scapy(tmp_path):
    from scapy.layers.inet import IP, UDP
    from scapy.utils import PcapNgWriter

    path = tmp_path / "x.pcapng"
    with PcapNgWriter(str(path)) as writer:
        writer.write(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=500, dport=500))
    assert decode._pcap_records(path) is None
    assert [data[:1] for _, _, data in _read_frames(path)] == [b"\x45"]


def test_shared_analyses_read_each_capture_once_and_hand_out_packets_of_their_own(tmp_path, monkeypatch):
    reads = []
    real = analysis._analyze

    def counting(path, *args):
        reads.append(path.name)
        return real(path, *args)
    monkeypatch.setattr(analysis, "_analyze", counting)
    capture, keys = DEMO / "captures" / "nat-outside.pcap", DEMO / "keys"
    with shared_analyses():
        first, second = analyze_capture(capture, keys), analyze_capture(capture, keys)
        assert reads == ["nat-outside.pcap"]
        assert [p.line() for p in first.packets] == [p.line() for p in second.packets]
        for one in (first, second):
            one.packets[0].rewrite = "src 1.2.3.4 -> 5.6.7.8"   # match_nat writes on the packets it pairs
        third = analyze_capture(capture, keys)
        assert third.packets[0].rewrite is None and third.packets[0] is not second.packets[0]
        analyze_capture(capture)   # without keys: another analysis
        assert reads == ["nat-outside.pcap"] * 2
        copy = tmp_path / "nat-outside.pcap"
        copy.write_bytes(capture.read_bytes())
        analyze_capture(copy, keys)
        copy.write_bytes(capture.read_bytes()[:-100])   # the file changed: read again
        analyze_capture(copy, keys)
        assert len(reads) == 4
    analyze_capture(capture, keys)
    assert len(reads) == 5   # outside, every call reads
