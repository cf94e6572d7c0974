"""AUTH payload: signed octets, shared-key MIC, RFC 7427 and legacy signatures."""
from __future__ import annotations

import datetime
import hashlib
import hmac

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from lab.ike.const import AuthMethod, HashAlgorithm, PrfId
from lab.ike.crypto import (
    AuthenticationFailed,
    SignatureScheme,
    decode_signature_hash_algorithms,
    digital_signature_params,
    encode_signature_hash_algorithms,
    load_certificate,
    load_private_key,
    load_public_key,
    parse_algorithm_identifier,
    prf,
    psk_auth_data,
    sign_auth,
    signed_octets,
    verify_auth,
    verify_psk_auth,
)
from lab.ike.crypto.der import der_context, der_integer, der_null, der_oid, der_sequence
from lab.ike.errors import CryptoError, ParseError


def H(s: str) -> bytes:
    return bytes.fromhex("".join(s.split()))


OCTETS = b"IKE_SA_INIT request" + b"\x11" * 32 + b"\x22" * 32


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_keys() -> dict[str, ec.EllipticCurvePrivateKey]:
    return {c.name: ec.generate_private_key(c) for c in (ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1())}


def self_signed(key, cn: str = "moon.example.org") -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )


def test_signed_octets_layout():
    """RFC 7296 §2.15: RealMessage | NonceData | prf(SK_p, RestOfIDPayload)."""
    message, nonce, sk_p = b"M" * 300, b"N" * 32, b"K" * 32
    id_body = b"\x02\x00\x00\x00moon.example.org"
    octets = signed_octets(message, nonce, PrfId.HMAC_SHA2_256, sk_p, id_body)
    assert octets == message + nonce + hmac.new(sk_p, id_body, hashlib.sha256).digest()


def test_psk_auth_formula_cross_check():
    """RFC 7296 §2.15 AUTH = prf(prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>).

    No published IKEv2 PSK AUTH vector was found; this recomputes the formula with the
    standard library's HMAC, independently of the lab's PRF code.
    """
    secret = b"This is a pre-shared key"
    for prf_id, digest in [(PrfId.HMAC_SHA1, hashlib.sha1), (PrfId.HMAC_SHA2_256, hashlib.sha256),
                           (PrfId.HMAC_SHA2_384, hashlib.sha384), (PrfId.HMAC_SHA2_512, hashlib.sha512)]:
        pad_key = hmac.new(secret, b"Key Pad for IKEv2", digest).digest()
        expected = hmac.new(pad_key, OCTETS, digest).digest()
        assert psk_auth_data(prf_id, secret, OCTETS) == expected
        verify_psk_auth(prf_id, secret, OCTETS, expected)


def test_psk_mismatch():
    auth = psk_auth_data(PrfId.HMAC_SHA2_256, b"secret", OCTETS)
    with pytest.raises(AuthenticationFailed):
        verify_psk_auth(PrfId.HMAC_SHA2_256, b"Secret", OCTETS, auth)
    with pytest.raises(AuthenticationFailed):
        verify_psk_auth(PrfId.HMAC_SHA2_256, b"secret", OCTETS + b"x", auth)
    with pytest.raises(AuthenticationFailed):
        verify_psk_auth(PrfId.HMAC_SHA2_256, b"secret", OCTETS, auth[:-1])
    with pytest.raises(AuthenticationFailed):
        verify_psk_auth(PrfId.HMAC_SHA2_256, b"secret", OCTETS, b"")


