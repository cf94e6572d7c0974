"""The alternatives' figures against tshark: every field lab.viz.vpns cuts out of a captured
WireGuard or OpenVPN message sits where tshark's dissector puts it, with the same value; the
ladders count what tshark counts; the header layouts' octet counts and the MTU figure's
captured packets are tshark's; the overhead is each format's arithmetic. The capture is the
outside of one run of compare-site-to-site (tests/data/alternatives, trimmed)."""
from __future__ import annotations

from pathlib import Path

import pytest

from lab.viz.alternatives import (
    build_vpn_ladder,
    draw_vpn_ladder,
    draw_vpn_layouts,
    draw_vpn_mtu,
    first_data,
    nat_names,
    vpn_layout,
    vpn_layouts,
    vpn_mtu_model,
)
from lab.viz.analysis import analyze_capture
from lab.viz.keys import load_keys
from lab.viz.vpns import FORMATS, VpnFormat, handshake_before_data, register, vpn_packets
from tests.tshark import named, number, pdml_frames, tshark

DATA = Path(__file__).parent.parent / "data" / "alternatives"
PCAP = DATA / "compare-site-to-site.pcap"
BY_KEY = {f.key: f for f in FORMATS}


def _tshark(*args: str) -> str:
    return tshark(PCAP, *args, decode_as=[d for f in FORMATS for d in f.tshark_decode_as])


@pytest.fixture(scope="module")
def capture():
    return analyze_capture(PCAP, load_keys(DATA / "keys"))


@pytest.fixture(scope="module")
def found(capture):
    return vpn_packets(capture)


@pytest.fixture(scope="module")
def pdml() -> dict[int, list[dict]]:
    """Frame number -> every proto and field tshark dissects in it (name, pos, size, show, ...),
    positions relative to the IP header."""
    return pdml_frames(_tshark("-T", "pdml"))


def test_tshark_finds_nothing_malformed():
    assert "Malformed" not in _tshark("-V")
    assert "Errors (" not in _tshark("-q", "-z", "expert,error")


def test_the_capture_holds_every_format(found):
    assert {f.format.key for f in found} == {"wireguard", "openvpn", "openvpn-tcp"}


def test_every_field_sits_where_tshark_puts_it_with_its_value(found, pdml, capture):
    checked = 0
    for item in found:
        if item.offset is None:
            continue
        items = pdml[item.packet.frame]
        for f in item.message.fields:
            where = f"frame {item.packet.frame}: {item.message.label} {f.name}"
            if not f.tshark:
                # octets tshark does not cut further: inside the message as tshark spans it
                proto = named(items, item.format.tshark_proto, item.offset - 2 * item.format.tcp_length_prefix)
                assert proto and proto[0]["pos"] <= item.offset + f.start and \
                    item.offset + f.end <= proto[0]["pos"] + proto[0]["size"], where
                continue
            theirs = named(items, f.tshark, item.offset + f.start)
            assert theirs, f"{where}: tshark has no {f.tshark} at offset {item.offset + f.start}"
            assert theirs[0]["size"] == f.length, where
            if f.value:
                assert number(f.value) == number(theirs[0]["show"]), f"{where}: ours {f.value}, tshark {theirs[0]}"
            checked += 1
        if item.format.tshark_length:
            length = named(items, item.format.tshark_length, item.offset - 2)
            assert length and int(length[0]["show"]) == item.message.length
    assert checked > 300


def test_data_fields_fill_tsharks_block(found, pdml):
    """Packet id, tag and ciphertext (OpenVPN), ciphertext and tag (WireGuard): together exactly
    the octets tshark dissects as one."""
    for item in found:
        if item.message.handshake or item.offset is None:
            continue
        rest = named(pdml[item.packet.frame], item.format.tshark_rest)
        ours = [f for f in item.message.fields if not f.tshark]
        if not ours:
            continue
        span = (item.offset + ours[0].start, item.offset + ours[-1].end)
        assert any((r["pos"], r["pos"] + r["size"]) == span for r in rest), f"frame {item.packet.frame}"


