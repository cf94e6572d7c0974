"""IKE and ESP in TCP streams (RFC 9329) as lab.viz reads them from captures: lab.viz.tcpstreams
on synthetic streams cut oddly, reordered, retransmitted, with holes and taken up mid-stream;
the ladder, the header layout and report.html on a real run of the ike-over-tcp scenario
(tests/data/tcp), counted against tshark (with tests/data/rfc9329.lua, as tshark 4.0 has no
RFC 9329 dissector of its own)."""
from __future__ import annotations

import json
import random
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.esp.tcpencap import PREFIX, frame_esp, frame_ike, frame_keepalive
from lab.viz.analysis import analyze_capture
from lab.viz.decode import decode_capture
from lab.viz.ladder import build_ladder
from lab.viz.tcpstreams import TcpStreams

from .ike_samples import sample_messages

DATA = Path(__file__).resolve().parent.parent / "data"
TCP_DATA = DATA / "tcp"
LUA = DATA / "rfc9329.lua"
CLIENT, SERVER = ("192.0.2.1", 40000), ("198.51.100.2", 4500)
ISN = 4_294_967_000   # the client's sequence numbers wrap past 2^32 within the stream


def _esp(spi: int, seq: int, size: int = 60) -> bytes:
    return struct.pack("!II", spi, seq) + bytes((seq + n) % 256 for n in range(size))


def _frames() -> tuple[list[bytes], list[tuple[str, bytes]]]:
    """The client's frames as they go on the wire and what each carries."""
    messages = [m.serialize() for m in sample_messages()[:4]]
    items = [("ike", m) for m in messages[:2]] + [("esp", _esp(0xC0FFEE01, n)) for n in range(1, 6)]
    items += [("keepalive", b"\xff"), ("ike", messages[2]), ("esp", _esp(0xC0FFEE01, 6, 1400)), ("ike", messages[3])]
    wire = [frame_ike(d) if k == "ike" else frame_esp(d) if k == "esp" else frame_keepalive() for k, d in items]
    return wire, items


def _segment(src, dst, seq: int, data: bytes = b"", flags: str = "PA", ack: int = 1) -> bytes:
    from scapy.layers.inet import IP, TCP
    from scapy.packet import Raw

    packet = IP(src=src[0], dst=dst[0]) / TCP(sport=src[1], dport=dst[1], flags=flags, seq=seq % 2**32, ack=ack)
    return bytes(packet / Raw(data) if data else packet)


def _client_segments(stream: bytes, cuts: list[int]) -> list[tuple[int, bytes]]:
    """(sequence number, data) of the client's stream cut at `cuts` (offsets into it)."""
    edges = [0] + sorted(c for c in set(cuts) if 0 < c < len(stream)) + [len(stream)]
    return [(ISN + 1 + a, stream[a:b]) for a, b in zip(edges, edges[1:])]


def _feed(segments: list[tuple[int, bytes]], syn: bool = True, server: tuple = SERVER) -> tuple[list, TcpStreams]:
    streams = TcpStreams()
    packets = []
    if syn:
        packets += [_segment(CLIENT, server, ISN, flags="S", ack=0), _segment(server, CLIENT, 9999, flags="SA",
                                                                              ack=ISN + 1)]
    packets += [_segment(CLIENT, server, seq, data) for seq, data in segments]
    frames = []
    for number, packet in enumerate(packets, start=1):
        frames += streams.feed(packet, number)
    frames += streams.close()
    return frames, streams


def _kinds(frames) -> list[tuple[str, bytes]]:
    return [(f.kind, f.data) for f in frames]


@pytest.mark.parametrize("piece", [1, 3, 7, 97, 1448])
def test_frames_whatever_the_segments(piece):
    wire, items = _frames()
    stream = PREFIX + b"".join(wire)
    frames, streams = _feed(_client_segments(stream, list(range(piece, len(stream), piece))))
    assert _kinds(frames) == items
    assert streams.stats["streams"] == 1 and not streams.notes
    # where each frame was: whole in one segment at `offset` of its IP packet, or carried by several
    for frame, data in zip(frames, wire):
        assert frame.wire == data
        assert (frame.offset is not None) == (len(frame.frames) == 1)