# RFC 7427 Appendix A (A.1 PKCS #1 v1.5, A.3 ECDSA, A.4.3 RSASSA-PSS with SHA-256). The
# PSS SHA-384/512 encodings are not in RFC 7427; they are the byte-exact encodings the
# CA/Browser Forum Baseline Requirements §7.1.3.2.1 list, built the same way.
APPENDIX_A = {
    SignatureScheme.RSA_PKCS1_SHA256: "300d06092a864886f70d01010b0500",
    SignatureScheme.RSA_PKCS1_SHA384: "300d06092a864886f70d01010c0500",
    SignatureScheme.RSA_PKCS1_SHA512: "300d06092a864886f70d01010d0500",
    SignatureScheme.ECDSA_SHA256: "300a06082a8648ce3d040302",
    SignatureScheme.ECDSA_SHA384: "300a06082a8648ce3d040303",
    SignatureScheme.ECDSA_SHA512: "300a06082a8648ce3d040304",
    SignatureScheme.RSA_PSS_SHA256: "304106092a864886f70d01010a3034a00f300d06096086480165030402010500"
                                    "a11c301a06092a864886f70d010108300d06096086480165030402010500a203020120",
    SignatureScheme.RSA_PSS_SHA384: "304106092a864886f70d01010a3034a00f300d06096086480165030402020500"
                                    "a11c301a06092a864886f70d010108300d06096086480165030402020500a203020130",
    SignatureScheme.RSA_PSS_SHA512: "304106092a864886f70d01010a3034a00f300d06096086480165030402030500"
                                    "a11c301a06092a864886f70d010108300d06096086480165030402030500a203020140",
}


@pytest.mark.parametrize("scheme", list(SignatureScheme), ids=lambda s: s.name)
def test_algorithm_identifiers_match_rfc7427_appendix_a(scheme):
    assert scheme.algorithm_identifier == H(APPENDIX_A[scheme])
    assert parse_algorithm_identifier(H(APPENDIX_A[scheme])).scheme is scheme


@pytest.mark.parametrize("blob,match", [
    ("300d06092a864886f70d0101050500", "sha1WithRSAEncryption"),  # RFC 7427 A.1.1
    ("300906072a8648ce3d0401", "ecdsa-with-SHA1"),  # RFC 7427 A.3.1
    ("300b06092a864886f70d01010a", "SHA-1"),  # RFC 7427 A.4.1, default parameters
    ("300d06092a864886f70d01010a3000", "SHA-1"),  # RFC 7427 A.4.2
    ("300b0609608648016503040302", "unknown signature AlgorithmIdentifier 2.16.840.1.101.3.4.3.2"),  # dsa-with-sha256
    ("300506032a0304", "unknown"),
])
def test_refused_and_unknown_algorithm_identifiers(blob, match):
    with pytest.raises(CryptoError, match=match):
        parse_algorithm_identifier(H(blob))


@pytest.mark.parametrize("blob", ["", "30", "300d06092a864886f70d01010b05", "310d06092a864886f70d01010b0500",
                                  "300d06092a864886f70d01010b050000", "3080", "300d06092a864886f70d01010b0501ff"])
def test_malformed_algorithm_identifiers_are_parse_errors(blob):
    with pytest.raises(ParseError):
        parse_algorithm_identifier(H(blob))


@given(st.binary(max_size=80))
def test_algorithm_identifier_parser_is_total(data):
    try:
        parse_algorithm_identifier(data)
    except (ParseError, CryptoError):
        pass


