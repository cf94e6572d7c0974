"""The site-to-site topology through a NAT box, as Mininet hosts with direct links:

    hosta ---- gwa ---------- nat ------------ gwb ---- hostb
  10.1.0.10  10.1.0.1   172.16.0.2 | 172.16.0.1   198.51.100.1 | 198.51.100.2  10.2.0.1  10.2.0.10
             (site A LAN)   (A's private WAN)        (the "internet")        (site B LAN)

With `behind_nat=False` gwa's WAN is 192.0.2.2/24 and the box in the middle only routes.

The NAT box masquerades gwa's private WAN behind 198.51.100.1 (iptables MASQUERADE),
so IKE floats to UDP 4500 and ESP is UDP-encapsulated, as in the field.
Everything is torn down on exit, also on errors: no namespace, link or process is left.
"""
from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

PREFIX = "ipl"  # node names start with it, so leftovers are recognisable
PSK = "a-lab-only-psk"


@dataclass(frozen=True)
class Site:
    lan: str          # the site's LAN prefix, the gateway's local_ts
    gateway_lan: str  # gateway address on it
    host: str         # the host behind the gateway


SITE_A = Site("10.1.0.0/24", "10.1.0.1", "10.1.0.10")
SITE_B = Site("10.2.0.0/24", "10.2.0.1", "10.2.0.10")
NAT_INSIDE, GWA_PRIVATE = "172.16.0.1", "172.16.0.2"
NAT_OUTSIDE, GWB_PUBLIC = "198.51.100.1", "198.51.100.2"
ROUTED_INSIDE, GWA_ROUTED = "192.0.2.1", "192.0.2.2"


def _check(node: Any, command: str) -> str:
    out = node.cmd(command + " && echo __ok__")
    if "__ok__" not in out:
        raise RuntimeError(f"{node.name}: '{command}' failed: {out.strip()}")
    return out


