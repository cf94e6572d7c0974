"""Everything a run folder says, read once, for `ipsec-lab diagnose` (lab.viz.diagnose): the
steps and checks of result.json, the trace of our gateways, charon's logs, what each side
refused and why (lab.viz.refusals), each gateway's swanctl.conf as run (lab.viz.configs), the
topology, the scenario as run and the captures. Only this module reads result.json for
diagnose."""
from __future__ import annotations

import ipaddress
import re
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from lab.ike.child_sa import intersect
from lab.ike.config import ConfigValueError, DynamicTrafficSelector, parse_traffic_selectors
from lab.runfolder import CheckResult, Node, RunResult, StepResult, Topology, TraceRecord, read_trace

from .analysis import CaptureAnalysis, CaptureError, analyze_capture
from .configs import ChildConf, ConnConf, GatewayConf, run_configs
from .keys import load_keys
from .refusals import Refusal, read_refusals
from .run import RunFolder, load_run
from .timeline import TimelineEntry, read_charon_log

TRAFFIC_STEPS = ("ping", "iperf3", "transfer")
SOFTWARE_WORDS = {"ours": "ipsec-lab", "strongswan": "strongSwan", "strongswan6": "strongSwan 6"}


@dataclass
class Diagnosis:
    cause: str
    title: str
    paragraph: str
    step: int | None = None       # the step where it showed
    at: float | None = None       # wall-clock time of the first sign
    evidence: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def text(self, width: int = 100) -> str:
        import textwrap

        head = f"{self.title}" + (f" (step {self.step})" if self.step else "")
        body = textwrap.fill(self.paragraph, width)
        lines = [head, "", body]
        if self.evidence:
            lines += ["", "Evidence:"] + [f"  - {e}" for e in self.evidence]
        return "\n".join(lines)


class DiagnoseError(Exception):
    """A folder that is not a run folder."""


@dataclass
class InstalledChild:
    """A CHILD_SA as it came up: the selectors it carries (after narrowing), on one gateway."""
    node: str
    name: str
    local_ts: list[str]
    remote_ts: list[str]
    wall: float
    mode: str = "tunnel"