def test_tshark_counts_the_same_messages(found):
    rows = [r.split("\t") for r in _tshark("-T", "fields", "-e", "wg.type", "-e", "openvpn.opcode", "-e",
                                            "tcp.port", "-E", "occurrence=a").splitlines()]
    wg = [int(t) for row in rows for t in row[0].split(",") if t]
    udp = [int(o, 0) for row in rows if not row[2] for o in row[1].split(",") if o]
    tcp = [int(o, 0) for row in rows if row[2] for o in row[1].split(",") if o]
    assert [int(f.message.fields[0].value) for f in found if f.format.key == "wireguard"] == wg
    assert [number(f.message.fields[0].value) for f in found if f.format.key == "openvpn"] == udp
    assert [number(f.message.fields[0].value) for f in found if f.format.key == "openvpn-tcp"] == tcp


def test_wireguard_handshake_is_two_messages_one_round_trip(capture, found):
    handshake = [f for f in handshake_before_data(found, BY_KEY["wireguard"]) if f.message.handshake]
    assert [f.message.label for f in handshake] == ["Handshake Initiation", "Handshake Response"]
    assert (handshake[0].src, handshake[0].dst) == (handshake[1].dst, handshake[1].src)
    assert [f.message.length for f in handshake] == [148, 92]
    ladder = build_vpn_ladder(capture, BY_KEY["wireguard"], found=found)
    assert [a.label for a in ladder.arrows] == ["Handshake Initiation", "Handshake Response"]
    assert sum(b.count for b in ladder.bands) == sum(1 for f in found if f.format.key == "wireguard") - 2


@pytest.mark.parametrize("key", ["openvpn", "openvpn-tcp"])
def test_openvpn_ladder_has_as_many_control_packets_as_tshark(capture, found, key):
    port = "tcp.port==443" if key == "openvpn-tcp" else "udp.port==1194"
    rows = _tshark("-Y", port, "-T", "fields", "-e", "openvpn.opcode", "-E", "occurrence=a").split()
    opcodes = [int(o, 0) for row in rows for o in row.split(",")]
    ladder = build_vpn_ladder(capture, BY_KEY[key], found=found)
    assert len(ladder.arrows) == sum(1 for o in opcodes if o not in (6, 9)) == 16
    assert sum(b.count for b in ladder.bands) == sum(1 for o in opcodes if o in (6, 9))
    assert ladder.arrows[0].label == "P_CONTROL_HARD_RESET_CLIENT_V2"
    assert ladder.arrows[1].label == "P_CONTROL_HARD_RESET_SERVER_V2"


def test_layout_octets_are_tsharks(capture, found, pdml):
    layouts = vpn_layouts([capture], {id(capture): found})
    assert [l.form for l in layouts] == ["ESP-in-UDP tunnel", "WireGuard data", "OpenVPN data",
                                         "OpenVPN over TCP data"]
    for layout in layouts[1:]:
        frame = int(layout.source.rsplit(":", 1)[1])
        items = pdml[frame]
        assert layout.length == int(named(items, "ip.len")[0]["show"])
        transport = named(items, "udp") or named(items, "tcp")
        header = next(s for s in layout.segments if s.label in ("UDP", "TCP"))
        assert (header.start, header.length) == (transport[0]["pos"], 8 if header.label == "UDP"
                                                 else int(named(items, "tcp.hdr_len")[0]["show"]))
        # the segments tile the packet: no octet twice, none left out
        assert [s.start for s in layout.segments[1:]] == [s.end for s in layout.segments[:-1]]
        assert layout.segments[-1].end == layout.length
    wireguard, openvpn, tcp = layouts[1:]
    # the 84-octet ping: WireGuard pads it to 96, OpenVPN's GCM does not pad
    assert (wireguard.length, openvpn.length, tcp.length) == (156, 136, 162)
    assert wireguard.encrypted[1] - wireguard.encrypted[0] == 96
    assert openvpn.encrypted[1] - openvpn.encrypted[0] == 84


