"""The primitives under EAP-MSCHAPv2 and EAP-MD5 against their published vectors: MD4 (RFC 1320
§A.5), MS-CHAPv2 (RFC 2759 §9.2), MPPE keys (RFC 3079 §3.5.3), CHAP/MD5 (RFC 1994 §4.1 as
RFC 3748 §5.4 uses it); the EAP packet codec (RFC 3748 §4)."""
from __future__ import annotations

import hashlib

import pytest

from lab.iana import EapCode, EapType
from lab.ike.eap import EapError, EapPacket
from lab.ike.eap import mschapv2_crypto as m
from lab.ike.eap.md4 import md4
from lab.ike.eap.md5 import md5_response


@pytest.mark.parametrize("message, digest", [
    (b"", "31d6cfe0d16ae931b73c59d7e0c089c0"),
    (b"a", "bde52cb31de33e46245e05fbdbd6fb24"),
    (b"abc", "a448017aaf21d8525fc10ae87aa6729d"),
    (b"message digest", "d9130a8164549fe818874806e1c7014b"),
    (b"abcdefghijklmnopqrstuvwxyz", "d79e1c308aa5bbcdeea8ed63df412da9"),
    (b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", "043f8582f241db351ce627e153e7f0e4"),
    (b"1234567890" * 8, "e33b4ddc9c38f2199c3e7b164fcc0536"),
])
def test_md4_rfc1320_test_suite(message, digest):
    assert md4(message).hex() == digest


# RFC 2759 §9.2
USER, PASSWORD = b"User", "clientPass"
AUTHENTICATOR_CHALLENGE = bytes.fromhex("5B5D7C7D7B3F2F3E3C2C602132262628")
PEER_CHALLENGE = bytes.fromhex("21402324255E262A28295F2B3A337C7E")
NT_RESPONSE = bytes.fromhex("82309ECD8D708B5EA08FAA3981CD83544233114A3D85D6DF")


def test_mschapv2_rfc2759_vectors():
    assert m.challenge_hash(PEER_CHALLENGE, AUTHENTICATOR_CHALLENGE, USER).hex().upper() == "D02E4386BCE91226"
    assert m.nt_password_hash(PASSWORD).hex().upper() == "44EBBA8D5312B8D611474411F56989AE"
    assert m.hash_nt_password_hash(m.nt_password_hash(PASSWORD)).hex().upper() == "41C00C584BD2D91C4017A2A12FA59F3F"
    assert m.generate_nt_response(AUTHENTICATOR_CHALLENGE, PEER_CHALLENGE, USER, PASSWORD) == NT_RESPONSE
    assert m.generate_authenticator_response(PASSWORD, NT_RESPONSE, PEER_CHALLENGE, AUTHENTICATOR_CHALLENGE,
                                             USER) == b"S=407A5589115FD0D6209F510FE9C04566932CDA56"


def test_mschapv2_user_name_loses_its_domain():
    # RFC 2759 §4: the challenge hash is over the user name only
    assert m.challenge_hash(PEER_CHALLENGE, AUTHENTICATOR_CHALLENGE, b"LAB\\User") == \
        m.challenge_hash(PEER_CHALLENGE, AUTHENTICATOR_CHALLENGE, USER)


def test_mppe_keys_rfc3079_vectors():
    password_hash_hash = m.hash_nt_password_hash(m.nt_password_hash(PASSWORD))
    master = m.master_key(password_hash_hash, NT_RESPONSE)
    assert master.hex().upper() == "FDECE3717A8C838CB388E527AE3CDD31"
    # RFC 3079 §3.5.3: SendStartKey128 is the server's send key, i.e. the client's receive key (Magic3)
    assert m.asymmetric_start_key(master, m.MAGIC_CLIENT_RECEIVE).hex().upper() == "8B7CDC149B993A1BA118CB153F56DCCB"


def test_msk_layout_as_strongswan():
    msk = m.msk(PASSWORD, NT_RESPONSE)
    master = bytes.fromhex("FDECE3717A8C838CB388E527AE3CDD31")
    assert len(msk) == 64 and msk[32:] == bytes(32)
    assert msk[:16] == m.asymmetric_start_key(master, m.MAGIC_CLIENT_SEND)
    assert msk[16:32].hex().upper() == "8B7CDC149B993A1BA118CB153F56DCCB"


def test_md5_chap_response():
    # RFC 1994 §4.1: MD5 over Identifier, secret, challenge, computed here with hashlib
    assert md5_response(7, b"pw", b"\x01" * 16) == hashlib.md5(b"\x07pw" + b"\x01" * 16).digest()


def test_eap_packet_round_trip_and_errors():
    request = EapPacket(EapCode.REQUEST, 0x2A, EapType.IDENTITY, b"")
    assert request.serialize() == bytes.fromhex("012a000501")
    assert EapPacket.parse(bytes.fromhex("012a000501")) == request
    assert EapPacket.parse(bytes.fromhex("03070004")) == EapPacket(EapCode.SUCCESS, 7)
    assert str(EapPacket(EapCode.RESPONSE, 3, EapType.MSCHAPV2)) == "Response/MSCHAPV2 id 0x03"
    for bad, words in ((b"\x01\x00", "shorter"), (bytes.fromhex("01000009"), "length field"),
                       (bytes.fromhex("01000004"), "without a Type"), (bytes.fromhex("09000004"), "unknown EAP code")):
        with pytest.raises(EapError, match=words):
            EapPacket.parse(bad)
