"""EAP in IKE_AUTH (RFC 7296 §2.16) and two authentication rounds (RFC 4739) between two
endpoints in memory: a road warrior (a) and a gateway (b) that authenticates with its
certificate and runs the EAP server; every method, with messages lost, with wrong passwords
and identities."""
from __future__ import annotations

import datetime
import random

import pytest

from lab.ike.config import AuthConfig
from lab.ike.const import ExchangeType
from lab.ike.identity import Identity
from lab.ike.memnet import Net, eap_configs, make_net
from lab.ike.message import Message, classify_udp
from lab.ike.settings import Settings

from .test_ike_exchanges import assert_consistent, kinds

METHODS = ("mschapv2", "md5", "tls", "ttls")


def _clock():
    return datetime.datetime(2026, 6, 1, tzinfo=datetime.timezone.utc)


def eap_net(method: str = "mschapv2", settings: Settings | None = None, configs: tuple | None = None,
            **options) -> Net:
    """Client a and gateway b of `method` (eap_configs' options), or of `configs` (a, b) as given."""
    net = make_net(*(configs or eap_configs(method, **options)), settings)
    for endpoint in net.endpoints.values():
        endpoint.wall_clock = _clock
    return net


def connect(net: Net, horizon: float = 5.0) -> None:
    net.endpoints["a"].initiate("s2s", net.now)
    net.settle(horizon)


def messages(net: Net, side: str = "a") -> list[dict]:
    return [r for r in net.endpoints[side].trace_records if r["kind"] == "message"]


def notes(net: Net, what: str, side: str = "a") -> list[dict]:
    return [r for r in net.endpoints[side].trace_records if r["kind"] == "note" and r.get("what") == what]


def refusals(net: Net, side: str = "b") -> list[str]:
    """The reasons of the AuthFailed events of `side`'s trace, in order."""
    return [r["reason"] for r in net.endpoints[side].trace_records if r.get("event") == "AuthFailed"]


def ike_auth_count(net: Net) -> int:
    return sum(1 for _, _, d in net.log
               if Message.parse(classify_udp(d.dst[1], d.data)[1]).exchange == ExchangeType.IKE_AUTH)


@pytest.mark.parametrize("rounds", [1, 2])
@pytest.mark.parametrize("method", METHODS)
def test_eap_establishes(method, rounds):
    net = eap_net(method, rounds=rounds)
    connect(net)
    assert_consistent(net)
    for side in "ab":
        assert kinds(net.events(side)) == ["IkeSaUp", "ChildSaUp"]
    ours = messages(net)
    auth = [m for m in ours if m["exchange"] == "IKE_AUTH"]
    first = auth[0]["payloads"]
    if rounds == 1:
        # RFC 7296 §2.16: no AUTH in the first request asks for EAP; the responder's answer carries its AUTH and EAP
        assert "AUTH" not in first and first[0] == "IDi"
        assert auth[1]["payloads"][:1] == ["IDr"] and "AUTH" in auth[1]["payloads"] and auth[1]["payloads"][-1] == "EAP"
    else:
        # RFC 4739 §3: certificate first, ANOTHER_AUTH_FOLLOWS, then a new IDi with no AUTH
        assert "AUTH" in first and "N(ANOTHER_AUTH_FOLLOWS)" in first
        assert auth[2]["payloads"] == ["IDi"] and auth[3]["payloads"] == ["EAP"]
    assert auth[-2]["payloads"] == ["AUTH"]
    assert auth[-1]["payloads"][:1] == ["AUTH"] and auth[-1]["payloads"][-3:] == ["SA", "TSi", "TSr"]
    assert all(m["payloads"] == ["EAP"] for m in auth[2 if rounds == 1 else 3:-2])
    success = notes(net, "eap_success")
    assert len(success) == 1 and success[0]["msk"] is (method != "md5")
    ike_a = next(iter(net.endpoints["a"].by_id.values()))
    ike_b = next(iter(net.endpoints["b"].by_id.values()))
    assert str(ike_b.remote_eap_id) == "carol" and str(ike_a.local_eap_id) == "carol"
    assert str(ike_b.remote_id) == ("carol" if rounds == 1 else "gwa.lab")


