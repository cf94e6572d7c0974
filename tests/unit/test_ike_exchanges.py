"""The IKEv2 state machine, two endpoints in memory with a fake clock and a channel that
drops, duplicates, reorders and NATs (RFC 7296 exchanges, §2.1 retransmission, §2.8.1 and
§2.25 collisions)."""
from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
from dataclasses import dataclass

import pytest

from lab.ike import events as ev
from lab.ike import payloads as pl
from lab.ike.authenticators import builder, cert_payloads, verifier
from lab.ike.const import ExchangeType, HashAlgorithm, NotifyType
from lab.ike.crypto import digital_signature_params
from lab.ike.endpoint import OutDatagram, Settings
from lab.ike.message import Message, classify_udp
from lab.ike.sa import ChildState, IkeState

from .ike_net import GW_A, GW_B, Net, cert_configs, make_net, pair_configs


def _established(net: Net) -> tuple:
    (ike_a,) = [s for s in net.endpoints["a"].by_id.values() if s.state == IkeState.ESTABLISHED]
    (ike_b,) = [s for s in net.endpoints["b"].by_id.values() if s.state == IkeState.ESTABLISHED]
    return ike_a, ike_b


def assert_consistent(net: Net, children: int = 1, allowed_drops: tuple[str, ...] = ()) -> None:
    """One IKE SA on each side with the same SPIs, and CHILD SAs that mirror each other."""
    ike_a, ike_b = _established(net)
    assert (ike_a.spi_i, ike_a.spi_r) == (ike_b.spi_i, ike_b.spi_r)
    assert ike_a.keys.sk_d == ike_b.keys.sk_d
    pairs_a = {(c.spi_in, c.spi_out) for c in ike_a.children if c.state == ChildState.INSTALLED}
    pairs_b = {(c.spi_out, c.spi_in) for c in ike_b.children if c.state == ChildState.INSTALLED}
    assert pairs_a == pairs_b
    assert len(pairs_a) == children
    for child_a in ike_a.children:
        child_b = next(c for c in ike_b.children if c.spi_in == child_a.spi_out)
        assert child_a.keys_out == child_b.keys_in and child_a.keys_in == child_b.keys_out
        assert child_a.local_ts == child_b.remote_ts and child_a.remote_ts == child_b.local_ts
    for name in "ab":
        assert not [reason for reason in net.endpoints[name].drops if not reason.startswith(allowed_drops)], \
            net.endpoints[name].drops


@dataclass(frozen=True)
class Before:
    """What a rekey must change, taken before it: the IKE SA's SPIs and SK_d, and the CHILD
    SAs' (spi_in, spi_out) as a sees them."""
    ike: tuple[bytes, bytes]
    sk_d: bytes
    children: frozenset[tuple[bytes, bytes]]


def before(net: Net) -> Before:
    ike_a, _ = _established(net)
    return Before((ike_a.spi_i, ike_a.spi_r), ike_a.keys.sk_d,
                  frozenset((c.spi_in, c.spi_out) for c in ike_a.children))


def _child_spis(endpoint) -> set[bytes]:
    """Every CHILD SA SPI, in or out, any state, of every IKE SA the endpoint still holds."""
    return {spi for ike in endpoint.by_id.values() for c in ike.children for spi in (c.spi_in, c.spi_out)}


def assert_child_rekeyed(net: Net, old: Before, children: int = 1, allowed_drops: tuple[str, ...] = ()) -> None:
    """Each CHILD SA of `old` was replaced: `children` installed on each side, none with an old
    SPI in or out, and no old SPI left on either side in any state."""
    assert_consistent(net, children, allowed_drops)
    ike_a, _ = _established(net)
    old_spis = {spi for pair in old.children for spi in pair}
    assert old_spis and not old_spis & {spi for c in ike_a.children for spi in (c.spi_in, c.spi_out)}
    for name, endpoint in net.endpoints.items():
        assert not old_spis & _child_spis(endpoint), f"{name} still holds a CHILD SA that was rekeyed"


def assert_ike_rekeyed(net: Net, old: Before, children: int = 1, allowed_drops: tuple[str, ...] = (),
                       children_moved: bool = True) -> None:
    """The IKE SA of `old` was replaced: exactly one IKE SA left on each side, both SPIs and
    SK_d new, the old SPIs known nowhere; its CHILD SAs moved over unchanged (`children_moved`)."""
    assert_consistent(net, children, allowed_drops)
    ike_a, _ = _established(net)
    assert ike_a.spi_i != old.ike[0] and ike_a.spi_r != old.ike[1]
    assert ike_a.keys.sk_d != old.sk_d
    for name, endpoint in net.endpoints.items():
        assert len(endpoint.by_id) == 1 and len(endpoint.sas) == 1 and not endpoint.half_open, name
        assert not set(old.ike) & set(endpoint.sas), f"{name} still knows the rekeyed IKE SA"
    if children_moved:
        assert {(c.spi_in, c.spi_out) for c in ike_a.children} == set(old.children)


def watch(net: Net, name: str = "a") -> tuple[dict, dict]:
    """Every IKE SA (by our SPI) and CHILD SA (by spi_in) `name` holds at any step from now on."""
    ikes: dict[bytes, object] = {}
    children: dict[bytes, object] = {}

    def look() -> None:
        for ike in net.endpoints[name].by_id.values():
            ikes[ike.our_spi] = ike
            children.update((c.spi_in, c) for c in ike.children)

    net.after_step = look
    return ikes, children


def kinds(events) -> list[str]:
    return [type(e).__name__ for e in events]


def connect(net: Net, **kw) -> None:
    net.endpoints["a"].initiate("s2s", net.now, **kw)
    net.settle()


def test_establish_psk_site_to_site():
    net = make_net(*pair_configs())
    connect(net)
    assert_consistent(net)
    for side in "ab":
        assert kinds(net.events(side)) == ["IkeSaUp", "ChildSaUp"]
    exchanges = [Message.parse(classify_udp(d.dst[1], d.data)[1]).exchange for _, _, d in net.log]
    assert exchanges == [ExchangeType.IKE_SA_INIT] * 2 + [ExchangeType.IKE_AUTH] * 2


@pytest.mark.parametrize("lost", range(4))
def test_each_message_of_setup_lost_once(lost):
    net = make_net(*pair_configs())
    sent = []

    def drop(name, datagram):
        sent.append(datagram)
        return len(sent) - 1 == lost

    net.drop = drop
    connect(net)
    net.settle(30)
    assert_consistent(net)
    assert kinds(net.events("a")) == ["IkeSaUp", "ChildSaUp"]
    assert kinds(net.events("b")) == ["IkeSaUp", "ChildSaUp"]
    retransmitted = net.endpoints["a"].stats["retransmits"]
    resent = net.endpoints["b"].stats["responses_resent"]
    # RFC 7296 §2.1: a lost request is retransmitted; a lost response gets the cached one again
    assert retransmitted == 1 and resent == (1 if lost in (1, 3) else 0)


def test_duplicated_and_reordered_datagrams():
    net = make_net(*pair_configs())
    net.duplicate = lambda name, d: True
    net.reorder = True
    connect(net)
    # the second copy of each response arrives when nothing waits for it: dropped and counted
    assert_consistent(net, allowed_drops=("unexpected response",))
    assert net.endpoints["a"].drops["unexpected response with message ID N"] >= 1
    assert kinds(net.events("a")) == ["IkeSaUp", "ChildSaUp"]
    assert net.endpoints["b"].stats["responses_resent"] >= 1


