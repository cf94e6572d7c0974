"""The EAP-RADIUS relay replaying the EAP-MSCHAPv2 conversation recorded with FreeRADIUS
(tests/data/radius): byte for byte the same Access-Requests, the same EAP to the IKE peer, the
MSK, virtual IP and Class at the end; lies refused without losing the conversation."""
from __future__ import annotations

import pytest

from lab.ike import radius
from lab.ike.const import EapCode
from lab.ike.eap import EapError, EapPacket
from lab.ike.eap.radius_relay import EapRadiusRelay

from .test_radius import (
    ACCEPT,
    DATA,
    EXCHANGES,
    REQUEST,
    SECRET,
    attributes_of,
    build,
    sign,
)


def eap_of(raw: bytes) -> bytes:
    return b"".join(v for k, v in attributes_of(raw) if k == radius.EAP_MESSAGE)


def relay() -> EapRadiusRelay:
    randoms = [bytes([EXCHANGES[0][0][1] - 1])] + [request[4:20] for request, _ in EXCHANGES]
    return EapRadiusRelay(DATA["user"].encode(), SECRET, lambda n: randoms.pop(0), nas_identifier=b"lab-gateway")


def test_the_recorded_conversation_replays_byte_for_byte():
    r = relay()
    assert r.start() == EXCHANGES[0][0]
    outcomes = []
    for i, (request, answer) in enumerate(EXCHANGES):
        if i:
            assert r.respond(eap_of(request)) == request  # the State of the challenge echoed
        outcomes.append(r.answer(answer))
    assert [o.eap.code for o in outcomes] == [EapCode.REQUEST] * (len(EXCHANGES) - 1) + [EapCode.SUCCESS]
    last = outcomes[-1]
    assert last.done and last.accepted
    assert last.msk == bytes.fromhex(DATA["peer_msk"])[:32]
    assert last.framed_ip == "10.3.0.7" and last.classes == [b"staff"]


def test_a_lie_is_refused_and_the_true_answer_still_taken():
    r = relay()
    r.start()
    for request, answer in EXCHANGES[:-1]:
        if request != EXCHANGES[0][0]:
            r.respond(eap_of(request))
        r.answer(answer)
    r.respond(eap_of(REQUEST))
    with pytest.raises(radius.RadiusError, match="Message-Authenticator"):
        r.answer(sign(ACCEPT, REQUEST, ma_secret=b"forger"))
    with pytest.raises(radius.RadiusError, match="truncated|Length"):
        r.answer(ACCEPT[:-7])
    outcome = r.answer(ACCEPT)  # the request is still pending: the real answer counts
    assert outcome.accepted and outcome.msk
    with pytest.raises(radius.RadiusError, match="no request is pending"):
        r.answer(ACCEPT)
    with pytest.raises(EapError, match="ended"):
        r.respond(eap_of(REQUEST))


def test_a_reject_ends_with_eap_failure():
    r = relay()
    request = r.start()
    reject = sign(build(radius.ACCESS_REJECT, request[1], [(radius.REPLY_MESSAGE, b"bad code")]), request)
    outcome = r.answer(reject)
    assert outcome.done and not outcome.accepted and outcome.eap.code == EapCode.FAILURE
    assert outcome.reply_message == "bad code"


def test_an_accept_carrying_an_eap_request_is_refused():
    r = relay()
    request = r.start()
    attrs = [(radius.EAP_MESSAGE, EapPacket(EapCode.REQUEST, 1, 4, b"x").serialize()),
             (radius.MESSAGE_AUTHENTICATOR, bytes(16))]
    with pytest.raises(radius.RadiusError, match="not Success"):
        r.answer(sign(build(radius.ACCESS_ACCEPT, request[1], attrs), request))


def test_only_responses_are_relayed():
    r = relay()
    r.start()
    with pytest.raises(EapError, match="not a Response"):
        r.respond(EapPacket(EapCode.REQUEST, 3, 1, b"").serialize())
