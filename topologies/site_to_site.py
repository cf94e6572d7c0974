"""Site to site: two LANs joined by their gateways across the internet, NAT on none, one or both sides.

    nat=one (default)                                    the "internet"
    hosta ---- gwa ---------------- nat -------------------------- gwb ---- hostb
    10.1.0.10  10.1.0.1  172.16.0.2 | 172.16.0.1  198.51.100.1 |  198.51.100.2  10.2.0.1  10.2.0.10

    nat=none: the middle box is `router` (192.0.2.1 | 198.51.100.1), gwa's WAN is 192.0.2.2
    nat=both: gwa 172.16.0.2 - nata (172.16.0.1 | 198.51.100.1) - natb (198.51.100.2 | 172.17.0.1) - gwb
              172.17.0.2; natb forwards UDP 500/4500 to gwb (DNAT), so gwb stays reachable at 198.51.100.2

In every variant gwa reaches gwb at 198.51.100.2, so one swanctl.conf serves all three.
`mtu` sets the MTU of the internet link (the path MTU between the NAT/router and what is behind it).
`lans=2` gives site B a second LAN: gwb 10.2.1.1 --- hostc 10.2.1.10 (10.2.1.0/24).

`ipv6=true` turns IPv6 on as well (off by default: nodes then carry IPv4 only). Each LAN 10.X.Y.0/24
gets 2001:db8:X:Y::/64 with the same host numbers (hosta 2001:db8:1::10, gwa 2001:db8:1::1, gwb
2001:db8:2::1, hostb 2001:db8:2::10, hostc 2001:db8:2:1::10); the internet gets 2001:db8:a::/64
on gwa's side (gwa ::2, the box ::1), 2001:db8:b::/64 in the middle (its left end ::1, its right
end ::2) and, with nat=both, 2001:db8:c::/64 behind natb (natb ::1, gwb ::2). The NAT boxes
translate IPv4 only: they route IPv6 as it is, as home routers do, so every LAN reaches every
other over IPv6 without a tunnel.

    sudo mn --custom topologies/site_to_site.py --topo site-to-site,nat=both --controller none
"""
import inspect
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(inspect.currentframe().f_code.co_filename), "..")))

from lab.net.topology import LabTopo, Param  # noqa: E402


