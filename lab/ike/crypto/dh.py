"""Key exchange for the KE payload: MODP (RFC 2409 §6.2, RFC 3526), ECP (RFC 5903), Curve25519 (RFC 8031),
ML-KEM (FIPS 203, draft-ietf-ipsecme-ikev2-mlkem).

`new_key_exchange(group)` gives an object with `public_value` (the KE payload's Key
Exchange Data) and `shared_secret(peer_public)` (g^ir as RFC 7296 §2.14 uses it). Peer
public values are validated before use; every refusal is a `CryptoError` that says why.

ML-KEM is a key encapsulation, not a Diffie-Hellman: the initiator of the exchange sends its
encapsulation key, the responder encapsulates to it and sends the ciphertext. The same two
calls serve: the side that reads `public_value` first is the initiator (it gives out its
encapsulation key and later decapsulates the peer's ciphertext in `shared_secret`); the side
that calls `shared_secret` first is the responder (it encapsulates to the peer's key, and its
`public_value` is then the ciphertext).
"""
from __future__ import annotations

import abc
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dh, ec, mlkem, x25519
from cryptography.utils import CryptographyDeprecationWarning

from lab.iana import TransformType, algorithms_of

from ..const import DhGroup, coerce, name_of
from ..errors import CryptoError
from .der import der_integer, der_octet_string, der_oid, der_sequence, der_tlv

# RFC 2409 §6.2 (the Second Oakley Group, IKEv2 group 2). RFC 8247 §2.4: SHOULD NOT; here for the
# Windows client profile, which offers nothing else by default
MODP_1024_PRIME = int(
    "FFFFFFFF FFFFFFFF C90FDAA2 2168C234 C4C6628B 80DC1CD1"
    "29024E08 8A67CC74 020BBEA6 3B139B22 514A0879 8E3404DD"
    "EF9519B3 CD3A431B 302B0A6D F25F1437 4FE1356D 6D51C245"
    "E485B576 625E7EC6 F44C42E9 A637ED6B 0BFF5CB6 F406B7ED"
    "EE386BFB 5A899FA5 AE9F2411 7C4B1FE6 49286651 ECE65381"
    "FFFFFFFF FFFFFFFF".replace(" ", ""),
    16,
)

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
    prime: int = 2 ** bits - 2 ** (bits - 64) - 1 + 2 ** 64 * (_pi_bits(bits - 130) + k)
    return prime


