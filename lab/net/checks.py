"""Scenario check kinds, one class each: its fields and their validation (line-numbered errors),
its words for the report and the narration, and its evaluation in a running lab. A check is
retried until it holds or its timeout passes, like a line of strongSwan's evaltest.dat
(`host::command::regex::YES`) or a netlab validate entry.

Adding a check kind is one class here, decorated with `@CHECKS.add`:

    @CHECKS.add
    class CounterCheck(CheckKind):
        name = "counter"
        does = "a daemon counter (`ipsec-lab ctl stats`)"
        fields = (Field("node", required=True), Field("name", required=True), Field("min"), ...)
        node_pool = "gateways"

        def validate(self, f, ctx, out): f.text("name")
        def describe(self, a): return f"{a['node']} counter {a['name']} " + bounds_words(a)
        def evaluate(self, run, a): ...  -> (held, what it saw)

scenarios/README.md's table of checks is generated from this registry (lab.net.reference).
"""
from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from .fields import Field, Fields, Kind, Map, Registry, Seq, as_map
from .peers import PeerError, describe_tunnels
from .peers import describe as describe_sas
from .steps import Context

if TYPE_CHECKING:
    from .runner import Runner

DEFAULT_CHECK_TIMEOUT = 10.0
COUNT_FIELDS = ("count", "min", "max", "equal", "children", "remote_port", "local_port")
REGEX_FIELDS = ("match", "algorithms", "esp_algorithms", "vip", "remote_vip")
EVALTEST = re.compile(r"^(?P<node>[^:]+)::(?P<cmd>.+)::(?P<match>.*)::(?P<expect>YES|NO|\d+)$")


@dataclass
class Check:
    kind: str
    args: dict[str, Any]
    line: int
    timeout: float = DEFAULT_CHECK_TIMEOUT
    say: str = ""

    @property
    def text(self) -> str:
        return self.say or CHECKS[self.kind].describe(self.args)


class CheckKind(Kind):
    """A kind of check. `validate` checks the kind's own fields and fills `out`; `describe` says
    what must hold; `evaluate` looks once and returns (held, what it saw)."""

    node_pool: ClassVar[str | None] = None     # "gateways" or "nodes": what `node` may name

    def validate(self, f: Fields, ctx: Context, out: dict[str, Any]) -> None:
        """Check the kind's own fields (f.args) and put normalised values into `out`."""

    def describe(self, a: dict[str, Any]) -> str:
        raise NotImplementedError

    def evaluate(self, run: Runner, a: dict[str, Any]) -> tuple[bool, str]:
        raise NotImplementedError


CHECKS: Registry[CheckKind] = Registry("check")


def parse_check(ctx: Context, item: Any, line: int, where: str, timeout: float) -> Check:
    """One check of a scenario file: a mapping `{KIND: {fields}, timeout:, say:}` or strongSwan's
    one-line form `NODE::COMMAND::REGEX::YES|NO|COUNT`."""
    r = ctx.r
    if isinstance(item, str):
        match = EVALTEST.match(item)
        if not match:
            raise r.error(line, where, "a one-line check is NODE::COMMAND::REGEX::YES|NO|COUNT, "
                                       f"like strongSwan's evaltest.dat; not {item!r}")
        item = as_map({"cmd": dict(match.groupdict())}, line)
    item = r.mapping(item, line, where)
    kinds = [k for k in item if k in CHECKS]
    if len(kinds) != 1:
        raise r.error(line, where, f"each check is one of {CHECKS.names()} (plus timeout, say)")
    kind_name = kinds[0]
    kind = CHECKS[kind_name]
    for key in set(item) - {kind_name, "timeout", "say"}:
        raise r.error(item.key_lines.get(key, line), f"{where}.{key}", "unknown field (a check may also have "
                                                                       "timeout, say)")
    check_timeout = float(r.number(item.get("timeout", timeout), item.key_lines.get("timeout", line),
                                   f"{where}.timeout", 0))
    say = item.get("say", "")
    if not isinstance(say, str):
        raise r.error(item.key_lines.get("say", line), f"{where}.say", "must be text")
    cline = item.key_lines.get(kind_name, line)
    args = r.mapping(item[kind_name], cline, f"{where}.{kind_name}")
    r.keys(args, kind.allowed(), f"{where}.{kind_name}")
    f = Fields(r, args, cline, f"{where}.{kind_name}")
    out = dict(args)
    if kind.node_pool is not None:
        if "node" not in args:
            raise f.error(None, "'node' is missing")
        pool = ctx.gateways if kind.node_pool == "gateways" else ctx.nodes
        if args["node"] not in pool:
            raise f.error("node", f"{args['node']!r} is not a {'gateway' if pool is ctx.gateways else 'node'}"
                                  f" here ({', '.join(sorted(pool))})")
    for key in COUNT_FIELDS:
        if key in args:
            f.number(key, whole=True)
    for key in REGEX_FIELDS:
        if key in args:
            try:
                re.compile(str(args[key]))
            except re.error as err:
                raise f.error(key, f"not a valid regular expression: {err}") from None
    kind.validate(f, ctx, out)
    return Check(kind=kind_name, args=out, line=cline, timeout=check_timeout, say=say)


