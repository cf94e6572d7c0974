"""The lab's nodes, as Mininet node classes: Host, Router, GatewayNode, NatBox and Switch.

Each node is a network namespace with a shell (Mininet's `Node`). A topology (lab.net.topology)
gives every node its interfaces' addresses and MTUs, its routes and its knobs as parameters;
`config()` applies them when Mininet builds the network, so the same classes serve the lab's
runner and `mn --custom topologies/<file>.py`. This module needs only Mininet and the
standard library (`mn` runs it under Debian's python3).

    Host      an end system: addresses, routes, IPv6 off (captures show only what we send) unless
              the topology asks for it (`ipv6=True`: IPv6 on, without autoconfiguration)
    Router    a Host that forwards (ip_forward=1, and IPv6 forwarding with `ipv6`; rp_filter off unless asked)
    GatewayNode  a Router that runs an IKE daemon: ours or strongSwan's charon (private /var/run)
    NatBox    a Router that masquerades its inside behind its outside address, with knobs:
              mapping preserve|random, SNAT port range, DNAT of 500/4500, UDP mapping timeout,
              rebind/reboot, drop ESP, block ICMP fragmentation-needed, loss, delay/reorder/duplicate
    Switch    a LAN segment: a Linux bridge inside its own namespace, all its interfaces enslaved
"""
from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from mininet.node import Node

from .peers import DaemonProcess

if TYPE_CHECKING:
    from .forkserver import ForkedProcess, ForkServer

FILTER_DEFAULTS: dict[str, Any] = {
    # what any router, gateway or NAT box can do to the packets it forwards
    "drop_esp": False,       # drop IP protocol 50 crossing the box
    "drop_fragments": False,  # drop IP fragments but the first (a middlebox that cannot reassemble)
    "block_icmp_frag": False,  # drop ICMP fragmentation-needed (PMTUD black hole)
    "block_icmp6_too_big": False,  # drop ICMPv6 Packet Too Big (the IPv6 PMTUD black hole; needs ipv6)
    "mss_clamp": None,       # TCP MSS of forwarded SYNs: a number, or "pmtu" (clamp to the path MTU)
    "rp_filter": 0,          # reverse-path filter of the node: 0 off, 1 strict, 2 loose (RFC 3704)
    "loss": 0.0,             # probability a forwarded packet is dropped
    "loss_every": 0,         # drop every Nth forwarded packet (loss without chance: a repeatable run)
    "delay_ms": 0.0,         # delay, jitter, reordering, duplication by NFQUEUE (lab.net.impair)
    "jitter_ms": 0.0,
    "reorder": 0.0,
    "duplicate": 0.0,
    "impair": "all",         # which forwarded packets loss/delay apply to: all, ike, esp
    "allow_only": [],        # ["tcp/443", "udp/53"]: forward only these new flows (and their replies)
}
NAT_DEFAULTS: dict[str, Any] = {
    "inside": [],            # interface names on the private side
    "outside": None,         # interface name on the public side
    "public": None,          # the outside address (for reports)
    "mapping": "preserve",   # preserve: keep source ports where free; random: --random-fully
    "snat_ports": None,      # "20000-29999": map source ports into this range
    "dnat": [],              # [{"to": "172.17.0.2", "ports": [500, 4500], "esp": False}]
    "udp_timeout": None,     # seconds a UDP mapping lives without traffic (conntrack)
    **FILTER_DEFAULTS,
}
# the knobs in words, for the scenario reference (lab.net.reference)
KNOB_WORDS: dict[str, str] = {
    "drop_esp": "`true`: drop IP protocol 50 (ESP) crossing the box",
    "drop_fragments": "`true`: drop IP fragments but the first (a middlebox that cannot reassemble)",
    "block_icmp_frag": "`true`: drop ICMP fragmentation-needed (the PMTUD black hole)",
    "block_icmp6_too_big": "`true`: drop ICMPv6 Packet Too Big, forwarded or its own (the IPv6 PMTUD black hole: "
                           "routers do not fragment IPv6); in a topology with `ipv6: true`",
    "mss_clamp": "TCP MSS of forwarded SYNs: a number, or `pmtu` (clamp to the path MTU)",
    "rp_filter": "reverse-path filter: 0 off, 1 strict, 2 loose (RFC 3704)",
    "loss": "probability a forwarded packet is dropped",
    "loss_every": "drop every Nth forwarded packet (loss without chance: a repeatable run)",
    "delay_ms": "delay of forwarded packets (by NFQUEUE, since this kernel has no netem)",
    "jitter_ms": "random extra delay, up to this",
    "reorder": "probability a packet is held back behind the next",
    "duplicate": "probability a packet is sent twice",
    "impair": "`all`, `ike` or `esp`: what loss, delay, reordering and duplication apply to",
    "allow_only": "forward only new flows to these ports and their replies, e.g. `[tcp/80, tcp/443, udp/53]` "
                  "(a hotel network); `[]`: everything",
    "mapping": "`preserve`: keep source ports where free; `random`: a new port per flow",
    "snat_ports": "map source ports into a range, e.g. `20000-29999`",
    "dnat": "port forwarding, e.g. `[{to: 172.17.0.2, ports: [500, 4500]}]` (`esp: true` forwards ESP too)",
    "udp_timeout": "seconds a UDP mapping lives without traffic",
}
NAT_MAPPINGS = ("preserve", "random")
IMPAIR_MATCH = {
    "all": [],
    "ike": ["-p", "udp", "-m", "multiport", "--ports", "500,4500"],
    "esp": ["-p", "esp"],
}
REBIND_BASE, REBIND_SPAN = 20000, 1000


