"""SK payload protection (RFC 7296 §3.14, RFC 5282, RFC 7634) with published vectors,
round trips and tampering."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.ike.const import EncrId, IntegId
from lab.ike.crypto import SkCipher, integ_mac
from lab.ike.errors import CryptoError, IntegrityError, ParseError


def H(s: str) -> bytes:
    return bytes.fromhex("".join(s.split()))


def test_rfc7634_appendix_b_ikev2_message():
    """RFC 7634 Appendix B: the ChaCha20-Poly1305-protected INFORMATIONAL message.

    KEYMAT 80..9f, salt a0a1a2a3, IV 10..17, SPIi c0..c7, SPIr d0..d7, Message ID 9,
    one Notify payload (SET_WINDOW_SIZE 10) and a zero Pad Length.
    """
    key_e = H("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f a0a1a2a3")
    aad = H("c0c1c2c3c4c5c6c7 d0d1d2d3d4d5d6d7 2e202500 00000009 00000045 29000029")
    iv = H("1011121314151617")
    inner = H("0000000c 00004001 0000000a")
    ciphertext = H("610394701f8d017f7c12924889")
    tag = H("6b71bfe25236efd7cdc67066906315b2")
    sk = SkCipher(EncrId.CHACHA20_POLY1305, None)
    assert sk.encrypted_length(len(inner)) == 8 + 13 + 16 == 0x29 - 4
    assert sk.seal(key_e, b"", iv, aad, inner) == iv + ciphertext + tag
    assert sk.open(key_e, b"", aad, iv + ciphertext + tag) == inner
    with pytest.raises(IntegrityError):
        sk.open(key_e, b"", aad[:-1] + b"\x28", iv + ciphertext + tag)


GCM_K128 = "feffe9928665731c6d6a8f9467308308"
GCM_K256 = GCM_K128 * 2
GCM_P = ("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
         "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255")
GCM_A = "feedfacedeadbeeffeedfacedeadbeefabaddad2"


@pytest.mark.parametrize(
    "name,key,nonce,aad,plaintext,ciphertext,tag",
    [
        ("case 2", "00" * 16, "00" * 12, "", "00" * 16,
         "0388dace60b6a392f328c2b971b2fe78", "ab6e47d42cec13bdf53a67b21257bddf"),
        ("case 4", GCM_K128, "cafebabefacedbaddecaf888", GCM_A, GCM_P[:120],
         "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
         "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
         "5bc94fbc3221a5db94fae95ae7121a47"),
        ("case 14", "00" * 32, "00" * 12, "", "00" * 16,
         "cea7403d4d606b6e074ec5d3baf39d18", "d0d1c8a799996bf0265b98b5d48ab919"),
        ("case 16", GCM_K256, "cafebabefacedbaddecaf888", GCM_A, GCM_P[:120],
         "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
         "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
         "76fc6ece0f4e1768cddf8853bb2d551b"),
    ],
)
@pytest.mark.parametrize("encr_id,icv", [(EncrId.AES_GCM_16, 16), (EncrId.AES_GCM_12, 12), (EncrId.AES_GCM_8, 8)])
def test_gcm_spec_vectors_through_sk_layout(name, key, nonce, aad, plaintext, ciphertext, tag, encr_id, icv):
    """McGrew & Viega, "The Galois/Counter Mode of Operation (GCM)", test cases 2, 4, 14, 16.

    The 12-octet GCM IV is salt (last 4 octets of SK_e) | the 8-octet SK IV (RFC 5282 §4);
    the plaintext's last octet is read as Pad Length. Shorter ICVs are the published tag
    truncated (NIST SP 800-38D §5.2.1.2).
    """
    p = H(plaintext)
    key_e = H(key) + H(nonce)[:4]
    iv = H(nonce)[4:]
    pad_length = p[-1]
    inner, padding = p[: len(p) - 1 - pad_length], p[len(p) - 1 - pad_length: -1]
    sk = SkCipher(encr_id, len(H(key)) * 8)
    sealed = sk.seal(key_e, b"", iv, H(aad), inner, padding=padding)
    assert sealed == iv + H(ciphertext) + H(tag)[:icv]
    assert sk.open(key_e, b"", H(aad), sealed) == inner
    assert sk.encrypted_length(len(inner), len(padding)) == len(sealed)


@pytest.mark.parametrize("key,ciphertext,tag", [
    (GCM_K128,
     "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
     "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985",
     "4d5c2af327cd64a62cf35abd2ba6fab4"),
    (GCM_K256,
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
     "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
     "b094dac5d93471bdec1a502270e3cc6c"),
])
def test_gcm_spec_cases_3_and_15_have_an_impossible_pad_length(key, ciphertext, tag):
    """GCM spec test cases 3 and 15 authenticate, but their last plaintext octet (0x55 = 85)
    is longer than the 63 octets before it, so they are no SK payload: ParseError, not a crash."""
    sk = SkCipher(EncrId.AES_GCM_16, len(H(key)) * 8)
    key_e = H(key) + H("cafebabe")
    data = H("facedbaddecaf888") + H(ciphertext) + H(tag)
    with pytest.raises(ParseError, match="Pad Length 85"):
        sk.open(key_e, b"", b"", data)


@pytest.mark.parametrize("integ_id", [IntegId.HMAC_SHA2_256_128, IntegId.HMAC_SHA1_96])
def test_aes_cbc_rfc3602_case_2(integ_id):
    """RFC 3602 §4 case #2 (AES-128-CBC, 32 octets); ICV = HMAC over aad | IV | ciphertext (RFC 7296 §3.14)."""
    key = H("c286696d887c9aa0611bbb3e2025a45a")
    iv = H("562e17996d093d28ddb3ba695a2e6f58")
    ciphertext = H("d296cd94c2cccf8a3a863028b5e1dc0a7586602d253cfff91b8266bea6d61ab1")
    key_a = bytes(range(32 if integ_id == IntegId.HMAC_SHA2_256_128 else 20))
    aad = b"A" * 32
    sk = SkCipher(EncrId.AES_CBC, 128, integ_id)
    sealed = sk.seal(key, key_a, iv, aad, b"", padding=bytes(range(31)))
    assert sealed[:48] == iv + ciphertext
    assert sealed[48:] == integ_mac(integ_id, key_a, aad + iv + ciphertext)
    assert sk.open(key, key_a, aad, sealed) == b""


