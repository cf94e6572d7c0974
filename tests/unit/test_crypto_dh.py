"""Key exchange for KE payloads: RFC 7748 X25519, RFC 5903 ECP and RFC 3526 MODP."""
from __future__ import annotations

import pytest

from lab.ike.const import DhGroup
from lab.ike.crypto import new_key_exchange, public_value_size
from lab.ike.crypto.dh import MODP_2048_PRIME, MODP_3072_PRIME, rfc3526_prime
from lab.ike.errors import CryptoError


def H(s: str) -> bytes:
    return bytes.fromhex("".join(s.split()))


# RFC 7748 §6.1
ALICE_PRIVATE = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"
ALICE_PUBLIC = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
BOB_PRIVATE = "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"
BOB_PUBLIC = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
X25519_SHARED = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"


def test_x25519_rfc7748_section_6_1():
    """RFC 7748 §6.1 Alice and Bob, both directions."""
    alice = new_key_exchange(DhGroup.CURVE25519, private_key=H(ALICE_PRIVATE))
    bob = new_key_exchange(DhGroup.CURVE25519, private_key=H(BOB_PRIVATE))
    assert alice.public_value == H(ALICE_PUBLIC)
    assert bob.public_value == H(BOB_PUBLIC)
    assert alice.shared_secret(H(BOB_PUBLIC)) == H(X25519_SHARED)
    assert bob.shared_secret(H(ALICE_PUBLIC)) == H(X25519_SHARED)


@pytest.mark.parametrize("scalar,u,out", [
    ("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
     "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
     "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"),
    ("4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
     "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
     "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957"),
])
def test_x25519_rfc7748_section_5_2(scalar, u, out):
    """RFC 7748 §5.2 scalar multiplication vectors (the second u has its top bit set)."""
    assert new_key_exchange(DhGroup.CURVE25519, private_key=H(scalar)).shared_secret(H(u)) == H(out)


@pytest.mark.parametrize("u", ["00" * 32, "01" + "00" * 31])
def test_x25519_low_order_point_is_refused(u):
    """RFC 7748 §6.1, RFC 8031 §2.3: an all-zero shared secret must be refused."""
    kex = new_key_exchange(DhGroup.CURVE25519, private_key=H(ALICE_PRIVATE))
    with pytest.raises(CryptoError, match="all zero"):
        kex.shared_secret(H(u))


@pytest.mark.parametrize("length", [0, 31, 33, 64])
def test_x25519_wrong_length_is_refused(length):
    """RFC 8031 §2: the public value is exactly 32 octets."""
    with pytest.raises(CryptoError, match="32 octets"):
        new_key_exchange(DhGroup.CURVE25519).shared_secret(b"\x09" * length)