def parse_checks(ctx: Context, raw: Any, line: int, where: str, timeout: float) -> list[Check]:
    if not isinstance(raw, list):
        raise ctx.r.error(line, where, "must be a list of checks")
    out = []
    for i, item in enumerate(raw, 1):
        item_line = raw.item_lines[i - 1] if isinstance(raw, Seq) else line
        out.append(parse_check(ctx, item, item_line, f"{where}[{i}]", timeout))
    return out


# ------------------------------------------------------------------ the kinds


def _expect_field(f: Fields, out: dict[str, Any]) -> None:
    expect = str(f.args.get("expect", "YES"))
    if expect not in ("YES", "NO") and not expect.isdigit():
        raise f.error("expect", "must be YES, NO or a count")
    out["expect"] = expect


@CHECKS.add
class CmdCheck(CheckKind):
    name = "cmd"
    does = "the command's output matches (like strongSwan's evaltest.dat)"
    fields = (Field("node", "any node", required=True),
              Field("cmd", "a shell command; `$SCENARIO_DIR` is the scenario's folder", required=True),
              Field("match", "a regex"),
              Field("expect", "`YES`, `NO` or a count", "YES"))
    node_pool = "nodes"

    def validate(self, f: Fields, ctx: Context, out: dict[str, Any]) -> None:
        f.text("cmd")
        _expect_field(f, out)
        out.setdefault("match", "")

    def describe(self, a: dict[str, Any]) -> str:
        return f"{a['node']}: `{a['cmd']}` {'matches' if a['expect'] != 'NO' else 'does not match'} /{a['match']}/" + (
            f" {a['expect']} times" if a["expect"].isdigit() else "")

    def evaluate(self, run: Runner, a: dict[str, Any]) -> tuple[bool, str]:
        out = run.node(a["node"]).cmd(f"{a['cmd']} 2>&1")
        return expect_match(out, a["match"], a["expect"], f"`{a['cmd']}`")