def test_retransmission_schedule_and_giving_up():
    net = make_net(*pair_configs())
    net.drop = lambda name, d: name == "b"
    connect(net)
    net.settle(400)
    times = [t for t, name, _ in net.log if name == "a"]
    # strongSwan's defaults: 4 s, base 1.8, 5 retransmissions, then give up
    gaps = [round(b - a, 2) for a, b in zip(times, times[1:])]
    assert gaps == [4.0, 7.2, 12.96, 23.33, 41.99]
    events = net.events("a")
    assert kinds(events)[-2:] == ["PeerUnreachable", "IkeSaDeleted"]
    assert events[-2].tries == 6
    assert net.endpoints["a"].by_id == {}


def test_invalid_ke_payload_retry_in_requested_group():
    a, b = pair_configs(a_proposals="aes128gcm16-prfsha256-x25519-ecp256",
                        b_proposals="aes128gcm16-prfsha256-ecp256")
    net = make_net(a, b)
    connect(net)
    assert_consistent(net)
    notes = [r for r in net.endpoints["a"].pop_trace() if r.get("what") == "invalid_ke"]
    assert notes and notes[0]["group"] == "ECP_256"
    ike_a, _ = _established(net)
    assert ike_a.algorithms.dh == 19
    assert len(net.log) == 6


def test_cookie_under_load():
    a, b = pair_configs()
    net = make_net(a, b, settings=Settings(cookie_threshold=0))
    connect(net)
    assert_consistent(net)
    assert net.endpoints["b"].stats["cookies_sent"] == 1
    first, second = [Message.parse(d.data) for _, name, d in [e for e in net.log if e[1] == "a"][:2]]
    cookie = Message.parse(next(d.data for _, name, d in net.log if name == "b"))
    assert cookie.payloads[0].notify_type == NotifyType.COOKIE
    assert not any(getattr(p, "notify_type", None) == NotifyType.COOKIE for p in first.payloads)
    assert second.payloads[0].data == cookie.payloads[0].data
    assert [p.notify_type for p in second.payloads[:1]] == [NotifyType.COOKIE]  # RFC 7296 §2.6: first payload


def test_cookie_is_bound_to_the_initiator():
    # RFC 7296 §2.6: a cookie is a hash over Ni, IPi and SPIi; a forged one, or one made for
    # another address or SPIi, is answered with a fresh COOKIE and no state is kept
    net = make_net(*pair_configs(), settings=Settings(cookie_threshold=0))
    a, b = net.endpoints["a"], net.endpoints["b"]
    a.initiate("s2s", net.now)
    (request,) = a.datagrams_to_send()
    b.receive_datagram(request.data, request.src, request.dst, net.now)
    (answer,) = b.datagrams_to_send()
    cookie = Message.parse(answer.data).payloads[0]
    assert cookie.notify_type == NotifyType.COOKIE and len(cookie.data) > 8
    first = Message.parse(request.data)

    def with_cookie(data: bytes, spi_i: bytes = first.spi_i) -> bytes:
        notify = dataclasses.replace(cookie, data=data)
        return Message(spi_i, bytes(8), ExchangeType.IKE_SA_INIT, 0, True, False,
                       [notify, *first.payloads]).serialize()

    forged = bytes(len(cookie.data))
    other_spi = bytes(reversed(first.spi_i))
    for data, src, spi in ((forged, request.src, first.spi_i), (cookie.data, ("192.0.2.9", 500), first.spi_i),
                           (cookie.data, request.src, other_spi)):
        net.addresses["192.0.2.9"] = "a"
        b.receive_datagram(with_cookie(data, spi), src, request.dst, net.now)
        (again,) = b.datagrams_to_send()
        reply = Message.parse(again.data)
        assert [p.notify_type for p in reply.payloads] == [NotifyType.COOKIE]
        assert b.by_id == {}
    assert b.stats["cookies_sent"] == 4
    b.receive_datagram(with_cookie(cookie.data), request.src, request.dst, net.now)
    (accepted,) = b.datagrams_to_send()
    assert [type(p).__name__ for p in Message.parse(accepted.data).payloads][:3] == ["SA", "KE", "Nonce"]
    assert len(b.by_id) == 1


def test_no_proposal_chosen():
    a, b = pair_configs(a_proposals="aes256-sha384-ecp384", b_proposals="aes128gcm16-prfsha256-x25519")
    net = make_net(a, b)
    connect(net)
    events = net.events("a")
    assert kinds(events) == ["NegotiationFailed", "IkeSaDeleted"]
    assert "NO_PROPOSAL_CHOSEN" in events[0].reason
    assert net.endpoints["a"].by_id == {} and net.endpoints["b"].by_id == {}


def test_authentication_failed_responder_rejects():
    a, b = pair_configs(b_psk="another-psk")
    net = make_net(a, b)
    connect(net)
    events_a, events_b = net.events("a"), net.events("b")
    assert [e for e in events_a if isinstance(e, ev.AuthFailed)][0].by_peer is True
    failed_b = [e for e in events_b if isinstance(e, ev.AuthFailed)][0]
    assert failed_b.by_peer is False and "pre-shared key" in failed_b.reason
    assert "IkeSaUp" not in kinds(events_a) + kinds(events_b)
    assert net.endpoints["a"].by_id == {} and net.endpoints["b"].by_id == {}


def test_authentication_failed_initiator_rejects():
    a, b = pair_configs()
    a.connections["s2s"].remote.method = "pubkey"  # a expects a signature, b sends a PSK MIC
    net = make_net(a, b)
    connect(net)
    failed_a = [e for e in net.events("a") if isinstance(e, ev.AuthFailed)][0]
    assert failed_a.by_peer is False and "pre-shared key" in failed_a.reason
    events_b = net.events("b")
    assert [e for e in events_b if isinstance(e, ev.AuthFailed)][0].by_peer is True
    assert net.endpoints["a"].by_id == {} and net.endpoints["b"].by_id == {}


def test_traffic_selector_narrowing():
    a, b = pair_configs()
    a_conn = a.connections["s2s"]
    from lab.ike.config import parse_traffic_selectors
    a_conn.children["net"].local_ts = parse_traffic_selectors("10.1.0.0/16")
    a_conn.children["net"].remote_ts = parse_traffic_selectors("10.2.0.0/16")
    net = make_net(a, b)
    connect(net)
    assert_consistent(net)
    ike_a, _ = _established(net)
    assert [str(t) for t in ike_a.children[0].local_ts] == ["10.1.0.0/24"]
    assert [str(t) for t in ike_a.children[0].remote_ts] == ["10.2.0.0/24"]


def test_ts_unacceptable_keeps_ike_sa():
    a, b = pair_configs()
    from lab.ike.config import parse_traffic_selectors
    a.connections["s2s"].children["net"].remote_ts = parse_traffic_selectors("10.9.0.0/24")
    net = make_net(a, b)
    connect(net)
    assert_consistent(net, children=0)
    failed = [e for e in net.events("a") if isinstance(e, ev.NegotiationFailed)][0]
    assert "TS_UNACCEPTABLE" in failed.reason
    assert failed.exchange == "IKE_AUTH"  # the exchange that carried the refused CHILD SA


