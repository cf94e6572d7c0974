"""Hub and spoke: N branch gateways (spokes) each build a tunnel to the central gateway (hub),
whose LAN holds the server they all reach.

    spoke1 (LAN 10.128.1.0/24) --+
    spoke2 (LAN 10.128.2.0/24) --+-- inet -- hub ---- server
    ...                          |  198.51.100.1 | 10.0.0.1   10.0.0.10
    spokeN (LAN 10.128.N.0/24) --+
         198.51.100.(10+i)

Each spoke's LAN is an address on the spoke's loopback (10.128.i.1), so a spoke
pings the server from its LAN with `ping -I 10.128.i.1 10.0.0.10`; with lan_hosts=true each
spoke gets a real host spokeNh at 10.128.i.10 behind it instead.

    sudo mn --custom topologies/hub_and_spoke.py --topo hub-and-spoke,spokes=5 --controller none
"""
import inspect
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(inspect.currentframe().f_code.co_filename), "..")))

from lab.net.topology import LabTopo, Param  # noqa: E402


class HubAndSpoke(LabTopo):
    name = "hub-and-spoke"
    description = "N spoke gateways with a tunnel each to one hub gateway and the server behind it"
    params = {
        "spokes": Param(3, "how many spoke gateways (spoke1 ... spokeN)", minimum=1, maximum=200),
        "lan_hosts": Param(False, "a real host behind each spoke instead of a LAN address on the spoke"),
    }

    def build(self, spokes: int = 3, lan_hosts: bool = False) -> None:
        self.node("inet", "switch")
        self.node("hub", "gateway")
        self.node("server", "host")
        self.link("hub", "hub-wan", "198.51.100.1/24", "inet", "inet-hub", None)
        self.link("hub", "hub-lan", "10.0.0.1/24", "server", "server-lan", "10.0.0.10/24")
        self.route("server", "default", "10.0.0.1")
        for i in range(1, spokes + 1):
            spoke = f"spoke{i}"
            lan = f"10.128.{i}"
            if lan_hosts:
                self.node(spoke, "gateway")
                self.node(f"{spoke}h", "host")
                self.link(spoke, f"{spoke}-lan", f"{lan}.1/24", f"{spoke}h", f"{spoke}h-lan", f"{lan}.10/24")
                self.route(f"{spoke}h", "default", f"{lan}.1")
            else:
                self.node(spoke, "gateway", lo_addrs=[f"{lan}.1/32"])
            self.link(spoke, f"{spoke}-wan", f"198.51.100.{10 + i}/24", "inet", f"inet-s{i}", None)


topos = {"hub-and-spoke": HubAndSpoke}
