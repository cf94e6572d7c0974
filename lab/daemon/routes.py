"""What the data plane tells the kernel, through ip(8): routes into the TUN device, virtual IPs,
shunts. Nothing here runs per packet (lab.daemon.packets moves the packets).

Like strongSwan's kernel-libipsec, where kernel_libipsec_ipsec.c installs routes through the TUN
device while kernel_libipsec_router.c moves packets. Routing: remote selectors go into table
220, looked up by every packet that is not marked with FWMARK; the data plane's own sockets set
that mark (SO_MARK), so the outer packets never loop back into the tunnel, even when a peer's
address lies inside remote_ts.

Each `ip` run costs the event loop a fork and an exec (~5 ms), so a route is set once per
network however many CHILD SAs use it, and outlives the last of them by ROUTE_GRACE seconds:
short-lived SAs with the same selectors take it over without `ip`.
"""
from __future__ import annotations

import ipaddress
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lab.esp import SPD, Action, Policy, Selector
from lab.esp.spd import ANY_PORTS, AddressRange
from lab.ike.config import ChildMode, DynamicTrafficSelector, SaAction
from lab.ike.payloads import TrafficSelector

if TYPE_CHECKING:
    from .gateway import Gateway

FWMARK = 0x220
ROUTE_TABLE = 220
RULE_PRIORITY = 220
BYPASS_RULE_PRIORITY = 219  # looked up before table 220: BYPASS traffic never reaches the TUN device
ROUTE_GRACE = 1.0  # seconds a route into the TUN device outlives the last user (CHILD_SA or shunt)


class DataPlaneError(RuntimeError):
    """The data plane could not be set up; the message says what to do."""


def _family(network: str) -> list[str]:
    """ip(8)'s family option for a network or address: `-6` for IPv6 (rules need it; routes take it)."""
    return ["-6"] if ":" in network else []


def ipv6_on() -> bool:
    """Whether this node has IPv6 (lab nodes turn it off unless their topology asks for it)."""
    try:
        with open("/proc/sys/net/ipv6/conf/default/disable_ipv6") as f:
            return f.read().strip() == "0"
    except OSError:
        return False


def _host(address: str) -> str:
    """An address as a one-address prefix (/32, or /128 for IPv6)."""
    return f"{address}/{ipaddress.ip_address(address).max_prefixlen}"


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise DataPlaneError(f"'ip {' '.join(args)}' failed: {result.stderr.strip()}")


def esp_selector(local, remote) -> Selector:
    """The lab.esp selector of one pair of IKE traffic selectors (a CHILD_SA's or a shunt's)."""
    def ports(ts):
        return ANY_PORTS if (ts.start_port, ts.end_port) == (0, 65535) else (ts.start_port, ts.end_port)

    return Selector(AddressRange(local.start_addr.packed, local.end_addr.packed),
                    AddressRange(remote.start_addr.packed, remote.end_addr.packed),
                    local.ip_protocol or remote.ip_protocol or None, ports(local), ports(remote))


def route_network(ts) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """The network a CHILD_SA's remote traffic selector is routed by: the range itself if it is
    one prefix, else its first address."""
    nets = list(ipaddress.summarize_address_range(ts.start_addr, ts.end_addr))
    return nets[0] if len(nets) == 1 else ipaddress.ip_network(f"{ts.start_addr}/{ts.start_addr.max_prefixlen}")


def _shunt_selectors(selectors) -> list:
    """A shunt's selectors; `dynamic` is any address, as strongSwan resolves it for shunts."""
    out = []
    for ts in selectors:
        if isinstance(ts, DynamicTrafficSelector):
            out.append(TrafficSelector(ipaddress.IPv4Address(0), ipaddress.IPv4Address(2 ** 32 - 1), ts.ip_protocol,
                                       ts.start_port, ts.end_port))
        else:
            out.append(ts)
    return out


def _networks(ts) -> list[ipaddress.IPv4Network]:
    return list(ipaddress.summarize_address_range(ts.start_addr, ts.end_addr))


