"""Scenario step kinds, one class each: its fields and their validation (line-numbered errors),
its words for the report and the narration, and what it does in a running lab.

Adding a step kind is one class here, decorated with `@STEPS.add`:

    @STEPS.add
    class WaitStep(StepKind):
        name = "wait"
        does = "sleeps (prefer a check, which waits only as long as needed)"
        fields = (Field("seconds", required=True),)
        shorthand = "seconds"

        def validate(self, f, ctx, out): f.number("seconds")
        def describe(self, a): return f"wait {a['seconds']} s"
        def run(self, run, a): time.sleep(float(a["seconds"])); return ""

scenarios/README.md's table of steps is generated from this registry (lab.net.reference).
"""
from __future__ import annotations

import ipaddress
import json
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from .fields import Field, Fields, Kind, Registry, ScenarioError, ScenarioReader, parse_size, shown, size_words
from .nodes import FILTER_DEFAULTS, NAT_DEFAULTS, NatBox, Router
from .peers import IkeSaInfo, PeerError, describe_tunnels
from .peers import describe as describe_sas

if TYPE_CHECKING:
    from .runner import Runner
    from .topology import LabTopo

REPO = Path(__file__).resolve().parents[2]
PINGER = Path(__file__).with_name("pinger.py")
SETTABLE_NAT = tuple(k for k in NAT_DEFAULTS if k not in ("inside", "outside", "public"))


class StepFailed(Exception):
    """A step did not do what it should; the message says what was seen."""


@dataclass
class Context:
    """What a step or check may look at while it validates its fields."""

    r: ScenarioReader
    nodes: set[str]
    gateways: dict[str, str]           # node -> software
    topo: LabTopo
    steps: list[Any] = field(default_factory=list)   # the scenario's steps (for checks)
    taps: list[Any] = field(default_factory=list)
    services: dict[str, str] = field(default_factory=dict)  # node -> service (services:)

    @property
    def file(self) -> Path:
        return self.r.file


@dataclass
class Step:
    index: int
    kind: str
    args: dict[str, Any]
    line: int
    expect: str = "pass"       # "fail": the step shows a failure happen
    say: str = ""              # what the step shows, in the trainer's words
    name: str = ""             # for "spi_changed_since" and "spi_kept_since", and to join a background step

    @property
    def text(self) -> str:
        if self.say:
            return self.say
        return STEPS[self.kind].describe(self.args) + (" (expected to fail)" if self.expect == "fail" else "")


class StepKind(Kind):
    """A kind of step. `validate` checks the kind's own fields and fills `out`; `describe` says
    what it does; `run` does it in the running lab and returns what it saw (or raises
    StepFailed)."""

    shorthand: ClassVar[str | None] = None     # the field a bare value stands for ("initiate: gwa")
    bare: ClassVar[bool] = False               # the step may be given with no value at all
    background: ClassVar[bool] = False         # may run in the background (joined later)

    def parse(self, ctx: Context, value: Any, line: int, where: str) -> dict[str, Any]:
        r = ctx.r
        allowed = self.allowed()
        if not isinstance(value, dict):
            if self.shorthand and value is not None:
                value = {self.shorthand: value}
            elif self.bare and value is None:
                value = {}
            else:
                raise r.error(line, where, f"give the step's fields ({', '.join(sorted(allowed))})")
        args = r.mapping(value, line, where)
        r.keys(args, allowed, where, self.required())
        f = Fields(r, args, line, where)
        out: dict[str, Any] = dict(args)
        self.validate(f, ctx, out)
        if "background" in args and not isinstance(args["background"], bool):
            raise f.error("background", "must be true or false")
        return out

    def validate(self, f: Fields, ctx: Context, out: dict[str, Any]) -> None:
        """Check the kind's own fields (f.args) and put normalised values into `out`."""

    def describe(self, a: dict[str, Any]) -> str:
        raise NotImplementedError

    def run(self, run: Runner, a: dict[str, Any]) -> str:
        raise NotImplementedError


STEPS: Registry[StepKind] = Registry("step")


# ------------------------------------------------------------------ shared field rules


def nodes_field(f: Fields, ctx: Context, key: str = "nodes") -> list[str]:
    """A gateway name, a list of them, or all (or nothing: all)."""
    value = f.args.get(key)
    line, field_name = f.at(key), f"{f.where}.{key}"
    if value in (None, "all"):
        return list(ctx.gateways)
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(name, str) for name in names):
        raise ctx.r.error(line, field_name, "must be a gateway name, a list of them, or all")
    for name in names:
        if name not in ctx.gateways:
            raise ctx.r.error(line, field_name, f"{name!r} runs no IKE daemon (gateways: "
                                                f"{', '.join(ctx.gateways) or 'none'})")
    return list(names)


