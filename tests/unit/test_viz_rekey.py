"""The rekey timeline against the demo run's capture (our gateway rekeys the CHILD SA,
strongSwan the IKE SA) and strongSwan's capture without keys."""
from __future__ import annotations

from pathlib import Path

from lab.viz.analysis import analyze_capture
from lab.viz.rekey import draw_rekey_timeline, sa_spans

DATA = Path(__file__).resolve().parent.parent / "data"
DEMO = DATA / "demo"


def demo():
    return analyze_capture(DEMO / "captures" / "nat-outside.pcap", DEMO / "keys")


def test_child_and_ike_rekeys_make_before_break(tmp_path):
    capture = demo()
    figure = draw_rekey_timeline(capture, tmp_path / "rekey")
    timeline = figure.model
    children = [s for s in timeline.spans if s.kind == "ESP"]
    per_spi: dict[str, list[float]] = {}
    for p in capture.ipsec():
        per_spi.setdefault(p.ipsec.spi_hex, []).append(p.time)
    assert {s.spi: s.packets for s in children} == per_spi and len(per_spi) == 4
    ike = {(p.ike.exchange_name, p.ike.message_id, p.ike.response): p for p in capture.ike()}
    rekey_done = ike[("CREATE_CHILD_SA", 2, True)].time
    old_deleted = ike[("INFORMATIONAL", 3, True)].time
    new = [s for s in children if s.replaces]
    old = [s for s in children if not s.replaces]
    assert len(new) == len(old) == 2
    assert all(s.born == rekey_done for s in new) and all(s.died == old_deleted for s in old)
    assert {s.replaces for s in new} == {s.spi for s in old}
    for s in new:  # the same direction: a new SPI replaces the old one of the same receiver
        assert next(o for o in old if o.spi == s.replaces).towards == s.towards
    handovers = [h for h in timeline.handovers if h.new.kind == "ESP"]
    assert len(handovers) == 2 and all(h.overlap == old_deleted - rekey_done > 0 for h in handovers)
    ike_sas = [s for s in timeline.spans if s.kind == "IKE"]
    assert len(ike_sas) == 2 and ike_sas[1].replaces == ike_sas[0].spi
    assert ike_sas[1].born == ike[("CREATE_CHILD_SA", 0, True)].time
    assert "no gap" in figure.caption


def test_a_late_new_sa_is_a_gap():
    capture = demo()
    frames = {(p.ike.exchange_name, p.ike.message_id, p.ike.response): p for p in capture.ike()}
    # as if the old SA had been deleted before the rekey's response arrived (break-before-make)
    frames[("INFORMATIONAL", 3, True)].time = frames[("CREATE_CHILD_SA", 2, True)].time - 0.25
    timeline = sa_spans(capture)
    handovers = [h for h in timeline.handovers if h.new.kind == "ESP"]
    assert handovers and all(abs(h.overlap + 0.25) < 1e-9 for h in handovers)


def test_without_keys_rows_follow_the_packets(tmp_path):
    capture = analyze_capture(DATA / "strongswan_s2s.pcap")
    timeline = draw_rekey_timeline(capture, tmp_path / "rekey").model
    children = [s for s in timeline.spans if s.kind == "ESP"]
    assert [(s.spi, len(s.packets)) for s in children] == [("273b4a33", 3), ("c8eefe8c", 3), ("7c62a34e", 2),
                                                           ("9e9315f5", 2)]
    assert all(s.born is None and s.died is None for s in children) and not timeline.from_keys
    assert not timeline.handovers
