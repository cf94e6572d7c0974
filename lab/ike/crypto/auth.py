"""The AUTH payload: signed octets, shared-key MIC and signatures (RFC 7296 §2.15, RFC 7427).

Verification functions return None when the AUTH data verifies and raise otherwise:
`AuthenticationFailed` (a `CryptoError`) when the peer's AUTH data does not verify or
is malformed, plain `CryptoError` when it cannot be checked at all (an unknown or
refused algorithm, a key of the wrong type). Nothing else escapes them.
"""
from __future__ import annotations

import hmac as _std_hmac
import struct
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from enum import Enum

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from ..const import AuthMethod, HashAlgorithm, coerce, name_of
from ..errors import CryptoError, ParseError
from .der import (
    TAG_NULL,
    TAG_OID,
    TAG_SEQUENCE,
    Tlv,
    der_children,
    der_context,
    der_int_value,
    der_integer,
    der_null,
    der_oid,
    der_read,
    der_sequence,
    oid_to_str,
)
from .prf import get_prf

KEY_PAD = b"Key Pad for IKEv2"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
PeerKey = PublicKey | x509.Certificate


class AuthenticationFailed(CryptoError):
    """The peer's AUTH payload does not verify (RFC 7296 §2.15: AUTHENTICATION_FAILED)."""


# RFC 7296 §2.15

def signed_octets(real_message: bytes, peer_nonce: bytes, prf_id: int, sk_p: bytes, id_payload_body: bytes) -> bytes:
    """RealMessage | NonceData | prf(SK_p, RestOfIDPayload).

    `real_message` is our first message (IKE_SA_INIT request for the initiator, response
    for the responder), `peer_nonce` the other side's Nonce Data, `sk_p` our SK_pi or
    SK_pr and `id_payload_body` our IDi/IDr body (ID Type, 3 reserved octets, data).
    """
    return bytes(real_message) + bytes(peer_nonce) + get_prf(prf_id).prf(sk_p, id_payload_body)


def psk_auth_data(prf_id: int, shared_secret: bytes, octets: bytes) -> bytes:
    """AUTH = prf(prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>) (RFC 7296 §2.15)."""
    prf = get_prf(prf_id)
    return prf.prf(prf.prf(shared_secret, KEY_PAD), octets)


def verify_psk_auth(prf_id: int, shared_secret: bytes, octets: bytes, auth_data: bytes) -> None:
    """Constant-time check of a shared-key MIC; AuthenticationFailed when it differs."""
    expected = psk_auth_data(prf_id, shared_secret, octets)
    if not _std_hmac.compare_digest(expected, bytes(auth_data)):
        raise AuthenticationFailed("shared key MIC does not match (wrong pre-shared key or altered messages)")


# RFC 7427 §3 and Appendix A

OID_SHA1 = "1.3.14.3.2.26"
OID_SHA256 = "2.16.840.1.101.3.4.2.1"
OID_SHA384 = "2.16.840.1.101.3.4.2.2"
OID_SHA512 = "2.16.840.1.101.3.4.2.3"
OID_MGF1 = "1.2.840.113549.1.1.8"
OID_RSASSA_PSS = "1.2.840.113549.1.1.10"
OID_SHA1_WITH_RSA = "1.2.840.113549.1.1.5"
OID_SHA256_WITH_RSA = "1.2.840.113549.1.1.11"
OID_SHA384_WITH_RSA = "1.2.840.113549.1.1.12"
OID_SHA512_WITH_RSA = "1.2.840.113549.1.1.13"
OID_ECDSA_WITH_SHA1 = "1.2.840.10045.4.1"
OID_ECDSA_WITH_SHA256 = "1.2.840.10045.4.3.2"
OID_ECDSA_WITH_SHA384 = "1.2.840.10045.4.3.3"
OID_ECDSA_WITH_SHA512 = "1.2.840.10045.4.3.4"

_HASH_BY_OID: dict[str, HashAlgorithm] = {
    OID_SHA1: HashAlgorithm.SHA1,
    OID_SHA256: HashAlgorithm.SHA2_256,
    OID_SHA384: HashAlgorithm.SHA2_384,
    OID_SHA512: HashAlgorithm.SHA2_512,
}
_OID_BY_HASH = {v: k for k, v in _HASH_BY_OID.items()}