def _sa_target(f: Fields, ctx: Context, out: dict[str, Any], several: bool = False) -> None:
    """node (a gateway; a list of them where `several`), and child or ike."""
    node = f.args["node"]
    targets = node if several and isinstance(node, list) else [node]
    for name in targets:
        if not isinstance(name, str) or name not in ctx.gateways:
            raise f.error("node", f"{name!r} runs no IKE daemon (gateways: {', '.join(ctx.gateways)})")
    out["nodes"] = list(targets)
    if "timeout" in f.args:
        f.number("timeout", minimum=0.1)


def _sa_names(f: Fields, ctx: Context) -> bool:
    """Whether the step's gateway has IKE and CHILD_SAs to name; software without them (WireGuard)
    takes no child: or ike:."""
    from .software import SOFTWARE

    software = SOFTWARE[ctx.gateways[f.args["node"]]]
    if software.ike:
        return True
    for key in ("child", "ike"):
        if key in f.args:
            raise f.error(key, f"{f.args['node']} runs {software.label}, which has no IKE or CHILD_SAs: "
                               "leave out child: and ike:")
    return False


def _traffic(f: Fields, ctx: Context, out: dict[str, Any], server_needed: bool) -> None:
    """from (a node), to (a node or an address), server (the node that answers)."""
    args = f.args
    for key in ("from", "server"):
        if key in args and args[key] not in ctx.nodes:
            raise f.error(key, f"no node {args[key]!r} (nodes: {', '.join(sorted(ctx.nodes))})")
    target = args["to"]
    owner = None
    if target not in ctx.nodes:
        try:
            ipaddress.ip_address(str(target))
        except ValueError:
            raise f.error("to", f"must be a node name or an IP address, not {shown(target)}") from None
        owner = owner_of(ctx.topo, str(target))
        if server_needed and "server" not in args and owner is None:
            raise f.error("to", f"no node has address {target}: add server: NODE")
    out["server"] = args.get("server") or (target if target in ctx.nodes else owner)


def _server(run: Runner, a: dict[str, Any], to: str) -> str:
    """The node that runs the server side: `server` as _traffic() settled it, else the owner of `to`."""
    server = a["server"] or owner_of(run.topo, to)
    if server is None:
        raise StepFailed(f"no node has address {to}: add server: NODE")
    return str(server)


def _knob_error(f: Fields, err: ValueError) -> ScenarioError:
    key = str(err).split(":", 1)[0]
    return f.error(key, str(err).split(": ", 1)[-1])


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


# ------------------------------------------------------------------ daemons


@STEPS.add
class StartStep(StepKind):
    name = "start"
    does = "starts the daemons (strongSwan loads its config)"
    fields = (Field("nodes", "gateways", "all"),)
    shorthand, bare = "nodes", True

    def validate(self, f: Fields, ctx: Context, out: dict[str, Any]) -> None:
        out["nodes"] = nodes_field(f, ctx)

    def describe(self, a: dict[str, Any]) -> str:
        return f"start {', '.join(a['nodes'])}"

    def run(self, run: Runner, a: dict[str, Any]) -> str:
        for node in a["nodes"]:
            run.peers[node].start()
        return f"started {', '.join(f'{n} ({run.peers[n].software})' for n in a['nodes'])}"


class _GatewaysStep(StepKind):
    """A step on some of the gateways' daemons, named in `nodes` (stop, kill)."""

    fields = (Field("nodes", "gateways", required=True),)
    shorthand = "nodes"

    def validate(self, f: Fields, ctx: Context, out: dict[str, Any]) -> None:
        out["nodes"] = nodes_field(f, ctx)


@STEPS.add
class StopStep(_GatewaysStep):
    name = "stop"
    does = "ends a daemon cleanly"

    def describe(self, a: dict[str, Any]) -> str:
        return f"stop {', '.join(a['nodes'])}"

    def run(self, run: Runner, a: dict[str, Any]) -> str:
        for node in a["nodes"]:
            run.peers[node].stop()
        return "stopped"


@STEPS.add
class KillStep(_GatewaysStep):
    name = "kill"
    does = "kills a daemon without a goodbye (a crash), or a service's server (services:)"
    fields = (Field("nodes", "gateways or service nodes", required=True),)

    def validate(self, f: Fields, ctx: Context, out: dict[str, Any]) -> None:
        value = f.args.get("nodes")
        names = [value] if isinstance(value, str) else value
        if isinstance(names, list) and names and all(isinstance(n, str) and n in ctx.services for n in names):
            out["nodes"] = list(names)
            return
        out["nodes"] = nodes_field(f, ctx)

    def describe(self, a: dict[str, Any]) -> str:
        return f"kill {', '.join(a['nodes'])} (crash)"

    def run(self, run: Runner, a: dict[str, Any]) -> str:
        for node in a["nodes"]:
            if node in run.services:
                run.services[node].kill()
            else:
                run.peers[node].kill()
        return "killed without a chance to say goodbye"