def test_segments_out_of_order_and_retransmitted():
    wire, items = _frames()
    stream = PREFIX + b"".join(wire)
    segments = _client_segments(stream, list(range(0, len(stream), 50)))
    reordered = segments[3:12]
    random.Random(7).shuffle(reordered)   # within what the follower holds
    segments[3:12] = reordered
    late = segments[20]
    segments.insert(25, late)                                  # the same segment again
    seq, data = segments[30]
    segments.insert(33, (seq - 20, stream[seq - 20 - ISN - 1:seq - ISN - 1] + data))   # overlapping the one before
    frames, streams = _feed(segments)
    assert _kinds(frames) == items
    assert streams.stats["retransmitted segments"] == 2 and streams.stats["segments held behind a hole"] > 0
    assert not streams.stats["holes skipped (segments the capture lost)"]


def test_a_segment_the_capture_lost():
    """One segment missing: its frame is lost, the frames after the hole are found again."""
    wire, items = _frames()
    segments = _client_segments(PREFIX + b"".join(wire), [len(PREFIX) + sum(map(len, wire[:n]))
                                                           for n in range(len(wire))])
    del segments[4]   # the third ESP frame (segment 0 is the prefix)
    frames, streams = _feed(segments)
    assert _kinds(frames) == items[:3] + items[4:]
    assert streams.stats["holes skipped (segments the capture lost)"] == 1 and streams.notes


def test_the_framing_found_again_inside_a_segment():
    """After a hole, a segment that starts inside a frame: the framing is found again where an
    ESP packet of an SPI the stream already carried begins, not at the next segment."""
    wire, items = _frames()
    stream = PREFIX + b"".join(wire)
    third = len(PREFIX) + sum(map(len, wire[:4]))   # where the third ESP frame starts
    segments = _client_segments(stream, [third + 10, third + 30, len(stream) - 5])
    del segments[1]   # octets 10-30 of the third ESP frame
    frames, streams = _feed(segments)
    assert _kinds(frames) == items[:4] + items[5:]
    assert streams.stats["resynchronised"] == 1 and not streams.stats["segments skipped (not at a frame boundary)"]


def test_a_capture_that_starts_mid_stream():
    """No SYN, no prefix: the follower skips segments until one begins a frame (port 4500)."""
    wire, items = _frames()
    stream = b"".join(wire)
    edges = [sum(map(len, wire[:n])) for n in range(len(wire))]
    edges[2] += 10   # the third segment starts inside the first ESP frame
    segments = [(ISN + 1000 + a, stream[a:b]) for a, b in zip(edges, edges[1:] + [len(stream)])]
    frames, streams = _feed(segments[2:], syn=False)
    assert _kinds(frames) == items[3:]
    assert streams.stats["streams taken up mid-stream"] == 1
    assert streams.stats["segments skipped (not at a frame boundary)"] == 1 and streams.stats["resynchronised"] == 1


def test_recognised_by_its_prefix_on_any_port():
    wire, items = _frames()
    hotel = (SERVER[0], 443)
    stream = PREFIX + b"".join(wire)
    frames, _ = _feed(_client_segments(stream, [3, 100, 500]), server=hotel)
    assert _kinds(frames) == items
    tls = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(500)   # a TLS ClientHello: left alone
    assert _feed(_client_segments(tls, [200]), server=hotel)[0] == []
    # port 4500 with something else than the prefix: left alone too
    assert _feed(_client_segments(b"GET / HTTP/1.1\r\n\r\n" + b"".join(wire), [40]))[0] == []


def test_the_servers_side_and_bad_framing():
    """The server's direction has no prefix; garbage between frames is counted and the framing
    found again at a later segment, never a traceback."""
    wire, items = _frames()
    streams = TcpStreams()
    packets = [_segment(CLIENT, SERVER, ISN, flags="S", ack=0), _segment(SERVER, CLIENT, 9999, flags="SA"),
               _segment(CLIENT, SERVER, ISN + 1, PREFIX + wire[0])]
    at = 10000
    for data in (wire[1], b"\x00\x01garbage", wire[3], wire[4]):
        packets.append(_segment(SERVER, CLIENT, at, data))
        at += len(data)
    frames = [f for n, p in enumerate(packets, start=1) for f in streams.feed(p, n)]
    assert _kinds(frames) == [items[0], items[1], items[3], items[4]]
    assert [f.src for f in frames] == [CLIENT[0], SERVER[0], SERVER[0], SERVER[0]]
    assert streams.stats["framing errors (short frame)"] == 1 and streams.stats["resynchronised"] == 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.sampled_from(["S", "SA", "PA", "R", "A", "F"]),
                          st.binary(max_size=300), st.booleans()), max_size=25))