class Run:
    """Everything a run folder says, read once."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        try:
            self.folder: RunFolder = load_run(self.root)
        except Exception as err:
            raise DiagnoseError(str(err)) from None
        if self.folder.result is None:
            raise DiagnoseError(f"{self.root}: no result.json - not a run folder (ipsec-lab run writes one)")
        self.result: RunResult = self.folder.result
        if self.folder.running:
            raise DiagnoseError(f"{self.root}: the run has not finished (result.json says it is running)")
        self.start = float(self.result.started or 0.0)
        self.steps: list[StepResult] = self.result.steps
        self.checks: list[CheckResult] = self.result.checks
        self.software: dict[str, str] = dict(self.result.nodes)
        self.problems: list[str] = list(self.folder.problems)
        self.records: list[TraceRecord] = []
        for node, path in self.folder.traces.items():
            self.records += read_trace(path, node, self.problems)
        self.records.sort(key=lambda r: r.get("wall", 0.0))
        self.charon: dict[str, list[TimelineEntry]] = {
            node: read_charon_log(path, self.start or _first_wall(self.records), node)
            for node, path in self.folder.charon_logs.items()}
        self.configs: dict[str, GatewayConf] = run_configs(self.root)
        self.topology: Topology = self.folder.topology if self.folder.topology is not None else Topology()
        self.scenario: dict = _scenario_yaml(self.root) or _scenario_yaml(self.result.folder)

    # -- steps

    @property
    def passed(self) -> bool:
        return self.result.passed

    @property
    def error(self) -> str | None:
        return self.result.error

    @property
    def first_failed(self) -> StepResult | None:
        return next((s for s in self.steps if not s.ok and not s.skipped), None)

    @property
    def first_failed_index(self) -> int | None:
        failed = self.first_failed
        return failed.index if failed is not None else None

    def step_at(self, wall: float) -> int | None:
        """The step running at `wall` (the last one started by then, if none spans it)."""
        started = [s for s in self.steps if not s.skipped and s.started <= wall]
        inside = [s for s in started if wall <= s.ended]
        chosen = (inside or started)[-1:] if (inside or started) else []
        return chosen[0].index if chosen else None

    def when(self, wall: float | None) -> str:
        if wall is None or not self.start:
            return ""
        return f"+{wall - self.start:.2f} s"

    def step_words(self, index: int | None) -> str:
        step = next((s for s in self.steps if s.index == index), None)
        return f"step {index} ({step.text})" if step else "the run"

    def step_line(self, index: int | None) -> str:
        """`scenario.yaml:22`, where step `index` is written."""
        step = next((s for s in self.steps if s.index == index), None)
        return f"scenario.yaml:{step.line}" if step and step.line else "scenario.yaml"

    def scenario_steps(self) -> list[dict]:
        return [s for s in self.scenario.get("steps", []) if isinstance(s, dict)]

    def scenario_step(self, index: int) -> dict:
        steps = self.scenario_steps()
        return steps[index - 1] if 0 < index <= len(steps) else {}

    def step_args(self, index: int) -> dict:
        """The fields of step `index` as written (`{from: hosta, to: 10.2.0.10}` of a ping)."""
        step = next((s for s in self.steps if s.index == index), None)
        args = self.scenario_step(index).get(step.kind if step else "", {})
        return args if isinstance(args, dict) else {}

    # -- gateways and their configurations

    @property
    def gateways(self) -> list[str]:
        return list(self.software)

    def who(self, node: str | None) -> str:
        """`gwb (strongSwan)`."""
        if not node:
            return "the peer"
        software = self.software.get(node)
        return f"{node} ({SOFTWARE_WORDS.get(software, software)})" if software else node

    def is_strongswan(self, node: str | None) -> bool:
        return str(self.software.get(node or "", "")).startswith("strongswan")

    def conf(self, node: str | None) -> GatewayConf | None:
        return self.configs.get(node or "")

    def conn(self, node: str | None, child: str | None = None) -> ConnConf | None:
        conf = self.conf(node)
        if conf is None:
            return None
        found = conf.child(child) if child else None
        return found[0] if found is not None else conf.connection()

    def child(self, node: str | None, name: str | None = None) -> ChildConf | None:
        """The child `name` of the node's configuration, else the first child of its first connection."""
        conf = self.conf(node)
        if conf is None:
            return None
        found = conf.child(name) if name else None
        if found is not None:
            return found[1]
        conn = conf.connection()
        return next(iter(conn.children.values()), None) if conn else None

    def where(self, node: str | None, loc: str = "") -> str:
        """`hosts/gwa/swanctl.conf:17` for a `file:line` of the run's copy (same lines as the scenario's)."""
        path, _, number = loc.rpartition(":") if loc else ("", "", "")
        name = Path(path).name if path else "swanctl.conf"
        return f"hosts/{node or '?'}/{name}" + (f":{number}" if number.isdigit() else "")

    def peer_of(self, node: str | None) -> str | None:
        others = [g for g in self.gateways if g != node]
        if len(others) == 1:
            return others[0]
        conf = self.conf(node)
        for conn in (conf.connections.values() if conf else []):
            for address in conn.remote_addrs:
                owner = self.owner(address)
                if owner in others:
                    return owner
        for r in self.records:
            if r.get("node") == node and r.get("kind") == "event" and r.get("event") == "IkeSaUp":
                owner = self.owner(str((r.get("remote") or [""])[0]))
                if owner in others:
                    return owner
        return None

    # -- addresses

    def owner(self, address: str) -> str | None:
        for entry in self.topology.nodes:
            for intf in entry.interfaces:
                for cidr in intf.addresses:
                    if cidr.split("/")[0] == address:
                        return entry.name
        return None

    def addresses(self, node: str | None) -> list[str]:
        return [cidr.split("/")[0] for entry in self.topology.nodes if entry.name == node
                for intf in entry.interfaces for cidr in intf.addresses]

    def interface_of(self, address: str) -> str:
        for entry in self.topology.nodes:
            for intf in entry.interfaces:
                if any(cidr.split("/")[0] == address for cidr in intf.addresses):
                    return f"{entry.name}:{intf.name}"
        return ""

    def address_words(self, address: str) -> str:
        owner = self.owner(address)
        if owner is None:
            return address
        kind = next((n.kind for n in self.topology.nodes if n.name == owner), "")
        return f"{address} (the NAT box {owner})" if kind == "nat" else f"{address} ({owner})"

    def node_kind(self, node: str | None) -> str:
        return next((n.kind for n in self.topology.nodes if n.name == node), "")

    # -- trace and logs

    def events(self, *names: str, node: str | None = None) -> list[TraceRecord]:
        return [r for r in self.records if r.get("kind") == "event" and r.get("event") in names
                and (node is None or r.get("node") == node)]

    def charon_lines(self, pattern: str, node: str | None = None) -> list[tuple[str, TimelineEntry, re.Match]]:
        regex = re.compile(pattern)
        out = []
        for name, entries in self.charon.items():
            if node is not None and name != node:
                continue
            for entry in entries:
                match = regex.search(entry.text)
                if match:
                    out.append((name, entry, match))
        out.sort(key=lambda item: item[1].wall)
        return out

    @cached_property
    def refusals(self) -> list[Refusal]:
        return read_refusals(self.records, self.charon)

    def initiator(self) -> str | None:
        """The gateway that started the first IKE SA."""
        firsts = []
        for r in self.records:
            if r.get("kind") == "message" and r.get("exchange") == "IKE_SA_INIT" and r.get("dir") == "out" \
                    and not r.get("response"):
                firsts.append((r.get("wall", 0.0), r["node"]))
                break
        for node, entry, _ in self.charon_lines(r"initiating IKE_SA"):
            firsts.append((entry.wall, node))
            break
        return min(firsts)[1] if firsts else None

    def installed_children(self) -> list[InstalledChild]:
        """Every CHILD_SA that came up, with the selectors it carries: our ChildSaUp records and charon's
        'CHILD_SA net{1} established with SPIs ... and TS 10.2.0.0/24 === 10.1.0.0/24'."""
        out = [InstalledChild(r["node"], str(r.get("name")), list(r.get("local_ts") or []),
                              list(r.get("remote_ts") or []), float(r.get("wall", 0.0)), str(r.get("mode", "tunnel")))
               for r in self.events("ChildSaUp")]
        for node, entry, match in self.charon_lines(r"CHILD_SA (\S+)\{\d+\} established with SPIs .* and TS "
                                                    r"(.*) === (.*)$"):
            out.append(InstalledChild(node, match.group(1), match.group(2).split(), match.group(3).split(),
                                      entry.wall))
        return sorted(out, key=lambda c: c.wall)

    # -- NAT boxes and knobs

    def nat_boxes(self) -> list[Node]:
        return [n for n in self.topology.nodes if n.kind == "nat"]

    def nat_knobs(self, box: str) -> dict[str, Any]:
        return self.knobs(box)

    def knobs(self, node: str) -> dict[str, Any]:
        """A node's knobs: the topology's, the scenario's `nat:` and `knobs:`, and every `nat`/`set` step."""
        knobs: dict[str, Any] = {}
        for entry in self.topology.nodes:
            if entry.name == node and entry.nat is not None:
                knobs.update(asdict(entry.nat))
        knobs.update((self.scenario.get("nat") or {}).get(node) or {})
        knobs.update((self.scenario.get("knobs") or {}).get(node) or {})
        for step in self.scenario_steps():
            for kind in ("nat", "set"):
                if isinstance(step.get(kind), dict) and step[kind].get("node") == node:
                    knobs.update({k: v for k, v in step[kind].items() if k not in ("node", "rebind", "reboot")})
        return knobs

    def nodes_with(self, knob: str) -> list[str]:
        return [n.name for n in self.topology.nodes if self.knobs(n.name).get(knob)]

    def gateway_option(self, node: str, flag: str) -> str | None:
        entry = (self.scenario.get("gateways") or {}).get(node)
        options = entry.get("options", []) if isinstance(entry, dict) else []
        options = [str(o) for o in options]
        for i, option in enumerate(options):
            if option == flag and i + 1 < len(options):
                return options[i + 1]
            if option.startswith(flag + "="):
                return option.split("=", 1)[1]
        return None

    # -- captures

    @cached_property
    def captures(self) -> list[CaptureAnalysis]:
        keys = load_keys(self.folder.keys) if self.folder.keys else None
        out = []
        for path in self.folder.captures:
            try:
                out.append(analyze_capture(path, keys))
            except CaptureError as err:
                self.problems.append(str(err))
        return out

    def capture(self, name: str) -> CaptureAnalysis | None:
        return next((c for c in self.captures if c.name == name), None)

    def tap_words(self, name: str) -> str:
        tap = next((t for t in self.topology.taps if t.name == name), None)
        return f"{name} ({tap.node}:{tap.intf})" if tap else name

    def link_mtus(self) -> list[tuple[int, str]]:
        """(MTU, where) of every interface below 1500, from topology.json and `mtu` steps."""
        found = []
        for entry in self.topology.nodes:
            for intf in entry.interfaces:
                if intf.mtu and int(intf.mtu) < 1500:
                    found.append((int(intf.mtu), f"{entry.name}:{intf.name}"))
        for step in self.scenario_steps():
            if isinstance(step.get("mtu"), dict):
                found.append((int(step["mtu"]["mtu"]), f"{step['mtu']['node']}:{step['mtu']['intf']} (an mtu step)"))
        return sorted(set(found))


