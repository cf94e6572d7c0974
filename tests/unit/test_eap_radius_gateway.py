"""auth = eap-radius in our gateway, in memory: a road warrior (a, EAP-MSCHAPv2 as carol)
against a gateway (b) whose remote round is eap-radius, with a fake RADIUS server that runs
our own EAP-MSCHAPv2 server and answers as FreeRADIUS does (Access-Challenge with State,
Access-Accept with EAP Success, the MS-MPPE keys, Framed-IP-Address and Class). The gateway's
IKE_AUTH response waits while RADIUS is asked; its AUTH is keyed with the MSK from the MPPE
keys; the virtual IP is the Framed-IP-Address; lies are refused and the true answer taken."""
from __future__ import annotations

import ipaddress
import random
import struct

import pytest

from lab.ike import radius
from lab.ike.config import AuthConfig, RadiusServer, RadiusSettings
from lab.ike.const import EapCode, EapType
from lab.ike.eap import EapPacket, EapServer
from lab.ike.eap.mschapv2 import MsChapV2Server
from lab.ike.events import RadiusRequest
from lab.ike.memnet import EAP_PASSWORD

from .test_eap_exchanges import eap_net, messages
from .test_ike_exchanges import kinds
from .test_radius import attributes_of, build, rfc2548_encrypt, sign

SECRET = b"testing123"
FRAMED = "10.3.0.7"


class FakeRadius:
    """A RADIUS server for carol: EAP-MSCHAPv2 with `password`, Framed-IP-Address `framed`."""

    def __init__(self, password: bytes = EAP_PASSWORD.encode(), framed: str | None = FRAMED, secret: bytes = SECRET,
                 users: tuple[bytes, ...] = (b"carol",)):
        self.users = users
        self.password = password
        self.framed = framed
        self.secret = secret
        self.server: EapServer | None = None
        self.rng = random.Random(3)
        self.requests: list[bytes] = []
        self.states: list[bytes | None] = []

    def answer(self, request: bytes) -> bytes:
        self.requests.append(request)
        attrs = attributes_of(request)
        eap = EapPacket.parse(b"".join(v for k, v in attrs if k == radius.EAP_MESSAGE))
        self.states.append(next((v for k, v in attrs if k == radius.STATE), None))
        if eap.type == EapType.IDENTITY and eap.type_data not in self.users:
            # FreeRADIUS without the user: Access-Reject with EAP Failure (RFC 3579 §2.6.3)
            failure = EapPacket(EapCode.FAILURE, eap.identifier).serialize()
            return sign(build(radius.ACCESS_REJECT, request[1], [(radius.EAP_MESSAGE, failure),
                                                                  (radius.MESSAGE_AUTHENTICATOR, bytes(16)),
                                                                  (radius.REPLY_MESSAGE, b"unknown user")]),
                        request, self.secret)
        if eap.type == EapType.IDENTITY:
            self.server = EapServer(EapType.MSCHAPV2, lambda who: MsChapV2Server(
                lambda name: self.password, self.rng.randbytes, who), 7, ask_identity=False, identity=eap.type_data)
            out = self.server.start()
        else:
            assert self.server is not None
            out = self.server.receive(eap)
        ma = (radius.MESSAGE_AUTHENTICATOR, bytes(16))
        eap_attr = (radius.EAP_MESSAGE, out.serialize())
        if out.code == EapCode.REQUEST:
            return sign(build(radius.ACCESS_CHALLENGE, request[1], [eap_attr, (radius.STATE, b"st%d" % len(self.requests)), ma]),
                        request, self.secret)
        if out.code == EapCode.FAILURE:
            return sign(build(radius.ACCESS_REJECT, request[1], [eap_attr, ma]), request, self.secret)
        msk = self.server.msk
        assert msk is not None and len(msk) == 64
        attrs = [eap_attr, ma, (radius.CLASS, b"staff")]
        if self.framed:
            attrs.append((radius.FRAMED_IP_ADDRESS, ipaddress.IPv4Address(self.framed).packed))
        for kind, key in ((radius.MS_MPPE_RECV_KEY, msk[:32]), (radius.MS_MPPE_SEND_KEY, msk[32:])):
            value = rfc2548_encrypt(key, self.secret, request[4:20], bytes([0x80 | len(self.requests), 1]))
            attrs.append((radius.VENDOR_SPECIFIC, struct.pack("!IBB", radius.MICROSOFT, kind, len(value) + 2) + value))
        return sign(build(radius.ACCESS_ACCEPT, request[1], attrs), request, self.secret)


