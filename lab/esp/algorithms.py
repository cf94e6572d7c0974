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

from hmac import compare_digest

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.hmac import HMAC

from lab.iana import Algorithm, EncrId, IntegId, TransformType, algorithm, algorithms_of, name_of

from .errors import EspConfigError


def _esp_encrs(encr_id: int) -> list[Algorithm]:
    entries = [e for e in algorithms_of(TransformType.ENCR, encr_id) if e.esp]
    if not entries:
        raise EspConfigError(f"unsupported ESP encryption algorithm {name_of(EncrId, encr_id)}")
    return entries


def encr_spec(encr_id: int) -> Algorithm:
    """The registry entry of an ESP cipher (its first key length: IV, salt, block and ICV sizes do
    not depend on it)."""
    return _esp_encrs(encr_id)[0]


def esp_encr(encr_id: int, keymat_size: int) -> Algorithm:
    """The registry entry of an ESP cipher whose KEYMAT slice (salt included) has `keymat_size` octets."""
    entries = _esp_encrs(encr_id)
    for entry in entries:
        if entry.key_size == keymat_size:
            return entry
    sizes = sorted({e.key_size for e in entries})
    salt = f" (key and {entries[0].salt_size}-octet salt)" if entries[0].salt_size else ""
    raise EspConfigError(f"{name_of(EncrId, encr_id)} takes {'/'.join(map(str, sizes))} octets of KEYMAT{salt}, "
                         f"got {keymat_size}")


def integ_spec(integ_id: int, ah: bool = False) -> Algorithm:
    """The registry entry of an integrity algorithm lab.esp implements for ESP (or AH)."""
    entry = algorithm(TransformType.INTEG, integ_id)
    if entry is None or not (entry.ah if ah else entry.esp):
        raise EspConfigError(f"unsupported integrity algorithm {name_of(IntegId, integ_id)}"
                             + (" for AH" if ah else ""))
    return entry


def encr_keymat_size(encr_id: int, key_bits: int | None = None) -> int:
    """Octets of KEYMAT an encryption transform takes, salt included (RFC 4106 §8.1, RFC 7634 §4)."""
    entries = _esp_encrs(encr_id)
    if key_bits is None and len({e.key_size for e in entries}) == 1:
        return entries[0].key_size
    for entry in entries:
        if entry.key_bits == (key_bits or 0) or (entry.key_size - entry.salt_size) * 8 == key_bits:
            return entry.key_size
    lengths = sorted({(e.key_size - e.salt_size) * 8 for e in entries})
    raise EspConfigError(f"{name_of(EncrId, encr_id)} takes keys of {', '.join(map(str, lengths))} bits, "
                         f"not {key_bits}")


def integ_keymat_size(integ_id: int) -> int:
    """Octets of KEYMAT an integrity transform takes (RFC 4868 §2.1.1, RFC 2404 §3)."""
    return integ_spec(integ_id).key_size


def icv_size(encr_id: int, integ_id: int) -> int:
    encr = _esp_encrs(encr_id)[0]
    return encr.icv_size if encr.aead else integ_spec(integ_id).icv_size


def _mac(integ: Algorithm, key: bytes) -> HMAC | None:
    if integ.id == IntegId.NONE:
        return None
    if integ.hmac_hash is None:
        raise EspConfigError(f"{name_of(IntegId, integ.id)} is not an HMAC; lab.esp cannot compute it")
    if len(key) != integ.key_size:
        raise EspConfigError(f"{name_of(IntegId, integ.id)} takes a {integ.key_size}-octet key, got {len(key)}")
    return HMAC(key, getattr(hashes, integ.hmac_hash.upper())())


class AeadTransform:
    """AES-GCM (RFC 4106), AES-CCM (RFC 4309) and ChaCha20-Poly1305 (RFC 7634): nonce = salt || IV."""

    __slots__ = ("iv_size", "icv_size", "align", "min_length", "_aead", "_salt")

    def __init__(self, aead: AESGCM | AESCCM | ChaCha20Poly1305, salt: bytes, encr: Algorithm) -> None:
        self.iv_size = encr.iv_size
        self.icv_size = encr.icv_size
        # RFC 4303 §2.4: a stream cipher still aligns the trailer to 4 octets
        self.align = max(4, encr.block_size)
        self.min_length = 8 + self.iv_size + 2 + self.icv_size
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


