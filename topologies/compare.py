"""Compare: the same two sites joined by up to six VPNs side by side, each by its own pair of
gateways, all through the same NAT box and the same internet, so that each VPN meets the same
network and only the software differs.

    vpns=2 (default)
                  site A                      the NAT box              the "internet" (switch inet)
    hosta -- gwa  10.1.0.1 | 172.16.0.2 -- nat-in  172.16.0.1 |                +-- gwb 198.51.100.2 | 10.2.0.1 -- hostb
          \\- gwc  10.1.1.1 | 172.16.1.2 -- nat-in2 172.16.1.1 | 198.51.100.1 --+-- gwd 198.51.100.3 | 10.2.1.1 --/

VPN i (0 to 5) has its own LAN on each side: hosta 10.1.i.10 on 10.1.i.0/24 behind the site A
gateway (gwa, gwc, gwe, gwg, gwi, gwk) and hostb 10.2.i.10 on 10.2.i.0/24 behind the site B gateway
(gwb, gwd, gwf, gwh, gwj, gwl) at 198.51.100.(2+i). hosta reaches 10.2.i.0/24 through VPN i's gateway, so
`ping 10.2.0.10` from hosta crosses the first VPN and `ping 10.2.1.10` the second. Every site A
gateway is hidden behind the NAT box's one public address, 198.51.100.1.

`lte=true` gives every site A gateway a second uplink, as a laptop has Wi-Fi and LTE: gwX-lte
10.64.i.2 behind a second NAT box natl (10.64.i.1 inside, 198.51.100.20 on the internet). The
first uplink stays the default route; to roam, a scenario deletes the Wi-Fi address and points
the default route at LTE (`ip addr flush dev gwc-wan && ip route replace default via 10.64.1.1`).

    sudo mn --custom topologies/compare.py --topo compare,vpns=3 --controller none
"""
import inspect
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(inspect.currentframe().f_code.co_filename), "..")))

from lab.net.topology import LabTopo, Param  # noqa: E402

SITE_A = ("gwa", "gwc", "gwe", "gwg", "gwi", "gwk")
SITE_B = ("gwb", "gwd", "gwf", "gwh", "gwj", "gwl")


class Compare(LabTopo):
    name = "compare"
    description = "two sites joined by up to six VPNs side by side (a gateway pair each), one NAT box in front of site A"
    params = {
        "vpns": Param(2, "VPNs side by side (gateway pairs gwa-gwb, gwc-gwd, gwe-gwf, gwg-gwh, gwi-gwj, gwk-gwl)",
                      minimum=1, maximum=6),
        "lte": Param(False, "a second uplink for every site A gateway, behind a second NAT box natl"),
    }

    def build(self, vpns: int = 2, lte: bool = False) -> None:
        self.node("hosta", "host")
        self.node("hostb", "host")
        self.node("inet", "switch")
        inside = [f"nat-in{i + 1 if i else ''}" for i in range(vpns)]
        self.nat("nat", inside=inside, outside="nat-out", public="198.51.100.1")
        self.link("nat", "nat-out", "198.51.100.1/24", "inet", "inet-nat", None)
        for i in range(vpns):
            a, b, n = SITE_A[i], SITE_B[i], str(i + 1) if i else ""
            self.node(a, "gateway")
            self.node(b, "gateway")
            self.link("hosta", f"hosta-lan{n}", f"10.1.{i}.10/24", a, f"{a}-lan", f"10.1.{i}.1/24")
            self.link(a, f"{a}-wan", f"172.16.{i}.2/24", "nat", inside[i], f"172.16.{i}.1/24")
            self.link("inet", f"inet-{b}", None, b, f"{b}-wan", f"198.51.100.{2 + i}/24")
            self.link(b, f"{b}-lan", f"10.2.{i}.1/24", "hostb", f"hostb-lan{n}", f"10.2.{i}.10/24")
            self.route("hosta", f"10.2.{i}.0/24", f"10.1.{i}.1")
            self.route("hostb", f"10.1.{i}.0/24", f"10.2.{i}.1")
            self.route(a, "default", f"172.16.{i}.1")
            self.route(b, "default", "198.51.100.1")
        if lte:
            lte_inside = [f"natl-in{i + 1 if i else ''}" for i in range(vpns)]
            self.nat("natl", inside=lte_inside, outside="natl-out", public="198.51.100.20")
            self.link("natl", "natl-out", "198.51.100.20/24", "inet", "inet-natl", None)
            for i in range(vpns):
                self.link(SITE_A[i], f"{SITE_A[i]}-lte", f"10.64.{i}.2/24", "natl", lte_inside[i], f"10.64.{i}.1/24")


topos = {"compare": Compare}