class NodeError(RuntimeError):
    """A command that configures a node failed; the message names the node and the command."""


class LabNode(Node):
    """A Mininet node configured from the topology's parameters:
    intfs={name: {"addrs": ["10.1.0.1/24"], "mtu": 1500}}, routes=[("default", "10.1.0.1")],
    sysctls={"net.ipv4.ip_forward": 1}, lo_addrs=["10.128.1.1/32"] (addresses on lo), ipv6=True (IPv6
    on: the addresses, routes and forwarding the topology gives, nothing autoconfigured)."""

    kind = "host"
    ipv6 = False  # set by config(): IPv6 on (a topology with `ipv6: true`)
    tracker: Callable[[str, DaemonProcess, list[str]], None] | None = None  # set by lab.net.lab.Lab
    forker: Callable[[], ForkServer] | None = None  # the lab's fork server (lab.net.forkserver), set by lab.net.lab.Lab
    on_shell: Callable[[LabNode], None] | None = None

    def __init__(self, name: str, **params: Any) -> None:
        super().__init__(name, **params)
        if LabNode.on_shell is not None:
            LabNode.on_shell(self)

    # ------------------------------------------------------------ commands

    def run(self, *commands: str) -> str:
        """Run shell commands in the node, all or nothing: raise NodeError naming the first
        that failed."""
        out = []
        for command in commands:
            marker = "__ipl_ok__"
            text = self.cmd(f"{command} 2>&1; echo {marker}$?")
            body, _, status = text.rpartition(marker)
            if status.strip() != "0":
                raise NodeError(f"{self.name}: '{command}' failed: {body.strip() or 'exit ' + status.strip()}")
            out.append(body)
        return "".join(out)

    def run_quiet(self, command: str) -> str:
        return self.cmd(f"{command} 2>&1")

    def start_process(self, argv: list[str], **popen: Any) -> subprocess.Popen:
        """A process in this node, known to the lab (stopped with it, listed by cleanup)."""
        popen.setdefault("stdin", subprocess.DEVNULL)
        proc = self.popen(argv, **popen)
        if LabNode.tracker is not None:
            LabNode.tracker(self.name, proc, argv)
        return proc

    def fork_process(self, argv: list[str], *, stdout: IO[bytes], env: dict[str, str], cwd: str) -> ForkedProcess:
        """`python -m lab.cli ...` forked by the lab's fork server into this node (its network and
        mount namespaces), known to the lab like start_process's; stdout and stderr go to the file
        `stdout`. Raises lab.net.forkserver.ForkServerError if the lab has no fork server."""
        from lab.net.forkserver import ForkServerError

        if LabNode.forker is None:
            raise ForkServerError("this node belongs to no lab with a fork server")
        proc = LabNode.forker().spawn(self.pid, argv, env, cwd, stdout.fileno())
        if LabNode.tracker is not None:
            LabNode.tracker(self.name, proc, argv)
        return proc

    # ------------------------------------------------------------ configuration

    def config(self, *, intfs: dict | None = None, routes: list | None = None, sysctls: dict | None = None,
               lo_addrs: list | None = None, kind: str | None = None, ipv6: bool = False, **params: Any) -> dict:
        result = super().config(**params)
        self.intf_params = dict(intfs or {})
        self.ipv6 = ipv6
        off = 0 if ipv6 else 1
        settings: dict[str, Any] = {"net.ipv6.conf.all.disable_ipv6": off, "net.ipv6.conf.default.disable_ipv6": off}
        if ipv6:
            # only the addresses and routes the topology gives: no router advertisements taken,
            # no solicitations sent (RFC 4861 §6.3.7), no duplicate address detection delay
            for scope in ("all", "default", *(name.replace(".", "/") for name in self.intfNames())):
                settings.update({f"net.ipv6.conf.{scope}.accept_ra": 0,
                                 f"net.ipv6.conf.{scope}.router_solicitations": 0,
                                 f"net.ipv6.conf.{scope}.accept_dad": 0})
        settings.update(self.default_sysctls())
        settings.update(sysctls or {})
        self.run(f"sysctl -qw {' '.join(f'{k}={v}' for k, v in settings.items())}")
        commands = ["ip link set lo up"]
        if lo_addrs:
            # this kernel has no dummy interfaces: a LAN address without a LAN sits on lo
            commands += [f"ip addr add {address} dev lo" for address in lo_addrs]
            self.intf_params["lo"] = {"addrs": list(lo_addrs)}
        for name in self.intfNames():
            spec = self.intf_params.get(name, {})
            if spec.get("mtu"):
                commands.append(f"ip link set dev {name} mtu {int(spec['mtu'])}")
            commands.append(f"ip link set dev {name} up")
            for address in spec.get("addrs", []):
                commands.append(f"ip addr add {address} dev {name}" + (" nodad" if ":" in address else ""))
        for prefix, via in routes or []:
            commands.append(f"ip {'-6 ' if ':' in via else ''}route replace {prefix} via {via}")
        self.run(" && ".join(commands))
        self.prepare()
        return result

    def default_sysctls(self) -> dict[str, Any]:
        return {}

    def prepare(self) -> None:
        """What a kind of node adds once its interfaces are up."""

    def terminate(self) -> None:
        """End the node's shell without running commands in it: its mounts live in its own
        mount namespace and its interfaces in its network namespace, and both go with it
        (lab.net.cleanup makes sure of it). A shell interrupted mid-command by Ctrl-C cannot
        take another, so nothing here may use cmd()."""
        if self.shell and self.shell.poll() is None:
            try:
                os.killpg(self.shell.pid, signal.SIGHUP)
            except ProcessLookupError:
                pass
        self.cleanup()

    def set_mtu(self, intf: str, mtu: int) -> None:
        self.run(f"ip link set dev {shlex.quote(intf)} mtu {int(mtu)}")

    def addresses(self) -> dict[str, list[str]]:
        return {name: list(spec.get("addrs", [])) for name, spec in self.intf_params.items()}