_HASHES: dict[HashAlgorithm, type[hashes.HashAlgorithm]] = {
    HashAlgorithm.SHA1: hashes.SHA1,
    HashAlgorithm.SHA2_256: hashes.SHA256,
    HashAlgorithm.SHA2_384: hashes.SHA384,
    HashAlgorithm.SHA2_512: hashes.SHA512,
}

_NAMED_OIDS = {
    OID_SHA1_WITH_RSA: "sha1WithRSAEncryption",
    OID_SHA256_WITH_RSA: "sha256WithRSAEncryption",
    OID_SHA384_WITH_RSA: "sha384WithRSAEncryption",
    OID_SHA512_WITH_RSA: "sha512WithRSAEncryption",
    OID_RSASSA_PSS: "id-RSASSA-PSS",
    OID_ECDSA_WITH_SHA1: "ecdsa-with-SHA1",
    OID_ECDSA_WITH_SHA256: "ecdsa-with-SHA256",
    OID_ECDSA_WITH_SHA384: "ecdsa-with-SHA384",
    OID_ECDSA_WITH_SHA512: "ecdsa-with-SHA512",
}


class SignatureScheme(Enum):
    """The RFC 7427 signature algorithms this lab signs and verifies."""

    RSA_PKCS1_SHA256 = ("pkcs1", HashAlgorithm.SHA2_256)
    RSA_PKCS1_SHA384 = ("pkcs1", HashAlgorithm.SHA2_384)
    RSA_PKCS1_SHA512 = ("pkcs1", HashAlgorithm.SHA2_512)
    RSA_PSS_SHA256 = ("pss", HashAlgorithm.SHA2_256)
    RSA_PSS_SHA384 = ("pss", HashAlgorithm.SHA2_384)
    RSA_PSS_SHA512 = ("pss", HashAlgorithm.SHA2_512)
    ECDSA_SHA256 = ("ecdsa", HashAlgorithm.SHA2_256)
    ECDSA_SHA384 = ("ecdsa", HashAlgorithm.SHA2_384)
    ECDSA_SHA512 = ("ecdsa", HashAlgorithm.SHA2_512)

    @property
    def kind(self) -> str:
        return self.value[0]

    @property
    def hash_algorithm(self) -> HashAlgorithm:
        """The IANA hash id to match against SIGNATURE_HASH_ALGORITHMS (RFC 7427 §4)."""
        return self.value[1]

    @property
    def algorithm_identifier(self) -> bytes:
        """The DER AlgorithmIdentifier carried in the AUTH data (RFC 7427 Appendix A)."""
        return _encode_algorithm_identifier(self)


@dataclass(frozen=True)
class SignatureParams:
    """What a verifier needs from an AlgorithmIdentifier."""

    kind: str
    hash_algorithm: HashAlgorithm
    mgf_hash: HashAlgorithm | None = None
    salt_length: int | None = None

    @property
    def scheme(self) -> SignatureScheme | None:
        for scheme in SignatureScheme:
            if scheme.kind == self.kind and scheme.hash_algorithm == self.hash_algorithm:
                if self.kind != "pss" or (
                    self.mgf_hash == self.hash_algorithm
                    and self.salt_length == _HASHES[self.hash_algorithm]().digest_size
                ):
                    return scheme
        return None


def _hash_algorithm_identifier(hash_alg: HashAlgorithm) -> bytes:
    return der_sequence(der_oid(_OID_BY_HASH[hash_alg]), der_null())


def _encode_algorithm_identifier(scheme: SignatureScheme) -> bytes:
    h = scheme.hash_algorithm
    if scheme.kind == "pkcs1":
        oid = {HashAlgorithm.SHA2_256: OID_SHA256_WITH_RSA, HashAlgorithm.SHA2_384: OID_SHA384_WITH_RSA,
               HashAlgorithm.SHA2_512: OID_SHA512_WITH_RSA}[h]
        return der_sequence(der_oid(oid), der_null())
    if scheme.kind == "ecdsa":
        oid = {HashAlgorithm.SHA2_256: OID_ECDSA_WITH_SHA256, HashAlgorithm.SHA2_384: OID_ECDSA_WITH_SHA384,
               HashAlgorithm.SHA2_512: OID_ECDSA_WITH_SHA512}[h]
        # RFC 5758 §3.2
        return der_sequence(der_oid(oid))
    # RFC 4055 §3.1, RFC 7427 Appendix A.4.3
    params = der_sequence(
        der_context(0, _hash_algorithm_identifier(h)),
        der_context(1, der_sequence(der_oid(OID_MGF1), _hash_algorithm_identifier(h))),
        der_context(2, der_integer(_HASHES[h]().digest_size)),
    )
    return der_sequence(der_oid(OID_RSASSA_PSS), params)