@STEPS.add
class RestartStep(StepKind):
    name = "restart"
    does = "stops and starts a daemon (ours: with other daemon options)"
    fields = (Field("nodes", "gateways", required=True),
              Field("options", "our daemon's options from now on, e.g. `[--keepalive-interval, '5']`"))
    shorthand = "nodes"

    def validate(self, f: Fields, ctx: Context, out: dict[str, Any]) -> None:
        out["nodes"] = nodes_field(f, ctx)
        if "options" in f.args:
            extra = f.args["options"]
            if not isinstance(extra, list) or not all(isinstance(x, str) for x in extra):
                raise f.error("options", "must be a list of daemon options, e.g. [--keepalive-interval, '5']")
            if any(not software_takes_options(ctx.gateways[n]) for n in out["nodes"]):
                raise f.error("options", "daemon options are for our daemon only")

    def describe(self, a: dict[str, Any]) -> str:
        return f"restart {', '.join(a['nodes'])}" + (f" with {' '.join(a['options'])}" if a.get("options") else "")

    def run(self, run: Runner, a: dict[str, Any]) -> str:
        for node in a["nodes"]:
            peer = run.peers[node]
            peer.stop()
            if "options" in a:
                peer.set_options(tuple(a["options"]))
            peer.start()
        return "restarted" + (f" with {' '.join(a['options'])}" if a.get("options") else "")


@STEPS.add
class LoadStep(StepKind):
    name = "load"
    does = "gives a gateway another configuration file (a running daemon reloads it)"
    fields = (Field("node", "a gateway", required=True),
              Field("file", "a path from the scenario's folder, e.g. `hosts/gwa/fixed.conf`", required=True))

    def validate(self, f: Fields, ctx: Context, out: dict[str, Any]) -> None:
        node = f.args["node"]
        if node not in ctx.gateways:
            raise f.error("node", f"{node!r} runs no IKE daemon (gateways: {', '.join(ctx.gateways)})")
        path = ctx.file.parent / f.text("file")
        if not path.exists():
            raise f.error("file", f"{path} does not exist (a path from the scenario's folder)")
        check_host_config(path, ctx.gateways[node])
        out["file"] = str(path)

    def describe(self, a: dict[str, Any]) -> str:
        return f"{a['node']} loads {Path(a['file']).name}"

    def run(self, run: Runner, a: dict[str, Any]) -> str:
        peer = run.peers[a["node"]]
        peer.write_config(Path(a["file"]).read_text())
        if peer.running:
            peer.reload()
        return f"{a['node']} now runs {Path(a['file']).name}"


# ------------------------------------------------------------------ SAs


@STEPS.add
class InitiateStep(StepKind):
    name = "initiate"
    does = ("brings the CHILD_SA (and its IKE SA) up, or for WireGuard its tunnel (a handshake now); fails if it "
            "does not come up")
    fields = (Field("node", "a gateway", required=True), Field("child", "a CHILD_SA of its config (not for WireGuard)"),
              Field("ike", "or an IKE SA"), Field("timeout", "seconds", "20"),
              Field("reuse", "true (ipsec-lab only): the child in the connection's established IKE SA by "
                             "CREATE_CHILD_SA, as swanctl --initiate does, not in a new IKE SA"))
    shorthand = "node"

    def validate(self, f: Fields, ctx: Context, out: dict[str, Any]) -> None:
        _sa_target(f, ctx, out)
        if _sa_names(f, ctx) and not f.args.get("child") and not f.args.get("ike"):
            raise f.error(None, "name what to initiate: child: NAME (and its IKE SA comes up with it)")
        if "reuse" in f.args:
            if not isinstance(f.args["reuse"], bool):
                raise f.error("reuse", f"must be true or false, not {f.args['reuse']!r}")
            if ctx.gateways[f.args["node"]] != "ours" or not f.args.get("child"):
                raise f.error("reuse", "only for a child: of an ipsec-lab gateway (strongSwan reuses its IKE SA "
                                       "by itself)")

    def describe(self, a: dict[str, Any]) -> str:
        what = a.get("child") or a.get("ike")
        return f"{a['node']} initiates {what}" if what else f"{a['node']} brings its tunnel up (a handshake)"

    def run(self, run: Runner, a: dict[str, Any]) -> str:
        peer = run.peers[a["node"]]
        if a.get("reuse"):
            from .gateway import OurGateway

            assert isinstance(peer, OurGateway)  # validate() takes reuse: for our daemon only
            peer.initiate(child=a.get("child"), ike=a.get("ike"), timeout=float(a.get("timeout", 20)), reuse=True)
        else:
            peer.initiate(child=a.get("child"), ike=a.get("ike"), timeout=float(a.get("timeout", 20)))
        if not a.get("child") and not a.get("ike"):
            return describe_tunnels(peer.list_tunnels())
        sas = run.sas(a["node"])
        return describe_sas([sa for sa in sas if sa.state == "ESTABLISHED"]) if sas else "up"


