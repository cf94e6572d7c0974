"""MTU and overhead: the computed sizes (lab.esp protecting real packets) agree with the
arithmetic of the RFCs and with every ESP/AH packet our daemon put on the wire."""
from __future__ import annotations

from pathlib import Path

import pytest

from lab.viz.analysis import analyze_capture
from lab.viz.mtu import CONFIGS, draw_mtu, largest_inner, mtu_model, wire_size

FORMS = Path(__file__).resolve().parent.parent / "data" / "forms"
CONFIG = {c.name: c for c in CONFIGS}


def test_arithmetic_of_the_rfcs():
    gcm = CONFIG["ESP tunnel, AES-GCM-128"]
    # RFC 4303 §2.4 pads payload + 2 to 4 octets; outer IPv4 20, ESP 8, IV 8 (RFC 4106 §3.1), ICV 16
    assert wire_size(gcm, 1400) == 20 + 8 + 8 + 1400 + 2 + 2 + 16
    cbc = CONFIG["ESP-in-UDP tunnel, AES-CBC-128 + SHA-256"]
    # AES-CBC pads to the 16-octet block (RFC 3602 §2.4), IV 16, HMAC-SHA-256-128 ICV 16 (RFC 4868), UDP 8
    assert wire_size(cbc, 1400) == 20 + 8 + 8 + 16 + 1408 + 16
    ah = CONFIG["AH transport, SHA-256"]
    assert wire_size(ah, 1400) == 1400 + 12 + 16  # RFC 4302 §2: 12 octets of header and the ICV


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_largest_inner_packet_is_the_edge(config):
    n = largest_inner(config, 1400)
    assert wire_size(config, n) <= 1400 < wire_size(config, n + 1)


def test_captured_packets_are_on_the_computed_curves(tmp_path):
    captures = [analyze_capture(FORMS / f"{name}.pcap", FORMS / f"{name}.keys")
                for name in ("esp-tunnel", "esp-transport", "esp-udp-tunnel", "ah-transport", "ah-tunnel", "esp-null",
                             "fragments")]
    figure = draw_mtu(tmp_path / "mtu", captures, path_mtu=1400)
    seen = figure.model.seen
    assert len(seen) == 28 and all(o.config for o in seen)  # 7 captures, 4 protected pings each
    assert {o.config for o in seen} == set(CONFIG) - {"ESP-in-UDP tunnel, AES-CBC-128 + SHA-256"}
    for o in seen:
        assert wire_size(CONFIG[o.config], o.inner) == o.wire, o
    assert figure.model.path_mtu == 1400 and "1400" in figure.caption


def test_model_series_match_wire_size():
    model = mtu_model(1500, step=97)
    for config in CONFIGS:
        assert model.series[config.name] == [wire_size(config, n) for n in model.sizes]