class Host(LabNode):
    kind = "host"


class Router(LabNode):
    """A node that forwards, with the filter knobs of FILTER_DEFAULTS (`knobs={...}` at build
    time, `set(...)` later)."""

    kind = "router"
    settable = FILTER_DEFAULTS

    def default_sysctls(self) -> dict[str, Any]:
        # field problem 10 (docs/field-problems.md): decrypted packets arrive on a TUN device;
        # strict rp_filter drops them
        settings = {"net.ipv4.ip_forward": 1, "net.ipv4.conf.all.rp_filter": 0, "net.ipv4.conf.default.rp_filter": 0}
        if self.ipv6:
            settings["net.ipv6.conf.all.forwarding"] = 1
        return settings

    def config(self, *, knobs: dict | None = None, **params: Any) -> dict:
        if not hasattr(self, "knobs"):
            self.knobs = dict(FILTER_DEFAULTS)
        self.knobs.update(knobs or {})
        self.impairer: subprocess.Popen[bytes] | None = None
        return super().config(**params)

    def prepare(self) -> None:
        self.run("iptables -N IPL-FWD", "iptables -A FORWARD -j IPL-FWD",
                 "iptables -N IPL-OUT", "iptables -A OUTPUT -j IPL-OUT", "iptables -N IPL-ALLOW",
                 "iptables -t mangle -N IPL-MSS", "iptables -t mangle -A FORWARD -j IPL-MSS")
        if self.ipv6:
            self.run("ip6tables -N IPL-FWD", "ip6tables -A FORWARD -j IPL-FWD",
                     "ip6tables -N IPL-OUT", "ip6tables -A OUTPUT -j IPL-OUT")
        self.apply()

    @classmethod
    def check_knobs(cls, knobs: dict[str, Any]) -> None:
        """Raise ValueError naming the knob whose value is wrong."""
        for key in knobs:
            if key not in cls.settable:
                what = "NAT box" if cls.settable is NAT_DEFAULTS else "router"
                raise ValueError(f"{key}: unknown {what} setting (known: {', '.join(cls.settable)})")
        for key in ("loss", "reorder", "duplicate"):
            value = knobs.get(key, 0.0)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
                raise ValueError(f"{key}: must be a probability between 0 and 1, not {value!r}")
        for key in ("delay_ms", "jitter_ms"):
            value = knobs.get(key, 0.0)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{key}: must be a number of milliseconds, 0 or more, not {value!r}")
        for key in ("drop_esp", "drop_fragments", "block_icmp_frag", "block_icmp6_too_big"):
            if not isinstance(knobs.get(key, False), bool):
                raise ValueError(f"{key}: must be true or false, not {knobs[key]!r}")
        mss = knobs.get("mss_clamp")
        if mss is not None and mss != "pmtu" and (not isinstance(mss, int) or isinstance(mss, bool)
                                                  or not 88 <= mss <= 65495):
            raise ValueError(f"mss_clamp: must be pmtu or a segment size in octets (88-65495), not {mss!r}")
        every = knobs.get("loss_every", 0)
        if not isinstance(every, int) or isinstance(every, bool) or every < 0 or every == 1:
            raise ValueError(f"loss_every: must be 2 or more (drop every Nth packet), or 0 for none, not {every!r}")
        if knobs.get("rp_filter", 0) not in (0, 1, 2):
            raise ValueError(f"rp_filter: must be 0 (off), 1 (strict) or 2 (loose), not {knobs['rp_filter']!r}")
        allow = knobs.get("allow_only", [])
        if not isinstance(allow, list) or not all(isinstance(a, str) and re.fullmatch(r"(tcp|udp)/\d{1,5}", a)
                                                  and 0 < int(a.split("/")[1]) < 65536 for a in allow):
            raise ValueError(f"allow_only: must be a list of PROTOCOL/PORT, e.g. [tcp/443, udp/53], not {allow!r}")
        if knobs.get("impair", "all") not in IMPAIR_MATCH:
            raise ValueError(f"impair: must be one of {', '.join(IMPAIR_MATCH)}, not {knobs['impair']!r}")

    def set(self, **knobs: Any) -> None:
        """Change knobs while the lab runs (loss, delay, drop_esp, block_icmp_frag, mapping, ...)."""
        self.check_knobs(knobs)
        if knobs.get("block_icmp6_too_big") and not self.ipv6:
            raise ValueError("block_icmp6_too_big: this node has no IPv6 (a topology with `ipv6: true` gives it)")
        self.knobs.update(knobs)
        self.apply()

    def filter_rules(self) -> tuple[list[list[str]], list[str]]:
        """(iptables rules of the filter knobs, other commands); the chains are flushed first."""
        k = self.knobs
        rules: list[list[str]] = []
        if k["allow_only"]:
            # a firewall that lets out only some ports: what is not a reply nor to one of them is dropped
            rules.append(["-A", "IPL-FWD", "-j", "IPL-ALLOW"])
            rules.append(["-A", "IPL-ALLOW", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "RETURN"])
            for allowed in k["allow_only"]:
                proto, port = allowed.split("/")
                rules.append(["-A", "IPL-ALLOW", "-p", proto, "--dport", port, "-j", "RETURN"])
            rules.append(["-A", "IPL-ALLOW", "-j", "DROP"])
        if k["drop_esp"]:
            rules.append(["-A", "IPL-FWD", "-p", "esp", "-j", "DROP"])
        if k["drop_fragments"]:
            rules.append(["-A", "IPL-FWD", "-f", "-j", "DROP"])
        if k["block_icmp_frag"]:
            for chain in ("IPL-FWD", "IPL-OUT"):
                rules.append(["-A", chain, "-p", "icmp", "--icmp-type", "fragmentation-needed", "-j", "DROP"])
        if k["block_icmp6_too_big"]:
            if not self.ipv6:
                raise NodeError(f"{self.name}: block_icmp6_too_big needs IPv6 (a topology with `ipv6: true`)")
            for chain in ("IPL-FWD", "IPL-OUT"):
                # RFC 4443 §3.2; RFC 4890 §4.3.1 says a firewall must not drop it
                rules.append(["ip6", "-A", chain, "-p", "icmpv6", "--icmpv6-type", "packet-too-big", "-j", "DROP"])
        if k["mss_clamp"] is not None:
            clamp = ["--clamp-mss-to-pmtu"] if k["mss_clamp"] == "pmtu" else ["--set-mss", str(k["mss_clamp"])]
            rules.append(["-t", "mangle", "-A", "IPL-MSS", "-p", "tcp", "--tcp-flags", "SYN,RST", "SYN",
                          "-j", "TCPMSS", *clamp])
        match = IMPAIR_MATCH[k["impair"]]
        if k["loss"]:
            rules.append(["-A", "IPL-FWD", *match, "-m", "statistic", "--mode", "random", "--probability",
                          f"{float(k['loss']):.4f}", "-j", "DROP"])
        if k["loss_every"]:
            # nft's statistic counts from 0: packet 0 of every N is the one dropped
            rules.append(["-A", "IPL-FWD", *match, "-m", "statistic", "--mode", "nth", "--every",
                          str(int(k["loss_every"])), "--packet", "0", "-j", "DROP"])
        if self._delayed():
            rules.append(["-A", "IPL-FWD", *match, "-j", "NFQUEUE", "--queue-num", "0", "--queue-bypass"])
        level = int(k["rp_filter"])
        others = [f"for f in /proc/sys/net/ipv4/conf/*/rp_filter; do echo {level} > $f; done"]
        return rules, others

    def _delayed(self) -> bool:
        return any(self.knobs[key] for key in ("delay_ms", "jitter_ms", "reorder", "duplicate"))

    def flushes(self) -> list[str]:
        six = ["ip6tables -F IPL-FWD", "ip6tables -F IPL-OUT"] if self.ipv6 else []
        return ["iptables -F IPL-FWD", "iptables -F IPL-OUT", "iptables -F IPL-ALLOW",
                "iptables -t mangle -F IPL-MSS"] + six

    def apply(self) -> None:
        rules, others = self.filter_rules()
        commands = self.flushes()
        # a rule starting with "ip6" is an ip6tables rule
        commands += [("ip6tables " + " ".join(shlex.quote(a) for a in rule[1:])) if rule[0] == "ip6"
                     else "iptables " + " ".join(shlex.quote(a) for a in rule) for rule in rules] + others
        self.run(*commands)
        self._impairer(self._delayed())

    def _impairer(self, wanted: bool) -> None:
        if self.impairer is not None:
            self.impairer.terminate()
            try:
                self.impairer.wait(5)
            except subprocess.TimeoutExpired:
                self.impairer.kill()
                self.impairer.wait(5)
            self.impairer = None
        if not wanted:
            return
        k = self.knobs
        argv = [sys.executable, "-m", "lab.net.impair", "--queue", "0", "--delay-ms", str(k["delay_ms"]),
                "--jitter-ms", str(k["jitter_ms"]), "--reorder", str(k["reorder"]), "--duplicate",
                str(k["duplicate"])]
        self.impairer = impairer = self.start_process(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                                      cwd=str(Path(__file__).resolve().parents[2]))
        assert impairer.stderr is not None  # a pipe: asked for just above
        line = impairer.stderr.readline().decode(errors="replace")
        if "ready" not in line:
            impairer.kill()
            raise NodeError(f"{self.name}: the NFQUEUE impairment process did not start: {line.strip()}")

    def terminate(self) -> None:
        try:
            if getattr(self, "impairer", None) is not None:
                self._impairer(False)
        finally:
            super().terminate()