# ---------------------------------------------------------------- CREATE_CHILD_SA


def _up(net: Net) -> Net:
    connect(net)
    net.events("a"), net.events("b")
    return net


@pytest.mark.parametrize("side", "ab")
def test_child_rekey_make_before_break(side):
    net = _up(make_net(*pair_configs()))
    old = before(net)
    assert net.endpoints[side].rekey_child(net.now, "net") == 1
    net.settle()
    assert_child_rekeyed(net, old)
    for name in "ab":
        names = kinds(net.events(name))
        # the new SA is up before the old one goes
        assert names == ["ChildSaUp", "ChildSaRekeyed", "ChildSaDeleted"]


@pytest.mark.parametrize("side", "ab")
def test_ike_rekey_moves_children(side):
    net = _up(make_net(*pair_configs()))
    old = before(net)
    assert net.endpoints[side].rekey_ike(net.now, name="s2s") == 1
    net.settle()
    assert_ike_rekeyed(net, old)
    new_a, _ = _established(net)
    assert new_a.is_initiator == (side == "a")
    for name in "ab":
        assert kinds(net.events(name)) == ["IkeSaRekeyed", "IkeSaDeleted"]


def test_additional_child_with_pfs():
    a, b = pair_configs(esp="aes128gcm16-x25519")
    net = _up(make_net(a, b))
    ike_a, _ = _established(net)
    net.endpoints["a"].create_child(net.now, ike_a.unique_id, "net")
    net.settle()
    assert_consistent(net, children=2)
    assert kinds(net.events("b")) == ["ChildSaUp"]


@pytest.mark.parametrize("side", "ab")
def test_child_rekey_with_pfs_retries_after_invalid_ke(side):
    # RFC 7296 §1.3: the rekey is sent again with the KE group the responder asks for
    net = _up(make_net(*pair_configs(a_esp="aes128gcm16-ecp256-x25519", b_esp="aes128gcm16-x25519-ecp256")))
    old = before(net)
    net.endpoints[side].rekey_child(net.now, "net")
    net.settle()
    assert_child_rekeyed(net, old)
    responder = "b" if side == "a" else "a"
    assert kinds(net.events(side)) == ["ChildSaUp", "ChildSaRekeyed", "ChildSaDeleted"]
    events = net.events(responder)
    assert [k for k in kinds(events) if k != "NegotiationFailed"] == ["ChildSaUp", "ChildSaRekeyed", "ChildSaDeleted"]
    # the refused first try is the CREATE_CHILD_SA's (INVALID_KE_PAYLOAD), not the IKE SA's
    assert {e.exchange for e in events if isinstance(e, ev.NegotiationFailed)} == {"CREATE_CHILD_SA"}
    rekeys = [Message.parse(classify_udp(d.dst[1], d.data)[1]) for _, _, d in net.log]
    assert [m.exchange for m in rekeys].count(ExchangeType.CREATE_CHILD_SA) == 4


def test_ike_rekey_retries_after_invalid_ke():
    # RFC 7296 §1.3.2, §1.3: the responder now wants another group; the IKE rekey is sent again in it
    a, b = pair_configs(a_proposals="aes128gcm16-prfsha256-ecp256-x25519",
                        b_proposals="aes128gcm16-prfsha256-ecp256-x25519")
    net = _up(make_net(a, b))
    old = before(net)
    assert _established(net)[0].algorithms.dh == 19
    from lab.ike.proposals import parse_ike_proposals
    b.connections["s2s"].proposals = parse_ike_proposals("aes128gcm16-prfsha256-x25519")
    assert net.endpoints["a"].rekey_ike(net.now, name="s2s") == 1
    net.settle()
    assert_ike_rekeyed(net, old)
    assert _established(net)[0].algorithms.dh == 31
    answers = [r["payloads"] for r in net.endpoints["b"].pop_trace() if r["kind"] == "message"
               and r["dir"] == "out" and r["exchange"] == "CREATE_CHILD_SA"]
    assert answers[0] == ["N(INVALID_KE_PAYLOAD)"] and answers[1][:3] == ["SA", "Nr", "KE"]


@pytest.mark.parametrize("side", "ab")
def test_delete_child_and_ike_from_each_side(side):
    net = _up(make_net(*pair_configs()))
    net.endpoints[side].terminate_child(net.now, "net")
    net.settle()
    assert_consistent(net, children=0)
    for name in "ab":
        assert kinds(net.events(name)) == ["ChildSaDeleted"]
    informational = [(r["response"], r["payloads"]) for r in net.endpoints[side].pop_trace()
                     if r["kind"] == "message" and r["exchange"] == "INFORMATIONAL"]
    # RFC 7296 §1.4.1: the answer deletes the peer's inbound half
    assert informational == [(False, ["D"]), (True, ["D"])]
    net.endpoints[side].terminate(net.now, name="s2s")
    net.settle()
    for name in "ab":
        assert kinds(net.events(name)) == ["IkeSaDeleted"]
        assert net.endpoints[name].by_id == {}


@pytest.mark.parametrize("operation", ["rekey_child", "rekey_ike"])
@pytest.mark.parametrize("lost", range(4))
def test_each_message_of_rekey_lost(operation, lost):
    net = _up(make_net(*pair_configs()))
    old = before(net)
    start = len(net.log)
    net.drop = lambda name, d: len(net.log) - 1 == start + lost
    if operation == "rekey_child":
        assert net.endpoints["a"].rekey_child(net.now, "net") == 1
    else:
        assert net.endpoints["a"].rekey_ike(net.now, name="s2s") == 1
    # long enough for every retransmission (RFC 7296 §2.4) to be sent or given up
    net.settle(300)
    assert net.log[start + lost][1] == "ab"[lost % 2]  # the message lost was the one meant
    if operation == "rekey_child":
        assert_child_rekeyed(net, old)
    else:
        # a lost answer to the Delete of the old IKE SA: the peer forgot that SA, retransmits go unanswered
        assert_ike_rekeyed(net, old, allowed_drops=("unknown IKE SPI",))


# ---------------------------------------------------------------- collisions (RFC 7296 §2.8.1, §2.8.2, §2.25)


def test_simultaneous_child_rekey():
    net = _up(make_net(*pair_configs()))
    old = before(net)
    _, children = watch(net)
    net.endpoints["a"].rekey_child(net.now, "net")
    net.endpoints["b"].rekey_child(net.now, "net")
    net.settle(30)
    assert_child_rekeyed(net, old)
    for name in "ab":
        notes = [r for r in net.endpoints[name].pop_trace() if r.get("what") == "rekey_collision"]
        # RFC 7296 §2.8.1: both sides agree which new SA is redundant, and keep the other
        assert len(notes) == 1
        ike, = net.endpoints[name].find()
        assert notes[0]["kept"] == ike.children[0].spi_in.hex()
        assert kinds(net.events(name)).count("ChildSaUp") == 2
        if name == "a":
            # ... the one made with the lowest of the four nonces is redundant
            redundant, kept = children[bytes.fromhex(notes[0]["redundant"])], ike.children[0]
            assert min(redundant.nonces) < min(kept.nonces)


