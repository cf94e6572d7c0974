"""IPv6 in the lab only where a topology asks for it: site-to-site's `ipv6` parameter puts
2001:db8:X:Y::/64 beside each 10.X.Y.0/24 and routes IPv6 across every variant of the internet
(the NAT boxes do not translate it); without it, the nodes are exactly as before (no IPv6
address, route or node option). Needs Mininet's Python package only, no root."""
from __future__ import annotations

import ipaddress

import pytest

from lab.net import topology

SiteToSite = topology.load("site-to-site")


def v6(topo, node):
    return [a for spec in topo.interfaces(node).values() for a in spec["addrs"] if ":" in a]


@pytest.mark.parametrize("nat", ["none", "one", "both"])
def test_without_ipv6_nothing_changes(nat):
    topo = SiteToSite(nat=nat, lans=2)
    for node in topo.hosts():
        info = topo.nodeInfo(node)
        assert "ipv6" not in info and not v6(topo, node)
        assert all(":" not in via for _prefix, via in info["routes"])


def next_hop(topo, node, destination):
    """The next node from `node` towards `destination` by the IPv6 routes and connected prefixes."""
    address = ipaddress.ip_address(destination)
    for spec in topo.interfaces(node).values():
        if any(address in ipaddress.ip_interface(a).network for a in spec["addrs"] if ":" in a):
            return next(n for n in topo.hosts() if destination in [a.split("/")[0] for a in v6(topo, n)])
    best = None
    for prefix, via in topo.nodeInfo(node)["routes"]:
        if ":" not in via:
            continue
        network = ipaddress.ip_network("::/0" if prefix == "default" else prefix)
        if address in network and (best is None or network.prefixlen > best[0].prefixlen):
            best = (network, via)
    assert best is not None, f"{node} has no IPv6 route to {destination}"
    return next(n for n in topo.hosts() if best[1] in [a.split("/")[0] for a in v6(topo, n)])


@pytest.mark.parametrize("nat", ["none", "one", "both"])
def test_with_ipv6_every_lan_reaches_every_other_across_the_internet(nat):
    topo = SiteToSite(nat=nat, lans=2, ipv6=True)
    assert all(topo.nodeInfo(n).get("ipv6") for n in topo.hosts())
    assert v6(topo, "hosta") == ["2001:db8:1::10/64"] and v6(topo, "hostc") == ["2001:db8:2:1::10/64"]
    for source, destination in (("hosta", "2001:db8:2::10"), ("hosta", "2001:db8:2:1::10"),
                                ("hostb", "2001:db8:1::10"), ("hostc", "2001:db8:1::10")):
        node, path = source, [source]
        while destination not in [a.split("/")[0] for a in v6(topo, node)]:
            node = next_hop(topo, node, destination)
            path.append(node)
            assert len(path) < 10, path
        assert ("gwa" in path and "gwb" in path), path


def test_a_topology_without_the_parameter_refuses_it():
    with pytest.raises(topology.TopologyError, match="ipv6"):
        topology.load("hub-and-spoke")(ipv6=True)


RemoteAccess = topology.load("remote-access")


@pytest.mark.parametrize("nats", [0, 2])
def test_remote_access_without_ipv6_nothing_changes(nats):
    topo = RemoteAccess(nats=nats, servers=2)
    for node in topo.hosts():
        info = topo.nodeInfo(node)
        assert "ipv6" not in info and not v6(topo, node)
        assert all(":" not in via for _prefix, via in info["routes"])


def test_remote_access_with_ipv6_only_the_lan_has_ipv6_addresses():
    """The clients reach 2001:db8:2::/64 through their tunnels alone: IPv6 on every node, IPv6
    addresses and routes on gw's LAN only, each server's default IPv6 route via gw."""
    topo = RemoteAccess(nats=2, servers=2, ipv6=True)
    assert all(topo.nodeInfo(n).get("ipv6") for n in topo.hosts() if topo.nodeInfo(n)["kind"] != "switch")
    assert v6(topo, "gw") == ["2001:db8:2::1/64"]
    assert v6(topo, "server") == ["2001:db8:2::10/64"] and v6(topo, "server2") == ["2001:db8:2::11/64"]
    for server in ("server", "server2"):
        assert ("default", "2001:db8:2::1") in topo.nodeInfo(server)["routes"]
    for node in ("client1", "client2", "client3", "nat1", "nat2"):
        assert not v6(topo, node) and all(":" not in via for _p, via in topo.nodeInfo(node)["routes"])