@STEPS.add
class TerminateStep(StepKind):
    name = "terminate"
    does = "deletes the SA (WireGuard: takes its interface down, which tells the other side nothing)"
    fields = (Field("node", "a gateway", required=True), Field("child", "a CHILD_SA"), Field("ike", "or an IKE SA"))
    shorthand = "node"

    def validate(self, f: Fields, ctx: Context, out: dict[str, Any]) -> None:
        _sa_target(f, ctx, out)
        if _sa_names(f, ctx) and not f.args.get("child") and not f.args.get("ike"):
            raise f.error(None, "name the SA: child: NAME or ike: NAME")

    def describe(self, a: dict[str, Any]) -> str:
        what = a.get("child") or a.get("ike")
        return f"{a['node']} terminates {what}" if what else f"{a['node']} takes its tunnel down"

    def run(self, run: Runner, a: dict[str, Any]) -> str:
        said = run.peers[a["node"]].terminate(ike=a.get("ike"), child=a.get("child"))
        return "deleted" if a.get("child") or a.get("ike") else str(said)


@STEPS.add
class RekeyStep(StepKind):
    name = "rekey"
    does = ("rekeys and waits until the SA has new SPIs; `node: [gwa, gwb]` rekeys from both ends at once "
            "(a collision: each must end with exactly one new SA)")
    fields = (Field("node", "a gateway or a list of them", required=True), Field("child", "a CHILD_SA"),
              Field("ike", "or an IKE SA"), Field("timeout", "seconds", "15"))
    shorthand = "node"

    def validate(self, f: Fields, ctx: Context, out: dict[str, Any]) -> None:
        _sa_target(f, ctx, out, several=True)
        if not f.args.get("child") and not f.args.get("ike"):
            raise f.error(None, "name the SA: child: NAME or ike: NAME")

    def describe(self, a: dict[str, Any]) -> str:
        return (f"{' and '.join(a['nodes'])} rekey{'s' if len(a['nodes']) == 1 else ''} "
                f"{'CHILD_SA ' + a['child'] if a.get('child') else 'IKE SA ' + a['ike']}"
                + (" at the same time" if len(a["nodes"]) > 1 else ""))

    def run(self, run: Runner, a: dict[str, Any]) -> str:
        return self._one(run, a) if len(a["nodes"]) == 1 else self._together(run, a)

    @staticmethod
    def _one(run: Runner, a: dict[str, Any]) -> str:
        node, child, ike = a["nodes"][0], a.get("child"), a.get("ike")
        before = run.sas(node)
        timeout = float(a.get("timeout", 15))
        if child:
            old = {c.spi_in for sa in before for c in sa.children if c.name == child and c.state == "INSTALLED"}
            if not old:
                raise StepFailed(f"{node} has no INSTALLED CHILD_SA {child} to rekey ({describe_sas(before)})")
            run.peers[node].rekey(child=child)

            def done(sas: list[IkeSaInfo]) -> bool:
                now = {c.spi_in for sa in sas for c in sa.children if c.name == child and c.state == "INSTALLED"}
                return bool(now) and not now & old
            sas = run.peers[node].wait_for(done, timeout, f"CHILD_SA {child} with new SPIs")
            new = [c for sa in sas for c in sa.children if c.name == child and c.state == "INSTALLED"]
            return f"{child}: {', '.join(sorted(old))} -> {', '.join(c.spi_in for c in new)}"
        old_ike = {(sa.spi_i, sa.spi_r) for sa in before if sa.name == ike and sa.state == "ESTABLISHED"}
        if not old_ike:
            raise StepFailed(f"{node} has no ESTABLISHED IKE SA {ike} to rekey ({describe_sas(before)})")
        run.peers[node].rekey(ike=ike)

        def ike_done(sas: list[IkeSaInfo]) -> bool:
            now = {(sa.spi_i, sa.spi_r) for sa in sas if sa.name == ike and sa.state == "ESTABLISHED"}
            return bool(now) and not now & old_ike
        sas = run.peers[node].wait_for(ike_done, timeout, f"IKE SA {ike} with new SPIs")
        new_ike = [sa for sa in sas if sa.name == ike and sa.state == "ESTABLISHED"]
        return f"{ike}: {'/'.join(next(iter(old_ike)))} -> {'/'.join((new_ike[0].spi_i, new_ike[0].spi_r))}"

    @staticmethod
    def _together(run: Runner, a: dict[str, Any]) -> str:
        """Both ends rekey at once (RFC 7296 §2.8.1): each must end with exactly one new SA."""
        child, ike = a.get("child"), a.get("ike")
        timeout = float(a.get("timeout", 15))
        before = {node: run.sas(node) for node in a["nodes"]}
        for node in a["nodes"]:
            run.peers[node].rekey(child=child, ike=ike)
        seen = []
        for node in a["nodes"]:
            if child:
                old = {c.spi_in for sa in before[node] for c in sa.children if c.name == child}

                def done(sas: list[IkeSaInfo], old: set[str] = old) -> bool:
                    now = [c for sa in sas for c in sa.children if c.name == child and c.state == "INSTALLED"]
                    return len(now) == 1 and now[0].spi_in not in old
                sas = run.peers[node].wait_for(done, timeout, f"one CHILD_SA {child} with new SPIs")
                spis = " ".join(c.spi_in for sa in sas for c in sa.children if c.state == "INSTALLED")
                seen.append(f"{node}: {child} {spis}")
            else:
                old_spis = {(sa.spi_i, sa.spi_r) for sa in before[node]}

                def ike_done(sas: list[IkeSaInfo], old_spis: set[tuple[str, str]] = old_spis) -> bool:
                    now = [sa for sa in sas if sa.name == ike and sa.state == "ESTABLISHED"]
                    return len(now) == 1 and (now[0].spi_i, now[0].spi_r) not in old_spis
                sas = run.peers[node].wait_for(ike_done, timeout, f"one IKE SA {ike} with new SPIs")
                seen.append(f"{node}: {ike} {sas[0].spi_i}/{sas[0].spi_r}")
        return "; ".join(seen)


