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

Reading result.json is lenient: a field an older run folder lacks takes its default.
topology.json and trace.jsonl are checked against their types here: a field that does not fit
(missing where it has no default, unknown to topology.json's schema, of the wrong type) is a
SchemaError naming the file (and line) and the field.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from types import UnionType
from typing import Any, TypedDict, TypeVar, Union, get_args, get_origin, get_type_hints, is_typeddict

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


# ------------------------------------------------------------------ checking a file against its schema


class SchemaError(ValueError):
    """A run-folder file that does not fit its schema; the message names the file, the line
    (trace.jsonl) and the field."""


def _error(where: tuple[str, str], what: str) -> SchemaError:
    file, path = where
    return SchemaError(f"{file}: {path}: {what}" if path else f"{file}: {what}")


def _at(where: tuple[str, str], name: str) -> tuple[str, str]:
    file, path = where
    return file, (f"{path}.{name}" if path and not name.startswith("[") else f"{path}{name}")


def _check(tp: Any, value: Any, where: tuple[str, str]) -> Any:
    """`value` (parsed JSON) as the type `tp` says, or SchemaError naming `where` (file, field)."""
    if tp in _NAMES:
        if not isinstance(value, _JSON[tp]) or isinstance(value, bool) and tp is not bool:
            raise _error(where, f"{value!r} is not {_NAMES[tp]}")
        return value
    if tp is Any:
        return value
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, UnionType):
        if value is None and type(None) in args:
            return None
        first: SchemaError | None = None
        for option in (a for a in args if a is not type(None)):
            try:
                return _check(option, value, where)
            except SchemaError as err:
                first = first or err
        raise first or _error(where, f"{value!r} is not allowed")
    if origin is list:
        if not isinstance(value, list):
            raise _error(where, f"{value!r} is not a list")
        return [_check(args[0], item, _at(where, f"[{i}]")) for i, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise _error(where, f"{value!r} is not an object")
        return {k: _check(args[1], v, _at(where, k)) for k, v in value.items()}
    if is_typeddict(tp):
        return _typed_dict(tp, value, where)
    if isinstance(tp, type) and is_dataclass(tp):
        return _dataclass(tp, value, where)
    raise TypeError(f"the schema's type {tp!r} is not one lab.runfolder checks")


_NAMES: dict[Any, str] = {bool: "true or false", str: "a string", int: "an integer", float: "a number"}
_JSON: dict[Any, type | tuple[type, ...]] = {bool: bool, str: str, int: int, float: (int, float)}  # as json.loads gives them


_HINTS: dict[Any, dict[str, Any]] = {}


def _hints(cls: Any) -> dict[str, Any]:
    """The field types of a dataclass or TypedDict (evaluated once: that is slow)."""
    if cls not in _HINTS:
        _HINTS[cls] = get_type_hints(cls)
    return _HINTS[cls]


def _dataclass(cls: type[T], data: Any, where: tuple[str, str]) -> T:
    """A dataclass from a JSON object: every field it requires present, none it does not know,
    each of its type; a field left out takes its default."""
    if not isinstance(data, dict):
        raise _error(where, f"{data!r} is not an object")
    hints = _hints(cls)
    known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]  # cls is a dataclass (the callers' types say so)
    for name in data:
        if name not in known:
            raise _error(where, f"unknown field {name!r} (it has {', '.join(known)})")
    for name, f in known.items():
        if name not in data and f.default is MISSING and f.default_factory is MISSING:
            raise _error(where, f"no {name!r}")
    return cls(**{name: _check(hints[name], value, _at(where, name)) for name, value in data.items()})


def _typed_dict(cls: Any, data: Any, where: tuple[str, str]) -> Any:
    """A JSON object checked against a TypedDict: the fields it names of their types; the
    fields it requires present; the others kept as they are."""
    if not isinstance(data, dict):
        raise _error(where, f"{data!r} is not an object")
    for name in cls.__required_keys__:
        if name not in data:
            raise _error(where, f"no {name!r}")
    hints = _hints(cls)
    return {name: _check(hints[name], value, _at(where, name)) if name in hints else value
            for name, value in data.items()}


# ------------------------------------------------------------------ topology.json


@dataclass
class Interface:
    name: str = ""                                         # "" where a notebook's hand-made topology leaves it out
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
class Route:
    prefix: str
    via: str


@dataclass
class Node:
    name: str
    kind: str = "host"                                     # host, router, gateway, nat
    software: str | None = None                            # a gateway's software (lab.net.software)
    label: str | None = None                               # the software as people call it
    interfaces: list[Interface] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    nat: NatInfo | None = None


@dataclass(kw_only=True)
class Link:
    a: str
    a_intf: str = ""
    b: str
    b_intf: str = ""
    mtu: int = 1500


@dataclass
class TapInfo:
    name: str
    node: str = ""
    intf: str = ""
    file: str = ""                                         # captures/<name>.pcap
    filter: str = ""


@dataclass
class Topology:
    topology: str = ""                                     # its name in topologies/
    params: dict[str, Any] = field(default_factory=dict)
    nodes: list[Node] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    taps: list[TapInfo] = field(default_factory=list)
    scenario: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any, source: str = TOPOLOGY) -> Topology:
        """A topology.json's object (or one made by hand the same way); SchemaError names
        `source` and the field that does not fit: a field missing that has no default, a field
        the schema does not know, a value of the wrong type."""
        return _dataclass(cls, data, (source, ""))

    @classmethod
    def of(cls, value: Topology | dict[str, Any] | None) -> Topology | None:
        """A Topology as it is, or from an object shaped like topology.json's (a notebook's, made
        by hand); None stays None."""
        return cls.from_json(value, "topology") if isinstance(value, dict) else value

    def node(self, name: str) -> Node | None:
        return next((n for n in self.nodes if n.name == name), None)