def test_any_segments_never_raise(segments):
    streams = TcpStreams()
    for number, (seq, flags, data, outward) in enumerate(segments, start=1):
        src, dst = (CLIENT, SERVER) if outward else (SERVER, CLIENT)
        streams.feed(_segment(src, dst, seq, data, flags), number)
        streams.feed(_segment(src, dst, ISN + 1, PREFIX + data), number)
    streams.close()


def _write_pcap(path: Path, packets: list[bytes]) -> None:
    from scapy.layers.inet import IP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    wrpcap(str(path), [Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(p) for p in packets])


def test_each_frame_a_packet_and_an_arrow(tmp_path):
    """Two IKE messages in one segment are two arrows; one split over segments is one arrow."""
    wire, items = _frames()
    stream = PREFIX + b"".join(wire)
    cut = len(PREFIX) + len(wire[0]) + len(wire[1]) + 30   # both first IKE messages in one segment, the ESP split
    packets = [_segment(CLIENT, SERVER, ISN, flags="S", ack=0), _segment(SERVER, CLIENT, 9999, flags="SA")]
    packets += [_segment(CLIENT, SERVER, seq, data) for seq, data in _client_segments(stream, [cut, cut + 500])]
    _write_pcap(tmp_path / "s.pcap", packets)
    capture = analyze_capture(tmp_path / "s.pcap")
    ike = capture.ike()
    assert [p.ike.length for p in ike] == [len(d) for k, d in items if k == "ike"]
    assert ike[0].frame == ike[1].frame == 3 and ike[0].tcp.offset == 20 + 20 + len(PREFIX)
    assert all(p.tcp is not None and p.what().split("[")[0].endswith("in TCP ") for p in ike)
    ladder = build_ladder([capture])
    arrows = [a for a in ladder.arrows if a.kind == "ike"]
    assert len(arrows) == 4 and all(a.label.endswith("(TCP)") and a.tcp and not a.port4500 for a in arrows)
    assert sum(b.count for b in ladder.bands if b.protocol == "ESP") == 6
    assert {b.tcp_port for b in ladder.bands if b.protocol == "ESP"} == {4500}
    summary = decode_capture(tmp_path / "s.pcap")
    assert [m.length for m in summary.messages] == [p.ike.length for p in ike]
    assert (summary.tcp_streams, summary.esp_in_tcp, summary.tcp_broken) == (1, 6, 0)


# ---------------------------------------------------------------- a real run of ike-over-tcp


def _tshark(pcap: Path, *args: str) -> str:
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.fail("tshark is missing: install Debian's tshark package (make setup does)")
    return subprocess.run([tshark, "-X", f"lua_script:{LUA}", "-r", str(pcap), *args], check=True,
                          capture_output=True, text=True, timeout=120).stdout


def _tshark_ike_and_esp(pcap: Path) -> tuple[int, set[tuple[int, int]]]:
    """IKE messages and ESP (SPI, sequence number) that tshark finds in the capture."""
    ike, esp = 0, set()
    for line in _tshark(pcap, "-T", "fields", "-e", "isakmp.exchangetype", "-e", "esp.spi", "-e",
                        "esp.sequence").splitlines():
        exchanges, spis, seqs = (line.split("\t") + ["", "", ""])[:3]
        ike += len([e for e in exchanges.split(",") if e])
        esp |= {(int(s, 16), int(n)) for s, n in zip(spis.split(","), seqs.split(",")) if s and n}
    return ike, esp