def _bypass_rule(local, remote, local_net, remote_net) -> list[str]:
    """`ip rule` selectors for one BYPASS selector pair, as seen by a packet leaving (local = source)."""
    rule = []
    if local_net.prefixlen:
        rule += ["from", str(local_net)]
    rule += ["to", str(remote_net)]
    protocol = local.ip_protocol or remote.ip_protocol
    if protocol:
        rule += ["ipproto", str(protocol)]
        if protocol in (6, 17, 132):
            for option, ts in (("sport", local), ("dport", remote)):
                if (ts.start_port, ts.end_port) != (0, 65535):
                    rule += [option, str(ts.start_port) if ts.start_port == ts.end_port
                             else f"{ts.start_port}-{ts.end_port}"]
    return rule


@dataclass
class Shunt:
    """A `mode = pass` or `mode = drop` child: a BYPASS or DISCARD policy, and how the kernel is
    told (BYPASS: `ip rule`s ahead of table 220; DISCARD: routes into the TUN device)."""

    policy: Policy
    rules: list[list[str]] = field(default_factory=list)
    routes: list[str] = field(default_factory=list)


class Routes:
    """The TUN device's link settings and table-220 rule, its routes (counted, with their grace),
    the virtual IPs on it, and the shunts (their policies in `spd`, their rules and routes)."""

    def __init__(self, gateway: Gateway, spd: SPD, tun_name: str = "ipsec0") -> None:
        self.gateway = gateway
        self.spd = spd
        self.tun_name = tun_name
        self.refs: Counter[str] = Counter()
        # a route no one uses goes after ROUTE_GRACE seconds: a CHILD_SA coming up meanwhile
        # (many short-lived SAs) takes it over, never a del and an add
        self._drops: dict[str, Any] = {}
        # the local selectors each route was set for (its source came from them); a virtual IP
        # coming or going forgets those of the routes in their grace, which are set again
        self._set: dict[str, Any] = {}
        self.virtual_ips: dict[int, list[str]] = {}  # IKE SA -> the virtual IPs it gave us (remote access client)
        self.shunts: list[Shunt] = []
        self._rule_added = False
        self.families: list[list[str]] = [[]]  # ip(8)'s family options the rule is set for: IPv4, and IPv6 if on

    # ------------------------------------------------------------ the device and the rule

    def start(self, mtu: int) -> None:
        self.families = [[], ["-6"]] if ipv6_on() else [[]]
        tun = f"net.ipv6.conf.{self.tun_name}"
        if len(self.families) == 1:
            # a node without IPv6: none on the TUN device either
            subprocess.run(["sysctl", "-qw", f"{tun}.disable_ipv6=1"], capture_output=True)
        else:
            # IPv6 selectors are routed into the device; it needs no address of its own, and
            # sends no router solicitations nor link-local traffic into the tunnel (RFC 4861 §6.3.7)
            subprocess.run(["sysctl", "-qw", f"{tun}.addr_gen_mode=1", f"{tun}.accept_ra=0",
                            f"{tun}.router_solicitations=0", f"{tun}.disable_ipv6=0"], capture_output=True)
        _ip("link", "set", "dev", self.tun_name, "mtu", str(mtu), "up")
        for family in self.families:
            subprocess.run(["ip", *family, "rule", "del", "priority", str(RULE_PRIORITY)], capture_output=True)
            _ip(*family, "rule", "add", "priority", str(RULE_PRIORITY), "not", "fwmark", hex(FWMARK),
                "lookup", str(ROUTE_TABLE))
        self._rule_added = True

    def stop(self) -> None:
        """Every shunt, route in its grace and virtual IP goes at once (the routes of live
        CHILD SAs are the caller's to drop first, at_once); the rule stays until `remove_rule`."""
        for shunt in self.shunts:
            self._uninstall_shunt(shunt)
        self.shunts = []
        for network in list(self._drops):
            self._drops.pop(network).cancel()
            self._gone(network)
        for ike_sa in list(self.virtual_ips):
            self.drop_virtual_ip(ike_sa)

    def remove_rule(self) -> None:
        if self._rule_added:
            for family in self.families:
                subprocess.run(["ip", *family, "rule", "del", "priority", str(RULE_PRIORITY)], capture_output=True)
            self._rule_added = False

    # ------------------------------------------------------------ virtual IPs

    def add_virtual_ip(self, ike_sa: int, address: str) -> None:
        """A remote-access client's address from the gateway's pool (RFC 7296 §3.15.1): on the
        TUN device, so that our own packets to the remote selectors leave with it as source. An
        IPv6 one skips duplicate address detection (RFC 4862 §5.4: the address is ours alone on a
        point-to-point device), as strongSwan installs it, else it stays tentative a while and
        is no source for anything."""
        if not self._in_use(address):
            flags = ["nodad"] if ":" in address else []
            try:
                _ip(*_family(address), "addr", "replace", _host(address), "dev", self.tun_name, *flags)
            except DataPlaneError as err:
                why = " (this node has no IPv6: a topology with `ipv6: true` gives it)" \
                    if flags and len(self.families) == 1 else ""
                self.gateway.say(f"[ESP] cannot install virtual IP {address}: {err}{why}")
                return
            self.gateway.say(f"[IKE] installed virtual IP {address} on {self.tun_name}")
            self._forget_idle_routes()
        mine = self.virtual_ips.setdefault(ike_sa, [])
        if address not in mine:
            mine.append(address)

    def _in_use(self, address: str) -> bool:
        return any(address in addresses for addresses in self.virtual_ips.values())

    def move_virtual_ip(self, ike_sa: int, new_ike_sa: int) -> None:
        """The IKE SA was rekeyed: its virtual IPs now belong to the new one."""
        vips = self.virtual_ips.pop(ike_sa, None)
        if vips is not None:
            self.virtual_ips[new_ike_sa] = vips

    def drop_virtual_ip(self, ike_sa: int) -> None:
        """The IKE SA's virtual IPs go (those no other IKE SA holds)."""
        for address in self.virtual_ips.pop(ike_sa, []):
            if not self._in_use(address):
                subprocess.run(["ip", *_family(address), "addr", "del", _host(address), "dev", self.tun_name],
                               capture_output=True)
                self.gateway.say(f"[IKE] removed virtual IP {address}")
                self._forget_idle_routes()

    def _forget_idle_routes(self) -> None:
        """Each route may have lost its source, or have a better one now: the next CHILD_SA to
        take one over in its grace sets it again."""
        self._set.clear()

    # ------------------------------------------------------------ routes into the TUN device

    def local_source(self, local_ts, version: int = 4) -> str | None:
        """An address of this host inside local_ts (of IP `version`), used as source for its own packets."""
        word = "inet" if version == 4 else "inet6"
        out = subprocess.run(["ip", "-o", f"-{version}", "addr", "show"], capture_output=True, text=True).stdout
        for line in out.split("\n"):
            parts = line.split()
            if word not in parts:
                continue
            address = ipaddress.ip_address(parts[parts.index(word) + 1].split("/")[0])
            if any(ts.start_addr <= address <= ts.end_addr for ts in local_ts if ts.start_addr.version == version):
                return str(address)
        return None

    def add(self, networks: list[str], local_ts) -> None:
        """Routes for a CHILD_SA's remote networks, sourced from an address in its `local_ts` of
        the same IP version."""
        sources: dict[int, str | None] = {}
        for network in networks:
            if self.refs[network] or (network in self._drops and self._set.get(network) == local_ts):
                self._add(network, set_again=False)  # live, or in its grace as these selectors set it
                continue
            version = 6 if ":" in network else 4
            if version not in sources:
                sources[version] = self.local_source(local_ts, version)
            self._add(network, sources[version], local_ts)

    def drop(self, networks: list[str], at_once: bool = False) -> None:
        for network in networks:
            self._del(network, at_once)

    def _add(self, network: str, source: str | None = None, local_ts: Any = None, set_again: bool = True) -> None:
        """A route into the TUN device in table 220, counted: a CHILD_SA and a drop shunt may share it.
        A route in its grace is set again unless it was set for the same local selectors and no
        virtual IP came or went since: the kernel drops a route with its source when that
        address goes, as a virtual IP does when its IKE SA is deleted, and the new IKE SA brings
        the same address back."""
        pending = self._drops.pop(network, None)
        if pending is not None:
            pending.cancel()
        self.refs[network] += 1
        if self.refs[network] > 1 or not set_again:
            return
        self._set.pop(network, None)
        args = [*_family(network), "route", "replace", network, "dev", self.tun_name, "table", str(ROUTE_TABLE)]
        if source:
            args += ["src", source]
        try:
            _ip(*args)
        except DataPlaneError as err:
            self.gateway.say(f"[ESP] {err}")
        else:
            self._set[network] = local_ts

    def _del(self, network: str, at_once: bool = False) -> None:
        self.refs[network] -= 1
        if self.refs[network] > 0:
            return
        del self.refs[network]
        loop = self.gateway.loop
        if at_once or loop is None:
            self._gone(network)
        elif network not in self._drops:
            self._drops[network] = loop.call_later(ROUTE_GRACE, self._expired, network)

    def _expired(self, network: str) -> None:
        self._drops.pop(network, None)
        if not self.refs[network]:
            self._gone(network)

    def _gone(self, network: str) -> None:
        self.refs.pop(network, None)
        self._set.pop(network, None)
        subprocess.run(["ip", *_family(network), "route", "del", network, "table", str(ROUTE_TABLE)],
                       capture_output=True)

    # ------------------------------------------------------------ shunts (mode = pass / drop)

    def install_shunts(self) -> None:
        """Every `mode = pass|drop` child with `start_action = trap`, as strongSwan installs
        them when the config is loaded: BYPASS policies ahead of all others, DISCARD policies
        behind all others (RFC 4301 §4.4.1; strongSwan's pass and fallback priorities)."""
        for conn in self.gateway.config.connections.values():
            for child in conn.children.values():
                if not child.mode.is_shunt:
                    continue
                name = f"{conn.name}/{child.name}"
                if child.start_action != SaAction.TRAP:
                    self.gateway.say(f"[ESP] shunt {name} (mode = {child.mode}) not installed: start_action = trap "
                                     f"installs it, as in strongSwan")
                    continue
                pairs = [(l, r) for l in _shunt_selectors(child.local_ts) for r in _shunt_selectors(child.remote_ts)
                         if l.start_addr.version == r.start_addr.version
                         and (l.start_addr.version == 4 or len(self.families) > 1)
                         and not (l.ip_protocol and r.ip_protocol and l.ip_protocol != r.ip_protocol)]
                if not pairs:
                    self.gateway.say(f"[ESP] shunt {name}: no selector pair of one IP version to install"
                                     + ("" if len(self.families) > 1 else " (this node has no IPv6)"))
                    continue
                bypass = child.mode == ChildMode.PASS
                policy = Policy(Action.BYPASS if bypass else Action.DISCARD,
                                tuple(esp_selector(l, r) for l, r in pairs), child=child.name, name=name)
                shunt = Shunt(policy)
                if bypass:
                    self.spd.add(policy, sum(1 for sh in self.shunts if sh.policy.action is Action.BYPASS))
                    shunt.rules = [_bypass_rule(l, r, lnet, rnet) for l, r in pairs
                                   for lnet in _networks(l) for rnet in _networks(r)]
                    for rule in shunt.rules:
                        try:
                            _ip(*_family(rule[rule.index("to") + 1]),
                                "rule", "add", "priority", str(BYPASS_RULE_PRIORITY), *rule, "lookup", "main")
                        except DataPlaneError as err:
                            self.gateway.say(f"[ESP] shunt {name}: {err}")
                else:
                    self.spd.add(policy)
                    shunt.routes = sorted({str(net) for _, r in pairs for net in _networks(r)})
                    for network in shunt.routes:
                        self._add(network)
                self.shunts.append(shunt)
                what = ", ".join(f"{s.describe()['local']} <-> {s.describe()['remote']}" for s in policy.selectors)
                self.gateway.say(f"[ESP] installed shunt {name}: {policy.action.value.upper()} {what}")

    def discard_shunts(self) -> int:
        """How many DISCARD policies sit at the end of the SPD (the SAs' policies go before them)."""
        return sum(1 for sh in self.shunts if sh.policy.action is Action.DISCARD)

    def _uninstall_shunt(self, shunt: Shunt) -> None:
        for rule in shunt.rules:
            subprocess.run(["ip", *_family(rule[rule.index("to") + 1]), "rule", "del", "priority",
                            str(BYPASS_RULE_PRIORITY), *rule, "lookup", "main"], capture_output=True)
        for network in shunt.routes:
            self._del(network)
        if shunt.policy in self.spd.policies:
            self.spd.policies.remove(shunt.policy)