# RFC 5903 §8.1, §8.2, §8.3
RFC5903 = {
    DhGroup.ECP_256: dict(
        i="C88F01F510D9AC3F70A292DAA2316DE544E9AAB8AFE84049C62A9C57862D1433",
        gix="DAD0B65394221CF9B051E1FECA5787D098DFE637FC90B9EF945D0C3772581180",
        giy="5271A0461CDB8252D61F1C456FA3E59AB1F45B33ACCF5F58389E0577B8990BB3",
        r="C6EF9C5D78AE012A011164ACB397CE2088685D8F06BF9BE0B283AB46476BEE53",
        grx="D12DFB5289C8D4F81208B70270398C342296970A0BCCB74C736FC7554494BF63",
        gry="56FBF3CA366CC23E8157854C13C58D6AAC23F046ADA30F8353E74F33039872AB",
        girx="D6840F6B42F6EDAFD13116E0E12565202FEF8E9ECE7DCE03812464D04B9442DE",
    ),
    DhGroup.ECP_384: dict(
        i="099F3C7034D4A2C699884D73A375A67F7624EF7C6B3C0F160647B67414DCE655"
          "E35B538041E649EE3FAEF896783AB194",
        gix="667842D7D180AC2CDE6F74F37551F55755C7645C20EF73E31634FE72B4C55EE6"
            "DE3AC808ACB4BDB4C88732AEE95F41AA",
        giy="9482ED1FC0EEB9CAFC4984625CCFC23F65032149E0E144ADA024181535A0F38E"
            "EB9FCFF3C2C947DAE69B4C634573A81C",
        r="41CB0779B4BDB85D47846725FBEC3C9430FAB46CC8DC5060855CC9BDA0AA2942"
          "E0308312916B8ED2960E4BD55A7448FC",
        grx="E558DBEF53EECDE3D3FCCFC1AEA08A89A987475D12FD950D83CFA41732BC509D"
            "0D1AC43A0336DEF96FDA41D0774A3571",
        gry="DCFBEC7AACF3196472169E838430367F66EEBE3C6E70C416DD5F0C68759DD1FF"
            "F83FA40142209DFF5EAAD96DB9E6386C",
        girx="11187331C279962D93D604243FD592CB9D0A926F422E47187521287E7156C5C4"
             "D603135569B9E9D09CF5D4A270F59746",
    ),
    DhGroup.ECP_521: dict(
        i="0037ADE9319A89F4DABDB3EF411AACCCA5123C61ACAB57B5393DCE47608172A0"
          "95AA85A30FE1C2952C6771D937BA9777F5957B2639BAB072462F68C27A57382D4A52",
        gix="0015417E84DBF28C0AD3C278713349DC7DF153C897A1891BD98BAB4357C9ECBE"
            "E1E3BF42E00B8E380AEAE57C2D107564941885942AF5A7F4601723C4195D176CED3E",
        giy="017CAE20B6641D2EEB695786D8C946146239D099E18E1D5A514C739D7CB4A10A"
            "D8A788015AC405D7799DC75E7B7D5B6CF2261A6A7F1507438BF01BEB6CA3926F9582",
        r="0145BA99A847AF43793FDD0E872E7CDFA16BE30FDC780F97BCCC3F078380201E"
          "9C677D600B343757A3BDBF2A3163E4C2F869CCA7458AA4A4EFFC311F5CB151685EB9",
        grx="00D0B3975AC4B799F5BEA16D5E13E9AF971D5E9B984C9F39728B5E5739735A21"
            "9B97C356436ADC6E95BB0352F6BE64A6C2912D4EF2D0433CED2B6171640012D9460F",
        gry="015C68226383956E3BD066E797B623C27CE0EAC2F551A10C2C724D9852077B87"
            "220B6536C5C408A1D2AEBB8E86D678AE49CB57091F4732296579AB44FCD17F0FC56A",
        girx="01144C7D79AE6956BC8EDB8E7C787C4521CB086FA64407F97894E5E6B2D79B04"
             "D1427E73CA4BAA240A34786859810C06B3C715A3A8CC3151F2BEE417996D19F3DDEA",
    ),
}


@pytest.mark.parametrize("group", list(RFC5903), ids=lambda g: g.name)
def test_ecp_rfc5903_section_8(group):
    """RFC 5903 §8: KE data is gix | giy without the 0x04 prefix, g^ir is x only (errata 9, §7)."""
    v = RFC5903[group]
    initiator = new_key_exchange(group, private_key=H(v["i"]))
    responder = new_key_exchange(group, private_key=int(v["r"], 16))
    assert initiator.public_value == H(v["gix"]) + H(v["giy"])
    assert responder.public_value == H(v["grx"]) + H(v["gry"])
    assert initiator.shared_secret(responder.public_value) == H(v["girx"])
    assert responder.shared_secret(initiator.public_value) == H(v["girx"])
    assert public_value_size(group) == len(initiator.public_value)


@pytest.mark.parametrize("group", list(RFC5903), ids=lambda g: g.name)
def test_ecp_point_not_on_curve_is_refused(group):
    v = RFC5903[group]
    bad = bytearray(H(v["grx"]) + H(v["gry"]))
    bad[-1] ^= 1
    with pytest.raises(CryptoError, match="not a point on the curve"):
        new_key_exchange(group).shared_secret(bytes(bad))
    with pytest.raises(CryptoError, match="not a point on the curve"):
        new_key_exchange(group).shared_secret(bytes(len(bad)))


@pytest.mark.parametrize("group", list(RFC5903), ids=lambda g: g.name)
def test_ecp_wrong_length_is_refused(group):
    v = RFC5903[group]
    good = H(v["grx"]) + H(v["gry"])
    kex = new_key_exchange(group)
    with pytest.raises(CryptoError, match="octets"):
        kex.shared_secret(b"\x04" + good)
    with pytest.raises(CryptoError, match="octets"):
        kex.shared_secret(good[:-1])


