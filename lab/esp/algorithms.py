"""ESP and AH transforms keyed by IANA ids, each set up once per SA.

A transform turns (ESP header, IV, payload, trailer) into the ESP packet from the
header onwards, and back. The cipher and MAC objects live as long as the SA: the hot
path allocates only the bytes it returns.

AES-CBC keeps one encryptor and one decryptor per SA instead of a context per packet
(a fresh context costs ~3 us). Decrypting, the IV is fed as a first ciphertext block,
which resets the chaining value. Encrypting, the block D_K(IV) xor C_prev is fed first,
so the chaining value becomes exactly the IV chosen for the packet.
"""
from __future__ import annotations

from dataclasses import dataclass
from hmac import compare_digest

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.hmac import HMAC

from ..ike.const import EncrId, IntegId, name_of
from .errors import EspConfigError


@dataclass(frozen=True)
class EncrSpec:
    name: str
    key_bits: tuple[int, ...]
    salt_size: int
    iv_size: int
    block_size: int
    icv_size: int
    aead: bool


@dataclass(frozen=True)
class IntegSpec:
    name: str
    hash: type[hashes.HashAlgorithm] | None
    key_size: int
    icv_size: int


ENCR: dict[int, EncrSpec] = {
    # RFC 4303 §2; RFC 2410
    EncrId.NULL: EncrSpec("NULL", (0,), 0, 0, 1, 0, False),
    # RFC 3602 §2.1, §3
    EncrId.AES_CBC: EncrSpec("AES_CBC", (128, 192, 256), 0, 16, 16, 0, False),
    # RFC 4106 §3.1, §6, §8.1
    EncrId.AES_GCM_16: EncrSpec("AES_GCM_16", (128, 192, 256), 4, 8, 1, 16, True),
    # RFC 4543 §3.1, §8
    EncrId.NULL_AUTH_AES_GMAC: EncrSpec("NULL_AUTH_AES_GMAC", (128, 192, 256), 4, 8, 1, 16, True),
    # RFC 7634 §2, §4
    EncrId.CHACHA20_POLY1305: EncrSpec("CHACHA20_POLY1305", (256,), 4, 8, 1, 16, True),
}

INTEG: dict[int, IntegSpec] = {
    IntegId.NONE: IntegSpec("NONE", None, 0, 0),
    # RFC 2404 §2
    IntegId.HMAC_SHA1_96: IntegSpec("HMAC_SHA1_96", hashes.SHA1, 20, 12),
    # RFC 4868 §2.1.1, §2.6
    IntegId.HMAC_SHA2_256_128: IntegSpec("HMAC_SHA2_256_128", hashes.SHA256, 32, 16),
    IntegId.HMAC_SHA2_384_192: IntegSpec("HMAC_SHA2_384_192", hashes.SHA384, 48, 24),
    IntegId.HMAC_SHA2_512_256: IntegSpec("HMAC_SHA2_512_256", hashes.SHA512, 64, 32),
}


def encr_spec(encr_id: int) -> EncrSpec:
    try:
        return ENCR[encr_id]
    except KeyError:
        raise EspConfigError(f"unsupported ESP encryption algorithm {name_of(EncrId, encr_id)}") from None


def integ_spec(integ_id: int) -> IntegSpec:
    try:
        return INTEG[integ_id]
    except KeyError:
        raise EspConfigError(f"unsupported integrity algorithm {name_of(IntegId, integ_id)}") from None


def encr_keymat_size(encr_id: int, key_bits: int | None = None) -> int:
    """Octets of KEYMAT an encryption transform takes, salt included (RFC 4106 §8.1, RFC 7634 §4)."""
    spec = encr_spec(encr_id)
    bits = spec.key_bits[0] if key_bits is None and len(spec.key_bits) == 1 else key_bits
    if bits not in spec.key_bits:
        raise EspConfigError(f"{spec.name} takes keys of {', '.join(map(str, spec.key_bits))} bits, not {key_bits}")
    return bits // 8 + spec.salt_size


def integ_keymat_size(integ_id: int) -> int:
    """Octets of KEYMAT an integrity transform takes (RFC 4868 §2.1.1, RFC 2404 §3)."""
    return integ_spec(integ_id).key_size