@CHECKS.add
class TapCheck(CheckKind):
    name = "tap"
    does = ("so many packets of the capture match the BPF `filter` (and the Wireshark `display` filter, "
            "`decrypt: true` with the run's keys); or, with `before: [A, B]`, every packet matching A comes "
            "before the first matching B")
    fields = (Field("on", "a tap", required=True), Field("filter", "BPF"), Field("display", "a Wireshark filter"),
              Field("decrypt", "true: tshark opens ESP with the run's keys"), Field("count"), Field("min"),
              Field("max"), Field("before", "[A, B]"))

    def validate(self, f: Fields, ctx: Context, out: dict[str, Any]) -> None:
        args = f.args
        names = [t.name for t in ctx.taps]
        if args.get("on") not in names:
            raise f.error("on", f"no tap {args.get('on')!r} (taps: {', '.join(names) or 'none'})")
        if "before" in args:
            before = args["before"]
            if not isinstance(before, list) or len(before) != 2 or not all(isinstance(b, str) for b in before):
                raise f.error("before", "must be [FIRST_FILTER, THEN_FILTER]: every FIRST packet comes before any "
                                        "THEN packet")
        elif not any(k in args for k in ("count", "min", "max")):
            raise f.error(None, "say how many: count, min or max (or before: [A, B])")
        if "filter" in args and not isinstance(args["filter"], str):
            raise f.error("filter", "must be a BPF filter, e.g. \"udp port 500\"")
        if "display" in args and not isinstance(args["display"], str):
            raise f.error("display", "must be a Wireshark display filter, e.g. \"ah && icmp\"")
        if "decrypt" in args and (not isinstance(args["decrypt"], bool) or "display" not in args):
            raise f.error("decrypt", "decrypt: true goes with a display filter (tshark then opens ESP with the "
                                     "run's keys)")

    def describe(self, a: dict[str, Any]) -> str:
        if "before" in a:
            return f"tap {a['on']}: every '{a['before'][0]}' before any '{a['before'][1]}'"
        how = (f"exactly {a['count']}" if "count" in a else
               " and ".join(x for x in (f"at least {a['min']}" if "min" in a else "",
                                        f"at most {a['max']}" if "max" in a else "") if x))
        what = " and ".join(f"'{x}'" for x in (a.get("filter"), a.get("display")) if x) or "any"
        return f"tap {a['on']}: {how} packets of {what}" + (" (decrypted)" if a.get("decrypt") else "")

    def evaluate(self, run: Runner, a: dict[str, Any]) -> tuple[bool, str]:
        path = run.flush_tap(a["on"])
        if "before" in a:
            first, then = (timestamps(path, f) for f in a["before"])
            if not first:
                return False, f"no '{a['before'][0]}' packet at all"
            if not then:
                return False, f"{len(first)} '{a['before'][0]}' packets, but no '{a['before'][1]}' packet"
            late = [t for t in first if t > then[0]]
            if late:
                return False, (f"{len(late)} '{a['before'][0]}' packet(s) after the first '{a['before'][1]}' "
                               f"(at +{late[0] - first[0]:.2f} s)")
            return True, f"{len(first)} '{a['before'][0]}', then {len(then)} '{a['before'][1]}'"
        if "display" in a:
            count = display_count(path, a.get("filter", ""), a["display"],
                                  run.key_tables() if a.get("decrypt") else None)
        else:
            count = len(timestamps(path, a.get("filter", "")))
        what = " and ".join(f"'{x}'" for x in (a.get("filter"), a.get("display")) if x) or "'any'"
        return bounds_ok(count, a), f"{count} packets of {what}" + (" (decrypted)" if a.get("decrypt") else "")


