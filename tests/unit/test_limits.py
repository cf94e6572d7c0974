"""The endpoint's limits on what unauthenticated or misbehaving peers make it hold, each a
Settings field with charon's default where charon has one: half-open SAs in all
(init_limit_half_open) and per peer IP (block_threshold), IKE SAs per peer IP, the largest
IKE datagram and reassembled message (max_packet), fragments per message, reassembly
buffers (RFC 7383 §5). Past a limit an IKE_SA_INIT is dropped and counted, with no answer
and no state; a retransmission that does not verify gets no response."""
from __future__ import annotations

import random

import pytest

from lab.ike.const import ExchangeType, NotifyType
from lab.ike.endpoint import IkeEndpoint, Settings
from lab.ike.memnet import GW_B, Net, s2s_config
from lab.ike.message import Message, classify_udp
from lab.ike.states import IkeState

PEERS = [f"198.51.100.{i}" for i in range(10, 40)]


def crowd(n: int, settings: Settings, initiator_settings: Settings | None = None, local_ts: str | None = None,
          **options) -> Net:
    """n initiators (a0, a1, ...) at their own addresses, all to one responder b that takes anyone."""
    endpoints, addresses = {}, {GW_B: "b"}
    for i in range(n):
        rng = random.Random(i)
        config = s2s_config(PEERS[i], GW_B, "gwa.lab", "gwb.lab", local_ts or f"10.1.{i}.0/24", "10.2.0.0/24",
                            **options)
        endpoints[f"a{i}"] = IkeEndpoint(config, initiator_settings or Settings(), random=rng.randbytes, jitter=False)
        addresses[PEERS[i]] = f"a{i}"
    rng_b = random.Random(99)
    config = s2s_config(GW_B, "%any", "gwb.lab", "gwa.lab", "10.2.0.0/24", "10.1.0.0/16")
    endpoints["b"] = IkeEndpoint(config, settings, random=rng_b.randbytes, jitter=False)
    return Net(endpoints, addresses=addresses)


def init_request(net: Net, name: str = "a0"):
    """The IKE_SA_INIT request `name` sends, taken off the wire (not delivered)."""
    net.endpoints[name].initiate("s2s", net.now)
    (datagram,) = net.endpoints[name].datagrams_to_send()
    return datagram


def with_spi(data: bytes, i: int) -> bytes:
    return i.to_bytes(8, "big") + data[8:]


def answers(endpoint: IkeEndpoint) -> list[Message]:
    return [Message.parse(classify_udp(d.dst[1], d.data)[1]) for d in endpoint.datagrams_to_send()]


def test_half_open_sas_of_one_peer_are_limited_like_charons_block_threshold():
    net = crowd(2, Settings(cookie_threshold=100, half_open_per_peer=3))
    b = net.endpoints["b"]
    request = init_request(net)
    for i in range(1, 6):
        b.receive_datagram(with_spi(request.data, i), request.src, request.dst, net.now)
    assert b.half_open_count == 3 and len(answers(b)) == 3  # the last two: no answer at all
    assert b.drops["half-open SA limit of the peer reached"] == 2 and b.stats["limits_hit"] == 2
    other = init_request(net, "a1")
    b.receive_datagram(other.data, other.src, other.dst, net.now)
    assert b.half_open_count == 4 and len(answers(b)) == 1  # another peer is not blocked


def test_half_open_sas_in_all_are_limited_and_expire():
    net = crowd(6, Settings(cookie_threshold=100, half_open_limit=4, half_open_timeout=30))
    b = net.endpoints["b"]
    requests = [init_request(net, f"a{i}") for i in range(6)]
    for d in requests:
        b.receive_datagram(d.data, d.src, d.dst, net.now)
    assert b.half_open_count == 4 and len(answers(b)) == 4
    assert b.drops["half-open SA limit reached"] == 2
    b.handle_timer(net.now + 31)  # RFC 7296 §2.6 / charon.half_open_timeout: half-open SAs go
    assert b.half_open_count == 0 and b.by_id == {} and not b.half_open and not b.half_open_per_peer
    d = requests[5]
    b.receive_datagram(with_spi(d.data, 77), d.src, d.dst, net.now + 31)
    assert b.half_open_count == 1 and len(answers(b)) == 1


def test_the_cookie_comes_before_the_limits():
    # charon checks the cookie first: a spoofed source never blocks the address it names
    net = crowd(4, Settings(cookie_threshold=2, half_open_limit=2))
    b = net.endpoints["b"]
    for i in range(3):
        d = init_request(net, f"a{i}")
        b.receive_datagram(d.data, d.src, d.dst, net.now)
    replies = answers(b)
    assert [m.payloads[0].notify_type if m.payloads[0].type_id == 41 else None for m in replies] == [
        None, None, NotifyType.COOKIE]
    assert b.stats["cookies_sent"] == 1 and b.stats["limits_hit"] == 0


def test_legitimate_initiators_get_through_once_half_open_sas_finish():
    # an initiator answering the cookie is taken once it proves its address, within the limits
    net = crowd(8, Settings(cookie_threshold=2, half_open_limit=4))
    for i in range(8):
        net.endpoints[f"a{i}"].initiate("s2s", net.now)
    net.settle(60)
    b = net.endpoints["b"]
    assert len([s for s in b.by_id.values() if s.state == IkeState.ESTABLISHED]) == 8
    assert b.half_open_count == 0 and b.stats["cookies_sent"] > 0


