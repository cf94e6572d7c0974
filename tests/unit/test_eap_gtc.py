"""EAP-GTC with a one-time code (RFC 3748 §5.6, RFC 6238): the code pyotp computes against
RFC 6238's own test vectors, the swanctl.conf `totp` key of an EAP secret, and a road warrior
(a, auth = eap-gtc as carol) logging in through a gateway (b, auth = eap-radius) whose fake
RADIUS server checks the password and the code as radius-mfa's FreeRADIUS does (and refuses a
code seen before). GTC makes no MSK: both AUTH payloads are keyed with SK_pi/SK_pr."""
from __future__ import annotations

import base64
import datetime
from pathlib import Path

import pyotp
import pytest

from lab.conf.settings import ConfigError
from lab.conf.swanctl import parse_swanctl
from lab.ike import radius
from lab.ike.config import AuthConfig
from lab.ike.const import EapCode, EapType
from lab.ike.eap import EapPacket, EapPeer
from lab.ike.eap.gtc import GtcPeer, check_base32, totp_code
from lab.ike.identity import Identity
from lab.ike.memnet import EAP_PASSWORD

from .test_eap_exchanges import _clock
from .test_eap_radius_gateway import SECRET, radius_net
from .test_ike_exchanges import kinds
from .test_radius import attributes_of, build, sign

# RFC 6238 Appendix B: the SHA-1 seed "12345678901234567890", codes of 8 digits; ours keep 6
RFC6238_SEED = base64.b32encode(b"12345678901234567890").decode()
RFC6238_SHA1 = [(59, "94287082"), (1111111109, "07081804"), (1111111111, "14050471"), (1234567890, "89005924"),
                (2000000000, "69279037"), (20000000000, "65353130")]
CAROL_TOTP = "6GGNSNVD7SM7TUGXLQXSCS2ZE4PL7HRY"
PASSWORD = EAP_PASSWORD.encode()
CA_DIR = str(Path(__file__).resolve().parents[2] / "scenarios" / "radius-mfa" / "hosts" / "client1")


@pytest.mark.parametrize("seconds,code", RFC6238_SHA1)
def test_totp_code_matches_rfc6238_appendix_b(seconds, code):
    when = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    assert totp_code(RFC6238_SEED, when) == code[-6:]


def test_gtc_peer_answers_password_then_code():
    peer = EapPeer(b"carol", {EapType.GTC: lambda: GtcPeer(PASSWORD, lambda: "123456")})
    answer = peer.receive(EapPacket(EapCode.REQUEST, 5, EapType.GTC, b"Password, then the 6-digit code: "))
    assert answer == EapPacket(EapCode.RESPONSE, 5, EapType.GTC, PASSWORD + b"123456")
    assert peer.method.prompt.startswith(b"Password") and peer.msk is None  # RFC 3748 §5.6: no key
    assert peer.receive(EapPacket(EapCode.SUCCESS, 5)) is None and peer.succeeded


def test_check_base32():
    assert check_base32("6ggn snvd 7sm7 tugx") == "6GGNSNVD7SM7TUGX"
    for bad in ("", "not base32!", "AAAA"):
        with pytest.raises(ValueError, match="not a TOTP secret"):
            check_base32(bad)


CLIENT = '''connections {
  rw {
    remote_addrs = 192.0.2.1
    local {
      auth = eap-gtc
      id = carol
    }
    remote {
      auth = pubkey
      id = gw.lab
    }
  }
}
secrets {
  eap-carol {
    id = carol
    secret = "carol-password"
    totp = %s
  }
}
'''


def test_swanctl_totp_key_of_an_eap_secret():
    config = parse_swanctl(CLIENT % CAROL_TOTP, swanctl_dir=CA_DIR)
    assert config.secrets.find_eap_key(Identity.parse("carol"), None).totp == CAROL_TOTP
    with pytest.raises(ConfigError, match=r"secrets.eap-carol.totp.*not a TOTP secret"):
        parse_swanctl(CLIENT % "123", swanctl_dir=CA_DIR)
    with pytest.raises(ConfigError, match="remote round|eap-gtc is a client's method"):
        parse_swanctl(CLIENT.replace("auth = pubkey", "auth = eap-gtc") % CAROL_TOTP, swanctl_dir=CA_DIR)


