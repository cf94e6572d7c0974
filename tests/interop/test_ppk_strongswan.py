"""Postquantum preshared keys (RFC 8784, lab.ike.ppk) between our daemon and strongSwan, 5.9.8
(PPK since 5.7) and 6, in both roles: with the PPK on both sides it is mixed into SK_d (the CHILD_SA's
ESP keys, which both export, are the same on both sides), a responder without the PPK falls back
through NO_PPK_AUTH, and ppk_required refuses that fallback.

Our daemon on swgwa (203.0.113.1), charon on swgwb (203.0.113.2), PSK authentication."""
from __future__ import annotations

import pytest

from lab.conf.writer import render
from lab.net.strongswan6 import StrongSwan6

from .conftest import GATEWAYS, PEER, PSK, S2SLab
from .test_ike_strongswan import OURS, SWAN, Pair, exchanges

pytestmark = [pytest.mark.interop, pytest.mark.root]

PPK_HEX = "0x7a8c1f0e5d3b2a4968778695a4b3c2d1e0f1021324354657687988a9bacbdced"
ROLES = ("ours-initiator", "ours-responder")


@pytest.fixture(params=["strongswan", "strongswan6"])
def software(request):
    """Each test against strongSwan 5.9.8 and against strongSwan 6 (lab.net.strongswan6)."""
    if request.param == "strongswan6":
        from lab.net.strongswan import StrongSwanError
        from lab.net.strongswan6 import find_root

        try:
            find_root()
        except StrongSwanError as err:
            pytest.fail(str(err), pytrace=False)
    return request.param


def conf(gateway: str, *, initiator: bool, ppk_id: str | None = "ppk-lab", required: bool = False,
         secret_id: str | None = "ppk-lab") -> str:
    """swanctl.conf of `gateway` (connection s2s, child net), with ppk_id / ppk_required and a
    ppk secret under `secret_id` (None: no PPK at all), in the subset both daemons read."""
    me, peer = GATEWAYS[gateway], GATEWAYS[PEER[gateway]]
    conn = {"version": 2, "local_addrs": me["wan"], "remote_addrs": peer["wan"] if initiator else "%any",
            "proposals": "aes128gcm16-prfsha256-x25519", "mobike": False,
            "local": {"auth": "psk", "id": me["id"]}, "remote": {"auth": "psk", "id": peer["id"]},
            "children": {"net": {"local_ts": me["local_ts"], "remote_ts": peer["local_ts"],
                                 "esp_proposals": "aes128gcm16", "mode": "tunnel"}}}
    if ppk_id is not None:
        conn["ppk_id"] = ppk_id
    if required:
        conn["ppk_required"] = True
    secrets: dict = {"ike-s2s": {"id-local": me["id"], "id-remote": peer["id"], "secret": PSK}}
    if secret_id is not None:
        secrets["ppk-1"] = {"id": secret_id, "secret": PPK_HEX}
    return render({"connections": {"s2s": conn}, "secrets": secrets})


def pair(lab: S2SLab, role: str, ours: dict, theirs: dict, software: str = "strongswan") -> Pair:
    ours_initiates = role == "ours-initiator"
    mine = lab.use_ours(OURS, conf(OURS, initiator=ours_initiates, **ours), export_keys=True)
    text = conf(SWAN, initiator=not ours_initiates, **theirs)
    if software == "strongswan6":
        swan = StrongSwan6(lab.nodes[SWAN], lab.workdir / SWAN, SWAN, export_keys=True)
        swan.write_config(text)
        lab.swans[SWAN] = swan
    else:
        swan = lab.use_strongswan(SWAN, text, export_keys=True)
    return Pair(lab, mine, swan, ours_initiates, lab.capture(OURS, "ike.pcap"))


def same_esp_keys(p: Pair) -> None:
    """Both sides derived the same ESP keys: the same SK_d, PPK or not."""
    p.swan.observe()
    ours = set(p.ours.key_tables().get("esp_sa", []))
    theirs = set(p.swan.key_tables().get("esp_sa", []))
    assert len(theirs) == 2 and theirs <= ours, (ours, theirs)


def notifies_in_ike_auth(p: Pair, direction: str) -> list[str]:
    return [x for m in p.messages(dir=direction, exchange="IKE_AUTH") for x in m["payloads"] if x.startswith("N(")]


@pytest.mark.parametrize("role", ROLES)
def test_the_ppk_is_used_when_both_have_it(interop_lab, role, software):
    p = pair(interop_lab, role, {"required": True}, {"required": True}, software)
    p.up()
    same_esp_keys(p)
    assert "using PPK for PPK_ID 'ppk-lab'" in p.swan.log_text(), p.swan.log_tail()
    sent = notifies_in_ike_auth(p, "out")
    received = notifies_in_ike_auth(p, "in")
    assert "N(PPK_IDENTITY)" in sent and "N(PPK_IDENTITY)" in received, (sent, received)
    assert "N(NO_PPK_AUTH)" not in sent + received  # ppk_required: no fallback offered
    assert exchanges(p.finish()) == ["IKE_SA_INIT"] * 2 + ["IKE_AUTH"] * 2


@pytest.mark.parametrize("role", ROLES)
def test_no_ppk_auth_offered_and_not_needed(interop_lab, role, software):
    p = pair(interop_lab, role, {}, {}, software)
    p.up()
    same_esp_keys(p)
    initiator_sent = notifies_in_ike_auth(p, "out" if p.ours_initiates else "in")
    assert {"N(PPK_IDENTITY)", "N(NO_PPK_AUTH)"} <= set(initiator_sent), initiator_sent
    p.finish()


@pytest.mark.parametrize("role", ROLES)
def test_a_responder_without_that_ppk_falls_back(interop_lab, role, software):
    # the responder has a PPK, but not the one the initiator names: NO_PPK_AUTH is checked instead
    initiator = {}
    responder = {"ppk_id": None, "secret_id": "another-ppk"}
    p = pair(interop_lab, role, initiator if role == "ours-initiator" else responder,
             responder if role == "ours-initiator" else initiator, software)
    p.up()
    same_esp_keys(p)
    responder_sent = notifies_in_ike_auth(p, "in" if p.ours_initiates else "out")
    assert "N(PPK_IDENTITY)" not in responder_sent, responder_sent
    assert "using PPK" not in p.swan.log_text()
    p.finish()


@pytest.mark.parametrize("role", ROLES)
def test_an_initiator_that_requires_the_ppk_is_refused_by_a_responder_without_it(interop_lab, role, software):
    initiator = {"required": True}
    responder = {"ppk_id": None, "secret_id": "another-ppk"}
    p = pair(interop_lab, role, initiator if role == "ours-initiator" else responder,
             responder if role == "ours-initiator" else initiator, software)
    if p.ours_initiates:
        p.swan.start()
        p.ours.start()
        answer = p.ours.ctl("initiate", ike="s2s", child="net", timeout=10)
        assert not answer["ok"], answer
    else:
        p.ours.start()
        p.swan.start()
        with pytest.raises(Exception, match="failed"):
            p.swan.initiate(child="net", timeout=10)
    assert p.our_sas() == [] and p.swan_sas() == []
    assert "N(AUTH_FAILED)" in p.swan.log_text(), p.swan.log_tail()  # sent or received
