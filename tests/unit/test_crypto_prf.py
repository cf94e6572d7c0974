"""PRFs and prf+ (RFC 7296 §2.13) against published HMAC vectors."""
from __future__ import annotations

import pytest

from lab.ike.const import IntegId, PrfId
from lab.ike.crypto import get_prf, integ_icv_size, integ_key_size, prf, prf_key_size, prf_plus
from lab.ike.crypto.sk import integ_mac
from lab.ike.errors import CryptoError

H = bytes.fromhex

# RFC 4868 §2.7.1 (PRF test vectors, which take RFC 4231 test cases 1, 2, 3, 4, 6 and 7).
RFC4868_PRF_CASES = [
    (  # PRF-1
        b"\x0b" * 20,
        b"Hi There",
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
        "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59c"
        "faea9ea9076ede7f4af152e8b2fa9cb6",
        "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde"
        "daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854",
    ),
    (  # PRF-2
        b"Jefe",
        b"what do ya want for nothing?",
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e"
        "8e2240ca5e69e2c78b3239ecfab21649",
        "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
        "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
    ),
    (  # PRF-3
        b"\xaa" * 20,
        b"\xdd" * 50,
        "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
        "88062608d3e6ad8a0aa2ace014c8a86f0aa635d947ac9febe83ef4e55966144b"
        "2a5ab39dc13814b94e3ab6e101a34f27",
        "fa73b0089d56a284efb0f0756c890be9b1b5dbdd8ee81a3655f83e33b2279d39"
        "bf3e848279a722c806b485a47e67c807b946a337bee8942674278859e13292fb",
    ),
    (  # PRF-4
        bytes(range(1, 26)),
        b"\xcd" * 50,
        "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
        "3e8a69b7783c25851933ab6290af6ca77a9981480850009cc5577c6e1f573b4e"
        "6801dd23c4a7d679ccf8a386c674cffb",
        "b0ba465637458c6990e5a8c5f61d4af7e576d97ff94b872de76f8050361ee3db"
        "a91ca5c11aa25eb4d679275cc5788063a5f19741120c4f2de2adebeb10a298dd",
    ),
    (  # PRF-5
        b"\xaa" * 131,
        b"Test Using Larger Than Block-Size Key - Hash Key First",
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
        "4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f3cd11f05033ac4c6"
        "0c2ef6ab4030fe8296248df163f44952",
        "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f352"
        "6b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598",
    ),
    (  # PRF-6
        b"\xaa" * 131,
        b"This is a test using a larger than block-size key and a larger than block-size data. "
        b"The key needs to be hashed before being used by the HMAC algorithm.",
        "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
        "6617178e941f020d351e2f254e8fd32c602420feb0b8fb9adccebb82461e99c5"
        "a678cc31e799176d3860e6110c46523e",
        "e37b6a775dc87dbaa4dfa9f96e5e3ffddebd71f8867289865df5a32d20cdc944"
        "b6022cac3c4982b10d5eeb55c3e4de15134676fb6de0446065c97440fa8c6a58",
    ),
]


@pytest.mark.parametrize("key,data,sha256,sha384,sha512", RFC4868_PRF_CASES)
def test_rfc4868_prf_vectors(key, data, sha256, sha384, sha512):
    """RFC 4868 §2.7.1 PRF-HMAC-SHA-256/384/512."""
    assert prf(PrfId.HMAC_SHA2_256, key, data) == H(sha256)
    assert prf(PrfId.HMAC_SHA2_384, key, data) == H(sha384)
    assert prf(PrfId.HMAC_SHA2_512, key, data) == H(sha512)


# RFC 2202 §3, HMAC-SHA-1 test cases 1-7.
RFC2202_SHA1 = [
    (b"\x0b" * 20, b"Hi There", "b617318655057264e28bc0b6fb378c8ef146be00"),
    (b"Jefe", b"what do ya want for nothing?", "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"),
    (b"\xaa" * 20, b"\xdd" * 50, "125d7342b9ac11cd91a39af48aa17b4f63f175d3"),
    (bytes(range(1, 26)), b"\xcd" * 50, "4c9007f4026250c6bc8414f9bf50c86c2d7235da"),
    (b"\x0c" * 20, b"Test With Truncation", "4c1a03424b55e07fe7f27be1d58bb9324a9a5a04"),
    (b"\xaa" * 80, b"Test Using Larger Than Block-Size Key - Hash Key First",
     "aa4ae5e15272d00e95705637ce8a3b55ed402112"),
    (b"\xaa" * 80, b"Test Using Larger Than Block-Size Key and Larger Than One Block-Size Data",
     "e8e99d0f45237d786d6bbaa7965c7808bbff1a91"),
]


