"""The IKEv2 pseudorandom functions and prf+ (RFC 7296 §2.13): HMAC (RFC 2104, RFC 4868),
AES-XCBC-PRF-128 (RFC 4434) and AES-CMAC-PRF-128 (RFC 4615)."""
from __future__ import annotations

import functools
import hmac
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

from ..const import PrfId, coerce
from ..errors import CryptoError
from .algorithms import prf_hash, prf_is_aes

AES_BLOCK = 16


def _aes_ecb(key: bytes, block: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return encryptor.update(block) + encryptor.finalize()


def aes_xcbc_mac(key: bytes, message: bytes) -> bytes:
    """AES-XCBC-MAC with a 128-bit key, the full 128-bit output (RFC 3566 §4)."""
    k1, k2, k3 = (_aes_ecb(key, bytes([n]) * AES_BLOCK) for n in (1, 2, 3))
    blocks = [message[i:i + AES_BLOCK] for i in range(0, len(message), AES_BLOCK)] or [b""]
    e = bytes(AES_BLOCK)
    for block in blocks[:-1]:
        e = _aes_ecb(k1, bytes(a ^ b for a, b in zip(block, e)))
    last = blocks[-1]
    if len(last) == AES_BLOCK:  # RFC 3566 §4 step (3) a)
        pad, tail = last, k2
    else:  # step (3) b): 10* padding, K3
        pad, tail = last + b"\x80" + bytes(AES_BLOCK - len(last) - 1), k3
    return _aes_ecb(k1, bytes(a ^ b ^ c for a, b, c in zip(pad, e, tail)))


def aes_xcbc_prf128(key: bytes, message: bytes) -> bytes:
    """AES-XCBC-PRF-128 (RFC 4434 §2): a short key is padded with zeros, a long one shortened
    by AES-XCBC-PRF-128 under the all-zero key."""
    if len(key) < AES_BLOCK:
        key = key + bytes(AES_BLOCK - len(key))
    elif len(key) > AES_BLOCK:
        key = aes_xcbc_mac(bytes(AES_BLOCK), key)
    return aes_xcbc_mac(key, message)


def aes_cmac(key: bytes, message: bytes) -> bytes:
    """AES-CMAC (RFC 4493), the full 128-bit output."""
    mac = CMAC(algorithms.AES(key))
    mac.update(message)
    return mac.finalize()


def aes_cmac_prf128(key: bytes, message: bytes) -> bytes:
    """AES-CMAC-PRF-128 (RFC 4615 §3): a key of any length other than 128 bits becomes
    AES-CMAC(0^128, key)."""
    if len(key) != AES_BLOCK:
        key = aes_cmac(bytes(AES_BLOCK), key)
    return aes_cmac(key, message)


_AES_PRFS = {PrfId.AES128_XCBC: aes_xcbc_prf128, PrfId.AES128_CMAC: aes_cmac_prf128}

PRF_PLUS_MAX_BLOCKS = 255


@dataclass(frozen=True)
class Prf:
    """One negotiated PRF transform; `prf` and `prf_plus` as RFC 7296 writes them."""

    id: PrfId

    @classmethod
    def from_id(cls, prf_id: int) -> Prf:
        if not prf_is_aes(prf_id):
            prf_hash(prf_id)
        return cls(coerce(PrfId, prf_id))  # type: ignore[arg-type]

    @property
    def fixed_key(self) -> bool:
        """Whether RFC 7296 §2.14 treats the PRF as taking a fixed-length key (the AES PRFs)."""
        return self.id in _AES_PRFS

    @property
    def output_size(self) -> int:
        return _hash_of(self.id)[1]

    @property
    def key_size(self) -> int:
        """The preferred key length, used for SK_d, SK_pi and SK_pr (RFC 7296 §2.14)."""
        return self.output_size

    def prf(self, key: bytes, data: bytes) -> bytes:
        aes = _AES_PRFS.get(self.id)
        if aes is not None:
            return aes(bytes(key), bytes(data))
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
    if prf_is_aes(prf_id):
        return "", AES_BLOCK
    hash_algorithm = prf_hash(prf_id)()  # an instance: the class declares name and size as properties
    return hash_algorithm.name, hash_algorithm.digest_size


def get_prf(prf_id: int) -> Prf:
    """The `Prf` for a transform id; CryptoError naming it when unsupported."""
    return Prf.from_id(prf_id)


def prf(prf_id: int, key: bytes, data: bytes) -> bytes:
    """prf(key, data) for the PRF transform `prf_id`."""
    return get_prf(prf_id).prf(key, data)


def prf_plus(prf_id: int, key: bytes, seed: bytes, length: int) -> bytes:
    """The first `length` octets of prf+(key, seed) (RFC 7296 §2.13)."""
    return get_prf(prf_id).prf_plus(key, seed, length)
