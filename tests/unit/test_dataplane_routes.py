"""The data plane's routes into its TUN device (lab.daemon.routes): one `ip route` per network
however many CHILD SAs use it; the last one going leaves the route for ROUTE_GRACE seconds, so a
CHILD SA that comes up meanwhile (many short-lived SAs with the same selectors) takes it over
without `ip`, unless a virtual IP came or went (the kernel drops a route with its source): then it
is set again, never deleted; stop removes every route at once. `ip` is replaced by a recorder; no root."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from lab.daemon import dataplane as dp
from lab.daemon import routes as rt
from lab.iana import EncrId
from lab.ike import events as ev
from lab.ike.config import parse_traffic_selectors


class Timer:
    def __init__(self, loop, delay, callback, args):
        self.loop, self.delay, self.callback, self.args, self.cancelled = loop, delay, callback, args, False

    def cancel(self):
        self.cancelled = True


class Loop:
    def __init__(self):
        self.timers: list[Timer] = []

    def call_later(self, delay, callback, *args):
        timer = Timer(self, delay, callback, args)
        self.timers.append(timer)
        return timer

    def fire(self):
        due, self.timers = self.timers, []
        for timer in due:
            if not timer.cancelled:
                timer.callback(*timer.args)


@pytest.fixture
def plane(monkeypatch):
    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(rt, "_ip", lambda *args: calls.append(args))
    monkeypatch.setattr(rt.subprocess, "run", lambda argv, **kw: calls.append(tuple(argv[1:])))
    gateway = SimpleNamespace(loop=Loop(), say=lambda text: None)
    plane = dp.DataPlane(gateway)
    monkeypatch.setattr(plane.routes, "local_source",
                        lambda local_ts, version=4: "10.2.0.1" if version == 4 else "2001:db8:2::1")
    return plane, calls, gateway.loop


def binding(network: str = "10.1.0.0/24") -> dp.Binding:
    return dp.Binding(policy=None, routes=[network])


def add_routes(plane, binding, local_ts=parse_traffic_selectors("10.2.0.0/24")):
    """What a CHILD_SA coming up asks of the routes (DataPlane._child_up)."""
    plane.routes.add(binding.routes, local_ts)


def test_one_route_for_many_children_and_it_outlives_the_last_for_the_grace(plane):
    plane, calls, loop = plane
    first, second = binding(), binding()
    add_routes(plane, first)
    add_routes(plane, second)
    assert calls == [("route", "replace", "10.1.0.0/24", "dev", "ipsec0", "table", "220", "src", "10.2.0.1")]
    plane._drop_routes(first)
    plane._drop_routes(second)
    assert len(calls) == 1 and [t.delay for t in loop.timers] == [rt.ROUTE_GRACE]
    third = binding()
    add_routes(plane, third)  # within the grace, the same selectors: taken over, no `ip`
    loop.fire()
    assert len(calls) == 1
    plane._drop_routes(third)
    loop.fire()
    assert calls[1:] == [("route", "del", "10.1.0.0/24", "table", "220")]


@pytest.mark.parametrize("change", ["add_virtual_ip", "drop_virtual_ip"])
def test_a_virtual_ip_coming_or_going_sets_the_route_in_its_grace_again(plane, change):
    plane, calls, loop = plane
    plane.routes.virtual_ips[7] = ["10.3.0.1"]
    first = binding()
    add_routes(plane, first)
    if change == "drop_virtual_ip":
        plane.routes.drop_virtual_ip(7)  # the IKE SA goes first: the route is still live
        plane._drop_routes(first)
    else:
        plane._drop_routes(first)
        plane.routes.add_virtual_ip(8, "10.3.0.2")
    del calls[1:]
    add_routes(plane, binding())
    assert calls[1:] == calls[:1]  # `ip route replace` again, no del
    loop.fire()
    assert not [c for c in calls if c[:2] == ("route", "del")]


def test_other_local_selectors_replace_the_route_and_stop_removes_pending_ones(plane):
    plane, calls, loop = plane
    first = binding()
    add_routes(plane, first)
    plane._drop_routes(first)
    other = parse_traffic_selectors("10.3.0.7/32")  # another source address
    active = binding()
    plane.bindings[id(active)] = active
    add_routes(plane, active, other)
    assert [c[:2] for c in calls] == [("route", "replace"), ("route", "replace")]
    pending = binding("10.9.0.0/24")
    add_routes(plane, pending)
    plane._drop_routes(pending)
    plane.stop()
    deleted = sorted(c[2] for c in calls if c[:2] == ("route", "del"))
    assert deleted == ["10.1.0.0/24", "10.9.0.0/24"]


def child_up(name: str, spi: int, ike_sa: int = 1) -> ev.ChildSaUp:
    keys = ev.ChildKeys(bytes(20), b"")
    return ev.ChildSaUp(ike_sa, name, spi, 3, spi.to_bytes(4, "big"), (spi + 1).to_bytes(4, "big"),
                        EncrId.AES_GCM_16, 128, 0, False, keys, keys, "tunnel",
                        parse_traffic_selectors("10.2.0.0/24"), parse_traffic_selectors("10.1.0.0/24"),
                        ("198.51.100.2", 4500), ("198.51.100.1", 4500), True, 32, "")


def test_children_coming_and_going_through_the_ike_events(plane):
    """The same, driven as the gateway drives it: CHILD SAs of two children with the same remote
    network share the route; the one that comes up in the grace takes it over; policies follow."""
    plane, calls, loop = plane
    plane.gateway.now = lambda: 0.0
    plane.gateway.endpoint = SimpleNamespace(by_id={})
    for spi, name in ((0x100, "a"), (0x200, "b")):
        plane.on_event(child_up(name, spi))
    assert calls == [("route", "replace", "10.1.0.0/24", "dev", "ipsec0", "table", "220", "src", "10.2.0.1")]
    assert len(plane.spd.policies) == 2 and len(plane.sad.outbound) == 2
    for spi, name in ((0x100, "a"), (0x200, "b")):
        plane.on_event(ev.ChildSaDeleted(1, name, spi.to_bytes(4, "big"), (spi + 1).to_bytes(4, "big"), "test"))
    assert not plane.spd.policies and [t.delay for t in loop.timers] == [rt.ROUTE_GRACE]
    plane.on_event(child_up("c", 0x300))
    loop.fire()
    assert len(calls) == 1 and plane.routes.refs == {"10.1.0.0/24": 1}
    plane.stop()
    assert calls[1:] == [("route", "del", "10.1.0.0/24", "table", "220")]


def test_the_packet_path_reads_what_the_data_plane_keeps():
    """The packet path sends replies of a shared policy by the data plane's flows and reports
    lifetimes to it: the same dicts, the data plane's handler; offloads only with the fix-up."""
    gateway = SimpleNamespace(loop=None, say=lambda text: None)
    plane = dp.DataPlane(gateway)
    assert plane.packets.shared is plane.shared and plane.packets.by_spi_in is plane.by_spi_in
    assert plane.packets.on_sa_events == plane.handle_sa_events
    assert plane.routes.spd is plane.spd is plane.packets.spd and plane.stats is plane.packets.stats
    assert plane.packets.want_offload and not dp.DataPlane(gateway, checksum_fixup=False).packets.want_offload