@pytest.mark.parametrize("side", ["nat-inside", "nat-outside"])
def test_the_real_capture_as_tshark_reads_it(side):
    pcap = TCP_DATA / f"{side}.pcap"
    assert "Malformed" not in _tshark(pcap, "-V")
    ike, esp = _tshark_ike_and_esp(pcap)
    capture = analyze_capture(pcap, TCP_DATA / "keys")
    ladder = build_ladder([capture])
    arrows = [a for a in ladder.arrows if a.kind == "ike"]
    assert len(arrows) == len(capture.ike()) == ike == (7 if side == "nat-inside" else 6)
    assert sum(a.tcp for a in arrows) == 6 and all(not a.label.startswith("not a valid") for a in arrows)
    # every message decrypted with the run's keys, every ESP packet opened
    assert all(p.ike.inner is not None for p in capture.ike() if p.ike.encrypted)
    ours = {(p.ipsec.spi, p.ipsec.seq) for p in capture.ipsec()}
    assert all(p.ipsec.decrypted and p.ipsec.tcp for p in capture.ipsec())
    # tshark loses what follows the hole in the first stream (the transfer cut out); we find it again
    assert esp <= ours and len(ours) == (18 if side == "nat-inside" else 22)
    assert capture.tcp["holes skipped (segments the capture lost)"] == 2


def test_the_ladder_across_the_nat_box_and_report_html():
    from lab.viz.html import _ladder_json

    inside = analyze_capture(TCP_DATA / "nat-inside.pcap", TCP_DATA / "keys")
    outside = analyze_capture(TCP_DATA / "nat-outside.pcap", TCP_DATA / "keys")
    topology = json.loads((TCP_DATA / "topology.json").read_text())
    ladder = build_ladder([inside, outside], topology)
    arrows = [a for a in ladder.arrows if a.kind == "ike"]
    assert [a.label for a in arrows] == ["IKE_SA_INIT request 0", "IKE_SA_INIT request 0  (TCP)",
                                         "IKE_SA_INIT response 0  (TCP)", "IKE_AUTH request 1  (TCP)",
                                         "IKE_AUTH response 1  (TCP)", "INFORMATIONAL request 0  (TCP)",
                                         "INFORMATIONAL response 0  (TCP)"]
    assert arrows[0].note == "not seen outside the NAT box"
    assert all(a.via is not None and a.note.startswith("NAT: ") for a in arrows[1:])
    assert any("over TCP nothing moves" in c for c in arrows[2].callouts)   # RFC 9329 §6.5
    page = _ladder_json(ladder, [inside, outside], inside.keys, [])
    rows = [r for r in page["rows"] if r["type"] == "arrow" and r["tcp"]]
    assert len(rows) == 6 and all(r["header"].startswith(r["label"].split("  ")[0].split(" ")[0]) for r in rows)
    segments = [s[2] for s in rows[0]["sides"][0]["bytes"]["segments"]]
    assert segments[:5] == ["IP header", "TCP", "length", "non-ESP marker", "IKE header"]
    bands = [r for r in page["rows"] if r["type"] == "band" and r["protocol"] == "ESP"]
    assert bands and all(r["tcp_port"] == 4500 for r in bands)
    assert [s[2] for s in bands[0]["packets"][0]["bytes"]["segments"]][:4] == ["IP header", "TCP", "length", "SPI"]


def test_the_live_reader_opens_tcp_frames_when_keys_appear(tmp_path):
    """`ipsec-lab watch`: an IKE message in a stream that needs keys written a moment ago is
    opened again as the frame it is, not as the TCP segment that carried it."""
    from lab.viz.decode import _read_frames
    from lab.viz.live import LiveKeys, LiveTap

    tap = LiveTap("nat-outside", LiveKeys([], [(tmp_path, "nodes/*/keys")]))
    lines = []
    for frame, stamp, ip in _read_frames(TCP_DATA / "nat-outside.pcap"):
        if frame == 10:   # the IKE_AUTH request: the keys are written now
            shutil.copytree(TCP_DATA / "keys", tmp_path / "nodes" / "gwa" / "keys")
        lines.append(tap.add(stamp, ip).line())
    auth = [line for line in lines if "IKE_AUTH" in line]
    assert len(auth) == 2 and all(" in TCP [ SK{ ID" in line for line in auth), auth
    assert sum("ESP in TCP SPI" in line and "ICMP echo" in line for line in lines) >= 4
