"""What went wrong in a run: `diagnose(DIR)` reads a run folder (result.json, trace.jsonl,
charon's logs, the gateways' swanctl.conf as run, the captures with the run's keys) and names
the first point where it went wrong and the likely misconfiguration, in one paragraph a
trainee can act on.

Causes it knows, looked for in this order (the first that the evidence shows wins):

    proposal-mismatch    NO_PROPOSAL_CHOSEN in IKE_SA_INIT (IKE) or IKE_AUTH/CREATE_CHILD_SA (ESP/AH)
    ts-mismatch          TS_UNACCEPTABLE: the traffic selectors do not overlap
    psk-mismatch         AUTHENTICATION_FAILED, the pre-shared keys differ
    identity-mismatch    AUTHENTICATION_FAILED, an identity the other side does not know
    auth-failed          AUTHENTICATION_FAILED otherwise (certificates, methods)
    ike-fragments-lost   IKE_AUTH larger than the path MTU, its IP fragments dropped, no answer
    no-answer            requests retransmitted and never answered (UDP 500 or 4500 blocked, peer down)
    nat-mapping-expired  the NAT box forgot the UDP mapping between keepalives
    esp-blocked          the tunnel is up but ESP does not cross (IP protocol 50 or ESP in UDP dropped)
    pmtud-black-hole     small packets pass, full-size ones vanish and no ICMP "fragmentation needed" returns
    unknown              the first failed step, with what the logs say about it
"""
from __future__ import annotations

import ipaddress
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

from .analysis import CaptureAnalysis, CaptureError, analyze_capture
from .configs import ChildConf, ConnConf, GatewayConf, proposal_text, run_configs
from .keys import load_keys
from .run import RunFolder, load_run
from .timeline import TimelineEntry, read_charon_log, read_trace

TRAFFIC_STEPS = ("ping", "iperf3", "transfer")
KEEPALIVE_DEFAULT = 20.0  # RFC 3948 §2.3 leaves it open; charon's keep_alive and our daemon use 20 s


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


# ------------------------------------------------------------------ the evidence of a run


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
        self.result: dict = self.folder.result
        if self.result.get("running"):
            raise DiagnoseError(f"{self.root}: the run has not finished (result.json says it is running)")
        self.start = float(self.result.get("started") or 0.0)
        self.steps: list[dict] = self.result.get("steps", [])
        self.software: dict[str, str] = dict(self.result.get("nodes", {}))
        self.problems: list[str] = list(self.folder.problems)
        self.records: list[dict] = []
        for node, path in self.folder.traces.items():
            self.records += read_trace(path, node, self.problems)
        self.records.sort(key=lambda r: r.get("wall", 0.0))
        self.charon: dict[str, list[TimelineEntry]] = {
            node: read_charon_log(path, self.start or _first_wall(self.records), node)
            for node, path in self.folder.charon_logs.items()}
        self.configs: dict[str, GatewayConf] = run_configs(self.root)
        self.topology: dict = self.folder.topology or {}
        self.scenario: dict = _scenario_yaml(self.root) or _scenario_yaml(self.result.get("folder"))

    # -- steps

    @property
    def first_failed(self) -> dict | None:
        return next((s for s in self.steps if not s.get("ok") and not s.get("skipped")), None)

    def step_at(self, wall: float) -> int | None:
        """The step running at `wall` (the last one started by then, if none spans it)."""
        started = [s for s in self.steps if not s.get("skipped") and s.get("started", 0) <= wall]
        inside = [s for s in started if wall <= s.get("ended", 0)]
        chosen = (inside or started)[-1:] if (inside or started) else []
        return chosen[0]["index"] if chosen else None

    def when(self, wall: float | None) -> str:
        if wall is None or not self.start:
            return ""
        return f"+{wall - self.start:.2f} s"

    def step_words(self, index: int | None) -> str:
        step = next((s for s in self.steps if s["index"] == index), None)
        return f"step {index} ({step['text']})" if step else "the run"

    def scenario_steps(self) -> list[dict]:
        return [s for s in self.scenario.get("steps", []) if isinstance(s, dict)]

    # -- gateways

    @property
    def gateways(self) -> list[str]:
        return list(self.software)

    def peer_of(self, node: str) -> str | None:
        others = [g for g in self.gateways if g != node]
        if len(others) == 1:
            return others[0]
        conf = self.configs.get(node)
        for conn in (conf.connections.values() if conf else []):
            for address in conn.remote_addrs:
                owner = self.owner(address)
                if owner in others:
                    return owner
        return None

    def owner(self, address: str) -> str | None:
        for entry in self.topology.get("nodes", []):
            for intf in entry.get("interfaces", []):
                for cidr in intf.get("addresses", []):
                    if cidr.split("/")[0] == address:
                        return entry["name"]
        return None

    def address_words(self, address: str) -> str:
        owner = self.owner(address)
        if owner is None:
            return address
        kind = next((n.get("kind") for n in self.topology.get("nodes", []) if n["name"] == owner), "")
        return f"{address} (the NAT box {owner})" if kind == "nat" else f"{address} ({owner})"

    def events(self, *names: str, node: str | None = None) -> list[dict]:
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

    # -- NAT boxes and knobs

    def nat_boxes(self) -> list[dict]:
        return [n for n in self.topology.get("nodes", []) if n.get("kind") == "nat"]

    def nat_knobs(self, box: str) -> dict[str, Any]:
        return self.knobs(box)

    def knobs(self, node: str) -> dict[str, Any]:
        """A node's knobs: the topology's, the scenario's `nat:` and `knobs:`, and every `nat`/`set` step."""
        knobs: dict[str, Any] = {}
        for entry in self.topology.get("nodes", []):
            if entry["name"] == node:
                knobs.update(entry.get("nat") or {})
                knobs.update(entry.get("knobs") or {})
        knobs.update((self.scenario.get("nat") or {}).get(node) or {})
        knobs.update((self.scenario.get("knobs") or {}).get(node) or {})
        for step in self.scenario_steps():
            for kind in ("nat", "set"):
                if isinstance(step.get(kind), dict) and step[kind].get("node") == node:
                    knobs.update({k: v for k, v in step[kind].items() if k not in ("node", "rebind", "reboot")})
        return knobs

    def nodes_with(self, knob: str) -> list[str]:
        return [n["name"] for n in self.topology.get("nodes", []) if self.knobs(n["name"]).get(knob)]

    def scenario_step(self, index: int) -> dict:
        steps = self.scenario_steps()
        return steps[index - 1] if 0 < index <= len(steps) else {}

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
        tap = next((t for t in self.topology.get("taps", []) if t.get("name") == name), None)
        return f"{name} ({tap['node']}:{tap['intf']})" if tap else name

    def link_mtus(self) -> list[tuple[int, str]]:
        """(MTU, where) of every interface below 1500, from topology.json and `mtu` steps."""
        found = []
        for entry in self.topology.get("nodes", []):
            for intf in entry.get("interfaces", []):
                if intf.get("mtu") and int(intf["mtu"]) < 1500:
                    found.append((int(intf["mtu"]), f"{entry['name']}:{intf['name']}"))
        for step in self.scenario_steps():
            if isinstance(step.get("mtu"), dict):
                found.append((int(step["mtu"]["mtu"]), f"{step['mtu']['node']}:{step['mtu']['intf']} (an mtu step)"))
        return sorted(set(found))