def test_simultaneous_ike_rekey():
    net = _up(make_net(*pair_configs()))
    old = before(net)
    ikes, _ = watch(net)
    net.endpoints["a"].rekey_ike(net.now, name="s2s")
    net.endpoints["b"].rekey_ike(net.now, name="s2s")
    net.settle(30)
    assert_ike_rekeyed(net, old)
    for name in "ab":
        notes = [r for r in net.endpoints[name].pop_trace() if r.get("what") == "ike_rekey_collision"]
        # RFC 7296 §2.8.2: two new IKE SAs, one redundant, the same one kept on both sides
        assert len(notes) == 1
        ike, = net.endpoints[name].find()
        assert notes[0]["kept"] == ike.our_spi.hex()
        if name == "a":
            # ... the one made by the exchange with the lowest nonce is redundant
            redundant = ikes[bytes.fromhex(notes[0]["redundant"])]
            assert min(redundant.nonce_i, redundant.nonce_r) < min(ike.nonce_i, ike.nonce_r)


def test_redundant_ike_sa_the_peer_never_deletes_is_deleted_by_us():
    # RFC 7296 §2.8.2: the creator of the redundant IKE SA deletes it; here every such delete is lost
    net = _up(make_net(*pair_configs()))
    before_rekey = before(net)
    old = before_rekey.ike

    def lost(name: str, datagram: OutDatagram) -> bool:
        message = Message.parse(classify_udp(datagram.dst[1], datagram.data)[1])
        return (message.exchange == ExchangeType.INFORMATIONAL and not message.is_response
                and (message.spi_i, message.spi_r) != old)

    net.drop = lost
    net.endpoints["a"].rekey_ike(net.now, name="s2s")
    net.endpoints["b"].rekey_ike(net.now, name="s2s")
    net.run(until=net.now + 400)
    net.drop = lambda name, datagram: False
    assert_ike_rekeyed(net, before_rekey, allowed_drops=("unknown IKE SPI",))
    dropped = [Message.parse(classify_udp(d.dst[1], d.data)[1]) for _, _, d in net.log if lost("", d)]
    assert dropped  # the Deletes of the redundant IKE SA were sent, and lost


def test_rekey_vs_delete_of_the_same_child():
    net = _up(make_net(*pair_configs()))
    old = before(net)
    net.endpoints["a"].rekey_child(net.now, "net")
    net.endpoints["b"].terminate_child(net.now, "net")
    net.settle(30)
    # RFC 7296 §2.25.1: the rekey of an SA being closed is refused; the delete wins on both sides
    assert_consistent(net, children=0)
    refused = [r for r in net.endpoints["b"].pop_trace() if r["kind"] == "message" and r["dir"] == "out"
               and r["exchange"] == "CREATE_CHILD_SA"]
    assert [r["payloads"] for r in refused] == [["N(TEMPORARY_FAILURE)"]]
    old_spis = {spi for pair in old.children for spi in pair}
    for name in "ab":
        assert not old_spis & _child_spis(net.endpoints[name])
        assert "ChildSaDeleted" in kinds(net.events(name))


@pytest.mark.parametrize("seed", range(6))  # the random retry delays decide which goes first; seeds 3, 5: the IKE rekey
def test_ike_rekey_vs_child_rekey(seed):
    net = _up(make_net(*pair_configs(), seed=seed))
    old = before(net)
    net.endpoints["a"].rekey_ike(net.now, name="s2s")
    net.endpoints["b"].rekey_child(net.now, "net")
    net.settle(60)
    # RFC 7296 §2.25.2: each side refuses the other's request with TEMPORARY_FAILURE (no CHILD_SA
    # work during an IKE rekey, no IKE rekey during CHILD_SA work); later both happen
    for name in "ab":
        answers = [r["payloads"] for r in net.endpoints[name].pop_trace() if r["kind"] == "message"
                   and r["dir"] == "out" and r["response"] and r["exchange"] == "CREATE_CHILD_SA"]
        assert answers[0] == ["N(TEMPORARY_FAILURE)"]
    assert_ike_rekeyed(net, old, children_moved=False)
    assert_child_rekeyed(net, old)


def test_child_rekey_queued_behind_an_ike_rekey():
    # RFC 7296 §2.18: work queued for a CHILD SA follows it to the new IKE SA
    net = _up(make_net(*pair_configs()))
    old = before(net)
    assert net.endpoints["a"].rekey_ike(net.now, name="s2s") == 1
    assert net.endpoints["a"].rekey_child(net.now, "net") == 1
    net.settle(30)
    assert_ike_rekeyed(net, old, children_moved=False)
    assert_child_rekeyed(net, old)
    names = kinds(net.events("b"))
    assert names[0] == "IkeSaRekeyed" and sorted(names[1:]) == ["ChildSaDeleted", "ChildSaRekeyed", "ChildSaUp",
                                                                "IkeSaDeleted"]


# ---------------------------------------------------------------- liveness, lifetimes, NAT


def test_dead_peer_detection():
    a, b = pair_configs(a_dpd_delay=30)
    net = _up(make_net(a, b))
    net.drop = lambda name, d: name == "b"
    net.settle(600)
    events = net.events("a")
    assert kinds(events)[-3:] == ["PeerUnreachable", "ChildSaDeleted", "IkeSaDeleted"] or \
        kinds(events)[-2:] == ["PeerUnreachable", "IkeSaDeleted"]
    assert net.endpoints["a"].by_id == {}


def test_dead_peer_detection_of_a_live_peer():
    # RFC 7296 §2.4: an empty INFORMATIONAL request after dpd_delay of silence, answered empty
    a, b = pair_configs(a_dpd_delay=30)
    net = _up(make_net(a, b))
    old = before(net)
    net.run(until=net.now + 100)
    checks = [r for r in net.endpoints["a"].pop_trace() if r["kind"] == "message" and r["exchange"] == "INFORMATIONAL"]
    assert [(r["dir"], r["response"], r["payloads"]) for r in checks] == [("out", False, []), ("in", True, [])] * 3
    assert before(net) == old and net.events("a") == [] and net.events("b") == []
    assert_consistent(net)


def test_rekey_by_lifetime():
    a, b = pair_configs(a_child_rekey_time=60, a_rekey_time=100)
    net = _up(make_net(a, b))
    old = before(net)
    net.run(until=net.now + 130)
    assert_ike_rekeyed(net, old, children_moved=False)
    assert_child_rekeyed(net, old)
    names = kinds(net.events("a"))
    assert "ChildSaRekeyed" in names and "IkeSaRekeyed" in names


def test_garbage_is_dropped_and_counted():
    net = _up(make_net(*pair_configs()))
    ike_a, ike_b = _established(net)
    forged = Message(ike_a.spi_i, ike_a.spi_r, ExchangeType.INFORMATIONAL, ike_b.mid_in, True, False)
    from lab.ike import payloads as p
    forged.payloads = [p.SK(inner_first=42, data=bytes(64))]
    b = net.endpoints["b"]
    b.receive_datagram(b"\x00\x00\x00\x00" + forged.serialize(), (GW_A, 4500), (GW_B, 4500), net.now)
    b.receive_datagram(b"\x00\x00\x00\x00" + b"junk", (GW_A, 4500), (GW_B, 4500), net.now)
    assert sum(b.drops.values()) == 2
    assert ike_b.mid_in == forged.message_id  # no change of state
    net.endpoints["b"].drops.clear()
    old = before(net)
    net.endpoints["a"].rekey_child(net.now, "net")
    net.settle()
    assert_child_rekeyed(net, old)