@pytest.mark.parametrize("scheme", list(SignatureScheme), ids=lambda s: s.name)
def test_digital_signature_round_trip(scheme, rsa_key, other_rsa_key, ec_keys):
    """RFC 7427 §3: AUTH data = length | AlgorithmIdentifier | signature; fresh keys and certificates."""
    if scheme.kind == "ecdsa":
        key = ec_keys["secp256r1"]
        wrong = ec_keys["secp384r1"]
    else:
        key, wrong = rsa_key, other_rsa_key
    auth = sign_auth(AuthMethod.DIGITAL_SIGNATURE, key, OCTETS, scheme)
    algid = H(APPENDIX_A[scheme])
    assert auth[0] == len(algid) and auth[1:1 + len(algid)] == algid
    assert digital_signature_params(auth).scheme is scheme
    cert = self_signed(key)
    verify_auth(AuthMethod.DIGITAL_SIGNATURE, cert, auth, OCTETS)
    verify_auth(AuthMethod.DIGITAL_SIGNATURE, key.public_key(), auth, OCTETS)
    verify_auth(AuthMethod.DIGITAL_SIGNATURE, cert, auth, OCTETS, accepted_hashes=[scheme.hash_algorithm])
    tampered = bytearray(auth)
    tampered[-5] ^= 0x01
    with pytest.raises(AuthenticationFailed):
        verify_auth(AuthMethod.DIGITAL_SIGNATURE, cert, bytes(tampered), OCTETS)
    with pytest.raises(AuthenticationFailed):
        verify_auth(AuthMethod.DIGITAL_SIGNATURE, cert, auth, OCTETS[:-1] + b"\x00")
    with pytest.raises(AuthenticationFailed):
        verify_auth(AuthMethod.DIGITAL_SIGNATURE, self_signed(wrong), auth, OCTETS)
    other_kind = ec_keys["secp256r1"] if scheme.kind != "ecdsa" else rsa_key
    with pytest.raises(AuthenticationFailed, match="peer's key"):
        verify_auth(AuthMethod.DIGITAL_SIGNATURE, other_kind.public_key(), auth, OCTETS)


def test_hash_not_announced_is_refused(rsa_key):
    """RFC 7427 §4: the signer must use one of the hashes the verifier announced."""
    auth = sign_auth(AuthMethod.DIGITAL_SIGNATURE, rsa_key, OCTETS, SignatureScheme.RSA_PSS_SHA512)
    with pytest.raises(CryptoError, match="SHA2_512.*not among"):
        verify_auth(AuthMethod.DIGITAL_SIGNATURE, rsa_key.public_key(), auth, OCTETS,
                    accepted_hashes=[HashAlgorithm.SHA2_256, HashAlgorithm.SHA2_384])


def test_pss_parameters_are_taken_from_the_algorithm_identifier(rsa_key):
    """RFC 4055 §3.1: a verifier honours hashAlgorithm, MGF1 hash and saltLength as encoded."""
    def hash_alg(oid):
        return der_sequence(der_oid(oid), der_null())

    algid = der_sequence(
        der_oid("1.2.840.113549.1.1.10"),
        der_sequence(
            der_context(0, hash_alg("2.16.840.1.101.3.4.2.1")),
            der_context(1, der_sequence(der_oid("1.2.840.113549.1.1.8"), hash_alg("2.16.840.1.101.3.4.2.3"))),
            der_context(2, der_integer(20)),
            der_context(3, der_integer(1)),
        ),
    )
    signature = rsa_key.sign(OCTETS, padding.PSS(mgf=padding.MGF1(hashes.SHA512()), salt_length=20), hashes.SHA256())
    auth = bytes([len(algid)]) + algid + signature
    params = digital_signature_params(auth)
    assert (params.hash_algorithm, params.mgf_hash, params.salt_length, params.scheme) == (
        HashAlgorithm.SHA2_256, HashAlgorithm.SHA2_512, 20, None)
    verify_auth(AuthMethod.DIGITAL_SIGNATURE, rsa_key.public_key(), auth, OCTETS)


@pytest.mark.parametrize("auth", ["", "00", "0f300d06092a864886f70d01010b0500", "ff00",
                                  "0f300d06092a864886f70d01010b05", "0e300d06092a864886f70d01010b0500aa"])
def test_malformed_auth_data_fails_authentication(auth, rsa_key):
    with pytest.raises(AuthenticationFailed):
        verify_auth(AuthMethod.DIGITAL_SIGNATURE, rsa_key.public_key(), H(auth), OCTETS)


