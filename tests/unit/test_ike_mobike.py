"""MOBIKE (RFC 4555) between two endpoints in memory: the initiator changes address (and
network, behind another NAT box), UPDATE_SA_ADDRESSES with NAT detection, the responder's
return routability check (COOKIE2), address lists, NAT mapping changes found by DPD; each
exchange with a lost message; and without MOBIKE, reauthentication and RFC 7296 §2.23."""
from __future__ import annotations

import pytest

from lab.ike import events as ev
from lab.ike import payloads as pl
from lab.ike.const import ExchangeType, NotifyType
from lab.ike.endpoint import OutDatagram
from lab.ike.message import Header
from lab.ike.sa import IkeState
from lab.ike.task_manager import TaskManager

from .ike_net import GW_A, GW_B, Net, make_net, pair_configs

A_WIFI = "198.51.100.1"   # GW_A: the client's first address
A_LTE = "198.51.100.77"   # its address on the other network
NAT_WIFI = "192.0.2.10"   # the public side of the NAT box of each network
NAT_LTE = "192.0.2.20"


def established(net: Net, name: str):
    (ike,) = [s for s in net.endpoints[name].by_id.values() if s.state == IkeState.ESTABLISHED]
    return ike


def up(net: Net) -> None:
    net.endpoints["a"].initiate("s2s", net.now)
    net.settle()
    net.events("a"), net.events("b")


def mobike_net(**options) -> Net:
    a, b = pair_configs(b_remote_addrs="%any", **options)
    net = make_net(a, b)
    net.addresses[A_LTE] = "a"
    net.endpoints["a"].local_addresses_changed([A_WIFI], net.now)
    return net


class Nats:
    """Each of the client's networks behind its own NAT box: a's packets leave NAT_WIFI or
    NAT_LTE by the address they came from, with the port shifted (`shift`), and come back."""

    def __init__(self, net: Net) -> None:
        self.shift = {A_WIFI: 10000, A_LTE: 20000}
        self.public = {A_WIFI: NAT_WIFI, A_LTE: NAT_LTE}
        net.addresses[NAT_WIFI] = net.addresses[NAT_LTE] = "a"
        net.rewrite = self.rewrite

    def rewrite(self, name: str, d: OutDatagram) -> OutDatagram:
        if name == "a":
            return OutDatagram(d.data, (self.public[d.src[0]], d.src[1] + self.shift[d.src[0]]), d.dst)
        for inside, public in self.public.items():
            if d.dst[0] == public:
                return OutDatagram(d.data, d.src, (inside, d.dst[1] - self.shift[inside]))
        return d


def header(d: OutDatagram) -> Header:
    return Header.parse(d.data[4:] if d.data[:4] == bytes(4) else d.data)


def informational(name: str, response: bool):
    """A predicate for the INFORMATIONAL messages `name` sends, requests or responses."""
    def match(sender: str, d: OutDatagram) -> bool:
        if sender != name:
            return False
        h = header(d)
        return h.exchange == ExchangeType.INFORMATIONAL and h.is_response == response
    return match


def drop_first(net: Net, match) -> list:
    dropped: list = []

    def drop(name, d):
        if not dropped and match(name, d):
            dropped.append(d)
            return True
        return False
    net.drop = drop
    return dropped


def moves(events) -> list[ev.AddressesUpdated]:
    return [e for e in events if isinstance(e, ev.AddressesUpdated)]


def roam(net: Net, to: str = A_LTE) -> None:
    net.endpoints["a"].local_addresses_changed([to], net.now)


# ---------------------------------------------------------------- negotiation


def test_mobike_supported_in_ike_auth_and_the_float_to_4500_without_nat():
    net = mobike_net()
    up(net)
    ike_a, ike_b = established(net, "a"), established(net, "b")
    assert ike_a.mobike and ike_b.mobike
    # RFC 4555 §3.3: both support NAT-T and MOBIKE, so IKE_AUTH goes to 4500 without a NAT
    assert [(d.src[1], d.dst[1]) for _, name, d in net.log if name == "a"] == [(500, 500), (4500, 4500)]
    assert ike_b.remote == (A_WIFI, 4500) and ike_b.local == (GW_B, 4500)
    assert not ike_a.nat_detected  # and ESP is not encapsulated
    assert net.endpoints["a"].list_sas()[0]["mobike"] is True