def test_nat_detection_and_float_to_4500():
    a, b = pair_configs(b_remote_addrs="%any")
    net = make_net(a, b)
    public = "192.0.2.77"
    net.addresses[public] = "a"

    def nat(name, d):
        # a sits behind a NAT box that maps 198.51.100.1:port to 192.0.2.77:(port+10000)
        if name == "a":
            return OutDatagram(d.data, (public, d.src[1] + 10000), d.dst)
        if d.dst[0] == public:
            return OutDatagram(d.data, d.src, (GW_A, d.dst[1] - 10000))
        return d

    net.rewrite = nat
    connect(net)
    assert_consistent(net)
    ike_a, ike_b = _established(net)
    assert ike_a.local_behind_nat and not ike_a.remote_behind_nat
    assert ike_b.remote_behind_nat and ike_b.remote == (public, 14500)
    assert ike_a.remote == (GW_B, 4500)
    ports = [(d.src[1], d.dst[1]) for _, name, d in net.log if name == "a"]
    assert ports == [(500, 500), (4500, 4500)]
    ups = [e for e in net.events("a") if isinstance(e, ev.ChildSaUp)]
    assert ups[0].encap is True


def test_nat_detection_hashes_are_rfc_7296():
    # RFC 7296 §2.23, computed here by hand: SHA-1(SPIi | SPIr | IP | port), SPIr zero in the
    # request; both sides use the same code, so only an outside computation can tell a wrong layout
    net = make_net(*pair_configs())
    connect(net)
    request, response = (Message.parse(d.data) for _, _, d in net.log[:2])

    def hashes(message: Message) -> tuple[bytes, bytes]:
        found = {p.notify_type: p.data for p in message.payloads if isinstance(p, pl.Notify)}
        return found[NotifyType.NAT_DETECTION_SOURCE_IP], found[NotifyType.NAT_DETECTION_DESTINATION_IP]

    def sha1(spis: bytes, address: str, port: int) -> bytes:
        return hashlib.sha1(spis + ipaddress.ip_address(address).packed + port.to_bytes(2, "big")).digest()

    spis = request.spi_i + bytes(8)
    assert hashes(request) == (sha1(spis, GW_A, 500), sha1(spis, GW_B, 500))
    spis = response.spi_i + response.spi_r
    assert response.spi_r != bytes(8) and hashes(response) == (sha1(spis, GW_B, 500), sha1(spis, GW_A, 500))


def test_forced_encapsulation():
    a, b = pair_configs(a_encap=True)
    net = make_net(a, b)
    connect(net)
    ike_a, ike_b = _established(net)
    assert ike_a.nat_detected and ike_b.nat_detected
    assert ike_a.remote[1] == 4500 and ike_b.remote[1] == 4500


# ---------------------------------------------------------------- certificates and fragmentation


@pytest.mark.parametrize("kind", ["ecdsa", "rsa"])
def test_certificate_authentication(kind):
    from .ike_net import cert_configs
    net = make_net(*cert_configs(kind))
    net.endpoints["a"].wall_clock = net.endpoints["b"].wall_clock = _in_2026
    connect(net)
    assert_consistent(net)
    auth = [r for r in net.endpoints["a"].pop_trace() if r["kind"] == "message" and r["exchange"] == "IKE_AUTH"]
    assert auth[0]["payloads"][:3] == ["IDi", "CERT", "CERT"] and "CERTREQ" in auth[0]["payloads"]
    assert "CERT" in auth[1]["payloads"]


def _in_2026():
    import datetime
    return datetime.datetime(2026, 6, 1, tzinfo=datetime.timezone.utc)


@pytest.mark.parametrize("announced, expected", [([HashAlgorithm.SHA2_384], HashAlgorithm.SHA2_384),
                                                  ([HashAlgorithm.SHA2_512], HashAlgorithm.SHA2_512),
                                                  ([], HashAlgorithm.SHA2_256)])
def test_our_signature_uses_a_hash_the_peer_announced(announced, expected):
    # RFC 7427 §4: our signature's hash is one the peer named in SIGNATURE_HASH_ALGORITHMS (none
    # named: the key's default), and the peer's verifier takes it
    net = make_net(*cert_configs("ecdsa"))
    net.endpoints["a"].wall_clock = net.endpoints["b"].wall_clock = _in_2026
    connect(net)
    ike_a, ike_b = _established(net)
    ike_a.peer_hashes = [int(h) for h in announced]
    id_payload = ike_a.local_id.to_payload(pl.IDi)
    auth = builder(ike_a, ike_a.config.local).build(id_payload)
    assert digital_signature_params(auth.data).hash_algorithm == expected
    verifier(ike_b, ike_b.config.remote).verify(id_payload, auth, cert_payloads(ike_a, ike_a.config.local))


def test_certificate_from_another_ca_is_rejected():
    from .ike_net import cert_configs, make_pki
    a, b = cert_configs()
    b.connections["s2s"].remote.cacerts = [make_pki()["ca"]]  # a CA that did not sign a's chain
    net = make_net(a, b)
    net.endpoints["a"].wall_clock = net.endpoints["b"].wall_clock = _in_2026
    connect(net)
    failed = [e for e in net.events("b") if isinstance(e, ev.AuthFailed)][0]
    assert "does not chain to a trusted CA" in failed.reason
    assert [e for e in net.events("a") if isinstance(e, ev.AuthFailed)][0].by_peer


def test_certificate_with_wrong_identity_is_rejected():
    from .ike_net import cert_configs
    from lab.ike.identity import Identity
    a, b = cert_configs()
    b.connections["s2s"].remote.id = Identity.parse("gwa.lab")
    a.connections["s2s"].local.id = Identity.parse("gwc.lab")  # claims an id its certificate lacks
    b.connections["s2s"].remote.id = Identity.parse("*.lab")
    net = make_net(a, b)
    net.endpoints["a"].wall_clock = net.endpoints["b"].wall_clock = _in_2026
    connect(net)
    failed = [e for e in net.events("b") if isinstance(e, ev.AuthFailed)][0]
    assert "gwc.lab" in failed.reason


def test_ike_auth_fragmented_at_1280():
    from .ike_net import cert_configs
    a, b = cert_configs("rsa", chain_padding=2500)
    net = make_net(a, b, settings=Settings(fragment_size=1280))
    net.endpoints["a"].wall_clock = net.endpoints["b"].wall_clock = _in_2026
    lost = []

    def drop_second_fragment(name, d):
        # the second fragment of the first IKE_AUTH request is lost once
        message = Message.parse(classify_udp(d.dst[1], d.data)[1])
        skf = message.encrypted
        if name == "a" and skf is not None and skf.type_id == 53 and skf.fragment_number == 2 and not lost:
            lost.append(d)
            return True
        return False

    net.drop = drop_second_fragment
    connect(net)
    net.settle(30)
    assert_consistent(net)
    sizes = [len(d.data) for _, name, d in net.log if name == "a" and len(d.data) > 300]
    assert len(sizes) >= 4 and max(sizes) + 28 <= 1280
    auth = [r for r in net.endpoints["a"].pop_trace() if r["kind"] == "message" and r["exchange"] == "IKE_AUTH"]
    assert auth[0]["fragments"] >= 3 and auth[0]["length"] > 4000