@dataclass
class SiteToSite:
    behind_nat: bool = True
    net: Any = None
    nodes: dict[str, Any] = field(default_factory=dict)

    @property
    def inside(self) -> tuple[str, str]:
        """(NAT box inside address, gwa WAN address): private behind the NAT, else public."""
        return (NAT_INSIDE, GWA_PRIVATE) if self.behind_nat else (ROUTED_INSIDE, GWA_ROUTED)

    @property
    def gwa_wan(self) -> str:
        return self.inside[1]

    @property
    def gwa_public(self) -> str:
        """The address gwb sees gwa's packets come from."""
        return NAT_OUTSIDE if self.behind_nat else GWA_ROUTED

    def swanctl_conf(self, side: str, **options: Any) -> str:
        """swanctl.conf of gateway `side` ("a" initiates to gwb, "b" answers anyone) for the
        site-to-site connection `s2s`/`net` with a PSK; `options` go to render_s2s_conf
        (proposals, esp_proposals, mode, and local_ts/remote_ts to replace the LANs)."""
        from lab.net.strongswan import render_s2s_conf

        if side == "a":
            base = dict(local_addrs=self.gwa_wan, remote_addrs=GWB_PUBLIC, local_id="gwa.lab", remote_id="gwb.lab",
                        local_ts=SITE_A.lan, remote_ts=SITE_B.lan)
        else:
            base = dict(local_addrs=GWB_PUBLIC, remote_addrs="%any", local_id="gwb.lab", remote_id="gwa.lab",
                        local_ts=SITE_B.lan, remote_ts=SITE_A.lan)
        return render_s2s_conf(psk=PSK, **{**base, **options})

    def node(self, name: str) -> Any:
        return self.nodes[name]

    def start(self) -> "SiteToSite":
        from mininet.log import setLogLevel
        from mininet.net import Mininet

        setLogLevel("error")
        remove_leftovers()
        self.net = Mininet(topo=None, controller=None, build=False, autoSetMacs=False, autoStaticArp=False)
        try:
            for name in ("hosta", "gwa", "nat", "gwb", "hostb"):
                self.nodes[name] = self.net.addHost(f"{PREFIX}{name}", ip=None, privateDirs=["/var/run"])
            n = self.nodes
            for left, right in (("hosta", "gwa"), ("gwa", "nat"), ("nat", "gwb"), ("gwb", "hostb")):
                self.net.addLink(n[left], n[right])
            self.net.build()
            self._addresses()
        except BaseException:
            self.stop()
            raise
        return self

    def _addresses(self) -> None:
        n = self.nodes
        a_len, b_len = SITE_A.lan.split("/")[1], SITE_B.lan.split("/")[1]
        nat_inside, gwa_wan = self.inside
        setup = {
            "hosta": [f"ip addr add {SITE_A.host}/{a_len} dev {PREFIX}hosta-eth0",
                      f"ip route add default via {SITE_A.gateway_lan}"],
            "gwa": [f"ip addr add {SITE_A.gateway_lan}/{a_len} dev {PREFIX}gwa-eth0",
                    f"ip addr add {gwa_wan}/24 dev {PREFIX}gwa-eth1",
                    f"ip route add default via {nat_inside}"],
            "nat": [f"ip addr add {nat_inside}/24 dev {PREFIX}nat-eth0",
                    f"ip addr add {NAT_OUTSIDE}/24 dev {PREFIX}nat-eth1"],
            "gwb": [f"ip addr add {GWB_PUBLIC}/24 dev {PREFIX}gwb-eth0",
                    f"ip addr add {SITE_B.gateway_lan}/{b_len} dev {PREFIX}gwb-eth1",
                    f"ip route add default via {NAT_OUTSIDE}"],
            "hostb": [f"ip addr add {SITE_B.host}/{b_len} dev {PREFIX}hostb-eth0",
                      f"ip route add default via {SITE_B.gateway_lan}"],
        }
        for name, commands in setup.items():
            node = n[name]
            _check(node, "ip link set lo up")
            for intf in node.intfNames():
                _check(node, f"ip link set {intf} up")
            for command in commands:
                _check(node, command)
        for name in ("gwa", "gwb", "nat"):
            _check(n[name], "sysctl -qw net.ipv4.ip_forward=1")
            # problems.md #10: decrypted packets arrive on a TUN device; strict rp_filter would drop them
            _check(n[name], "sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0")
        if self.behind_nat:
            _check(n["nat"], f"iptables -t nat -A POSTROUTING -o {PREFIX}nat-eth1 -j MASQUERADE")

    def plain_routing(self, enable: bool) -> None:
        """Let the NAT box route the two LANs in clear (for a baseline without IPsec). Off by
        default, so that a missing tunnel route shows as lost packets, not as a clear-text leak."""
        verb = "replace" if enable else "del"
        nat = self.nodes["nat"]
        for prefix, via in ((SITE_A.lan, self.gwa_wan), (SITE_B.lan, GWB_PUBLIC)):
            nat.cmd(f"ip route {verb} {prefix}" + (f" via {via}" if enable else ""))

    def stop(self) -> None:
        if self.net is not None:
            try:
                self.net.stop()
            finally:
                self.net = None
        remove_leftovers()

    def __enter__(self) -> "SiteToSite":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def remove_leftovers() -> list[str]:
    """Delete links and node shells of an earlier run of this topology (by name prefix)."""
    found = []
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        parts = line.split(":", 2)
        if len(parts) < 2:
            continue
        name = parts[1].strip().split("@")[0]
        if name.startswith(PREFIX):
            subprocess.run(["ip", "link", "del", name], capture_output=True)
            found.append(f"link {name}")
    shells = subprocess.run(["pgrep", "-f", f"^bash.*mininet:{PREFIX}"], capture_output=True, text=True).stdout.split()
    for pid in shells:
        subprocess.run(["kill", "-9", pid], capture_output=True)
        found.append(f"process {pid}")
    if shells:
        time.sleep(0.2)
    return found
