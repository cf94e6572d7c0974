"""EAP-TTLS (RFC 5281) carried to FreeRADIUS 3.2 through our gateway (auth = eap-radius): our
client with each phase 2 (PAP, MS-CHAP-V2 AVPs, inner EAP-MD5) logs in as carol behind the
outer identity "anonymous"; strongSwan 5.9.8's client (inner EAP, FreeRADIUS's default EAP-MD5)
as carol outside and inside (strongSwan uses one EAP identity for both, and without an
EAP-Identity round its IKE identity). The TLS tunnel ends in FreeRADIUS, whose certificate (the lab CA's, for
gwb.lab: local.aaa_id on the client) the client checks; the gateway keys the AUTH payloads with
the MSK FreeRADIUS derived from the tunnel ("ttls keying material", sent as MS-MPPE keys). On
the RADIUS link the capture shows the outer identity only: never the password in clear, and
with our client not the user name either.

Our gateway runs on swgwa (203.0.113.1); the client (ours or charon) and radiusd on swgwb."""
from __future__ import annotations

from typing import Any

import pytest

from lab.conf.writer import render

from .conftest import GATEWAYS, RADIUS_SECRET, freeradius
from .test_eap_strongswan import PASSWORD, USER
from .test_ike_strongswan import OURS, SWAN, Pair, install_pki, make_pki, wait_until

pytestmark = [pytest.mark.interop, pytest.mark.root]

OUTER = "anonymous"


def gateway_conf() -> str:
    """Our gateway: its certificate for itself, eap-radius for the peer, FreeRADIUS on swgwb."""
    me, peer = GATEWAYS[OURS], GATEWAYS[SWAN]
    conn: dict[str, Any] = {"version": 2, "local_addrs": me["wan"], "remote_addrs": "%any",
                            "proposals": "aes128gcm16-prfsha256-x25519", "mobike": False,
                            "local": {"auth": "pubkey", "id": me["id"], "certs": "gw.pem"},
                            "remote": {"auth": "eap-radius"},
                            "children": {"net": {"local_ts": me["local_ts"], "remote_ts": peer["local_ts"],
                                                 "esp_proposals": "aes128gcm16", "mode": "tunnel"}}}
    tree = {"connections": {"s2s": conn},
            "ipsec-lab": {"eap-radius": {"retransmit_tries": 3, "retransmit_timeout": 2,
                                         "servers": {"primary": {"address": peer["wan"], "secret": RADIUS_SECRET}}}}}
    return render(tree)


def client_conf(phase2: str, password: str = PASSWORD) -> str:
    """The road warrior on swgwb: IKE identity and outer EAP identity "anonymous", the real user
    (eap_id) only inside the tunnel; FreeRADIUS's certificate names gwb.lab (aaa_id)."""
    me, peer = GATEWAYS[SWAN], GATEWAYS[OURS]
    outer = USER if phase2 == "strongswan" else OUTER
    conn: dict[str, Any] = {"version": 2, "local_addrs": me["wan"], "remote_addrs": peer["wan"],
                            "proposals": "aes128gcm16-prfsha256-x25519", "mobike": False,
                            "local": {"auth": "eap-ttls", "id": outer, "eap_id": USER, "aaa_id": me["id"]},
                            "remote": {"auth": "pubkey", "id": peer["id"]},
                            "children": {"net": {"local_ts": me["local_ts"], "remote_ts": peer["local_ts"],
                                                 "esp_proposals": "aes128gcm16", "mode": "tunnel"}}}
    tree: dict[str, Any] = {"connections": {"s2s": conn},
                            "secrets": {"eap-carol": {"id": USER, "secret": password}}}
    if phase2 != "strongswan":
        tree["ipsec-lab"] = {"eap-ttls": {"phase2_client": phase2}}
    return render(tree)


def setup(lab, phase2: str, password: str = PASSWORD):
    pki = make_pki("ecdsa")
    server = freeradius(lab, OURS)
    server.set_users(f'{USER} Cleartext-Password := "{PASSWORD}"\n')
    server.set_tls(pki.certs[GATEWAYS[SWAN]["id"]], pki.keys[GATEWAYS[SWAN]["id"]], pki.ca)
    gateway = lab.use_ours(OURS, gateway_conf())
    if phase2 == "strongswan":
        client = lab.use_strongswan(SWAN, client_conf(phase2, password))
    else:
        client = lab.use_ours(SWAN, client_conf(phase2, password))
    for node in (OURS, SWAN):
        install_pki(lab, node, pki)
    ike = lab.capture(OURS, "ike.pcap")
    radius = lab.capture(OURS, "radius.pcap", "udp port 1812")
    return server, gateway, client, ike, radius


