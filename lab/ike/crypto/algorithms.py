"""Sizes of keys, IVs and ICVs of the transforms, read from the one registry (lab.iana).

The IKE SA (SK payload) and child SA key derivation both take their keys from a prf+
stream and need to know how many octets each transform consumes. Sizes are given for
what lab.ike or lab.esp implements; anything else is a CryptoError naming it.
"""
from __future__ import annotations

from cryptography.hazmat.primitives import hashes

from lab.iana import Algorithm, TransformType, algorithm, algorithms_of

from ..const import EncrId, IntegId, PrfId, name_of
from ..errors import CryptoError


def hash_class(name: str) -> type[hashes.HashAlgorithm]:
    """The `cryptography` hash for a registry hash name such as "sha256"."""
    found: type[hashes.HashAlgorithm] = getattr(hashes, name.upper())
    return found


def _implemented_anywhere(entry: Algorithm | None) -> bool:
    return entry is not None and (entry.ike or entry.esp or entry.ah)


def _prf(prf_id: int) -> Algorithm:
    entry = algorithm(TransformType.PRF, prf_id)
    if entry is None or not entry.ike:
        raise CryptoError(f"unsupported PRF {name_of(PrfId, prf_id)}")
    return entry


def prf_is_aes(prf_id: int) -> bool:
    """AES-XCBC-PRF-128 (RFC 4434) or AES-CMAC-PRF-128 (RFC 4615): a block cipher, not HMAC."""
    return _prf(prf_id).hmac_hash is None


def _integ(integ_id: int) -> Algorithm:
    entry = algorithm(TransformType.INTEG, integ_id)
    if not _implemented_anywhere(entry):
        raise CryptoError(f"unsupported integrity algorithm {name_of(IntegId, integ_id)}")
    assert entry is not None
    return entry


def _encr(encr_id: int, key_length: int | None) -> Algorithm:
    entry = algorithm(TransformType.ENCR, encr_id, key_length)
    if _implemented_anywhere(entry):
        assert entry is not None
        return entry
    lengths = [e.key_bits for e in algorithms_of(TransformType.ENCR, encr_id) if _implemented_anywhere(e)]
    name = name_of(EncrId, encr_id)
    if not lengths:
        raise CryptoError(f"unsupported encryption algorithm {name}")
    if lengths == [0]:
        raise CryptoError(f"ENCR_{name} takes no key length attribute, got key length {key_length}")
    wanted = " or ".join(str(b) if b else "none" for b in lengths)
    raise CryptoError(f"ENCR_{name} needs a key length of {wanted} bits, got {key_length}")


def prf_hash(prf_id: int) -> type[hashes.HashAlgorithm]:
    """The hash behind an HMAC PRF transform."""
    hash_name = _prf(prf_id).hmac_hash
    if hash_name is None:
        raise CryptoError(f"{name_of(PrfId, prf_id)} is no HMAC PRF")
    return hash_class(hash_name)


def prf_key_size(prf_id: int) -> int:
    """Octets of SK_d, SK_pi and SK_pr: the PRF's preferred key length (RFC 7296 §2.14)."""
    return _prf(prf_id).key_size


def integ_hash(integ_id: int) -> type[hashes.HashAlgorithm] | None:
    """The hash behind an HMAC integrity transform (None for INTEG NONE)."""
    hash_name = _integ(integ_id).hmac_hash
    return None if hash_name is None else hash_class(hash_name)


def integ_key_size(integ_id: int) -> int:
    """Octets of keying material an integrity transform consumes."""
    return _integ(integ_id).key_size


def integ_icv_size(integ_id: int) -> int:
    """Octets of the truncated output carried as ICV."""
    return _integ(integ_id).icv_size


def is_aead(encr_id: int) -> bool:
    """True for combined-mode ciphers, which take no separate integrity transform."""
    return any(e.aead for e in algorithms_of(TransformType.ENCR, encr_id))


def aead_icv_size(encr_id: int) -> int:
    """Octets of the AEAD tag for a combined-mode cipher."""
    for entry in algorithms_of(TransformType.ENCR, encr_id):
        if entry.aead:
            return entry.icv_size
    raise CryptoError(f"{name_of(EncrId, encr_id)} is not an AEAD cipher")


def check_encr_key_length(encr_id: int, key_length: int | None) -> int | None:
    """Validate the Key Length attribute (in bits) for a cipher; return the effective one."""
    return _encr(encr_id, key_length).key_bits or None


def encr_key_size(encr_id: int, key_length: int | None) -> int:
    """Octets of keying material a cipher consumes, salt included.

    AES-CBC: key_length/8. AES-GCM: key_length/8 + 4 octets of salt (RFC 5282 §7.1,
    RFC 4106 §8.1). ChaCha20-Poly1305: 32 + 4 (RFC 7634 §2). ENCR_NULL: 0.
    """
    return _encr(encr_id, key_length).key_size