@pytest.mark.parametrize("off", ["a", "b", "both"])
def test_mobike_needs_both(off):
    options = {"a_mobike": False} if off == "a" else {"b_mobike": False} if off == "b" else {"mobike": False}
    net = mobike_net(**options)
    up(net)
    assert not established(net, "a").mobike and not established(net, "b").mobike
    if off == "both":
        assert [(d.src[1], d.dst[1]) for _, name, d in net.log if name == "a"] == [(500, 500), (500, 500)]


def test_additional_addresses_in_ike_auth_and_an_address_list_update():
    net = mobike_net()
    net.endpoints["a"].local_addresses_changed([A_WIFI, "10.1.0.1"], net.now)
    up(net)
    ike_a, ike_b = established(net, "a"), established(net, "b")
    assert ike_b.peer_addresses == [A_WIFI, "10.1.0.1"]  # RFC 4555 §3.4
    net.endpoints["a"].local_addresses_changed([A_WIFI, "10.1.0.1", "172.16.9.1"], net.now)
    net.settle()
    assert ike_b.peer_addresses == [A_WIFI, "10.1.0.1", "172.16.9.1"]  # RFC 4555 §3.6: the list replaced
    net.endpoints["a"].local_addresses_changed([A_WIFI], net.now)
    net.settle()
    assert ike_b.peer_addresses == [A_WIFI]  # NO_ADDITIONAL_ADDRESSES
    assert not moves(net.events("a")) and not moves(net.events("b"))  # the path stays
    assert ike_a.remote == (GW_B, 4500) and ike_b.remote == (A_WIFI, 4500)


# ---------------------------------------------------------------- the client changes address


def assert_moved(net: Net, local: tuple[str, int], seen_by_b: tuple[str, int], encap: bool) -> None:
    ike_a, ike_b = established(net, "a"), established(net, "b")
    assert ike_a.local == local and ike_b.remote == seen_by_b
    assert (ike_a.ipsec_path.local, ike_b.ipsec_path.remote) == (local, seen_by_b)
    moved_a, moved_b = moves(net.events("a")), moves(net.events("b"))
    assert moved_a and moved_a[-1].local == local and moved_a[-1].encap == encap
    assert moved_b and moved_b[-1].remote == seen_by_b and moved_b[-1].encap == encap
    spis = {c.spi_in for c in ike_b.children}
    assert set(moved_b[-1].spis_in) == spis and len(spis) == 1
    assert len(net.endpoints["a"].by_id) == 1 and len(net.endpoints["b"].by_id) == 1  # the same IKE SA


def test_client_changes_address_and_the_sas_follow():
    net = mobike_net()
    up(net)
    spi = established(net, "b").spi_i
    roam(net)
    moved = moves(net.endpoints["a"].events)
    assert moved and moved[0].local == (A_LTE, 4500)  # RFC 4555 §3.5: the initiator moves at once
    net.settle()
    assert_moved(net, (A_LTE, 4500), (A_LTE, 4500), encap=False)
    assert established(net, "b").spi_i == spi
    sent = [d for _, name, d in net.log if name == "b" and header(d).exchange == ExchangeType.INFORMATIONAL]
    assert all(d.dst == (A_LTE, 4500) for d in sent)  # the response and the return routability check


def test_client_moves_from_one_nat_to_another():
    net = mobike_net()
    Nats(net)
    up(net)
    assert established(net, "b").remote == (NAT_WIFI, 14500)
    roam(net)
    net.settle()
    assert_moved(net, (A_LTE, 4500), (NAT_LTE, 24500), encap=True)
    ike_a = established(net, "a")
    assert ike_a.local_behind_nat and not ike_a.remote_behind_nat


def test_client_leaves_the_nat_for_a_public_address():
    net = mobike_net()
    nats = Nats(net)
    del nats.public[A_LTE]
    nats.rewrite = lambda name, d, orig=nats.rewrite: d if d.src[0] == A_LTE or d.dst[0] == A_LTE else orig(name, d)
    net.rewrite = nats.rewrite
    up(net)
    assert established(net, "a").nat_detected
    roam(net)
    net.settle()
    # RFC 4555 §3.5: NAT detection in UPDATE_SA_ADDRESSES turns UDP encapsulation off
    assert_moved(net, (A_LTE, 4500), (A_LTE, 4500), encap=False)


