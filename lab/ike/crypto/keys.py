"""SKEYSEED, the seven IKE SA keys, child SA KEYMAT and IKE SA rekeying.

RFC 7296 §2.14 (IKE SA), §2.17 (child SAs), §2.18 (rekeyed IKE SA). Key objects keep
their octets out of `repr` so that traces and logs never show key material.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields

from ..const import EncrId, IntegId
from ..errors import CryptoError
from .algorithms import encr_key_size, integ_key_size, is_aead
from .prf import get_prf


def _describe(obj: object) -> str:
    parts = ", ".join(f"{f.name}=<{len(getattr(obj, f.name))} octets>" for f in fields(obj))  # type: ignore[arg-type]
    return f"{type(obj).__name__}({parts})"


@dataclass(frozen=True)
class IkeSaKeys:
    """SKEYSEED and {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} (RFC 7296 §2.14)."""

    skeyseed: bytes = field(repr=False)
    sk_d: bytes = field(repr=False)
    sk_ai: bytes = field(repr=False)
    sk_ar: bytes = field(repr=False)
    sk_ei: bytes = field(repr=False)
    sk_er: bytes = field(repr=False)
    sk_pi: bytes = field(repr=False)
    sk_pr: bytes = field(repr=False)

    def __repr__(self) -> str:
        return _describe(self)


@dataclass(frozen=True)
class ChildSaKeys:
    """The four child SA keys in KEYMAT order: initiator-to-responder first (RFC 7296 §2.17)."""

    encr_i: bytes = field(repr=False)
    integ_i: bytes = field(repr=False)
    encr_r: bytes = field(repr=False)
    integ_r: bytes = field(repr=False)

    def __repr__(self) -> str:
        return _describe(self)


def _check_suite(encr_id: int | None, encr_key_length: int | None, integ_id: int) -> tuple[int, int]:
    encr_size = 0 if encr_id is None else encr_key_size(encr_id, encr_key_length)
    integ_size = integ_key_size(integ_id)
    if encr_id is not None and is_aead(encr_id) and integ_id != IntegId.NONE:
        raise CryptoError(f"{EncrId(encr_id).name} is an AEAD cipher and takes no integrity transform")
    return encr_size, integ_size


def _check_spi(name: str, spi: bytes) -> None:
    if len(spi) != 8:
        raise CryptoError(f"{name} must be 8 octets, got {len(spi)}")


def skeyseed(prf_id: int, nonce_i: bytes, nonce_r: bytes, shared_secret: bytes) -> bytes:
    """SKEYSEED = prf(Ni | Nr, g^ir) (RFC 7296 §2.14)."""
    prf = get_prf(prf_id)
    if prf.fixed_key:
        # RFC 7296 §2.14: a PRF with a fixed-length key takes half of it from the start of Ni,
        # half from the start of Nr (AES-XCBC and AES-CMAC: 64 bits each, as strongSwan does)
        half = prf.key_size // 2
        return prf.prf(bytes(nonce_i)[:half] + bytes(nonce_r)[:half], shared_secret)
    return prf.prf(bytes(nonce_i) + bytes(nonce_r), shared_secret)


def rekey_skeyseed(
    old_prf_id: int, sk_d_old: bytes, shared_secret_new: bytes, nonce_i: bytes, nonce_r: bytes,
    additional: Sequence[bytes] = (),
) -> bytes:
    """SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr), with the old IKE SA's PRF (RFC 7296 §2.18);
    with additional key exchanges run in IKE_FOLLOWUP_KE, SKEYSEED = prf(SK_d, SK(0) | Ni | Nr |
    SK(1) | ... | SK(n)) (RFC 9370 §2.2.4)."""
    data = bytes(shared_secret_new) + bytes(nonce_i) + bytes(nonce_r) + b"".join(bytes(k) for k in additional)
    return get_prf(old_prf_id).prf(sk_d_old, data)


def ike_sa_keys_from_skeyseed(
    prf_id: int,
    encr_id: int,
    encr_key_length: int | None,
    integ_id: int,
    skeyseed_value: bytes,
    nonce_i: bytes,
    nonce_r: bytes,
    spi_i: bytes,
    spi_r: bytes,
) -> IkeSaKeys:
    """{SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr)."""
    _check_spi("SPIi", spi_i)
    _check_spi("SPIr", spi_r)
    prf = get_prf(prf_id)
    encr_size, integ_size = _check_suite(encr_id, encr_key_length, integ_id)
    sizes = (prf.key_size, integ_size, integ_size, encr_size, encr_size, prf.key_size, prf.key_size)
    seed = bytes(nonce_i) + bytes(nonce_r) + bytes(spi_i) + bytes(spi_r)
    stream = prf.prf_plus(skeyseed_value, seed, sum(sizes))
    parts = []
    pos = 0
    for size in sizes:
        parts.append(stream[pos:pos + size])
        pos += size
    return IkeSaKeys(bytes(skeyseed_value), *parts)


def derive_ike_sa_keys(
    prf_id: int,
    encr_id: int,
    encr_key_length: int | None,
    integ_id: int,
    shared_secret: bytes,
    nonce_i: bytes,
    nonce_r: bytes,
    spi_i: bytes,
    spi_r: bytes,
) -> IkeSaKeys:
    """SKEYSEED and the seven keys of a new IKE SA from its IKE_SA_INIT exchange (RFC 7296 §2.14)."""
    seed_key = skeyseed(prf_id, nonce_i, nonce_r, shared_secret)
    return ike_sa_keys_from_skeyseed(
        prf_id, encr_id, encr_key_length, integ_id, seed_key, nonce_i, nonce_r, spi_i, spi_r
    )


def derive_rekeyed_ike_sa_keys(
    old_prf_id: int,
    sk_d_old: bytes,
    prf_id: int,
    encr_id: int,
    encr_key_length: int | None,
    integ_id: int,
    shared_secret_new: bytes,
    nonce_i: bytes,
    nonce_r: bytes,
    spi_i: bytes,
    spi_r: bytes,
    additional: Sequence[bytes] = (),
) -> IkeSaKeys:
    """Keys of the IKE SA created by a rekeying CREATE_CHILD_SA exchange (RFC 7296 §2.18), and the
    shared secrets of the IKE_FOLLOWUP_KE exchanges after it (RFC 9370 §2.2.4).

    SKEYSEED uses the old IKE SA's PRF; prf+ uses the new IKE SA's PRF, SPIs and nonces.
    """
    seed_key = rekey_skeyseed(old_prf_id, sk_d_old, shared_secret_new, nonce_i, nonce_r, additional)
    return ike_sa_keys_from_skeyseed(
        prf_id, encr_id, encr_key_length, integ_id, seed_key, nonce_i, nonce_r, spi_i, spi_r
    )


def child_keymat(
    prf_id: int,
    sk_d: bytes,
    nonce_i: bytes,
    nonce_r: bytes,
    length: int,
    shared_secret: bytes | None = None,
    additional: Sequence[bytes] = (),
) -> bytes:
    """KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr), its first `length` octets (RFC 7296 §2.17);
    with additional key exchanges, prf+(SK_d, SK(0) | Ni | Nr | SK(1) | ... | SK(n)), SK(0) being
    g^ir (new) of CREATE_CHILD_SA (RFC 9370 §2.2.4), as for SKEYSEED at an IKE SA rekey."""
    if additional and shared_secret is None:
        raise CryptoError("additional key exchanges (RFC 9370 §2.2.4) need the CREATE_CHILD_SA key exchange too")
    # RFC 9370 §2.2.4: the additional shared secrets follow the nonces, in the order they were agreed
    seed = (bytes(shared_secret) if shared_secret is not None else b"") + bytes(nonce_i) + bytes(nonce_r) \
        + b"".join(bytes(k) for k in additional)
    return get_prf(prf_id).prf_plus(sk_d, seed, length)


def derive_child_sa_keys(
    prf_id: int,
    sk_d: bytes,
    encr_id: int | None,
    encr_key_length: int | None,
    integ_id: int,
    nonce_i: bytes,
    nonce_r: bytes,
    shared_secret: bytes | None = None,
    additional: Sequence[bytes] = (),
) -> ChildSaKeys:
    """The keys of one child SA pair, taken from KEYMAT in RFC 7296 §2.17 order.

    Encryption key before integrity key (RFC 4301 §5.2), initiator-to-responder before
    responder-to-initiator. `encr_id` None means no cipher (AH).
    """
    encr_size, integ_size = _check_suite(encr_id, encr_key_length, integ_id)
    keymat = child_keymat(prf_id, sk_d, nonce_i, nonce_r, 2 * (encr_size + integ_size), shared_secret,
                          additional)
    a = encr_size
    b = a + integ_size
    c = b + encr_size
    return ChildSaKeys(keymat[:a], keymat[a:b], keymat[b:c], keymat[c:])