@pytest.mark.parametrize("key,data,digest", RFC2202_SHA1)
def test_rfc2202_hmac_sha1(key, data, digest):
    """RFC 2202 §3 HMAC-SHA-1 test cases."""
    assert prf(PrfId.HMAC_SHA1, key, data) == H(digest)


def test_rfc2202_hmac_sha1_96_truncation():
    """RFC 2202 §3 test case 5 gives HMAC-SHA-1-96 = 4c1a03424b55e07fe7f27be1 (RFC 2404)."""
    assert integ_mac(IntegId.HMAC_SHA1_96, b"\x0c" * 20, b"Test With Truncation") == H(
        "4c1a03424b55e07fe7f27be1"
    )


# RFC 4868 §2.7.2.1, AUTH256 test cases (32-octet keys, HMAC-SHA-256-128 is the first half).
RFC4868_AUTH256 = [
    (b"\x0b" * 32, b"Hi There",
     "198a607eb44bfbc69903a0f1cf2bbdc5ba0aa3f3d9ae3c1c7a3b1696a0b68cf7"),
    (b"Jefe" * 8, b"what do ya want for nothing?",
     "167f928588c5cc2eef8e3093caa0e87c9ff566a14794aa61648d81621a2a40c6"),
    (b"\xaa" * 32, b"\xdd" * 50,
     "cdcb1220d1ecccea91e53aba3092f962e549fe6ce9ed7fdc43191fbde45c30b0"),
    (bytes(range(1, 33)), b"\xcd" * 50,
     "372efcf9b40b35c2115b1346903d2ef42fced46f0846e7257bb156d3d7b30d3f"),
]


@pytest.mark.parametrize("key,data,full", RFC4868_AUTH256)
def test_rfc4868_auth256(key, data, full):
    """RFC 4868 §2.7.2.1: HMAC-SHA-256-128 is the leftmost 128 bits."""
    assert integ_mac(IntegId.HMAC_SHA2_256_128, key, data) == H(full)[:16]


def test_prf_plus_definition():
    """RFC 7296 §2.13: T1 = prf(K, S | 0x01), T2 = prf(K, T1 | S | 0x02), ..."""
    key, seed = b"k" * 32, b"seed"
    t1 = prf(PrfId.HMAC_SHA2_256, key, seed + b"\x01")
    t2 = prf(PrfId.HMAC_SHA2_256, key, t1 + seed + b"\x02")
    t3 = prf(PrfId.HMAC_SHA2_256, key, t2 + seed + b"\x03")
    assert prf_plus(PrfId.HMAC_SHA2_256, key, seed, 70) == (t1 + t2 + t3)[:70]
    assert prf_plus(PrfId.HMAC_SHA2_256, key, seed, 0) == b""


@pytest.mark.parametrize("prf_id", [PrfId.HMAC_SHA1, PrfId.HMAC_SHA2_256, PrfId.HMAC_SHA2_384, PrfId.HMAC_SHA2_512])
def test_prf_plus_limit_is_255_blocks(prf_id):
    """RFC 7296 §2.13: prf+ is not defined beyond 255 iterations."""
    size = get_prf(prf_id).output_size
    assert len(prf_plus(prf_id, b"k", b"s", 255 * size)) == 255 * size
    with pytest.raises(CryptoError, match="255 blocks"):
        prf_plus(prf_id, b"k", b"s", 255 * size + 1)


def test_sizes():
    assert [prf_key_size(p) for p in (PrfId.HMAC_SHA1, PrfId.HMAC_SHA2_256, PrfId.HMAC_SHA2_384, PrfId.HMAC_SHA2_512)] == [20, 32, 48, 64]
    assert [integ_key_size(i) for i in (IntegId.HMAC_SHA1_96, IntegId.HMAC_SHA2_256_128,
                                        IntegId.HMAC_SHA2_384_192, IntegId.HMAC_SHA2_512_256)] == [20, 32, 48, 64]
    assert [integ_icv_size(i) for i in (IntegId.HMAC_SHA1_96, IntegId.HMAC_SHA2_256_128,
                                        IntegId.HMAC_SHA2_384_192, IntegId.HMAC_SHA2_512_256)] == [12, 16, 24, 32]


def test_unsupported_prf_is_named():
    with pytest.raises(CryptoError, match="HMAC_MD5"):
        prf(PrfId.HMAC_MD5, b"k", b"d")
    with pytest.raises(CryptoError, match="PrfId\\(99\\)"):
        get_prf(99)