@pytest.mark.parametrize("prime,bits,offset", [(MODP_2048_PRIME, 2048, 124476), (MODP_3072_PRIME, 3072, 1690314)])
def test_rfc3526_primes_match_their_definition(prime, bits, offset):
    """RFC 3526 §3, §4: p = 2^n - 2^(n-64) - 1 + 2^64 * ([2^(n-130) pi] + offset)."""
    assert prime == rfc3526_prime(bits, offset)  # p = 2^n - 2^(n-64) - 1 + 2^64 * (floor(2^(n-130) pi) + k)


@pytest.mark.parametrize("group,prime", [(DhGroup.MODP_2048, MODP_2048_PRIME), (DhGroup.MODP_3072, MODP_3072_PRIME)],
                         ids=["MODP_2048", "MODP_3072"])
def test_modp_two_sides_agree(group, prime):
    a = new_key_exchange(group)
    b = new_key_exchange(group)
    size = prime.bit_length() // 8
    assert len(a.public_value) == len(b.public_value) == size == public_value_size(group)
    secret = a.shared_secret(b.public_value)
    assert len(secret) == size
    assert secret == b.shared_secret(a.public_value)


def test_modp_fixed_private_value():
    """g^x with generator 2 (RFC 3526 §3): x = 10 gives 1024, padded to 256 octets (RFC 7296 §3.4)."""
    kex = new_key_exchange(DhGroup.MODP_2048, private_key=10)
    assert kex.public_value == (1024).to_bytes(256, "big")
    other = new_key_exchange(DhGroup.MODP_2048, private_key=b"\x07")
    assert kex.shared_secret(other.public_value) == other.shared_secret(kex.public_value)


@pytest.mark.parametrize("group,prime", [(DhGroup.MODP_2048, MODP_2048_PRIME), (DhGroup.MODP_3072, MODP_3072_PRIME)],
                         ids=["MODP_2048", "MODP_3072"])
