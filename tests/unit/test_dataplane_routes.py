"""The data plane's routes into its TUN device (lab.daemon.dataplane): one `ip route` per network
however many CHILD SAs use it; the last one going leaves the route for ROUTE_GRACE seconds, so a
CHILD SA that comes up meanwhile (many short-lived SAs with the same selectors) takes it over
without `ip`, unless a virtual IP came or went (the kernel drops a route with its source): then it
is set again, never deleted; stop removes every route at once. `ip` is replaced by a recorder; no root."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from lab.daemon import dataplane as dp
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
    monkeypatch.setattr(dp, "_ip", lambda *args: calls.append(args))
    monkeypatch.setattr(dp.subprocess, "run", lambda argv, **kw: calls.append(tuple(argv[1:])))
    gateway = SimpleNamespace(loop=Loop(), say=lambda text: None)
    plane = dp.DataPlane(gateway)
    monkeypatch.setattr(plane, "_local_source", lambda event: "10.2.0.1")
    return plane, calls, gateway.loop


def binding(network: str = "10.1.0.0/24") -> dp.Binding:
    return dp.Binding(policy=None, routes=[network])


EVENT = SimpleNamespace(local_ts=parse_traffic_selectors("10.2.0.0/24"))


def test_one_route_for_many_children_and_it_outlives_the_last_for_the_grace(plane):
    plane, calls, loop = plane
    first, second = binding(), binding()
    plane._add_routes(first, EVENT)
    plane._add_routes(second, EVENT)
    assert calls == [("route", "replace", "10.1.0.0/24", "dev", "ipsec0", "table", "220", "src", "10.2.0.1")]
    plane._drop_routes(first)
    plane._drop_routes(second)
    assert len(calls) == 1 and [t.delay for t in loop.timers] == [dp.ROUTE_GRACE]
    third = binding()
    plane._add_routes(third, EVENT)  # within the grace, the same selectors: taken over, no `ip`
    loop.fire()
    assert len(calls) == 1
    plane._drop_routes(third)
    loop.fire()
    assert calls[1:] == [("route", "del", "10.1.0.0/24", "table", "220")]


@pytest.mark.parametrize("change", ["_add_virtual_ip", "_drop_virtual_ip"])
def test_a_virtual_ip_coming_or_going_sets_the_route_in_its_grace_again(plane, change):
    plane, calls, loop = plane
    plane.virtual_ips[7] = "10.3.0.1"
    first = binding()
    plane._add_routes(first, EVENT)
    if change == "_drop_virtual_ip":
        plane._drop_virtual_ip(7)  # the IKE SA goes first: the route is still live
        plane._drop_routes(first)
    else:
        plane._drop_routes(first)
        plane._add_virtual_ip(8, "10.3.0.2")
    del calls[1:]
    plane._add_routes(binding(), EVENT)
    assert calls[1:] == calls[:1]  # `ip route replace` again, no del
    loop.fire()
    assert not [c for c in calls if c[:2] == ("route", "del")]


def test_other_local_selectors_replace_the_route_and_stop_removes_pending_ones(plane):
    plane, calls, loop = plane
    first = binding()
    plane._add_routes(first, EVENT)
    plane._drop_routes(first)
    other = SimpleNamespace(local_ts=parse_traffic_selectors("10.3.0.7/32"))  # another source address
    active = binding()
    plane.bindings[id(active)] = active
    plane._add_routes(active, other)
    assert [c[:2] for c in calls] == [("route", "replace"), ("route", "replace")]
    pending = binding("10.9.0.0/24")
    plane._add_routes(pending, EVENT)
    plane._drop_routes(pending)
    plane.stop()
    deleted = sorted(c[2] for c in calls if c[:2] == ("route", "del"))
    assert deleted == ["10.1.0.0/24", "10.9.0.0/24"]
