"""FreeRADIUS 3.2 as a lab service (lab.net.radius) answering our EAP-RADIUS relay and client
(lab.ike.eap.radius_relay, lab.daemon.radius) across the lab link: EAP-MSCHAPv2 accepted with
the MSK our peer derived, the virtual IP and Class from the users file, accounting Start and
Stop with the session's counts; a wrong password refused; the primary server killed: the login waits, then goes to the second; nothing left;
radius-mfa's FreeRADIUS: password and one-time code over EAP-GTC, a wrong or replayed code refused."""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest

from lab.net import cleanup
from lab.net.radius import FreeRadius, FreeRadiusError

from .conftest import ALICE_TOTP, GATEWAYS, RADIUS_MFA, RADIUS_SECRET, freeradius

pytestmark = [pytest.mark.interop, pytest.mark.root]

ROOT = Path(__file__).resolve().parents[2]
USERS = ('carol Cleartext-Password := "carol-pass"\n'
         '\tFramed-IP-Address = 10.3.0.7,\n\tClass = "staff"\n')


def radius(lab, port: int = 1812, name: str = "radius") -> FreeRadius:
    server = freeradius(lab, "swgwa", name=name, port=port)
    server.set_users(USERS)
    return server


def probe(lab, user: str, password: str, *servers: str, tries: int = 3, timeout: float = 1.0,
          method: str = "mschapv2") -> dict:
    argv = [sys.executable, str(ROOT / "tests" / "interop" / "radius_probe.py"),
            *(["--gtc"] if method == "gtc" else []), user, password, RADIUS_SECRET, str(tries), str(timeout), *servers]
    out = lab.nodes["swgwa"].cmd(f"cd {shlex.quote(str(ROOT))} && PYTHONPATH={shlex.quote(str(ROOT))} "
                                 + " ".join(shlex.quote(a) for a in argv))
    try:
        return json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise AssertionError(f"probe printed no result:\n{out}") from None


def radiusd_pids(lab) -> list[int]:
    ns = cleanup.netns_inode(lab.nodes["swgwb"].pid)
    return [pid for pid in cleanup.processes_in({ns}) if "freeradius" in cleanup.describe_pid(pid)]


def test_eap_mschapv2_accepted_with_msk_virtual_ip_and_class(interop_lab):
    server = radius(interop_lab).start()
    try:
        result = probe(interop_lab, "carol", "carol-pass", f"{GATEWAYS['swgwb']['wan']}:1812")
        refused = probe(interop_lab, "carol", "wrong", f"{GATEWAYS['swgwb']['wan']}:1812")
    finally:
        server.stop()
    login = result["logins"][-1]
    assert login["accepted"] and login["peer_succeeded"], result
    assert login["msk_matches"], result  # FreeRADIUS's MS-MPPE keys = our peer's RFC 3079 keys
    assert login["framed_ip"] == "10.3.0.7" and login["classes"] == ["staff"]
    assert result["counters"]["r1"].get("refused", 0) == 0
    # RFC 2866: Start and Stop answered, the Stop's counts in FreeRADIUS's detail file, which
    # lies under the service's own directory
    assert login["accounting"] == [1, 2]
    details = list((server.workdir / "log").rglob("detail-*"))
    assert details, list((server.workdir / "log").rglob("*"))
    detail = "".join(d.read_text() for d in details)
    assert "Acct-Status-Type = Stop" in detail and "Acct-Input-Gigawords = 5" in detail
    assert "Acct-Input-Octets = 1234" in detail and "Acct-Output-Octets = 5678" in detail
    assert 'Class = 0x7374616666' in detail and "Framed-IP-Address = 10.3.0.7" in detail
    wrong = refused["logins"][-1]
    assert wrong["accepted"] is False and not wrong["peer_succeeded"], refused
    assert "Sent Access-Reject" in server.log_text()
    # stopped: no radiusd in the node, no configuration left
    assert radiusd_pids(interop_lab) == [] and not server.raddb.exists()


def test_primary_dies_and_the_login_fails_over(interop_lab):
    primary, second = radius(interop_lab, 1812, "radius1"), radius(interop_lab, 11812, "radius2")
    primary.start()
    second.start()
    wan = GATEWAYS["swgwb"]["wan"]
    try:
        primary.kill()
        result = probe(interop_lab, "carol", "carol-pass", f"{wan}:1812", f"{wan}:11812", tries=2, timeout=0.5)
    finally:
        primary.stop()
        second.stop()
    first, last = result["logins"][0], result["logins"][-1]
    assert "timeout" in first and "r1" in first["timeout"], result
    assert last["server"] == "r2" and last["accepted"], (result, second.log_text()[-6000:])
    assert result["counters"]["r1"] == {"sent": 2, "retransmits": 1, "timeouts": 1}
    assert any("marked down" in line for line in result["lines"])
    assert radiusd_pids(interop_lab) == []




def test_radius_mfa_checks_password_and_one_time_code(interop_lab):
    """radius-mfa's FreeRADIUS (EAP-GTC, Auth-Type mfa): the right password and code are
    accepted with the Framed-IP-Address; the same code again, a wrong code, a wrong password and
    a missing code are each refused with their reason in Reply-Message."""
    import time

    import pyotp

    server = freeradius(interop_lab, "swgwa", name="mfa", load=RADIUS_MFA)
    totp = pyotp.TOTP(ALICE_TOTP)
    if time.time() % 30 > 20:  # all of it within one code's 30 s (FreeRADIUS 3.2.1 takes no other step)
        time.sleep(31 - time.time() % 30)
    server.start()
    wan = f"{GATEWAYS['swgwb']['wan']}:1812"
    try:
        code = totp.now()
        other = next(c for c in ("000000", "111111") if c != code)
        logins = {what: probe(interop_lab, "alice", password, wan, method="gtc")["logins"][-1]
                  for what, password in (("right", "alice-lab-only-password" + code),
                                         ("again", "alice-lab-only-password" + code),
                                         ("wrong code", "alice-lab-only-password" + other),
                                         ("wrong password", "alice-wrong" + code),
                                         ("no code", "alice-lab-only-password"))}
    finally:
        server.stop()
    right = logins["right"]
    assert right["accepted"] and right["peer_succeeded"] and right["framed_ip"] == "10.3.0.21", logins
    expected = {"again": "one-time code already used: wait for the next code",  # RFC 6238 §5.2
                "wrong code": "one-time code wrong (or the phone's clock is off)",
                "wrong password": "password wrong",
                "no code": "no one-time code: the password came without the 6-digit code"}
    assert {what: (logins[what]["accepted"], logins[what]["reply_message"]) for what in expected} == \
        {what: (False, why) for what, why in expected.items()}, logins


def test_start_failure_leaves_nothing(interop_lab):
    server = radius(interop_lab)
    (server.raddb / "radiusd.conf").write_text("this is { not a configuration\n")
    with pytest.raises(FreeRadiusError, match="exited|not ready"):
        server.start()
    server.stop()
    assert radiusd_pids(interop_lab) == [] and not server.raddb.exists()
