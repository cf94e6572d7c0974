"""Double NAT: gwa sits behind a home router that itself sits behind the provider's
carrier-grade NAT; gwb is on the internet.

    hosta ---- gwa ------------ nat1 ------------------- nat2 ------------------- gwb ---- hostb
    10.1.0.10  10.1.0.1  192.168.1.2 | 192.168.1.1  172.20.0.2 | 172.20.0.1  198.51.100.1 | 198.51.100.2
                                      (home router)              (carrier-grade NAT)        10.2.0.1  10.2.0.10

gwa's packets are rewritten twice: gwb sees them come from 198.51.100.1, with a port that
neither NAT box's inside knows. `mapping2=random` gives the carrier NAT a new port per flow.

    sudo mn --custom topologies/double_nat.py --topo double-nat --controller none
"""
import inspect
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(inspect.currentframe().f_code.co_filename), "..")))

from lab.net.topology import LabTopo, Param  # noqa: E402


class DoubleNat(LabTopo):
    name = "double-nat"
    description = "gwa behind a home NAT behind a carrier-grade NAT, gwb on the internet"
    params = {
        "mapping2": Param("preserve", "the carrier NAT's port mapping: preserve or random", ("preserve", "random")),
        "mtu": Param(1500, "MTU of the internet link (the path MTU)", minimum=576, maximum=9000),
    }

    def build(self, mapping2: str = "preserve", mtu: int = 1500) -> None:
        for name, kind in (("hosta", "host"), ("gwa", "gateway"), ("gwb", "gateway"), ("hostb", "host")):
            self.node(name, kind)
        self.nat("nat1", inside=["nat1-in"], outside="nat1-out", public="172.20.0.2")
        self.nat("nat2", inside=["nat2-in"], outside="nat2-out", public="198.51.100.1", mapping=mapping2)
        self.link("hosta", "hosta-lan", "10.1.0.10/24", "gwa", "gwa-lan", "10.1.0.1/24")
        self.link("gwa", "gwa-wan", "192.168.1.2/24", "nat1", "nat1-in", "192.168.1.1/24")
        self.link("nat1", "nat1-out", "172.20.0.2/24", "nat2", "nat2-in", "172.20.0.1/24")
        self.link("nat2", "nat2-out", "198.51.100.1/24", "gwb", "gwb-wan", "198.51.100.2/24",
                  mtu=mtu if mtu != 1500 else None)
        self.link("gwb", "gwb-lan", "10.2.0.1/24", "hostb", "hostb-lan", "10.2.0.10/24")
        self.route("hosta", "default", "10.1.0.1")
        self.route("gwa", "default", "192.168.1.1")
        self.route("nat1", "default", "172.20.0.1")
        self.route("gwb", "default", "198.51.100.1")
        self.route("hostb", "default", "10.2.0.1")


topos = {"double-nat": DoubleNat}
