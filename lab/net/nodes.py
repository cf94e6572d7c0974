"""The lab's nodes, as Mininet node classes: Host, Router, Gateway, NatBox and Switch.

Each node is a network namespace with a shell (Mininet's `Node`). A topology (lab.net.topology)
gives every node its interfaces' addresses and MTUs, its routes and its knobs as parameters;
`config()` applies them when Mininet builds the network, so the same classes serve the lab's
runner and `mn --custom topologies/<file>.py`. This module needs only Mininet and the
standard library (`mn` runs it under Debian's python3).

    Host      an end system: addresses, routes, IPv6 off (captures show only what we send)
    Router    a Host that forwards (ip_forward=1; rp_filter off unless asked)
    Gateway   a Router that runs an IKE daemon: ours or strongSwan's charon (private /var/run)
    NatBox    a Router that masquerades its inside behind its outside address, with knobs:
              mapping preserve|random, SNAT port range, DNAT of 500/4500, UDP mapping timeout,
              rebind/reboot, drop ESP, block ICMP fragmentation-needed, loss, delay/reorder/duplicate
    Switch    a LAN segment: a Linux bridge inside its own namespace, all its interfaces enslaved
"""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

from mininet.node import Node

NAT_DEFAULTS: dict[str, Any] = {
    "inside": [],            # interface names on the private side
    "outside": None,         # interface name on the public side
    "public": None,          # the outside address (for reports)
    "mapping": "preserve",   # preserve: keep source ports where free; random: --random-fully
    "snat_ports": None,      # "20000-29999": map source ports into this range
    "dnat": [],              # [{"to": "172.17.0.2", "ports": [500, 4500], "esp": False}]
    "udp_timeout": None,     # seconds a UDP mapping lives without traffic (conntrack)
    "drop_esp": False,       # drop IP protocol 50 crossing the box
    "block_icmp_frag": False,  # drop ICMP fragmentation-needed (PMTUD black hole)
    "loss": 0.0,             # probability a forwarded packet is dropped
    "delay_ms": 0.0,         # delay, jitter, reordering, duplication by NFQUEUE (lab.net.impair)
    "jitter_ms": 0.0,
    "reorder": 0.0,
    "duplicate": 0.0,
    "impair": "all",         # which forwarded packets loss/delay apply to: all, ike, esp
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
    sysctls={"net.ipv4.ip_forward": 1}, lo_addrs=["10.128.1.1/32"] (addresses on lo)."""

    kind = "host"
    tracker: Callable[[str, Any, list[str]], None] | None = None  # set by lab.net.lab.Lab
    on_shell: Callable[["LabNode"], None] | None = None

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

    # ------------------------------------------------------------ configuration

    def config(self, intfs: dict | None = None, routes: list | None = None, sysctls: dict | None = None,
               lo_addrs: list | None = None, kind: str | None = None, **params: Any) -> dict:
        result = super().config(**params)
        self.intf_params = dict(intfs or {})
        settings = {"net.ipv6.conf.all.disable_ipv6": 1, "net.ipv6.conf.default.disable_ipv6": 1}
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
                commands.append(f"ip addr add {address} dev {name}")
        for prefix, via in routes or []:
            commands.append(f"ip route replace {prefix} via {via}")
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
    kind = "router"

    def default_sysctls(self) -> dict[str, Any]:
        # problems.md #10: decrypted packets arrive on a TUN device; strict rp_filter drops them
        return {"net.ipv4.ip_forward": 1, "net.ipv4.conf.all.rp_filter": 0, "net.ipv4.conf.default.rp_filter": 0}


class Gateway(Router):
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

    def config(self, nat: dict | None = None, **params: Any) -> dict:
        self.knobs = dict(NAT_DEFAULTS)
        self.knobs.update(nat or {})
        self.rebinds = 0
        self.impairer = None
        return super().config(**params)

    def prepare(self) -> None:
        self.run("iptables -t nat -N IPL-POST", "iptables -t nat -A POSTROUTING -j IPL-POST",
                 "iptables -t nat -N IPL-PRE", "iptables -t nat -A PREROUTING -j IPL-PRE",
                 "iptables -N IPL-FWD", "iptables -A FORWARD -j IPL-FWD",
                 "iptables -N IPL-OUT", "iptables -A OUTPUT -j IPL-OUT")
        self.apply()

    @staticmethod
    def check_knobs(knobs: dict[str, Any]) -> None:
        """Raise ValueError naming the knob whose value is wrong."""
        for key in knobs:
            if key not in NAT_DEFAULTS:
                raise ValueError(f"{key}: unknown NAT box setting (known: {', '.join(NAT_DEFAULTS)})")
        if knobs.get("mapping", "preserve") not in NAT_MAPPINGS:
            raise ValueError(f"mapping: must be preserve or random, not {knobs['mapping']!r}")
        for key in ("loss", "reorder", "duplicate"):
            value = knobs.get(key, 0.0)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
                raise ValueError(f"{key}: must be a probability between 0 and 1, not {value!r}")
        for key in ("delay_ms", "jitter_ms"):
            value = knobs.get(key, 0.0)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{key}: must be a number of milliseconds, 0 or more, not {value!r}")
        timeout = knobs.get("udp_timeout")
        if timeout is not None and (not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 1):
            raise ValueError(f"udp_timeout: must be a whole number of seconds, 1 or more, not {timeout!r}")
        ports = knobs.get("snat_ports")
        if ports is not None:
            low, _, high = str(ports).partition("-")
            if not (low.isdigit() and high.isdigit() and 1 <= int(low) <= int(high) <= 65535):
                raise ValueError(f"snat_ports: must be a range like 20000-29999, not {ports!r}")
        if knobs.get("impair", "all") not in IMPAIR_MATCH:
            raise ValueError(f"impair: must be one of {', '.join(IMPAIR_MATCH)}, not {knobs['impair']!r}")
        for rule in knobs.get("dnat", []) or []:
            if not isinstance(rule, dict) or "to" not in rule:
                raise ValueError(f"dnat: each rule needs 'to' (an inside address) and 'ports', got {rule!r}")

    def set(self, **knobs: Any) -> None:
        """Change knobs while the lab runs (loss, delay, drop_esp, block_icmp_frag, mapping, ...)."""
        self.check_knobs(knobs)
        self.knobs.update(knobs)
        self.apply()

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

    def apply(self) -> None:
        k = self.knobs
        outside = k["outside"]
        rules: list[list[str]] = []
        nat_post = [["-t", "nat", "-A", "IPL-POST", "-o", outside, "-p", proto, *self._snat_target()]
                    for proto in ("udp", "tcp")] + [["-t", "nat", "-A", "IPL-POST", "-o", outside, "-j", "MASQUERADE"]]
        nat_pre = []
        for rule in k["dnat"] or []:
            for port in rule.get("ports", [500, 4500]):
                nat_pre.append(["-t", "nat", "-A", "IPL-PRE", "-i", outside, "-p", "udp", "--dport", str(port),
                                "-j", "DNAT", "--to-destination", str(rule["to"])])
            if rule.get("esp"):
                nat_pre.append(["-t", "nat", "-A", "IPL-PRE", "-i", outside, "-p", "esp", "-j", "DNAT",
                                "--to-destination", str(rule["to"])])
        fwd, out = [], []
        if k["drop_esp"]:
            fwd.append(["-A", "IPL-FWD", "-p", "esp", "-j", "DROP"])
        if k["block_icmp_frag"]:
            for chain, target in (("IPL-FWD", fwd), ("IPL-OUT", out)):
                target.append(["-A", chain, "-p", "icmp", "--icmp-type", "fragmentation-needed", "-j", "DROP"])
        match = IMPAIR_MATCH[k["impair"]]
        if k["loss"]:
            fwd.append(["-A", "IPL-FWD", *match, "-m", "statistic", "--mode", "random", "--probability",
                        f"{float(k['loss']):.4f}", "-j", "DROP"])
        delayed = any(k[key] for key in ("delay_ms", "jitter_ms", "reorder", "duplicate"))
        if delayed:
            fwd.append(["-A", "IPL-FWD", *match, "-j", "NFQUEUE", "--queue-num", "0", "--queue-bypass"])
        commands = ["iptables -t nat -F IPL-POST", "iptables -t nat -F IPL-PRE", "iptables -F IPL-FWD",
                    "iptables -F IPL-OUT"]
        rules = nat_post + nat_pre + fwd + out
        commands += ["iptables " + " ".join(shlex.quote(a) for a in rule) for rule in rules]
        if k["udp_timeout"]:
            t = int(k["udp_timeout"])
            commands.append(f"sysctl -qw net.netfilter.nf_conntrack_udp_timeout={t} "
                            f"net.netfilter.nf_conntrack_udp_timeout_stream={t}")
        self.run(*commands)
        self._impairer(delayed)

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
        self.impairer = self.start_process(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                           cwd=str(Path(__file__).resolve().parents[2]))
        line = self.impairer.stderr.readline().decode(errors="replace")
        if "ready" not in line:
            self.impairer.kill()
            raise NodeError(f"{self.name}: the NFQUEUE impairment process did not start: {line.strip()}")

    def rebind(self) -> None:
        """The NAT forgets its UDP mappings and gives existing flows new source ports
        (problems.md #5): the next SNAT port range, then the old conntrack entries dropped."""
        self.rebinds += 1
        self.apply()
        self.run_quiet("conntrack -D -p udp")

    def reboot(self) -> None:
        """The NAT box loses every mapping (conntrack flushed)."""
        self.run_quiet("conntrack -F")

    def mappings(self) -> str:
        """conntrack's table: the box's current mappings."""
        return self.run_quiet("conntrack -L -o extended")

    def stop_impairer(self) -> None:
        self._impairer(False)

    def terminate(self) -> None:
        try:
            if getattr(self, "impairer", None) is not None:
                self.stop_impairer()
        finally:
            super().terminate()


KINDS: dict[str, type[LabNode]] = {"host": Host, "router": Router, "gateway": Gateway, "nat": NatBox,
                                   "switch": Switch}
