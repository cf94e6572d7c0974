"""draw_run on a run folder, `ipsec-lab figures` on captures, the merged time axis."""
from __future__ import annotations

import datetime
import shutil
import struct
import time
from pathlib import Path

import pytest

from lab.cli import main
from lab.runfolder import RunResult
from lab.viz.analysis import analyze_capture
from lab.viz.figures import draw_run
from lab.viz.run import load_run
from lab.viz.timeline import charon_time, merge_timeline, read_trace

DATA = Path(__file__).resolve().parent.parent / "data"
DEMO = DATA / "demo"


def png_width(path: Path) -> int:
    return struct.unpack(">I", path.read_bytes()[16:20])[0]


def test_draw_run_draws_all_that_applies_and_links_them(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(DEMO, run)
    (run / "report.md").write_text("# net2net-nat\n\n| check | ok |\n\n## Figures\n\n<!-- figures -->\n(none drawn "
                                   "yet)\n<!-- /figures -->\n\n## Checks\n\nall passed\n")
    entries = draw_run(run, report=True)
    names = sorted({p.stem for p, _ in entries})
    slides = [n for n in names if n.startswith("ladder-nat-inside-nat-outside-")]
    assert names == sorted(["headers", "ladder-nat-inside-nat-outside", "mtu", "rekey-nat-outside", "topology"]
                           + slides)
    # the ladder whole, then its slides numbered from 1, each with a caption saying which it is
    assert slides == [f"ladder-nat-inside-nat-outside-{n}" for n in range(1, len(slides) + 1)] and len(slides) > 1
    captions = {p.stem: c for p, c in entries}
    assert all(f"slide {n} of {len(slides)}" in captions[s] for n, s in enumerate(slides, start=1))
    assert all(p.parent == run / "figures" and p.exists() for p, _ in entries)
    assert {p.suffix for p, _ in entries} == {".png"} and all(p.with_suffix(".svg").exists() for p, _ in entries)
    assert all(png_width(p) == 1920 for p, _ in entries)
    assert all(caption and "\n" not in caption for _, caption in entries)
    report = (run / "report.md").read_text()
    assert report.count("## Figures") == 1 and "## Checks" in report and "none drawn" not in report
    assert "](figures/ladder-nat-inside-nat-outside.png)" in report
    assert "](figures/ladder-nat-inside-nat-outside-1.png)" in report
    draw_run(run, report=True)  # again: the section is replaced, not repeated
    assert (run / "report.md").read_text().count("## Figures") == 1
    assert "result.json" in load_run(run).missing


def test_figures_command_on_a_strongswan_capture(tmp_path, capsys):
    assert main(["figures", str(DATA / "strongswan_s2s.pcap"), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "ladder-strongswan_s2s.png" in out and "no keys" in out
    assert (tmp_path / "ladder-strongswan_s2s.svg").exists()


def test_figures_command_across_the_nat_box_with_keys(tmp_path, capsys):
    args = ["figures", str(DEMO / "captures" / "nat-outside.pcap"), str(DEMO / "captures" / "nat-inside.pcap"),
            "--keys", str(DEMO / "keys"), "--out", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "ladder-nat-inside-nat-outside.png" in out  # found which side is inside
    assert "across the NAT box" in out


def test_figures_command_errors(tmp_path, capsys):
    assert main(["figures", str(tmp_path / "none.pcap")]) == 2
    assert "none.pcap: no such file" in capsys.readouterr().err
    (tmp_path / "bad.pcap").write_bytes(b"not a capture at all")
    assert main(["figures", str(tmp_path / "bad.pcap"), "--out", str(tmp_path)]) == 2
    assert "not a pcap" in capsys.readouterr().err


def test_figures_of_a_run_folder_into_another_folder(tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(DEMO, run)
    assert main(["figures", str(run), "--out", str(tmp_path / "elsewhere")]) == 0
    assert "elsewhere/ladder-nat-inside-nat-outside.png" in capsys.readouterr().out
    assert (tmp_path / "elsewhere" / "topology.png").exists() and not (run / "figures").exists()
    assert main(["figures", str(run), "--keys", str(run / "keys")]) == 2
    assert "uses its own keys/" in capsys.readouterr().err
    assert main(["figures", str(run), str(run / "captures" / "nat-inside.pcap")]) == 2
    assert "give one run folder alone" in capsys.readouterr().err


def test_trace_charon_and_packets_on_one_time_axis(tmp_path):
    records = read_trace(DEMO / "gwa" / "trace.jsonl", "gwa")
    assert records and all("wall" in r and r["node"] == "gwa" for r in records)
    capture = analyze_capture(DEMO / "captures" / "nat-inside.pcap", DEMO / "keys")
    first_send = next(r for r in records if r["kind"] == "message" and r["dir"] == "out")
    first_packet = next(p for p in capture.packets if p.kind == "ike")
    # the daemon traced its IKE_SA_INIT just before the NAT box saw it on the wire
    stamp = datetime.datetime.fromtimestamp(first_packet.time + 0.0015)
    log = tmp_path / "gwb-charon.log"
    log.write_text(f"{stamp:%H:%M:%S}.{stamp.microsecond // 1000:03d} 11[NET] received packet\n"
                   f"{stamp:%b} {stamp.day:2d} {stamp:%H:%M:%S}.{stamp.microsecond // 1000:03d} 11[ENC] parsed\n"
                   f"{stamp:%Y-%m-%d %H:%M:%S}.{stamp.microsecond // 1000:03d} 11[IKE] the runner's format\n"
                   "no time on this line\n")
    timeline = merge_timeline(records, {"gwb": log}, [capture])
    kinds = [(e.source, e.text.split()[0]) for e in timeline]
    at = kinds.index(("trace", "->"))
    assert kinds[at + 1][0] == "capture" and timeline[at + 1].record is first_packet
    assert first_send["wall"] <= first_packet.time
    charon = [e for e in timeline if e.source == "charon"]
    assert len(charon) == 3 and all(abs(e.wall - (first_packet.time + 0.0015)) < 0.001 for e in charon)
    assert all(a.wall <= b.wall for a, b in zip(timeline, timeline[1:]))


def test_charon_time_near_midnight():
    reference = time.mktime(datetime.datetime(2026, 12, 1, 0, 0, 5).timetuple())
    wall, rest = charon_time("23:59:59.500 00[DMN] starting", reference)
    assert rest == "00[DMN] starting" and abs(wall - (reference - 5.5)) < 1e-6


def test_inside_found_by_its_private_address(tmp_path, capsys):
    shutil.copy(DEMO / "captures" / "nat-outside.pcap", tmp_path / "one.pcap")
    shutil.copy(DEMO / "captures" / "nat-inside.pcap", tmp_path / "two.pcap")
    assert main(["figures", str(tmp_path / "one.pcap"), str(tmp_path / "two.pcap"), "--keys", str(DEMO / "keys"),
                 "--out", str(tmp_path / "f")]) == 0
    assert "ladder-two-one.png" in capsys.readouterr().out  # 172.16.0.2 is seen only in two.pcap


def test_figures_of_some_steps_hold_only_their_packets(tmp_path, capsys):
    from scapy.all import UDP, rdpcap

    from lab.viz.figures import StepsError, _within, step_window
    from lab.viz.keys import load_keys
    from lab.viz.ladder import build_ladder

    run = tmp_path / "run"
    shutil.copytree(DATA / "runs" / "net2net-nat", run)
    report = (run / "report.md").read_text()
    assert main(["figures", str(run), "--steps", "6-9"]) == 0  # the rekeys and the ping after them
    out = capsys.readouterr().out
    assert "figures/steps-6-9/ladder-nat-inside-nat-outside.png" in out and "(steps 6-9)" in out
    assert (run / "figures" / "steps-6-9" / "rekey-nat-outside.png").exists()
    assert (run / "report.md").read_text() == report  # the report keeps the whole run's figures
    result = load_run(run).result
    lo, hi = step_window(result, 6, 9)
    assert result is not None
    steps = {s.index: s for s in result.steps}
    assert (lo, hi) == (steps[6].started, steps[9].ended)
    # scapy's count of the IKE datagrams captured outside the NAT box meanwhile, against the ladder's arrows
    outside = [p for p in rdpcap(str(run / "captures" / "nat-outside.pcap"))
               if UDP in p and lo <= float(p.time) <= hi and 4500 in (p[UDP].sport, p[UDP].dport)
               and bytes(p[UDP].payload)[:4] == b"\0\0\0\0"]
    keys = load_keys(run / "keys")
    sides = [_within(analyze_capture(run / "captures" / f"nat-{side}.pcap", keys), (lo, hi), "steps 6-9")
             for side in ("inside", "outside")]
    ladder = build_ladder(sides)
    assert len(ladder.arrows) == len(outside) > 0
    exchanges = {a.label.split()[0] for a in ladder.arrows}
    assert exchanges == {"CREATE_CHILD_SA", "INFORMATIONAL"}  # no IKE_SA_INIT, IKE_AUTH: those were step 2
    assert ladder.title.endswith("(steps 6-9)")
    everything = build_ladder([analyze_capture(run / "captures" / f"nat-{side}.pcap", keys)
                               for side in ("inside", "outside")])
    assert len(everything.arrows) > len(ladder.arrows)
    for bad, said in (("12", "step 12 is not in this run: it has steps 1-11"),
                      ("9-6", "the first is after the last")):
        assert main(["figures", str(run), "--steps", bad]) == 2
        assert said in capsys.readouterr().err
    with pytest.raises(StepsError, match="no result.json with steps"):
        step_window(RunResult.from_json({"steps": []}), 1, 1)
    assert main(["figures", str(run / "captures" / "nat-inside.pcap"), "--steps", "2"]) == 2
    assert "--steps needs a run folder" in capsys.readouterr().err


def test_one_rekey_timeline_per_capture_when_a_nat_box_has_several_insides(tmp_path):
    """A NAT box with several inside interfaces (topology compare) pairs its outside capture with
    each: the ladders are one per pair, the outside's rekey timeline only one (two jobs writing
    the same file raced, and one failed on the other's half-written file)."""
    from types import SimpleNamespace

    from lab.viz.figures import capture_jobs

    def capture(name):
        return SimpleNamespace(name=name, packets=[], ipsec=lambda: True, ike=lambda: True)

    outside, in1, in2 = capture("nat-outside"), capture("nat-in"), capture("nat-in2")
    jobs = capture_jobs([in1, in2, outside], tmp_path, nat_pairs=[(in1, outside), (in2, outside)])
    outs = [str(args[-1] if fn.__name__ == "draw_rekey_timeline" else args[1]) for fn, args in jobs
            if fn.__name__ in ("draw_rekey_timeline", "draw_ladder")]
    assert len(outs) == len(set(outs)) == 3, outs