@CHECKS.add
class SaCheck(CheckKind):
    name = "sa"
    does = "the gateway's SAs (any gateway software, read the same way) are so"
    fields = (Field("node", "a gateway", required=True), Field("ike", "an IKE SA"), Field("child", "a CHILD_SA"),
              Field("state"), Field("count", "IKE SAs in that state"), Field("children", "CHILD_SAs installed"),
              Field("nat_local"), Field("nat_remote"), Field("encap"), Field("mode"), Field("protocol"),
              Field("algorithms", "regex"), Field("esp_algorithms", "regex"), Field("vip", "regex"),
              Field("remote_vip", "regex"), Field("local_port"), Field("remote_port"),
              Field("remote_host", "the peer's address as this side sees it"),
              Field("spi_changed_since", "a step name: the SPIs are new since that step"),
              Field("spi_kept_since", "a step name: the SPIs are the same as after that step"))
    node_pool = "gateways"

    def validate(self, f: Fields, ctx: Context, out: dict[str, Any]) -> None:
        args = f.args
        for key in ("nat_local", "nat_remote", "encap"):
            if key in args and not isinstance(args[key], bool):
                raise f.error(key, "must be true or false")
        for since in ("spi_changed_since", "spi_kept_since"):
            if since not in args:
                continue
            ref = args[since]
            if not any(s.name == ref for s in ctx.steps):
                raise f.error(since, f"no step is named {ref!r} (give that step name: {ref})")
            if not args.get("child") and not args.get("ike"):
                raise f.error(None, f"{since} needs child: NAME or ike: NAME")

    def describe(self, a: dict[str, Any]) -> str:
        facts = [f"{k}={v}" for k, v in a.items() if k not in ("node", "ike", "child")]
        what = f"CHILD_SA {a['child']}" if a.get("child") else f"IKE SA {a['ike']}" if a.get("ike") else "SAs"
        return f"{a['node']}: {what} " + (", ".join(facts) or "ESTABLISHED")

    def evaluate(self, run: Runner, a: dict[str, Any]) -> tuple[bool, str]:
        sas = run.sas(a["node"])
        matching = [sa for sa in sas if not a.get("ike") or sa.name == a["ike"]]
        if "count" in a:
            ike_state = a.get("state", "ESTABLISHED") if not a.get("child") else "ESTABLISHED"
            counted = [sa for sa in matching if sa.state == ike_state]
            if len(counted) != a["count"]:
                return False, f"{len(counted)} IKE SA(s) {ike_state}: {describe_sas(sas)}"
            if not set(a) - {"node", "ike", "state", "count"}:
                return True, f"{len(counted)} IKE SA(s) {ike_state}" + (f": {describe_sas(counted)}" if counted else "")
        want_state = a.get("state", "INSTALLED" if a.get("child") else "ESTABLISHED")
        problems = []
        for sa in matching:
            if a.get("child"):
                children = [c for c in sa.children if c.name == a["child"] and c.state == want_state]
                if not children:
                    problems.append(f"#{sa.unique_id} has no {a['child']} {want_state}")
                    continue
                if "children" in a and len(children) != a["children"]:
                    problems.append(f"{len(children)} {a['child']} CHILD_SAs, not {a['children']}")
                    continue
                child = children[-1]
                facts = {"encap": child.encap, "mode": child.mode, "protocol": child.protocol}
                wrong = [f"{k} is {facts[k]}" for k in ("encap", "mode", "protocol")
                         if k in a and str(facts[k]).upper() != str(a[k]).upper()]
                if "esp_algorithms" in a and not re.search(str(a["esp_algorithms"]), child.algorithms):
                    wrong.append(f"algorithms are {child.algorithms}")
                if "spi_changed_since" in a:
                    then = run.snapshots.get(a["spi_changed_since"], {}).get(a["node"], [])
                    old = {c.spi_in for s in then for c in s.children if c.name == a["child"]}
                    if child.spi_in in old:
                        wrong.append(f"SPI {child.spi_in} is the one from step {a['spi_changed_since']!r}")
                if "spi_kept_since" in a:
                    then = run.snapshots.get(a["spi_kept_since"], {}).get(a["node"], [])
                    old = {c.spi_in for s in then for c in s.children if c.name == a["child"]}
                    if child.spi_in not in old:
                        wrong.append(f"SPI {child.spi_in} is not the one from step {a['spi_kept_since']!r} "
                                     f"({', '.join(sorted(old)) or 'none'})")
            else:
                if sa.state != want_state:
                    problems.append(f"#{sa.unique_id} is {sa.state}")
                    continue
                wrong = []
                if "children" in a:
                    n = len([c for c in sa.children if c.state == "INSTALLED"])
                    if n != a["children"]:
                        wrong.append(f"{n} CHILD_SAs installed")
                if "spi_changed_since" in a:
                    then = run.snapshots.get(a["spi_changed_since"], {}).get(a["node"], [])
                    if any((s.spi_i, s.spi_r) == (sa.spi_i, sa.spi_r) for s in then):
                        wrong.append(f"SPIs {sa.spi_i}/{sa.spi_r} are those from step {a['spi_changed_since']!r}")
                if "spi_kept_since" in a:
                    then = run.snapshots.get(a["spi_kept_since"], {}).get(a["node"], [])
                    if not any((s.spi_i, s.spi_r) == (sa.spi_i, sa.spi_r) for s in then):
                        wrong.append(f"SPIs {sa.spi_i}/{sa.spi_r} are not those from step {a['spi_kept_since']!r}")
            facts2 = {"nat_local": sa.nat_local, "nat_remote": sa.nat_remote, "remote_port": sa.remote_port,
                      "local_port": sa.local_port, "remote_host": sa.remote_host}
            wrong += [f"{k} is {facts2[k]}" for k in facts2 if k in a and facts2[k] != a[k]]
            if "algorithms" in a and not re.search(str(a["algorithms"]), sa.algorithms):
                wrong.append(f"algorithms are {sa.algorithms}")
            if "vip" in a and not any(re.search(str(a["vip"]), v) for v in sa.local_vips):
                wrong.append(f"virtual IPs are {', '.join(sa.local_vips) or 'none'}")
            if "remote_vip" in a and not any(re.search(str(a["remote_vip"]), v) for v in sa.remote_vips):
                wrong.append(f"virtual IPs handed out: {', '.join(sa.remote_vips) or 'none'}")
            if not wrong:
                return True, describe_sas([sa])
            problems.append(f"#{sa.unique_id}: " + ", ".join(wrong))
        if not matching:
            return False, f"no IKE SA {a.get('ike') or ''}: {describe_sas(sas)}".replace("  ", " ")
        return False, "; ".join(problems)