def test_aes_256_cbc_sp800_38a_f25():
    """NIST SP 800-38A F.2.5 CBC-AES256.Encrypt; last plaintext octet 0x10 is the Pad Length."""
    key = H("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4")
    iv = H("000102030405060708090a0b0c0d0e0f")
    p = H("6bc1bee22e409f96e93d7e117393172a ae2d8a571e03ac9c9eb76fac45af8e51"
          "30c81c46a35ce411e5fbc1191a0a52ef f69f2445df4f9b17ad2b417be66c3710")
    c = H("f58c4c04d6e5f1ba779eabfb5f7bfbd6 9cfc4e967edb808d679f777bc6702c7d"
          "39f23369a9d9bacfa530e26304231461 b2eb05e2c39be9fcda6c19078c6a9d1b")
    key_a = b"\x01" * 64
    sk = SkCipher(EncrId.AES_CBC, 256, IntegId.HMAC_SHA2_512_256)
    sealed = sk.seal(key, key_a, iv, b"hdr", p[:47], padding=p[47:63])
    assert sealed[16:80] == c
    assert sk.open(key, key_a, b"hdr", sealed) == p[:47]


SUITES = [
    (EncrId.AES_CBC, 128, IntegId.HMAC_SHA2_256_128),
    (EncrId.AES_CBC, 256, IntegId.HMAC_SHA2_384_192),
    (EncrId.AES_CBC, 256, IntegId.HMAC_SHA2_512_256),
    (EncrId.AES_CBC, 192, IntegId.HMAC_SHA1_96),
    (EncrId.AES_GCM_8, 128, IntegId.NONE),
    (EncrId.AES_GCM_12, 256, IntegId.NONE),
    (EncrId.AES_GCM_16, 128, IntegId.NONE),
    (EncrId.AES_GCM_16, 256, IntegId.NONE),
    (EncrId.CHACHA20_POLY1305, None, IntegId.NONE),
]
SUITE_IDS = [f"{e.name}-{k}-{i.name}" for e, k, i in SUITES]