def test_reassembly_limits():
    from lab.ike.protect import Reassembly, ReassemblyError
    from lab.ike.payloads import SKF
    r = Reassembly(1, max_fragments=4, max_size=100)
    with pytest.raises(ReassemblyError, match="exceed the limit"):
        r.add(SKF(fragment_number=1, total_fragments=5), b"x")
    r.add(SKF(fragment_number=1, total_fragments=3), b"x" * 60)
    with pytest.raises(ReassemblyError, match="exceeds 100 octets"):
        r.add(SKF(fragment_number=2, total_fragments=3), b"x" * 60)
    with pytest.raises(ReassemblyError, match="invalid"):
        Reassembly(1).add(SKF(fragment_number=3, total_fragments=2), b"")


# ---------------------------------------------------------------- remote access, transport


def test_remote_access_virtual_ip_from_pool():
    from lab.ike.config import Pool, parse_traffic_selectors
    a, b = pair_configs()
    a.connections["s2s"].vips = ["0.0.0.0"]
    a.connections["s2s"].children["net"].local_ts = parse_traffic_selectors("dynamic")
    b.connections["s2s"].pools = ["rw"]
    b.connections["s2s"].children["net"].remote_ts = parse_traffic_selectors("dynamic")
    b.pools = {"rw": Pool.parse("rw", "10.3.0.0/24", ["10.2.0.53"])}
    net = make_net(a, b)
    connect(net)
    assert_consistent(net)
    ike_a, ike_b = _established(net)
    assert ike_a.virtual_ip == "10.3.0.1" and ike_b.assigned_ip == "10.3.0.1"
    assert [str(t) for t in ike_a.children[0].local_ts] == ["10.3.0.1"]
    assert [str(t) for t in ike_b.children[0].remote_ts] == ["10.3.0.1"]


def _remote_access(vips: list[str], pools: dict[str, str], remote_ts: str = "10.2.0.0/16, fd00:2::/64"):
    from lab.ike.config import Pool, parse_traffic_selectors
    a, b = pair_configs()
    a.connections["s2s"].vips = vips
    a.connections["s2s"].children["net"].local_ts = parse_traffic_selectors("dynamic")
    a.connections["s2s"].children["net"].remote_ts = parse_traffic_selectors(remote_ts)
    b.connections["s2s"].pools = list(pools)
    b.connections["s2s"].children["net"].local_ts = parse_traffic_selectors(remote_ts)
    b.connections["s2s"].children["net"].remote_ts = parse_traffic_selectors("dynamic")
    b.pools = {name: Pool.parse(name, addrs, ["fd00:2::53" if ":" in addrs else "10.2.0.53"])
               for name, addrs in pools.items()}
    return make_net(a, b)


@pytest.mark.parametrize("vips, expected", [
    (["::"], ["fd00:10::1"]),
    (["0.0.0.0", "::"], ["10.3.0.1", "fd00:10::1"]),
], ids=["ipv6", "dual-stack"])
def test_remote_access_ipv6_virtual_ip_from_pool(monkeypatch, vips, expected):
    """RFC 7296 §3.15.3: the client asks with an empty INTERNAL_IP6_ADDRESS and ::/0 in TSi, the
    gateway answers with an address and its prefix length (17 octets) and narrows TSi to it."""
    from lab.ike.const import CfgAttr
    from lab.ike.tasks import ike_auth

    seen = {}  # the CP payloads the gateway (request) and the client (reply) handle

    def watch(name):
        real = getattr(ike_auth, name)

        def watched(ike, cp):
            seen.setdefault(name, cp)
            return real(ike, cp)
        monkeypatch.setattr(ike_auth, name, watched)
    watch("_assign_virtual_ip")
    watch("_take_virtual_ip")
    net = _remote_access(vips, {"v4": "10.3.0.0/24", "v6": "fd00:10::/120"})
    connect(net)
    assert_consistent(net)
    ike_a, ike_b = _established(net)
    assert ike_a.virtual_ips == expected and ike_b.assigned_ips == expected
    assert [str(t) for t in ike_a.children[0].local_ts] == expected
    assert [str(t) for t in ike_b.children[0].remote_ts] == expected
    ups = [e for e in net.events("a") if isinstance(e, ev.IkeSaUp)]
    assert ups and ups[0].virtual_ips == tuple(expected) and ups[0].virtual_ip == expected[0]
    request = {a.attr_type: a.value for a in seen["_assign_virtual_ip"].attributes}
    assert request[CfgAttr.INTERNAL_IP6_ADDRESS] == b"" and CfgAttr.INTERNAL_IP6_DNS in request
    assert (CfgAttr.INTERNAL_IP4_ADDRESS in request) is ("0.0.0.0" in vips)
    reply = {a.attr_type: a.value for a in seen["_take_virtual_ip"].attributes}
    assert reply[CfgAttr.INTERNAL_IP6_ADDRESS] == ipaddress.ip_address("fd00:10::1").packed + bytes([64])
    assert reply[CfgAttr.INTERNAL_IP6_DNS] == ipaddress.ip_address("fd00:2::53").packed


def test_remote_access_a_family_without_a_pool_is_left_out_and_none_at_all_fails():
    """strongSwan's ike_config: the address of a family no pool serves is left out of the reply;
    INTERNAL_ADDRESS_FAILURE only when no address at all can be given."""
    net = _remote_access(["0.0.0.0", "::"], {"v4": "10.3.0.0/24"})
    connect(net)
    ike_a, ike_b = _established(net)
    assert ike_a.virtual_ips == ["10.3.0.1"] and ike_b.assigned_ips == ["10.3.0.1"]
    assert [str(t) for t in ike_a.children[0].local_ts] == ["10.3.0.1"]

    net = _remote_access(["::"], {"v4": "10.3.0.0/24"})
    connect(net)
    assert not [s for s in net.endpoints["a"].by_id.values() if s.children]
    assert "INTERNAL_ADDRESS_FAILURE" in str(net.events("a"))


@pytest.mark.parametrize("value", [b"", bytes(16), bytes(16) + bytes([129]), bytes(18)],
                         ids=["empty", "no-prefix", "prefix-129", "18-octets"])
def test_a_malformed_internal_ip6_address_is_not_taken(value):
    """RFC 7296 §3.15.1: INTERNAL_IP6_ADDRESS in a reply is 17 octets, a prefix length at most 128."""
    from types import SimpleNamespace

    from lab.ike.const import CfgAttr, CfgType
    from lab.ike.tasks.ike_auth import _take_virtual_ip
    ike = SimpleNamespace(virtual_ips=[])
    good = ipaddress.ip_address("fd00:10::7").packed + bytes([64])
    _take_virtual_ip(ike, pl.CP(cfg_type=CfgType.CFG_REPLY, attributes=[
        pl.CfgAttribute(CfgAttr.INTERNAL_IP6_ADDRESS, value), pl.CfgAttribute(CfgAttr.INTERNAL_IP6_ADDRESS, good)]))
    assert ike.virtual_ips == ["fd00:10::7"]