def icv_size(encr_id: int, integ_id: int) -> int:
    return encr_spec(encr_id).icv_size or integ_spec(integ_id).icv_size


def _mac(integ: IntegSpec, key: bytes) -> HMAC | None:
    if integ.hash is None:
        return None
    if len(key) != integ.key_size:
        raise EspConfigError(f"{integ.name} takes a {integ.key_size}-octet key, got {len(key)}")
    return HMAC(key, integ.hash())


class AeadTransform:
    """AES-GCM (RFC 4106) and ChaCha20-Poly1305 (RFC 7634): nonce = salt || IV."""

    __slots__ = ("iv_size", "icv_size", "align", "min_length", "_aead", "_salt")

    def __init__(self, aead: AESGCM | ChaCha20Poly1305, salt: bytes) -> None:
        self.iv_size = 8
        self.icv_size = 16
        self.align = 4
        self.min_length = 8 + 8 + 2 + 16
        self._aead = aead
        self._salt = salt

    def check_length(self, n: int) -> bool:
        return n >= self.min_length

    def seal(self, header: bytes, seq_hi: bytes | None, iv: bytes, payload: bytes, trailer: bytes) -> bytes:
        # RFC 4106 §5: AAD is SPI || seq, or SPI || seq_hi || seq_lo with ESN
        aad = header if seq_hi is None else header[:4] + seq_hi + header[4:]
        return header + iv + self._aead.encrypt(self._salt + iv, payload + trailer, aad)

    def open(self, data: bytes, seq_hi: bytes | None) -> bytes | None:
        aad = data[:8] if seq_hi is None else data[:4] + seq_hi + data[4:8]
        try:
            return self._aead.decrypt(self._salt + data[8:16], data[16:], aad)
        except InvalidTag:
            return None


class GmacTransform(AeadTransform):
    """ENCR_NULL_AUTH_AES_GMAC (RFC 4543 §3): payload in the clear, GMAC over all of it; the
    same sizes, salt and nonce as AeadTransform, only what is sealed differs."""

    __slots__ = ()

    def seal(self, header: bytes, seq_hi: bytes | None, iv: bytes, payload: bytes, trailer: bytes) -> bytes:
        body = b"".join((header, iv, payload, trailer))
        # RFC 4543 §3.3: AAD = SPI || seq (|| ESN split) || IV || payload || trailer
        aad = body if seq_hi is None else body[:4] + seq_hi + body[4:]
        return body + self._aead.encrypt(self._salt + iv, b"", aad)

    def open(self, data: bytes, seq_hi: bytes | None) -> bytes | None:
        body = data[:-16]
        aad = body if seq_hi is None else body[:4] + seq_hi + body[4:]
        try:
            self._aead.decrypt(self._salt + data[8:16], data[-16:], aad)
        except InvalidTag:
            return None
        return body[16:]


class CbcTransform:
    """AES-CBC (RFC 3602) with an optional HMAC (encrypt-then-MAC, RFC 4303 §3.3.2)."""

    __slots__ = ("iv_size", "icv_size", "align", "_enc", "_dec", "_ecb_dec", "_chain", "_mac")

    def __init__(self, key: bytes, mac: HMAC | None, icv: int) -> None:
        aes = algorithms.AES(key)
        zero = bytes(16)
        self.iv_size = 16
        self.icv_size = icv
        self.align = 16
        self._enc = Cipher(aes, modes.CBC(zero)).encryptor()
        self._dec = Cipher(aes, modes.CBC(zero)).decryptor()
        self._ecb_dec = Cipher(aes, modes.ECB()).decryptor()
        self._chain = zero
        self._mac = mac

    def check_length(self, n: int) -> bool:
        ct = n - 8 - 16 - self.icv_size
        return ct >= 16 and ct % 16 == 0

    def seal(self, header: bytes, seq_hi: bytes | None, iv: bytes, payload: bytes, trailer: bytes) -> bytes:
        lead = int.from_bytes(self._ecb_dec.update(iv), "big") ^ int.from_bytes(self._chain, "big")
        out = self._enc.update(b"".join((lead.to_bytes(16, "big"), payload, trailer)))
        self._chain = out[-16:]
        body = header + out
        if self._mac is None:
            return body
        h = self._mac.copy()
        h.update(body)
        if seq_hi is not None:
            # RFC 4303 §2.2.1: seq_hi is covered by the ICV, not sent
            h.update(seq_hi)
        return body + h.finalize()[: self.icv_size]

    def open(self, data: bytes, seq_hi: bytes | None) -> bytes | None:
        if self._mac is not None:
            icv = self.icv_size
            body = data[:-icv]
            h = self._mac.copy()
            h.update(body)
            if seq_hi is not None:
                h.update(seq_hi)
            if not compare_digest(h.finalize()[:icv], data[-icv:]):
                return None
            return self._dec.update(body[8:])[16:]
        return self._dec.update(data[8:])[16:]


