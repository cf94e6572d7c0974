"""The IKEv2 pseudorandom functions and prf+ (RFC 7296 §2.13)."""
from __future__ import annotations

import functools
import hmac
from dataclasses import dataclass

from ..const import PrfId, coerce
from ..errors import CryptoError
from .algorithms import prf_hash

PRF_PLUS_MAX_BLOCKS = 255


@dataclass(frozen=True)
class Prf:
    """One negotiated PRF transform; `prf` and `prf_plus` as RFC 7296 writes them."""

    id: PrfId

    @classmethod
    def from_id(cls, prf_id: int) -> Prf:
        prf_hash(prf_id)
        return cls(coerce(PrfId, prf_id))  # type: ignore[arg-type]

    @property
    def output_size(self) -> int:
        return _hash_of(self.id)[1]

    @property
    def key_size(self) -> int:
        """The preferred key length, used for SK_d, SK_pi and SK_pr (RFC 7296 §2.14)."""
        return self.output_size

    def prf(self, key: bytes, data: bytes) -> bytes:
        return hmac.digest(bytes(key), bytes(data), _hash_of(self.id)[0])

    def prf_plus(self, key: bytes, seed: bytes, length: int) -> bytes:
        # RFC 7296 §2.13
        if length < 0:
            raise CryptoError(f"prf+ cannot produce a negative length ({length})")
        blocks = -(-length // self.output_size)
        if blocks > PRF_PLUS_MAX_BLOCKS:
            raise CryptoError(
                f"prf+ with {self.id.name} yields at most {PRF_PLUS_MAX_BLOCKS * self.output_size} "
                f"octets (255 blocks); {length} were requested"
            )
        seed = bytes(seed)
        out = bytearray()
        t = b""
        for n in range(1, blocks + 1):
            t = self.prf(key, t + seed + bytes([n]))
            out += t
        return bytes(out[:length])


@functools.cache
def _hash_of(prf_id: int) -> tuple[str, int]:
    """hashlib's name of the hash behind an HMAC PRF, and its output size."""
    hash_class = prf_hash(prf_id)
    return hash_class.name, hash_class.digest_size


def get_prf(prf_id: int) -> Prf:
    """The `Prf` for a transform id; CryptoError naming it when unsupported."""
    return Prf.from_id(prf_id)


def prf(prf_id: int, key: bytes, data: bytes) -> bytes:
    """prf(key, data) for the PRF transform `prf_id`."""
    return get_prf(prf_id).prf(key, data)


def prf_plus(prf_id: int, key: bytes, seed: bytes, length: int) -> bytes:
    """The first `length` octets of prf+(key, seed) (RFC 7296 §2.13)."""
    return get_prf(prf_id).prf_plus(key, seed, length)
