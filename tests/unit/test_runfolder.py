"""lab.runfolder: the typed result.json also reads as the JSON object it is written as, the way
the notebooks and a trainer's scripts read it (`result["steps"]`, `step["kind"]`)."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from lab import runfolder


def test_a_result_reads_as_its_json():
    result = runfolder.RunResult.from_json({"scenario": "x", "passed": True,
                                            "steps": [{"index": 1, "kind": "ping", "text": "hosta pings", "ok": True}]})
    assert result["scenario"] == "x" and result["passed"] is True
    step = result["steps"][0]
    assert step["kind"] == "ping" and step["index"] == 1 and step["text"] == step.text
    assert step.get("no-such-field", "default") == "default"
    with pytest.raises(KeyError):
        step["no-such-field"]


# ------------------------------------------------------------------ topology.json and trace.jsonl

DATA = Path(__file__).resolve().parents[1] / "data"


def test_every_kept_topology_and_trace_reads_without_a_problem():
    folders = sorted((DATA / "runs").iterdir()) + [DATA / "demo"]
    for folder in folders:
        topology = runfolder.read_topology(folder / runfolder.TOPOLOGY)
        assert topology.nodes and all(isinstance(n, runfolder.Node) for n in topology.nodes), folder
    problems: list[str] = []
    records = [r for folder in folders for path in sorted(folder.rglob("trace.jsonl"))
               for r in runfolder.read_trace(path, problems=problems)]
    assert not problems and len(records) > 800 and all(isinstance(r["kind"], str) for r in records)


def test_a_topology_that_does_not_fit_names_the_file_and_the_field(tmp_path):
    good = json.loads((DATA / "demo" / runfolder.TOPOLOGY).read_text())
    for change, said in [
        (lambda t: t["nodes"][1].pop("name"), r"nodes\[1\]: no 'name'"),
        (lambda t: t["nodes"][0]["interfaces"][0].update(mtu="big"),
         r"nodes\[0\]\.interfaces\[0\]\.mtu: 'big' is not an integer"),
        (lambda t: t["links"][2].update(colour="red"), r"links\[2\]: unknown field 'colour'"),
        (lambda t: t["taps"].append("nat-eth0"), r"taps\[2\]: 'nat-eth0' is not an object"),
    ]:
        broken = copy.deepcopy(good)
        change(broken)
        (tmp_path / runfolder.TOPOLOGY).write_text(json.dumps(broken))
        with pytest.raises(runfolder.SchemaError, match=re.escape(str(tmp_path / runfolder.TOPOLOGY)) + ": " + said):
            runfolder.read_topology(tmp_path / runfolder.TOPOLOGY)
    # a field left out takes its default
    del good["nodes"][0]["software"], good["links"][0]["mtu"]
    topology = runfolder.Topology.from_json(good)
    assert topology.nodes[0].software is None and topology.nodes[0].routes == [] and topology.links[0].mtu == 1500


def test_trace_records_that_do_not_fit_are_told_as_file_line_and_field(tmp_path):
    path = tmp_path / runfolder.TRACE
    path.write_text("\n".join([
        json.dumps({"kind": "message", "wall": 1.5, "payloads": ["SA", "KE"], "its_own": {"x": 1}}),
        json.dumps({"wall": 2.0}),
        json.dumps({"kind": "event", "wall": "soon"}),
        "not json",
        json.dumps({"kind": "note", "what": "dpd_ok", "wall": 3}),
    ]) + "\n")
    problems: list[str] = []
    records = runfolder.read_trace(path, "gwa", problems)
    assert [r["kind"] for r in records] == ["message", "note"] and records[0]["node"] == "gwa"
    assert records[0]["its_own"] == {"x": 1}   # fields the schema does not name are kept
    assert problems[0] == f"{path}:2: no 'kind'"
    assert problems[1] == f"{path}:3: wall: 'soon' is not a number"
    assert problems[2].startswith(f"{path}:4: not a JSON trace record")


def test_the_lab_describes_its_network_as_the_schema_types():
    from lab.net.topology import load

    topology = load("site-to-site")().describe()
    assert isinstance(topology, runfolder.Topology) and any(n.nat is not None for n in topology.nodes)
    assert runfolder.Topology.from_json(json.loads(json.dumps(topology.to_json()))) == topology


# ------------------------------------------------------------------ what the taps missed


TAP_LOG = """tcpdump: listening on router-b, link-type EN10MB (Ethernet), snapshot length 262144 bytes
{captured} packets captured
{received} packets received by filter
{dropped} packets dropped by kernel
"""


def test_the_report_says_which_tap_missed_packets(tmp_path):
    """tcpdump's own counts (its last lines in logs/tap-NAME.txt): a tap whose kernel buffer
    overflowed is named in report.md with what it missed; a tap that missed nothing is not."""
    from lab.net import report
    from lab.net.scenario import load

    logs = tmp_path / runfolder.LOGS
    logs.mkdir()
    (logs / "tap-internet.txt").write_text(TAP_LOG.format(captured=79732, received=107109, dropped=27377))
    (logs / "tap-lan-a.txt").write_text(TAP_LOG.format(captured=1125, received=1125, dropped=0))
    (logs / "gwa.log").write_text("0 packets dropped by kernel\n")  # not a tap's
    assert runfolder.tap_losses(tmp_path) == [runfolder.TapLoss("internet", 107109, 27377)]
    result = runfolder.RunResult(scenario="net2net", title="t", folder="", out=str(tmp_path), passed=True, started=0.0)
    text = report.render(load("net2net"), result)
    assert "the tap internet missed 27377 of the 107109 packets it saw" in text
    assert "lan-a" not in text
    (logs / "tap-internet.txt").write_text(TAP_LOG.format(captured=5, received=5, dropped=0))
    assert "missed" not in report.render(load("net2net"), result)