class TruncatedGcmTransform(AeadTransform):
    """AES-GCM with an 8- or 12-octet ICV (RFC 4106 §3.3, §8): the tag is the leading octets of
    GCM's 16 (NIST SP 800-38D §5.2.1.2); opening needs a decryption context per packet."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes, salt: bytes, encr: Algorithm) -> None:
        super().__init__(AESGCM(key), salt, encr)
        self._key = algorithms.AES(key)

    def seal(self, header: bytes, seq_hi: bytes | None, iv: bytes, payload: bytes, trailer: bytes) -> bytes:
        aad = header if seq_hi is None else header[:4] + seq_hi + header[4:]
        plaintext = payload + trailer
        sealed = self._aead.encrypt(self._salt + iv, plaintext, aad)
        return header + iv + sealed[: len(plaintext) + self.icv_size]

    def open(self, data: bytes, seq_hi: bytes | None) -> bytes | None:
        aad = data[:8] if seq_hi is None else data[:4] + seq_hi + data[4:8]
        icv = self.icv_size
        decryptor = Cipher(self._key, modes.GCM(self._salt + data[8:16], data[-icv:], min_tag_length=icv)).decryptor()
        decryptor.authenticate_additional_data(aad)
        plaintext = decryptor.update(data[16:-icv])
        try:
            return plaintext + decryptor.finalize()
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


class CtrTransform:
    """AES-CTR (RFC 3686) with an HMAC (encrypt-then-MAC, RFC 4303 §3.3.2). The counter block is
    nonce || IV || block counter, the counter starting at 1 (RFC 3686 §4)."""

    __slots__ = ("iv_size", "icv_size", "align", "_aes", "_nonce", "_mac")

    def __init__(self, key: bytes, nonce: bytes, mac: HMAC, icv: int) -> None:
        self.iv_size = 8
        self.icv_size = icv
        # RFC 3686 §3.2: no padding to a block, only the 4-octet alignment of RFC 4303 §2.4
        self.align = 4
        self._aes = algorithms.AES(key)
        self._nonce = nonce
        self._mac = mac

    def check_length(self, n: int) -> bool:
        return n >= 8 + 8 + 2 + self.icv_size

    def _icv(self, body: bytes, seq_hi: bytes | None) -> bytes:
        h = self._mac.copy()
        h.update(body)
        if seq_hi is not None:
            h.update(seq_hi)
        return h.finalize()[: self.icv_size]

    def seal(self, header: bytes, seq_hi: bytes | None, iv: bytes, payload: bytes, trailer: bytes) -> bytes:
        encryptor = Cipher(self._aes, modes.CTR(self._nonce + iv + b"\x00\x00\x00\x01")).encryptor()
        body = header + iv + encryptor.update(payload + trailer)
        return body + self._icv(body, seq_hi)

    def open(self, data: bytes, seq_hi: bytes | None) -> bytes | None:
        icv = self.icv_size
        body = data[:-icv]
        if not compare_digest(self._icv(body, seq_hi), data[-icv:]):
            return None
        decryptor = Cipher(self._aes, modes.CTR(self._nonce + data[8:16] + b"\x00\x00\x00\x01")).decryptor()
        return decryptor.update(body[16:])


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


EspTransform = AeadTransform | GmacTransform | TruncatedGcmTransform | CtrTransform | CbcTransform | NullTransform


def esp_transform(encr_id: int, encr_key: bytes, integ_id: int, integ_key: bytes) -> EspTransform:
    """The transform for one ESP SA; `encr_key` is the KEYMAT slice, salt included."""
    encr = esp_encr(encr_id, len(encr_key))
    integ = integ_spec(integ_id)
    name = name_of(EncrId, encr_id)
    if encr.aead:
        if integ_id != IntegId.NONE:
            # RFC 4106 §4, RFC 7634 §2: combined-mode ciphers take no integrity transform
            raise EspConfigError(f"{name} is a combined-mode cipher and takes no integrity algorithm")
        key, salt = encr_key[: -encr.salt_size], encr_key[-encr.salt_size:]
        if encr_id == EncrId.CHACHA20_POLY1305:
            return AeadTransform(ChaCha20Poly1305(key), salt, encr)
        if encr_id == EncrId.NULL_AUTH_AES_GMAC:
            return GmacTransform(AESGCM(key), salt, encr)
        if encr_id == EncrId.AES_GCM_16:
            return AeadTransform(AESGCM(key), salt, encr)
        if encr_id in (EncrId.AES_GCM_8, EncrId.AES_GCM_12):
            return TruncatedGcmTransform(key, salt, encr)
        if encr_id in (EncrId.AES_CCM_8, EncrId.AES_CCM_12, EncrId.AES_CCM_16):
            # RFC 4309 §4, §5: 11-octet nonce (3-octet salt || IV), the ICV the tag
            return AeadTransform(AESCCM(key, tag_length=encr.icv_size), salt, encr)
        raise EspConfigError(f"lab.esp has no implementation of {name}")
    mac = _mac(integ, integ_key)
    if encr_id == EncrId.NULL:
        if mac is None:
            # RFC 4303 §3.2: ESP must provide confidentiality or integrity
            raise EspConfigError("ENCR_NULL needs an integrity algorithm")
        return NullTransform(mac, integ.icv_size)
    if encr_id == EncrId.AES_CBC:
        return CbcTransform(encr_key, mac, integ.icv_size)
    if encr_id == EncrId.AES_CTR:
        if mac is None:
            # RFC 3686 §8: counter mode without an integrity check is trivial to forge
            raise EspConfigError("ENCR_AES_CTR needs an integrity algorithm")
        return CtrTransform(encr_key[: -encr.salt_size], encr_key[-encr.salt_size:], mac, integ.icv_size)
    raise EspConfigError(f"lab.esp has no implementation of {name}")


def ah_mac(integ_id: int, integ_key: bytes) -> tuple[HMAC, int]:
    """The HMAC template and ICV size for an AH SA (RFC 4302 §2.6)."""
    if integ_id == IntegId.NONE:
        raise EspConfigError("AH needs an integrity algorithm")
    integ = integ_spec(integ_id, ah=True)
    mac = _mac(integ, integ_key)
    assert mac is not None
    return mac, integ.icv_size
