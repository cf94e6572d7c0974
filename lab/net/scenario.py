"""Scenario files: scenarios/<name>/scenario.yaml (PyYAML), checked completely before
anything starts. Every mistake is one line naming file, line and field, e.g.

    scenarios/net2net/scenario.yaml:14: steps[2].ping.count: must be a whole number, not 'five'

A scenario names a topology and its parameters, the software of each gateway (its config in
hosts/<node>/swanctl.conf), NAT box knobs, taps, the steps in order and the checks. The
format is described for trainers in scenarios/README.md; `STEP_FIELDS` and `CHECK_FIELDS`
below are its reference.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .nodes import FILTER_DEFAULTS, NAT_DEFAULTS, NatBox, Router
from .peers import SOFTWARE
from .topology import LabTopo, TopologyError, load as load_topology

LIBRARY = Path(__file__).resolve().parents[2] / "scenarios"
DEFAULT_CHECK_TIMEOUT = 10.0


class ScenarioError(ValueError):
    """One mistake in a scenario: `file:line: field: message`."""

    def __init__(self, file: Path | str, line: int | None, field: str, message: str) -> None:
        self.file, self.line, self.field, self.message = str(file), line, field, message
        where = f"{self.file}:{line}" if line else self.file
        super().__init__(f"{where}: {field}: {message}" if field else f"{where}: {message}")


# ------------------------------------------------------------------ YAML with line numbers


class Map(dict):
    line: int = 0
    key_lines: dict


class Seq(list):
    line: int = 0
    item_lines: list


class _Loader(yaml.SafeLoader):
    """YAML with YAML 1.2's booleans (true/false only): `on:`, `expect: YES`, `no` stay text."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))


def _map(loader: _Loader, node: yaml.MappingNode) -> Map:
    out = Map()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, (str, int, float, bool)) or key is None:
            raise yaml.constructor.ConstructorError(None, None, f"a key must be a name, not {key!r}",
                                                    key_node.start_mark)
        if key in out:
            raise yaml.constructor.ConstructorError(None, None, f"'{key}' is given twice", key_node.start_mark)
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = key_node.start_mark.line + 1
    return out


def _seq(loader: _Loader, node: yaml.SequenceNode) -> Seq:
    out = Seq(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    out.item_lines = [child.start_mark.line + 1 for child in node.value]
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _map)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _seq)


def text_line(path: Path, offset: int) -> int:
    """The line of `path` the octet at `offset` is on."""
    return path.read_bytes()[:offset].count(b"\n") + 1