@CHECKS.add
class TunnelCheck(CheckKind):
    name = "tunnel"
    does = ("the gateway's tunnels (any gateway software: an IKE SA with its CHILD_SAs, a WireGuard peer) "
            "are so; `remote_host`/`remote_port`: the other side's outer address as this side sees it")
    fields = (Field("node", "a gateway", required=True), Field("state", "UP, CONNECTING or DOWN", "UP"),
              Field("count", "tunnels in that state"), Field("remote_host", "an address"), Field("remote_port"),
              Field("transport", "udp, tcp or esp"), Field("handshake", "true: a handshake has been done"))
    node_pool = "gateways"

    def validate(self, f: Fields, ctx: Context, out: dict[str, Any]) -> None:
        args = f.args
        if "state" in args and args["state"] not in ("UP", "CONNECTING", "DOWN"):
            raise f.error("state", f"must be UP, CONNECTING or DOWN, not {args['state']!r}")
        if "transport" in args and args["transport"] not in ("udp", "tcp", "esp"):
            raise f.error("transport", f"must be udp, tcp or esp, not {args['transport']!r}")
        if "handshake" in args and not isinstance(args["handshake"], bool):
            raise f.error("handshake", "must be true or false")
        if "remote_host" in args:
            try:
                out["remote_host"] = str(ipaddress.ip_address(str(args["remote_host"])))
            except ValueError:
                raise f.error("remote_host", f"must be an IP address, not {args['remote_host']!r}") from None

    def describe(self, a: dict[str, Any]) -> str:
        facts = [f"{k}={v}" for k, v in a.items() if k not in ("node", "state")]
        return f"{a['node']}: a tunnel {a.get('state', 'UP')}" + (f", {', '.join(facts)}" if facts else "")

    def evaluate(self, run: Runner, a: dict[str, Any]) -> tuple[bool, str]:
        peer = run.peers[a["node"]]
        try:
            tunnels = peer.list_tunnels() if peer.running else []
        except (PeerError, OSError, ConnectionError) as err:
            return False, f"{a['node']} does not answer: {err}"
        state = a.get("state", "UP")
        matching = [t for t in tunnels if t.state == state]
        if "count" in a:
            return len(matching) == a["count"], f"{len(matching)} tunnel(s) {state}: {describe_tunnels(tunnels)}"
        problems = []
        for t in matching:
            facts = {"remote_host": t.remote_host, "remote_port": t.remote_port, "transport": t.transport,
                     "handshake": t.handshake_age is not None}
            wrong = [f"{k} is {facts[k]}" for k in facts if k in a and facts[k] != a[k]]
            if not wrong:
                return True, describe_tunnels([t])
            problems.append(f"{t.name}: " + ", ".join(wrong))
        if not matching:
            return False, f"no tunnel {state}: {describe_tunnels(tunnels)}"
        return False, "; ".join(problems)


