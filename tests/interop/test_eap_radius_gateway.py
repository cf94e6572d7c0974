"""Our gateway with auth = eap-radius between strongSwan 5.9.8 as the road warrior
(EAP-MSCHAPv2 as carol, asking for a virtual IP) and FreeRADIUS 3.2: the EAP conversation
relayed in RADIUS (RFC 3579), the AUTH payloads keyed with the MSK from FreeRADIUS's MS-MPPE
keys (RFC 2548), and the virtual IP strongSwan gets is the users file's Framed-IP-Address.

Our daemon runs on swgwa (203.0.113.1), charon and radiusd on swgwb (203.0.113.2)."""
from __future__ import annotations

from typing import Any

import pytest

from lab.conf.writer import render

from .conftest import GATEWAYS, RADIUS_SECRET, freeradius
from .test_eap_strongswan import PASSWORD, USER, eap_conf
from .test_ike_strongswan import OURS, SWAN, Pair, install_pki, make_pki

pytestmark = [pytest.mark.interop, pytest.mark.root]

FRAMED = "10.3.0.7"


def gateway_conf(radius_port: int = 1812) -> str:
    """Our gateway: certificate for itself, eap-radius for the peer, FreeRADIUS on swgwb."""
    me, peer = GATEWAYS[OURS], GATEWAYS[SWAN]
    conn: dict[str, Any] = {"version": 2, "local_addrs": me["wan"], "remote_addrs": "%any",
                            "proposals": "aes128gcm16-prfsha256-x25519", "mobike": False,
                            "local": {"auth": "pubkey", "id": me["id"], "certs": "gw.pem"},
                            "remote": {"auth": "eap-radius"},
                            "children": {"net": {"local_ts": me["local_ts"], "esp_proposals": "aes128gcm16",
                                                 "mode": "tunnel"}}}
    tree = {"connections": {"s2s": conn},
            "ipsec-lab": {"eap-radius": {"retransmit_tries": 3, "retransmit_timeout": 1,
                                         "servers": {"primary": {"address": peer["wan"], "secret": RADIUS_SECRET,
                                                                 "auth_port": radius_port}}}}}
    return render(tree)


def client_conf() -> str:
    """strongSwan's road warrior: EAP-MSCHAPv2 as carol, a virtual IP asked for."""
    text = eap_conf(SWAN, client=True, method="mschapv2", ask_identity=False)
    text = text.replace("mobike = no", "mobike = no\n    vips = 0.0.0.0", 1)
    return text.replace(f"local_ts = {GATEWAYS[SWAN]['local_ts']}", "local_ts = dynamic", 1)


def test_strongswan_client_through_our_gateway_to_freeradius(interop_lab):
    lab = interop_lab
    server = freeradius(lab, OURS)
    server.set_users(f'{USER} Cleartext-Password := "{PASSWORD}"\n\tFramed-IP-Address = {FRAMED}\n')
    ours = lab.use_ours(OURS, gateway_conf())
    swan = lab.use_strongswan(SWAN, client_conf())
    pki = make_pki("ecdsa")
    for gateway in (OURS, SWAN):
        install_pki(lab, gateway, pki)
    dump = lab.capture(OURS, "ike.pcap", "udp port 500 or udp port 4500 or udp port 1812")
    pair = Pair(lab, ours, swan, False, dump)
    server.start()
    try:
        pair.up()
        ours_sa, theirs = pair.settled()
    finally:
        radius_log = server.log_tail(40)
        server.stop()
    log = swan.log_text()
    assert "EAP method EAP_MSCHAPV2 succeeded, MSK established" in log, swan.log_tail()
    assert f"installing new virtual IP {FRAMED}" in log, swan.log_tail()
    assert theirs.get("local-vips") == [FRAMED], theirs
    assert ours_sa["assigned_ip"] == FRAMED, ours_sa
    success = [r for r in pair.trace() if r["kind"] == "note" and r.get("what") == "eap_success"]
    assert len(success) == 1 and success[0]["msk"], radius_log
    radius_notes = [r for r in pair.trace() if r["kind"] == "note" and r.get("what") == "radius"]
    assert [r["code"] for r in radius_notes if r["dir"] == "in"][-1] == "Access-Accept"
    assert "Traceback" not in ours.log_path.read_text(errors="replace")
    stats = ours.ctl("stats")
    counters = (stats.get("stats") or stats).get("radius", {}).get("primary", {})
    assert counters.get("answers", 0) >= 3 and counters.get("refused", 0) == 0, stats
    dump.stop()