@dataclass
class TapLoss:
    """What one tap's tcpdump said when it stopped (logs/tap-NAME.txt): the packets its filter
    took (`received`, on Linux those it captured plus those dropped) and those the kernel dropped
    because tcpdump did not read them in time."""

    tap: str
    received: int
    dropped: int


def tap_counts(folder: Path) -> list[TapLoss]:
    """tcpdump's counts of every tap of a run folder that printed them when it stopped."""
    import re

    out = []
    for log in sorted((folder / LOGS).glob("tap-*.txt")):
        text = log.read_text(errors="replace")
        received = re.search(r"^(\d+) packets? received by filter$", text, re.M)
        dropped = re.search(r"^(\d+) packets? dropped by kernel$", text, re.M)
        if received and dropped:
            out.append(TapLoss(log.stem.removeprefix("tap-"), int(received.group(1)), int(dropped.group(1))))
    return out


def tap_losses(folder: Path) -> list[TapLoss]:
    """The taps of a run folder whose tcpdump says the kernel dropped packets (none: [])."""
    return [count for count in tap_counts(folder) if count.dropped]


def write_topology(folder: Path, topology: Topology) -> None:
    (folder / TOPOLOGY).write_text(json.dumps(topology.to_json(), indent=1))


def read_topology(path: Path) -> Topology:
    """A topology.json; SchemaError names the file and what is wrong (not JSON, a field)."""
    try:
        data = json.loads(path.read_text())
    except OSError as err:
        raise SchemaError(f"{path}: cannot read ({err.strerror})") from None
    except ValueError as err:
        raise SchemaError(f"{path}: not JSON ({err})") from None
    return Topology.from_json(data, str(path))


# ------------------------------------------------------------------ trace.jsonl


class _TraceKind(TypedDict):
    kind: str                   # message, event, state, note, drop, retransmit, resend_response, summary


class TraceRecord(_TraceKind, total=False):
    """One line of trace.jsonl. Every record has `kind`, which says which other fields come;
    the fields named here have these types (checked when read). A record may carry more (an
    event's own fields, a note's): they are kept as they are, untyped; a reader that needs one
    names it here first."""

    t: float                    # the gateway's monotonic clock, seconds
    wall: float                 # wall-clock time (time.time()), to merge gateways
    node: str                   # the gateway (added when the run folder merges traces)
    ike_sa: int | None          # the IKE SA's unique id
    # kind "message": one IKE message sent or received
    dir: str                    # "in" or "out" (also of a note "eap" and "radius")
    exchange: str               # IKE_SA_INIT, IKE_AUTH, CREATE_CHILD_SA, INFORMATIONAL (also of "retransmit")
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
    # kind "event": an event of lab.ike.events (IkeSaUp, ChildSaUp, ...) with its fields, keys never
    event: str
    name: str                   # the connection or CHILD_SA's name (also of "state")
    local: list[str | int] | str    # IkeSaUp, ChildSaUp: [address, port]; a note: an address
    remote: list[str | int] | str
    local_ts: list[str]         # ChildSaUp: the traffic selectors as "10.1.0.0/24"
    remote_ts: list[str]
    mode: str                   # ChildSaUp: "tunnel" or "transport"
    # kind "note": something a gateway noticed, `what` says which
    what: str
    # kind "drop": a message dropped; also why an SA went (event, state)
    reason: str
    # kind "retransmit"
    tries: int
    # kind "summary": `more` records like `like` within `seconds`, not written one by one
    of: str
    more: int
    seconds: float
    like: dict[str, Any]


def trace_record(data: Any, where: str) -> TraceRecord:
    """A parsed trace.jsonl line as a TraceRecord; SchemaError names `where` and the field."""
    record: TraceRecord = _typed_dict(TraceRecord, data, (where, ""))
    return record


def read_trace(path: str | Path, node: str = "", problems: list[str] | None = None) -> list[TraceRecord]:
    """The records of a trace.jsonl, each with `node` (given here where the record lacks it).
    A line that is not a JSON object or does not fit the schema is left out and told in
    `problems` as file:line and field."""
    records: list[TraceRecord] = []
    path = Path(path)
    if not path.exists():
        return records
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = trace_record(json.loads(line), f"{path}:{number}")
        except SchemaError as err:
            if problems is not None:
                problems.append(str(err))
            continue
        except ValueError as err:
            if problems is not None:
                problems.append(f"{path}:{number}: not a JSON trace record ({err})")
            continue
        if node and "node" not in record:
            record["node"] = node
        records.append(record)
    return records


def merge_traces(traces: Iterable[tuple[str, Path]], out: Path, problems: list[str] | None = None) -> int:
    """Every trace record of our gateways in one file, each with "node", ordered by "wall"
    (wall-clock time) where the records have it, else by file order. Lines that do not fit the
    schema are left out and told in `problems`."""
    records: list[tuple[float, str, int, TraceRecord]] = []
    for node, path in traces:
        for order, record in enumerate(read_trace(path, problems=problems)):
            record["node"] = node
            records.append((float(record.get("wall", 0.0) or 0.0), node, order, record))
    records.sort(key=lambda item: (item[0], item[1], item[2]))
    with open(out, "w") as f:
        for *_keys, record in records:
            f.write(json.dumps(record) + "\n")
    return len(records)
