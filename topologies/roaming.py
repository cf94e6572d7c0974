"""Roaming: road-warrior clients with two access networks, Wi-Fi and LTE, each behind its own
NAT box, reach the company LAN behind one gateway; a client roams by losing one network.

               wlan (switch)                               the "internet" (switch inet)
    client1 --+-- natw (192.168.1.1 | 198.51.100.1) --+
    client2 --+                                       +-- inet -- gw ---------- server
    client1 --+-- natl (10.64.0.1   | 198.51.100.2) --+   198.51.100.10 | 10.2.0.1   10.2.0.10
    client2 --+   lte (switch)

Client i has clientI-wlan at 192.168.1.(10+i) and clientI-lte at 10.64.0.(10+i), both up; its
default route goes through the Wi-Fi NAT box. To move it to LTE, a scenario deletes the Wi-Fi
address and points the default route at 10.64.0.1 (`ip addr flush dev client1-wlan; ip route
replace default via 10.64.0.1`), as a laptop that leaves the office does. The gateway hands out
virtual IPs from the pool in its swanctl.conf (10.3.0.0/24 by convention).

    sudo mn --custom topologies/roaming.py --topo roaming,clients=2 --controller none
"""
import inspect
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(inspect.currentframe().f_code.co_filename), "..")))

from lab.net.topology import LabTopo, Param  # noqa: E402


class Roaming(LabTopo):
    name = "roaming"
    description = "road-warrior clients with Wi-Fi and LTE, each behind its own NAT box, one gateway"
    params = {
        "clients": Param(2, "how many clients (client1, client2, ...)", minimum=1, maximum=20),
        "mapping": Param("preserve", "the NAT boxes' port mapping: preserve or random", ("preserve", "random")),
    }

    def build(self, clients: int = 2, mapping: str = "preserve") -> None:
        self.node("inet", "switch")
        self.node("gw", "gateway")
        self.node("server", "host")
        self.link("gw", "gw-wan", "198.51.100.10/24", "inet", "inet-gw", None)
        self.link("gw", "gw-lan", "10.2.0.1/24", "server", "server-lan", "10.2.0.10/24")
        self.route("server", "default", "10.2.0.1")
        for k, (box, access, inside, public) in enumerate((("natw", "wlan", "192.168.1", "198.51.100.1"),
                                                           ("natl", "lte", "10.64.0", "198.51.100.2")), 1):
            self.nat(box, inside=[f"{box}-in"], outside=f"{box}-out", public=public, mapping=mapping)
            self.link(box, f"{box}-out", f"{public}/24", "inet", f"inet-{box}", None)
            self.node(access, "switch")
            self.link(box, f"{box}-in", f"{inside}.1/24", access, f"{access}-{box}", None)
            for i in range(1, clients + 1):
                client = f"client{i}"
                if k == 1:
                    self.node(client, "gateway")
                self.link(client, f"{client}-{access}", f"{inside}.{10 + i}/24", access, f"{access}-c{i}", None)
        for i in range(1, clients + 1):
            self.route(f"client{i}", "default", "192.168.1.1")


topos = {"roaming": Roaming}