def _oid_name(oid: str) -> str:
    return f"{_NAMED_OIDS[oid]} ({oid})" if oid in _NAMED_OIDS else oid


def _hash_from_algorithm_identifier(tlv: Tlv, what: str) -> HashAlgorithm:
    if tlv.tag != TAG_SEQUENCE:
        raise ParseError(tlv.offset, f"{what}: expected an AlgorithmIdentifier SEQUENCE")
    items = der_children(tlv)
    if not items or items[0].tag != TAG_OID:
        raise ParseError(tlv.content_offset, f"{what}: AlgorithmIdentifier without an OID")
    oid = oid_to_str(items[0].content, items[0].content_offset)
    if len(items) > 2 or (len(items) == 2 and (items[1].tag != TAG_NULL or items[1].content)):
        raise ParseError(items[-1].offset, f"{what}: unexpected hash parameters")
    if oid not in _HASH_BY_OID:
        raise CryptoError(f"{what}: unknown hash algorithm {oid}")
    return _HASH_BY_OID[oid]


def _parse_pss_params(items: list[Tlv]) -> SignatureParams:
    hash_alg, mgf_hash, salt, trailer = HashAlgorithm.SHA1, HashAlgorithm.SHA1, 20, 1
    if len(items) == 2:
        seq = items[1]
        if seq.tag != TAG_SEQUENCE:
            raise ParseError(seq.offset, "RSASSA-PSS-params: expected a SEQUENCE")
        last = -1
        for field in der_children(seq):
            number = field.tag - 0xA0
            if not 0 <= number <= 3 or number <= last:
                raise ParseError(field.offset, f"RSASSA-PSS-params: unexpected field tag 0x{field.tag:02x}")
            last = number
            inner = der_children(field)
            if len(inner) != 1:
                raise ParseError(field.offset, "RSASSA-PSS-params: a field holds exactly one value")
            value = inner[0]
            if number == 0:
                hash_alg = _hash_from_algorithm_identifier(value, "RSASSA-PSS hashAlgorithm")
            elif number == 1:
                mgf = der_children(value) if value.tag == TAG_SEQUENCE else []
                if len(mgf) != 2 or mgf[0].tag != TAG_OID:
                    raise ParseError(value.offset, "RSASSA-PSS maskGenAlgorithm: malformed AlgorithmIdentifier")
                mgf_oid = oid_to_str(mgf[0].content, mgf[0].content_offset)
                if mgf_oid != OID_MGF1:
                    raise CryptoError(f"RSASSA-PSS mask generation function {mgf_oid} is not MGF1")
                mgf_hash = _hash_from_algorithm_identifier(mgf[1], "RSASSA-PSS MGF1 hash")
            elif number == 2:
                salt = der_int_value(value)
            else:
                trailer = der_int_value(value)
    elif len(items) > 2:
        raise ParseError(items[2].offset, "AlgorithmIdentifier: trailing fields")
    if trailer != 1:
        raise CryptoError(f"RSASSA-PSS trailerField {trailer} is not trailerFieldBC (1)")
    return SignatureParams("pss", hash_alg, mgf_hash, salt)