def test_mschapv2_exchange_count_and_identity_round():
    net = eap_net("mschapv2")
    connect(net)
    # IDi / IDr+AUTH+EAP(Identity) / Identity / Challenge / Response / Success / ack / EAP Success / AUTH / AUTH
    assert ike_auth_count(net) == 10
    ours = [r["packet"] for r in notes(net, "eap")]
    assert ours == ["Request/IDENTITY id " + ours[0][-4:], "Response/IDENTITY id " + ours[0][-4:]] + ours[2:]
    assert [p.split(" id")[0] for p in ours[2:]] == ["Request/MSCHAPV2", "Response/MSCHAPV2"] * 2 + ["Success"]


def test_without_eap_id_the_gateway_skips_the_identity_round():
    net = eap_net("mschapv2", ask_identity=False)
    connect(net)
    assert_consistent(net)
    assert ike_auth_count(net) == 8
    assert not any("IDENTITY" in r["packet"] for r in notes(net, "eap"))


@pytest.mark.parametrize("method", ["mschapv2", "tls", "ttls"])
def test_auth_after_eap_is_keyed_with_the_msk(method, monkeypatch):
    # RFC 7296 §2.16: both AUTHs after EAP are keyed with the MSK; a gateway with another MSK
    # (as a man in the middle relaying the EAP run would have) fails the initiator's AUTH
    from lab.ike.eap import EapServer

    original = EapServer.receive

    def other_msk(self, packet):
        answer = original(self, packet)
        if self.succeeded:
            self.msk = bytes(64)
        return answer

    monkeypatch.setattr(EapServer, "receive", other_msk)
    net = eap_net(method)
    connect(net)
    reasons = refusals(net)
    assert reasons and "AUTH over the EAP MSK does not match" in reasons[0]
    assert "IkeSaUp" not in kinds(net.events("a"))


@pytest.mark.parametrize("lost", range(2, 12))
def test_each_message_of_mschapv2_lost_once(lost):
    net = eap_net("mschapv2")
    sent = []

    def drop(name, datagram):
        sent.append(datagram)
        return len(sent) - 1 == lost

    net.drop = drop
    connect(net, 30)
    assert_consistent(net)
    assert kinds(net.events("a")) == ["IkeSaUp", "ChildSaUp"]
    assert kinds(net.events("b")) == ["IkeSaUp", "ChildSaUp"]
    # RFC 7296 §2.1: a lost request is sent again, a lost response answered from the cache
    assert net.endpoints["a"].stats["retransmits"] == 1
    assert net.endpoints["b"].stats["responses_resent"] == (1 if lost % 2 else 0)


@pytest.mark.parametrize("rounds", [1, 2])
@pytest.mark.parametrize("method", METHODS)
def test_a_fifth_of_the_datagrams_lost(method, rounds):
    # quick retransmissions: the whole conversation must end within the half-open timeout (30 s)
    net = eap_net(method, Settings(export_keys=True, retransmit_timeout=0.5), rounds=rounds)
    rng = random.Random(f"{method}-{rounds}")
    net.drop = lambda name, datagram: rng.random() < 0.2
    connect(net, 60)
    assert_consistent(net)
    lost = len(net.log) - len(net.delivered)
    assert lost >= 1 and net.endpoints["a"].stats["retransmits"] >= 1


@pytest.mark.parametrize("method", ["mschapv2", "md5", "ttls"])
def test_wrong_password_fails_on_both_sides(method):
    net = eap_net(method, client_password="not-the-password")
    connect(net)
    for side in "ab":
        assert kinds(net.events(side))[:1] == ["AuthFailed"] and "IkeSaUp" not in kinds(net.events(side)), side
        assert not net.endpoints[side].by_id
    reasons = refusals(net)
    assert "wrong password" in reasons[0]


def test_mschapv2_client_refuses_a_gateway_that_does_not_know_the_password():
    # RFC 2759 §5: the authenticator response proves the server knows the password; the gateway
    # has another password for carol: it refuses carol first (E=691)
    net = eap_net("mschapv2", gateway_password="gateway-thinks-otherwise")
    connect(net)
    reasons = refusals(net, "a")
    assert reasons and "rejected our MS-CHAPv2 response" in reasons[0]


