"""Finding the files of a run folder (see the runner's layout: captures/, keys/, trace.jsonl,
logs/, topology.json, result.json), and of the older demo layout (gwa/trace.jsonl,
gwb/charon.log). Anything may be missing; `missing` says what. result.json is read into the
run-folder schema's types (lab.runfolder.RunResult), as lab.net wrote it."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab import runfolder
from lab.runfolder import RunResult, Topology


class RunFolderError(Exception):
    """A run folder that cannot be read at all."""


@dataclass
class RunFolder:
    root: Path
    captures: list[Path] = field(default_factory=list)
    keys: Path | None = None
    traces: dict[str, Path] = field(default_factory=dict)        # node ("" when merged) -> trace.jsonl
    charon_logs: dict[str, Path] = field(default_factory=dict)   # node -> charon log
    daemon_logs: dict[str, Path] = field(default_factory=dict)   # node -> our daemon's narrated log
    topology: Topology | None = None
    result: RunResult | None = None
    running: bool = False       # result.json says the run goes on (lab.runfolder.mark_running)
    missing: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    def capture(self, name: str) -> Path | None:
        return next((p for p in self.captures if p.stem == name), None)

    def nat_sides(self) -> list[tuple[Path, Path]]:
        """(inside, outside) capture pairs of each NAT box: from topology.json's taps when it
        names them, else by the names `*inside*` / `*outside*`."""
        pairs = []
        if self.topology is not None:
            taps = self.topology.taps
            for node in self.topology.nodes:
                nat = node.nat if node.kind == "nat" else None
                if nat is None:
                    continue
                inside = [t for t in taps if t.node == node.name and t.intf in nat.inside]
                outside = [t for t in taps if t.node == node.name and t.intf == nat.outside]
                for a in inside:
                    for b in outside:
                        pa, pb = self.root / a.file, self.root / b.file
                        if pa in self.captures and pb in self.captures:
                            pairs.append((pa, pb))
        if not pairs:
            for path in self.captures:
                if "inside" in path.stem:
                    other = self.capture(path.stem.replace("inside", "outside"))
                    if other is not None:
                        pairs.append((path, other))
        return pairs


def _json(path: Path, problems: list[str]) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        problems.append(f"{path}: not readable JSON ({err})")
        return None
    if not isinstance(data, dict):
        problems.append(f"{path}: not a JSON object")
        return None
    return data


def load_run(root: str | Path) -> RunFolder:
    root = Path(root)
    if not root.is_dir():
        raise RunFolderError(f"{root}: no such folder")
    run = RunFolder(root)
    run.captures = sorted(p for p in (root / "captures").glob("*.pcap*") if p.suffix in (".pcap", ".pcapng"))
    if not run.captures:
        run.missing.append("captures/*.pcap")
    for folder in (root / "keys", root / "keys" / "wireshark"):
        if (folder / "ikev2_decryption_table").exists() or (folder / "esp_sa").exists():
            run.keys = root / "keys"
            break
    else:
        run.missing.append("keys/ (SK payloads and ESP stay encrypted)")
    if (root / "trace.jsonl").is_file():
        run.traces[""] = root / "trace.jsonl"
    else:
        for path in sorted(root.glob("*/trace.jsonl")):
            run.traces[path.parent.name] = path
    if not run.traces:
        run.missing.append("trace.jsonl")
    for path in sorted((root / "logs").glob("*.log")):
        if path.stem.endswith("-charon"):
            run.charon_logs[path.stem[:-len("-charon")]] = path
        else:
            run.daemon_logs[path.stem] = path
    for path in sorted(root.glob("*/charon.log")):
        run.charon_logs.setdefault(path.parent.name, path)
    for path in sorted(root.glob("*/gateway.log")):
        run.daemon_logs.setdefault(path.parent.name, path)
    if (root / runfolder.TOPOLOGY).is_file():
        try:
            run.topology = runfolder.read_topology(root / runfolder.TOPOLOGY)
        except runfolder.SchemaError as err:
            run.problems.append(str(err))
    else:
        run.missing.append(runfolder.TOPOLOGY)
    if (root / runfolder.RESULT).is_file():
        data = _json(root / runfolder.RESULT, run.problems)
        if data is not None:
            run.running = runfolder.is_running(data)
            run.result = RunResult.from_json(data)
    else:
        run.missing.append(runfolder.RESULT)
    return run


__all__ = ["RunFolder", "RunFolderError", "load_run"]
