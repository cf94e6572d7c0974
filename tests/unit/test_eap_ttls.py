"""EAP-TTLS (RFC 5281) between our peer and server methods driven directly, in each phase 2 our
client speaks (PAP, MS-CHAPv2 AVPs, inner EAP-MD5 and EAP-MSCHAPv2 as strongSwan): the tunnel
stands, the user is the inner one, and the MSK is the TLS PRF over the master secret with the
label "ttls keying material" (§8), computed here from the TLS 1.2 PRF of RFC 5246 §5 by hand,
not through OpenSSL's exporter. The AVP octets are checked against RFC 5281 §10.1's layout."""
from __future__ import annotations

import datetime
import hashlib
import hmac
import struct

import pytest

from lab.ike.eap import EapError, EapPacket
from lab.ike.eap.tls import FLAG_S, peer_checker
from lab.ike.eap.ttls import (
    VENDOR_MICROSOFT,
    Attribute,
    Avp,
    MsAvp,
    TtlsPeer,
    TtlsServer,
    encode_avps,
    pap_password,
    parse_avps,
)
from lab.ike.identity import Identity
from lab.ike.memnet import make_pki

USERS = {b"carol": b"carol-lab-only-password"}
_PKI = make_pki("ecdsa")
NOW = datetime.datetime(2026, 6, 1, tzinfo=datetime.UTC)

class _Counter:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self, size: int) -> bytes:
        self.n += 1
        return hashlib.sha512(self.n.to_bytes(4, "big")).digest()[:size]


def _pair(phase2: str, password: bytes = USERS[b"carol"], phase2_method: str = "md5", check=None):
    cert, key = _PKI["gwb.lab"]
    peer = TtlsPeer(b"carol", password, "eap" if phase2.startswith("eap") else phase2, _Counter(),
                    check or (lambda chain: None))
    server = TtlsServer(cert, [_PKI["intermediate"]], key, USERS.get, _Counter(), phase2_method=phase2_method)
    return peer, server


def _run(peer, server, limit: int = 40):
    """The conversation until the server succeeds (None) or raises; every packet kept."""
    packets = [server.initiate(1)]
    for identifier in range(2, limit):
        answer = peer.process(identifier, packets[-1])
        packets.append(answer)
        reply = server.process(identifier, answer)
        if reply is None:
            return packets
        packets.append(reply)
    raise AssertionError("the EAP-TTLS conversation did not end")


def _p_hash(digest, secret: bytes, seed: bytes, size: int) -> bytes:
    # RFC 5246 §5: P_hash(secret, seed) = HMAC(secret, A(1) + seed) + HMAC(secret, A(2) + seed) + ...
    out, a = b"", seed
    while len(out) < size:
        a = hmac.new(secret, a, digest).digest()
        out += hmac.new(secret, a + seed, digest).digest()
    return out[:size]


def _expected_msk(method) -> bytes:
    connection = method.tls.connection
    # RFC 5246 §5: the PRF's hash is SHA-256, or the suite's own when stronger (RFC 5289 §3: SHA384 suites)
    digest = hashlib.sha384 if connection.get_cipher_name().endswith("SHA384") else hashlib.sha256
    seed = connection.client_random() + connection.server_random()
    # RFC 5281 §8: keying material = PRF-64(master secret, "ttls keying material", client.random + server.random)
    return _p_hash(digest, connection.master_key(), b"ttls keying material" + seed, 64)


@pytest.mark.parametrize("phase2,inner", [("pap", "md5"), ("mschapv2", "md5"), ("eap-md5", "md5"),
                                          ("eap-mschapv2", "mschapv2")])
def test_each_phase2_authenticates_the_inner_user_and_keys_the_msk_with_the_ttls_label(phase2, inner):
    peer, server = _pair(phase2, phase2_method=inner)
    packets = _run(peer, server)
    assert packets[0] == bytes([FLAG_S])  # RFC 5281 §9.2.1: Start, version 0
    assert server.identity == b"carol" and server.phase2 == phase2.split("-")[0]
    assert peer.success_allowed
    assert peer.msk == server.msk == _expected_msk(server) == _expected_msk(peer)
    # the password never crosses in clear (PAP sends it as it is, inside TLS)
    assert not any(USERS[b"carol"] in p for p in packets)