def test_unknown_algorithm_in_auth_is_a_clear_crypto_error(rsa_key):
    algid = H("300b0609608648016503040302")
    with pytest.raises(CryptoError, match="unknown signature AlgorithmIdentifier") as err:
        verify_auth(AuthMethod.DIGITAL_SIGNATURE, rsa_key.public_key(), bytes([len(algid)]) + algid + b"sig", OCTETS)
    assert not isinstance(err.value, AuthenticationFailed)


@given(st.binary(max_size=300))
def test_verify_raises_only_documented_errors(data):
    key = ec.derive_private_key(12345, ec.SECP256R1()).public_key()
    for method in (AuthMethod.DIGITAL_SIGNATURE, AuthMethod.ECDSA_SHA256_P256, AuthMethod.RSA_SIG):
        with pytest.raises(CryptoError):
            verify_auth(method, key, data, OCTETS)


def test_rsa_sig_legacy_round_trip(rsa_key, other_rsa_key):
    """RFC 7296 §3.8 method 1: RSASSA-PKCS1-v1_5, SHA-1, bare signature."""
    auth = sign_auth(AuthMethod.RSA_SIG, rsa_key, OCTETS)
    assert len(auth) == 256
    rsa_key.public_key().verify(auth, OCTETS, padding.PKCS1v15(), hashes.SHA1())
    verify_auth(AuthMethod.RSA_SIG, self_signed(rsa_key), auth, OCTETS)
    with pytest.raises(AuthenticationFailed):
        verify_auth(AuthMethod.RSA_SIG, other_rsa_key.public_key(), auth, OCTETS)
    with pytest.raises(CryptoError):
        sign_auth(AuthMethod.RSA_SIG, ec.generate_private_key(ec.SECP256R1()), OCTETS)


@pytest.mark.parametrize("method,curve,size", [
    (AuthMethod.ECDSA_SHA256_P256, ec.SECP256R1(), 32),
    (AuthMethod.ECDSA_SHA384_P384, ec.SECP384R1(), 48),
    (AuthMethod.ECDSA_SHA512_P521, ec.SECP521R1(), 66),
])
def test_rfc4754_methods_round_trip(method, curve, size, ec_keys, rsa_key):
    """RFC 4754 §7: the signature is r | s, each the size of the curve's field."""
    key = ec_keys[curve.name]
    auth = sign_auth(method, key, OCTETS)
    assert len(auth) == 2 * size
    verify_auth(method, self_signed(key), auth, OCTETS)
    with pytest.raises(AuthenticationFailed):
        verify_auth(method, key.public_key(), auth[:-1] + bytes([auth[-1] ^ 1]), OCTETS)
    with pytest.raises(AuthenticationFailed):
        verify_auth(method, ec.generate_private_key(curve).public_key(), auth, OCTETS)
    with pytest.raises(AuthenticationFailed, match="octets"):
        verify_auth(method, key.public_key(), auth + b"\x00", OCTETS)
    wrong_curve = next(k for name, k in ec_keys.items() if name != curve.name)
    with pytest.raises(AuthenticationFailed, match=curve.name):
        verify_auth(method, wrong_curve.public_key(), auth, OCTETS)
    with pytest.raises(CryptoError, match=curve.name):
        sign_auth(method, wrong_curve, OCTETS)
    with pytest.raises(AuthenticationFailed):
        verify_auth(method, rsa_key.public_key(), auth, OCTETS)


def test_rfc4754_section_8_1_published_signature():
    """RFC 4754 §8.1: ECDSA-256 signature of "abc" with private key w (r | s published)."""
    w = 0xDC51D3866A15BACDE33D96F992FCA99DA7E6EF0934E7097559C27F1614C88A7F
    r = "CB28E0999B9C7715FD0A80D8E47A77079716CBBF917DD72E97566EA1C066957C"
    s = "86FA3BB4E26CAD5BF90B7F81899256CE7594BB1EA0C89212748BFF3B3D5B0315"
    public = ec.derive_private_key(w, ec.SECP256R1()).public_key()
    verify_auth(AuthMethod.ECDSA_SHA256_P256, public, H(r + s), b"abc")
    with pytest.raises(AuthenticationFailed):
        verify_auth(AuthMethod.ECDSA_SHA256_P256, public, H(r + s), b"abd")


