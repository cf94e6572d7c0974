"""EAP in IKE_AUTH (RFC 7296 §2.16) and two authentication rounds (RFC 4739) between our daemon
and strongSwan's charon, each as the road warrior (EAP peer, IKE initiator) and as the gateway
(EAP server, IKE responder, authenticated by its certificate): EAP-MD5, EAP-MSCHAPv2 (with
strongSwan's MSK), EAP-TLS and EAP-TTLS (inner EAP-MD5 or EAP-MSCHAPv2, strongSwan's
phase2_method), with and without an EAP-Identity round. Every capture must
dissect cleanly in tshark and our decoder must agree with it.

Our daemon runs on swgwa (203.0.113.1), charon on swgwb (203.0.113.2), as in
test_ike_strongswan.py; "ours-initiator" makes ours the road warrior.
"""
from __future__ import annotations

from typing import Any

import pytest

from lab.conf.writer import render

from .conftest import GATEWAYS, PEER, S2SLab
from .test_ike_strongswan import OURS, ROLES, SWAN, Pair, exchanges, install_pki, make_pki, wait_until

pytestmark = [pytest.mark.interop, pytest.mark.root]

USER, PASSWORD = "carol", "carol-lab-only-password"
METHODS = ("md5", "mschapv2", "tls")
STRONGSWAN_NAME = {"md5": "EAP_MD5", "mschapv2": "EAP_MSCHAPV2", "tls": "EAP_TLS", "ttls": "EAP_TTLS"}


def eap_conf(gateway: str, *, client: bool, method: str, rounds: int = 1, ask_identity: bool = True,
             password: str = PASSWORD, ttls: dict[str, str] | None = None) -> str:
    """swanctl.conf of `gateway` as road warrior (`client`) or as EAP gateway, read alike by
    charon and our daemon. The EAP user is carol, but with EAP-TLS the user is the client's
    gateway id, which its certificate names."""
    me, peer = GATEWAYS[gateway], GATEWAYS[PEER[gateway]]
    client_id = me["id"] if client else peer["id"]
    user = client_id if method == "tls" else USER
    if not ask_identity and rounds == 1:
        client_id = user  # without an EAP-Identity round the EAP identity is the IKE identity
    conn: dict[str, Any] = {"version": 2, "local_addrs": me["wan"], "remote_addrs": peer["wan"] if client else "%any",
                            "proposals": "aes128gcm16-prfsha256-x25519", "mobike": False}
    eap_round: dict[str, Any] = {"auth": f"eap-{method}"}
    if client:
        eap_round["eap_id"] = user
        if method == "tls":
            eap_round["certs"] = "gw.pem"
        if rounds == 1:
            conn["local"] = dict(eap_round, id=client_id)
        else:
            conn["local-1"] = {"auth": "pubkey", "id": client_id, "certs": "gw.pem"}
            conn["local-2"] = dict(eap_round, id=user)
        conn["remote"] = {"auth": "pubkey", "id": peer["id"]}
    else:
        if ask_identity:
            eap_round["eap_id"] = "%any"
        conn["local"] = {"auth": "pubkey", "id": me["id"], "certs": "gw.pem"}
        if rounds == 1:
            conn["remote"] = eap_round
        else:
            conn["remote-1"] = {"auth": "pubkey", "id": client_id}
            conn["remote-2"] = eap_round
    conn["children"] = {"net": {"local_ts": me["local_ts"], "remote_ts": peer["local_ts"],
                                "esp_proposals": "aes128gcm16", "mode": "tunnel"}}
    tree: dict[str, Any] = {"connections": {"s2s": conn}}
    if method != "tls":
        tree["secrets"] = {"eap-carol": {"id": USER, "secret": password}}
    if ttls:
        # charon.plugins.eap-ttls for charon (lab.net.strongswan copies it), the same names for ours
        tree["ipsec-lab"] = {"eap-ttls": dict(ttls)}
    return render(tree)


def eap_pair(lab: S2SLab, role: str, method: str, rounds: int = 1, ask_identity: bool = True,
             client_password: str = PASSWORD, ttls: dict[str, str] | None = None) -> Pair:
    ours_client = role == "ours-initiator"
    ours = lab.use_ours(OURS, eap_conf(OURS, client=ours_client, method=method, rounds=rounds,
                                       ask_identity=ask_identity,
                                       password=client_password if ours_client else PASSWORD, ttls=ttls))
    swan = lab.use_strongswan(SWAN, eap_conf(SWAN, client=not ours_client, method=method, rounds=rounds,
                                             ask_identity=ask_identity,
                                             password=PASSWORD if ours_client else client_password, ttls=ttls))
    pki = make_pki("ecdsa")
    for gateway in (OURS, SWAN):
        install_pki(lab, gateway, pki)
    dump = lab.capture(OURS, "ike.pcap")
    return Pair(lab, ours, swan, ours_client, dump)


def our_notes(pair: Pair, what: str) -> list[dict]:
    return [r for r in pair.trace() if r["kind"] == "note" and r.get("what") == what]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("method", METHODS)