def test_overhead_is_the_formats_arithmetic():
    wireguard, openvpn, tcp = (BY_KEY[k] for k in ("wireguard", "openvpn", "openvpn-tcp"))
    for inner in range(28, 1421):
        # WireGuard: 16 octets of header, the inner packet padded to 16 (not beyond the interface's
        # MTU, 1420), a 16-octet tag, UDP and IP
        assert wireguard.wire_size(inner) == (20 + 8 + 16 + min(-(-inner // 16) * 16, 1420) + 16,) * 2
        # OpenVPN P_DATA_V2 with GCM: opcode and peer id, packet id, tag; no padding
        assert openvpn.wire_size(inner) == (20 + 8 + 4 + 4 + 16 + inner,) * 2
        assert tcp.wire_size(inner) == (20 + 32 + 2 + 4 + 4 + 16 + inner,) * 2


def test_mtu_figure_observations_are_tsharks(capture, found, pdml):
    model = vpn_mtu_model([capture], found={id(capture): found})
    assert model.largest["WireGuard, ChaCha20-Poly1305"] == 1420     # its interface's MTU (the path: 1440)
    assert model.largest["OpenVPN, AES-256-GCM"] == 1448             # 1500 - 52
    assert model.largest["ESP-in-UDP tunnel, AES-GCM-128"] == 1438
    # no OpenConnect in this capture: its rows come from the defaults, and the note says so
    assert "OpenConnect: not in these captures" in model.note and "chose in these captures" not in model.note
    vpn_seen = [o for o in model.seen if o.config.startswith("OpenVPN")]
    assert vpn_seen and not [o for o in model.seen if o.config.startswith("WireGuard")]
    for seen in vpn_seen:
        items = pdml[int(seen.source.rsplit(":", 1)[1])]
        assert seen.wire == int(named(items, "ip.len")[0]["show"])
        data = named(items, "openvpn.data")
        assert seen.inner == data[0]["size"] - 4 - 16      # packet id and tag before the ciphertext
        overhead = model.series[seen.config][model.sizes.index(seen.inner)] - seen.inner
        assert seen.wire - seen.inner == overhead


def test_a_third_format_plugs_in(capture, tmp_path):
    """A format registered later is found, drawn in the ladder and the MTU figure by the same code."""
    class Echo(VpnFormat):
        def parse(self, payload):
            from lab.viz.vpns import VpnMessage
            return VpnMessage("echo", True, len(payload), [])

        def payload_size(self, inner):
            return inner + 10, inner + 10

    echo = Echo("Echo", "echo", "#000000", "udp", (51820,))
    register(echo)
    try:
        assert any(f.format.key == "echo" for f in vpn_packets(capture, [echo]))
        assert build_vpn_ladder(capture, echo).arrows
        assert "Echo" in vpn_mtu_model([capture], formats=[echo]).series
        with pytest.raises(ValueError):
            register(Echo("Echo", "echo", "#000000", "udp", (1,)))
    finally:
        FORMATS.remove(echo)


def test_figures_are_drawn_readable(capture, found, tmp_path):
    """Every slide 1920 x 1080, no text on it under 20 pixels (as lab/viz/style.py asks)."""
    from lab.viz.style import SLIDE_MIN_PX

    from .test_viz_slides import png_size, svg_text_pixels
    found_by = {id(capture): found}
    figures = [draw_vpn_ladder(capture, fmt, tmp_path / f"ladder-{fmt.key}", found=found) for fmt in FORMATS]
    figures += [draw_vpn_layouts([capture], tmp_path / "headers", found_by),
                draw_vpn_mtu([capture], tmp_path / "mtu", found=found_by)]
    slides = 0
    for figure in figures:
        for path in figure.files:
            assert path.exists()
        for png, _ in figure.entries():
            assert png_size(png)[0] == 1920
            if png_size(png) == (1920, 1080):
                slides += 1
                small = [(t, px) for t, px in svg_text_pixels(png.with_suffix(".svg")) if t.strip() and px < SLIDE_MIN_PX]
                assert not small, f"{png.name}: {small[:3]}"
    assert slides >= 7


def test_nat_names_names_the_gateway_behind_the_box(capture, found):
    assert nat_names([capture], None, {id(capture): found}) == {}   # only the outside: unknown
    first = first_data(found, BY_KEY["wireguard"])
    assert first is not None and vpn_layout(first).length == 156


def test_a_band_says_how_many_counters_the_capture_lacks(capture, found):
    complete = build_vpn_ladder(capture, BY_KEY["wireguard"], found=found)
    assert not any("not in this capture" in b.label for b in complete.bands)
    data = [f for f in found if f.format.key == "wireguard" and not f.message.handshake]
    data = [f for f in data if f.message.session == data[0].message.session]
    dropped = {id(f) for f in data[3:6]}    # three packets of one direction the capture did not keep
    ladder = build_vpn_ladder(capture, BY_KEY["wireguard"], found=[f for f in found if id(f) not in dropped])
    assert "3 counters between not in this capture" in ladder.bands[0].label


def _client_segments(capture) -> list:
    """OpenVPN over TCP: the client's segments to port 443 that carry data, in capture order."""
    from lab.viz.vpns import ip_transport

    out = []
    for packet in capture.packets:
        transport = ip_transport(packet)
        if transport and transport[0] == 6 and transport[2] == 443 and len(packet.data) > transport[3]:
            out.append(packet)
    return out


def test_a_segment_captured_after_the_next_one_is_waited_for(capture, found):
    # a retransmission the tap saw after later segments (the first copy lost on the path before it)
    from lab.viz.analysis import CaptureAnalysis
    from lab.viz.vpns import vpn_unread

    segments = _client_segments(capture)
    late, after = segments[len(segments) // 2], segments[len(segments) // 2 + 1]
    packets = [p for p in capture.packets if p is not late]
    packets.insert(packets.index(after) + 1, late)
    reordered = CaptureAnalysis(capture.path, packets, capture.keys)
    ours = [(f.packet.frame, f.message.label, f.message.counter) for f in vpn_packets(reordered)]
    assert ours == [(f.packet.frame, f.message.label, f.message.counter) for f in found]
    assert vpn_unread(reordered) == {} == vpn_unread(capture)


def test_a_gap_that_never_fills_is_said_not_drawn(capture, tmp_path):
    from lab.viz.analysis import CaptureAnalysis
    from lab.viz.vpns import vpn_unread

    segments = _client_segments(capture)
    k = len(segments) // 2
    missed = CaptureAnalysis(capture.path, [p for p in capture.packets if p is not segments[k]], capture.keys)
    assert vpn_unread(missed) == {"openvpn-tcp": len(segments) - k - 1}   # every later segment of that direction
    ladder = build_vpn_ladder(missed, BY_KEY["openvpn-tcp"])
    assert ladder.notes == [f"Not drawn: {len(segments) - k - 1:,} TCP segments of OpenVPN over TCP after a gap in "
                            "this capture that never filled (a packet the tap missed; tcpdump counts those it "
                            "dropped in logs/tap-*.txt). The messages and data packets counted here are those "
                            "before the gap."]
    figure = draw_vpn_ladder(missed, BY_KEY["openvpn-tcp"], tmp_path / "ladder")
    assert figure.caption.endswith(f"; {len(segments) - k - 1} TCP segments after a gap in the capture not read")
    assert build_vpn_ladder(capture, BY_KEY["openvpn-tcp"]).notes == []


def test_ike_and_esp_in_tcp_to_443_are_not_taken_for_openvpn(tmp_path):
    """A stream to TCP 443 that starts with "IKETCP" (RFC 9329 §3) is IKE and ESP, not OpenVPN
    over TCP: read as OpenVPN, "IK" was a length of 18763 and "E" opcode 8, and restrictive-network's
    OpenVPN ladder drew the hotel's IPsec pair as a P_CONTROL_WKC_V1 with thousands of ACKs."""
    import struct

    from scapy.layers.inet import IP, TCP
    from scapy.utils import wrpcap

    ike = bytes(8) + bytes(8) + bytes([33, 0x20, 34, 0x08]) + struct.pack("!II", 0, 28)   # an IKE header
    stream = b"IKETCP" + struct.pack("!H", 2 + 4 + len(ike)) + bytes(4) + ike             # non-ESP marker
    stream += struct.pack("!H", 2 + 40) + struct.pack("!II", 0x1234, 1) + bytes(32)       # one ESP frame
    packets = []
    for i, (flags, seq, data) in enumerate([("S", 1000, b""), ("A", 1001, stream)]):
        p = IP(src="198.51.100.1", dst="198.51.100.7") / TCP(sport=45832, dport=443, flags=flags, seq=seq) / data
        p.time = 1.0 + i / 100
        packets.append(p)
    wrpcap(str(tmp_path / "hotel.pcap"), packets)
    openvpn_tcp = [f for f in FORMATS if f.name == "OpenVPN over TCP"]
    assert openvpn_tcp and not openvpn_tcp[0].claims(stream)
    assert [m for m in vpn_packets(analyze_capture(tmp_path / "hotel.pcap")) if "OpenVPN" in m.format.name] == []
