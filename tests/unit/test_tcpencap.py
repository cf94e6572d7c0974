"""RFC 9329 framing (lab.esp.tcpencap): frames out of a stream fed in any pieces, and hostile
framing (short, oversized, garbage, a wrong prefix) stopping the decoder with a reason."""
from __future__ import annotations

import shutil
import struct
import subprocess

import pytest

from lab.esp.tcpencap import (MAX_FRAME, PREFIX, FramingError, StreamDecoder, frame_esp, frame_ike,
                              frame_keepalive)

from .ike_samples import sample_messages

ESP = struct.pack("!II", 0xC0FFEE01, 1) + bytes(range(40))


def _stream() -> tuple[bytes, list[tuple[str, bytes]]]:
    messages = [m.serialize() for m in sample_messages()[:6]]
    data = PREFIX + b"".join(frame_ike(m) for m in messages) + frame_esp(ESP) + frame_keepalive()
    return data, [("ike", m) for m in messages] + [("esp", ESP), ("keepalive", b"\xff")]


def test_the_wire_format():
    message = sample_messages()[0].serialize()
    framed = frame_ike(message)
    # RFC 9329 §3.1: a length counting itself, four zero octets, the IKE header
    assert framed[:2] == struct.pack("!H", 2 + 4 + len(message)) and framed[2:6] == bytes(4)
    assert frame_esp(ESP)[:2] == struct.pack("!H", 2 + len(ESP))
    assert frame_keepalive() == b"\x00\x03\xff"
    assert PREFIX == bytes.fromhex("494b45544350")


@pytest.mark.parametrize("piece", [1, 2, 3, 7, 100, 100000])
def test_frames_come_out_whatever_the_pieces(piece):
    data, expected = _stream()
    decoder = StreamDecoder(expect_prefix=True)
    frames = []
    for at in range(0, len(data), piece):
        frames += decoder.feed(data[at:at + piece])
    assert decoder.error is None and decoder.close() is None
    assert [(f.kind, f.data) for f in frames] == expected
    assert sum(f.wire_length for f in frames) == len(data) - len(PREFIX)
    assert decoder.stats["ike"] == 6 and decoder.stats["esp"] == 1 and decoder.stats["keepalive"] == 1


def test_the_initiators_side_has_no_prefix():
    data, expected = _stream()
    decoder = StreamDecoder(expect_prefix=False)
    assert [(f.kind, f.data) for f in decoder.feed(data[len(PREFIX):])] == expected
    bad = StreamDecoder(expect_prefix=False)
    bad.feed(data)  # the prefix where none belongs: 0x494b is a 18763-octet length
    assert bad.error is not None and bad.error.reason == "oversized frame"


def _fails(data: bytes, reason: str, prefix: bool = True, max_frame: int = MAX_FRAME) -> StreamDecoder:
    decoder = StreamDecoder(expect_prefix=prefix, max_frame=max_frame)
    good = frame_esp(ESP)
    frames = decoder.feed((PREFIX if prefix else b"") + good + data + good)
    # the frames before the error are handed back, none after it
    assert [f.kind for f in frames] == ["esp"]
    assert isinstance(decoder.error, FramingError) and decoder.error.reason == reason, decoder.error
    assert decoder.feed(good) == []  # failed for good
    assert decoder.stats[f"error {reason}"] == 1
    return decoder


def test_oversized():
    _fails(struct.pack("!H", MAX_FRAME + 1) + bytes(100), "oversized frame")
    _fails(struct.pack("!H", 1501), "oversized frame", max_frame=1500)
    # the largest allowed frame passes
    decoder = StreamDecoder(expect_prefix=False, max_frame=len(frame_esp(ESP)))
    assert decoder.feed(frame_esp(ESP))[0].data == ESP


@pytest.mark.parametrize("length", [0, 1, 2])
def test_short_length(length):
    _fails(struct.pack("!H", length), "short frame")


def test_short_messages():
    _fails(struct.pack("!H", 5) + b"abc", "short frame")                       # 3 octets: neither
    _fails(struct.pack("!H", 2 + 4 + 10) + bytes(14), "short frame")          # marker, then 10 octets
    _fails(struct.pack("!H", 2 + 6) + struct.pack("!I", 0x1000) + b"xx", "short frame")  # 6-octet ESP


