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
    }

    def build(self, nat: str = "one", mtu: int = 1500, lans: int = 1) -> None:
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


topos = {"site-to-site": SiteToSite}
