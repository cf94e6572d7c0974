"""Protection of the Encrypted payload SK (and SKF) of RFC 7296 §3.14.

3DES-CBC (RFC 2451, for the Windows client profile), AES-CBC and AES-CTR (RFC 5930) with an HMAC
ICV (encrypt-then-MAC, RFC 7296 §3.14), AES-GCM and AES-CCM with 8, 12 or 16-octet ICVs (RFC 5282)
and ChaCha20-Poly1305 (RFC 7634). The caller supplies the IV, so the state machine decides where
randomness comes from and tests are deterministic.

`aad` is always the message prefix that precedes the IV: the IKE header through the
end of the SK generic payload header (for SKF, through the Total Fragments field),
with the final Length fields already in place. It is the AEAD associated data, and for
CBC it is the first part of what the ICV covers. Offsets in `ParseError`s raised by
`open` count from the start of that message, i.e. the IV is at offset `len(aad)`.
"""
from __future__ import annotations

import hmac as _std_hmac

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305

from lab.iana import TransformType, algorithm

from ..const import EncrId, IntegId, coerce, name_of
from ..errors import CryptoError, IntegrityError, ParseError
from .algorithms import (
    check_encr_key_length,
    integ_hash,
    integ_icv_size,
    integ_key_size,
)

MAX_PAD_LENGTH = 255

# The ciphers SK protection carries out (lab.iana marks them ike=True): RFC 3602, RFC 5930, RFC 5282, RFC 7634
_CCM = frozenset({EncrId.AES_CCM_8, EncrId.AES_CCM_12, EncrId.AES_CCM_16})
_CIPHERS = frozenset({EncrId.TRIPLE_DES, EncrId.AES_CBC, EncrId.AES_CTR, EncrId.AES_GCM_8, EncrId.AES_GCM_12, EncrId.AES_GCM_16,
                      *_CCM, EncrId.CHACHA20_POLY1305})


def integ_mac(integ_id: int, key: bytes, data: bytes) -> bytes:
    """The truncated HMAC an integrity transform produces over `data` (RFC 2404, RFC 4868)."""
    hash_cls = integ_hash(integ_id)
    if hash_cls is None:
        raise CryptoError("INTEG NONE computes no ICV")
    if len(key) != integ_key_size(integ_id):
        raise CryptoError(
            f"{name_of(IntegId, integ_id)} needs a {integ_key_size(integ_id)}-octet key, got {len(key)}"
        )
    h = hmac.HMAC(bytes(key), hash_cls())
    h.update(bytes(data))
    return h.finalize()[: integ_icv_size(integ_id)]