def test_garbage_between_frames():
    # an IKE header whose Length is not the frame's
    message = bytearray(sample_messages()[0].serialize())
    message[24:28] = struct.pack("!I", len(message) + 1)
    _fails(struct.pack("!H", 2 + 4 + len(message)) + bytes(4) + message, "garbage")
    _fails(struct.pack("!H", 2 + 12) + struct.pack("!I", 7) + bytes(8), "garbage")   # reserved SPI
    _fails(struct.pack("!H", 2 + 1) + b"\x00", "short frame")                         # not 0xFF


def test_bad_prefix():
    decoder = StreamDecoder(expect_prefix=True)
    assert decoder.feed(b"GET / HTTP/1.1\r\n") == []
    assert decoder.error.reason == "bad prefix"
    early = StreamDecoder(expect_prefix=True)
    assert early.feed(b"IKE") == [] and early.error is None  # a prefix still arriving
    early.feed(b"X")
    assert early.error.reason == "bad prefix"


def test_a_stream_ending_inside_a_frame():
    data, _ = _stream()
    decoder = StreamDecoder(expect_prefix=True)
    decoder.feed(data[:-1])
    assert decoder.error is None
    assert decoder.close().reason == "truncated"


def test_framing_refuses_what_it_cannot_carry():
    with pytest.raises(ValueError):
        frame_esp(bytes(8))  # a zero SPI would read as an IKE message
    with pytest.raises(ValueError):
        frame_ike(bytes(0xFFFF))


def _stream_pcap(path, data: bytes, piece: int = 500, skip: int | None = None) -> None:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw
    from scapy.utils import wrpcap

    a, b = ("192.0.2.1", 40000), ("192.0.2.2", 4500)
    ether = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    packets = [ether / IP(src=a[0], dst=b[0]) / TCP(sport=a[1], dport=b[1], flags="S", seq=999),
               ether / IP(src=b[0], dst=a[0]) / TCP(sport=b[1], dport=a[1], flags="SA", seq=4999, ack=1000),
               ether / IP(src=a[0], dst=b[0]) / TCP(sport=a[1], dport=b[1], flags="A", seq=1000, ack=5000)]
    seq = 1000
    for n, at in enumerate(range(0, len(data), piece)):
        chunk = data[at:at + piece]
        if n != skip:
            packets.append(ether / IP(src=a[0], dst=b[0]) / TCP(sport=a[1], dport=b[1], flags="PA", seq=seq,
                                                                ack=5000) / Raw(chunk))
        if n == 0:  # a retransmission of the first segment: read once
            packets.append(packets[-1].copy())
        seq += len(chunk)
    wrpcap(str(path), packets)


def test_lab_viz_decodes_ike_and_esp_in_a_tcp_stream(tmp_path):
    from lab.viz.decode import decode_capture

    data, expected = _stream()
    _stream_pcap(tmp_path / "s.pcap", data, piece=97)
    summary = decode_capture(tmp_path / "s.pcap")
    assert [(m.exchange, m.length) for m in summary.messages] == [
        (d[18], len(d)) for kind, d in expected if kind == "ike"]
    assert all(m.error is None for m in summary.messages)
    assert (summary.tcp_streams, summary.esp_in_tcp, summary.keepalives, summary.tcp_broken) == (1, 1, 1, 0)
    # a segment missing from the capture: the stream is left, counted
    _stream_pcap(tmp_path / "gap.pcap", data, piece=97, skip=3)
    gap = decode_capture(tmp_path / "gap.pcap")
    assert gap.tcp_broken == 1 and len(gap.messages) < 6


def test_tshark_opens_a_tcp_encapsulated_stream_cleanly(tmp_path):
    """tshark 4.0 reassembles the stream with no error. (It has no RFC 9329 dissector: its
    'tcpencap' is Cisco's older format, and decoding port 4500 as it calls ours malformed, so
    nothing is forced here; lab.viz reads the frames.)"""
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.fail("tshark is missing: install Debian's tshark package (make setup does)")
    data, _ = _stream()
    pcap = tmp_path / "tcp-encap.pcap"
    _stream_pcap(pcap, data)
    run = lambda *args: subprocess.run([tshark, "-r", str(pcap), *args], check=True, capture_output=True,  # noqa: E731
                                       text=True, timeout=120).stdout
    assert "Malformed" not in run("-V")
    assert "Errors (" not in run("-q", "-z", "expert,error")