def test_ike_sas_per_peer_are_limited():
    net = crowd(1, Settings(ike_sas_per_peer=2))
    a, b = net.endpoints["a0"], net.endpoints["b"]
    for _ in range(3):
        a.initiate("s2s", net.now)
        net.settle()
    assert len(b.by_id) == 2 and b.drops["IKE SA limit of the peer reached"] >= 1
    assert b.sas_per_peer[PEERS[0]] == 2
    b.terminate(net.now, ike_id=next(iter(b.by_id)))
    net.settle()
    assert b.sas_per_peer[PEERS[0]] == 1
    a.initiate("s2s", net.now)
    net.settle()
    assert len([s for s in b.by_id.values() if s.state == IkeState.ESTABLISHED]) == 2


def test_oversized_datagrams_are_dropped_before_parsing():
    net = crowd(1, Settings(max_packet=600))
    b = net.endpoints["b"]
    request = init_request(net)
    padded = request.data + bytes(700 - len(request.data))
    b.receive_datagram(padded, request.src, request.dst, net.now)
    b.receive_datagram(b"\x00\x00\x00\x00" + bytes(601), (request.src[0], 4500), (GW_B, 4500), net.now)
    assert b.drops["oversized datagram"] == 2 and b.by_id == {} and answers(b) == []


def _first_fragments_only(net: Net):
    """Net.drop that lets through only fragment 1 of every fragmented IKE_AUTH request."""
    def drop(name, d):
        kind, data = classify_udp(d.dst[1], d.data)
        message = Message.parse(data)
        skf = message.encrypted
        return (message.exchange == ExchangeType.IKE_AUTH and skf is not None and skf.type_id == 53
                and skf.fragment_number > 1)
    net.drop = drop


def test_reassembly_buffers_are_few_and_freed_with_their_sa():
    small = Settings(fragment_size=220)
    net = crowd(4, Settings(reassembly_buffers=2, cookie_threshold=100, half_open_timeout=30), small,
                fragmentation="force")
    _first_fragments_only(net)
    for i in range(4):
        net.endpoints[f"a{i}"].initiate("s2s", net.now)
    net.collect()
    net.run(until=net.now + 0.5)
    b = net.endpoints["b"]
    assert b.reassemblies == 2 and b.half_open_count == 4
    assert b.drops["fragment reassembly"] >= 2  # every reassembly buffer is taken
    assert sum(len(s.tm.reassembly) for s in b.by_id.values()) == 2
    net.drop = lambda name, d: True
    b.handle_timer(net.now + 31)
    assert b.reassemblies == 0 and b.by_id == {}


def test_a_message_of_too_many_fragments_or_octets_is_dropped():
    many_selectors = ",".join(f"10.1.{i}.0/24" for i in range(20))  # IKE_AUTH of some 450 octets
    for settings, reason in ((Settings(max_fragments=2), "fragments exceed the limit"),
                             (Settings(max_packet=300), "reassembled message exceeds")):
        net = crowd(1, settings, Settings(fragment_size=150), local_ts=many_selectors, fragmentation="force")
        net.endpoints["a0"].initiate("s2s", net.now)
        net.collect()
        net.run(until=net.now + 0.5)
        b = net.endpoints["b"]
        drops = [r["reason"] for r in b.pop_trace() if r["kind"] == "drop"]
        assert any(reason in d for d in drops), drops
        assert not any(s.state == IkeState.ESTABLISHED for s in b.by_id.values())
        assert b.reassemblies == 0


def test_a_fragmented_message_still_completes_within_the_limits():
    net = crowd(1, Settings(reassembly_buffers=1), Settings(fragment_size=220), fragmentation="force")
    net.endpoints["a0"].initiate("s2s", net.now)
    net.settle()
    b = net.endpoints["b"]
    assert [s.state for s in b.by_id.values()] == [IkeState.ESTABLISHED] and b.reassemblies == 0


def test_a_forged_retransmission_gets_no_response_a_real_one_does():
    net = crowd(1, Settings())
    a, b = net.endpoints["a0"], net.endpoints["b"]
    a.initiate("s2s", net.now)
    net.settle()
    auth = [d for _, name, d in net.log if name == "a0"
            and Message.parse(classify_udp(d.dst[1], d.data)[1]).exchange == ExchangeType.IKE_AUTH][-1]
    (ike_b,) = b.by_id.values()
    assert ike_b.mid_in == 2
    b.receive_datagram(auth.data, auth.src, auth.dst, net.now)
    assert len(b.datagrams_to_send()) == 1 and b.stats["responses_resent"] == 1
    forged = bytearray(auth.data)
    forged[-1] ^= 1
    b.receive_datagram(bytes(forged), auth.src, auth.dst, net.now)
    assert b.datagrams_to_send() == [] and b.stats["responses_resent"] == 1
    assert b.drops["integrity check failed"] == 1


def test_a_replayed_ike_sa_init_of_an_established_sa_is_counted():
    net = crowd(1, Settings())
    a, b = net.endpoints["a0"], net.endpoints["b"]
    a.initiate("s2s", net.now)
    request = a.datagrams_to_send()[0]
    b.receive_datagram(request.data, request.src, request.dst, net.now)
    net.collect()
    net.settle()
    b.receive_datagram(request.data, request.src, request.dst, net.now)
    assert b.datagrams_to_send() == [] and b.drops["IKE_SA_INIT request of an SA past IKE_SA_INIT"] == 1


@pytest.mark.parametrize("field", ["half_open_limit", "half_open_per_peer", "ike_sas_per_peer", "max_fragments",
                                   "reassembly_buffers"])
def test_negative_limits_are_refused(field):
    with pytest.raises(ValueError, match=field):
        Settings(**{field: -1})