def read_yaml(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as err:
        raise ScenarioError(path, None, "", f"cannot read it: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise ScenarioError(path, text_line(path, err.start), "", "not a text file (UTF-8 expected)") from None
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else None
        raise ScenarioError(path, line, "", f"not valid YAML: {err.problem or err.context}") from None
    except yaml.YAMLError as err:
        raise ScenarioError(path, None, "", f"not valid YAML: {err}") from None


# ------------------------------------------------------------------ the model


@dataclass
class Step:
    index: int
    kind: str
    args: dict[str, Any]
    line: int
    expect: str = "pass"       # "fail": the step shows a failure happen
    say: str = ""              # what the step shows, in the trainer's words
    name: str = ""             # for "spi_changed_since" and "spi_kept_since"

    @property
    def text(self) -> str:
        return self.say or describe_step(self)


@dataclass
class Check:
    kind: str
    args: dict[str, Any]
    line: int
    timeout: float = DEFAULT_CHECK_TIMEOUT
    say: str = ""

    @property
    def text(self) -> str:
        return self.say or describe_check(self)


@dataclass
class Tap:
    name: str
    node: str
    intf: str
    filter: str = ""


@dataclass
class Scenario:
    name: str
    folder: Path
    file: Path
    title: str
    description: str
    topology_name: str
    topology: type[LabTopo]
    params: dict[str, Any]
    gateways: dict[str, str]
    gateway_options: dict[str, dict[str, Any]]
    nat: dict[str, dict[str, Any]]
    knobs: dict[str, dict[str, Any]]
    taps: list[Tap]
    merge_captures: bool
    steps: list[Step]
    checks: list[Check]
    timeout: float
    line_of: dict[str, int] = field(default_factory=dict)

    def build_topology(self) -> LabTopo:
        topo = self.topology(**self.params)
        for box, knobs in self.nat.items():
            topo.nodeInfo(box)["nat"].update(knobs)
        for node, knobs in self.knobs.items():
            info = topo.nodeInfo(node)
            if "nat" in info:
                info["nat"].update(knobs)
            else:
                info.setdefault("knobs", {}).update(knobs)
        return topo

    def host_folder(self, node: str) -> Path:
        return self.folder / "hosts" / node


# ------------------------------------------------------------------ field rules

# step kind -> (allowed fields, required fields); a step may also carry expect, say, name
STEP_FIELDS: dict[str, tuple[set[str], set[str]]] = {
    "start": ({"nodes"}, set()),
    "stop": ({"nodes"}, {"nodes"}),
    "kill": ({"nodes"}, {"nodes"}),
    "restart": ({"nodes", "options"}, {"nodes"}),
    "load": ({"node", "file"}, {"node", "file"}),
    "join": ({"step"}, {"step"}),
    "initiate": ({"node", "child", "ike", "timeout"}, {"node"}),
    "terminate": ({"node", "child", "ike"}, {"node"}),
    "rekey": ({"node", "child", "ike", "timeout"}, {"node"}),
    "ping": ({"from", "to", "count", "interval", "size", "source", "min", "timeout", "background"}, {"from", "to"}),
    "iperf3": ({"from", "to", "seconds", "server", "min_mbps", "background"}, {"from", "to"}),
    "transfer": ({"from", "to", "bytes", "server", "port", "timeout", "background", "mbps"}, {"from", "to", "bytes"}),
    "wait": ({"seconds"}, {"seconds"}),
    "nat": ({"node", "rebind", "reboot", *NAT_DEFAULTS}, {"node"}),
    "set": ({"node", *FILTER_DEFAULTS}, {"node"}),
    "mtu": ({"node", "intf", "mtu"}, {"node", "intf", "mtu"}),
    "run": ({"node", "cmd", "timeout"}, {"node", "cmd"}),
    "check": (set(), set()),
}
# check kind -> allowed fields (a check may also carry timeout and say)
CHECK_FIELDS: dict[str, set[str]] = {
    "cmd": {"node", "cmd", "match", "expect"},
    "tap": {"on", "filter", "display", "decrypt", "count", "min", "max", "before"},
    "sa": {"node", "ike", "child", "state", "count", "children", "nat_local", "nat_remote", "encap", "mode",
           "protocol", "algorithms", "esp_algorithms", "vip", "remote_vip", "spi_changed_since", "spi_kept_since", "remote_port",
           "local_port"},
    "trace": {"node", "kind", "event", "count", "min", "max", "match"},
    "counter": {"node", "name", "min", "max", "equal"},
    "log": {"node", "match", "expect"},
}
TOP_LEVEL = {"title", "description", "topology", "params", "gateways", "nat", "knobs", "taps", "merge_captures", "steps",
             "checks", "timeout"}
SIZE = re.compile(r"^(\d+)\s*([kKmMgG]?)[bB]?$")


class _Reader:
    """Validation of one scenario file, every error with its line and field path."""

    def __init__(self, file: Path) -> None:
        self.file = file

    def error(self, line: int | None, field: str, message: str) -> ScenarioError:
        return ScenarioError(self.file, line, field, message)

    def mapping(self, value: Any, line: int, field: str) -> Map:
        if not isinstance(value, dict):
            raise self.error(line, field, f"must be a mapping (key: value lines), not {_shown(value)}")
        return value if isinstance(value, Map) else _as_map(value, line)

    def keys(self, value: Map, allowed: set[str], field: str, required: set[str] = frozenset()) -> None:
        for key in value:
            if key not in allowed:
                known = ", ".join(sorted(allowed)) or "none"
                raise self.error(value.key_lines.get(key, value.line), f"{field}.{key}" if field else str(key),
                                 f"unknown field (known: {known})")
        for key in sorted(required):
            if key not in value:
                raise self.error(value.line, field, f"'{key}' is missing")

    def text(self, value: Any, line: int, field: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.error(line, field, f"must be text, not {_shown(value)}")
        return value

    def number(self, value: Any, line: int, field: str, minimum: float = 0, whole: bool = False) -> float:
        ok = isinstance(value, int) if whole else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok or value < minimum:
            what = "a whole number" if whole else "a number"
            raise self.error(line, field, f"must be {what}, at least {minimum:g}, not {_shown(value)}")
        return value

    def line(self, container: Map, key: str) -> int:
        return container.key_lines.get(key, container.line)


def _as_map(value: dict, line: int) -> Map:
    out = Map(value)
    out.line, out.key_lines = line, {}
    return out


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def parse_size(text: Any) -> int | None:
    """10M, 512k, 1000000 -> bytes (binary multiples: k = 1024)."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text if text > 0 else None
    match = SIZE.match(str(text).strip())
    if not match:
        return None
    return int(match.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[match.group(2).lower()]


# ------------------------------------------------------------------ loading


def find(name_or_path: str | Path) -> Path:
    """The scenario.yaml of a library name (scenarios/<name>/) or of a folder or file path."""
    path = Path(name_or_path)
    if path.is_dir():
        path = path / "scenario.yaml"
    elif not path.exists() and not path.suffix:
        candidate = LIBRARY / str(name_or_path) / "scenario.yaml"
        if candidate.exists():
            return candidate
        known = ", ".join(s.name for s in library()) or "none"
        raise ScenarioError(name_or_path, None, "", f"no such scenario (the library has: {known})")
    if not path.exists():
        raise ScenarioError(path, None, "", "no such file")
    return path


def library() -> list[Path]:
    """Every scenario folder of the library, by name."""
    return sorted(p.parent for p in LIBRARY.glob("*/scenario.yaml"))


def load(name_or_path: str | Path) -> Scenario:
    file = find(name_or_path)
    folder = file.parent
    data = read_yaml(file)
    r = _Reader(file)
    if data is None:
        raise r.error(1, "", "the file is empty")
    top = r.mapping(data, 1, "")
    r.keys(top, TOP_LEVEL, "", {"topology", "steps"})
    title = r.text(top.get("title", folder.name), r.line(top, "title"), "title")
    description = top.get("description", "") or ""
    if not isinstance(description, str):
        raise r.error(r.line(top, "description"), "description", "must be text")
    timeout = float(r.number(top.get("timeout", DEFAULT_CHECK_TIMEOUT), r.line(top, "timeout"), "timeout", 0.1))

    topology_name = r.text(top["topology"], r.line(top, "topology"), "topology")
    try:
        topology = load_topology(topology_name, folder)
    except TopologyError as err:
        raise r.error(r.line(top, "topology"), "topology", str(err)) from None
    params = r.mapping(top.get("params", {}) or {}, r.line(top, "params"), "params")
    try:
        checked = topology.check_params(dict(params))
    except TopologyError as err:
        key = str(err).split(":", 1)[0]
        raise r.error(params.key_lines.get(key, r.line(top, "params")), f"params.{key}",
                      str(err).split(": ", 1)[-1]) from None
    try:
        topo = topology(**checked)
    except (TopologyError, ValueError) as err:
        raise r.error(r.line(top, "params"), "params", f"topology {topology_name}: {err}") from None
    nodes = set(topo.hosts())

    gateways, gateway_options = _gateways(r, top, topo, folder)
    nat = _nat(r, top, topo)
    knobs = _knobs(r, top, topo)
    taps, merge = _taps(r, top, topo)
    steps = _steps(r, top, nodes, gateways, topo)
    checks = _checks(r, top, "checks", top.get("checks", []) or [], nodes, gateways, steps, taps, timeout)
    for step in steps:
        if step.kind == "check":
            step.args["check"] = _check(r, step.args.pop("_raw"), step.args.pop("_line"), f"steps[{step.index}].check",
                                        nodes, gateways, steps, taps, timeout)
    return Scenario(name=folder.name, folder=folder, file=file, title=title, description=description.strip(),
                    topology_name=topology_name, topology=topology, params=checked, gateways=gateways,
                    gateway_options=gateway_options, nat=nat, knobs=knobs, taps=taps, merge_captures=merge, steps=steps,
                    checks=checks, timeout=timeout, line_of=dict(top.key_lines))


def _gateways(r: _Reader, top: Map, topo: LabTopo, folder: Path) -> tuple[dict[str, str], dict[str, dict]]:
    raw = r.mapping(top.get("gateways", {}) or {}, r.line(top, "gateways"), "gateways")
    gateways, options = {}, {}
    for node, value in raw.items():
        line = raw.key_lines.get(node, raw.line)
        if node not in topo.hosts():
            raise r.error(line, f"gateways.{node}", f"no such node in topology {topo.name} "
                                                    f"(its gateways: {', '.join(topo.nodes_of('gateway'))})")
        if topo.kind_of(node) != "gateway":
            raise r.error(line, f"gateways.{node}", f"{node} is a {topo.kind_of(node)}, not a gateway")
        opts: dict[str, Any] = {}
        if isinstance(value, dict):
            value = r.mapping(value, line, f"gateways.{node}")
            r.keys(value, {"software", "options"}, f"gateways.{node}", {"software"})
            software = value["software"]
            extra = value.get("options", [])
            if not isinstance(extra, list) or not all(isinstance(x, str) for x in extra):
                raise r.error(r.line(value, "options"), f"gateways.{node}.options",
                              "must be a list of daemon options, e.g. [--keepalive-interval, '5']")
            opts["extra_args"] = tuple(extra)
        else:
            software = value
        if software not in SOFTWARE:
            raise r.error(line, f"gateways.{node}", f"must be one of {', '.join(SOFTWARE)}, not {_shown(software)}")
        if opts.get("extra_args") and software != "ours":
            raise r.error(line, f"gateways.{node}.options", "daemon options are for our daemon only")
        conf = folder / "hosts" / node / "swanctl.conf"
        if not conf.exists():
            raise r.error(line, f"gateways.{node}", f"{conf} is missing (each gateway's config lives in "
                                                    f"hosts/<node>/swanctl.conf)")
        _check_host_config(conf, software)
        gateways[node] = software
        options[node] = opts
    return gateways, options


def _check_host_config(conf: Path, software: str) -> None:
    """Our daemon's reader checks everything it will use; for strongSwan the syntax."""
    from lab.conf.settings import parse_settings
    from lab.conf.swanctl import ConfigError, load_swanctl

    try:
        if software == "ours":
            load_swanctl(str(conf))
        else:
            parse_settings(conf.read_text(), str(conf))
    except ConfigError as err:
        raise ScenarioError(err.file, err.line, err.key or "", err.reason) from None


def _nat(r: _Reader, top: Map, topo: LabTopo) -> dict[str, dict[str, Any]]:
    raw = r.mapping(top.get("nat", {}) or {}, r.line(top, "nat"), "nat")
    out = {}
    for box, knobs in raw.items():
        line = raw.key_lines.get(box, raw.line)
        if box not in topo.hosts() or topo.kind_of(box) != "nat":
            raise r.error(line, f"nat.{box}", f"no NAT box {box!r} in topology {topo.name} "
                                              f"(its NAT boxes: {', '.join(topo.nodes_of('nat')) or 'none'})")
        knobs = r.mapping(knobs, line, f"nat.{box}")
        settable = set(NAT_DEFAULTS) - {"inside", "outside", "public"}
        r.keys(knobs, settable, f"nat.{box}")
        try:
            NatBox.check_knobs(dict(knobs))
        except ValueError as err:
            key = str(err).split(":", 1)[0]
            raise r.error(knobs.key_lines.get(key, line), f"nat.{box}.{key}", str(err).split(": ", 1)[-1]) from None
        out[box] = dict(knobs)
    return out


def _knobs(r: _Reader, top: Map, topo: LabTopo) -> dict[str, dict[str, Any]]:
    """knobs: {node: {drop_esp: true, mss_clamp: 1300, ...}} for routers, gateways and NAT boxes."""
    raw = r.mapping(top.get("knobs", {}) or {}, r.line(top, "knobs"), "knobs")
    out = {}
    routers = [n for n in topo.hosts() if topo.kind_of(n) in ("router", "gateway", "nat")]
    for node, knobs in raw.items():
        line = raw.key_lines.get(node, raw.line)
        if node not in routers:
            raise r.error(line, f"knobs.{node}", f"no router, gateway or NAT box {node!r} in topology {topo.name} "
                                                 f"(they are: {', '.join(routers)})")
        knobs = r.mapping(knobs, line, f"knobs.{node}")
        r.keys(knobs, set(FILTER_DEFAULTS), f"knobs.{node}")
        try:
            Router.check_knobs(dict(knobs))
        except ValueError as err:
            key = str(err).split(":", 1)[0]
            raise r.error(knobs.key_lines.get(key, line), f"knobs.{node}.{key}", str(err).split(": ", 1)[-1]) from None
        out[node] = dict(knobs)
    return out


def _taps(r: _Reader, top: Map, topo: LabTopo) -> tuple[list[Tap], bool]:
    merge = top.get("merge_captures", False)
    if not isinstance(merge, bool):
        raise r.error(r.line(top, "merge_captures"), "merge_captures", "must be true or false")
    raw = top.get("taps", "default")
    if raw in ("default", None):
        return [Tap(t["name"], t["node"], t["intf"]) for t in topo.default_taps()], merge
    if raw in ("none", False):
        return [], merge
    if not isinstance(raw, list):
        raise r.error(r.line(top, "taps"), "taps", "must be default, none, or a list of NODE:INTERFACE entries")
    taps = []
    for i, item in enumerate(raw):
        line = raw.item_lines[i] if isinstance(raw, Seq) else r.line(top, "taps")
        field_name = f"taps[{i + 1}]"
        if item == "default":
            taps += [Tap(t["name"], t["node"], t["intf"]) for t in topo.default_taps()]
            continue
        bpf, name = "", None
        if isinstance(item, dict):
            item = r.mapping(item, line, field_name)
            r.keys(item, {"on", "filter", "name"}, field_name, {"on"})
            bpf = item.get("filter", "") or ""
            name = item.get("name")
            item = item["on"]
        if not isinstance(item, str) or item.count(":") != 1:
            raise r.error(line, field_name, f"must be NODE:INTERFACE (e.g. nat:nat-out), not {_shown(item)}")
        node, intf = item.split(":")
        if node not in topo.hosts():
            raise r.error(line, field_name, f"no node {node!r} (nodes: {', '.join(topo.hosts())})")
        intfs = list(topo.interfaces(node))
        if intf not in intfs:
            raise r.error(line, field_name, f"{node} has no interface {intf!r} (it has: {', '.join(intfs)})")
        taps.append(Tap(name or f"{node}-{intf.split('-', 1)[-1]}", node, intf, bpf))
    names = [t.name for t in taps]
    for name in names:
        if names.count(name) > 1:
            raise r.error(r.line(top, "taps"), "taps", f"two taps are named {name!r}: give one a name")
    return taps, merge


def _nodes_field(r: _Reader, value: Any, line: int, field: str, gateways: dict[str, str]) -> list[str]:
    if value in (None, "all"):
        return list(gateways)
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(name, str) for name in names):
        raise r.error(line, field, "must be a gateway name, a list of them, or all")
    for name in names:
        if name not in gateways:
            raise r.error(line, field, f"{name!r} runs no IKE daemon (gateways: {', '.join(gateways) or 'none'})")
    return list(names)


def _steps(r: _Reader, top: Map, nodes: set[str], gateways: dict[str, str], topo: LabTopo) -> list[Step]:
    raw = top["steps"]
    if not isinstance(raw, list) or not raw:
        raise r.error(r.line(top, "steps"), "steps", "must be a list of steps (- start: all, - initiate: ...)")
    steps: list[Step] = []
    for i, item in enumerate(raw, 1):
        line = raw.item_lines[i - 1] if isinstance(raw, Seq) else r.line(top, "steps")
        where = f"steps[{i}]"
        item = r.mapping(item, line, where)
        kinds = [k for k in item if k in STEP_FIELDS]
        if len(kinds) != 1:
            raise r.error(line, where, f"each step is one of {', '.join(STEP_FIELDS)} (plus expect, say, name, "
                                       f"background); "
                                       f"found {', '.join(map(str, item)) or 'nothing'}")
        kind = kinds[0]
        extras = set(item) - {kind}
        for key in extras - {"expect", "say", "name", "background"}:
            raise r.error(item.key_lines.get(key, line), f"{where}.{key}",
                          "unknown field (a step may also have expect, say, name, background)")
        if "background" in item:
            if kind not in ("ping", "iperf3", "transfer"):
                raise r.error(item.key_lines.get("background", line), f"{where}.background",
                              "only ping, iperf3 and transfer can run in the background")
            if not isinstance(item["background"], bool):
                raise r.error(item.key_lines.get("background", line), f"{where}.background", "must be true or false")
        expect = item.get("expect", "pass")
        if expect not in ("pass", "fail"):
            raise r.error(item.key_lines.get("expect", line), f"{where}.expect", "must be pass or fail")
        say = item.get("say", "")
        if not isinstance(say, str):
            raise r.error(item.key_lines.get("say", line), f"{where}.say", "must be text")
        step_name = item.get("name", "")
        if not isinstance(step_name, str):
            raise r.error(item.key_lines.get("name", line), f"{where}.name", "must be text")
        value = item[kind]
        vline = item.key_lines.get(kind, line)
        args = _step_args(r, kind, value, vline, f"{where}.{kind}", nodes, gateways, topo)
        if item.get("background"):
            args["background"] = True
        steps.append(Step(index=i, kind=kind, args=args, line=vline, expect=expect, say=say, name=step_name))
    names = [s.name for s in steps if s.name]
    for name in names:
        if names.count(name) > 1:
            raise r.error(r.line(top, "steps"), "steps", f"two steps are named {name!r}")
    started: set[str] = set()
    for step in steps:
        if step.args.get("background"):
            if not step.name:
                raise r.error(step.line, f"steps[{step.index}]", "a background step needs a name: to join it later")
            started.add(step.name)
        if step.kind == "join":
            if step.args["step"] not in started:
                raise r.error(step.line, f"steps[{step.index}].join", f"no earlier background step is named "
                                                                      f"{step.args['step']!r}")
            started.discard(step.args["step"])
    if started:
        raise r.error(r.line(top, "steps"), "steps", f"background step(s) never joined: {', '.join(sorted(started))} "
                                                     f"(add - join: NAME where their result should count)")
    return steps


_SHORTHAND = {
    # step kind -> the field a bare value stands for ("initiate: gwa" = node gwa)
    "initiate": "node", "terminate": "node", "rekey": "node", "stop": "nodes", "kill": "nodes",
    "restart": "nodes", "start": "nodes", "wait": "seconds", "nat": "node", "join": "step",
}


def _step_args(r: _Reader, kind: str, value: Any, line: int, where: str, nodes: set[str], gateways: dict[str, str],
               topo: LabTopo) -> dict[str, Any]:
    if kind == "check":
        return {"_raw": value, "_line": line}
    allowed, required = STEP_FIELDS[kind]
    if not isinstance(value, dict):
        if kind in _SHORTHAND and value is not None:
            value = {_SHORTHAND[kind]: value}
        elif kind == "start" and value is None:
            value = {}
        else:
            raise r.error(line, where, f"give the step's fields ({', '.join(sorted(allowed))})")
    args = r.mapping(value, line, where)
    r.keys(args, allowed, where, required)
    L = lambda key: args.key_lines.get(key, line)  # noqa: E731
    out: dict[str, Any] = dict(args)
    if "nodes" in allowed:
        out["nodes"] = _nodes_field(r, args.get("nodes"), L("nodes"), f"{where}.nodes", gateways)
    if kind in ("initiate", "terminate", "rekey"):
        targets = args["node"] if kind == "rekey" and isinstance(args["node"], list) else [args["node"]]
        for node in targets:
            if not isinstance(node, str) or node not in gateways:
                raise r.error(L("node"), f"{where}.node", f"{node!r} runs no IKE daemon (gateways: "
                                                          f"{', '.join(gateways)})")
        out["nodes"] = list(targets)
        if kind != "initiate" and not args.get("child") and not args.get("ike"):
            raise r.error(line, where, "name the SA: child: NAME or ike: NAME")
        if kind == "initiate" and not args.get("child") and not args.get("ike"):
            raise r.error(line, where, "name what to initiate: child: NAME (and its IKE SA comes up with it)")
        if "timeout" in args:
            r.number(args["timeout"], L("timeout"), f"{where}.timeout", 0.1)
    if kind in ("ping", "iperf3", "transfer"):
        for key in ("from", "server"):
            if key in args and args[key] not in nodes:
                raise r.error(L(key), f"{where}.{key}", f"no node {args[key]!r} (nodes: {', '.join(sorted(nodes))})")
        target = args["to"]
        if target not in nodes:
            try:
                ipaddress.ip_address(str(target))
            except ValueError:
                raise r.error(L("to"), f"{where}.to", f"must be a node name or an IP address, not {_shown(target)}"
                              ) from None
            owner = owner_of(topo, str(target))
            if kind != "ping" and "server" not in args and owner is None:
                raise r.error(L("to"), f"{where}.to", f"no node has address {target}: add server: NODE")
        out["server"] = args.get("server") or (target if target in nodes else owner_of(topo, str(target)))
    if kind == "ping":
        out["count"] = int(r.number(args.get("count", 3), L("count"), f"{where}.count", 1, whole=True))
        out["interval"] = float(r.number(args.get("interval", 0.2), L("interval"), f"{where}.interval", 0.002))
        if "size" in args:
            r.number(args["size"], L("size"), f"{where}.size", 0, whole=True)
        out["min"] = int(r.number(args.get("min", out["count"]), L("min"), f"{where}.min", 1, whole=True))
        if "source" in args:
            try:
                ipaddress.ip_address(str(args["source"]))
            except ValueError:
                raise r.error(L("source"), f"{where}.source", "must be an IP address of the pinging node") from None
    if kind == "iperf3":
        out["seconds"] = float(r.number(args.get("seconds", 3), L("seconds"), f"{where}.seconds", 0.5))
        if "min_mbps" in args:
            r.number(args["min_mbps"], L("min_mbps"), f"{where}.min_mbps", 0)
    if kind == "transfer":
        size = parse_size(args["bytes"])
        if size is None:
            raise r.error(L("bytes"), f"{where}.bytes", f"must be a size like 10M, 512k or 100000, not "
                                                        f"{_shown(args['bytes'])}")
        out["bytes"] = size
        out["port"] = int(r.number(args.get("port", 5201), L("port"), f"{where}.port", 1, whole=True))
        out["timeout"] = float(r.number(args.get("timeout", 60), L("timeout"), f"{where}.timeout", 1))
        out["mbps"] = float(r.number(args.get("mbps", 0), L("mbps"), f"{where}.mbps", 0))
    if kind == "wait":
        r.number(args["seconds"], L("seconds"), f"{where}.seconds", 0)
    if kind == "nat":
        box = args["node"]
        if box not in nodes or topo.kind_of(box) != "nat":
            raise r.error(L("node"), f"{where}.node", f"no NAT box {box!r} (NAT boxes: "
                                                      f"{', '.join(topo.nodes_of('nat')) or 'none'})")
        knobs = {k: v for k, v in args.items() if k in NAT_DEFAULTS}
        for key in ("inside", "outside", "public"):
            if key in knobs:
                raise r.error(L(key), f"{where}.{key}", "is fixed by the topology")
        try:
            NatBox.check_knobs(knobs)
        except ValueError as err:
            key = str(err).split(":", 1)[0]
            raise r.error(L(key), f"{where}.{key}", str(err).split(": ", 1)[-1]) from None
        for key in ("rebind", "reboot"):
            if key in args and args[key] is not True:
                raise r.error(L(key), f"{where}.{key}", "write rebind: true (or leave it out)")
        if not knobs and not args.get("rebind") and not args.get("reboot"):
            raise r.error(line, where, "say what changes: rebind: true, reboot: true, or a knob like loss: 0.1")
    if kind == "set":
        node = args["node"]
        if node not in nodes or topo.kind_of(node) not in ("router", "gateway", "nat"):
            routers = [n for n in topo.hosts() if topo.kind_of(n) in ("router", "gateway", "nat")]
            raise r.error(L("node"), f"{where}.node", f"{node!r} is not a router, gateway or NAT box "
                                                      f"({', '.join(routers)})")
        knobs = {k: v for k, v in args.items() if k != "node"}
        if not knobs:
            raise r.error(line, where, "say what changes, e.g. mss_clamp: 1300 or drop_esp: true")
        try:
            Router.check_knobs(knobs)
        except ValueError as err:
            key = str(err).split(":", 1)[0]
            raise r.error(L(key), f"{where}.{key}", str(err).split(": ", 1)[-1]) from None
    if kind == "load":
        node = args["node"]
        if node not in gateways:
            raise r.error(L("node"), f"{where}.node", f"{node!r} runs no IKE daemon (gateways: {', '.join(gateways)})")
        file = r.text(args["file"], L("file"), f"{where}.file")
        path = r.file.parent / file
        if not path.exists():
            raise r.error(L("file"), f"{where}.file", f"{path} does not exist (a path from the scenario's folder)")
        _check_host_config(path, gateways[node])
        out["file"] = str(path)
    if kind == "restart" and "options" in args:
        extra = args["options"]
        if not isinstance(extra, list) or not all(isinstance(x, str) for x in extra):
            raise r.error(L("options"), f"{where}.options", "must be a list of daemon options, e.g. "
                                                            "[--keepalive-interval, '5']")
        if any(gateways[n] != "ours" for n in out["nodes"]):
            raise r.error(L("options"), f"{where}.options", "daemon options are for our daemon only")
    if "background" in args and not isinstance(args["background"], bool):
        raise r.error(L("background"), f"{where}.background", "must be true or false")
    if kind == "mtu":
        node = args["node"]
        if node not in nodes:
            raise r.error(L("node"), f"{where}.node", f"no node {node!r}")
        if args["intf"] not in topo.interfaces(node):
            raise r.error(L("intf"), f"{where}.intf", f"{node} has no interface {args['intf']!r} "
                                                      f"(it has: {', '.join(topo.interfaces(node))})")
        r.number(args["mtu"], L("mtu"), f"{where}.mtu", 68, whole=True)
    if kind == "run":
        if args["node"] not in nodes:
            raise r.error(L("node"), f"{where}.node", f"no node {args['node']!r}")
        r.text(args["cmd"], L("cmd"), f"{where}.cmd")
    return out


def owner_of(topo: LabTopo, address: str) -> str | None:
    """The node that has `address` on one of its interfaces."""
    for node in topo.hosts():
        info = topo.nodeInfo(node)
        for spec in info["intfs"].values():
            if any(a.split("/")[0] == address for a in spec.get("addrs", [])):
                return node
        if any(a.split("/")[0] == address for a in info.get("lo_addrs", [])):
            return node
    return None


def _checks(r: _Reader, top: Map, where: str, raw: Any, nodes: set[str], gateways: dict[str, str], steps: list[Step],
            taps: list[Tap], timeout: float) -> list[Check]:
    if not isinstance(raw, list):
        raise r.error(r.line(top, where), where, "must be a list of checks")
    out = []
    for i, item in enumerate(raw, 1):
        line = raw.item_lines[i - 1] if isinstance(raw, Seq) else r.line(top, where)
        out.append(_check(r, item, line, f"{where}[{i}]", nodes, gateways, steps, taps, timeout))
    return out


EVALTEST = re.compile(r"^(?P<node>[^:]+)::(?P<cmd>.+)::(?P<match>.*)::(?P<expect>YES|NO|\d+)$")


def _check(r: _Reader, item: Any, line: int, where: str, nodes: set[str], gateways: dict[str, str],
           steps: list[Step], taps: list[Tap], timeout: float) -> Check:
    if isinstance(item, str):
        match = EVALTEST.match(item)
        if not match:
            raise r.error(line, where, "a one-line check is NODE::COMMAND::REGEX::YES|NO|COUNT, "
                                       f"like strongSwan's evaltest.dat; not {item!r}")
        item = _as_map({"cmd": dict(match.groupdict())}, line)
    item = r.mapping(item, line, where)
    kinds = [k for k in item if k in CHECK_FIELDS]
    if len(kinds) != 1:
        raise r.error(line, where, f"each check is one of {', '.join(CHECK_FIELDS)} (plus timeout, say)")
    kind = kinds[0]
    for key in set(item) - {kind, "timeout", "say"}:
        raise r.error(item.key_lines.get(key, line), f"{where}.{key}", "unknown field (a check may also have "
                                                                       "timeout, say)")
    check_timeout = float(r.number(item.get("timeout", timeout), item.key_lines.get("timeout", line),
                                   f"{where}.timeout", 0))
    say = item.get("say", "")
    if not isinstance(say, str):
        raise r.error(item.key_lines.get("say", line), f"{where}.say", "must be text")
    cline = item.key_lines.get(kind, line)
    args = r.mapping(item[kind], cline, f"{where}.{kind}")
    r.keys(args, CHECK_FIELDS[kind], f"{where}.{kind}")
    L = lambda key: args.key_lines.get(key, cline)  # noqa: E731
    field_name = f"{where}.{kind}"
    out = dict(args)
    if "node" in CHECK_FIELDS[kind]:
        if "node" not in args:
            raise r.error(cline, field_name, "'node' is missing")
        node = args["node"]
        pool = gateways if kind in ("sa", "trace", "counter", "log") else nodes
        if node not in pool:
            raise r.error(L("node"), f"{field_name}.node", f"{node!r} is not a {'gateway' if pool is gateways else 'node'}"
                                                           f" here ({', '.join(sorted(pool))})")
        if kind == "trace" and gateways[node] != "ours":
            raise r.error(L("node"), f"{field_name}.node", "trace checks read our daemon's trace; "
                                                           f"{node} runs {gateways[node]}")
    for key in ("count", "min", "max", "equal", "children", "remote_port", "local_port"):
        if key in args:
            r.number(args[key], L(key), f"{field_name}.{key}", 0, whole=True)
    for key in ("match", "algorithms", "esp_algorithms", "vip", "remote_vip"):
        if key in args:
            try:
                re.compile(str(args[key]))
            except re.error as err:
                raise r.error(L(key), f"{field_name}.{key}", f"not a valid regular expression: {err}") from None
    if kind == "cmd":
        r.text(args.get("cmd"), L("cmd"), f"{field_name}.cmd")
        expect = str(args.get("expect", "YES"))
        if expect not in ("YES", "NO") and not expect.isdigit():
            raise r.error(L("expect"), f"{field_name}.expect", "must be YES, NO or a count")
        out["expect"] = expect
        out.setdefault("match", "")
    if kind == "log":
        r.text(args.get("match"), L("match"), f"{field_name}.match")
        expect = str(args.get("expect", "YES"))
        if expect not in ("YES", "NO") and not expect.isdigit():
            raise r.error(L("expect"), f"{field_name}.expect", "must be YES, NO or a count")
        out["expect"] = expect
    if kind == "tap":
        names = [t.name for t in taps]
        if args.get("on") not in names:
            raise r.error(L("on"), f"{field_name}.on", f"no tap {args.get('on')!r} (taps: {', '.join(names) or 'none'})")
        if "before" in args:
            before = args["before"]
            if (not isinstance(before, list) or len(before) != 2 or not all(isinstance(b, str) for b in before)):
                raise r.error(L("before"), f"{field_name}.before",
                              "must be [FIRST_FILTER, THEN_FILTER]: every FIRST packet comes before any THEN packet")
        elif not any(k in args for k in ("count", "min", "max")):
            raise r.error(cline, field_name, "say how many: count, min or max (or before: [A, B])")
        if "filter" in args and not isinstance(args["filter"], str):
            raise r.error(L("filter"), f"{field_name}.filter", "must be a BPF filter, e.g. \"udp port 500\"")
        if "display" in args and not isinstance(args["display"], str):
            raise r.error(L("display"), f"{field_name}.display", "must be a Wireshark display filter, e.g. \"ah && icmp\"")
        if "decrypt" in args and (not isinstance(args["decrypt"], bool) or "display" not in args):
            raise r.error(L("decrypt"), f"{field_name}.decrypt", "decrypt: true goes with a display filter (tshark "
                                                                 "then opens ESP with the run's keys)")
    if kind == "sa":
        for key in ("nat_local", "nat_remote", "encap"):
            if key in args and not isinstance(args[key], bool):
                raise r.error(L(key), f"{field_name}.{key}", "must be true or false")
        for since in ("spi_changed_since", "spi_kept_since"):
            if since not in args:
                continue
            ref = args[since]
            if not any(s.name == ref for s in steps):
                raise r.error(L(since), f"{field_name}.{since}",
                              f"no step is named {ref!r} (give that step name: {ref})")
            if not args.get("child") and not args.get("ike"):
                raise r.error(cline, field_name, f"{since} needs child: NAME or ike: NAME")
    if kind == "trace" and not args.get("kind") and not args.get("event"):
        raise r.error(cline, field_name, "give event: (e.g. ChildSaRekeyed) or kind: (e.g. retransmit)")
    if kind == "counter":
        r.text(args.get("name"), L("name"), f"{field_name}.name")
    return Check(kind=kind, args=out, line=cline, timeout=check_timeout, say=say)


# ------------------------------------------------------------------ words


def describe_step(step: Step) -> str:
    a = step.args
    what = {
        "start": lambda: f"start {', '.join(a['nodes'])}",
        "stop": lambda: f"stop {', '.join(a['nodes'])}",
        "kill": lambda: f"kill {', '.join(a['nodes'])} (crash)",
        "restart": lambda: f"restart {', '.join(a['nodes'])}" + (f" with {' '.join(a['options'])}"
                                                                  if a.get("options") else ""),
        "initiate": lambda: f"{a['node']} initiates {a.get('child') or a.get('ike')}",
        "terminate": lambda: f"{a['node']} terminates {a.get('child') or a.get('ike')}",
        "rekey": lambda: f"{' and '.join(a['nodes'])} rekey{'s' if len(a['nodes']) == 1 else ''} "
                         f"{'CHILD_SA ' + a['child'] if a.get('child') else 'IKE SA ' + a['ike']}"
                         + (" at the same time" if len(a["nodes"]) > 1 else ""),
        "ping": lambda: f"{a['from']} pings {a['to']} ({a['count']}x)" + (" in the background" if a.get("background")
                                                                           else ""),
        "iperf3": lambda: f"iperf3 TCP {a['from']} -> {a['to']} for {a['seconds']:g} s",
        "transfer": lambda: f"{a['from']} sends {_size(a['bytes'])} to {a['to']}"
                            + (f" at {a['mbps']:g} Mbit/s" if a.get("mbps") else "") + " (checked by SHA-256)",
        "wait": lambda: f"wait {a['seconds']} s",
        "nat": lambda: f"NAT box {a['node']}: " + ", ".join(
            ["rebind" if a.get("rebind") else "", "reboot" if a.get("reboot") else ""]
            + [f"{k} = {v}" for k, v in a.items() if k in NAT_DEFAULTS]).strip(", "),
        "mtu": lambda: f"MTU of {a['node']}:{a['intf']} = {a['mtu']}",
        "set": lambda: f"{a['node']}: " + ", ".join(f"{k} = {'off' if v is None else v}" for k, v in a.items()
                                                    if k != "node"),
        "load": lambda: f"{a['node']} loads {Path(a['file']).name}",
        "join": lambda: f"wait for '{a['step']}' to finish",
        "run": lambda: f"{a['node']}: {a['cmd']}",
        "check": lambda: "check: " + a["check"].text,
    }[step.kind]()
    return what + (" (expected to fail)" if step.expect == "fail" else "")


def _size(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"


def describe_check(check: Check) -> str:
    a = check.args
    if check.kind == "cmd":
        return f"{a['node']}: `{a['cmd']}` {'matches' if a['expect'] != 'NO' else 'does not match'} /{a['match']}/" + (
            f" {a['expect']} times" if a["expect"].isdigit() else "")
    if check.kind == "tap":
        if "before" in a:
            return f"tap {a['on']}: every '{a['before'][0]}' before any '{a['before'][1]}'"
        how = (f"exactly {a['count']}" if "count" in a else
               " and ".join(x for x in (f"at least {a['min']}" if "min" in a else "",
                                        f"at most {a['max']}" if "max" in a else "") if x))
        what = " and ".join(f"'{x}'" for x in (a.get("filter"), a.get("display")) if x) or "any"
        return f"tap {a['on']}: {how} packets of {what}" + (" (decrypted)" if a.get("decrypt") else "")
    if check.kind == "sa":
        facts = [f"{k}={v}" for k, v in a.items() if k not in ("node", "ike", "child")]
        what = f"CHILD_SA {a['child']}" if a.get("child") else f"IKE SA {a['ike']}" if a.get("ike") else "SAs"
        return f"{a['node']}: {what} " + (", ".join(facts) or "ESTABLISHED")
    if check.kind == "trace":
        return f"{a['node']} trace: {a.get('event') or a.get('kind')} " + _bounds(a)
    if check.kind == "counter":
        return f"{a['node']} counter {a['name']} " + _bounds(a)
    return f"{a['node']} log {'has' if a['expect'] != 'NO' else 'has no'} /{a['match']}/"


def _bounds(a: dict[str, Any]) -> str:
    parts = []
    for key, word in (("count", "=="), ("equal", "=="), ("min", ">="), ("max", "<=")):
        if key in a:
            parts.append(f"{word} {a[key]}")
    return " ".join(parts) or ">= 1"