RFC6979 = {
    "P-256": (ec.SECP256R1(), AuthMethod.ECDSA_SHA256_P256, SignatureScheme.ECDSA_SHA256, 32,
              "C9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721",
              "EFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716",
              "F7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8"),
    "P-384": (ec.SECP384R1(), AuthMethod.ECDSA_SHA384_P384, SignatureScheme.ECDSA_SHA384, 48,
              "6B9D3DAD2E1B8C1C05B19875B6659F4DE23C3B667BF297BA9AA47740787137D896D5724E4C70A825F872C9EA60D2EDF5",
              "94EDBB92A5ECB8AAD4736E56C691916B3F88140666CE9FA73D64C4EA95AD133C81A648152E44ACF96E36DD1E80FABE46",
              "99EF4AEB15F178CEA1FE40DB2603138F130E740A19624526203B6351D0A3A94FA329C145786E679E7B82C71A38628AC8"),
    "P-521": (ec.SECP521R1(), AuthMethod.ECDSA_SHA512_P521, SignatureScheme.ECDSA_SHA512, 66,
              "0FAD06DAA62BA3B25D2FB40133DA757205DE67F5BB0018FEE8C86E1B68C7E75C"
              "AA896EB32F1F47C70855836A6D16FCC1466F6D8FBEC67DB89EC0C08B0E996B83538",
              "0C328FAFCBD79DD77850370C46325D987CB525569FB63C5D3BC53950E6D4C5F1"
              "74E25A1EE9017B5D450606ADD152B534931D7D4E8455CC91F9B15BF05EC36E377FA",
              "0617CCE7CF5064806C467F678D3B4080D6F1CC50AF26CA209417308281B68AF2"
              "82623EAA63E5B5C0723D8B8C37FF0777B1A20F8CCB1DCCC43997F1EE0E44DA4A67A"),
}


@pytest.mark.parametrize("name", list(RFC6979))
def test_rfc6979_published_signatures(name):
    """RFC 6979 A.2.5-A.2.7: deterministic ECDSA of "sample", as legacy r | s and as RFC 7427 DER."""
    curve, method, scheme, size, d, r, s = RFC6979[name]
    public = ec.derive_private_key(int(d, 16), curve).public_key()
    r_int, s_int = int(r, 16), int(s, 16)
    verify_auth(method, public, r_int.to_bytes(size, "big") + s_int.to_bytes(size, "big"), b"sample")
    algid = scheme.algorithm_identifier
    auth = bytes([len(algid)]) + algid + encode_dss_signature(r_int, s_int)
    verify_auth(AuthMethod.DIGITAL_SIGNATURE, public, auth, b"sample")
    with pytest.raises(AuthenticationFailed):
        verify_auth(AuthMethod.DIGITAL_SIGNATURE, public, auth, b"Sample")


def test_unsupported_methods(rsa_key):
    with pytest.raises(CryptoError, match="SHARED_KEY_MIC"):
        sign_auth(AuthMethod.SHARED_KEY_MIC, rsa_key, OCTETS)
    with pytest.raises(CryptoError, match="DSS_SIG"):
        verify_auth(AuthMethod.DSS_SIG, rsa_key.public_key(), b"x", OCTETS)
    with pytest.raises(CryptoError, match="needs an ECDSA key"):
        sign_auth(AuthMethod.DIGITAL_SIGNATURE, rsa_key, OCTETS, SignatureScheme.ECDSA_SHA256)