@pytest.mark.parametrize("name,value,match", [
    ("zero", lambda p: 0, "degenerate"),
    ("one", lambda p: 1, "degenerate"),
    ("p-1", lambda p: p - 1, "p-1"),
    ("p", lambda p: p, "not less than the prime"),
    ("p+1", lambda p: p + 1, "not less than the prime"),
    ("all ones", lambda p: 2 ** p.bit_length() - 1, "not less than the prime"),
])
def test_modp_degenerate_values_are_refused(group, prime, name, value, match):
    kex = new_key_exchange(group)
    with pytest.raises(CryptoError, match=match):
        kex.shared_secret(value(prime).to_bytes(prime.bit_length() // 8, "big"))


@pytest.mark.parametrize("group,size", [(DhGroup.MODP_2048, 256), (DhGroup.MODP_3072, 384)], ids=["MODP_2048", "MODP_3072"])
def test_modp_unpadded_or_long_values_are_refused(group, size):
    """RFC 7296 §3.4: the value is zero-padded to the length of the prime."""
    kex = new_key_exchange(group)
    short = new_key_exchange(group).public_value.lstrip(b"\x00")[1:]
    with pytest.raises(CryptoError, match=f"{size} octets"):
        kex.shared_secret(short)
    with pytest.raises(CryptoError, match=f"{size} octets"):
        kex.shared_secret(b"\x00" + new_key_exchange(group).public_value)
    with pytest.raises(CryptoError, match=f"{size} octets"):
        kex.shared_secret(b"\x02")


@pytest.mark.parametrize("group", [DhGroup.MODP_1536, DhGroup.ECP_224, DhGroup.BRAINPOOL_P224, DhGroup.CURVE448, 99])
def test_unsupported_group_is_named(group):
    name = group.name if isinstance(group, DhGroup) else "DhGroup(99)"
    with pytest.raises(CryptoError, match=name.replace("(", "\\(").replace(")", "\\)")):
        new_key_exchange(group)
    with pytest.raises(CryptoError):
        public_value_size(group)


def test_bad_private_keys():
    with pytest.raises(CryptoError):
        new_key_exchange(DhGroup.MODP_2048, private_key=1)
    with pytest.raises(CryptoError):
        new_key_exchange(DhGroup.ECP_256, private_key=0)
    with pytest.raises(CryptoError):
        new_key_exchange(DhGroup.CURVE25519, private_key=b"short")


def test_modp_private_value_range():
    # the private exponent lies in 2..p-2 (1 and p-1 give degenerate public values)
    for bad in (0, 1, MODP_2048_PRIME - 1, MODP_2048_PRIME):
        with pytest.raises(CryptoError, match="2..p-2"):
            new_key_exchange(DhGroup.MODP_2048, bad)
    new_key_exchange(DhGroup.MODP_2048, MODP_2048_PRIME - 2)
    new_key_exchange(DhGroup.MODP_2048, 2)


# ---------------------------------------------------------------- ML-KEM (FIPS 203)

import json  # noqa: E402
from pathlib import Path  # noqa: E402

_MLKEM_VECTORS = json.loads((Path(__file__).parents[1] / "data" / "mlkem" / "wycheproof_mlkem.json").read_text())
_MLKEM_GROUPS = {"ML-KEM-768": DhGroup.MLKEM_768, "ML-KEM-1024": DhGroup.MLKEM_1024}


@pytest.mark.parametrize("vector", _MLKEM_VECTORS["tests"], ids=lambda v: v["parameterSet"])
def test_mlkem_wycheproof_keygen_from_seed_and_decapsulation(vector):
    """Wycheproof: the seed gives the published encapsulation key, and the initiator's side
    decapsulates the published ciphertext to the published shared secret."""
    kex = new_key_exchange(_MLKEM_GROUPS[vector["parameterSet"]], private_key=H(vector["seed"]))
    assert kex.public_value == H(vector["ek"])
    assert kex.shared_secret(H(vector["c"])) == H(vector["K"])


@pytest.mark.parametrize("group, ek, ct", [(DhGroup.MLKEM_768, 1184, 1088), (DhGroup.MLKEM_1024, 1568, 1568)])
def test_mlkem_initiator_sends_key_responder_sends_ciphertext(group, ek, ct):
    initiator, responder = new_key_exchange(group), new_key_exchange(group)
    key = initiator.public_value
    assert len(key) == ek == public_value_size(group)
    secret = responder.shared_secret(key)
    ciphertext = responder.public_value
    assert len(ciphertext) == ct and len(secret) == 32
    assert initiator.shared_secret(ciphertext) == secret
    # FIPS 203 §7.3 implicit rejection: a changed ciphertext gives another secret, no error
    assert initiator.shared_secret(bytes([ciphertext[0] ^ 1]) + ciphertext[1:]) != secret


@pytest.mark.parametrize("group", [DhGroup.MLKEM_768, DhGroup.MLKEM_1024])
def test_mlkem_wrong_lengths_are_refused(group):
    initiator, responder = new_key_exchange(group), new_key_exchange(group)
    key = initiator.public_value
    with pytest.raises(CryptoError, match="encapsulation key must be"):
        responder.shared_secret(key[:-1])
    with pytest.raises(CryptoError, match="encapsulation key must be"):
        responder.shared_secret(key + b"\x00")
    ciphertext = (responder.shared_secret(key), responder.public_value)[1]
    with pytest.raises(CryptoError, match="ciphertext must be"):
        initiator.shared_secret(ciphertext[:-1])


def test_mlkem_encapsulation_key_modulus_check():
    # FIPS 203 §7.2: a coefficient >= q (here 0xfff in the first 12 bits) fails the modulus check
    key = bytearray(new_key_exchange(DhGroup.MLKEM_768).public_value)
    key[0], key[1] = 0xFF, key[1] | 0x0F
    with pytest.raises(CryptoError, match="modulus check"):
        new_key_exchange(DhGroup.MLKEM_768).shared_secret(bytes(key))


def test_mlkem_512_is_not_offered():
    """cryptography has no ML-KEM-512: the registry leaves it unimplemented, and asking gives a clear error."""
    with pytest.raises(CryptoError, match="unsupported key exchange group"):
        new_key_exchange(DhGroup.MLKEM_512)
