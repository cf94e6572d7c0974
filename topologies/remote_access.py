"""Remote access: road-warrior clients reach the company LAN behind one gateway; the clients
sit behind NAT boxes (home routers, hotel Wi-Fi), several behind the same one.

    client1 --+                                                   the "internet" (switch inet)
    client3 --+-- lan1 -- nat1 (192.168.1.1 | 198.51.100.1) --+
                                                              +-- inet -- gw ---- server
    client2 ----- lan2 -- nat2 (192.168.2.1 | 198.51.100.2) --+   198.51.100.10 | 10.2.0.1   10.2.0.10

With servers=2 or more, gw's LAN is a switch (corp) with server (10.2.0.10), server2 (10.2.0.11), ...
on it (server<n> at 10.2.0.(9+n)): radius-failover's two RADIUS servers.

With proxy=true a host `proxy` stands in the company's DMZ: 198.51.100.20 on the internet, 10.2.0.20
on the LAN switch, forwarding nothing (lateral-movement's per-application TLS reverse proxy).

Client i sits behind NAT box ((i-1) mod nats) + 1, at 192.168.k.(10+i); with nats=0 the
clients sit on the internet at 198.51.100.(100+i). The gateway hands out virtual IPs from the
pool in its swanctl.conf (10.3.0.0/24 by convention); the server routes them back through gw.

`ipv6=true` turns IPv6 on as well (off by default: nodes then carry IPv4 only). gw's LAN gets
2001:db8:2::/64 beside 10.2.0.0/24 (gw 2001:db8:2::1, server 2001:db8:2::10, server<n>
2001:db8:2::(9+n)), each server routing IPv6 through gw. The internet and the home LANs stay
IPv4 only: a client reaches the IPv6 LAN through its tunnel alone, from an IPv6 virtual IP out of
gw's IPv6 pool (2001:db8:3::/120 by convention; the client asks with vips = 0.0.0.0, ::).

    sudo mn --custom topologies/remote_access.py --topo remote-access,clients=3,nats=2 --controller none
"""
import inspect
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(inspect.currentframe().f_code.co_filename), "..")))

from lab.net.topology import LabTopo, Param  # noqa: E402


class RemoteAccess(LabTopo):
    name = "remote-access"
    description = "road-warrior clients behind NAT boxes, one gateway with a LAN behind it"
    params = {
        "clients": Param(3, "how many clients (client1, client2, ...)", minimum=1, maximum=50),
        "nats": Param(2, "how many NAT boxes the clients sit behind (0: clients on the internet)",
                      minimum=0, maximum=20),
        "mapping": Param("preserve", "the NAT boxes' port mapping: preserve or random", ("preserve", "random")),
        "servers": Param(1, "how many servers on the LAN (server, server2 at 10.2.0.11, ...; more than one: "
                            "on a LAN switch)", minimum=1, maximum=9),
        "ipv6": Param(False, "IPv6 too: 2001:db8:2::/64 on gw's LAN, reached by the clients through their tunnels "
                             "(from IPv6 virtual IPs); the internet stays IPv4"),
        "proxy": Param(False, "a host `proxy` in the DMZ: 198.51.100.20 on the internet and 10.2.0.20 on the LAN "
                              "(then on a LAN switch), not a router"),
    }

    def build(self, clients: int = 3, nats: int = 2, mapping: str = "preserve", servers: int = 1,
              ipv6: bool = False, proxy: bool = False) -> None:
        self.node("inet", "switch")
        self.node("gw", "gateway")
        self.node("server", "host")
        self.link("gw", "gw-wan", "198.51.100.10/24", "inet", "inet-gw", None)
        if servers == 1 and not proxy:
            self.link("gw", "gw-lan", "10.2.0.1/24", "server", "server-lan", "10.2.0.10/24")
        else:
            self.node("corp", "switch")
            self.link("gw", "gw-lan", "10.2.0.1/24", "corp", "corp-gw", None)
            self.link("server", "server-lan", "10.2.0.10/24", "corp", "corp-server", None)
            for n in range(2, servers + 1):
                self.node(f"server{n}", "host")
                self.link(f"server{n}", f"server{n}-lan", f"10.2.0.{9 + n}/24", "corp", f"corp-server{n}", None)
                self.route(f"server{n}", "default", "10.2.0.1")
        if proxy:
            self.node("proxy", "host")
            self.link("proxy", "proxy-wan", "198.51.100.20/24", "inet", "inet-proxy", None)
            self.link("proxy", "proxy-lan", "10.2.0.20/24", "corp", "corp-proxy", None)
        self.route("server", "default", "10.2.0.1")
        behind: dict[int, list[int]] = {k: [] for k in range(1, nats + 1)}
        for i in range(1, clients + 1):
            if nats:
                behind[(i - 1) % nats + 1].append(i)
        for k, members in behind.items():
            box = f"nat{k}"
            self.nat(box, inside=[f"{box}-in"], outside=f"{box}-out", public=f"198.51.100.{k}", mapping=mapping)
            self.link(box, f"{box}-out", f"198.51.100.{k}/24", "inet", f"inet-{box}", None)
            if len(members) > 1:
                lan = f"lan{k}"
                self.node(lan, "switch")
                self.link(box, f"{box}-in", f"192.168.{k}.1/24", lan, f"{lan}-{box}", None)
            for i in members:
                client = f"client{i}"
                self.node(client, "gateway")
                if len(members) > 1:
                    self.link(client, f"{client}-wan", f"192.168.{k}.{10 + i}/24", f"lan{k}", f"lan{k}-c{i}", None)
                else:
                    self.link(client, f"{client}-wan", f"192.168.{k}.{10 + i}/24", box, f"{box}-in",
                              f"192.168.{k}.1/24")
                self.route(client, "default", f"192.168.{k}.1")
        if not nats:
            for i in range(1, clients + 1):
                client = f"client{i}"
                self.node(client, "gateway")
                self.link(client, f"{client}-wan", f"198.51.100.{100 + i}/24", "inet", f"inet-c{i}", None)
        if ipv6:
            self.address("gw", "gw-lan", "2001:db8:2::1/64")
            for n in range(1, servers + 1):
                server = "server" if n == 1 else f"server{n}"
                self.address(server, f"{server}-lan", f"2001:db8:2::{9 + n}/64")
                self.route(server, "default", "2001:db8:2::1")


topos = {"remote-access": RemoteAccess}
