"""Scenario files: scenarios/<name>/scenario.yaml (PyYAML), checked completely before
anything starts. Every mistake is one line naming file, line and field, e.g.

    scenarios/net2net/scenario.yaml:14: steps[2].ping.count: must be a whole number, not 'five'

A scenario names a topology and its parameters, the software of each gateway (its config in
hosts/<node>/, see lab.net.software), NAT box knobs, taps, the steps in order and the checks.
Each kind of step and check is one entry of its registry (lab.net.steps.STEPS,
lab.net.checks.CHECKS): its fields, their validation, its words and its execution. The format
is described for trainers in scenarios/README.md, whose reference part is generated from the
registries (lab.net.reference).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .checks import DEFAULT_CHECK_TIMEOUT, Check, parse_check, parse_checks
from .fields import Map, ScenarioError, ScenarioReader, Seq, parse_size, read_yaml, shown, text_line
from .nodes import FILTER_DEFAULTS, NAT_DEFAULTS, NatBox, Router
from .software import SERVICES, SOFTWARE
from .steps import STEPS, Context, Step, check_host_config, owner_of
from .topology import LabTopo, TopologyError
from .topology import load as load_topology

LIBRARY = Path(__file__).resolve().parents[2] / "scenarios"


@dataclass
class TapSpec:
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
    taps: list[TapSpec]
    merge_captures: bool
    steps: list[Step]
    checks: list[Check]
    timeout: float
    line_of: dict[str, int] = field(default_factory=dict)
    services: dict[str, str] = field(default_factory=dict)  # node: service (lab.net.software.SERVICES)

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


TOP_LEVEL = {"title", "description", "topology", "params", "gateways", "services", "nat", "knobs", "taps",
             "merge_captures", "steps", "checks", "timeout"}
STEP_EXTRAS = ("expect", "say", "name", "background")   # what any step may carry besides its kind


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
    r = ScenarioReader(file)
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
    gateways, gateway_options = _gateways(r, top, topo, folder)
    services = _services(r, top, topo, folder, gateways)
    nat = _nat(r, top, topo)
    knobs = _knobs(r, top, topo)
    taps, merge = _taps(r, top, topo)
    ctx = Context(r, set(topo.hosts()), gateways, topo, taps=taps, services=services)
    steps = _steps(ctx, top)
    ctx.steps = steps
    checks = parse_checks(ctx, top.get("checks", []) or [], r.line(top, "checks"), "checks", timeout)
    for step in steps:
        if step.kind == "check":
            step.args["check"] = parse_check(ctx, step.args.pop("_raw"), step.args.pop("_line"),
                                             f"steps[{step.index}].check", timeout)
    return Scenario(name=folder.name, folder=folder, file=file, title=title, description=description.strip(),
                    topology_name=topology_name, topology=topology, params=checked, gateways=gateways,
                    gateway_options=gateway_options, nat=nat, knobs=knobs, taps=taps, merge_captures=merge, steps=steps,
                    checks=checks, timeout=timeout, line_of=dict(top.key_lines), services=services)


def _gateways(r: ScenarioReader, top: Map, topo: LabTopo, folder: Path) -> tuple[dict[str, str], dict[str, dict]]:
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
            raise r.error(line, f"gateways.{node}", f"must be one of {', '.join(SOFTWARE)}, not {shown(software)}")
        if opts.get("extra_args") and not SOFTWARE[software].options:
            raise r.error(line, f"gateways.{node}.options", "daemon options are for our daemon only")
        configs = SOFTWARE[software].configs
        conf = next((folder / "hosts" / node / c for c in configs if (folder / "hosts" / node / c).exists()),
                    folder / "hosts" / node / configs[0])
        if not conf.exists():
            raise r.error(line, f"gateways.{node}", f"{conf} is missing (each gateway's config lives in "
                                                    f"hosts/<node>/{' or '.join(configs)})")
        check_host_config(conf, software)
        gateways[node] = software
        options[node] = opts
    return gateways, options


def _services(r: ScenarioReader, top: Map, topo: LabTopo, folder: Path, gateways: dict[str, str]) -> dict[str, str]:
    raw = r.mapping(top.get("services", {}) or {}, r.line(top, "services"), "services")
    services = {}
    for node, value in raw.items():
        line = raw.key_lines.get(node, raw.line)
        if node not in topo.hosts():
            raise r.error(line, f"services.{node}", f"no such node in topology {topo.name} "
                                                    f"(its nodes: {', '.join(topo.hosts())})")
        if node in gateways or topo.kind_of(node) in ("gateway", "nat"):
            raise r.error(line, f"services.{node}", f"{node} is a {topo.kind_of(node)}: a service runs on a host")
        if value not in SERVICES:
            raise r.error(line, f"services.{node}", f"must be one of {', '.join(SERVICES)}, not {shown(value)}")
        for name in SERVICES[value].files:
            if not (folder / "hosts" / node / name).exists():
                raise r.error(line, f"services.{node}", f"{folder / 'hosts' / node / name} is missing ({value} reads "
                                                        f"{', '.join(SERVICES[value].files)} from hosts/<node>/)")
        check_config = SERVICES[value].check_config
        if check_config is not None:
            check_config(folder / "hosts" / node)
        services[node] = value
    return services


def _nat(r: ScenarioReader, top: Map, topo: LabTopo) -> dict[str, dict[str, Any]]:
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


def _knobs(r: ScenarioReader, top: Map, topo: LabTopo) -> dict[str, dict[str, Any]]:
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


def _taps(r: ScenarioReader, top: Map, topo: LabTopo) -> tuple[list[TapSpec], bool]:
    merge = top.get("merge_captures", False)
    if not isinstance(merge, bool):
        raise r.error(r.line(top, "merge_captures"), "merge_captures", "must be true or false")
    raw = top.get("taps", "default")
    if raw in ("default", None):
        return [TapSpec(t["name"], t["node"], t["intf"]) for t in topo.default_taps()], merge
    if raw in ("none", False):
        return [], merge
    if not isinstance(raw, list):
        raise r.error(r.line(top, "taps"), "taps", "must be default, none, or a list of NODE:INTERFACE entries")
    taps = []
    for i, item in enumerate(raw):
        line = raw.item_lines[i] if isinstance(raw, Seq) else r.line(top, "taps")
        field_name = f"taps[{i + 1}]"
        if item == "default":
            taps += [TapSpec(t["name"], t["node"], t["intf"]) for t in topo.default_taps()]
            continue
        bpf, name = "", None
        if isinstance(item, dict):
            item = r.mapping(item, line, field_name)
            r.keys(item, {"on", "filter", "name"}, field_name, {"on"})
            bpf = item.get("filter", "") or ""
            name = item.get("name")
            item = item["on"]
        if not isinstance(item, str) or item.count(":") != 1:
            raise r.error(line, field_name, f"must be NODE:INTERFACE (e.g. nat:nat-out), not {shown(item)}")
        node, intf = item.split(":")
        if node not in topo.hosts():
            raise r.error(line, field_name, f"no node {node!r} (nodes: {', '.join(topo.hosts())})")
        intfs = list(topo.interfaces(node))
        if intf not in intfs:
            raise r.error(line, field_name, f"{node} has no interface {intf!r} (it has: {', '.join(intfs)})")
        taps.append(TapSpec(name or f"{node}-{intf.split('-', 1)[-1]}", node, intf, bpf))
    names = [t.name for t in taps]
    for name in names:
        if names.count(name) > 1:
            raise r.error(r.line(top, "taps"), "taps", f"two taps are named {name!r}: give one a name")
    return taps, merge


def _steps(ctx: Context, top: Map) -> list[Step]:
    r = ctx.r
    raw = top["steps"]
    if not isinstance(raw, list) or not raw:
        raise r.error(r.line(top, "steps"), "steps", "must be a list of steps (- start: all, - initiate: ...)")
    steps: list[Step] = []
    for i, item in enumerate(raw, 1):
        line = raw.item_lines[i - 1] if isinstance(raw, Seq) else r.line(top, "steps")
        where = f"steps[{i}]"
        item = r.mapping(item, line, where)
        kinds = [k for k in item if k in STEPS]
        if len(kinds) != 1:
            raise r.error(line, where, f"each step is one of {STEPS.names()} (plus {', '.join(STEP_EXTRAS)}); "
                                       f"found {', '.join(map(str, item)) or 'nothing'}")
        kind = kinds[0]
        extras = set(item) - {kind}
        for key in extras - set(STEP_EXTRAS):
            raise r.error(item.key_lines.get(key, line), f"{where}.{key}",
                          f"unknown field (a step may also have {', '.join(STEP_EXTRAS)})")
        if "background" in item:
            if not STEPS[kind].background:
                able = [name for name, entry in STEPS.items() if entry.background]
                raise r.error(item.key_lines.get("background", line), f"{where}.background",
                              f"only {', '.join(able[:-1])} and {able[-1]} can run in the background")
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
        args = STEPS[kind].parse(ctx, value, vline, f"{where}.{kind}")
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


__all__ = ["Check", "LIBRARY", "Map", "Scenario", "ScenarioError", "Seq", "Step", "TapSpec", "find", "library", "load",
           "owner_of", "parse_size", "read_yaml", "text_line"]