class NullTransform:
    """ENCR_NULL (RFC 2410) with a mandatory HMAC: integrity only."""

    __slots__ = ("iv_size", "icv_size", "align", "_mac")

    def __init__(self, mac: HMAC, icv: int) -> None:
        self.iv_size = 0
        self.icv_size = icv
        self.align = 4
        self._mac = mac

    def check_length(self, n: int) -> bool:
        return n >= 8 + 2 + self.icv_size

    def seal(self, header: bytes, seq_hi: bytes | None, iv: bytes, payload: bytes, trailer: bytes) -> bytes:
        body = b"".join((header, payload, trailer))
        h = self._mac.copy()
        h.update(body)
        if seq_hi is not None:
            h.update(seq_hi)
        return body + h.finalize()[: self.icv_size]

    def open(self, data: bytes, seq_hi: bytes | None) -> bytes | None:
        icv = self.icv_size
        body = data[:-icv]
        h = self._mac.copy()
        h.update(body)
        if seq_hi is not None:
            h.update(seq_hi)
        if not compare_digest(h.finalize()[:icv], data[-icv:]):
            return None
        return body[8:]


EspTransform = AeadTransform | GmacTransform | CbcTransform | NullTransform


def esp_transform(encr_id: int, encr_key: bytes, integ_id: int, integ_key: bytes) -> EspTransform:
    """The transform for one ESP SA; `encr_key` is the KEYMAT slice, salt included."""
    encr = encr_spec(encr_id)
    integ = integ_spec(integ_id)
    if encr.aead:
        if integ_id != IntegId.NONE:
            # RFC 4106 §4, RFC 7634 §2: combined-mode ciphers take no integrity transform
            raise EspConfigError(f"{encr.name} is a combined-mode cipher and takes no integrity algorithm")
        bits = (len(encr_key) - encr.salt_size) * 8
        if bits not in encr.key_bits:
            raise EspConfigError(
                f"{encr.name} takes {'/'.join(str(b // 8 + encr.salt_size) for b in encr.key_bits)} octets "
                f"of KEYMAT (key and {encr.salt_size}-octet salt), got {len(encr_key)}"
            )
        key, salt = encr_key[: -encr.salt_size], encr_key[-encr.salt_size :]
        if encr_id == EncrId.CHACHA20_POLY1305:
            return AeadTransform(ChaCha20Poly1305(key), salt)
        if encr_id == EncrId.NULL_AUTH_AES_GMAC:
            return GmacTransform(AESGCM(key), salt)
        return AeadTransform(AESGCM(key), salt)
    mac = _mac(integ, integ_key)
    if encr_id == EncrId.NULL:
        if mac is None:
            # RFC 4303 §3.2: ESP must provide confidentiality or integrity
            raise EspConfigError("ENCR_NULL needs an integrity algorithm")
        return NullTransform(mac, integ.icv_size)
    if len(encr_key) * 8 not in encr.key_bits:
        raise EspConfigError(f"{encr.name} takes keys of 16, 24 or 32 octets, got {len(encr_key)}")
    return CbcTransform(encr_key, mac, integ.icv_size)


def ah_mac(integ_id: int, integ_key: bytes) -> tuple[HMAC, int]:
    """The HMAC template and ICV size for an AH SA (RFC 4302 §2.6)."""
    integ = integ_spec(integ_id)
    mac = _mac(integ, integ_key)
    if mac is None:
        raise EspConfigError("AH needs an integrity algorithm")
    return mac, integ.icv_size
