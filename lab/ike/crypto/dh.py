"""Key exchange for the KE payload: MODP (RFC 3526), ECP (RFC 5903), Curve25519 (RFC 8031).

`new_key_exchange(group)` gives an object with `public_value` (the KE payload's Key
Exchange Data) and `shared_secret(peer_public)` (g^ir as RFC 7296 §2.14 uses it). Peer
public values are validated before use; every refusal is a `CryptoError` that says why.
"""
from __future__ import annotations

import abc
import warnings
from contextlib import contextmanager
from typing import Iterator

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dh, ec, x25519
from cryptography.utils import CryptographyDeprecationWarning

from lab.iana import TransformType, algorithms_of

from ..const import DhGroup, coerce, name_of
from ..errors import CryptoError
from .der import der_integer, der_octet_string, der_oid, der_sequence

# RFC 3526 §3
MODP_2048_PRIME = int(
    "FFFFFFFF FFFFFFFF C90FDAA2 2168C234 C4C6628B 80DC1CD1"
    "29024E08 8A67CC74 020BBEA6 3B139B22 514A0879 8E3404DD"
    "EF9519B3 CD3A431B 302B0A6D F25F1437 4FE1356D 6D51C245"
    "E485B576 625E7EC6 F44C42E9 A637ED6B 0BFF5CB6 F406B7ED"
    "EE386BFB 5A899FA5 AE9F2411 7C4B1FE6 49286651 ECE45B3D"
    "C2007CB8 A163BF05 98DA4836 1C55D39A 69163FA8 FD24CF5F"
    "83655D23 DCA3AD96 1C62F356 208552BB 9ED52907 7096966D"
    "670C354E 4ABC9804 F1746C08 CA18217C 32905E46 2E36CE3B"
    "E39E772C 180E8603 9B2783A2 EC07A28F B5C55DF0 6F4C52C9"
    "DE2BCBF6 95581718 3995497C EA956AE5 15D22618 98FA0510"
    "15728E5A 8AACAA68 FFFFFFFF FFFFFFFF".replace(" ", ""),
    16,
)

# RFC 3526 §4
MODP_3072_PRIME = int(
    "FFFFFFFF FFFFFFFF C90FDAA2 2168C234 C4C6628B 80DC1CD1"
    "29024E08 8A67CC74 020BBEA6 3B139B22 514A0879 8E3404DD"
    "EF9519B3 CD3A431B 302B0A6D F25F1437 4FE1356D 6D51C245"
    "E485B576 625E7EC6 F44C42E9 A637ED6B 0BFF5CB6 F406B7ED"
    "EE386BFB 5A899FA5 AE9F2411 7C4B1FE6 49286651 ECE45B3D"
    "C2007CB8 A163BF05 98DA4836 1C55D39A 69163FA8 FD24CF5F"
    "83655D23 DCA3AD96 1C62F356 208552BB 9ED52907 7096966D"
    "670C354E 4ABC9804 F1746C08 CA18217C 32905E46 2E36CE3B"
    "E39E772C 180E8603 9B2783A2 EC07A28F B5C55DF0 6F4C52C9"
    "DE2BCBF6 95581718 3995497C EA956AE5 15D22618 98FA0510"
    "15728E5A 8AAAC42D AD33170D 04507A33 A85521AB DF1CBA64"
    "ECFB8504 58DBEF0A 8AEA7157 5D060C7D B3970F85 A6E1E4C7"
    "ABF5AE8C DB0933D7 1E8C94E0 4A25619D CEE3D226 1AD2EE6B"
    "F12FFA06 D98A0864 D8760273 3EC86A64 521F2B18 177B200C"
    "BBE11757 7A615D6C 770988C0 BAD946E2 08E24FA0 74E5AB31"
    "43DB5BFC E0FD108E 4B82D120 A93AD2CA FFFFFFFF FFFFFFFF".replace(" ", ""),
    16,
)

MODP_GENERATOR = 2