class GatewayNode(Router):
    """A router that runs an IKE daemon. charon hard-codes /var/run/charon.pid, so the node
    gets a private /var/run."""

    kind = "gateway"

    def __init__(self, name: str, **params: Any) -> None:
        params.setdefault("privateDirs", ["/var/run"])
        super().__init__(name, **params)


class Switch(LabNode):
    """One LAN segment: a bridge in the node's own namespace with every interface a port."""

    kind = "switch"

    def prepare(self) -> None:
        commands = ["ip link add br0 type bridge forward_delay 0", "ip link set br0 up"]
        commands += [f"ip link set dev {name} master br0" for name in self.intfNames()]
        self.run(" && ".join(commands))


class NatBox(Router):
    """A NAT box (iptables MASQUERADE in its namespace) with the knobs of NAT_DEFAULTS, each
    settable at build time (`nat={...}` parameter) and later with `set(...)`."""

    kind = "nat"
    settable = NAT_DEFAULTS

    def config(self, *, nat: dict | None = None, **params: Any) -> dict:
        self.knobs = dict(NAT_DEFAULTS)
        self.knobs.update(nat or {})
        self.rebinds = 0
        return super().config(**params)

    def prepare(self) -> None:
        self.run("iptables -t nat -N IPL-POST", "iptables -t nat -A POSTROUTING -j IPL-POST",
                 "iptables -t nat -N IPL-PRE", "iptables -t nat -A PREROUTING -j IPL-PRE")
        super().prepare()

    @classmethod
    def check_knobs(cls, knobs: dict[str, Any]) -> None:
        super().check_knobs(knobs)
        if knobs.get("mapping", "preserve") not in NAT_MAPPINGS:
            raise ValueError(f"mapping: must be preserve or random, not {knobs['mapping']!r}")
        timeout = knobs.get("udp_timeout")
        if timeout is not None and (not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 1):
            raise ValueError(f"udp_timeout: must be a whole number of seconds, 1 or more, not {timeout!r}")
        ports = knobs.get("snat_ports")
        if ports is not None:
            low, _, high = str(ports).partition("-")
            if not (low.isdigit() and high.isdigit() and 1 <= int(low) <= int(high) <= 65535):
                raise ValueError(f"snat_ports: must be a range like 20000-29999, not {ports!r}")
        for rule in knobs.get("dnat", []) or []:
            if not isinstance(rule, dict) or "to" not in rule:
                raise ValueError(f"dnat: each rule needs 'to' (an inside address) and 'ports', got {rule!r}")

    def _snat_target(self) -> list[str]:
        target = ["-j", "MASQUERADE"]
        ports = self.knobs["snat_ports"]
        if self.rebinds:
            low = REBIND_BASE + REBIND_SPAN * ((self.rebinds - 1) % 40)
            ports = f"{low}-{low + REBIND_SPAN - 1}"
        if ports:
            target += ["--to-ports", str(ports)]
        if self.knobs["mapping"] == "random":
            target.append("--random-fully")
        return target

    def flushes(self) -> list[str]:
        return ["iptables -t nat -F IPL-POST", "iptables -t nat -F IPL-PRE"] + super().flushes()

    def filter_rules(self) -> tuple[list[list[str]], list[str]]:
        k = self.knobs
        outside = k["outside"]
        rules = [["-t", "nat", "-A", "IPL-POST", "-o", outside, "-p", proto, *self._snat_target()]
                 for proto in ("udp", "tcp")] + [["-t", "nat", "-A", "IPL-POST", "-o", outside, "-j", "MASQUERADE"]]
        for rule in k["dnat"] or []:
            for port in rule.get("ports", [500, 4500]):
                rules.append(["-t", "nat", "-A", "IPL-PRE", "-i", outside, "-p", "udp", "--dport", str(port),
                              "-j", "DNAT", "--to-destination", str(rule["to"])])
            if rule.get("esp"):
                rules.append(["-t", "nat", "-A", "IPL-PRE", "-i", outside, "-p", "esp", "-j", "DNAT",
                              "--to-destination", str(rule["to"])])
        more, others = super().filter_rules()
        if k["udp_timeout"]:
            t = int(k["udp_timeout"])
            others.append(f"sysctl -qw net.netfilter.nf_conntrack_udp_timeout={t} "
                          f"net.netfilter.nf_conntrack_udp_timeout_stream={t}")
        return rules + more, others

    def rebind(self) -> None:
        """The NAT forgets its UDP mappings and gives existing flows new source ports
        (field problem 5, docs/field-problems.md): the next SNAT port range, then the old conntrack
        entries dropped."""
        self.rebinds += 1
        self.apply()
        self.run_quiet("conntrack -D -p udp")

    def reboot(self) -> None:
        """The NAT box loses every mapping (conntrack flushed)."""
        self.run_quiet("conntrack -F")

    def mappings(self) -> str:
        """conntrack's table: the box's current mappings."""
        return self.run_quiet("conntrack -L -o extended")


KINDS: dict[str, type[LabNode]] = {"host": Host, "router": Router, "gateway": GatewayNode, "nat": NatBox,
                                   "switch": Switch}
