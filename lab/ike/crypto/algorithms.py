"""Sizes of keys, IVs and ICVs for the transforms the lab implements.

Shared by the IKE SA (SK payload) and, later, by ESP: both take their keys from a
prf+ stream, and both need to know how many octets each transform consumes.
"""
from __future__ import annotations

from cryptography.hazmat.primitives import hashes

from ..const import EncrId, IntegId, PrfId, name_of
from ..errors import CryptoError

AES_CBC_KEY_LENGTHS = (128, 192, 256)
AES_GCM_KEY_LENGTHS = (128, 192, 256)
AEAD_SALT_SIZE = 4

_PRF_HASHES: dict[int, type[hashes.HashAlgorithm]] = {
    PrfId.HMAC_SHA1: hashes.SHA1,
    PrfId.HMAC_SHA2_256: hashes.SHA256,
    PrfId.HMAC_SHA2_384: hashes.SHA384,
    PrfId.HMAC_SHA2_512: hashes.SHA512,
}

# RFC 2404 §2, RFC 4868 §2.1, §2.6
_INTEG: dict[int, tuple[type[hashes.HashAlgorithm] | None, int, int]] = {
    IntegId.NONE: (None, 0, 0),
    IntegId.HMAC_SHA1_96: (hashes.SHA1, 20, 12),
    IntegId.HMAC_SHA2_256_128: (hashes.SHA256, 32, 16),
    IntegId.HMAC_SHA2_384_192: (hashes.SHA384, 48, 24),
    IntegId.HMAC_SHA2_512_256: (hashes.SHA512, 64, 32),
}

# RFC 5282 §7.1 / RFC 4106 §8.1
_AES_GCM_ICV = {EncrId.AES_GCM_8: 8, EncrId.AES_GCM_12: 12, EncrId.AES_GCM_16: 16}

AEAD_ENCR_IDS = frozenset({*_AES_GCM_ICV, EncrId.CHACHA20_POLY1305})


def _encr_name(encr_id: int) -> str:
    return name_of(EncrId, encr_id)


def prf_hash(prf_id: int) -> type[hashes.HashAlgorithm]:
    """The hash behind an HMAC PRF transform."""
    try:
        return _PRF_HASHES[prf_id]
    except KeyError:
        raise CryptoError(f"unsupported PRF {name_of(PrfId, prf_id)}") from None


def prf_key_size(prf_id: int) -> int:
    """Octets of SK_d, SK_pi and SK_pr: the PRF's preferred key length (RFC 7296 §2.14)."""
    return prf_hash(prf_id).digest_size


def integ_hash(integ_id: int) -> type[hashes.HashAlgorithm] | None:
    """The hash behind an HMAC integrity transform (None for INTEG NONE)."""
    return _integ(integ_id)[0]


def integ_key_size(integ_id: int) -> int:
    """Octets of keying material an integrity transform consumes."""
    return _integ(integ_id)[1]


def integ_icv_size(integ_id: int) -> int:
    """Octets of the truncated HMAC output carried as ICV."""
    return _integ(integ_id)[2]


def _integ(integ_id: int) -> tuple[type[hashes.HashAlgorithm] | None, int, int]:
    try:
        return _INTEG[integ_id]
    except KeyError:
        raise CryptoError(f"unsupported integrity algorithm {name_of(IntegId, integ_id)}") from None


def is_aead(encr_id: int) -> bool:
    """True for combined-mode ciphers, which take no separate integrity transform."""
    return encr_id in AEAD_ENCR_IDS


def aead_icv_size(encr_id: int) -> int:
    """Octets of the AEAD tag for a combined-mode cipher."""
    if encr_id in _AES_GCM_ICV:
        return _AES_GCM_ICV[encr_id]
    if encr_id == EncrId.CHACHA20_POLY1305:
        return 16
    raise CryptoError(f"{_encr_name(encr_id)} is not an AEAD cipher")


def check_encr_key_length(encr_id: int, key_length: int | None) -> int | None:
    """Validate the Key Length attribute (in bits) for a cipher; return the effective one."""
    if encr_id == EncrId.AES_CBC:
        if key_length not in AES_CBC_KEY_LENGTHS:
            raise CryptoError(f"ENCR_AES_CBC needs a key length of 128, 192 or 256 bits, got {key_length}")
        return key_length
    if encr_id in _AES_GCM_ICV:
        if key_length not in AES_GCM_KEY_LENGTHS:
            raise CryptoError(
                f"{_encr_name(encr_id)} needs a key length of 128, 192 or 256 bits, got {key_length}"
            )
        return key_length
    if encr_id == EncrId.CHACHA20_POLY1305:
        # RFC 7634 §4
        if key_length not in (None, 256):
            raise CryptoError(f"ENCR_CHACHA20_POLY1305 has a fixed 256-bit key, got key length {key_length}")
        return None
    if encr_id == EncrId.NULL:
        if key_length not in (None, 0):
            raise CryptoError(f"ENCR_NULL takes no key, got key length {key_length}")
        return None
    raise CryptoError(f"unsupported encryption algorithm {_encr_name(encr_id)}")


def encr_key_size(encr_id: int, key_length: int | None) -> int:
    """Octets of keying material a cipher consumes, salt included.

    AES-CBC: key_length/8. AES-GCM: key_length/8 + 4 octets of salt (RFC 5282 §7.1,
    RFC 4106 §8.1). ChaCha20-Poly1305: 32 + 4 (RFC 7634 §2). ENCR_NULL: 0.
    """
    bits = check_encr_key_length(encr_id, key_length) or 0
    if encr_id == EncrId.AES_CBC:
        return bits // 8
    if encr_id in _AES_GCM_ICV:
        return bits // 8 + AEAD_SALT_SIZE
    if encr_id == EncrId.CHACHA20_POLY1305:
        return 32 + AEAD_SALT_SIZE
    return 0