def _material(sk: SkCipher, seed: int) -> tuple[bytes, bytes, bytes]:
    key_e = bytes((seed + i) % 256 for i in range(sk.encr_key_size))
    key_a = bytes((seed * 7 + i) % 256 for i in range(sk.integ_key_size))
    iv = bytes((seed * 13 + i) % 256 for i in range(sk.iv_size))
    return key_e, key_a, iv


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
@settings(max_examples=25, deadline=None)
@given(inner=st.binary(max_size=200), aad=st.binary(min_size=1, max_size=40), seed=st.integers(0, 255))
def test_round_trip(suite, inner, aad, seed):
    sk = SkCipher(*suite)
    key_e, key_a, iv = _material(sk, seed)
    sealed = sk.seal(key_e, key_a, iv, aad, inner)
    assert len(sealed) == sk.encrypted_length(len(inner))
    assert sealed[: sk.iv_size] == iv
    assert sk.open(key_e, key_a, aad, sealed) == inner


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
@settings(max_examples=25, deadline=None)
@given(inner=st.binary(max_size=100), aad=st.binary(min_size=1, max_size=40), data=st.data())
def test_any_flipped_bit_is_an_integrity_error(suite, inner, aad, data):
    """A flipped bit in aad, IV, ciphertext or ICV never yields plaintext (RFC 7296 §3.14)."""
    sk = SkCipher(*suite)
    key_e, key_a, iv = _material(sk, 1)
    sealed = sk.seal(key_e, key_a, iv, aad, inner)
    message = bytearray(aad + sealed)
    bit = data.draw(st.integers(0, len(message) * 8 - 1), label="bit")
    message[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(IntegrityError):
        sk.open(key_e, key_a, bytes(message[: len(aad)]), bytes(message[len(aad):]))


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
@pytest.mark.parametrize("part", ["iv", "ciphertext", "icv", "aad"])
def test_tamper_each_part(suite, part):
    sk = SkCipher(*suite)
    key_e, key_a, iv = _material(sk, 9)
    aad, inner = b"\x00" * 28 + b"\x2e\x00\x00\x40", b"inner payloads " * 3
    sealed = bytearray(sk.seal(key_e, key_a, iv, aad, inner))
    aad_b = bytearray(aad)
    where = {"iv": (sealed, 0), "ciphertext": (sealed, sk.iv_size + 1), "icv": (sealed, len(sealed) - 1),
             "aad": (aad_b, 3)}[part]
    where[0][where[1]] ^= 0x80
    with pytest.raises(IntegrityError):
        sk.open(key_e, key_a, bytes(aad_b), bytes(sealed))


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
def test_wrong_key_is_an_integrity_error(suite):
    sk = SkCipher(*suite)
    key_e, key_a, iv = _material(sk, 3)
    sealed = sk.seal(key_e, key_a, iv, b"aad", b"payload")
    other_e, other_a, _ = _material(sk, 4)
    with pytest.raises(IntegrityError):
        sk.open(other_e, other_a if sk.integ_key_size else key_a, b"aad", sealed)


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=120))
def test_garbage_only_raises_documented_errors(suite, data):
    sk = SkCipher(*suite)
    key_e, key_a, _ = _material(sk, 5)
    with pytest.raises((IntegrityError, ParseError)):
        sk.open(key_e, key_a, b"hdr", data)


def test_short_and_unaligned_data_are_parse_errors():
    sk = SkCipher(EncrId.AES_CBC, 128, IntegId.HMAC_SHA2_256_128)
    key_e, key_a = b"k" * 16, b"a" * 32
    with pytest.raises(ParseError, match="shorter than IV") as short:
        sk.open(key_e, key_a, b"h" * 32, b"\x00" * 47)
    assert short.value.offset == 32
    with pytest.raises(ParseError, match="not a multiple") as unaligned:
        sk.open(key_e, key_a, b"h" * 32, b"\x00" * 65)
    assert unaligned.value.offset == 48


def test_cbc_pad_length_too_large_after_valid_icv():
    """A peer that authenticates a bogus Pad Length gets a ParseError naming its offset."""
    sk = SkCipher(EncrId.AES_CBC, 128, IntegId.HMAC_SHA2_256_128)
    key_e, key_a, iv, aad = b"k" * 16, b"a" * 32, b"i" * 16, b"h" * 32
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    enc = Cipher(algorithms.AES(key_e), modes.CBC(iv)).encryptor()
    ciphertext = enc.update(b"\x00" * 15 + b"\x10") + enc.finalize()
    data = iv + ciphertext + integ_mac(IntegId.HMAC_SHA2_256_128, key_a, aad + iv + ciphertext)
    with pytest.raises(ParseError, match="Pad Length 16") as err:
        sk.open(key_e, key_a, aad, data)
    assert err.value.offset == 32 + 16 + 15