# ------------------------------------------------------------------ traffic


@STEPS.add
class PingStep(StepKind):
    name = "ping"
    does = "passes if at least `min` replies come back"
    fields = (Field("from", "a node", required=True), Field("to", "a node or an address", required=True),
              Field("count", "", "3"), Field("interval", "seconds", "0.2"),
              Field("size", "ICMP payload octets, sent with DF set"), Field("source", "a source address"),
              Field("min", "replies needed", "= count"), Field("timeout", "seconds to wait for each reply", "2"),
              Field("background", "true or false"))
    background = True

    def validate(self, f: Fields, ctx: Context, out: dict[str, Any]) -> None:
        _traffic(f, ctx, out, server_needed=False)
        out["count"] = int(f.number("count", 3, 1, whole=True))
        out["interval"] = float(f.number("interval", 0.2, 0.002))
        if "size" in f.args:
            f.number("size", whole=True)
        out["min"] = int(f.number("min", out["count"], 1, whole=True))
        if "timeout" in f.args:
            f.number("timeout", minimum=0.1)
        if "source" in f.args:
            try:
                ipaddress.ip_address(str(f.args["source"]))
            except ValueError:
                raise f.error("source", "must be an IP address of the pinging node") from None

    def describe(self, a: dict[str, Any]) -> str:
        return f"{a['from']} pings {a['to']} ({a['count']}x)" + (" in the background" if a.get("background") else "")

    def run(self, run: Runner, a: dict[str, Any]) -> str:
        to = run.address(a["to"])
        # our pinger, not iputils' ping: that one waits for a late last reply only twice the
        # longest round trip, and a loaded machine then loses a ping on a working tunnel
        options = f"-c {a['count']} -i {a['interval']} -W {a.get('timeout', 2):g}"
        if "size" in a:
            options += f" -s {int(a['size'])} -M do"
        if "source" in a:
            options += f" -I {a['source']}"
        wait = a["count"] * a["interval"] + a.get("timeout", 2) + 8
        out = output(run.node(a["from"]), [sys.executable, "-I", str(PINGER), to, *options.split()], timeout=wait)
        match = re.search(r"(\d+) packets transmitted, (\d+) received", out)
        received = int(match.group(2)) if match else 0
        detail = f"{received}/{a['count']} replies from {to}, {a['count'] - received} lost"
        if received < a["min"]:
            error = next((line.strip() for line in out.splitlines() if "error" in line.lower() or "too long" in line
                          or "Frag needed" in line or "Packet too big" in line), "")
            raise StepFailed(detail + (f" ({error})" if error else ""))
        return detail