def parse_algorithm_identifier(data: bytes) -> SignatureParams:
    """The signature parameters of a DER AlgorithmIdentifier (RFC 7427 §3).

    ParseError for malformed DER, CryptoError for algorithms this lab does not verify.
    """
    top = der_read(bytes(data))
    if top.end != len(data):
        raise ParseError(top.end, "AlgorithmIdentifier: trailing octets after the SEQUENCE")
    if top.tag != TAG_SEQUENCE:
        raise ParseError(0, "AlgorithmIdentifier: expected a SEQUENCE")
    items = der_children(top)
    if not items or items[0].tag != TAG_OID:
        raise ParseError(top.content_offset, "AlgorithmIdentifier: expected an OBJECT IDENTIFIER")
    oid = oid_to_str(items[0].content, items[0].content_offset)
    rsa_hashes = {OID_SHA256_WITH_RSA: HashAlgorithm.SHA2_256, OID_SHA384_WITH_RSA: HashAlgorithm.SHA2_384,
                  OID_SHA512_WITH_RSA: HashAlgorithm.SHA2_512}
    ecdsa_hashes = {OID_ECDSA_WITH_SHA256: HashAlgorithm.SHA2_256, OID_ECDSA_WITH_SHA384: HashAlgorithm.SHA2_384,
                    OID_ECDSA_WITH_SHA512: HashAlgorithm.SHA2_512}
    if oid in rsa_hashes or oid in ecdsa_hashes:
        # RFC 4055 §5, RFC 5758 §3.2
        if len(items) > 2 or (len(items) == 2 and (items[1].tag != TAG_NULL or items[1].content)):
            raise ParseError(items[-1].offset, f"{_oid_name(oid)}: parameters must be NULL or absent")
        if oid in rsa_hashes:
            return SignatureParams("pkcs1", rsa_hashes[oid])
        return SignatureParams("ecdsa", ecdsa_hashes[oid])
    if oid == OID_RSASSA_PSS:
        params = _parse_pss_params(items)
        if params.hash_algorithm == HashAlgorithm.SHA1 or params.mgf_hash == HashAlgorithm.SHA1:
            raise CryptoError("RSASSA-PSS with SHA-1 is refused (RFC 8247 §4.2); use SHA-256 or stronger")
        return params
    if oid in (OID_SHA1_WITH_RSA, OID_ECDSA_WITH_SHA1):
        raise CryptoError(f"signature algorithm {_oid_name(oid)} uses SHA-1 and is refused (RFC 8247 §4.2)")
    raise CryptoError(f"unknown signature AlgorithmIdentifier {_oid_name(oid)}")


def encode_digital_signature_auth(scheme: SignatureScheme, signature: bytes) -> bytes:
    """AUTH data for method 14: ASN.1 length | AlgorithmIdentifier | signature (RFC 7427 §3)."""
    algid = scheme.algorithm_identifier
    return bytes([len(algid)]) + algid + bytes(signature)


def decode_digital_signature_auth(auth_data: bytes) -> tuple[bytes, bytes]:
    """(AlgorithmIdentifier DER, signature) from method-14 AUTH data; ParseError when malformed."""
    auth_data = bytes(auth_data)
    if not auth_data:
        raise ParseError(0, "digital signature AUTH data is empty")
    length = auth_data[0]
    if length == 0 or 1 + length >= len(auth_data):
        raise ParseError(0, f"ASN.1 length {length} leaves no room for AlgorithmIdentifier and signature "
                            f"in {len(auth_data)} octets")
    return auth_data[1:1 + length], auth_data[1 + length:]


def digital_signature_params(auth_data: bytes) -> SignatureParams:
    """The signature algorithm a peer's method-14 AUTH data declares."""
    algid, _ = decode_digital_signature_auth(auth_data)
    return parse_algorithm_identifier(algid)


# RFC 7427 §4

def encode_signature_hash_algorithms(algorithms: Iterable[int]) -> bytes:
    """Notification Data of SIGNATURE_HASH_ALGORITHMS: 2-octet hash ids (RFC 7427 §4)."""
    out = bytearray()
    for alg in algorithms:
        if not 0 <= int(alg) <= 0xFFFF:
            raise CryptoError(f"hash algorithm id {alg} does not fit in 16 bits")
        out += struct.pack("!H", int(alg))
    return bytes(out)


def decode_signature_hash_algorithms(data: bytes, base: int = 0) -> list[HashAlgorithm | int]:
    """The hash ids of a SIGNATURE_HASH_ALGORITHMS notify; unknown ids stay ints."""
    data = bytes(data)
    if len(data) % 2:
        raise ParseError(base + len(data) - 1, f"SIGNATURE_HASH_ALGORITHMS data of {len(data)} octets is not "
                                               "a list of 2-octet hash ids")
    return [coerce(HashAlgorithm, v) for (v,) in struct.iter_unpack("!H", data)]