def radius_payloads(capture) -> bytes:
    from scapy.all import UDP, rdpcap
    return b"".join(bytes(p[UDP].payload) for p in rdpcap(str(capture.path)) if UDP in p)


def notes(trace: list[dict], what: str) -> list[dict]:
    return [r for r in trace if r["kind"] == "note" and r.get("what") == what]


@pytest.mark.parametrize("phase2", ["pap", "mschapv2", "eap", "strongswan"])
def test_ttls_through_our_gateway_to_freeradius(interop_lab, phase2):
    lab = interop_lab
    server, gateway, client, ike, radius = setup(lab, phase2)
    server.start()
    try:
        if phase2 == "strongswan":
            pair = Pair(lab, gateway, client, False, ike)
            pair.up()
            pair.settled()
            log = client.log_text()
            assert "EAP method EAP_TTLS succeeded, MSK established" in log, client.log_tail()
            assert "server requested EAP_MD5 authentication" in log  # FreeRADIUS's ttls default_eap_type
        else:
            gateway.start()
            client.start()
            answer = client.ctl("initiate", ike="s2s", child="net", timeout=30)
            assert answer["ok"], f"{answer}\n{client.log_tail()}\n{gateway.log_tail()}\n{server.log_tail(60)}"
            wait_until(lambda: gateway.raw_sas() and gateway.raw_sas()[0]["state"] == "ESTABLISHED", 10,
                       "the gateway's IKE SA")
            success = notes(Pair(lab, client, None, True, ike).trace(), "eap_success")  # type: ignore[arg-type]
            assert len(success) == 1 and success[0]["msk"], success
    finally:
        radius_log = server.log_text()
        server.stop()
    ike.stop()
    radius.stop()
    ours = Pair(lab, gateway, None, False, ike).trace()  # type: ignore[arg-type]
    codes = [r["code"] for r in notes(ours, "radius") if r["dir"] == "in"]
    assert codes[-1] == "Access-Accept" and codes.count("Access-Challenge") >= 3, codes
    accepted = [r for r in notes(ours, "eap_success")]
    assert len(accepted) == 1 and accepted[0]["msk"], accepted  # the MSK from FreeRADIUS's MS-MPPE keys
    # FreeRADIUS opened the tunnel and ran the inner method of the phase 2 the client sent
    assert "eap_ttls: Got tunneled Access-Accept" in radius_log, radius_log[-3000:]
    inner = {"pap": "Found Auth-Type = PAP", "mschapv2": "Found Auth-Type = mschap",
             "eap": "Peer sent packet with method EAP MD5 (4)",
             "strongswan": "Peer sent packet with method EAP MD5 (4)"}[phase2]
    assert inner in radius_log.split("eap_ttls: Got tunneled request", 1)[-1], radius_log[-3000:]
    # what the RADIUS link shows: the outer identity; never the password, nor (ours) the user
    octets = radius_payloads(radius)
    assert PASSWORD.encode() not in octets
    if phase2 == "strongswan":
        assert USER.encode() in octets
    else:
        assert OUTER.encode() in octets and USER.encode() not in octets
    assert "Traceback" not in gateway.log_path.read_text(errors="replace")


def test_ttls_pap_wrong_password_is_refused_by_freeradius(interop_lab):
    lab = interop_lab
    server, gateway, client, ike, radius = setup(lab, "pap", password="not-carols-password")
    server.start()
    try:
        gateway.start()
        client.start()
        answer = client.ctl("initiate", ike="s2s", child="net", timeout=30)
        assert not answer["ok"], answer
    finally:
        server.stop()
    ike.stop()
    radius.stop()
    ours = Pair(lab, gateway, None, False, ike).trace()  # type: ignore[arg-type]
    assert [r["code"] for r in notes(ours, "radius") if r["dir"] == "in"][-1] == "Access-Reject"
    assert not gateway.raw_sas()