@STEPS.add
class Iperf3Step(StepKind):
    name = "iperf3"
    does = "a TCP transfer by iperf3; passes if it carried data (at least `min_mbps`)"
    fields = (Field("from", "a node", required=True), Field("to", "a node or an address", required=True),
              Field("seconds", "", "3"), Field("server", "the node that answers (the owner of `to`)"),
              Field("min_mbps"), Field("background", "true or false"))
    background = True

    def validate(self, f: Fields, ctx: Context, out: dict[str, Any]) -> None:
        _traffic(f, ctx, out, server_needed=True)
        out["seconds"] = float(f.number("seconds", 3, 0.5))
        if "min_mbps" in f.args:
            f.number("min_mbps")

    def describe(self, a: dict[str, Any]) -> str:
        return f"iperf3 TCP {a['from']} -> {a['to']} for {a['seconds']:g} s"

    def run(self, run: Runner, a: dict[str, Any]) -> str:
        to = run.address(a["to"])
        server_node = _server(run, a, to)
        server = run.node(server_node).start_process(["iperf3", "-s", "-1", "-B", to],
                                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.3)
            seconds = a["seconds"]
            out = output(run.node(a["from"]), ["iperf3", "-c", to, "-t", f"{seconds:g}", "-J"], seconds + 20)
            try:
                result = json.loads(out[out.index("{"):])
            except ValueError:
                raise StepFailed(f"iperf3 gave no result: {short(out)}") from None
            if "error" in result:
                raise StepFailed(f"iperf3: {result['error']}")
            mbps = result["end"]["sum_received"]["bits_per_second"] / 1e6
            if mbps <= 0 or mbps < float(a.get("min_mbps", 0)):
                raise StepFailed(f"{mbps:.1f} Mbit/s")
            return f"{mbps:.1f} Mbit/s TCP {a['from']} -> {to}"
        finally:
            if server.poll() is None:
                server.kill()
            server.wait()


@STEPS.add
class TransferStep(StepKind):
    name = "transfer"
    does = "sends the bytes over TCP, compares SHA-256 at both ends"
    fields = (Field("from", "a node", required=True), Field("to", "a node or an address", required=True),
              Field("bytes", "10M, 512k, 100000", required=True), Field("server", "the node that receives"),
              Field("port", "", "5201"), Field("timeout", "seconds", "60"),
              Field("mbps", "a rate limit (0: none)", "0"), Field("background", "true or false"))
    background = True

    def validate(self, f: Fields, ctx: Context, out: dict[str, Any]) -> None:
        _traffic(f, ctx, out, server_needed=True)
        size = parse_size(f.args["bytes"])
        if size is None:
            raise f.error("bytes", f"must be a size like 10M, 512k or 100000, not {shown(f.args['bytes'])}")
        out["bytes"] = size
        out["port"] = int(f.number("port", 5201, 1, whole=True))
        out["timeout"] = float(f.number("timeout", 60, 1))
        out["mbps"] = float(f.number("mbps", 0, 0))

    def describe(self, a: dict[str, Any]) -> str:
        return (f"{a['from']} sends {size_words(a['bytes'])} to {a['to']}"
                + (f" at {a['mbps']:g} Mbit/s" if a.get("mbps") else "") + " (checked by SHA-256)")

    def run(self, run: Runner, a: dict[str, Any]) -> str:
        to = run.address(a["to"])
        server_node = _server(run, a, to)
        python = [sys.executable, "-m", "lab.net.transfer"]
        receiver = run.node(server_node).start_process(
            python + ["receive", "--bind", to, "--port", str(a["port"]), "--timeout", str(a["timeout"])],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=str(REPO))
        assert receiver.stdout is not None  # a pipe: asked for just above
        try:
            first = receiver.stdout.readline().decode().strip()
            if first != "listening":
                raise StepFailed(f"the receiver on {server_node} did not start: {first}")
            seed = int(time.time())
            out = output(run.node(a["from"]), python + [
                "send", "--to", to, "--port", str(a["port"]), "--bytes", str(a["bytes"]), "--seed", str(seed),
                "--timeout", str(a["timeout"]), "--rate-mbps", str(a.get("mbps", 0))], a["timeout"] + 10)
            sent = _last_json(out)
            try:
                got = _last_json(receiver.communicate(timeout=a["timeout"] + 10)[0].decode())
            except subprocess.TimeoutExpired:
                raise StepFailed("the receiver did not finish") from None
        finally:
            if receiver.poll() is None:
                receiver.kill()
                receiver.wait()
        if "error" in sent or "error" in got:
            raise StepFailed(f"sender: {sent.get('error', 'ok')}; receiver: {got.get('error', 'ok')}")
        if sent["sha256"] != got["sha256"] or got["bytes"] != a["bytes"]:
            raise StepFailed(f"sent {sent['bytes']} bytes, received {got['bytes']}; SHA-256 "
                             f"{sent['sha256'][:16]}... vs {got['sha256'][:16]}...")
        rate = got["bytes"] * 8 / max(got["seconds"], 1e-6) / 1e6
        return f"{got['bytes']} bytes arrived intact (SHA-256 {got['sha256'][:16]}...), {rate:.0f} Mbit/s"