# RFC 3526 §5, §6, §7: the 4096-, 6144- and 8192-bit groups (RFC 8247 §2.4: MAY); the 2048- and
# 3072-bit primes above are written out as the RFC prints them, and tests/unit check the formula
# against them
MODP_PRIMES: dict[int, int] = {
               DhGroup.MODP_1024: MODP_1024_PRIME, DhGroup.MODP_2048: MODP_2048_PRIME, DhGroup.MODP_3072: MODP_3072_PRIME,
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

# FIPS 203 §8, Table 3: encapsulation key and ciphertext sizes in octets; the shared secret is 32
MLKEM_SIZES: dict[int, tuple[int, int]] = {DhGroup.MLKEM_768: (1184, 1088), DhGroup.MLKEM_1024: (1568, 1568)}
_MLKEM_KEYS: dict[int, type[mlkem.MLKEM768PrivateKey] | type[mlkem.MLKEM1024PrivateKey]] = {
    DhGroup.MLKEM_768: mlkem.MLKEM768PrivateKey, DhGroup.MLKEM_1024: mlkem.MLKEM1024PrivateKey}
_MLKEM_PUBLIC: dict[int, type[mlkem.MLKEM768PublicKey] | type[mlkem.MLKEM1024PublicKey]] = {
    DhGroup.MLKEM_768: mlkem.MLKEM768PublicKey, DhGroup.MLKEM_1024: mlkem.MLKEM1024PublicKey}
MLKEM_SEED_SIZE = 64  # FIPS 203 §7.1: the seed d | z of ML-KEM.KeyGen_internal

_PKCS3_DH_KEY_AGREEMENT = "1.2.840.113549.1.3.1"

# groups OpenSSL does not know by name: it checks their parameters whenever they are loaded
_UNNAMED = frozenset({DhGroup.MODP_1024})
_PARAMETERS: dict[int, dh.DHParameters] = {}


def _parameters(group: DhGroup) -> dh.DHParameters:
    """The group's parameters, checked once per process."""
    if group not in _PARAMETERS:
        _PARAMETERS[group] = dh.DHParameterNumbers(MODP_PRIMES[group], MODP_GENERATOR).parameters()
    return _PARAMETERS[group]

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
                self._key = _parameters(group).generate_private_key()
            else:
                self._key = self._load_private(_int_from_private(private_key, group.name))

    def _peer_spki(self, y: int) -> bytes:
        # RFC 3279 §2.3.3: SubjectPublicKeyInfo of a DH key (here the PKCS #3 OID and parameters)
        algorithm = der_sequence(der_oid(_PKCS3_DH_KEY_AGREEMENT),
                                 der_sequence(der_integer(self.prime), der_integer(MODP_GENERATOR)))
        key = der_integer(y)
        return der_sequence(algorithm, der_tlv(0x03, b"\x00" + key))

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
                if self.group in _UNNAMED:
                    # OpenSSL checks the parameters of a group it does not know by name at every
                    # load (~0.3 s for MODP-1024 from numbers); from DER it is a quarter of that
                    peer = serialization.load_der_public_key(self._peer_spki(y))
                else:
                    peer = dh.DHPublicNumbers(y, self._params).public_key()
                if not isinstance(peer, dh.DHPublicKey):
                    raise ValueError("not a DH public key")
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


class MlKemKeyExchange(KeyExchange):
    """ML-KEM-768 or ML-KEM-1024 (FIPS 203) as an IKEv2 key exchange method, from `cryptography`."""

    def __init__(self, group: DhGroup, seed: bytes | None = None) -> None:
        self.group = group
        self.ek_size, self.ct_size = MLKEM_SIZES[group]
        self._role: str | None = None  # "initiator" (sent ek) or "responder" (sent ciphertext)
        self._ciphertext = b""
        self._secret = b""
        key_cls = _MLKEM_KEYS[group]
        if seed is None:
            self._key = key_cls.generate()
        else:
            if not isinstance(seed, (bytes, bytearray, memoryview)) or len(seed) != MLKEM_SEED_SIZE:
                raise CryptoError(f"{group.name} seed must be {MLKEM_SEED_SIZE} octets (d | z, FIPS 203 §7.1)")
            self._key = key_cls.from_seed_bytes(bytes(seed))

    @property
    def encapsulation_key(self) -> bytes:
        return self._key.public_key().public_bytes_raw()

    @property
    def public_value(self) -> bytes:
        if self._role == "responder":
            return self._ciphertext  # draft-ietf-ipsecme-ikev2-mlkem: the responder sends the ciphertext
        self._role = "initiator"  # draft-ietf-ipsecme-ikev2-mlkem: the initiator sends the encapsulation key
        return self.encapsulation_key

    def shared_secret(self, peer_public: bytes) -> bytes:
        peer_public = bytes(peer_public)
        name = self.group.name
        if self._role == "initiator":
            if len(peer_public) != self.ct_size:
                # draft-ietf-ipsecme-ikev2-mlkem: a ciphertext of the wrong length is a syntax error
                raise CryptoError(f"{name} ciphertext must be {self.ct_size} octets, got {len(peer_public)}")
            try:
                # FIPS 203 §7.3: implicit rejection, a bad ciphertext gives a pseudo-random secret
                return self._key.decapsulate(peer_public)
            except ValueError as exc:
                raise CryptoError(f"{name} decapsulation failed: {exc}") from None
        if self._role == "responder":
            raise CryptoError(f"{name} already encapsulated to the peer's key")
        if len(peer_public) != self.ek_size:
            # draft-ietf-ipsecme-ikev2-mlkem: an encapsulation key of the wrong length is a syntax error
            raise CryptoError(f"{name} encapsulation key must be {self.ek_size} octets, got {len(peer_public)}")
        try:
            # FIPS 203 §7.2: the modulus check on the encapsulation key
            peer = _MLKEM_PUBLIC[self.group].from_public_bytes(peer_public)
            self._secret, self._ciphertext = peer.encapsulate()
        except ValueError:
            raise CryptoError(f"{name} encapsulation key fails the FIPS 203 §7.2 modulus check") from None
        self._role = "responder"
        return self._secret


def public_value_size(group: int) -> int:
    """Octets of Key Exchange Data for a group (RFC 7296 §3.4, RFC 5903 §7, RFC 8031 §2)."""
    if group in MODP_PRIMES:
        return (MODP_PRIMES[group].bit_length() + 7) // 8
    if group in _ECP_CURVES:
        return 2 * _ECP_CURVES[group][1]
    if group == DhGroup.CURVE25519:
        return X25519_SIZE
    if group in MLKEM_SIZES:
        return MLKEM_SIZES[group][0]  # the initiator's encapsulation key; the ciphertext is MLKEM_SIZES[g][1]
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
    if g in MLKEM_SIZES:
        if isinstance(private_key, int):
            raise CryptoError(f"{name_of(DhGroup, g)} private key must be a 64-octet seed, not an int")
        return MlKemKeyExchange(g, private_key)  # type: ignore[arg-type]
    raise CryptoError(
        f"unsupported key exchange group {name_of(DhGroup, group)}; "
        f"supported: {', '.join(name_of(DhGroup, s) for s in SUPPORTED_GROUPS)}"
    )
