"""MS-CHAPv2's arithmetic (RFC 2759 §8) and its keys (RFC 3079 §3.4), with the MSK as
strongSwan's eap-mschapv2 plugin derives it (draft-kamath-pppext-eap-mschapv2 §2 names it).

MD4 comes from lab.ike.eap.md4 (neither `cryptography` nor hashlib has it under OpenSSL 3).
Single DES is `cryptography`'s TripleDES with the key three times (EDE with K1 = K2 = K3 is
DES). Checked against RFC 2759 §9.2 and RFC 3079 §3.5.3 in tests/unit/test_eap_crypto.py.
"""
from __future__ import annotations

import hashlib
import warnings

from cryptography.hazmat.primitives.ciphers import Cipher, modes

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    try:
        from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
    except ImportError:  # cryptography < 43
        from cryptography.hazmat.primitives.ciphers.algorithms import TripleDES

from .md4 import md4

# RFC 2759 §8.7
MAGIC_SERVER_SIGNING = b"Magic server to client signing constant"
MAGIC_PAD = b"Pad to make it do more than one iteration"
# RFC 3079 §3.4
MAGIC_MASTER_KEY = b"This is the MPPE Master Key"
MAGIC_CLIENT_SEND = b"On the client side, this is the send key; on the server side, it is the receive key."
MAGIC_CLIENT_RECEIVE = b"On the client side, this is the receive key; on the server side, it is the send key."
SHS_PAD1 = bytes(40)
SHS_PAD2 = b"\xf2" * 40


def _sha1(*parts: bytes) -> bytes:
    return hashlib.sha1(b"".join(parts)).digest()


def nt_password_hash(password: str | bytes) -> bytes:
    """RFC 2759 §8.3: MD4 of the password in UTF-16LE (bytes are taken as UTF-8 text)."""
    text = password.decode("utf-8") if isinstance(password, bytes) else password
    return md4(text.encode("utf-16-le"))


def hash_nt_password_hash(password_hash: bytes) -> bytes:
    # RFC 2759 §8.4
    return md4(password_hash)


def challenge_hash(peer_challenge: bytes, authenticator_challenge: bytes, user_name: bytes) -> bytes:
    """RFC 2759 §8.2: SHA1(PeerChallenge | AuthenticatorChallenge | UserName)[0:8]; the user
    name without a domain part (`DOMAIN\\user` -> `user`), as Windows and strongSwan use it."""
    return _sha1(peer_challenge, authenticator_challenge, user_name_only(user_name))[:8]


def user_name_only(user_name: bytes) -> bytes:
    # RFC 2759 §4: the "username" is the part after a backslash
    return user_name.rsplit(b"\\", 1)[-1]


def _des_key(seven: bytes) -> bytes:
    # RFC 2759 §8.6 DesEncrypt: 56 key bits spread over 8 octets (parity bits are ignored by DES)
    bits = int.from_bytes(seven, "big")
    return bytes(((bits >> (49 - 7 * i)) & 0x7F) << 1 for i in range(8))


def des_encrypt(clear: bytes, seven_octet_key: bytes) -> bytes:
    """One DES block (RFC 2759 §8.6) under a 7-octet key."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        key = _des_key(seven_octet_key)
        encryptor = Cipher(TripleDES(key * 3), modes.ECB()).encryptor()
    return encryptor.update(clear) + encryptor.finalize()


def challenge_response(challenge: bytes, password_hash: bytes) -> bytes:
    """RFC 2759 §8.5: three DES encryptions of the 8-octet challenge under the zero-padded hash."""
    z = password_hash + bytes(21 - len(password_hash))
    return b"".join(des_encrypt(challenge, z[i:i + 7]) for i in (0, 7, 14))


def generate_nt_response(authenticator_challenge: bytes, peer_challenge: bytes, user_name: bytes,
                         password: str | bytes) -> bytes:
    # RFC 2759 §8.1
    return challenge_response(challenge_hash(peer_challenge, authenticator_challenge, user_name),
                              nt_password_hash(password))


def generate_authenticator_response(password: str | bytes, nt_response: bytes, peer_challenge: bytes,
                                    authenticator_challenge: bytes, user_name: bytes) -> bytes:
    """RFC 2759 §8.7: the 42 octets "S=" and 40 upper-case hex digits."""
    password_hash_hash = hash_nt_password_hash(nt_password_hash(password))
    digest = _sha1(password_hash_hash, nt_response, MAGIC_SERVER_SIGNING)
    digest = _sha1(digest, challenge_hash(peer_challenge, authenticator_challenge, user_name), MAGIC_PAD)
    return b"S=" + digest.hex().upper().encode()


def master_key(password_hash_hash: bytes, nt_response: bytes) -> bytes:
    # RFC 3079 §3.4 GetMasterKey
    return _sha1(password_hash_hash, nt_response, MAGIC_MASTER_KEY)[:16]


def asymmetric_start_key(master: bytes, magic: bytes, length: int = 16) -> bytes:
    # RFC 3079 §3.4 GetAsymmetricStartKey: the magic says which direction
    return _sha1(master, SHS_PAD1, magic, SHS_PAD2)[:length]


def msk(password: str | bytes, nt_response: bytes) -> bytes:
    """The 64-octet MSK of EAP-MSCHAPv2 as strongSwan computes it on both sides: the client's
    send key (the server's receive key), then the client's receive key, then 32 zero octets."""
    master = master_key(hash_nt_password_hash(nt_password_hash(password)), nt_response)
    return (asymmetric_start_key(master, MAGIC_CLIENT_SEND) + asymmetric_start_key(master, MAGIC_CLIENT_RECEIVE)
            + bytes(32))
