"""The run folder: what every scenario run leaves and every later tool reads. This module is its
schema, at the bottom of the layers (it imports nothing of lab): lab.net writes a run folder
with these types and lab.viz reads it with the same types.

    DIR/report.md        pass/fail table, each step and check with what it saw, links, figures
    DIR/result.json      RunResult: the steps and checks with what each saw, times, files
    DIR/topology.json    Topology: nodes (kind, software, interfaces, NAT), links, taps
    DIR/trace.jsonl      TraceRecord lines: every gateway of ours, ordered by wall-clock time
    DIR/scenario.yaml    the scenario as run
    DIR/captures/*.pcap  one per tap (both sides of every NAT box by default)
    DIR/keys/            Wireshark's ikev2_decryption_table and esp_sa (also keys/wireshark/)
    DIR/logs/            each gateway's log (<node>.log ours, <node>-charon.log strongSwan's)
    DIR/nodes/<node>/    each gateway's working files (its configuration as run)
    DIR/figures/         drawn later from the files above (lab.viz)

Reading is lenient: a field an older run folder lacks takes its default.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypedDict, TypeVar

REPORT = "report.md"
RESULT = "result.json"
TOPOLOGY = "topology.json"
TRACE = "trace.jsonl"
SCENARIO = "scenario.yaml"
CAPTURES = "captures"
KEYS = "keys"
LOGS = "logs"
NODES = "nodes"
FIGURES = "figures"
KEY_TABLES = ("ikev2_decryption_table", "esp_sa")
RUNNING = {"running": True}            # result.json while the run goes on

T = TypeVar("T")


def _from(cls: type[T], data: Any) -> T:
    """A dataclass from a JSON object, ignoring keys it does not know, defaults for what is missing."""
    data = data if isinstance(data, dict) else {}
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in data.items() if k in known})


class _ReadsAsJson:
    """Also readable as the JSON object it is written as (`result["steps"]`, `step["kind"]`), so
    notebooks and scripts written against result.json work on the typed objects too."""

    def __getitem__(self, key: str) -> Any:
        if key not in {f.name for f in fields(self)}:  # type: ignore[arg-type]
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default


# ------------------------------------------------------------------ result.json


@dataclass
class StepResult(_ReadsAsJson):
    index: int
    kind: str
    text: str
    expect: str                 # "pass" or "fail"
    ok: bool                    # went as expected
    detail: str                 # what it saw
    started: float              # wall-clock time
    ended: float
    skipped: bool = False
    line: int = 0               # in scenario.yaml


@dataclass
class CheckResult(_ReadsAsJson):
    index: int                  # 0 for a check run as a step
    text: str
    ok: bool
    saw: str
    line: int
    tries: int = 1
    seconds: float = 0.0
    at_step: int | None = None


@dataclass
class RunResult(_ReadsAsJson):
    scenario: str
    title: str
    folder: str
    out: str
    passed: bool
    started: float
    duration: float = 0.0
    steps: list[StepResult] = field(default_factory=list)
    checks: list[CheckResult] = field(default_factory=list)
    nodes: dict[str, str] = field(default_factory=dict)       # gateway -> software
    interrupted: str | None = None
    error: str | None = None
    teardown: list[str] = field(default_factory=list)
    files: dict[str, list[str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> RunResult:
        data = data if isinstance(data, dict) else {}
        result = _from(cls, {k: v for k, v in data.items() if k not in ("steps", "checks")} | {
            "scenario": data.get("scenario", ""), "title": data.get("title", ""), "folder": data.get("folder", ""),
            "out": data.get("out", ""), "passed": bool(data.get("passed", False)),
            "started": data.get("started", 0.0)})
        result.steps = [_from(StepResult, _step_defaults(s)) for s in data.get("steps", []) if isinstance(s, dict)]
        result.checks = [_from(CheckResult, _check_defaults(c)) for c in data.get("checks", []) if isinstance(c, dict)]
        return result

    @property
    def verdict(self) -> str:
        if self.interrupted:
            return f"INTERRUPTED ({self.interrupted})"
        if self.error:
            return "ERROR"
        return "PASSED" if self.passed else "FAILED"


def _step_defaults(s: dict[str, Any]) -> dict[str, Any]:
    return {"index": 0, "kind": "", "text": "", "expect": "pass", "ok": False, "detail": "", "started": 0.0,
            "ended": 0.0, **s}


def _check_defaults(c: dict[str, Any]) -> dict[str, Any]:
    return {"index": 0, "text": "", "ok": False, "saw": "", "line": 0, **c}


def write_result(folder: Path, result: RunResult) -> None:
    (folder / RESULT).write_text(json.dumps(result.to_json(), indent=1))


def mark_running(folder: Path) -> None:
    """result.json while a run goes on: marks the folder as a run folder."""
    (folder / RESULT).write_text(json.dumps(RUNNING) + "\n")


def is_running(data: Any) -> bool:
    return isinstance(data, dict) and data.get("running") is True


# ------------------------------------------------------------------ topology.json


@dataclass
class Interface:
    name: str
    addresses: list[str] = field(default_factory=list)     # "10.1.0.1/24"
    mtu: int = 1500
    link: int | None = None                                # index into Topology.links


@dataclass
class NatInfo:
    inside: list[str] = field(default_factory=list)        # interface names
    outside: str | None = None
    public: str | None = None
    mapping: str = "preserve"


@dataclass
class Node:
    name: str
    kind: str                                              # host, router, gateway, nat
    software: str | None = None                            # a gateway's software (lab.net.software)
    label: str | None = None                               # the software as people call it
    interfaces: list[Interface] = field(default_factory=list)
    routes: list[dict[str, str]] = field(default_factory=list)   # {"prefix": ..., "via": ...}
    nat: NatInfo | None = None


@dataclass
class Link:
    a: str
    a_intf: str
    b: str
    b_intf: str
    mtu: int = 1500


@dataclass
class TapInfo:
    name: str
    node: str
    intf: str
    file: str                                              # captures/<name>.pcap
    filter: str = ""


@dataclass
class Topology:
    topology: str
    params: dict[str, Any] = field(default_factory=dict)
    nodes: list[Node] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    taps: list[TapInfo] = field(default_factory=list)
    scenario: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> Topology:
        data = data if isinstance(data, dict) else {}
        nodes = []
        for n in data.get("nodes", []):
            if not isinstance(n, dict) or "name" not in n:
                continue
            node = _from(Node, {"kind": "host", **n})
            node.interfaces = [_from(Interface, i) for i in n.get("interfaces", []) if isinstance(i, dict) and "name" in i]
            node.nat = _from(NatInfo, n["nat"]) if isinstance(n.get("nat"), dict) else None
            nodes.append(node)
        links = [_from(Link, {"a": "", "a_intf": "", "b": "", "b_intf": "", **k}) for k in data.get("links", [])
                 if isinstance(k, dict)]
        taps = [_from(TapInfo, {"node": "", "intf": "", "file": "", **t}) for t in data.get("taps", [])
                if isinstance(t, dict) and "name" in t]
        return cls(topology=str(data.get("topology", "")), params=dict(data.get("params") or {}), nodes=nodes,
                   links=links, taps=taps, scenario=str(data.get("scenario", "")))

    def node(self, name: str) -> Node | None:
        return next((n for n in self.nodes if n.name == name), None)


def write_topology(folder: Path, topology: Topology) -> None:
    (folder / TOPOLOGY).write_text(json.dumps(topology.to_json(), indent=1))


# ------------------------------------------------------------------ trace.jsonl


class TraceRecord(TypedDict, total=False):
    """One line of trace.jsonl: what every record has. `kind` says which other fields come."""

    t: float                    # the gateway's monotonic clock, seconds
    wall: float                 # wall-clock time (time.time()), to merge gateways
    kind: str                   # message, event, drop, note, retransmit, summary, ...
    node: str                   # the gateway (added when the run folder merges traces)
    ike_sa: int | None          # the IKE SA's unique id


class MessageRecord(TraceRecord, total=False):
    """kind "message": one IKE message sent or received."""

    dir: str                    # "in" or "out"
    exchange: str               # IKE_SA_INIT, IKE_AUTH, CREATE_CHILD_SA, INFORMATIONAL, ...
    message_id: int
    response: bool
    initiator: bool             # the I flag: sent by the original initiator
    encrypted: bool
    payloads: list[str]         # the payload chain, inner payloads of SK included
    src: str                    # "address:port"
    dst: str
    length: int
    fragments: int
    spi_i: str                  # 16 hex digits
    spi_r: str


class EventRecord(TraceRecord, total=False):
    """kind "event": an event of lab.ike.events (IkeSaUp, ChildSaUp, ChildSaRekeyed, ...) with its
    fields (keys never)."""

    event: str


class DropRecord(TraceRecord, total=False):
    """kind "drop": a message dropped, with why."""

    reason: str


def read_trace(path: Path) -> Iterator[TraceRecord]:
    """The records of a trace.jsonl; lines that are not JSON objects are skipped."""
    if not path.exists():
        return
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            yield record  # type: ignore[misc]


def merge_traces(traces: Iterable[tuple[str, Path]], out: Path) -> int:
    """Every trace record of our gateways in one file, each with "node", ordered by "wall"
    (wall-clock time) where the records have it, else by file order."""
    records: list[tuple[float, str, int, TraceRecord]] = []
    for node, path in traces:
        for order, record in enumerate(read_trace(path)):
            record["node"] = node
            records.append((float(record.get("wall", 0.0) or 0.0), node, order, record))
    records.sort(key=lambda item: (item[0], item[1], item[2]))
    with open(out, "w") as f:
        for *_keys, record in records:
            f.write(json.dumps(record) + "\n")
    return len(records)
