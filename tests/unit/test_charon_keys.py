"""Wireshark key tables read from charon's log (lab.net.charon_keys) agree with the tables our
daemon exported for the same SAs: two implementations' key derivations, one answer.

tests/data/charon/ holds a run of tests/scenarios/data/rw-strongswan-gateway: gw-charon.log is
strongSwan's gateway (ike = 4, chd = 4), client1-* are the tables of our client, whose IKE SA
is gw's SA number 1; gw's SA 2 belongs to a strongSwan client."""
from __future__ import annotations

from pathlib import Path

from lab.net import charon_keys

DATA = Path(__file__).resolve().parents[1] / "data" / "charon"


def test_esp_keys_from_charons_log_match_ours():
    found = charon_keys.parse((DATA / "gw-charon.log").read_text())
    ours = {line.split(",")[3]: line for line in (DATA / "client1-esp_sa").read_text().splitlines()}
    theirs = {line.split(",")[3]: line for line in charon_keys.esp_lines(found)}
    shared = set(ours) & set(theirs)
    assert len(shared) == 2, (ours.keys(), theirs.keys())  # client1's CHILD_SA, both directions
    for spi in shared:
        assert theirs[spi] == ours[spi]
    assert len(theirs) == 4  # and the strongSwan client's, which only charon's log knows


def test_ike_keys_from_charons_log_match_ours():
    found = charon_keys.parse((DATA / "gw-charon.log").read_text())
    assert sorted(found.ike) == [1, 2]
    ours = (DATA / "client1-ikev2_decryption_table").read_text().split("\n")[0]
    spi_i, spi_r = ours.split(",")[:2]
    sas = {1: {"initiator-spi": spi_i, "responder-spi": spi_r, "encr-alg": "AES_GCM_16", "encr-keysize": "128",
               "integ-alg": ""}}
    assert charon_keys.ike_lines(found, sas) == [ours]


def test_a_dump_cut_short_is_not_taken():
    line = "2026-12-01 11:41:27.033 14[IKE] <s2s|1> "
    text = (line + "Sk_ei secret => 16 bytes @ 0x1\n" + line + "   0: 00 11 22 33  ...\n"
            + line + "IKE_SA s2s[1] state change: CONNECTING => ESTABLISHED\n")
    assert charon_keys.parse(text).ike == {}


def test_with_additional_key_exchanges_the_last_keys_before_ike_auth_are_taken():
    """strongSwan 6 with two additional key exchanges (RFC 9370) derives its keys three times
    before IKE_AUTH, on three worker threads, and an IKE rekey with IKE_FOLLOWUP_KE once more.
    ss6-*-charon.log are the hub's and spoke2's logs of the strongswan6 scenario (hub's SA 3 is
    spoke2's SA 1, rekeyed into hub's 4 and spoke2's 2): both logs give the same keys for each
    SA, and the hub's first two sets are not taken."""
    hub = charon_keys.parse((DATA / "ss6-hub-charon.log").read_text())
    spoke = charon_keys.parse((DATA / "ss6-spoke2-charon.log").read_text())
    assert sorted(hub.ike) == [3, 4] and sorted(spoke.ike) == [1, 2]
    assert hub.ike[3] == spoke.ike[1]
    assert hub.ike[4] == spoke.ike[2]
    assert hub.ike[3] != hub.ike[4]
    derived = [line for line in (DATA / "ss6-hub-charon.log").read_text().splitlines() if "Sk_ei secret" in line]
    assert len(derived) == 4  # three for SA 3 (IKE_SA_INIT, two IKE_INTERMEDIATE), one for the rekey