def test_sizes_and_lengths():
    cbc = SkCipher(EncrId.AES_CBC, 256, IntegId.HMAC_SHA2_256_128)
    assert (cbc.iv_size, cbc.icv_size, cbc.block_size) == (16, 16, 16)
    assert cbc.encrypted_length(0) == 16 + 16 + 16
    assert cbc.encrypted_length(15) == 16 + 16 + 16
    assert cbc.encrypted_length(16) == 16 + 32 + 16
    gcm = SkCipher(EncrId.AES_GCM_12, 128)
    assert (gcm.iv_size, gcm.icv_size, gcm.block_size) == (8, 12, 1)
    assert gcm.encrypted_length(5) == 8 + 6 + 12
    chacha = SkCipher(EncrId.CHACHA20_POLY1305, None)
    assert (chacha.iv_size, chacha.icv_size, chacha.encr_key_size) == (8, 16, 36)


def test_caller_padding():
    sk = SkCipher(EncrId.AES_CBC, 128, IntegId.HMAC_SHA2_256_128)
    key_e, key_a, iv = b"k" * 16, b"a" * 32, b"i" * 16
    sealed = sk.seal(key_e, key_a, iv, b"h", b"x" * 10, padding=b"\xff" * 21)
    assert len(sealed) == 16 + 32 + 16
    assert sk.open(key_e, key_a, b"h", sealed) == b"x" * 10
    with pytest.raises(CryptoError, match="multiple"):
        sk.seal(key_e, key_a, iv, b"h", b"x" * 10, padding=b"\x00" * 4)


@pytest.mark.parametrize("args,match", [
    ((EncrId.AES_GCM_16, 128, IntegId.HMAC_SHA2_256_128), "AEAD"),
    ((EncrId.AES_CBC, 128, IntegId.NONE), "integrity"),
    ((EncrId.DES, None, IntegId.HMAC_SHA1_96), "DES"),
    ((EncrId.AES_CBC, 128, IntegId.AES_XCBC_96), "AES_XCBC_96"),
])
def test_bad_suites(args, match):
    with pytest.raises(CryptoError, match=match):
        SkCipher(*args)


def test_wrong_key_and_iv_sizes_are_crypto_errors():
    sk = SkCipher(EncrId.AES_GCM_16, 256)
    with pytest.raises(CryptoError, match="36-octet"):
        sk.seal(b"k" * 32, b"", b"i" * 8, b"", b"x")
    with pytest.raises(CryptoError, match="8-octet IV"):
        sk.seal(b"k" * 36, b"", b"i" * 12, b"", b"x")
    with pytest.raises(CryptoError, match="integrity key"):
        sk.open(b"k" * 36, b"a" * 32, b"", b"\x00" * 40)


def test_sk_refuses_ciphers_it_does_not_implement():
    for encr in (EncrId.CAMELLIA_CBC, EncrId.DES, 99):
        with pytest.raises(CryptoError):
            SkCipher(encr, 128, IntegId.HMAC_SHA2_256_128)


def test_bad_pad_length_error_names_the_pad_length_octet():
    # RFC 7296 §3.14: Pad Length is the last octet before the ICV; its offset is in the error
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    key_e, key_a, aad, iv = bytes(range(16)), bytes(range(32)), bytes(32), bytes(16)
    plaintext = bytes(15) + bytes([200])
    ct = Cipher(algorithms.AES(key_e), modes.CBC(iv)).encryptor().update(plaintext)
    icv = integ_mac(IntegId.HMAC_SHA2_256_128, key_a, aad + iv + ct)
    cipher = SkCipher(EncrId.AES_CBC, 128, IntegId.HMAC_SHA2_256_128)
    with pytest.raises(ParseError, match="Pad Length 200") as err:
        cipher.open(key_e, key_a, aad, iv + ct + icv)
    assert err.value.offset == len(aad) + 16 + 16 - 1