@pytest.mark.parametrize("lost", ["update request", "update response", "check request", "check response"])
def test_each_message_of_the_move_lost_once(lost):
    net = mobike_net()
    Nats(net)
    up(net)
    roam(net)
    match = {"update request": informational("a", False), "update response": informational("b", True),
             "check request": lambda n, d: informational("b", False)(n, d),
             "check response": informational("a", True)}[lost]
    dropped = drop_first(net, match)
    net.settle(horizon=30)
    assert dropped, f"nothing matched the {lost}"
    assert_moved(net, (A_LTE, 4500), (NAT_LTE, 24500), encap=True)
    assert net.endpoints["a"].stats["retransmits"] + net.endpoints["b"].stats["retransmits"] >= 1


def test_the_responder_moves_its_esp_only_after_the_return_routability_check():
    net = mobike_net()
    up(net)
    roam(net)
    drop_first(net, informational("a", True))  # the COOKIE2 answer is lost once
    net.run(until=net.now + 1)
    ike_b = established(net, "b")
    assert ike_b.remote == (A_LTE, 4500)  # RFC 4555 §3.5: the IKE SA takes the new address at once
    assert ike_b.ipsec_path.remote == (A_WIFI, 4500) and not moves(net.events("b"))  # §3.7: ESP waits for the check
    net.settle(horizon=30)
    assert moves(net.events("b"))[-1].remote == (A_LTE, 4500)


def test_without_return_routability_the_responder_moves_at_once():
    from lab.ike.endpoint import Settings
    a, b = pair_configs(b_remote_addrs="%any")
    net = make_net(a, b, settings=Settings(export_keys=True, return_routability=False))
    net.addresses[A_LTE] = "a"
    up(net)
    roam(net)
    net.settle()
    assert_moved(net, (A_LTE, 4500), (A_LTE, 4500), encap=False)
    assert not [r for r in net.endpoints["b"].trace_records if r.get("what") == "return_routability_check"]


def test_a_second_move_before_the_answer_wins():
    net = mobike_net()
    net.addresses["198.51.100.88"] = "a"
    up(net)
    roam(net)
    net.collect()
    roam(net, "198.51.100.88")  # RFC 4555 §3.5: start again, ignore the first answer
    net.settle(horizon=30)
    assert_moved(net, ("198.51.100.88", 4500), ("198.51.100.88", 4500), encap=False)


def test_an_address_outside_remote_addrs_is_unacceptable():
    a, b = pair_configs()  # b accepts a only at GW_A
    net = make_net(a, b)
    net.addresses[A_LTE] = "a"
    up(net)
    roam(net)
    net.settle()
    ike_b = established(net, "b")
    assert ike_b.remote == (A_WIFI, 4500) and not moves(net.events("b"))
    notes = [r["what"] for r in net.endpoints["a"].trace_records if r["kind"] == "note"]
    assert "mobike_unacceptable_addresses" in notes


def test_no_path_defers_the_move():
    net = mobike_net()
    up(net)
    net.endpoints["a"].local_addresses_changed([], net.now)
    net.settle()
    assert established(net, "a").local == (A_WIFI, 4500) and not moves(net.events("a"))
    roam(net)
    net.settle()
    assert_moved(net, (A_LTE, 4500), (A_LTE, 4500), encap=False)


# ---------------------------------------------------------------- COOKIE2 (RFC 4555 §3.7)


def _bad_echo(endpoint):
    def echo(self, exchange, payloads):
        out = TaskManager._echo_cookie2(self, exchange, payloads)
        return [pl.Notify(notify_type=NotifyType.COOKIE2, data=bytes(16)) if isinstance(p, pl.Notify)
                and p.notify_type == NotifyType.COOKIE2 else p for p in out]
    for ike in endpoint.by_id.values():
        ike.tm._echo_cookie2 = echo.__get__(ike.tm)


@pytest.mark.parametrize("liar", ["b", "a"])
def test_a_wrong_cookie2_closes_the_ike_sa(liar):
    net = mobike_net()
    up(net)
    _bad_echo(net.endpoints[liar])  # b lies about a's UPDATE cookie, a about b's check
    roam(net)
    net.settle(horizon=30)
    checker = "a" if liar == "b" else "b"
    deleted = [e for e in net.events(checker) if isinstance(e, ev.IkeSaDeleted)]
    assert deleted and "COOKIE2" in deleted[0].reason
    assert not net.endpoints[checker].by_id