@CHECKS.add
class TraceCheck(CheckKind):
    name = "trace"
    does = "so many records in the gateway's trace (software that writes one: ours)"
    fields = (Field("node", "a gateway that writes a trace", required=True),
              Field("event", "e.g. `ChildSaRekeyed`"), Field("kind", "or e.g. `retransmit`"),
              Field("match", "regex over the record"), Field("count"), Field("min"), Field("max"))
    node_pool = "gateways"

    def validate(self, f: Fields, ctx: Context, out: dict[str, Any]) -> None:
        from .software import SOFTWARE

        software = ctx.gateways[f.args["node"]]
        if not SOFTWARE[software].trace:
            raise f.error("node", f"trace checks read our daemon's trace; {f.args['node']} runs {software}")
        if not f.args.get("kind") and not f.args.get("event"):
            raise f.error(None, "give event: (e.g. ChildSaRekeyed) or kind: (e.g. retransmit)")

    def describe(self, a: dict[str, Any]) -> str:
        return f"{a['node']} trace: {a.get('event') or a.get('kind')} " + bounds_words(a)

    def evaluate(self, run: Runner, a: dict[str, Any]) -> tuple[bool, str]:
        path = run.peers[a["node"]].trace_file()
        count = 0
        if path is not None and path.exists():
            pattern = re.compile(str(a["match"])) if a.get("match") else None
            for line in path.read_text(errors="replace").splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if a.get("kind") and record.get("kind") != a["kind"]:
                    continue
                if a.get("event") and record.get("event") != a["event"]:
                    continue
                if pattern is not None and not pattern.search(line):
                    continue
                count += 1
        what = a.get("event") or a.get("kind")
        return bounds_ok(count, a), f"{count} {what} record(s)"


@CHECKS.add
class CounterCheck(CheckKind):
    name = "counter"
    does = "a daemon counter (`ipsec-lab ctl stats`; strongSwan's IKE counters)"
    fields = (Field("node", "a gateway", required=True), Field("name", "e.g. `drop:unknown SPI`", required=True),
              Field("min"), Field("max"), Field("equal"))
    node_pool = "gateways"

    def validate(self, f: Fields, ctx: Context, out: dict[str, Any]) -> None:
        f.text("name")

    def describe(self, a: dict[str, Any]) -> str:
        return f"{a['node']} counter {a['name']} " + bounds_words(a)

    def evaluate(self, run: Runner, a: dict[str, Any]) -> tuple[bool, str]:
        value = run.peers[a["node"]].counters().get(a["name"], 0)
        return bounds_ok(value, a), f"{a['name']} = {value}"


@CHECKS.add
class LogCheck(CheckKind):
    name = "log"
    does = "the daemon's log matches"
    fields = (Field("node", "a gateway", required=True), Field("match", "a regex", required=True),
              Field("expect", "`YES`, `NO` or a count", "YES"))
    node_pool = "gateways"

    def validate(self, f: Fields, ctx: Context, out: dict[str, Any]) -> None:
        f.text("match")
        _expect_field(f, out)

    def describe(self, a: dict[str, Any]) -> str:
        return f"{a['node']} log {'has' if a['expect'] != 'NO' else 'has no'} /{a['match']}/"

    def evaluate(self, run: Runner, a: dict[str, Any]) -> tuple[bool, str]:
        path = run.peers[a["node"]].log_path
        text = path.read_text(errors="replace") if path.exists() else ""
        return expect_match(text, a["match"], a["expect"], f"{a['node']}'s log")