def load_private_key(data: bytes, password: bytes | None = None) -> PrivateKey:
    """An RSA or ECDSA private key from PEM or DER (PKCS #8, PKCS #1, SEC 1)."""
    data = bytes(data)
    try:
        if b"-----BEGIN" in data:
            key = serialization.load_pem_private_key(data, password=password)
        else:
            key = serialization.load_der_private_key(data, password=password)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise CryptoError(f"cannot load private key: {exc}") from None
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise CryptoError(f"private key type {type(key).__name__} cannot sign IKEv2 AUTH here (RSA or ECDSA only)")
    return key


def load_public_key(data: bytes) -> PublicKey:
    """An RSA or ECDSA public key from a PEM or DER SubjectPublicKeyInfo."""
    data = bytes(data)
    try:
        if b"-----BEGIN" in data:
            key = serialization.load_pem_public_key(data)
        else:
            key = serialization.load_der_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise CryptoError(f"cannot load public key: {exc}") from None
    if not isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
        raise CryptoError(f"public key type {type(key).__name__} is not RSA or ECDSA")
    return key


def load_certificate(data: bytes) -> x509.Certificate:
    """An X.509 certificate from PEM or DER (the CERT payload carries DER, RFC 7296 §3.6)."""
    data = bytes(data)
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise CryptoError(f"cannot load certificate: {exc}") from None


def _public_key(peer: PeerKey) -> PublicKey:
    key = peer.public_key() if isinstance(peer, x509.Certificate) else peer
    if not isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
        raise CryptoError(f"peer key type {type(key).__name__} is not RSA or ECDSA")
    return key


def _key_kind(key: object) -> str:
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return "RSA"
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return f"ECDSA {key.curve.name}"
    return type(key).__name__


def default_scheme(key: PrivateKey | PublicKey) -> SignatureScheme:
    """RSA: PKCS #1 v1.5 with SHA-256; ECDSA: the hash matching the curve size."""
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return SignatureScheme.RSA_PKCS1_SHA256
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return {256: SignatureScheme.ECDSA_SHA256, 384: SignatureScheme.ECDSA_SHA384}.get(
            key.curve.key_size, SignatureScheme.ECDSA_SHA512
        )
    raise CryptoError(f"key type {type(key).__name__} cannot sign IKEv2 AUTH here")


# RFC 4754 §3, §7
_LEGACY_ECDSA = {
    AuthMethod.ECDSA_SHA256_P256: ("secp256r1", HashAlgorithm.SHA2_256, 32),
    AuthMethod.ECDSA_SHA384_P384: ("secp384r1", HashAlgorithm.SHA2_384, 48),
    AuthMethod.ECDSA_SHA512_P521: ("secp521r1", HashAlgorithm.SHA2_512, 66),
}


def _pss(hash_alg: HashAlgorithm, mgf_hash: HashAlgorithm, salt: int) -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(_HASHES[mgf_hash]()), salt_length=salt)


def sign_auth(
    method: int,
    private_key: PrivateKey,
    octets: bytes,
    scheme: SignatureScheme | None = None,
) -> bytes:
    """AUTH data for a signature method over the signed octets.

    DIGITAL_SIGNATURE (14, RFC 7427) uses `scheme` (by default `default_scheme`);
    RSA_SIG (1) is PKCS #1 v1.5 with SHA-1 (RFC 7296 §3.8); ECDSA_SHA*_P* (9-11) give
    the raw r | s of RFC 4754 §7.
    """
    octets = bytes(octets)
    if method == AuthMethod.DIGITAL_SIGNATURE:
        scheme = scheme or default_scheme(private_key)
        h = _HASHES[scheme.hash_algorithm]()
        if scheme.kind in ("pkcs1", "pss"):
            if not isinstance(private_key, rsa.RSAPrivateKey):
                raise CryptoError(f"{scheme.name} needs an RSA key, not {_key_kind(private_key)}")
            pad = padding.PKCS1v15() if scheme.kind == "pkcs1" else _pss(
                scheme.hash_algorithm, scheme.hash_algorithm, h.digest_size)
            signature = private_key.sign(octets, pad, h)
        else:
            if not isinstance(private_key, ec.EllipticCurvePrivateKey):
                raise CryptoError(f"{scheme.name} needs an ECDSA key, not {_key_kind(private_key)}")
            signature = private_key.sign(octets, ec.ECDSA(h))
        return encode_digital_signature_auth(scheme, signature)
    if method == AuthMethod.RSA_SIG:
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise CryptoError(f"RSA_SIG needs an RSA key, not {_key_kind(private_key)}")
        return private_key.sign(octets, padding.PKCS1v15(), hashes.SHA1())
    if method in _LEGACY_ECDSA:
        curve, hash_alg, size = _LEGACY_ECDSA[method]  # type: ignore[index]
        if not isinstance(private_key, ec.EllipticCurvePrivateKey) or private_key.curve.name != curve:
            raise CryptoError(f"{name_of(AuthMethod, method)} needs a {curve} key, not {_key_kind(private_key)}")
        r, s = decode_dss_signature(private_key.sign(octets, ec.ECDSA(_HASHES[hash_alg]())))
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    raise CryptoError(f"AUTH method {name_of(AuthMethod, method)} is not a signature method this lab supports")