class SiteToSite(LabTopo):
    name = "site-to-site"
    description = "two sites' gateways across the internet, NAT on none, one or both sides"
    params = {
        "nat": Param("one", "where the NAT boxes are: none, one (in front of gwa) or both", ("none", "one", "both")),
        "mtu": Param(1500, "MTU of the internet link (the path MTU)", minimum=576, maximum=9000),
        "lans": Param(1, "LANs behind gwb: 2 adds hostc 10.2.1.10 on 10.2.1.0/24", minimum=1, maximum=2),
        "ipv6": Param(False, "IPv6 too: 2001:db8:1::/64 and 2001:db8:2::/64 on the LANs, routed (not translated) "
                             "across the internet"),
    }

    def build(self, nat: str = "one", mtu: int = 1500, lans: int = 1, ipv6: bool = False) -> None:
        for name, kind in (("hosta", "host"), ("gwa", "gateway"), ("gwb", "gateway"), ("hostb", "host")):
            self.node(name, kind)
        self.link("hosta", "hosta-lan", "10.1.0.10/24", "gwa", "gwa-lan", "10.1.0.1/24")
        self.link("gwb", "gwb-lan", "10.2.0.1/24", "hostb", "hostb-lan", "10.2.0.10/24")
        self.route("hosta", "default", "10.1.0.1")
        self.route("hostb", "default", "10.2.0.1")
        if lans == 2:
            self.node("hostc", "host")
            self.link("gwb", "gwb-lan2", "10.2.1.1/24", "hostc", "hostc-lan", "10.2.1.10/24")
            self.route("hostc", "default", "10.2.1.1")
        internet = mtu if mtu != 1500 else None
        if nat == "none":
            self.node("router", "router")
            self.link("gwa", "gwa-wan", "192.0.2.2/24", "router", "router-a", "192.0.2.1/24")
            self.link("router", "router-b", "198.51.100.1/24", "gwb", "gwb-wan", "198.51.100.2/24", mtu=internet)
            self.route("gwa", "default", "192.0.2.1")
            self.route("gwb", "default", "198.51.100.1")
        elif nat == "one":
            self.nat("nat", inside=["nat-in"], outside="nat-out", public="198.51.100.1")
            self.link("gwa", "gwa-wan", "172.16.0.2/24", "nat", "nat-in", "172.16.0.1/24")
            self.link("nat", "nat-out", "198.51.100.1/24", "gwb", "gwb-wan", "198.51.100.2/24", mtu=internet)
            self.route("gwa", "default", "172.16.0.1")
            self.route("gwb", "default", "198.51.100.1")
        else:
            self.nat("nata", inside=["nata-in"], outside="nata-out", public="198.51.100.1")
            self.nat("natb", inside=["natb-in"], outside="natb-out", public="198.51.100.2",
                     dnat=[{"to": "172.17.0.2", "ports": [500, 4500]}])
            self.link("gwa", "gwa-wan", "172.16.0.2/24", "nata", "nata-in", "172.16.0.1/24")
            self.link("nata", "nata-out", "198.51.100.1/24", "natb", "natb-out", "198.51.100.2/24", mtu=internet)
            self.link("natb", "natb-in", "172.17.0.1/24", "gwb", "gwb-wan", "172.17.0.2/24")
            self.route("gwa", "default", "172.16.0.1")
            self.route("gwb", "default", "172.17.0.1")
        if ipv6:
            self.build_ipv6(nat, lans)

    def build_ipv6(self, nat: str, lans: int) -> None:
        for node, intf, address in (("hosta", "hosta-lan", "2001:db8:1::10/64"), ("gwa", "gwa-lan", "2001:db8:1::1/64"),
                                    ("gwb", "gwb-lan", "2001:db8:2::1/64"), ("hostb", "hostb-lan", "2001:db8:2::10/64"),
                                    ("gwa", "gwa-wan", "2001:db8:a::2/64")):
            self.address(node, intf, address)
        self.route("hosta", "default", "2001:db8:1::1")
        self.route("hostb", "default", "2001:db8:2::1")
        self.route("gwa", "default", "2001:db8:a::1")
        if lans == 2:
            self.address("gwb", "gwb-lan2", "2001:db8:2:1::1/64")
            self.address("hostc", "hostc-lan", "2001:db8:2:1::10/64")
            self.route("hostc", "default", "2001:db8:2:1::1")
        if nat in ("none", "one"):
            box, a_side, b_side = ("router", "router-a", "router-b") if nat == "none" else ("nat", "nat-in", "nat-out")
            self.address(box, a_side, "2001:db8:a::1/64")
            self.address(box, b_side, "2001:db8:b::1/64")
            self.address("gwb", "gwb-wan", "2001:db8:b::2/64")
            self.route("gwb", "default", "2001:db8:b::1")
            self.route(box, "2001:db8:1::/64", "2001:db8:a::2")
            self.route(box, "2001:db8:2::/48", "2001:db8:b::2")
        else:
            self.address("nata", "nata-in", "2001:db8:a::1/64")
            self.address("nata", "nata-out", "2001:db8:b::1/64")
            self.address("natb", "natb-out", "2001:db8:b::2/64")
            self.address("natb", "natb-in", "2001:db8:c::1/64")
            self.address("gwb", "gwb-wan", "2001:db8:c::2/64")
            self.route("gwb", "default", "2001:db8:c::1")
            self.route("nata", "2001:db8:1::/64", "2001:db8:a::2")
            self.route("nata", "2001:db8:2::/48", "2001:db8:b::2")
            self.route("natb", "2001:db8:1::/64", "2001:db8:b::1")
            self.route("natb", "2001:db8:2::/48", "2001:db8:c::2")


topos = {"site-to-site": SiteToSite}