def radius_net(fake: FakeRadius | None = None, lie: bool = False, delay: float = 0.0, pools: bool = False):
    """The EAP-MSCHAPv2 pair with b's remote round auth = eap-radius; `fake` answers each
    RadiusRequest (the first after `delay` seconds, or at the next step after; None: nobody answers); with `lie` a forged answer comes first."""
    net = eap_net("mschapv2", a_vips=["0.0.0.0"])
    b = net.endpoints["b"]
    b.config.connections["s2s"].remote = AuthConfig("eap-radius")
    b.config.radius = RadiusSettings([RadiusServer("primary", "10.9.0.2", SECRET)])
    seen: list = []
    due: list[tuple[float, int, bytes]] = []
    net.refused = []

    def after_step() -> None:
        while (event := b.next_event()) is not None:
            seen.append(event)
            if isinstance(event, RadiusRequest) and fake is not None:
                due.append((net.now + (delay if not fake.requests else 0.0), event.ike_sa, event.packet))
        for entry in [d for d in due if d[0] <= net.now]:
            due.remove(entry)
            _, ike_id, packet = entry
            true = fake.answer(packet)
            if lie:
                try:
                    b.radius_answer(ike_id, sign(true, packet, b"forger"), net.now)
                except radius.RadiusError as error:
                    net.refused.append(str(error))
            b.radius_answer(ike_id, true, net.now)
    net.after_step = after_step
    net.b_events = seen
    return net


def connect(net, horizon: float = 10.0) -> None:
    net.endpoints["a"].initiate("s2s", net.now)
    net.settle(horizon)


def test_eap_radius_establishes_with_the_msk_and_the_framed_ip():
    fake = FakeRadius()
    net = radius_net(fake)
    connect(net)
    assert kinds(net.events("a")) == ["IkeSaUp", "ChildSaUp"]
    assert [type(e).__name__ for e in net.b_events if not isinstance(e, RadiusRequest)] == ["IkeSaUp", "ChildSaUp"]
    ike_a = next(iter(net.endpoints["a"].by_id.values()))
    ike_b = next(iter(net.endpoints["b"].by_id.values()))
    assert ike_a.virtual_ip == FRAMED and ike_b.assigned_ip == FRAMED  # RFC 2865 §5.8
    assert ike_b.radius_classes == [b"staff"]
    # the identity, then the challenge's answer with the State echoed (RFC 2865 §5.24), then the ack
    assert len(fake.requests) == 3 and fake.states == [None, b"st1", b"st2"]
    auth = [m for m in messages(net) if m["exchange"] == "IKE_AUTH"]
    assert auth[1]["payloads"][:1] == ["IDr"] and auth[1]["payloads"][-1] == "EAP"
    assert auth[-1]["payloads"][:1] == ["AUTH"] and "CP" in auth[-1]["payloads"]


def test_the_auth_after_eap_uses_the_msk_the_server_sent():
    # RFC 7296 §2.16: MPPE keys of another MSK make the gateway's AUTH check fail
    fake = FakeRadius()
    net = radius_net(fake)
    real_msk = []

    def spoil(request, _orig=fake.answer):
        raw = _orig(request)
        if raw[0] == radius.ACCESS_ACCEPT:
            real_msk.append(fake.server.msk)
            fake.server.msk = bytes(range(64))
            fake.requests.pop()
            fake.server.succeeded = True
            return _reaccept(fake, request)
        return raw
    fake.answer = spoil
    connect(net)
    assert real_msk
    reasons = [e.reason for e in net.b_events if type(e).__name__ == "AuthFailed"]
    assert reasons and "AUTH over the EAP MSK does not match" in reasons[0]
    assert "IkeSaUp" not in kinds(net.events("a"))


