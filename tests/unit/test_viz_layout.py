"""Header layouts of the real packets in tests/data/forms: the segments tile the packet,
sit where the bytes say, and agree with tshark on padding; encrypted and authenticated
ranges as RFC 4303 §2 and RFC 4302 §3.3.3 define them."""
from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path

import pytest

from lab.viz.analysis import analyze_capture
from lab.viz.layout import FORMS, draw_header_layouts, example_packet, packet_layout

FORMS_DIR = Path(__file__).resolve().parent.parent / "data" / "forms"


def analysed(name: str):
    keys = FORMS_DIR / f"{name}.keys"
    return analyze_capture(FORMS_DIR / f"{name}.pcap", keys if keys.is_dir() else None)


@pytest.mark.parametrize("name", FORMS)
def test_segments_tile_the_real_packet(name):
    capture = analysed(name)
    packet = example_packet(capture)
    layout = packet_layout(packet, capture.keys)
    data = packet.data
    assert layout.length == struct.unpack_from("!H", data, 2)[0] == len(data)
    assert layout.segments[0].start == 0 and layout.segments[-1].end == layout.length
    assert all(a.end == b.start for a, b in zip(layout.segments, layout.segments[1:]))
    by_label = {s.label: s for s in layout.segments}
    if packet.ipsec is not None:
        spi = by_label["SPI"]
        assert data[spi.start:spi.end] == packet.ipsec.spi.to_bytes(4, "big")
        assert int.from_bytes(data[by_label["Seq"].start:by_label["Seq"].end], "big") == packet.ipsec.seq
        assert by_label["ICV"].length == 16
    if packet.ipsec is not None and packet.ipsec.mode == "tunnel":
        inner = by_label["inner IP"]
        assert inner.length == 20
        if packet.ipsec.protocol == "AH" or "null" in name:  # in the clear: the inner header is on the wire
            assert data[inner.start + 12:inner.start + 20] == bytes(map(int, (packet.inner.src + "." + packet.inner.dst)
                                                                         .split(".")))
    if name == "plain":
        assert layout.encrypted is None and layout.authenticated is None
    elif name.startswith("ah"):
        assert layout.encrypted is None and layout.authenticated == (0, layout.length) and layout.mutable
    else:
        esp_start = by_label["SPI"].start
        assert layout.authenticated == (esp_start, by_label["ICV"].start)
        if name == "esp-null":
            assert layout.encrypted is None and "IV" not in by_label
        else:
            assert layout.encrypted == (by_label["IV"].end, by_label["ICV"].start)
    if name == "esp-udp-tunnel":
        assert by_label["UDP"].start == 20 and struct.unpack_from("!H", data, 22)[0] == 4500
    if name == "esp-tcp-tunnel":   # IP | TCP | length | ESP (RFC 9329 §3.2), from a run of ike-over-tcp
        tcp, length = by_label["TCP"], by_label["length"]
        assert tcp.start == 20 and struct.unpack_from("!H", data, 22)[0] == 4500 and tcp.end == length.start
        assert struct.unpack_from("!H", data, length.start)[0] == layout.length - length.start
        assert by_label["SPI"].start == length.end


@pytest.mark.parametrize("name", [f for f in FORMS if f.startswith("esp")])
def test_padding_agrees_with_tshark(name):
    capture = analysed(name)
    packet = example_packet(capture)
    layout = packet_layout(packet, capture.keys)
    env = dict(os.environ, HOME="/nonexistent", XDG_CONFIG_HOME=str(FORMS_DIR / f"{name}.keys"))
    # tshark 4.0 has no RFC 9329 dissector: tests/data/rfc9329.lua hands each frame to its esp dissector
    lua = ["-X", f"lua_script:{FORMS_DIR.parent / 'rfc9329.lua'}"] if "tcp" in name else []
    out = subprocess.run(["tshark", *lua, "-r", str(FORMS_DIR / f"{name}.pcap"), "-o", "esp.enable_encryption_decode:TRUE",
                          "-Y", f"frame.number == {packet.frame}", "-T", "fields", "-e", "esp.pad_len"],
                         capture_output=True, text=True, env=env).stdout.split()
    assert out == [str(layout.pad_length)]


def test_figure_of_all_eight_forms(tmp_path):
    figure = draw_header_layouts({name: analysed(name) for name in FORMS}, tmp_path / "headers")
    assert [l.form for l in figure.model] == ["plain IP", "ESP transport", "ESP tunnel", "ESP-in-UDP tunnel",
                                              "ESP-in-TCP tunnel", "AH transport", "AH tunnel", "ESP-NULL tunnel"]
    assert all(p.exists() and p.stat().st_size > 10000 for p in figure.files)