def _pi_bits(bits: int) -> int:
    """floor(pi * 2^bits), by Machin's formula pi = 16 atan(1/5) - 4 atan(1/239) in integers."""
    guard = 64
    one = 1 << (bits + guard)

    def atan_inv(x: int) -> int:
        total, term, n, sign = 0, one // x, 1, 1
        while term:
            total += sign * (term // n)
            term //= x * x
            n += 2
            sign = -sign
        return total

    return (16 * atan_inv(5) - 4 * atan_inv(239)) >> guard


def rfc3526_prime(bits: int, k: int) -> int:
    """The MODP prime p = 2^n - 2^(n-64) - 1 + 2^64 * (floor(2^(n-130) pi) + k) (RFC 3526 §2-§7)."""
    return 2 ** bits - 2 ** (bits - 64) - 1 + 2 ** 64 * (_pi_bits(bits - 130) + k)


# RFC 3526 §5, §6, §7: the 4096-, 6144- and 8192-bit groups (RFC 8247 §2.4: MAY); the 2048- and
# 3072-bit primes above are written out as the RFC prints them, and tests/unit check the formula
# against them
MODP_PRIMES = {DhGroup.MODP_2048: MODP_2048_PRIME, DhGroup.MODP_3072: MODP_3072_PRIME,
               DhGroup.MODP_4096: rfc3526_prime(4096, 240904), DhGroup.MODP_6144: rfc3526_prime(6144, 929484),
               DhGroup.MODP_8192: rfc3526_prime(8192, 4743158)}

_ECP_CURVES: dict[int, tuple[type[ec.EllipticCurve], int]] = {
    DhGroup.ECP_256: (ec.SECP256R1, 32),
    DhGroup.ECP_384: (ec.SECP384R1, 48),
    DhGroup.ECP_521: (ec.SECP521R1, 66),
    # RFC 6954 §2: brainpool curves (RFC 5639), encoded as RFC 5903 does (§3); cryptography has
    # no brainpoolP224r1, so group 27 stays unimplemented
    DhGroup.BRAINPOOL_P256: (ec.BrainpoolP256R1, 32),
    DhGroup.BRAINPOOL_P384: (ec.BrainpoolP384R1, 48),
    DhGroup.BRAINPOOL_P512: (ec.BrainpoolP512R1, 64),
}

X25519_SIZE = 32

_PKCS3_DH_KEY_AGREEMENT = "1.2.840.113549.1.3.1"

# the groups lab.iana marks implemented (ike=True), each carried out below
SUPPORTED_GROUPS = tuple(a.id for a in algorithms_of(TransformType.DH) if a.ike and a.id != DhGroup.NONE)


@contextmanager
def _ffdh() -> Iterator[None]:
    """cryptography deprecates finite-field DH; IKEv2 groups 14 and 15 still need it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        yield


def _int_from_private(value: int | bytes, what: str) -> int:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return int.from_bytes(bytes(value), "big")
    if isinstance(value, int):
        return value
    raise CryptoError(f"{what} private key must be an int or big-endian bytes, not {type(value).__name__}")


class KeyExchange(abc.ABC):
    """One side of an ephemeral key exchange for one KE payload."""

    group: DhGroup

    @property
    @abc.abstractmethod
    def public_value(self) -> bytes:
        """The Key Exchange Data of our KE payload (RFC 7296 §3.4)."""

    @abc.abstractmethod
    def shared_secret(self, peer_public: bytes) -> bytes:
        """g^ir from the peer's Key Exchange Data, after validating it."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.group.name})"


class ModpKeyExchange(KeyExchange):
    """Finite-field Diffie-Hellman over an RFC 3526 MODP group, generator 2."""

    def __init__(self, group: DhGroup, private_key: int | bytes | None = None) -> None:
        self.group = group
        self.prime = MODP_PRIMES[group]
        self.size = (self.prime.bit_length() + 7) // 8
        with _ffdh():
            self._params = dh.DHParameterNumbers(self.prime, MODP_GENERATOR)
            if private_key is None:
                self._key = self._params.parameters().generate_private_key()
            else:
                self._key = self._load_private(_int_from_private(private_key, group.name))

    def _load_private(self, x: int) -> dh.DHPrivateKey:
        if not 1 < x < self.prime - 1:
            raise CryptoError(f"{self.group.name} private value must lie in 2..p-2")
        # RFC 5208 §5, PKCS #3 §9
        pkcs8 = der_sequence(
            der_integer(0),
            der_sequence(
                der_oid(_PKCS3_DH_KEY_AGREEMENT),
                der_sequence(der_integer(self.prime), der_integer(MODP_GENERATOR)),
            ),
            der_octet_string(der_integer(x)),
        )
        try:
            key = serialization.load_der_private_key(pkcs8, password=None)
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise CryptoError(f"{self.group.name} private value refused: {exc}") from None
        if not isinstance(key, dh.DHPrivateKey):
            raise CryptoError(f"{self.group.name} private value did not load as a DH key")
        return key

    @property
    def public_value(self) -> bytes:
        with _ffdh():
            y = self._key.public_key().public_numbers().y
        return y.to_bytes(self.size, "big")

    def validate_peer(self, peer_public: bytes) -> int:
        """The peer's public value as an integer; CryptoError if it is unusable."""
        name = self.group.name
        if len(peer_public) != self.size:
            # RFC 7296 §3.4
            raise CryptoError(
                f"{name} public value must be {self.size} octets (zero-padded to the length of the prime), "
                f"got {len(peer_public)}"
            )
        y = int.from_bytes(peer_public, "big")
        if y in (0, 1):
            raise CryptoError(f"{name} public value {y} is degenerate")
        if y == self.prime - 1:
            raise CryptoError(f"{name} public value p-1 is degenerate (order 2)")
        if y >= self.prime:
            raise CryptoError(f"{name} public value is not less than the prime")
        return y

    def shared_secret(self, peer_public: bytes) -> bytes:
        y = self.validate_peer(bytes(peer_public))
        with _ffdh():
            try:
                peer = dh.DHPublicNumbers(y, self._params).public_key()
                secret = self._key.exchange(peer)
            except ValueError as exc:
                raise CryptoError(f"{self.group.name} key exchange failed: {exc}") from None
        # RFC 7296 §2.14
        return secret.rjust(self.size, b"\x00")


class EcpKeyExchange(KeyExchange):
    """ECDH over a NIST prime curve with RFC 5903 encodings (x | y public, x secret)."""

    def __init__(self, group: DhGroup, private_key: int | bytes | None = None) -> None:
        self.group = group
        curve_cls, self.coordinate_size = _ECP_CURVES[group]
        self._curve = curve_cls()
        if private_key is None:
            self._key = ec.generate_private_key(self._curve)
        else:
            try:
                self._key = ec.derive_private_key(_int_from_private(private_key, group.name), self._curve)
            except (ValueError, TypeError) as exc:
                raise CryptoError(f"{group.name} private key refused: {exc}") from None

    @property
    def public_value(self) -> bytes:
        # RFC 5903 §7
        point = self._key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return point[1:]

    def validate_peer(self, peer_public: bytes) -> ec.EllipticCurvePublicKey:
        name = self.group.name
        size = 2 * self.coordinate_size
        if len(peer_public) != size:
            # RFC 5903 §7
            raise CryptoError(f"{name} public value must be {size} octets (x | y), got {len(peer_public)}")
        try:
            return ec.EllipticCurvePublicKey.from_encoded_point(self._curve, b"\x04" + bytes(peer_public))
        except ValueError:
            raise CryptoError(f"{name} public value is not a point on the curve") from None

    def shared_secret(self, peer_public: bytes) -> bytes:
        peer = self.validate_peer(bytes(peer_public))
        try:
            # RFC 5903 §7, §9
            return self._key.exchange(ec.ECDH(), peer)
        except ValueError as exc:
            raise CryptoError(f"{self.group.name} key exchange failed: {exc}") from None


class X25519KeyExchange(KeyExchange):
    """X25519 (RFC 7748) as IKEv2 group 31 (RFC 8031)."""

    def __init__(self, group: DhGroup = DhGroup.CURVE25519, private_key: bytes | None = None) -> None:
        self.group = group
        if private_key is None:
            self._key = x25519.X25519PrivateKey.generate()
        else:
            if not isinstance(private_key, (bytes, bytearray, memoryview)) or len(private_key) != X25519_SIZE:
                raise CryptoError("CURVE25519 private key must be 32 octets")
            self._key = x25519.X25519PrivateKey.from_private_bytes(bytes(private_key))

    @property
    def public_value(self) -> bytes:
        return self._key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def shared_secret(self, peer_public: bytes) -> bytes:
        if len(peer_public) != X25519_SIZE:
            # RFC 8031 §2
            raise CryptoError(f"CURVE25519 public value must be 32 octets, got {len(peer_public)}")
        peer = x25519.X25519PublicKey.from_public_bytes(bytes(peer_public))
        try:
            secret = self._key.exchange(peer)
        except ValueError:
            secret = bytes(X25519_SIZE)
        if secret == bytes(X25519_SIZE):
            # RFC 7748 §6.1, RFC 8031 §2.3
            raise CryptoError("CURVE25519 shared secret is all zero: the peer sent a low-order point")
        return secret


def public_value_size(group: int) -> int:
    """Octets of Key Exchange Data for a group (RFC 7296 §3.4, RFC 5903 §7, RFC 8031 §2)."""
    if group in MODP_PRIMES:
        return (MODP_PRIMES[group].bit_length() + 7) // 8
    if group in _ECP_CURVES:
        return 2 * _ECP_CURVES[group][1]
    if group == DhGroup.CURVE25519:
        return X25519_SIZE
    raise CryptoError(f"unsupported key exchange group {name_of(DhGroup, group)}")


def new_key_exchange(group: int, private_key: int | bytes | None = None) -> KeyExchange:
    """A fresh key exchange for `group`; `private_key` fixes the private value (tests, vectors)."""
    g = coerce(DhGroup, group)
    if g in MODP_PRIMES:
        return ModpKeyExchange(g, private_key)  # type: ignore[arg-type]
    if g in _ECP_CURVES:
        return EcpKeyExchange(g, private_key)  # type: ignore[arg-type]
    if g == DhGroup.CURVE25519:
        if isinstance(private_key, int):
            raise CryptoError("CURVE25519 private key must be 32 octets, not an int")
        return X25519KeyExchange(DhGroup.CURVE25519, private_key)
    raise CryptoError(
        f"unsupported key exchange group {name_of(DhGroup, group)}; "
        f"supported: {', '.join(s.name for s in SUPPORTED_GROUPS)}"
    )