def test_transport_mode():
    from lab.ike.config import parse_traffic_selectors
    a, b = pair_configs(child_mode="transport")
    for config in (a, b):
        child = config.connections["s2s"].children["net"]
        child.local_ts = parse_traffic_selectors("dynamic")
        child.remote_ts = parse_traffic_selectors("dynamic")
    net = make_net(a, b)
    connect(net)
    assert_consistent(net)
    ike_a, ike_b = _established(net)
    assert ike_a.children[0].mode == ike_b.children[0].mode == "transport"
    assert [str(t) for t in ike_a.children[0].local_ts] == [GW_A]


def test_unsupported_critical_payload_is_refused():
    net = _up(make_net(*pair_configs()))
    ike_a, ike_b = _established(net)
    from lab.ike import payloads as p
    from lab.ike.tasks import Task

    class Odd(Task):
        def build_i(self, ike, now):
            return [p.UnknownPayload(unknown_type=200, data=b"?", critical=True)]

        def process_i(self, ike, payloads, now):
            self.answer = payloads

    task = Odd()
    ike_a.queue(task, net.now)
    net.settle()
    assert task.answer[0].notify_type == NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD
    assert task.answer[0].data == bytes([200])


def test_ah_child_sa_and_its_rekey_and_delete():
    from lab.ike.proposals import parse_ah_proposals
    from lab.ike.const import ProtocolId
    a, b = pair_configs()
    for config in (a, b):
        config.connections["s2s"].children["net"].ah_proposals = parse_ah_proposals("sha256")
    net = _up(make_net(a, b))
    assert_consistent(net)
    ike_a, ike_b = _established(net)
    assert ike_a.children[0].protocol == ProtocolId.AH
    assert ike_a.children[0].keys_out.encr == b"" and len(ike_a.children[0].keys_out.integ) == 32
    old = before(net)
    assert net.endpoints["b"].rekey_child(net.now, "net") == 1
    net.settle()
    assert_child_rekeyed(net, old)
    ike_a, ike_b = _established(net)
    assert ike_a.children[0].protocol == ike_b.children[0].protocol == ProtocolId.AH
    net.endpoints["a"].terminate_child(net.now, "net")
    net.settle()
    assert_consistent(net, children=0)
    for name in "ab":
        assert _child_spis(net.endpoints[name]) == set()
    deletes = [r for r in net.endpoints["a"].pop_trace() if r["kind"] == "message" and r["payloads"] == ["D"]]
    assert deletes


def test_ah_refused_across_nat():
    from lab.ike.proposals import parse_ah_proposals
    a, b = pair_configs(a_encap=True)
    for config in (a, b):
        config.connections["s2s"].children["net"].ah_proposals = parse_ah_proposals("sha256")
    net = make_net(a, b)
    connect(net)
    assert_consistent(net, children=0)
    failed = [e for e in net.events("b") if isinstance(e, ev.NegotiationFailed)][0]
    assert "AH cannot cross a NAT" in failed.reason
    assert failed.exchange == "IKE_AUTH"


# ---------------------------------------------------------------- edges the mutation run found untested


def test_settings_defaults_are_strongswans():
    # strongswan.conf(5): retransmit_timeout 4, base 1.8, tries 5, fragment_size 1280; RFC 7296 §2.10 nonces
    s = Settings()
    assert (s.retransmit_timeout, s.retransmit_base, s.retransmit_tries, s.fragment_size, s.nonce_size) == \
        (4.0, 1.8, 5, 1280, 32)
    Settings(nonce_size=16)
    Settings(nonce_size=256)
    for bad in (15, 257):
        with pytest.raises(ValueError):
            Settings(nonce_size=bad)


def test_responder_prefers_its_own_proposal_order():
    # like strongSwan: the responder picks by its own preference among what is offered
    a, b = pair_configs(a_proposals="aes128-sha256-x25519, aes128gcm16-prfsha256-x25519",
                        b_proposals="aes128gcm16-prfsha256-x25519, aes128-sha256-x25519")
    net = make_net(a, b)
    connect(net)
    ike_a, ike_b = _established(net)
    assert str(ike_a.algorithms) == str(ike_b.algorithms) and "gcm" in str(ike_a.algorithms).lower()


def test_fragmentation_announced_only_when_both_want_it():
    # RFC 7383 §2.3: the responder answers IKEV2_FRAGMENTATION_SUPPORTED only when it was offered
    for a_frag, expected in (("no", False), ("yes", True)):
        a, b = pair_configs(a_fragmentation=a_frag)
        net = make_net(a, b)
        connect(net)
        init = [r for r in net.endpoints["b"].pop_trace() if r["kind"] == "message" and r["dir"] == "out"
                and r["exchange"] == "IKE_SA_INIT"]
        assert ("N(IKEV2_FRAGMENTATION_SUPPORTED)" in init[0]["payloads"]) is expected
        assert init[0]["message_id"] == 0 and init[0]["response"] is True


def test_trace_records_carry_the_time_given():
    net = make_net(*pair_configs())
    net.endpoints["a"].trace(12.5, "note", what="x")
    assert net.endpoints["a"].pop_trace()[-1]["t"] == 12.5


def test_find_and_terminate_child_select_exactly():
    a, b = pair_configs(esp="aes128gcm16-x25519")
    net = _up(make_net(a, b))
    endpoint = net.endpoints["a"]
    ike_a, _ = _established(net)
    assert endpoint.find(name="other") == [] and endpoint.find(ike_id=ike_a.unique_id + 100) == []
    assert endpoint.find(name="s2s") == [ike_a] == endpoint.find(ike_id=ike_a.unique_id)
    endpoint.create_child(net.now, ike_a.unique_id, "net")
    net.settle()
    first, second = sorted(ike_a.children, key=lambda c: c.spi_in)
    assert endpoint.terminate_child(net.now, spi_in=second.spi_in) == 1
    net.settle()
    assert [c.spi_in for c in ike_a.children] == [first.spi_in]
    assert endpoint.rekey_child(net.now, spi_in=second.spi_in) == 0


def test_single_port_selectors_narrow_to_themselves():
    from lab.ike.config import parse_traffic_selectors
    from lab.ike.sa import narrow
    (dns,) = parse_traffic_selectors("10.2.0.0/24[udp/53]")
    assert narrow([dns], parse_traffic_selectors("10.2.0.0/16")) == [dns]


def test_idr_sent_only_for_a_definite_remote_identity():
    from lab.ike.identity import Identity
    a, b = pair_configs()
    a.connections["s2s"].remote = dataclasses.replace(a.connections["s2s"].remote, id=Identity.parse("%any"))
    net = make_net(a, b)
    connect(net)
    auth = [r for r in net.endpoints["a"].pop_trace() if r["kind"] == "message" and r["exchange"] == "IKE_AUTH"]
    assert "IDr" not in auth[0]["payloads"]  # RFC 7296 §2.15: IDr in the request is optional, for a known peer
    net = make_net(*pair_configs())
    connect(net)
    auth = [r for r in net.endpoints["a"].pop_trace() if r["kind"] == "message" and r["exchange"] == "IKE_AUTH"]
    assert "IDr" in auth[0]["payloads"]


def test_lifetimes_without_jitter_are_exact():
    a, b = pair_configs(a_rekey_time=100, a_child_rekey_time=60)
    net = make_net(a, b)
    connect(net)
    ike_a, _ = _established(net)
    up = next(r["t"] for r in net.endpoints["a"].pop_trace() if r["kind"] == "state" and r.get("new") == "ESTABLISHED")
    assert ike_a.rekey_at == up + 100
    assert ike_a.children[0].rekey_at == ike_a.children[0].established + 60