def _reaccept(fake: FakeRadius, request: bytes) -> bytes:
    msk = fake.server.msk
    attrs = [(radius.EAP_MESSAGE, EapPacket(EapCode.SUCCESS, fake.server.identifier).serialize()),
             (radius.MESSAGE_AUTHENTICATOR, bytes(16))]
    for kind, key in ((radius.MS_MPPE_RECV_KEY, msk[:32]), (radius.MS_MPPE_SEND_KEY, msk[32:])):
        value = rfc2548_encrypt(key, fake.secret, request[4:20], b"\x81\x01")
        attrs.append((radius.VENDOR_SPECIFIC, struct.pack("!IBB", radius.MICROSOFT, kind, len(value) + 2) + value))
    return sign(build(radius.ACCESS_ACCEPT, request[1], attrs), request, fake.secret)


def test_a_wrong_password_fails_in_mschapv2_and_the_client_gives_up():
    net = radius_net(FakeRadius(password=b"not-carols"))
    connect(net)
    assert "IkeSaUp" not in kinds(net.events("a"))
    assert [type(e).__name__ for e in net.b_events if not isinstance(e, RadiusRequest)] == ["AuthFailed",
                                                                                             "IkeSaDeleted"]
    assert not net.endpoints["b"].find()


def test_an_access_reject_ends_the_round_with_eap_failure():
    net = radius_net(FakeRadius(users=(b"dave",)))
    connect(net)
    assert "IkeSaUp" not in kinds(net.events("a"))
    reasons = [e.reason for e in net.b_events if type(e).__name__ == "AuthFailed"]
    assert reasons == ["EAP: RADIUS server primary answered Access-Reject (unknown user)"]
    auth = [m for m in messages(net, "b") if m["exchange"] == "IKE_AUTH"]
    assert auth[-1]["dir"] == "out" and auth[-1]["payloads"][-1] == "EAP"
    assert not net.endpoints["b"].find()


def test_a_forged_answer_is_refused_and_the_true_one_taken():
    # RFC 3579 §3.2: a Message-Authenticator under another secret is silently discarded
    fake = FakeRadius()
    net = radius_net(fake, lie=True)
    connect(net)
    assert len(net.refused) == 3 and all("Message-Authenticator" in r for r in net.refused)
    assert kinds(net.events("a")) == ["IkeSaUp", "ChildSaUp"]


def test_the_response_waits_and_a_retransmitted_request_gets_no_stale_response():
    # the server answers the first request after 6 s (or more): a's IKE_AUTH request is sent again meanwhile (its
    # retransmit_timeout is 4 s); RFC 7296 §2.1: b has no response to it yet and must not
    # send the previous exchange's (IKE_SA_INIT's) again
    fake = FakeRadius()
    net = radius_net(fake, delay=6.0)
    connect(net, horizon=40.0)
    assert kinds(net.events("a")) == ["IkeSaUp", "ChildSaUp"]
    b = net.endpoints["b"]
    answered = min(r["t"] for r in b.trace_records if r.get("what") == "radius" and r["dir"] == "in")
    assert answered > 6.0
    sent_before = [d for t, name, d in net.log if name == "b" and t < answered]
    assert len(sent_before) == 1  # the IKE_SA_INIT response, once
    assert b.drops["retransmitted request while its response waits for RADIUS"] >= 1
    assert net.endpoints["a"].stats["retransmits"] >= 1


def test_no_radius_answer_refuses_the_peer_and_the_gateway_goes_on():
    net = radius_net(None)
    connect(net)
    b = net.endpoints["b"]
    ike_b = next(iter(b.by_id.values()))
    assert b.radius_waiting(ike_b.unique_id)
    b.radius_failed(ike_b.unique_id, "RADIUS server primary (10.9.0.2) did not answer", net.now)
    net.settle(10.0)
    assert not b.radius_waiting(ike_b.unique_id)
    reasons = [r["reason"] for r in b.trace_records if r.get("event") == "AuthFailed"]
    assert reasons and "did not answer" in reasons[0]
    assert "IkeSaUp" not in kinds(net.events("a"))
    with pytest.raises(radius.RadiusError, match="waits"):
        b.radius_answer(ike_b.unique_id, b"\x02" * 20, net.now)