def test_cookie2_is_echoed_in_any_informational():
    net = mobike_net()
    up(net)
    ike_a = established(net, "a")
    from lab.ike.tasks import MobikeUpdate
    ike_a.tm.queue(MobikeUpdate(update=False, addresses=True), net.now)
    net.settle()
    assert established(net, "a") is ike_a  # the echo matched, the SA lives
    answers = [r for r in net.endpoints["a"].trace_records if r["kind"] == "message" and r["dir"] == "in"
               and r["exchange"] == "INFORMATIONAL"]
    assert answers and "N(COOKIE2)" in answers[-1]["payloads"]


# ---------------------------------------------------------------- NAT mappings (RFC 4555 §3.8)


def test_dpd_notices_a_new_nat_mapping_and_updates():
    net = mobike_net(a_dpd_delay=5)
    nats = Nats(net)
    up(net)
    net.run(until=net.now + 6)  # a first DPD: the mapping it sees is the baseline
    assert not moves(net.events("b"))
    nats.shift[A_WIFI] = 30000  # the NAT box maps a's flow anew
    net.run(until=net.now + 1)
    assert established(net, "b").remote == (NAT_WIFI, 14500)  # §3.8: no following IKE messages with MOBIKE
    net.run(until=net.now + 10)
    notes = [r["what"] for r in net.endpoints["a"].trace_records if r["kind"] == "note"]
    assert "nat_mapping_changed" in notes
    assert established(net, "b").remote == (NAT_WIFI, 34500)
    assert moves(net.events("b"))[-1].remote == (NAT_WIFI, 34500)
    assert not [e for e in net.events("b") if isinstance(e, ev.PeerAddressChanged)]


# ---------------------------------------------------------------- without MOBIKE


def routed_source(net: Net) -> None:
    """a with local_addrs = %any: the address routed to b is its first one (as the daemon's
    route_source says)."""
    from lab.ike.config import parse_addrs
    endpoint = net.endpoints["a"]
    endpoint.config.connections["s2s"].local_addrs = parse_addrs("%any")
    endpoint.route_source = lambda remote: endpoint.local_addresses[0] if endpoint.local_addresses else None


def test_without_mobike_a_move_reauthenticates():
    net = mobike_net(mobike=False)
    Nats(net)
    routed_source(net)
    up(net)
    old_spi = established(net, "a").spi_i
    roam(net)
    net.settle(horizon=30)
    ike_a, ike_b = established(net, "a"), established(net, "b")
    assert ike_a.spi_i != old_spi and ike_a.local[0] == A_LTE
    assert ike_b.remote == (NAT_LTE, 24500)
    assert len(net.endpoints["a"].by_id) == 1 and len(net.endpoints["b"].by_id) == 1
    events_a = net.events("a")
    assert [e for e in events_a if isinstance(e, ev.IkeSaDeleted)] and [e for e in events_a if isinstance(e, ev.ChildSaUp)]
    assert len(ike_a.children) == 1 and len(ike_b.children) == 1


def test_without_mobike_a_static_local_address_is_kept():
    net = mobike_net(mobike=False)  # local_addrs = 198.51.100.1: strongSwan keeps such a path
    up(net)
    roam(net)
    net.settle()
    assert established(net, "a").local == (A_WIFI, 500) and len(net.endpoints["a"].by_id) == 1


def test_without_mobike_the_responder_follows_a_new_nat_address():
    # RFC 7296 §2.23: the NAT box's public address changes (not only the port); b is not
    # behind a NAT and follows a's authenticated messages, for IKE and (by the event) ESP
    net = mobike_net(mobike=False)
    nats = Nats(net)
    up(net)
    assert established(net, "b").remote == (NAT_WIFI, 14500)
    nats.public[A_WIFI] = "192.0.2.99"
    net.addresses["192.0.2.99"] = "a"
    net.endpoints["a"].rekey_ike(net.now)
    net.settle()
    followed = [e for e in net.events("b") if isinstance(e, ev.PeerAddressChanged)]
    assert followed and followed[0].old == (NAT_WIFI, 14500) and followed[0].new == ("192.0.2.99", 14500)
    assert established(net, "b").remote == ("192.0.2.99", 14500)