def test_eap(interop_lab, role, method):
    pair = eap_pair(interop_lab, role, method)
    pair.up()
    ours, theirs = pair.settled()
    log = pair.swan.log_text()
    msk = "no MSK" if method == "md5" else "MSK"
    assert f"EAP method {STRONGSWAN_NAME[method]} succeeded, {msk} established" in log, pair.swan.log_tail()
    success = our_notes(pair, "eap_success")
    assert len(success) == 1 and success[0]["msk"] is (method != "md5")
    user = GATEWAYS[OURS if pair.ours_initiates else SWAN]["id"] if method == "tls" else USER
    if pair.ours_initiates:
        # strongSwan's gateway asked who we are, ran the method and checked our AUTH over the MSK
        assert f"received EAP identity '{user}'" in log
        assert "authentication of 'gwa.lab' with EAP successful" in log
    else:
        assert f"server requested EAP_IDENTITY" in log and f"sending '{user}'" in log
        assert "authentication of 'gwa.lab' with ECDSA_WITH_SHA256_DER successful" in log
        assert success[0]["identity"] == user
    messages = pair.finish()
    auth = [m for m in exchanges(messages) if m == "IKE_AUTH"]
    # identity, the method's round trips, EAP Success, the two AUTHs: more than one exchange
    assert len(auth) >= 8 and len(auth) % 2 == 0, exchanges(messages)


@pytest.mark.parametrize("role", ROLES)
def test_mschapv2_without_identity_round(interop_lab, role):
    # without eap_id on the gateway, the EAP identity is the IKE identity: no EAP-Identity round
    pair = eap_pair(interop_lab, role, "mschapv2", ask_identity=False)
    pair.up()
    pair.settled()
    log = pair.swan.log_text()
    assert "EAP_IDENTITY" not in log
    assert "EAP method EAP_MSCHAPV2 succeeded, MSK established" in log
    pair.finish()


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("method", ["mschapv2", "md5"])
def test_two_rounds_certificate_then_eap(interop_lab, role, method):
    pair = eap_pair(interop_lab, role, method, rounds=2)
    pair.up()
    ours, theirs = pair.settled()
    log = pair.swan.log_text()
    # RFC 4739: the client's certificate first, then EAP as a second round
    assert "authentication of 'gwa.lab' with ECDSA_WITH_SHA256_DER successful" in log, pair.swan.log_tail()
    assert f"EAP method {STRONGSWAN_NAME[method]} succeeded" in log
    sent = pair.messages(dir="out", exchange="IKE_AUTH")
    if pair.ours_initiates:
        assert "N(ANOTHER_AUTH_FOLLOWS)" in sent[0]["payloads"] and "AUTH" in sent[0]["payloads"]
        assert sent[1]["payloads"] == ["IDi"]
    else:
        received = pair.messages(dir="in", exchange="IKE_AUTH")
        assert "N(ANOTHER_AUTH_FOLLOWS)" in received[0]["payloads"]
        assert received[1]["payloads"] == ["IDi"]
    assert len(our_notes(pair, "eap_success")) == 1
    pair.finish()


@pytest.mark.parametrize("role", ROLES)
def test_wrong_password_is_refused(interop_lab, role):
    pair = eap_pair(interop_lab, role, "mschapv2", client_password="not-carols-password")
    if pair.ours_initiates:
        pair.swan.start()
        pair.swan.load_all()
        pair.ours.start()
        answer = pair.ours.ctl("initiate", ike="s2s", child="net", timeout=20)
        assert not answer["ok"], answer
    else:
        pair.ours.start()
        pair.swan.start()
        pair.swan.load_all()
        with pytest.raises(Exception):
            pair.swan.initiate(child="net", timeout=15)
    wait_until(lambda: not pair.our_sas(), 15, "no SA left on our side")
    failed = [e for e in pair.events("AuthFailed")]
    assert failed, pair.trace()[-10:]
    if not pair.ours_initiates:
        assert "wrong password" in failed[0]["reason"]
    pair.finish(answered=False)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("inner", ["md5", "mschapv2"])
def test_ttls(interop_lab, role, inner):
    # RFC 5281 as strongSwan's eap-ttls plugin speaks it: the TLS tunnel with the gateway's
    # certificate, phase 2 an inner EAP method in EAP-Message AVPs, the MSK from "ttls keying material"
    pair = eap_pair(interop_lab, role, "ttls", ttls={"phase2_method": inner})
    pair.up()
    pair.settled()
    log = pair.swan.log_text()
    assert "EAP method EAP_TTLS succeeded, MSK established" in log, pair.swan.log_tail()
    success = our_notes(pair, "eap_success")
    assert len(success) == 1 and success[0]["msk"] is True
    if pair.ours_initiates:
        # strongSwan's TTLS server: our inner EAP-Identity, then the method it asked for in the tunnel
        assert "received tunneled EAP-TTLS AVP [EAP/RES/ID]" in log
        assert f"EAP_TTLS phase2 authentication of '{USER}' with {STRONGSWAN_NAME[inner]} successful" in log
        assert "authentication of 'gwa.lab' with EAP successful" in log  # our AUTH over the TTLS MSK
    else:
        # strongSwan's TTLS client checked our certificate, answered our inner method, and our AUTH
        assert f"server requested {STRONGSWAN_NAME[inner]} authentication" in log
        assert "sending tunneled EAP-TTLS AVP [EAP/RES/ID]" in log
        assert success[0]["identity"] == USER
    pair.finish()


def test_strongswan_ttls_server_refuses_pap(interop_lab):
    # strongSwan's eap-ttls takes EAP-Message AVPs only (eap_ttls_avp.c): our PAP phase 2 is refused
    pair = eap_pair(interop_lab, "ours-initiator", "ttls", ttls={"phase2_client": "pap"})
    pair.swan.start()
    pair.swan.load_all()
    pair.ours.start()
    answer = pair.ours.ctl("initiate", ike="s2s", child="net", timeout=20)
    assert not answer["ok"], answer
    assert "expected AVP_EAP_MESSAGE but received 1" in pair.swan.log_text(), pair.swan.log_tail()
    wait_until(lambda: not pair.our_sas(), 15, "no SA left on our side")
    pair.finish(answered=False)