def _first_wall(records: list[dict]) -> float:
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


def _conf_where(run: Run, node: str, line: str = "") -> str:
    """`hosts/gwa/swanctl.conf:17` (the scenario's file; the run's copy has the same lines)."""
    number = line.rsplit(":", 1)[-1] if line else ""
    return f"hosts/{node}/swanctl.conf" + (f":{number}" if number.isdigit() else "")


def _quote(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


# ------------------------------------------------------------------ negotiation failures


def _negotiation(run: Run) -> Diagnosis | None:
    """The earliest NO_PROPOSAL_CHOSEN, TS_UNACCEPTABLE or AUTHENTICATION_FAILED, by either side."""
    signs: list[tuple[float, str, str, str, dict | None]] = []  # (wall, kind, node, text, record)
    for r in run.events("NegotiationFailed", "AuthFailed"):
        reason = str(r.get("reason", ""))
        if r["event"] == "AuthFailed":
            kind = "auth"
        elif "TS_UNACCEPTABLE" in reason or "traffic selectors" in reason:
            kind = "ts"
        elif "NO_PROPOSAL_CHOSEN" in reason or "proposal" in reason:
            kind = "proposal"
        else:
            continue
        signs.append((r.get("wall", 0.0), kind, r["node"], reason, r))
    for r in run.records:
        if r.get("kind") == "note" and r.get("what") == "no_proposal_chosen":
            signs.append((r.get("wall", 0.0), "proposal", r["node"], "no proposal chosen", r))
    for pattern, kind in ((r"received proposals unacceptable|no acceptable proposal found|"
                           r"received NO_PROPOSAL_CHOSEN notify", "proposal"),
                          (r"traffic selectors .* unacceptable|received TS_UNACCEPTABLE notify", "ts"),
                          (r"MAC mismatched|no matching peer config found|received AUTHENTICATION_FAILED notify|"
                           r"no shared key found|signature validation failed|constraint check failed|"
                           r"no trusted .* public key found|authentication of .* failed", "auth")):
        for node, entry, _match in run.charon_lines(pattern):
            signs.append((entry.wall, kind, node, entry.text, None))
    if not signs:
        return None
    signs.sort(key=lambda s: s[0])
    wall, kind = signs[0][0], signs[0][1]
    related = [s for s in signs if s[1] == kind]
    if kind == "proposal":
        return _proposal(run, related, wall)
    if kind == "ts":
        return _ts(run, related, wall)
    return _auth(run, related, wall)


def _sides(run: Run, related: list) -> tuple[str | None, str | None]:
    """(initiator, responder) of the failed exchange."""
    initiator = run.initiator()
    for _wall, _kind, node, text, record in related:
        if "peer answered" in text or "received " in text and "notify" in text:
            initiator = node
            break
    responder = run.peer_of(initiator) if initiator else None
    if initiator is None:
        for _wall, _kind, node, text, _record in related:
            if "peer answered" not in text:
                responder = node
                initiator = run.peer_of(node)
                break
    return initiator, responder


def _child_of(run: Run, node: str | None, related: list) -> tuple[ConnConf | None, ChildConf | None]:
    conf = run.configs.get(node or "")
    if conf is None:
        return None, None
    for *_x, text, _record in related:
        match = re.search(r"CHILD_SA (\S+) not created", text)
        if match and conf.child(match.group(1)):
            return conf.child(match.group(1))
    conn = conf.connection()
    if conn is None:
        return None, None
    return conn, next(iter(conn.children.values()), None)


def _proposal(run: Run, related: list, wall: float) -> Diagnosis:
    initiator, responder = _sides(run, related)
    exchange = next((r.get("exchange") for *_x, r in related if r and r.get("exchange")), None)
    charon_received = run.charon_lines(r"received proposals: (.*)")
    charon_configured = run.charon_lines(r"configured proposals: (.*)")
    is_child = exchange in ("IKE_AUTH", "CREATE_CHILD_SA") or any(
        "ESP:" in m.group(1) or "AH:" in m.group(1) for *_x, m in charon_received)
    if exchange is None:
        exchange = "IKE_AUTH" if is_child else "IKE_SA_INIT"
    evidence = [f"{node}: {_quote(text)}" for _w, _k, node, text, _r in related[:3]]
    evidence += [f"{node}'s log: {_quote(e.text)}" for node, e, _m in (charon_received + charon_configured)[:2]]
    i_conf, r_conf = run.configs.get(initiator or ""), run.configs.get(responder or "")
    if is_child:
        i_conn, i_child = _child_of(run, initiator, related)
        r_conn, r_child = _child_of(run, responder, related)
        what = (i_child.protocol if i_child else "ESP")
        offered = i_child.proposals if i_child else []
        accepted = r_child.proposals if r_child else []
        key = f"{what.lower()}_proposals"
        where_i = _conf_where(run, initiator or "?", i_child.line if i_child else "")
        where_r = _conf_where(run, responder or "?", r_child.line if r_child else "")
        subject = f"the CHILD_SA {i_child.name}" if i_child else "the CHILD_SA"
        layer = (f"The IKE SA itself was agreed (its proposals match), but for {subject} no {what} proposal is "
                 f"acceptable to both")
    else:
        i_conn = i_conf.connection() if i_conf else None
        r_conn = r_conf.connection() if r_conf else None
        what, key = "IKE", "proposals"
        offered = i_conn.proposals if i_conn else []
        accepted = r_conn.proposals if r_conn else []
        where_i = _conf_where(run, initiator or "?", i_conn.line if i_conn else "")
        where_r = _conf_where(run, responder or "?", r_conn.line if r_conn else "")
        layer = "No IKE proposal is acceptable to both sides, so not even the IKE SA could be made"
    step = run.step_at(wall) or (run.first_failed or {}).get("index")
    common = [p for p in offered if p in accepted]
    if charon_received and charon_configured:
        wire = (f" {responder}'s charon logged what it got and what it has: received "
                f"{charon_received[0][2].group(1)}, configured {charon_configured[0][2].group(1)}.")
    else:
        wire = ""
    fix = (f"make one proposal the same on both sides, e.g. add {accepted[0]} to {key} in {where_i}"
           if accepted else f"set {key} in {where_r} to include one of {initiator}'s")
    if common:
        fix = (f"both list {common[0]}, so check that the files the run used are the ones you edited, "
               f"and the algorithms' plugins on {responder}")
    paragraph = (f"The first thing that went wrong was {exchange} at {run.when(wall)} in "
                 f"{run.step_words(step)}: {responder or 'the responder'} answered NO_PROPOSAL_CHOSEN. "
                 f"{layer}: {initiator or 'the initiator'} offered {what} {proposal_text(offered, what)} "
                 f"({key} in {where_i}), while {responder or 'the responder'} accepts only "
                 f"{proposal_text(accepted, what)} ({key} in {where_r}).{wire} "
                 f"Fix: {fix}; a proposal is encryption-integrity-PRF-DH for IKE "
                 f"and encryption-integrity[-DH] for ESP, and every part has to match.")
    return Diagnosis("proposal-mismatch", f"{what} proposal mismatch (NO_PROPOSAL_CHOSEN)", paragraph, step, wall,
                     evidence)


def _net(text: str) -> ipaddress._BaseNetwork | None:
    try:
        return ipaddress.ip_network(text.split("[")[0], strict=False)
    except ValueError:
        return None


def _overlap(a: list[str], b: list[str]) -> bool:
    nets_a, nets_b = [_net(x) for x in a], [_net(x) for x in b]
    if not a or not b or None in nets_a or None in nets_b:
        return True  # dynamic or unreadable: do not blame it
    return any(x.version == y.version and x.overlaps(y) for x in nets_a for y in nets_b)


def _ts(run: Run, related: list, wall: float) -> Diagnosis:
    initiator, responder = _sides(run, related)
    i_conn, i_child = _child_of(run, initiator, related)
    r_conn, r_child = _child_of(run, responder, related)
    step = run.step_at(wall) or (run.first_failed or {}).get("index")
    evidence = [f"{node}: {_quote(text)}" for _w, _k, node, text, _r in related[:3]]
    logged = next((m for _n, _e, m in run.charon_lines(r"traffic selectors (.*) unacceptable")), None)
    problems, fixes = [], []
    if i_child and r_child:
        where_i = _conf_where(run, initiator or "?", i_child.line)
        where_r = _conf_where(run, responder or "?", r_child.line)
        if not _overlap(i_child.remote_ts, r_child.local_ts):
            problems.append(f"{initiator} wants to reach {' '.join(i_child.remote_ts)} (remote_ts in {where_i}) "
                            f"but {responder} protects only {' '.join(r_child.local_ts)} (local_ts in {where_r})")
            fixes.append(f"set remote_ts = {', '.join(r_child.local_ts)} in {where_i}")
        if not _overlap(i_child.local_ts, r_child.remote_ts):
            problems.append(f"{initiator} offers its side as {' '.join(i_child.local_ts)} (local_ts in {where_i}) "
                            f"but {responder} expects {' '.join(r_child.remote_ts)} (remote_ts in {where_r})")
            fixes.append(f"set local_ts = {', '.join(r_child.remote_ts)} in {where_i}")
        asked = (f"{initiator} asked for {' '.join(i_child.local_ts) or 'dynamic'} === "
                 f"{' '.join(i_child.remote_ts) or 'dynamic'} (TSi === TSr)")
    else:
        asked = "the initiator's selectors"
    detail = "; ".join(problems) if problems else (
        f"{responder} logged: traffic selectors {logged.group(1)} unacceptable" if logged else
        "the selectors of the two configurations do not overlap")
    fix = " and ".join(fixes) if fixes else "make each side's local_ts the other's remote_ts"
    paragraph = (f"The first thing that went wrong was the CHILD_SA in {run.step_words(step)} at {run.when(wall)}: "
                 f"{responder or 'the responder'} answered TS_UNACCEPTABLE. Authentication worked and the IKE SA "
                 f"is up; only the traffic selectors were refused (RFC 7296 §2.9): {asked}, and {detail}. "
                 f"Fix: {fix}, so that each side's local_ts is the other side's remote_ts.")
    return Diagnosis("ts-mismatch", "traffic selector mismatch (TS_UNACCEPTABLE)", paragraph, step, wall, evidence)


def _auth(run: Run, related: list, wall: float) -> Diagnosis:
    initiator, responder = _sides(run, related)
    step = run.step_at(wall) or (run.first_failed or {}).get("index")
    evidence = [f"{node}: {_quote(text)}" for _w, _k, node, text, _r in related[:4]]
    texts = " | ".join(text for *_x, text, _r in related)
    i_conf, r_conf = run.configs.get(initiator or ""), run.configs.get(responder or "")
    i_conn = i_conf.connection() if i_conf else None
    r_conn = r_conf.connection() if r_conf else None
    checker = next((node for _w, _k, node, text, _r in related if "peer answered" not in text
                    and "received AUTHENTICATION_FAILED" not in text), responder)
    lookup = run.charon_lines(r"looking for peer configs matching (\S+)\[([^\]]*)\]\.\.\.(\S+)\[([^\]]*)\]")
    id_problems = []
    if i_conn and r_conn:
        if i_conn.remote_id and r_conn.local_id and i_conn.remote_id != r_conn.local_id \
                and "%any" not in i_conn.remote_id:
            id_problems.append((f"{initiator} expects {responder} to be '{i_conn.remote_id}' (remote id in "
                                f"{_conf_where(run, initiator or '?')}), but {responder} is '{r_conn.local_id}' "
                                f"(its local id)",
                                f"set id = {r_conn.local_id} in the remote section of {_conf_where(run, initiator or '?')}"))
        if r_conn.remote_id and i_conn.local_id and r_conn.remote_id != i_conn.local_id \
                and "%any" not in r_conn.remote_id:
            id_problems.append((f"{responder} expects '{r_conn.remote_id}' (remote id in "
                                f"{_conf_where(run, responder or '?')}), but {initiator} calls itself "
                                f"'{i_conn.local_id}' (its local id)",
                                f"make the ids agree: id = {i_conn.local_id} in the remote section of "
                                f"{_conf_where(run, responder or '?')}, or the other way round"))
    psk = bool(i_conn and r_conn and "psk" in (i_conn.local_auth + r_conn.local_auth))
    secrets_differ = False
    if psk and i_conf and r_conf and i_conn and r_conn:
        a = i_conf.secret_for(i_conn.local_id, i_conn.remote_id)
        b = r_conf.secret_for(r_conn.local_id, r_conn.remote_id)
        secrets_differ = a is not None and b is not None and a != b
    head = (f"The first thing that went wrong was IKE_AUTH in {run.step_words(step)} at {run.when(wall)}: "
            f"{checker or 'one side'} refused the other's authentication and "
            f"{'answered' if checker == responder else 'sent'} AUTHENTICATION_FAILED, so no IKE SA exists "
            f"and no tunnel.")
    if id_problems and ("no matching peer config" in texts or "identity" in texts.lower() or not secrets_differ):
        where = ""
        if lookup:
            m = lookup[0][2]
            where = (f" {lookup[0][0]}'s charon looked for a connection for {m.group(2)} (itself, as asked) and "
                     f"{m.group(4)} (the peer) and found none.")
        paragraph = (f"{head} The identities do not match: {id_problems[0][0]}.{where} "
                     f"Fix: {id_problems[0][1]}.")
        return Diagnosis("identity-mismatch", "wrong identity (AUTHENTICATION_FAILED)", paragraph, step, wall,
                         evidence)
    if psk and ("MAC mismatched" in texts or "MIC does not match" in texts or secrets_differ):
        ids = f"{i_conn.local_id} and {i_conn.remote_id}" if i_conn else "the two gateways"
        differ = (" The two swanctl.conf files do hold different secrets for these identities (compared "
                  "without showing them)." if secrets_differ else "")
        paragraph = (f"{head} Both used pre-shared keys and the identities matched, but the AUTH payload "
                     f"{checker} computed with its key differs from the one it received: the pre-shared keys "
                     f"for {ids} are not the same on both sides (RFC 7296 §2.15).{differ} Fix: put the same "
                     f"secret = \"...\" in the secrets section (ike-...) of {_conf_where(run, initiator or '?')} "
                     f"and {_conf_where(run, responder or '?')}.")
        return Diagnosis("psk-mismatch", "wrong pre-shared key (AUTHENTICATION_FAILED)", paragraph, step, wall,
                         evidence)
    reason = _quote(related[0][3])
    paragraph = (f"{head} {related[0][2]} says: {reason}. Check the local and remote sections of both "
                 f"configurations: the auth method (psk or pubkey), the ids, the certificates in x509/ and the CA "
                 f"in x509ca/.")
    return Diagnosis("auth-failed", "authentication failed (AUTHENTICATION_FAILED)", paragraph, step, wall, evidence)


# ------------------------------------------------------------------ nothing comes back


def _unanswered(run: Run) -> Diagnosis | None:
    """Requests sent again and again without a response: where they stop."""
    retransmits = [r for r in run.records if r.get("kind") == "retransmit"]
    unreachable = run.events("PeerUnreachable")
    charon_retx = run.charon_lines(r"retransmit (\d+) of request with message ID (\d+)")
    if not retransmits and not unreachable and not charon_retx:
        return None
    answered: set[tuple[str, str]] = set()
    for r in run.records:
        if r.get("kind") == "message" and r.get("dir") == "in" and r.get("response"):
            answered.add((r.get("node"), r.get("exchange")))
    lost = None
    for r in retransmits:
        if (r.get("node"), r.get("exchange")) not in answered:
            lost = r
            break
    if lost is None and unreachable:
        lost = {"node": unreachable[0]["node"], "exchange": unreachable[0].get("exchange"),
                "wall": unreachable[0].get("wall"), "tries": unreachable[0].get("tries")}
    node = lost.get("node") if lost else None
    exchange = lost.get("exchange") if lost else None
    wall = lost.get("wall") if lost else None
    if lost is None:
        name, entry, match = charon_retx[0]
        node, wall = name, entry.wall
        exchange = "IKE_SA_INIT" if match.group(2) == "0" else "IKE_AUTH" if match.group(2) == "1" else None
        if (node, exchange) in answered:
            return None
    tries = 1 + sum(1 for r in retransmits if r.get("node") == node and r.get("exchange") == exchange)
    peer = run.peer_of(node) if node else None
    step = run.step_at(wall or 0) or (run.first_failed or {}).get("index")
    sent = [r for r in run.records if r.get("kind") == "message" and r.get("node") == node and r.get("dir") == "out"
            and r.get("exchange") == exchange and not r.get("response")]
    size = max((int(r.get("length", 0)) for r in sent), default=0)
    fragments = max((int(r.get("fragments", 1)) for r in sent), default=1)
    where = _where_requests_stop(run, exchange)
    evidence = [f"{node} sent {exchange} {tries} time(s) without an answer"] + where["evidence"]
    if exchange == "IKE_AUTH" and where["ip_fragmented"]:
        mtus = run.link_mtus()
        mtu = f"the path MTU ({mtus[0][0]} on {mtus[0][1]})" if mtus else "the path MTU (1500)"
        conf = run.configs.get(node or "")
        conn = conf.connection() if conf else None
        frag = conn.fragmentation if conn else "yes"
        head = (f"The first thing that went wrong was IKE_AUTH in {run.step_words(step)}: IKE_SA_INIT was "
                f"answered, but {node} sent its IKE_AUTH request {tries} time(s) and never got an answer.")
        if fragments > 1:
            piece = where["ip_size"] or (size // fragments)
            paragraph = (f"{head} {node} did use IKEv2 fragmentation (RFC 7383): the {size}-byte message went as "
                         f"{fragments} IKE fragments, but each is up to {piece} bytes (the fragment size), more than "
                         f"{mtu}, so IP split them again; {where['fragment_words']} - a middlebox drops IP "
                         f"fragments, so {peer or 'the peer'} never gets every IKE fragment. Fix: an IKE fragment "
                         f"size below the path MTU (our daemon: --fragment-size in the scenario's gateway options, "
                         f"e.g. 900; strongSwan: charon.fragment_size), or let IP fragments through.")
        else:
            why = (f"{node} has fragmentation = {frag} in {_conf_where(run, node or '?')}" if frag == "no" else
                   f"{peer} did not offer IKE fragmentation (no IKEV2_FRAGMENTATION_SUPPORTED)" if peer else
                   "IKE fragmentation was not used")
            droppers = run.nodes_with("drop_fragments")
            who_drops = f" (drop_fragments on {', '.join(droppers)})" if droppers else ""
            paragraph = (f"{head} The request is {size or where['ip_size']} bytes (certificates and signatures), "
                         f"more than {mtu}, so IP split it into fragments; {where['fragment_words']} - a middlebox "
                         f"drops IP fragments{who_drops}, and without every fragment {peer or 'the peer'} cannot reassemble "
                         f"the message. IKEv2 fragmentation (RFC 7383) would have cut it into IKE fragments that "
                         f"each fit, but {why}. Fix: fragmentation = yes on both sides (and, if needed, a smaller "
                         f"fragment size), or let IP fragments through the box.")
        return Diagnosis("ike-fragments-lost", "IKE_AUTH fragments lost (no answer)", paragraph, step, wall,
                         evidence)
    path_words = where["words"] or "no capture shows where they stopped"
    if exchange == "IKE_SA_INIT":
        cause = "no answer to IKE_SA_INIT on UDP 500"
        fix = ("check that the peer's daemon runs and listens (its log), that remote_addrs points at it, and "
               "that UDP 500 and 4500 pass every firewall and NAT box on the way")
        first = "the very first message, IKE_SA_INIT on UDP 500,"
    else:
        cause = f"no answer to {exchange}"
        fix = ("IKE_SA_INIT got through, so UDP 500 works: let UDP 4500 through (IKE moves there when NAT-D finds "
               "a NAT, RFC 7296 §2.23), or find what drops the bigger message")
        first = f"{exchange}, after IKE_SA_INIT was answered,"
    paragraph = (f"The first thing that went wrong was {first} in {run.step_words(step)} at {run.when(wall)}: "
                 f"{node} sent it {tries} time(s) (retransmissions, RFC 7296 §2.1) and {peer or 'the peer'} never "
                 f"answered. {path_words}. Fix: {fix}.")
    return Diagnosis("no-answer", cause, paragraph, step, wall, evidence)


def _where_requests_stop(run: Run, exchange: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"words": "", "evidence": [], "ip_fragmented": False, "ip_size": 0, "fragment_words": ""}
    seen = []
    for capture in run.captures:
        requests = [p for p in capture.packets if p.kind == "ike" and p.ike and p.ike.exchange_name == exchange
                    and not p.ike.response]
        responses = [p for p in capture.packets if p.kind == "ike" and p.ike and p.ike.exchange_name == exchange
                     and p.ike.response]
        fragments = [p for p in capture.packets if p.ip_fragment and p.protocol == 17]
        incomplete = [p for p in fragments if p.ip_fragment == (0, 0)]
        seen.append((capture, requests, responses, fragments, incomplete))
        out["evidence"].append(f"{run.tap_words(capture.name)}: {len(requests)} {exchange} request(s) whole, "
                               f"{len(responses)} response(s), {len(fragments)} IP fragment(s) of UDP"
                               + (f" ({len(incomplete)} never completed)" if incomplete else ""))
    if not seen:
        return out
    with_requests = [s for s in seen if s[1]]
    without = [s for s in seen if not s[1]]
    if any(s[3] for s in seen):
        out["ip_fragmented"] = True
        sizes = [len(p.data) for s in seen for p in s[1] if p.ip_fragment]
        out["ip_size"] = max(sizes, default=0)
        whole = [s for s in seen if s[3] and not s[4]]
        broken = [s for s in seen if s[4]]
        if whole and broken:
            out["fragment_words"] = (f"on {run.tap_words(whole[0][0].name)} the IP fragments arrive and reassemble, "
                                     f"on {run.tap_words(broken[0][0].name)} {len(broken[0][4])} fragment(s) show "
                                     f"whose datagram is never whole")
        elif broken:
            out["fragment_words"] = (f"on {run.tap_words(broken[0][0].name)} {len(broken[0][4])} IP fragment(s) "
                                     f"show whose datagram is never whole")
        else:
            out["fragment_words"] = "the fragments reach the last tap, but no answer comes back"
    if with_requests and without:
        out["words"] = (f"The requests show on {', '.join(run.tap_words(s[0].name) for s in with_requests)} "
                        f"but never on {', '.join(run.tap_words(s[0].name) for s in without)}: they are dropped "
                        f"between those points")
    elif with_requests and not any(s[2] for s in seen):
        out["words"] = ("The requests show on every tap, so they reached the peer's side, and no response came back: "
                        "the peer did not answer them (not running, no listener on that port, or dropped at the peer)")
    return out


# ------------------------------------------------------------------ the tunnel is up, traffic is not


def _traffic_step_failed(run: Run) -> dict | None:
    failed = run.first_failed
    if failed and failed.get("kind") in TRAFFIC_STEPS and failed.get("expect") != "fail":
        return failed
    return None


def _child_up(run: Run) -> bool:
    return bool(run.events("ChildSaUp")) or bool(run.charon_lines(r"CHILD_SA \S+\{\d+\} established"))


def _nat_expired(run: Run) -> Diagnosis | None:
    step = _traffic_step_failed(run)
    if step is None or not run.nat_boxes():
        return None
    for box in run.nat_boxes():
        public = (box.get("nat") or {}).get("public")
        outside = next((c for c in run.captures if c.name.endswith("outside") and
                        any(t.get("node") == box["name"] and t.get("name") == c.name
                            for t in run.topology.get("taps", []))), None)
        inside = next((c for c in run.captures if c.name.endswith("inside") and
                       any(t.get("node") == box["name"] and t.get("name") == c.name
                           for t in run.topology.get("taps", []))), None)
        if outside is None or not public:
            continue
        in_step = [p for p in outside.packets if step["started"] - 0.5 <= p.time <= step["ended"] + 0.5]
        to_public = [p for p in in_step if p.dst == public and p.kind in ("esp", "ike", "keepalive") and p.dport]
        refused = [p for p in in_step if p.src == public and p.clear is not None and p.clear.icmp_type == 3]
        if not to_public or (not refused and inside is None):
            continue
        port = to_public[0].dport
        crossed = []
        if inside is not None:
            crossed = [p for p in inside.packets if step["started"] - 0.5 <= p.time <= step["ended"] + 0.5
                       and p.kind == to_public[0].kind and p.dport == port and p.src == to_public[0].src]
        if crossed and not refused:
            continue
        flow = [p for p in outside.packets if p.time < to_public[0].time and
                ((p.src == public and p.sport == port) or (p.dst == public and p.dport == port))]
        last = flow[-1] if flow else None
        idle = to_public[0].time - last.time if last else None
        knobs = run.nat_knobs(box["name"])
        timeout = knobs.get("udp_timeout")
        behind = _behind(run, box["name"])
        interval = run.gateway_option(behind, "--keepalive-interval") if behind else None
        interval_s = float(interval) if interval else KEEPALIVE_DEFAULT
        keepalives = [p for p in (inside or outside).packets if p.kind == "keepalive"
                      and last is not None and last.time <= p.time <= to_public[0].time]
        sender = run.owner(to_public[0].src) or to_public[0].src
        later = [p for p in outside.packets if p.time > to_public[0].time and p.src == public and p.sport
                 and p.sport != port and p.kind in ("esp", "ike", "keepalive")]
        evidence = [f"{run.tap_words(outside.name)}: {len(to_public)} packet(s) to {public}:{port} in "
                    f"{run.step_words(step['index'])}, {len(refused)} ICMP unreachable from {public}",
                    f"{run.tap_words(inside.name) if inside else 'inside'}: {len(crossed)} of them crossed the box"]
        if idle is not None:
            evidence.append(f"the flow was idle {idle:.1f} s before (last packet at {run.when(last.time)})")
        paragraph = (f"The tunnel was up, but in {run.step_words(step['index'])} {sender}'s packets to "
                     f"{public}:{port} - the NAT box's public side of {behind or 'the gateway'}'s mapping - "
                     f"{'were answered by the box with ICMP port unreachable' if refused else 'never came out on the inside'}: "
                     f"the NAT box no longer had the UDP mapping, so it did not know where to send them.")
        if idle is not None:
            paragraph += f" Nothing had used that mapping for {idle:.1f} s"
            paragraph += (f", longer than the box keeps an idle UDP mapping (udp_timeout: {timeout} s on "
                          f"{box['name']})" if timeout else ", longer than the box keeps an idle UDP mapping")
            paragraph += (f"; {behind} sends a NAT-keepalive only every {interval_s:g} s (RFC 3948 §2.3), and "
                          f"{len(keepalives)} were sent in that gap.")
        if later:
            paragraph += (f" When {behind or 'the gateway'} sent again, the box made a new mapping with port "
                          f"{later[0].sport}, which {sender} does not know.")
        paragraph += (" Fix: a keepalive interval below the NAT's mapping timeout (our daemon: "
                      "--keepalive-interval in the scenario's gateway options; strongSwan: keep_alive in "
                      "strongswan.conf), or a longer udp_timeout on the NAT box; traffic or DPD from the side "
                      "behind the NAT also keeps the mapping alive.")
        return Diagnosis("nat-mapping-expired", "NAT mapping expired (keepalive interval vs mapping timeout)",
                         paragraph, step["index"], to_public[0].time, evidence)
    return None


def _behind(run: Run, box: str) -> str | None:
    """The gateway on the inside of NAT box `box`."""
    nat = next((n.get("nat") or {} for n in run.nat_boxes() if n["name"] == box), {})
    inside = set(nat.get("inside", []))
    links = run.topology.get("links", [])
    for link in links:
        ends = [link.get("a", {}), link.get("b", {})] if isinstance(link, dict) else []
        names = [(e.get("node"), e.get("intf")) for e in ends if isinstance(e, dict)]
        if any(n == box and i in inside for n, i in names):
            for n, _i in names:
                if n in run.software:
                    return n
    for gateway in run.gateways:
        sa = next((r for r in run.events("IkeSaUp", node=gateway) if r.get("local_behind_nat")), None)
        if sa is not None:
            return gateway
    return None


def _esp_blocked(run: Run) -> Diagnosis | None:
    step = _traffic_step_failed(run)
    if step is None or not _child_up(run):
        return None
    window = [(c, [p for p in c.packets if p.ipsec is not None and step["started"] - 0.5 <= p.time <= step["ended"] + 0.5])
              for c in run.captures]
    by_spi: dict[int, dict[str, int]] = {}
    for capture, packets in window:
        for p in packets:
            by_spi.setdefault(p.ipsec.spi, {})
            by_spi[p.ipsec.spi][capture.name] = by_spi[p.ipsec.spi].get(capture.name, 0) + 1
    for spi, counts in by_spi.items():
        missing = [c.name for c, _p in window if counts.get(c.name, 0) == 0]
        present = [name for name, n in counts.items() if n]
        if not missing or not present:
            continue
        sample = next(p for c, ps in window for p in ps if p.ipsec.spi == spi)
        sender = run.owner(sample.src) or sample.src
        encap = sample.ipsec.encap
        form = "ESP inside UDP 4500" if encap else "plain ESP (IP protocol 50)"
        inner = f" carrying {sample.inner.summary}" if sample.inner else ""
        replies = [s for s in by_spi if s != spi]
        back = ("no ESP came back at all" if not replies else
                f"ESP on SPI {replies[0]:08x} came back")
        droppers = run.nodes_with("drop_esp")
        if droppers and not encap:
            back += f" ({', '.join(droppers)} has drop_esp: true)"
        fix = ("let IP protocol 50 through, or force UDP encapsulation with encap = yes in the connection of "
               f"{_conf_where(run, sender)} (ESP then travels in UDP 4500, RFC 3948)" if not encap else
               "let UDP 4500 through the middlebox")
        paragraph = (f"IKE worked and the CHILD_SA is up, but traffic does not get through: in "
                     f"{run.step_words(step['index'])} {sender} sent {counts[present[0]]} {form} packet(s) on SPI "
                     f"{spi:08x}{inner}; they show on {', '.join(run.tap_words(n) for n in present)} and never on "
                     f"{', '.join(run.tap_words(n) for n in missing)}, so something between drops them, and "
                     f"{back}. IKE uses UDP 500/4500 and passes; {'ESP has no ports, and firewalls or NAT boxes that know only TCP and UDP drop it' if not encap else 'the ESP packets share port 4500 with IKE but are dropped'}. "
                     f"Fix: {fix}.")
        evidence = [f"SPI {spi:08x}: " + ", ".join(f"{name} {counts.get(name, 0)}" for name in
                                                   [c.name for c, _p in window])]
        return Diagnosis("esp-blocked", "ESP blocked on the path", paragraph, step["index"], sample.time, evidence)
    return None


def _pmtud(run: Run) -> Diagnosis | None:
    failed = _traffic_step_failed(run)
    if failed is None:
        return None
    mtus = run.link_mtus()
    path_mtu = mtus[0][0] if mtus else 1500
    earlier_ping = next((s for s in run.steps if s.get("kind") == "ping" and s.get("ok")
                         and s["index"] < failed["index"]), None)
    window = {c.name: [p for p in c.packets if failed["started"] - 0.5 <= p.time <= failed["ended"] + 0.5]
              for c in run.captures}
    every = [p for ps in window.values() for p in ps]

    def carried(p):
        return p.inner if p.inner is not None else p.clear

    big = [p for p in every if p.src and (p.length > path_mtu or (carried(p) is not None and carried(p).length >
                                                                  path_mtu))]
    tcp = [p for p in every if carried(p) is not None and carried(p).protocol == 6 and carried(p).tcp_payload]
    biggest = max((carried(p).length for p in tcp), default=0)
    repeats = Counter((carried(p).src, carried(p).tcp_seq) for p in tcp if carried(p).length == biggest)
    resent = sum(n - 1 for n in repeats.values() if n > 1) // max(1, len([c for c in window if window[c]]))
    # where the big packets stop: a capture that has them and one that has none of them
    by_tap = {name: len([p for p in ps if p in big]) for name, ps in window.items()}
    have = [n for n, k in by_tap.items() if k]
    lack = [n for n, k in by_tap.items() if not k and window[n]]
    df = any(p.data[:1] and p.data[0] >> 4 == 4 and p.data[6] & 0x40 for p in big) or \
        any(carried(p) is not None and carried(p).df for p in big)
    icmp_frag = [p for c in run.captures for p in c.packets
                 if (p.clear and p.clear.icmp_type == 3 and p.clear.icmp_code == 4)
                 or (p.inner and p.inner.icmp_type == 3 and p.inner.icmp_code == 4)]
    if not mtus or not (resent or (big and lack)):
        return None
    if failed.get("kind") == "ping" and not big:
        return None
    blockers = [f"block_icmp_frag on {n}" for n in run.nodes_with("block_icmp_frag")]
    for s in run.scenario_steps():
        command = (s.get("run") or {}).get("cmd", "") if isinstance(s.get("run"), dict) else ""
        if "fragmentation-needed" in command or ("icmp" in command and "DROP" in command):
            blockers.append(f"`{command}` on {s['run']['node']}")
    sample = (big or tcp)[0]
    who = run.owner(carried(sample).src if carried(sample) else sample.src) or \
        (carried(sample).src if carried(sample) else sample.src)
    inner_sizes = [carried(p).length for p in big if carried(p) is not None and p.ipsec is not None]
    size = max(inner_sizes, default=biggest)
    inside_esp = " inside ESP" if inner_sizes else ""
    ping_words = f" (the ping of step {earlier_ping['index']} passed)" if earlier_ping else ""
    what = "the bulk transfer" if failed.get("kind") in ("transfer", "iperf3") else "the large ping"
    paragraph = (f"The tunnel works for small packets{ping_words}, but {what} of {run.step_words(failed['index'])} "
                 f"does not get through: {who} sends full-size packets of {size} bytes"
                 f"{' with Don’t Fragment set' if df else ''}{inside_esp}")
    if have and lack:
        paragraph += (f"; they show on {', '.join(run.tap_words(n) for n in have)} and never on "
                      f"{', '.join(run.tap_words(n) for n in lack)}")
    if resent:
        paragraph += f", and TCP sends the same full-size segments again ({resent} retransmissions)"
    paragraph += (f". A link on the way has a smaller MTU: {mtus[0][0]} on {mtus[0][1]}. A router that cannot "
                  f"forward a packet with DF set drops it and must answer ICMP 'fragmentation needed' so that the "
                  f"sender lowers its packet size (path MTU discovery, RFC 1191), but "
                  f"{len(icmp_frag)} such ICMP message(s) appear in the captures"
                  + (f" ({'; '.join(blockers)} drops them)" if blockers else "")
                  + ": a PMTUD black hole. Fix: clamp the TCP MSS on the gateway (the knob mss_clamp, or iptables "
                    "-t mangle -A FORWARD -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu), lower the "
                    "tunnel MTU below the path's (our daemon: --tunnel-mtu), or let ICMP fragmentation-needed "
                    "through.")
    evidence = [f"{len(big)} packet(s) over {path_mtu} bytes in the step: " +
                ", ".join(f"{n} on {k}" for k, n in by_tap.items()),
                f"{len(tcp)} TCP segments, largest {biggest} bytes, {resent} resent",
                f"{len(icmp_frag)} ICMP fragmentation-needed in the captures"] + [f"MTU {m} on {w}" for m, w in mtus]
    return Diagnosis("pmtud-black-hole", "PMTUD black hole (full-size packets vanish, no ICMP comes back)",
                     paragraph, failed["index"], sample.time, evidence)


# ------------------------------------------------------------------ the rest


def _unknown(run: Run) -> Diagnosis:
    failed = run.first_failed
    lines = []
    for node, entries in run.charon.items():
        lines += [f"{node}: {_quote(e.text)}" for e in entries if re.search(r"fail|error|unacceptable|giving up", e.text,
                                                                          re.IGNORECASE)][:2]
    for r in run.records:
        if r.get("kind") in ("drop",) or r.get("event") in ("NegotiationFailed", "AuthFailed", "PeerUnreachable"):
            lines.append(f"{r.get('node')}: {r.get('reason') or r.get('event')}")
    if failed is not None:
        paragraph = (f"The first thing that went wrong was {run.step_words(failed['index'])}: "
                     f"{_quote(failed.get('detail', ''), 300)}. None of the usual causes shows in the trace, the "
                     f"logs or the captures" + (f"; the logs say: {lines[0]}" if lines else "") +
                     ". Look at the step's line in report.md, the daemons' logs in logs/ and the ladder in figures/.")
        return Diagnosis("unknown", f"step {failed['index']} failed", paragraph, failed["index"],
                         failed.get("started"), lines[:5])
    checks = [c for c in run.result.get("checks", []) if not c.get("ok")]
    if run.result.get("error"):
        return Diagnosis("unknown", "the run stopped with an error",
                         f"The run stopped with an error before it finished: {run.result['error']}.", None, None,
                         lines[:5])
    if checks:
        c = checks[0]
        return Diagnosis("check-failed", f"check {c['index']} failed",
                         f"Every step did what it should, but check {c['index']} ({c['text']}) did not hold: it saw "
                         f"{c['saw']}. The scenario expected something of the captures or the SAs that did not "
                         f"happen; compare with what report.md shows for it.", None, None, lines[:5])
    return Diagnosis("passed", "nothing went wrong", "Every step and every check passed: nothing to diagnose.")


DETECTORS: list[Callable[[Run], Diagnosis | None]] = [_negotiation, _unanswered, _nat_expired, _esp_blocked, _pmtud]


def diagnose(root: str | Path) -> Diagnosis:
    """The first point where the run in `root` went wrong, and why (see the module's docstring)."""
    run = Run(root)
    if run.result.get("passed"):
        return Diagnosis("passed", "nothing went wrong", "Every step and every check passed: nothing to diagnose.")
    for detector in DETECTORS:
        found = detector(run)
        if found is not None:
            return found
    return _unknown(run)


__all__ = ["DETECTORS", "Diagnosis", "DiagnoseError", "Run", "diagnose"]