# ------------------------------------------------------------------ helpers


def expect_match(text: str, pattern: str, expect: str, what: str) -> tuple[bool, str]:
    found = re.findall(pattern, text, re.MULTILINE) if pattern else [text] if text.strip() else []
    n = len(found)
    if expect == "YES":
        ok = n > 0
    elif expect == "NO":
        ok = n == 0
    else:
        ok = n == int(expect)
    sample = ""
    if pattern and n:
        line = next((line for line in text.splitlines() if re.search(pattern, line)), "")
        sample = f": {_short(line, 100)}"
    return ok, f"{what}: {n} match(es) of /{pattern}/{sample}"


def bounds_ok(value: int, a: dict[str, Any]) -> bool:
    if "count" in a and value != a["count"]:
        return False
    if "equal" in a and value != a["equal"]:
        return False
    if "min" in a and value < a["min"]:
        return False
    if "max" in a and value > a["max"]:
        return False
    if not any(k in a for k in ("count", "equal", "min", "max")):
        return value >= 1
    return True


def bounds_words(a: dict[str, Any]) -> str:
    parts = []
    for key, word in (("count", "=="), ("equal", "=="), ("min", ">="), ("max", "<=")):
        if key in a:
            parts.append(f"{word} {a[key]}")
    return " ".join(parts) or ">= 1"


def timestamps(pcap: Path, bpf: str) -> list[float]:
    """Packet times of `pcap` that match the BPF filter (tcpdump reads it)."""
    if not pcap.exists() or pcap.stat().st_size == 0:
        return []
    argv = ["tcpdump", "-r", str(pcap), "-n", "-tt", "-q"] + (shlex.split(bpf) if bpf else [])
    run = subprocess.run(argv, capture_output=True, text=True)
    if run.returncode != 0 and "truncated" not in run.stderr:
        raise PeerError(f"tcpdump cannot read {pcap.name} with filter '{bpf}': {run.stderr.strip()}")
    times = []
    for line in run.stdout.splitlines():
        head = line.split(" ", 1)[0]
        try:
            times.append(float(head))
        except ValueError:
            continue
    return times


def display_count(pcap: Path, bpf: str, display: str, keys: dict[str, list[str]] | None) -> int:
    """Packets of `pcap` that tshark's display filter matches (opened with the key tables
    `keys`, if given)."""
    if not pcap.exists() or pcap.stat().st_size == 0:
        return 0
    with tempfile.TemporaryDirectory() as home:
        if bpf:  # tshark reads no BPF: tcpdump picks the packets first
            picked = Path(home) / "picked.pcap"
            subprocess.run(["tcpdump", "-r", str(pcap), "-w", str(picked), *shlex.split(bpf)],
                           capture_output=True, timeout=60)
            pcap = picked
        argv = ["tshark", "-r", str(pcap), "-n", "-T", "fields", "-e", "frame.number", "-Y", display,
                "-o", "esp.enable_null_encryption_decode_heuristic:TRUE"]
        env = dict(os.environ, HOME=home, XDG_CONFIG_HOME=home)
        if keys is not None:
            wireshark = Path(home) / "wireshark"
            wireshark.mkdir()
            for table, lines in keys.items():
                (wireshark / table).write_text("\n".join(lines) + "\n")
            argv += ["-o", "esp.enable_encryption_decode:TRUE"]
        run = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    if run.returncode != 0:
        raise PeerError(f"tshark cannot read {pcap.name} with display filter '{display}': {run.stderr.strip()}")
    return len([line for line in run.stdout.splitlines() if line.strip()])


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


__all__ = ["CHECKS", "Check", "CheckKind", "DEFAULT_CHECK_TIMEOUT", "parse_check", "parse_checks", "Map"]