@pytest.mark.parametrize("phase2,inner", [("pap", "md5"), ("mschapv2", "md5"), ("eap-md5", "md5"),
                                          ("eap-mschapv2", "mschapv2")])
def test_a_wrong_password_is_refused(phase2, inner):
    peer, server = _pair(phase2, password=b"not-the-password", phase2_method=inner)
    with pytest.raises(EapError, match="wrong password|does not match|Failure|refused"):
        _run(peer, server)
    if "mschapv2" in phase2:
        assert not peer.success_allowed  # no MS-CHAP2-Success came: a later EAP-Success would not be believed


def test_the_client_refuses_a_server_certificate_it_cannot_trust():
    other = make_pki("ecdsa")
    check = peer_checker([other["ca"]], Identity.parse("gwb.lab"), NOW)
    peer, server = _pair("pap", check=check)
    with pytest.raises(EapError, match="TLS certificate refused"):
        _run(peer, server)
    assert not peer.phase2_sent  # the password was not sent into an untrusted tunnel


def test_the_client_accepts_the_server_certificate_of_its_ca_and_name():
    check = peer_checker([_PKI["ca"]], Identity.parse("gwb.lab"), NOW)
    peer, server = _pair("mschapv2", check=check)
    _run(peer, server)
    assert peer.success_allowed
    wrong_name = peer_checker([_PKI["ca"]], Identity.parse("radius.lab"), NOW)
    peer, server = _pair("pap", check=wrong_name)
    with pytest.raises(EapError, match="TLS certificate refused"):
        _run(peer, server)


def test_avp_layout_rfc5281_section_10_1():
    # Code, Flags (V, M), Length (without padding), Vendor-ID, Data, padded to 4 octets
    plain = Attribute(Avp.USER_NAME, b"carol").serialize()
    assert plain == struct.pack("!IB", 1, 0x40) + (8 + 5).to_bytes(3, "big") + b"carol" + bytes(3)
    vendor = Attribute(MsAvp.MS_CHAP_CHALLENGE, bytes(range(16)), VENDOR_MICROSOFT).serialize()
    assert vendor[:12] == bytes.fromhex("0000000b c000001c 00000137")
    assert len(vendor) == 28
    back = parse_avps(plain + vendor)
    assert back == [Attribute(1, b"carol"), Attribute(11, bytes(range(16)), 311)]
    with pytest.raises(EapError, match="does not fit"):
        parse_avps(plain[:6] + b"\xff\xff" + plain[8:])
    assert pap_password(b"abc") == b"abc" + bytes(13) and len(pap_password(bytes(16))) == 16


def test_eap_message_split_into_several_avps_is_joined():
    # FreeRADIUS cuts EAP packets into 253-octet pieces, as RADIUS attributes
    peer, server = _pair("eap-md5")
    packets = [server.initiate(1)]
    while not peer.tls.finished:
        answer = peer.process(2, packets[-1])
        packets.append(server.process(2, answer))
    request = EapPacket(1, 9, 4, bytes([16]) + bytes(16) + b"x" * 600).serialize()
    pieces = [Attribute(Avp.EAP_MESSAGE, request[i:i + 253]) for i in range(0, len(request), 253)]
    peer.phase2_sent = True
    peer._phase2(encode_avps(pieces))
    assert peer.inner.method is not None and peer.inner.method.type == 4


def test_the_server_refuses_a_challenge_not_derived_from_the_tunnel():
    peer, server = _pair("mschapv2")
    original = peer._mschapv2_response

    def forged():
        avps = original()
        return [Attribute(a.code, bytes(16), a.vendor) if a.code == MsAvp.MS_CHAP_CHALLENGE else a for a in avps]
    peer._mschapv2_response = forged
    with pytest.raises(EapError, match="not the one derived from the tunnel"):
        _run(peer, server)


def test_an_unknown_mandatory_avp_fails_the_negotiation():
    peer, server = _pair("pap")
    original = peer.tls.write_application
    peer.tls.write_application = lambda data: original(data + Attribute(9999, b"?").serialize())
    with pytest.raises(EapError, match="do not know, marked mandatory"):
        _run(peer, server)