def test_load_keys_and_certificates_pem_and_der(rsa_key, ec_keys):
    for key in (rsa_key, ec_keys["secp384r1"]):
        cert = self_signed(key)
        for enc in (serialization.Encoding.PEM, serialization.Encoding.DER):
            private = key.private_bytes(enc, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
            loaded = load_private_key(private)
            assert loaded.private_numbers() == key.private_numbers()
            public = key.public_key().public_bytes(enc, serialization.PublicFormat.SubjectPublicKeyInfo)
            assert load_public_key(public).public_numbers() == key.public_key().public_numbers()
            assert load_certificate(cert.public_bytes(enc)) == cert
        encrypted = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.BestAvailableEncryption(b"pw"))
        assert load_private_key(encrypted, password=b"pw").private_numbers() == key.private_numbers()
        with pytest.raises(CryptoError, match="cannot load private key"):
            load_private_key(encrypted)
        auth = sign_auth(AuthMethod.DIGITAL_SIGNATURE, load_private_key(
            key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())), OCTETS)
        verify_auth(AuthMethod.DIGITAL_SIGNATURE, load_certificate(cert.public_bytes(serialization.Encoding.DER)),
                    auth, OCTETS)


@pytest.mark.parametrize("loader", [load_private_key, load_public_key, load_certificate])
def test_load_garbage_is_a_crypto_error(loader):
    with pytest.raises(CryptoError):
        loader(b"not a key")
    with pytest.raises(CryptoError):
        loader(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")


def test_signature_hash_algorithms_notify():
    """RFC 7427 §4: a list of 2-octet hash algorithm ids."""
    data = encode_signature_hash_algorithms([HashAlgorithm.SHA2_256, HashAlgorithm.SHA2_384,
                                             HashAlgorithm.SHA2_512, HashAlgorithm.IDENTITY])
    assert data == H("0002 0003 0004 0005")
    assert decode_signature_hash_algorithms(data) == [HashAlgorithm.SHA2_256, HashAlgorithm.SHA2_384,
                                                      HashAlgorithm.SHA2_512, HashAlgorithm.IDENTITY]
    assert decode_signature_hash_algorithms(H("0001 1234")) == [HashAlgorithm.SHA1, 0x1234]
    assert decode_signature_hash_algorithms(b"") == []
    with pytest.raises(ParseError) as err:
        decode_signature_hash_algorithms(H("000200"), base=100)
    assert err.value.offset == 102
    with pytest.raises(CryptoError):
        encode_signature_hash_algorithms([70000])


def test_prf_is_used_for_the_id_mac():
    """The MACedIDFor part uses the negotiated PRF keyed with SK_p (RFC 7296 §2.15)."""
    octets = signed_octets(b"m", b"n", PrfId.HMAC_SHA2_512, b"k" * 64, b"\x01\x00\x00\x00\xc0\x00\x02\x01")
    assert octets[2:] == prf(PrfId.HMAC_SHA2_512, b"k" * 64, b"\x01\x00\x00\x00\xc0\x00\x02\x01")


# ---------------------------------------------------------------- DER and parameter edges (found by bench/mutation.py)


def test_der_read_lengths_and_their_errors():
    from lab.ike.crypto.der import der_read
    long_form = bytes([0x04, 0x81, 0x80]) + bytes(0x80)  # X.690 §8.1.3.5: long form from 128 octets
    tlv = der_read(long_form)
    assert (tlv.content_offset, tlv.end, len(tlv.content)) == (3, 3 + 0x80, 0x80)
    two = bytes([0x04, 0x82, 0x01, 0x00]) + bytes(0x100)
    assert len(der_read(two).content) == 0x100
    cases = {
        bytes([0x30, 0x80, 0x00, 0x00]): (1, "indefinite"),              # X.690 §10.1: not DER
        bytes([0x04, 0x82, 0x01]): (1, "unusable"),                     # long length runs past the end
        bytes([0x04, 0x85, 1, 2, 3, 4, 5]): (1, "unusable"),            # more than 4 length octets
        bytes([0x04, 0x81, 0x05, 1, 2, 3, 4, 5]): (1, "minimally"),     # short length in long form
        bytes([0x1F, 0x01, 0x00]): (0, "multi-octet tags"),
        bytes([0x04, 0x03, 0x00]): (0, "runs past the end"),
    }
    for data, (offset, words) in cases.items():
        with pytest.raises(ParseError, match=words) as err:
            der_read(data)
        assert err.value.offset == offset, data.hex()
    assert der_read(bytes([0x1E, 0x00])).tag == 0x1E  # BMPString: a one-octet tag of number 30


def test_der_oid_errors_name_their_offset():
    from lab.ike.crypto.der import oid_to_str
    assert oid_to_str(bytes([0x2A, 0x86, 0x48])) == "1.2.840"
    with pytest.raises(ParseError, match="minimally") as err:
        oid_to_str(bytes([0x2A, 0x80, 0x01]), offset=10)  # X.690 §8.19.2: no leading 0x80
    assert err.value.offset == 11
    with pytest.raises(ParseError, match="ends inside") as err:
        oid_to_str(bytes([0x2A, 0x86]), offset=10)
    assert err.value.offset == 11


def test_pss_parameters_defaults_and_malformed_mgf():
    from lab.ike.crypto.auth import OID_MGF1, OID_RSASSA_PSS, parse_algorithm_identifier
    sha256 = der_sequence(der_oid("2.16.840.1.101.3.4.2.1"), der_null())
    # RFC 4055 §3.1: an absent saltLength is 20 (absent hashes would be SHA-1, refused: RFC 8247 §4.2)
    mgf1_sha256 = der_sequence(der_oid(OID_MGF1), sha256)
    params = parse_algorithm_identifier(der_sequence(der_oid(OID_RSASSA_PSS), der_sequence(
        der_context(0, sha256), der_context(1, mgf1_sha256))))
    assert (params.hash_algorithm, params.mgf_hash, params.salt_length) == (HashAlgorithm.SHA2_256,
                                                                            HashAlgorithm.SHA2_256, 20)
    three = der_sequence(der_oid(OID_MGF1), sha256, der_null())
    with pytest.raises(ParseError, match="maskGenAlgorithm"):
        parse_algorithm_identifier(der_sequence(der_oid(OID_RSASSA_PSS), der_sequence(der_context(1, three))))


def test_signature_hash_algorithms_odd_length_error_offset():
    from lab.ike.crypto import decode_signature_hash_algorithms
    with pytest.raises(ParseError) as err:
        decode_signature_hash_algorithms(b"\x00\x02\x00", base=8)
    assert err.value.offset == 10


def test_der_edges_of_lengths_oids_and_pss_trailer():
    from lab.ike.crypto.auth import OID_RSASSA_PSS, parse_algorithm_identifier
    from lab.ike.crypto.der import der_length, oid_to_str
    assert der_length(127) == b"\x7f" and der_length(128) == b"\x81\x80" and der_length(256) == b"\x82\x01\x00"
    assert oid_to_str(der_oid("0.39")[2:]) == "0.39" and oid_to_str(der_oid("1.0")[2:]) == "1.0"
    sha256 = der_sequence(der_oid("2.16.840.1.101.3.4.2.1"), der_null())
    for trailer in (0, 2):  # RFC 4055 §3.1: trailerField 1 only
        with pytest.raises((ParseError, CryptoError)):
            parse_algorithm_identifier(der_sequence(der_oid(OID_RSASSA_PSS), der_sequence(
                der_context(0, sha256), der_context(3, der_integer(trailer)))))


def test_default_scheme_follows_the_curve():
    from lab.ike.crypto import default_scheme
    from lab.ike.crypto.auth import SignatureScheme
    assert default_scheme(ec.generate_private_key(ec.SECP384R1())) == SignatureScheme.ECDSA_SHA384
    assert default_scheme(ec.generate_private_key(ec.SECP256R1())) == SignatureScheme.ECDSA_SHA256