@STEPS.add
class JoinStep(StepKind):
    name = "join"
    does = ("waits for a step started with `background: true` and judges it (its own `expect` counts); every "
            "background step must be joined")
    fields = (Field("step", "the background step's name", required=True),)
    shorthand = "step"

    def validate(self, f: Fields, ctx: Context, out: dict[str, Any]) -> None:
        f.text("step")  # a name: a list here was a TypeError when the reader looked it up

    def describe(self, a: dict[str, Any]) -> str:
        return f"wait for '{a['step']}' to finish"

    def run(self, run: Runner, a: dict[str, Any]) -> str:
        return run.join(a["step"])


@STEPS.add
class WaitStep(StepKind):
    name = "wait"
    does = "sleeps (prefer a check, which waits only as long as needed)"
    fields = (Field("seconds", required=True),)
    shorthand = "seconds"

    def validate(self, f: Fields, ctx: Context, out: dict[str, Any]) -> None:
        f.number("seconds")

    def describe(self, a: dict[str, Any]) -> str:
        return f"wait {a['seconds']} s"

    def run(self, run: Runner, a: dict[str, Any]) -> str:
        time.sleep(float(a["seconds"]))
        return ""


# ------------------------------------------------------------------ the network


@STEPS.add
class NatStep(StepKind):
    name = "nat"
    does = "changes a NAT box: rebinds its flows, forgets every mapping, or sets knobs (below)"
    fields = (Field("node", "a NAT box", required=True), Field("rebind", "`true`: every UDP flow gets a new port"),
              Field("reboot", "`true`: every mapping is forgotten"), Field("KNOB", "any NAT box knob"))
    shorthand = "node"

    @classmethod
    def allowed(cls) -> set[str]:
        return {"node", "rebind", "reboot", *NAT_DEFAULTS}

    def validate(self, f: Fields, ctx: Context, out: dict[str, Any]) -> None:
        box, args = f.args["node"], f.args
        if box not in ctx.nodes or ctx.topo.kind_of(box) != "nat":
            raise f.error("node", f"no NAT box {box!r} (NAT boxes: {', '.join(ctx.topo.nodes_of('nat')) or 'none'})")
        knobs = {k: v for k, v in args.items() if k in NAT_DEFAULTS}
        for key in ("inside", "outside", "public"):
            if key in knobs:
                raise f.error(key, "is fixed by the topology")
        try:
            NatBox.check_knobs(knobs)
        except ValueError as err:
            raise _knob_error(f, err) from None
        for key in ("rebind", "reboot"):
            if key in args and args[key] is not True:
                raise f.error(key, "write rebind: true (or leave it out)")
        if not knobs and not args.get("rebind") and not args.get("reboot"):
            raise f.error(None, "say what changes: rebind: true, reboot: true, or a knob like loss: 0.1")

    def describe(self, a: dict[str, Any]) -> str:
        return f"NAT box {a['node']}: " + ", ".join(
            ["rebind" if a.get("rebind") else "", "reboot" if a.get("reboot") else ""]
            + [f"{k} = {v}" for k, v in a.items() if k in NAT_DEFAULTS]).strip(", ")

    def run(self, run: Runner, a: dict[str, Any]) -> str:
        box = run.node(a["node"])
        assert isinstance(box, NatBox)
        knobs = {k: v for k, v in a.items() if k not in ("node", "rebind", "reboot")}
        if knobs:
            box.set(**knobs)
        if a.get("rebind"):
            box.rebind()
            return "mappings dropped; flows get new source ports"
        if a.get("reboot"):
            box.reboot()
            return "every mapping dropped"
        return ", ".join(f"{k} = {v}" for k, v in knobs.items())


@STEPS.add
class SetStep(StepKind):
    name = "set"
    does = "changes a router's, gateway's or NAT box's filter knobs (below) while the lab runs"
    fields = (Field("node", "a router, gateway or NAT box", required=True), Field("KNOB", "any filter knob"))

    @classmethod
    def allowed(cls) -> set[str]:
        return {"node", *FILTER_DEFAULTS}

    def validate(self, f: Fields, ctx: Context, out: dict[str, Any]) -> None:
        node = f.args["node"]
        routers = [n for n in ctx.topo.hosts() if ctx.topo.kind_of(n) in ("router", "gateway", "nat")]
        if node not in ctx.nodes or ctx.topo.kind_of(node) not in ("router", "gateway", "nat"):
            raise f.error("node", f"{node!r} is not a router, gateway or NAT box ({', '.join(routers)})")
        knobs = {k: v for k, v in f.args.items() if k != "node"}
        if not knobs:
            raise f.error(None, "say what changes, e.g. mss_clamp: 1300 or drop_esp: true")
        try:
            Router.check_knobs(knobs)
        except ValueError as err:
            raise _knob_error(f, err) from None
        if knobs.get("block_icmp6_too_big") and not ctx.topo.values.get("ipv6"):
            raise f.error("block_icmp6_too_big", "needs IPv6 in the lab: give the topology `ipv6: true`")

    def describe(self, a: dict[str, Any]) -> str:
        return f"{a['node']}: " + ", ".join(f"{k} = {'off' if v is None else v}" for k, v in a.items() if k != "node")

    def run(self, run: Runner, a: dict[str, Any]) -> str:
        knobs = {k: v for k, v in a.items() if k != "node"}
        run.node(a["node"]).set(**knobs)
        return ", ".join(f"{k} = {'off' if v is None else v}" for k, v in knobs.items())


