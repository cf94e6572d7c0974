"""Writing a run folder (its schema: lab.runfolder): the peers' logs and key tables, the merged
trace, topology.json, result.json and report.md. lab.viz reads what this writes."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from lab import runfolder
from lab.runfolder import TapInfo, Topology

from . import report
from .lab import LabError
from .software import label

if TYPE_CHECKING:
    from .runner import Runner


def prepare(out: Path) -> None:
    """An empty run folder. An earlier run folder there is replaced; anything else is kept and
    the run refused, so no one's files are lost."""
    if out.exists():
        if not out.is_dir():
            raise LabError(f"{out} exists and is not a folder: choose another --out")
        entries = list(out.iterdir())
        if entries and not (out / runfolder.RESULT).exists() and not (out / runfolder.REPORT).exists():
            raise LabError(f"{out} is not empty and holds no earlier run (no report.md): choose another --out, "
                           f"or empty it")
        shutil.rmtree(out)
    (out / runfolder.CAPTURES).mkdir(parents=True)
    runfolder.mark_running(out)


def write(run: Runner) -> None:
    """Everything the run leaves, once its lab is down."""
    out, scenario = run.out, run.scenario
    for sub in (runfolder.LOGS, runfolder.KEYS, runfolder.CAPTURES, runfolder.FIGURES):
        (out / sub).mkdir(parents=True, exist_ok=True)
    traces = []
    for node, peer in run.peers.items():
        for name, source in peer.run_logs().items():
            _copy(source, out / runfolder.LOGS / name)
        trace = peer.trace_file()
        if trace is not None:
            traces.append((node, trace))
    for table, lines in run.key_tables().items():
        _append_lines(lines, out / runfolder.KEYS / table)
    keys = out / runfolder.KEYS
    if any((keys / table).exists() for table in runfolder.KEY_TABLES):
        (keys / "wireshark").mkdir(exist_ok=True)
        for table in runfolder.KEY_TABLES:
            if (keys / table).exists():
                shutil.copy2(keys / table, keys / "wireshark" / table)
    unfit: list[str] = []
    runfolder.merge_traces(traces, out / runfolder.TRACE, unfit)
    for problem in unfit:  # a record our gateway wrote that the schema does not take: left out, said
        run.say(f"trace: {problem}")
    elsewhere = set()
    for node, peer in run.peers.items():
        workdir = Path(peer.workdir)
        if out not in workdir.parents:  # the short folder for long --out paths: keep it in the run folder
            shutil.copytree(workdir, out / runfolder.NODES / node, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("*.vici", "*.ctl"))
            elsewhere.add(workdir.parent)
    for folder in elsewhere:
        shutil.rmtree(folder, ignore_errors=True)
        try:
            folder.parent.rmdir()
        except OSError:
            pass
    if scenario.merge_captures:
        pcaps = sorted(str(p) for p in (out / runfolder.CAPTURES).glob("*.pcap"))
        if pcaps and shutil.which("mergecap"):
            subprocess.run(["mergecap", "-F", "pcapng", "-w", str(out / runfolder.CAPTURES / "all.pcapng"), *pcaps],
                           capture_output=True)
    runfolder.write_topology(out, topology(run))
    _copy(scenario.folder / "scenario.yaml", out / runfolder.SCENARIO)  # as run (diagnose reads its knobs)
    run.result.files = {sub: sorted(str(p.relative_to(out)) for p in (out / sub).rglob("*") if p.is_file())
                        for sub in (runfolder.CAPTURES, runfolder.KEYS, runfolder.LOGS, runfolder.FIGURES)}
    runfolder.write_result(out, run.result)
    (out / runfolder.REPORT).write_text(report.render(scenario, run.result))


def topology(run: Runner) -> Topology:
    scenario = run.scenario
    description = scenario.build_topology().describe()
    for node in description.nodes:
        software = scenario.gateways.get(node.name)
        node.software = software
        node.label = label(software) if software else None
    description.scenario = scenario.name
    description.taps = [TapInfo(t.name, t.node, t.intf, f"{runfolder.CAPTURES}/{t.name}.pcap", t.filter)
                        for t in scenario.taps]
    return description


def _copy(src: Path, dst: Path) -> None:
    try:
        shutil.copy2(src, dst)
    except FileNotFoundError:
        pass


def _append_lines(new: list[str], dst: Path) -> None:
    """Add the lines to the table `dst` that it lacks (ours and charon's name the same SAs)."""
    if not new:
        return
    lines = dst.read_text().splitlines() if dst.exists() else []
    for line in new:
        if line and line not in lines:
            lines.append(line)
    dst.write_text("\n".join(lines) + "\n")