class FakeMfaRadius:
    """FreeRADIUS as radius-mfa sets it up, for carol: EAP-GTC, the answer split into password
    and six digits, the password checked, a code seen before refused, the code checked at now."""

    def __init__(self, check_code: bool = True) -> None:
        self.check_code = check_code
        self.used: set[str] = set()
        self.requests: list[bytes] = []
        self.rejected: list[str] = []

    def answer(self, request: bytes) -> bytes:
        self.requests.append(request)
        attrs = attributes_of(request)
        eap = EapPacket.parse(b"".join(v for k, v in attrs if k == radius.EAP_MESSAGE))
        ma = (radius.MESSAGE_AUTHENTICATOR, bytes(16))
        if eap.type == EapType.IDENTITY:
            ask = EapPacket(EapCode.REQUEST, eap.identifier + 1, EapType.GTC, b"Password, then the 6-digit code: ")
            return sign(build(radius.ACCESS_CHALLENGE, request[1], [(radius.EAP_MESSAGE, ask.serialize()),
                                                                    (radius.STATE, b"gtc"), ma]), request, SECRET)
        typed = eap.type_data.decode()
        password, code = typed[:-6], typed[-6:]
        why = None
        if password.encode() != PASSWORD:
            why = "password wrong"
        elif code in self.used:
            why = "one-time code already used: wait for the next code"
        elif self.check_code and not pyotp.TOTP(CAROL_TOTP).verify(code, for_time=_clock()):
            why = "one-time code wrong (or the phone's clock is off)"
        if why:
            self.rejected.append(why)
            failure = EapPacket(EapCode.FAILURE, eap.identifier).serialize()
            return sign(build(radius.ACCESS_REJECT, request[1], [(radius.EAP_MESSAGE, failure), ma,
                                                                  (radius.REPLY_MESSAGE, why.encode())]), request, SECRET)
        self.used.add(code)
        success = EapPacket(EapCode.SUCCESS, eap.identifier).serialize()
        return sign(build(radius.ACCESS_ACCEPT, request[1], [(radius.EAP_MESSAGE, success), ma,
                                                              (radius.FRAMED_IP_ADDRESS, bytes([10, 3, 0, 7]))]),
                    request, SECRET)


def gtc_net(fake: FakeMfaRadius, totp: str = CAROL_TOTP):
    net = radius_net(fake)  # type: ignore[arg-type]
    a = net.endpoints["a"]
    conn = a.config.connections["s2s"]
    conn.local = AuthConfig("eap-gtc", conn.local.id)
    a.config.secrets.eap[0].totp = totp
    return net


def test_password_and_code_log_in_without_an_msk_and_get_the_framed_ip():
    fake = FakeMfaRadius()
    net = gtc_net(fake)
    net.endpoints["a"].initiate("s2s", net.now)
    net.settle(10.0)
    assert kinds(net.events("a")) == ["IkeSaUp", "ChildSaUp"], fake.rejected
    ike_a = next(iter(net.endpoints["a"].by_id.values()))
    assert ike_a.virtual_ip == "10.3.0.7"
    typed = attributes_of(fake.requests[-1])
    gtc = EapPacket.parse(b"".join(v for k, v in typed if k == radius.EAP_MESSAGE))
    assert gtc.type == EapType.GTC and gtc.type_data == PASSWORD + totp_code(CAROL_TOTP, _clock()).encode()


def test_a_wrong_code_is_refused_with_the_reason():
    fake = FakeMfaRadius()
    net = gtc_net(fake, totp="LW64WHREJ6MOSJVLCJKWDPNWGAGZHO33")  # a phone enrolled with another secret
    net.endpoints["a"].initiate("s2s", net.now)
    net.settle(10.0)
    assert "IkeSaUp" not in kinds(net.events("b"))
    assert fake.rejected == ["one-time code wrong (or the phone's clock is off)"]
    failed = [e for e in net.b_events if type(e).__name__ == "AuthFailed"]
    assert failed and "one-time code wrong" in str(failed[0]), net.b_events


def test_the_same_code_twice_is_refused_as_used():
    fake = FakeMfaRadius()
    net = gtc_net(fake)
    a = net.endpoints["a"]
    a.initiate("s2s", net.now)
    net.settle(10.0)
    assert kinds(net.events("a")) == ["IkeSaUp", "ChildSaUp"]
    a.initiate("s2s", net.now)  # a second login within the same 30 s: the same code
    net.settle(10.0)
    assert fake.rejected == ["one-time code already used: wait for the next code"]

