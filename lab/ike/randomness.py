"""The one source of randomness of an IKE endpoint: SPIs, nonces, IVs, padding, the cookie
secret, DH private values, retry and rekey jitter. Given a seeded source (`random.Random(s).randbytes`),
an exchange in memory is byte-for-byte the same every run (except an ML-KEM ciphertext: `cryptography`
draws the encapsulation's randomness itself); the default is the OS's CSPRNG.
"""
from __future__ import annotations

import os
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric import ec

from .const import DhGroup, coerce, name_of
from .crypto import new_key_exchange
from .crypto.dh import MLKEM_SEED_SIZE, MLKEM_SIZES, MODP_PRIMES, KeyExchange
from .errors import CryptoError

_CURVES: dict[int, type[ec.EllipticCurve]] = {DhGroup.ECP_256: ec.SECP256R1, DhGroup.ECP_384: ec.SECP384R1,
                                              DhGroup.ECP_521: ec.SECP521R1}


class RandomSource:
    """Random octets from one callable; `source(n)` returns n octets."""

    def __init__(self, source: Callable[[int], bytes] = os.urandom) -> None:
        self.source = source

    def __call__(self, n: int) -> bytes:
        return self.source(n)

    def uniform(self, low: float, high: float) -> float:
        """A number in [low, high]."""
        return low + (high - low) * int.from_bytes(self.source(4), "big") / 0xFFFFFFFF

    def key_exchange(self, group: int) -> KeyExchange:
        """A key exchange for `group` whose private value comes from this source."""
        g = coerce(DhGroup, group)
        if g in MODP_PRIMES:
            p = MODP_PRIMES[g]
            # RFC 7296 §2.12 (fresh exponentials); private value in 2..p-2, 64 extra bits make the bias negligible
            size = (p.bit_length() + 7) // 8 + 8
            return new_key_exchange(g, int.from_bytes(self.source(size), "big") % (p - 3) + 2)
        if g in _CURVES:
            bits = _CURVES[g]().key_size
            size = (bits + 7) // 8
            for _ in range(64):
                candidate = int.from_bytes(self.source(size), "big") >> (8 * size - bits)
                try:
                    return new_key_exchange(g, candidate)  # refused outside 1..n-1: draw again
                except CryptoError:
                    continue
            raise CryptoError(f"the random source gave no valid {name_of(DhGroup, g)} private value in 64 draws")
        if g == DhGroup.CURVE25519:
            return new_key_exchange(g, self.source(32))  # RFC 7748 §5: any 32 octets, clamped when used
        if g in MLKEM_SIZES:
            # FIPS 203 §7.1: the key pair from a 64-octet seed (encapsulation draws from the library's own source)
            return new_key_exchange(g, self.source(MLKEM_SEED_SIZE))
        return new_key_exchange(g)  # unsupported: the same error as everywhere
