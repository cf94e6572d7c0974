"""OpenConnect in the alternatives' figures, against tshark: every field lab.viz.vpns cuts out of a
captured TLS record (TCP 443) or DTLS datagram (UDP 443) sits where tshark's dissector puts it, with
the same value; the ladders count the records tshark counts; the header layouts' octets and the
MTU figure's captured packets are tshark's; the overhead is the records' arithmetic. The captures
(tests/data/openconnect, see make_openconnect.py) are the internet side of restrictive-network
(OpenConnect's data in TLS, OpenVPN over TCP 443 beside it) and of compare-roaming (DTLS)."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest

from lab.viz.alternatives import build_vpn_ladder, draw_vpn_ladder, draw_vpn_layouts, draw_vpn_mtu, vpn_layouts, vpn_mtu_model
from lab.viz.analysis import analyze_capture
from lab.viz.vpns import FORMATS, VpnFormat, VpnPacket, vpn_packets
from tests.tshark import named, pdml_frames, same, tshark

DATA = Path(__file__).parent.parent / "data" / "openconnect"
RUNS = ("restrictive-network", "compare-roaming")
BY_KEY = {f.key: f for f in FORMATS}


def _tshark(pcap: Path, fmt: VpnFormat, found: list[VpnPacket], *args: str) -> str:
    """tshark on the frames of one format's flows, told what that format needs (-d): OpenVPN and
    TLS share TCP 443 in restrictive-network, and tshark decodes a port one way."""
    servers = sorted({i.src if i.packet.sport in fmt.ports else i.dst for i in found if i.format.key == fmt.key})
    ports = " ".join(map(str, fmt.ports))
    where = f"{fmt.transport}.port in {{{ports}}} && ip.addr in {{{' '.join(servers)}}}"
    return tshark(pcap, *args, decode_as=fmt.tshark_decode_as, where=where)


@pytest.fixture(scope="module", params=RUNS)
def run(request):
    pcap = DATA / f"{request.param}.pcap"
    capture = analyze_capture(pcap)
    found = vpn_packets(capture)
    return request.param, pcap, capture, found


def _formats(found: list[VpnPacket]) -> list[VpnFormat]:
    return [f for f in FORMATS if any(i.format.key == f.key for i in found)]


def _pdml(pcap: Path, fmt: VpnFormat, found: list[VpnPacket]) -> dict[int, list[dict]]:
    return pdml_frames(_tshark(pcap, fmt, found, "-T", "pdml"))


def test_the_captures_hold_what_they_should(run):
    name, _, _, found = run
    keys = {f.format.key for f in found}
    assert keys == ({"openconnect-tls", "openvpn-tcp"} if name == "restrictive-network" else
                    {"openconnect-tls", "openconnect"})


def test_tshark_finds_nothing_malformed(run):
    _, pcap, _, found = run
    for fmt in _formats(found):
        assert "Malformed" not in _tshark(pcap, fmt, found, "-V"), fmt.key
        assert "Errors (" not in _tshark(pcap, fmt, found, "-q", "-z", "expert,error"), fmt.key


def test_every_field_sits_where_tshark_puts_it_with_its_value(run):
    _, pcap, _, found = run
    checked = 0
    for fmt in _formats(found):
        pdml = _pdml(pcap, fmt, found)
        for item in found:
            if item.format.key != fmt.key or item.offset is None:
                continue
            items = pdml[item.packet.frame]
            # the message as tshark spans it: the TLS record, the DTLS datagram, OpenVPN's message
            span = named(items, fmt.tshark_proto, item.offset - 2 * fmt.tcp_length_prefix)
            assert span, f"frame {item.packet.frame}: no {fmt.tshark_proto} at {item.offset}"
            for f in item.message.fields:
                where = f"frame {item.packet.frame}: {item.message.label} {f.name}"
                if not f.tshark:
                    assert span[0]["pos"] <= item.offset + f.start and \
                        item.offset + f.end <= span[0]["pos"] + span[0]["size"], where
                    continue
                theirs = named(items, f.tshark, item.offset + f.start)
                assert theirs, f"{where}: tshark has no {f.tshark} at offset {item.offset + f.start}"
                assert theirs[0]["size"] == f.length, where
                if f.value:
                    assert same(f.value, theirs[0]["show"]), f"{where}: ours {f.value}, tshark {theirs[0]['show']}"
                checked += 1
            if not item.message.handshake and fmt.key.startswith("openconnect"):
                # nonce, AnyConnect header, inner packet, tag: together exactly tshark's encrypted data
                rest = named(items, fmt.tshark_rest)
                body = [f for f in item.message.fields if not f.tshark]
                assert any((r["pos"], r["pos"] + r["size"]) == (item.offset + body[0].start, item.offset + body[-1].end)
                           for r in rest), f"frame {item.packet.frame}"
    assert checked > 200


def test_tshark_counts_the_same_records(run):
    """As many TLS records and DTLS records as tshark dissects, in the same order of types."""
    _, pcap, _, found = run
    for fmt in _formats(found):
        if not fmt.key.startswith("openconnect"):
            continue
        pre = "dtls" if fmt.transport == "udp" else "tls"
        rows = _tshark(pcap, fmt, found, "-T", "fields", "-e", f"{pre}.record.version", "-E", "occurrence=a").split()
        theirs = sum(len(r.split(",")) for r in rows)
        ours = sum(sum(1 for f in i.message.fields if f.tshark == f"{pre}.record.version")
                   for i in found if i.format.key == fmt.key)
        assert ours == theirs, fmt.key


def test_tls_ladder_draws_the_handshake_the_login_then_the_tunnel(run):
    name, _, capture, found = run
    ladder = build_vpn_ladder(capture, BY_KEY["openconnect-tls"], found=found)
    labels = [a.label for a in ladder.arrows]
    # TLS 1.3: ClientHello, ServerHello and the compatibility ChangeCipherSpecs in clear; the
    # server's certificate and Finished and the client's Finished encrypted; then the HTTPS login
    assert labels[:4] == ["ClientHello", "ServerHello", "ChangeCipherSpec", "ChangeCipherSpec"]
    assert labels[4:9] == ["Application Data (handshake)"] * 4 + ["Application Data (Finished)"]
    assert labels[9:] == ["Application Data"] * 8      # the login's 3 requests and CONNECT, their answers
    assert "TLS_AES_256_GCM_SHA384, TLS 1.3" in ladder.arrows[1].chain
    if name == "restrictive-network":   # the data stayed in TLS: DPDs, then the pings
        assert sum(b.count for b in ladder.bands) == sum(1 for f in found if f.format.key == "openconnect-tls") - 17


def test_dtls_ladder_draws_its_handshake_then_data(run):
    name, _, capture, found = run
    if name != "compare-roaming":
        pytest.skip("the hotel drops DTLS before the internet side")
    ladder = build_vpn_ladder(capture, BY_KEY["openconnect"], found=found)
    assert [a.label for a in ladder.arrows] == [
        "ClientHello", "ServerHello", "ServerHelloDone", "ClientKeyExchange, ChangeCipherSpec, Finished (encrypted)",
        "ChangeCipherSpec", "Finished (encrypted)"]
    assert "TLS_PSK_WITH_AES_256_GCM_SHA384" in ladder.arrows[1].chain
    assert [b.count for b in ladder.bands] and all("epoch 1" in b.label for b in ladder.bands)
    assert sum(b.count for b in ladder.bands) == sum(1 for f in found if f.format.key == "openconnect") - 6


def test_layout_octets_are_tsharks(run):
    _, pcap, capture, found = run
    layouts = [l for l in vpn_layouts([capture], {id(capture): found}) if l.form.startswith("OpenConnect")]
    assert layouts
    for layout in layouts:
        fmt = BY_KEY["openconnect" if "DTLS" in layout.form else "openconnect-tls"]
        frame = int(layout.source.rsplit(":", 1)[1])
        items = _pdml(pcap, fmt, found)[frame]
        assert layout.length == int(named(items, "ip.len")[0]["show"])
        assert [s.start for s in layout.segments[1:]] == [s.end for s in layout.segments[:-1]]
        assert layout.segments[-1].end == layout.length
        # DTLS 1.2 (RFC 6347 §4.1) with AES-256-GCM: 20 IP + 8 UDP + 13 record header + 8 explicit nonce
        # (RFC 5288 §3) + 1 AnyConnect packet type + the inner packet + 16 tag: here (no ESP packet to
        # match) openconnect's first path MTU probe, 1434 octets, filling the 1500-octet path exactly;
        # TLS 1.3: 20 IP + 32 TCP (timestamps) + 5 record header + 8 CSTP header + the 84-octet ping + 1
        # content type (RFC 8446 §5.2) + 16 tag
        inner = 1434 if "DTLS" in layout.form else 84
        assert layout.length == (20 + 8 + 13 + 8 + 1 + inner + 16 if "DTLS" in layout.form else
                                 20 + 32 + 5 + 8 + inner + 1 + 16)
        assert layout.detail.endswith(f"around {inner} encrypted")
        assert layout.encrypted is not None


def _with(fmt: VpnFormat, version: int, aead: str) -> VpnFormat:
    out = copy.copy(fmt)
    out.version, out.aead = version, aead
    return out


def test_overhead_is_the_records_arithmetic():
    dtls, tls = BY_KEY["openconnect"], BY_KEY["openconnect-tls"]
    for inner in range(28, 1500):
        # DTLS 1.2: 13-octet record header (RFC 6347 §4.1), AnyConnect's 1-octet type, a 16-octet tag;
        # AES-GCM adds its 8-octet explicit nonce (RFC 5288 §3), ChaCha20-Poly1305 none (RFC 7905 §2)
        assert _with(dtls, 0xFEFD, "AES-256-GCM").wire_size(inner) == (20 + 8 + 13 + 8 + 1 + inner + 16,) * 2
        assert _with(dtls, 0xFEFD, "ChaCha20-Poly1305").wire_size(inner) == (20 + 8 + 13 + 1 + inner + 16,) * 2
        # TLS: 5-octet record header, the 8-octet CSTP header, the tag; TLS 1.3 adds the inner content
        # type (RFC 8446 §5.2), TLS 1.2's AES-GCM the explicit nonce
        assert _with(tls, 0x0304, "AES-256-GCM").wire_size(inner) == (20 + 32 + 5 + 8 + inner + 1 + 16,) * 2
        assert _with(tls, 0x0303, "AES-128-GCM").wire_size(inner) == (20 + 32 + 5 + 8 + 8 + inner + 16,) * 2


def test_mtu_figure_rows_from_the_negotiated_cipher_and_tsharks_packets(run):
    name, pcap, capture, found = run
    model = vpn_mtu_model([capture], found={id(capture): found})
    assert model.largest["OpenConnect DTLS, AES-256-GCM"] == 1500 - 66
    assert model.largest["OpenConnect over TLS (TLS 1.3), AES-256-GCM"] == 1500 - 82
    assert "OpenConnect: the cipher its ServerHello chose in these captures" in model.note
    seen = [o for o in model.seen if o.config.startswith("OpenConnect")]
    assert seen
    for fmt in _formats(found):
        if not fmt.key.startswith("openconnect"):
            continue
        pdml = _pdml(pcap, fmt, found)
        for o in seen:
            frame = int(o.source.rsplit(":", 1)[1])
            if frame not in pdml:
                continue
            items = pdml[frame]
            assert o.wire == int(named(items, "ip.len")[0]["show"])
            data = named(items, fmt.tshark_rest)
            # the inner packet: tshark's encrypted data less nonce, AnyConnect header, content type and tag
            assert o.inner == data[0]["size"] - (8 + 1 + 16 if fmt.transport == "udp" else 8 + 1 + 16)
            assert o.wire - o.inner == model.series[o.config][model.sizes.index(o.inner)] - o.inner


def test_figures_are_drawn_readable(run, tmp_path):
    """Every slide 1920 x 1080, no text on it under 20 pixels (as lab/viz/style.py asks)."""
    from lab.viz.style import SLIDE_MIN_PX

    from .test_viz_slides import png_size, svg_text_pixels
    _, _, capture, found = run
    figures = [draw_vpn_ladder(capture, fmt, tmp_path / f"ladder-{fmt.key}", found=found) for fmt in _formats(found)]
    figures += [draw_vpn_layouts([capture], tmp_path / "headers", {id(capture): found}),
                draw_vpn_mtu([capture], tmp_path / "mtu", found={id(capture): found})]
    for figure in figures:
        for png, _ in figure.entries():
            assert png_size(png)[0] == 1920
            if png_size(png) == (1920, 1080):
                small = [(t, px) for t, px in svg_text_pixels(png.with_suffix(".svg")) if t.strip() and px < SLIDE_MIN_PX]
                assert not small, f"{png.name}: {small[:3]}"