def test_psk_auth_is_rfc_7296_signed_octets():
    # RFC 7296 §2.15, computed here by hand: AUTH = prf(prf(PSK, "Key Pad for IKEv2"),
    # RealMessage | peer's Nonce | prf(SK_p, IDx')); both sides use the same code, so only an
    # outside computation can tell initiator's octets from responder's
    import hashlib
    import hmac as hmac_
    from lab.ike import payloads as p
    from lab.ike.protect import decrypt
    net = make_net(*pair_configs(proposals="aes128gcm16-prfsha256-x25519"))
    connect(net)
    ike_a, ike_b = _established(net)
    datagrams = [(name, d) for _, name, d in net.log]
    init_i, init_r = datagrams[0][1].data, datagrams[1][1].data

    def prf(key: bytes, data: bytes) -> bytes:
        return hmac_.new(key, data, hashlib.sha256).digest()

    pad = prf(b"a-lab-only-psk", b"Key Pad for IKEv2")
    for index, receiver, real, nonce, sk_p, id_kind in ((2, ike_b, init_i, ike_a.nonce_r, ike_a.keys.sk_pi, p.IDi),
                                                         (3, ike_a, init_r, ike_a.nonce_i, ike_a.keys.sk_pr, p.IDr)):
        data = classify_udp(datagrams[index][1].dst[1], datagrams[index][1].data)[1]
        inner = decrypt(data, Message.parse(data), receiver.cipher, receiver.keys_in)
        id_payload = next(x for x in inner if isinstance(x, id_kind))
        auth = next(x for x in inner if isinstance(x, p.AUTH))
        assert auth.data == prf(pad, real + nonce + prf(sk_p, id_payload.body()))


def test_deleting_an_ike_sa_deletes_its_children_first():
    # RFC 7296 §1.4.1: the CHILD SAs go with their IKE SA; the data plane hears of each
    net = _up(make_net(*pair_configs()))
    net.endpoints["a"].terminate(net.now, name="s2s")
    net.settle()
    for name in "ab":
        assert kinds(net.events(name)) == ["ChildSaDeleted", "IkeSaDeleted"]


def test_child_hard_lifetime_without_rekey():
    a, b = pair_configs(a_child_rekey_time=0, a_child_life_time=50)
    net = _up(make_net(a, b))
    net.run(until=net.now + 60)
    assert_consistent(net, children=0)
    deleted = [e for e in net.events("a") if isinstance(e, ev.ChildSaDeleted)]
    assert deleted and "lifetime" in deleted[0].reason


def test_messages_below_the_fragment_size_are_not_fragmented():
    net = make_net(*pair_configs(a_encap=True))
    connect(net)
    records = [r for r in net.endpoints["a"].pop_trace() if r["kind"] == "message" and r["exchange"] == "IKE_AUTH"]
    assert records and all(r["fragments"] == 1 for r in records)


def test_fragments_fit_the_fragment_size_on_4500():
    # RFC 7383 §2.5.1: IP + UDP + non-ESP marker + fragment within fragment_size
    from lab.ike.memnet import cert_configs
    a, b = cert_configs("rsa", chain_padding=2500, a_encap=True)
    net = make_net(a, b, settings=Settings(fragment_size=1280))
    net.endpoints["a"].wall_clock = net.endpoints["b"].wall_clock = _in_2026
    connect(net)
    assert_consistent(net)
    sizes = [len(d.data) + 28 for _, name, d in net.log if name == "a" and d.dst[1] == 4500]
    assert max(sizes) <= 1280 and max(sizes) > 1280 - 40


def test_cookie_threshold_counts_half_open_sas():
    # RFC 7296 §2.6: cookies only once `cookie_threshold` SAs are half-open
    net = make_net(*pair_configs(), settings=Settings(cookie_threshold=1))
    a, b = net.endpoints["a"], net.endpoints["b"]
    a.initiate("s2s", net.now)
    a.initiate("s2s", net.now)
    first, second = a.datagrams_to_send()
    for d in (first, second):
        b.receive_datagram(d.data, d.src, d.dst, net.now)
    answers = [Message.parse(d.data) for d in b.datagrams_to_send()]
    assert [type(x).__name__ for x in answers[0].payloads][:1] == ["SA"]
    assert [getattr(x, "notify_type", None) for x in answers[1].payloads] == [NotifyType.COOKIE]


def test_bad_ike_sa_init_requests_are_dropped():
    net = make_net(*pair_configs())
    a, b = net.endpoints["a"], net.endpoints["b"]
    a.initiate("s2s", net.now)
    (request,) = a.datagrams_to_send()
    message = Message.parse(request.data)

    def variant(**changes) -> bytes:
        m = Message(changes.get("spi_i", message.spi_i), changes.get("spi_r", message.spi_r),
                    ExchangeType.IKE_SA_INIT, 0, True, False, changes.get("payloads", message.payloads))
        return m.serialize()

    from lab.ike import payloads as p
    long_nonce = [x if not isinstance(x, p.Nonce) else p.Nonce(data=bytes(257)) for x in message.payloads]
    for data in (variant(spi_r=b"\xff" * 8), variant(payloads=long_nonce)):
        b.receive_datagram(data, request.src, request.dst, net.now)
    assert b.datagrams_to_send() == [] and b.by_id == {}
    assert sum(b.drops.values()) == 2
    b.receive_datagram(request.data, request.src, request.dst, net.now)
    assert len(b.datagrams_to_send()) == 1
    other = variant(payloads=[x if not isinstance(x, p.Nonce) else p.Nonce(data=bytes(32)) for x in message.payloads])
    b.receive_datagram(other, request.src, request.dst, net.now)  # the same SPIi, another request: dropped
    assert b.datagrams_to_send() == [] and b.drops["second IKE_SA_INIT with the same SPIi"] == 1


def test_spi_pair_must_match():
    net = _up(make_net(*pair_configs()))
    ike_a, ike_b = _established(net)
    forged = Message(bytes(8), ike_a.spi_r, ExchangeType.INFORMATIONAL, ike_b.mid_in, True, False)
    b = net.endpoints["b"]
    b.receive_datagram(b"\x00\x00\x00\x00" + forged.serialize(), (GW_A, 4500), (GW_B, 4500), net.now)
    assert b.drops["SPI pair does not match the IKE SA"] == 1


@pytest.mark.parametrize("tcp", [False, True])
def test_an_ike_frame_from_a_tcp_stream_on_port_443_is_taken(tcp):
    # RFC 9329 §3.1: IKE in a TCP stream carries the non-ESP marker whatever the TCP port (here
    # 443, a hotel's only way out); taken as UDP on a port other than 4500 it is malformed
    net = make_net(*pair_configs())
    a, b = net.endpoints["a"], net.endpoints["b"]
    a.initiate("s2s", net.now)
    (request,) = a.datagrams_to_send()
    b.receive_datagram(b"\0\0\0\0" + request.data, (request.src[0], 33308), (request.dst[0], 443), net.now, tcp=tcp)
    answers = b.datagrams_to_send()
    if tcp:
        assert [Message.parse(d.data).exchange for d in answers] == [ExchangeType.IKE_SA_INIT]
    else:
        assert answers == [] and b.drops["malformed"] == 1