def test_mschapv2_client_checks_the_authenticator_response(monkeypatch):
    # RFC 2759 §5: a Success whose S= is wrong comes from a server without the password
    from lab.ike.eap.mschapv2 import MsChapV2Server

    original = MsChapV2Server.process

    def forged(self, identifier, type_data):
        answer = original(self, identifier, type_data)
        if answer is not None and b"S=" in answer:
            answer = answer.replace(b"S=", b"S=0") [:len(answer)]
        return answer

    monkeypatch.setattr(MsChapV2Server, "process", forged)
    net = eap_net("mschapv2")
    connect(net)
    reasons = refusals(net, "a")
    assert reasons and "authenticator response is wrong" in reasons[0]
    assert "IkeSaUp" not in kinds(net.events("a"))


def test_eap_identity_outside_eap_id_is_refused():
    a, b = eap_configs("mschapv2")
    b.connections["s2s"].remote.eap_id = Identity.parse("dave")
    net = eap_net(configs=(a, b))
    connect(net)
    reasons = refusals(net)
    assert reasons and "EAP identity 'carol' is not accepted" in reasons[0]
    assert not net.endpoints["a"].by_id and not net.endpoints["b"].by_id


def test_eap_tls_client_certificate_must_name_the_eap_identity():
    a, b = eap_configs("tls", ask_identity=False)
    a.connections["s2s"].local.id = Identity.parse("dave")  # IDi dave, certificate carol
    a.secrets.eap[0].ids.append(Identity.parse("dave"))
    net = eap_net(configs=(a, b))
    connect(net)
    reasons = refusals(net)
    assert reasons and "identity dave is not in the peer's certificate" in reasons[0]


def test_client_wanting_another_method_gets_a_nak_and_fails():
    a, b = eap_configs("mschapv2")
    a.connections["s2s"].local = AuthConfig("eap-md5", Identity.parse("carol"))
    net = eap_net(configs=(a, b))
    connect(net)
    reasons = refusals(net)
    assert reasons and "Nak" in reasons[0] and "MD5_CHALLENGE" in reasons[0]


def test_two_rounds_refused_when_the_gateway_wants_one():
    a, b = eap_configs("mschapv2", rounds=2)
    b.connections["s2s"].extra_remote = []
    net = eap_net(configs=(a, b))
    connect(net)
    reasons = refusals(net)
    assert reasons and "another authentication round" in reasons[0]


def test_gateway_wanting_two_rounds_refuses_one():
    a, b = eap_configs("mschapv2", rounds=2)
    a.connections["s2s"].extra_local = []
    net = eap_net(configs=(a, b))
    connect(net)
    reasons = refusals(net)
    assert reasons and "wants 2 authentication rounds" in reasons[0]


@pytest.mark.parametrize("client,server", [("eap", "md5"), ("eap", "mschapv2"), ("pap", "md5"), ("mschapv2", "md5")])
def test_ttls_each_phase2_in_ike_auth(client, server):
    # RFC 5281: our client's phase 2 (inner EAP as strongSwan's, PAP or MS-CHAP-V2 AVPs), our gateway's inner EAP method
    a, b = eap_configs("ttls")
    a.ttls.phase2_client, b.ttls.phase2_method = client, server
    net = eap_net(configs=(a, b))
    connect(net)
    assert_consistent(net)
    assert kinds(net.events("a")) == ["IkeSaUp", "ChildSaUp"]
    assert notes(net, "eap_success")[0]["msk"] is True
    ike_b = next(iter(net.endpoints["b"].by_id.values()))
    assert str(ike_b.remote_eap_id) == "carol"


def test_ttls_client_refuses_a_gateway_certificate_of_another_name():
    # swanctl.conf local.aaa_id: the TTLS server's certificate must name it (here it names gwb.lab)
    a, b = eap_configs("ttls")
    a.connections["s2s"].local.aaa_id = Identity.parse("radius.lab")
    net = eap_net(configs=(a, b))
    connect(net)
    assert "IkeSaUp" not in kinds(net.events("a"))
    reasons = refusals(net, "a")
    assert reasons and "TLS certificate refused" in reasons[0]
