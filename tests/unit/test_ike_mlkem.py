"""ML-KEM (FIPS 203, draft-ietf-ipsecme-ikev2-mlkem) as a key exchange method of our IKEv2, in
memory: as the KE of IKE_SA_INIT, of a CHILD SA with PFS and of an IKE SA rekey; a KE payload
of the wrong length answered with INVALID_SYNTAX. And our responder, configured without additional
key exchanges (RFC 9370), facing a peer that offers them."""
from __future__ import annotations

import pytest

from lab.ike import payloads as pl
from lab.ike.const import DhGroup, ExchangeType, NotifyType
from lab.ike.message import Message, classify_udp

from .ike_net import make_net, pair_configs
from .test_ike_exchanges import _established, assert_consistent, before, connect, assert_ike_rekeyed, kinds


def _sent(net, exchange):
    out = []
    for _, _, d in net.log:
        m = Message.parse(classify_udp(d.dst[1], d.data)[1])
        if m.exchange == exchange:
            out.append((m, len(d.data)))
    return out


@pytest.mark.parametrize("group, keyword, ek, ct", [(DhGroup.MLKEM_768, "mlkem768", 1184, 1088),
                                                    (DhGroup.MLKEM_1024, "mlkem1024", 1568, 1568)])
def test_mlkem_alone_in_ike_sa_init(group, keyword, ek, ct):
    net = make_net(*pair_configs(proposals=f"aes256gcm16-prfsha384-{keyword}"))
    connect(net)
    assert_consistent(net)
    ike_a, _ = _established(net)
    assert ike_a.algorithms.dh == group
    (request, _), (response, _) = _sent(net, ExchangeType.IKE_SA_INIT)
    assert len(request.get(pl.KE).data) == ek and len(response.get(pl.KE).data) == ct


@pytest.mark.parametrize("cut", [-1, 1])
def test_mlkem_key_of_the_wrong_length_is_invalid_syntax(cut):
    net = make_net(*pair_configs(proposals="aes256gcm16-prfsha384-mlkem768"))
    a, b = net.endpoints["a"], net.endpoints["b"]
    a.initiate("s2s", net.now)
    (request,) = a.datagrams_to_send()
    message = Message.parse(request.data)
    payloads = [pl.KE(dh_group=p.dh_group, data=p.data[:cut] if cut < 0 else p.data + bytes(cut))
                if isinstance(p, pl.KE) else p for p in message.payloads]
    bad = Message(message.spi_i, message.spi_r, ExchangeType.IKE_SA_INIT, 0, True, False, payloads).serialize()
    b.receive_datagram(bad, request.src, request.dst, net.now)
    (reply,) = b.datagrams_to_send()
    answer = Message.parse(reply.data)
    assert [p.notify_type for p in answer.payloads if isinstance(p, pl.Notify)] == [NotifyType.INVALID_SYNTAX]
    assert b.by_id == {} and b.drops["IKE_SA_INIT refused"] == 1
    notes = [r["reason"] for r in b.pop_trace() if r.get("reason", "").startswith("IKE_SA_INIT refused")]
    assert notes and all("encapsulation key must be 1184 octets" in n for n in notes)


def test_mlkem_ciphertext_of_the_wrong_length_fails_the_initiator():
    net = make_net(*pair_configs(proposals="aes256gcm16-prfsha384-mlkem768"))
    a, b = net.endpoints["a"], net.endpoints["b"]
    a.initiate("s2s", net.now)
    (request,) = a.datagrams_to_send()
    b.receive_datagram(request.data, request.src, request.dst, net.now)
    (reply,) = b.datagrams_to_send()
    message = Message.parse(reply.data)
    payloads = [pl.KE(dh_group=p.dh_group, data=p.data[:-1]) if isinstance(p, pl.KE) else p for p in message.payloads]
    bad = Message(message.spi_i, message.spi_r, ExchangeType.IKE_SA_INIT, 0, False, True, payloads).serialize()
    a.receive_datagram(bad, reply.src, reply.dst, net.now)
    events = net.events("a")
    assert kinds(events)[0] == "NegotiationFailed" and "ciphertext must be 1088 octets" in events[0].reason


def test_mlkem_child_sa_pfs_and_ike_rekey():
    net = make_net(*pair_configs(proposals="aes256gcm16-prfsha384-mlkem1024", esp="aes256gcm16-mlkem768"))
    connect(net)
    assert_consistent(net)
    ike_a, _ = _established(net)
    net.endpoints["a"].create_child(net.now, ike_a.unique_id, "net")
    net.settle()
    assert_consistent(net, children=2)
    old = before(net)
    assert net.endpoints["b"].rekey_ike(net.now, name="s2s") == 1
    net.settle()
    assert_ike_rekeyed(net, old, children=2)
    # encrypted and fragmented (RFC 7383): the four messages carry 1184 + 1088 + 1568 + 1568 octets of KE data
    creates = _sent(net, ExchangeType.CREATE_CHILD_SA)
    assert sum(size for _, size in creates) > 1184 + 1088 + 1568 + 1568


def _answer_to_offer(offer: str) -> Message:
    """Our responder (configured without additional key exchanges) answering an IKE_SA_INIT whose SA offers `offer`."""
    from lab.ike.proposals import parse_ike_proposals
    net = make_net(*pair_configs(proposals="aes256gcm16-prfsha384-x25519"))
    a, b = net.endpoints["a"], net.endpoints["b"]
    a.initiate("s2s", net.now)
    (request,) = a.datagrams_to_send()
    message = Message.parse(request.data)
    payloads = [pl.SA(proposals=parse_ike_proposals(offer)) if isinstance(p, pl.SA) else p for p in message.payloads]
    crafted = Message(message.spi_i, message.spi_r, ExchangeType.IKE_SA_INIT, 0, True, False, payloads).serialize()
    b.receive_datagram(crafted, request.src, request.dst, net.now)
    (reply,) = b.datagrams_to_send()
    return Message.parse(reply.data)


@pytest.mark.parametrize("offer", ["aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke1_none",
                                   "aes256gcm16-prfsha384-x25519-ke1_none-ke1_mlkem768-ke2_ecp256-ke2_none"])
def test_optional_additional_key_exchanges_fall_away_at_a_responder_without_them(offer):
    # RFC 9370 §2.2.1: NONE among an additional key exchange's transforms makes it optional
    answer = _answer_to_offer(offer)
    (proposal,) = answer.get(pl.SA).proposals
    assert sorted(int(t.transform_type) for t in proposal.transforms) == [1, 2, 4]
    assert not [p for p in answer.payloads if isinstance(p, pl.Notify) and p.is_error]


def test_a_required_additional_key_exchange_is_no_proposal_chosen():
    # RFC 9370 §2.2.1: an additional key exchange without NONE is required; a responder without it refuses
    answer = _answer_to_offer("aes256gcm16-prfsha384-x25519-ke1_mlkem768")
    assert [p.notify_type for p in answer.payloads if isinstance(p, pl.Notify)] == [NotifyType.NO_PROPOSAL_CHOSEN]
