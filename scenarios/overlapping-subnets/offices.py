"""Two offices that both number their LAN 192.168.1.0/24, joined by their gateways across the
internet (no NAT on the way):

    hosta -------- gwa --------------- router ---------------- gwb -------- hostb
    192.168.1.10   192.168.1.1  192.0.2.2 | 192.0.2.1  198.51.100.1 | 198.51.100.2  192.168.1.1  192.168.1.20

    sudo mn --custom scenarios/overlapping-subnets/offices.py --topo offices --controller none
"""
import inspect
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(inspect.currentframe().f_code.co_filename),
                                                "..", "..")))

from lab.net.topology import LabTopo  # noqa: E402


class Offices(LabTopo):
    name = "offices"
    description = "two offices on the same LAN range 192.168.1.0/24, their gateways across the internet"
    params: dict = {}

    def build(self) -> None:
        for name, kind in (("hosta", "host"), ("gwa", "gateway"), ("router", "router"), ("gwb", "gateway"),
                           ("hostb", "host")):
            self.node(name, kind)
        self.link("hosta", "hosta-lan", "192.168.1.10/24", "gwa", "gwa-lan", "192.168.1.1/24")
        self.link("gwb", "gwb-lan", "192.168.1.1/24", "hostb", "hostb-lan", "192.168.1.20/24")
        self.link("gwa", "gwa-wan", "192.0.2.2/24", "router", "router-a", "192.0.2.1/24")
        self.link("router", "router-b", "198.51.100.1/24", "gwb", "gwb-wan", "198.51.100.2/24")
        self.route("hosta", "default", "192.168.1.1")
        self.route("hostb", "default", "192.168.1.1")
        self.route("gwa", "default", "192.0.2.1")
        self.route("gwb", "default", "198.51.100.1")


topos = {"offices": Offices}