def test_ipv6_selectors_get_ipv6_routes_each_with_a_source_of_its_own_family(plane):
    plane, calls, loop = plane
    both = dp.Binding(policy=None, routes=["10.1.0.0/24", "2001:db8:1::/64"])
    add_routes(plane, both, parse_traffic_selectors("10.2.0.0/24, 2001:db8:2::/64"))
    assert calls == [("route", "replace", "10.1.0.0/24", "dev", "ipsec0", "table", "220", "src", "10.2.0.1"),
                     ("-6", "route", "replace", "2001:db8:1::/64", "dev", "ipsec0", "table", "220",
                      "src", "2001:db8:2::1")]
    plane._drop_routes(both, at_once=True)
    assert calls[2:] == [("route", "del", "10.1.0.0/24", "table", "220"),
                         ("-6", "route", "del", "2001:db8:1::/64", "table", "220")]


@pytest.mark.parametrize("ipv6", [False, True])
def test_the_rule_for_table_220_is_set_for_ipv6_only_on_a_node_with_ipv6(plane, monkeypatch, ipv6):
    plane, calls, _loop = plane
    monkeypatch.setattr(rt, "ipv6_on", lambda: ipv6)
    plane.routes.start(1400)
    rules = [c for c in calls if "rule" in c and "add" in c]
    assert [c[0] == "-6" for c in rules] == ([False, True] if ipv6 else [False])
    sysctl = [c for c in calls if c[0] == "-qw"]
    assert ("net.ipv6.conf.ipsec0.disable_ipv6=0" in sysctl[0]) is ipv6
    plane.routes.remove_rule()
    assert len([c for c in calls if "rule" in c and "del" in c]) == (4 if ipv6 else 2)


def test_a_virtual_ipv6_address_is_one_address_long(plane):
    plane, calls, _loop = plane
    plane.routes.add_virtual_ip(1, "2001:db8:3::1")
    plane.routes.drop_virtual_ip(1)
    # without DAD (RFC 4862 §5.4): a tentative address would be no source for a while
    assert ("-6", "addr", "replace", "2001:db8:3::1/128", "dev", "ipsec0", "nodad") in calls
    assert ("-6", "addr", "del", "2001:db8:3::1/128", "dev", "ipsec0") in calls


def test_both_virtual_ips_of_an_ike_sa_go_on_the_device_and_go_with_it(plane):
    plane, calls, _loop = plane
    plane.routes.add_virtual_ip(1, "10.3.0.1")
    plane.routes.add_virtual_ip(1, "fd00:10::1")
    plane.routes.add_virtual_ip(2, "fd00:10::1")  # another IKE SA (a reauthentication) with the same one
    assert plane.routes.virtual_ips == {1: ["10.3.0.1", "fd00:10::1"], 2: ["fd00:10::1"]}
    assert [c[:4] for c in calls if "replace" in c] == [("addr", "replace", "10.3.0.1/32", "dev"),
                                                       ("-6", "addr", "replace", "fd00:10::1/128")]
    plane.routes.drop_virtual_ip(1)
    assert [c for c in calls if "del" in c] == [("addr", "del", "10.3.0.1/32", "dev", "ipsec0")]
    plane.routes.drop_virtual_ip(2)
    assert ("-6", "addr", "del", "fd00:10::1/128", "dev", "ipsec0") in calls


def test_an_ipv6_virtual_ip_on_a_node_without_ipv6_says_so(plane, monkeypatch):
    plane, _calls, _loop = plane
    said = []
    plane.routes.gateway.say = said.append

    def refuse(*args):
        raise rt.DataPlaneError("'ip ...' failed: Permission denied")
    monkeypatch.setattr(rt, "_ip", refuse)
    plane.routes.add_virtual_ip(1, "fd00:10::1")
    assert said and "this node has no IPv6" in said[0] and "ipv6: true" in said[0]
    assert plane.routes.virtual_ips == {}
