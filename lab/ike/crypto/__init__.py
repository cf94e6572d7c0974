"""IKEv2 cryptography: PRFs, key derivation, key exchange, SK protection, AUTH.

Pure functions and small objects over the `cryptography` package; no I/O, no clock,
no global state.
"""
from __future__ import annotations

from .algorithms import (
    aead_icv_size,
    encr_key_size,
    integ_icv_size,
    integ_key_size,
    is_aead,
    prf_key_size,
)
from .dh import (
    SUPPORTED_GROUPS,
    EcpKeyExchange,
    KeyExchange,
    ModpKeyExchange,
    X25519KeyExchange,
    new_key_exchange,
    public_value_size,
)
from .keys import (
    ChildSaKeys,
    IkeSaKeys,
    child_keymat,
    derive_child_sa_keys,
    derive_ike_sa_keys,
    derive_rekeyed_ike_sa_keys,
    ike_sa_keys_from_skeyseed,
    rekey_skeyseed,
    skeyseed,
)
from .prf import Prf, get_prf, prf, prf_plus
from .sk import SkCipher, integ_mac

__all__ = [
    "SUPPORTED_GROUPS",
    "EcpKeyExchange",
    "KeyExchange",
    "ModpKeyExchange",
    "X25519KeyExchange",
    "new_key_exchange",
    "public_value_size",
    "ChildSaKeys",
    "IkeSaKeys",
    "Prf",
    "SkCipher",
    "aead_icv_size",
    "child_keymat",
    "derive_child_sa_keys",
    "derive_ike_sa_keys",
    "derive_rekeyed_ike_sa_keys",
    "encr_key_size",
    "get_prf",
    "ike_sa_keys_from_skeyseed",
    "integ_icv_size",
    "integ_key_size",
    "integ_mac",
    "is_aead",
    "prf",
    "prf_key_size",
    "prf_plus",
    "rekey_skeyseed",
    "skeyseed",
]