def verify_auth(
    method: int,
    peer: PeerKey,
    auth_data: bytes,
    octets: bytes,
    accepted_hashes: Collection[int] | None = None,
) -> None:
    """Check a peer's signature AUTH data against its key or certificate.

    Returns None when it verifies; AuthenticationFailed when it does not (or the AUTH
    data is malformed, or the key type does not fit); CryptoError when the method or the
    declared algorithm is unknown or refused, including a hash outside `accepted_hashes`
    (the hashes we announced in SIGNATURE_HASH_ALGORITHMS, RFC 7427 §4).
    """
    key = _public_key(peer)
    auth_data, octets = bytes(auth_data), bytes(octets)
    if method == AuthMethod.DIGITAL_SIGNATURE:
        try:
            algid, signature = decode_digital_signature_auth(auth_data)
            params = parse_algorithm_identifier(algid)
        except ParseError as exc:
            raise AuthenticationFailed(f"malformed digital signature AUTH data: {exc}") from None
        if accepted_hashes is not None and params.hash_algorithm not in accepted_hashes:
            raise CryptoError(
                f"peer signed with {params.hash_algorithm.name}, which is not among the accepted hashes "
                f"{', '.join(name_of(HashAlgorithm, h) for h in accepted_hashes) or '(none)'}"
            )
        _verify(params, key, signature, octets)
        return
    if method == AuthMethod.RSA_SIG:
        _verify(SignatureParams("pkcs1", HashAlgorithm.SHA1), key, auth_data, octets)
        return
    if method in _LEGACY_ECDSA:
        curve, hash_alg, size = _LEGACY_ECDSA[method]  # type: ignore[index]
        name = name_of(AuthMethod, method)
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != curve:
            raise AuthenticationFailed(f"{name} needs the peer's key to be {curve}, it is {_key_kind(key)}")
        if len(auth_data) != 2 * size:
            raise AuthenticationFailed(f"{name} signature must be {2 * size} octets (r | s), got {len(auth_data)}")
        r = int.from_bytes(auth_data[:size], "big")
        s = int.from_bytes(auth_data[size:], "big")
        _verify(SignatureParams("ecdsa", hash_alg), key, encode_dss_signature(r, s), octets)
        return
    raise CryptoError(f"AUTH method {name_of(AuthMethod, method)} is not a signature method this lab supports")


def _verify(params: SignatureParams, key: PublicKey, signature: bytes, octets: bytes) -> None:
    h = _HASHES[params.hash_algorithm]()
    label = params.scheme.name if params.scheme else f"{params.kind} {params.hash_algorithm.name}"
    if params.kind in ("pkcs1", "pss"):
        if not isinstance(key, rsa.RSAPublicKey):
            raise AuthenticationFailed(f"AUTH is an RSA signature ({label}) but the peer's key is {_key_kind(key)}")
        if params.kind == "pkcs1":
            pad: padding.AsymmetricPadding = padding.PKCS1v15()
        else:
            assert params.mgf_hash is not None and params.salt_length is not None
            pad = _pss(params.hash_algorithm, params.mgf_hash, params.salt_length)
        try:
            key.verify(signature, octets, pad, h)
            return
        except (InvalidSignature, ValueError):
            pass
    else:
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise AuthenticationFailed(f"AUTH is an ECDSA signature ({label}) but the peer's key is {_key_kind(key)}")
        try:
            key.verify(signature, octets, ec.ECDSA(h))
            return
        except (InvalidSignature, ValueError):
            pass
    raise AuthenticationFailed(f"{label} signature does not verify with the peer's {_key_kind(key)} key")