def _first_wall(records: list[TraceRecord]) -> float:
    return next((float(r["wall"]) for r in records if isinstance(r.get("wall"), (int, float))), 0.0)


def _scenario_yaml(folder: str | Path | None) -> dict:
    """The scenario as run (DIR/scenario.yaml, else the folder it came from): its knobs and steps."""
    if not folder:
        return {}
    path = Path(folder) / "scenario.yaml"
    if not path.is_file():
        return {}
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def quote(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


# ------------------------------------------------------------------ selectors and addresses


def selectors(texts: list[str], address: str | None = None) -> list | None:
    """Traffic selectors as lab.ike reads them (`10.2.0.0/24[tcp]`, `dynamic` with `address`); None when
    one cannot be read or is dynamic without an address (then nothing can be said about it)."""
    out = []
    try:
        for text in texts or ["dynamic"]:
            for ts in parse_traffic_selectors(text):
                if isinstance(ts, DynamicTrafficSelector):
                    if address is None:
                        return None
                    ts = ts.resolve(address)
                out.append(ts)
    except (ConfigValueError, ValueError):
        return None
    return out


def ts_overlap(a: list | None, b: list | None) -> bool | None:
    """Whether two selector lists share any address, protocol and port (RFC 7296 §2.9); None: unknown."""
    if a is None or b is None:
        return None
    return any(intersect(x, y) is not None for x in a for y in b)


def ts_covers(ts_list: list | None, address: str) -> bool | None:
    if ts_list is None:
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    return any(ts.start_addr.version == ip.version and ts.start_addr <= ip <= ts.end_addr for ts in ts_list)


def addr_allowed(address: str, specs: list[str]) -> bool | None:
    """Whether `local_addrs`/`remote_addrs` `specs` admit `address` (empty or %any: all); None: cannot tell
    (a name to resolve)."""
    if not specs:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    unknown = False
    for spec in specs:
        if spec in ("%any", "%any4", "%any6", "0.0.0.0/0", "::/0"):
            return True
        try:
            if "-" in spec and "/" not in spec:
                first, last = (ipaddress.ip_address(x.strip()) for x in spec.split("-", 1))
                if first.version != last.version:
                    raise ValueError(f"{spec}: a range from one address family to the other")
                if first.version == ip.version and int(first) <= int(ip) <= int(last):
                    return True
            elif ip in ipaddress.ip_network(spec, strict=False):
                return True
        except ValueError:
            unknown = True
    return None if unknown else False


__all__ = ["Diagnosis", "DiagnoseError", "InstalledChild", "Run", "SOFTWARE_WORDS", "TRAFFIC_STEPS", "addr_allowed",
           "quote", "selectors", "ts_covers", "ts_overlap"]
