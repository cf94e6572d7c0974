"""Host to host: two hosts that protect their own traffic (transport mode), side by side or with
hosta behind a NAT box.

    nat=none (default)                  nat=one
    hosta -------------- hostb          hosta ---------------- nat ----------------------- hostb
    192.0.2.10     192.0.2.20           172.16.0.10 | 172.16.0.1  198.51.100.1 | 198.51.100.20

Both hosts run an IKE daemon (kind gateway); there is no LAN behind them.

    sudo mn --custom topologies/host_to_host.py --topo host-to-host,nat=one --controller none
"""
import inspect
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(inspect.currentframe().f_code.co_filename), "..")))

from lab.net.topology import LabTopo, Param  # noqa: E402


class HostToHost(LabTopo):
    name = "host-to-host"
    description = "two hosts protecting their own traffic (transport mode), optionally one behind a NAT"
    params = {
        "nat": Param("none", "none, or one (hosta behind a NAT box)", ("none", "one")),
        "mtu": Param(1500, "MTU of the link to hostb", minimum=576, maximum=9000),
    }

    def build(self, nat: str = "none", mtu: int = 1500) -> None:
        self.node("hosta", "gateway")
        self.node("hostb", "gateway")
        link_mtu = mtu if mtu != 1500 else None
        if nat == "none":
            self.link("hosta", "hosta-eth", "192.0.2.10/24", "hostb", "hostb-eth", "192.0.2.20/24", mtu=link_mtu)
            return
        self.nat("nat", inside=["nat-in"], outside="nat-out", public="198.51.100.1")
        self.link("hosta", "hosta-eth", "172.16.0.10/24", "nat", "nat-in", "172.16.0.1/24")
        self.link("nat", "nat-out", "198.51.100.1/24", "hostb", "hostb-eth", "198.51.100.20/24", mtu=link_mtu)
        self.route("hosta", "default", "172.16.0.1")


topos = {"host-to-host": HostToHost}