@STEPS.add
class MtuStep(StepKind):
    name = "mtu"
    does = "sets an interface's MTU"
    fields = (Field("node", required=True), Field("intf", "one of its interfaces", required=True),
              Field("mtu", "at least 68", required=True))

    def validate(self, f: Fields, ctx: Context, out: dict[str, Any]) -> None:
        node = f.args["node"]
        if node not in ctx.nodes:
            raise f.error("node", f"no node {node!r}")
        if f.args["intf"] not in ctx.topo.interfaces(node):
            raise f.error("intf", f"{node} has no interface {f.args['intf']!r} "
                                  f"(it has: {', '.join(ctx.topo.interfaces(node))})")
        f.number("mtu", minimum=68, whole=True)

    def describe(self, a: dict[str, Any]) -> str:
        return f"MTU of {a['node']}:{a['intf']} = {a['mtu']}"

    def run(self, run: Runner, a: dict[str, Any]) -> str:
        run.node(a["node"]).set_mtu(a["intf"], int(a["mtu"]))
        return ""


@STEPS.add
class RunStep(StepKind):
    name = "run"
    does = "any shell command in a node; must exit 0"
    fields = (Field("node", required=True),
              Field("cmd", "a shell command; `$SCENARIO_DIR` is the scenario's folder, `$SWANCTL_DIR` a "
                           "gateway's swanctl folder (its x509/, x509ca/, x509crl/ ...)", required=True),
              Field("timeout", "seconds", "30"))

    def validate(self, f: Fields, ctx: Context, out: dict[str, Any]) -> None:
        if f.args["node"] not in ctx.nodes:
            raise f.error("node", f"no node {f.args['node']!r}")
        f.text("cmd")
        out["folder"] = str(ctx.file.parent.resolve())

    def describe(self, a: dict[str, Any]) -> str:
        return f"{a['node']}: {a['cmd']}"

    def run(self, run: Runner, a: dict[str, Any]) -> str:
        timeout = int(a.get("timeout", 30))
        folder = shlex.quote(a.get("folder", ""))
        peer = run.peers.get(a["node"])
        swanctl = shlex.quote(str(peer.swanctl_dir)) if peer is not None else "''"
        out = run.node(a["node"]).cmd(f"SCENARIO_DIR={folder} SWANCTL_DIR={swanctl} timeout {timeout} "
                                      f"sh -c {shlex.quote(a['cmd'])} 2>&1; echo __rc=$?")
        body, _, rc = out.rpartition("__rc=")
        if rc.strip() != "0":
            raise StepFailed(f"exit {rc.strip()}: {short(body)}")
        return short(body)


@STEPS.add
class CheckStep(StepKind):
    name = "check"
    does = "a check (below) at this point of the run; the step fails if it does not hold"
    fields = (Field("CHECK", "any check"),)

    def parse(self, ctx: Context, value: Any, line: int, where: str) -> dict[str, Any]:
        return {"_raw": value, "_line": line}  # checked with the checks, once every step is known

    def describe(self, a: dict[str, Any]) -> str:
        return "check: " + a["check"].text

    def run(self, run: Runner, a: dict[str, Any]) -> str:
        result = run.check(a["check"], at_step=run.step_index)
        if not result.ok:
            raise StepFailed(result.saw)
        return result.saw


# ------------------------------------------------------------------ helpers


def check_host_config(conf: Path, software: str) -> None:
    """A gateway's configuration file, checked by its software's reader (file:line errors)."""
    from .software import SOFTWARE

    SOFTWARE[software].check_config(conf)


def software_takes_options(software: str) -> bool:
    from .software import SOFTWARE

    return SOFTWARE[software].options


def output(node: Any, argv: list[str], timeout: float) -> str:
    """Run argv in `node` as its own process (not through the node's shell, so that several
    can run at once, e.g. a background ping while a rekey step runs); stdout and stderr."""
    proc = node.start_process(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=str(REPO))
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise StepFailed(f"{' '.join(argv[:2])} did not finish within {timeout:g} s") from None
    return out.decode(errors="replace")


def short(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _last_json(text: str) -> dict[str, Any]:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                break
    return {"error": f"no result: {short(text)}"}


STEP_ERRORS = (StepFailed, PeerError, subprocess.TimeoutExpired, OSError)
