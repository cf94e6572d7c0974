"""strongSwan 5.9.8 as the gateway, with its eap-radius plugin, against radius-mfa's FreeRADIUS
3.2 (EAP-GTC, the TOTP check, the replay cache), and our road warrior (auth = eap-gtc as alice,
her password and the current one-time code, a virtual IP asked for): charon relays the EAP
conversation in RADIUS (RFC 3579), takes alice's address from the Access-Accept's
Framed-IP-Address (pools = radius), and refuses her second login with the same code.

The eap-radius settings stand in the swanctl.conf's ipsec-lab section, as in the scenarios;
lab.net.strongswan moves them to strongswan.conf (charon.plugins.eap-radius). Our daemon runs
on swgwa (203.0.113.1), charon and radiusd on swgwb (203.0.113.2)."""
from __future__ import annotations

import time
from typing import Any

import pytest

from lab.conf.writer import render

from .conftest import ALICE_TOTP, GATEWAYS, RADIUS_MFA, RADIUS_SECRET, freeradius
from .test_ike_strongswan import OURS, SWAN, Pair, install_pki, make_pki

pytestmark = [pytest.mark.interop, pytest.mark.root]

ALICE_PASSWORD = "alice-lab-only-password"  # radius-mfa's users file
ALICE_IP = "10.3.0.21"


def charon_conf() -> str:
    """charon as the gateway: its certificate, eap-radius for the user, addresses from RADIUS."""
    me = GATEWAYS[SWAN]
    conn: dict[str, Any] = {"version": 2, "local_addrs": me["wan"], "remote_addrs": "%any",
                            "proposals": "aes128gcm16-prfsha256-x25519", "mobike": False, "pools": "radius",
                            "local": {"auth": "pubkey", "id": me["id"], "certs": "gw.pem"},
                            "remote": {"auth": "eap-radius"},
                            "children": {"net": {"local_ts": me["local_ts"], "esp_proposals": "aes128gcm16",
                                                 "mode": "tunnel"}}}
    tree = {"connections": {"s2s": conn},
            "ipsec-lab": {"eap-radius": {"servers": {"primary": {"address": me["wan"], "secret": RADIUS_SECRET}}}}}
    return render(tree)


def client_conf() -> str:
    """Our road warrior: EAP-GTC as alice with her password and her app's TOTP secret."""
    me, peer = GATEWAYS[OURS], GATEWAYS[SWAN]
    conn: dict[str, Any] = {"version": 2, "local_addrs": me["wan"], "remote_addrs": peer["wan"],
                            "proposals": "aes128gcm16-prfsha256-x25519", "mobike": False, "vips": "0.0.0.0",
                            "local": {"auth": "eap-gtc", "id": "alice"},
                            "remote": {"auth": "pubkey", "id": peer["id"]},
                            "children": {"net": {"remote_ts": peer["local_ts"], "esp_proposals": "aes128gcm16",
                                                 "mode": "tunnel"}}}
    return render({"connections": {"s2s": conn},
                   "secrets": {"eap-alice": {"id": "alice", "secret": ALICE_PASSWORD, "totp": ALICE_TOTP}}})


def test_our_client_through_charon_eap_radius_to_freeradius_with_mfa(interop_lab):
    lab = interop_lab
    server = freeradius(lab, SWAN, load=RADIUS_MFA, client_name="charon")
    ours = lab.use_ours(OURS, client_conf())
    swan = lab.use_strongswan(SWAN, charon_conf())
    assert "eap-radius {" in swan.conf_path.read_text() and "eap-radius" not in swan.missing_plugins
    pki = make_pki("ecdsa")
    for gateway in (OURS, SWAN):
        install_pki(lab, gateway, pki)
    dump = lab.capture(OURS, "ike.pcap", "udp port 500 or udp port 4500")
    pair = Pair(lab, ours, swan, True, dump)
    if time.time() % 30 > 15:  # both logins within one code's 30 s
        time.sleep(31 - time.time() % 30)
    server.start()
    try:
        pair.up()
        ours_sa, theirs = pair.settled()
        assert ours.ctl("terminate", ike="s2s")["ok"]
        again = ours.ctl("initiate", ike="s2s", child="net", timeout=10)
    finally:
        radius_log = server.log_tail(40)
        server.stop()
    log = swan.log_text()
    assert "received RADIUS Access-Accept from server 'primary'" in log, swan.log_tail()
    assert f"assigning virtual IP {ALICE_IP} to peer 'alice'" in log, swan.log_tail()
    assert ours_sa["virtual_ip"] == ALICE_IP, ours_sa
    assert ALICE_IP in str(theirs.get("remote-vips")), theirs
    # RFC 6238 §5.2: the same code a second time is refused; charon says so in its own words
    assert not again["ok"], again
    assert "received RADIUS Access-Reject from server 'primary'" in log, (swan.log_tail(), radius_log)
    success = [r for r in pair.trace() if r["kind"] == "note" and r.get("what") == "eap_success"]
    assert success and success[0]["msk"] is False  # EAP-GTC: AUTH over SK_pi/SK_pr (RFC 7296 §2.16)
    assert "Traceback" not in ours.log_path.read_text(errors="replace")
    dump.stop()