class SkCipher:
    """Encrypts and authenticates the inner payloads of an SK/SKF payload.

    Made from the negotiated ENCR transform (id and Key Length attribute, in bits) and
    the INTEG transform (IntegId.NONE for AEAD ciphers).
    """

    def __init__(self, encr_id: int, key_length: int | None, integ_id: int = IntegId.NONE) -> None:
        self.encr_id = coerce(EncrId, encr_id)
        self.key_length = check_encr_key_length(encr_id, key_length)
        self.integ_id = coerce(IntegId, integ_id)
        encr = algorithm(TransformType.ENCR, encr_id, key_length)
        if encr is None or not encr.ike or encr_id not in _CIPHERS:
            raise CryptoError(f"{name_of(EncrId, encr_id)} cannot protect an SK payload in this lab")
        self.aead = encr.aead
        if self.aead:
            if integ_id != IntegId.NONE:
                # RFC 5282 §8, RFC 7634 §4
                raise CryptoError(
                    f"{name_of(EncrId, encr_id)} is an AEAD cipher; the integrity transform must be NONE, "
                    f"not {name_of(IntegId, integ_id)}"
                )
            self.icv_size = encr.icv_size
        else:
            if integ_id == IntegId.NONE:
                # RFC 7296 §3.14: encrypt-then-MAC needs an integrity transform
                raise CryptoError(f"ENCR_{name_of(EncrId, encr_id)} needs an integrity transform; INTEG NONE "
                                  f"leaves the SK payload unauthenticated")
            integ = algorithm(TransformType.INTEG, integ_id)
            if integ is None or not integ.ike:
                raise CryptoError(f"{name_of(IntegId, integ_id)} cannot protect an SK payload in this lab")
            self.icv_size = integ_icv_size(integ_id)
        self.iv_size = encr.iv_size
        self.salt_size = encr.salt_size
        self.block_size = encr.block_size
        self.encr_key_size = encr.key_size
        self.integ_key_size = integ_key_size(integ_id)

    def __repr__(self) -> str:
        bits = f", {self.key_length}" if self.key_length else ""
        integ = "" if self.aead else f", {name_of(IntegId, self.integ_id)}"
        return f"SkCipher({name_of(EncrId, self.encr_id)}{bits}{integ})"

    def pad_length(self, inner_len: int) -> int:
        """The smallest padding for `inner_len` octets of inner payloads."""
        return (-(inner_len + 1)) % self.block_size

    def encrypted_length(self, inner_len: int, pad_length: int | None = None) -> int:
        """Octets of IV | ciphertext | ICV for `inner_len` octets of inner payloads."""
        if pad_length is None:
            pad_length = self.pad_length(inner_len)
        self._check_padding(inner_len, pad_length)
        return self.iv_size + inner_len + pad_length + 1 + self.icv_size

    def _check_padding(self, inner_len: int, pad_length: int) -> None:
        if not 0 <= pad_length <= MAX_PAD_LENGTH:
            raise CryptoError(f"pad length {pad_length} is outside 0..255")
        if (inner_len + pad_length + 1) % self.block_size:
            raise CryptoError(
                f"{inner_len} octets of payloads + {pad_length} of padding + the Pad Length octet "
                f"is not a multiple of the {self.block_size}-octet block"
            )

    def _check_keys(self, key_e: bytes, key_a: bytes) -> None:
        if len(key_e) != self.encr_key_size:
            raise CryptoError(f"{self!r} needs a {self.encr_key_size}-octet encryption key, got {len(key_e)}")
        if len(key_a) != self.integ_key_size:
            raise CryptoError(f"{self!r} needs a {self.integ_key_size}-octet integrity key, got {len(key_a)}")

    def seal(
        self,
        key_e: bytes,
        key_a: bytes,
        iv: bytes,
        aad: bytes,
        inner: bytes,
        padding: bytes | None = None,
    ) -> bytes:
        """IV | ciphertext | ICV for the inner payloads (RFC 7296 §3.14).

        `padding` gives the pad octets (any values); by default the fewest zero octets.
        """
        key_e, key_a, iv, aad, inner = bytes(key_e), bytes(key_a), bytes(iv), bytes(aad), bytes(inner)
        self._check_keys(key_e, key_a)
        if len(iv) != self.iv_size:
            raise CryptoError(f"{self!r} needs a {self.iv_size}-octet IV, got {len(iv)}")
        if padding is None:
            padding = bytes(self.pad_length(len(inner)))
        self._check_padding(len(inner), len(padding))
        plaintext = inner + bytes(padding) + bytes([len(padding)])
        if self.aead:
            return iv + self._aead_encrypt(key_e, iv, aad, plaintext)
        encryptor = self._classic(key_e, iv).encryptor()
        ciphertext = encryptor.update(plaintext) + encryptor.finalize()
        return iv + ciphertext + integ_mac(self.integ_id, key_a, aad + iv + ciphertext)

    def open(self, key_e: bytes, key_a: bytes, aad: bytes, data: bytes) -> bytes:
        """The inner payloads from IV | ciphertext | ICV, padding and Pad Length removed.

        IntegrityError when the ICV or tag does not verify; ParseError (offsets from
        the start of the message, see the module docstring) when the data cannot be an
        Encrypted payload body of this cipher.
        """
        key_e, key_a, aad, data = bytes(key_e), bytes(key_a), bytes(aad), bytes(data)
        self._check_keys(key_e, key_a)
        base = len(aad)
        minimum = self.iv_size + self.block_size + self.icv_size
        if len(data) < minimum:
            raise ParseError(
                base,
                f"Encrypted payload body of {len(data)} octets is shorter than IV ({self.iv_size}) + "
                f"one block ({self.block_size}) + ICV ({self.icv_size}) for {self!r}",
            )
        iv = data[: self.iv_size]
        ciphertext = data[self.iv_size: len(data) - self.icv_size]
        icv = data[len(data) - self.icv_size:]
        if self.aead:
            plaintext = self._aead_decrypt(key_e, iv, aad, ciphertext, icv)
        else:
            if len(ciphertext) % self.block_size:
                raise ParseError(
                    base + self.iv_size,
                    f"ciphertext of {len(ciphertext)} octets is not a multiple of the "
                    f"{self.block_size}-octet cipher block",
                )
            expected = integ_mac(self.integ_id, key_a, aad + iv + ciphertext)
            if not _std_hmac.compare_digest(expected, icv):
                raise IntegrityError(f"SK payload ICV does not verify ({name_of(IntegId, self.integ_id)})")
            decryptor = self._classic(key_e, iv).decryptor()
            plaintext = decryptor.update(ciphertext) + decryptor.finalize()
        pad_length = plaintext[-1]
        if pad_length + 1 > len(plaintext):
            raise ParseError(
                base + self.iv_size + len(ciphertext) - 1,
                f"Pad Length {pad_length} exceeds the {len(plaintext) - 1} octets of decrypted payloads and padding",
            )
        return plaintext[: len(plaintext) - 1 - pad_length]

    def _classic(self, key_e: bytes, iv: bytes) -> Cipher[modes.CTR] | Cipher[modes.CBC]:
        if self.encr_id == EncrId.AES_CTR:
            # RFC 5930 §2, RFC 3686 §4: nonce (the last 4 octets of SK_e) || IV || block counter from 1
            key, nonce = key_e[: -self.salt_size], key_e[-self.salt_size:]
            return Cipher(algorithms.AES(key), modes.CTR(nonce + iv + b"\x00\x00\x00\x01"))
        if self.encr_id == EncrId.TRIPLE_DES:
            # RFC 2451 §2.2: 3DES-EDE in CBC mode, a 24-octet key and an 8-octet IV (RFC 8247 §2.1: SHOULD NOT)
            return Cipher(TripleDES(key_e), modes.CBC(iv))
        return Cipher(algorithms.AES(key_e), modes.CBC(iv))

    def _nonce_and_key(self, key_e: bytes, iv: bytes) -> tuple[bytes, bytes]:
        # RFC 5282 §4, RFC 7634 §2
        return key_e[: -self.salt_size], key_e[-self.salt_size:] + iv

    def _aead_encrypt(self, key_e: bytes, iv: bytes, aad: bytes, plaintext: bytes) -> bytes:
        key, nonce = self._nonce_and_key(key_e, iv)
        if self.encr_id == EncrId.CHACHA20_POLY1305:
            return ChaCha20Poly1305(key).encrypt(nonce, plaintext, aad)
        if self.encr_id in _CCM:
            # RFC 5282 §4: 11-octet nonce (3-octet salt || IV), the ICV the CCM tag
            return AESCCM(key, tag_length=self.icv_size).encrypt(nonce, plaintext, aad)
        sealed = AESGCM(key).encrypt(nonce, plaintext, aad)
        # NIST SP 800-38D §5.2.1.2
        return sealed[: len(plaintext) + self.icv_size]

    def _aead_decrypt(self, key_e: bytes, iv: bytes, aad: bytes, ciphertext: bytes, tag: bytes) -> bytes:
        key, nonce = self._nonce_and_key(key_e, iv)
        try:
            if self.encr_id == EncrId.CHACHA20_POLY1305:
                return ChaCha20Poly1305(key).decrypt(nonce, ciphertext + tag, aad)
            if self.encr_id in _CCM:
                return AESCCM(key, tag_length=self.icv_size).decrypt(nonce, ciphertext + tag, aad)
            if self.icv_size == 16:
                return AESGCM(key).decrypt(nonce, ciphertext + tag, aad)
            decryptor = Cipher(
                algorithms.AES(key), modes.GCM(nonce, tag, min_tag_length=self.icv_size)
            ).decryptor()
            decryptor.authenticate_additional_data(aad)
            plaintext = decryptor.update(ciphertext)
            return plaintext + decryptor.finalize()
        except InvalidTag:
            raise IntegrityError(
                f"SK payload {self.icv_size}-octet AEAD tag does not verify ({name_of(EncrId, self.encr_id)})"
            ) from None
