"""The IKE algorithms RFC 8247 still allows that ipsec-lab added for drop-in swanctl.conf files:
the AES PRFs (RFC 4434, RFC 4615) against their published vectors, MODP-4096..8192 (RFC 3526),
brainpool groups (RFC 6954); and the ones RFC 8247 forbids refused with a sentence citing it."""
from __future__ import annotations

import random

import pytest

from lab.ike.const import DhGroup, PrfId
from lab.ike.crypto.dh import MODP_2048_PRIME, MODP_3072_PRIME, MODP_PRIMES, new_key_exchange, rfc3526_prime
from lab.ike.crypto.keys import skeyseed
from lab.ike.crypto.prf import aes_cmac, aes_xcbc_mac, prf, prf_plus
from lab.ike.proposals import ProposalError, check_implemented, parse_esp_proposals, parse_ike_proposals

H = bytes.fromhex
MSG20 = H("000102030405060708090a0b0c0d0e0f10111213")


@pytest.mark.parametrize("message, mac", [
    # RFC 3566 §4.6 test cases 1, 2, 3, 4
    ("", "75f0251d528ac01c4573dfd584d79f29"),
    ("000102", "5b376580ae2f19afe7219ceef172756f"),
    ("000102030405060708090a0b0c0d0e0f", "d2a246fa349b68a79998a4394ff7a263"),
    ("000102030405060708090a0b0c0d0e0f10111213", "47f51b4564966215b8985c63055ed308"),
])
def test_aes_xcbc_mac_rfc3566(message, mac):
    assert aes_xcbc_mac(H("000102030405060708090a0b0c0d0e0f"), H(message)) == H(mac)


@pytest.mark.parametrize("key, out", [
    # RFC 4434 §2.1: key lengths 16, 10 (padded) and 18 (shortened)
    ("000102030405060708090a0b0c0d0e0f", "47f51b4564966215b8985c63055ed308"),
    ("00010203040506070809", "0fa087af7d866e7653434e602fdde835"),
    ("000102030405060708090a0b0c0d0e0fedcb", "8cd3c93ae598a9803006ffb67c40e9e4"),
])
def test_aes_xcbc_prf128_rfc4434(key, out):
    assert prf(PrfId.AES128_XCBC, H(key), MSG20) == H(out)


@pytest.mark.parametrize("message, mac", [
    # RFC 4493 §4 examples 1-4
    ("", "bb1d6929e95937287fa37d129b756746"),
    ("6bc1bee22e409f96e93d7e117393172a", "070a16b46b4d4144f79bdd9dd04a287c"),
    ("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e5130c81c46a35ce411",
     "dfa66747de9ae63030ca32611497c827"),
    ("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e5130c81c46a35ce411e5fbc1191a0a52ef"
     "f69f2445df4f9b17ad2b417be66c3710", "51f0bebf7e3b9d92fc49741779363cfe"),
])
def test_aes_cmac_rfc4493(message, mac):
    assert aes_cmac(H("2b7e151628aed2a6abf7158809cf4f3c"), H(message)) == H(mac)


@pytest.mark.parametrize("key, out", [
    # RFC 4615 §4: key lengths 18, 16 and 10 (both shortened and padded keys go through CMAC)
    ("000102030405060708090a0b0c0d0e0fedcb", "84a348a4a45d235babfffc0d2b4da09a"),
    ("000102030405060708090a0b0c0d0e0f", "980ae87b5f4c9c5214f5b6a8455e4c2d"),
    ("00010203040506070809", "290d9e112edb09ee141fcf64c0b72f3d"),
])
def test_aes_cmac_prf128_rfc4615(key, out):
    assert prf(PrfId.AES128_CMAC, H(key), MSG20) == H(out)


@pytest.mark.parametrize("prf_id", [PrfId.AES128_XCBC, PrfId.AES128_CMAC])
def test_skeyseed_takes_the_first_64_bits_of_each_nonce(prf_id):
    # RFC 7296 §2.14: a fixed-key PRF gets half its key from Ni, half from Nr
    ni, nr, gir = bytes(range(32)), bytes(range(100, 132)), b"\x5a" * 256
    assert skeyseed(prf_id, ni, nr, gir) == prf(prf_id, ni[:8] + nr[:8], gir)
    assert len(prf_plus(prf_id, skeyseed(prf_id, ni, nr, gir), b"seed", 100)) == 100


def _probable_prime(n: int, rounds: int = 1) -> bool:
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    rng = random.Random(n)
    for _ in range(rounds):
        x = pow(rng.randrange(2, n - 2), d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def test_rfc3526_formula_gives_the_printed_primes():
    # RFC 3526 §3, §4: the formula with the RFC's k reproduces the primes printed in hex
    assert rfc3526_prime(2048, 124476) == MODP_2048_PRIME
    assert rfc3526_prime(3072, 1690314) == MODP_3072_PRIME


@pytest.mark.parametrize("group, bits, tail", [
    (DhGroup.MODP_4096, 4096, "4DF435C934063199FFFFFFFFFFFFFFFF"),
    (DhGroup.MODP_6144, 6144, "6DCC4024FFFFFFFFFFFFFFFF"),
    (DhGroup.MODP_8192, 8192, "60C980DD98EDD3DFFFFFFFFFFFFFFFFF"),
])
def test_large_modp_groups_are_safe_primes(group, bits, tail):
    p = MODP_PRIMES[group]
    assert p.bit_length() == bits
    assert f"{p:X}".endswith(tail)  # the last words as RFC 3526 §5, §6, §7 print them
    assert _probable_prime(p) and _probable_prime((p - 1) // 2)


@pytest.mark.parametrize("group, size", [
    (DhGroup.MODP_4096, 512), (DhGroup.MODP_8192, 1024), (DhGroup.ECP_521, 132),
    (DhGroup.BRAINPOOL_P256, 64), (DhGroup.BRAINPOOL_P384, 96), (DhGroup.BRAINPOOL_P512, 128),
])
def test_new_groups_agree_on_a_shared_secret(group, size):
    a, b = new_key_exchange(group), new_key_exchange(group)
    assert len(a.public_value) == size
    assert a.shared_secret(b.public_value) == b.shared_secret(a.public_value)


def test_proposals_with_the_new_algorithms_load():
    check_implemented(parse_ike_proposals("aes256-sha256-prfaesxcbc-modp4096, aes128-sha256-prfaescmac-ecp256bp,"
                                          " aes256gcm16-prfsha512-modp8192-ecp521-ecp512bp-modp6144"))
    check_implemented(parse_esp_proposals("aes128gcm16-modp4096, aes256gcm16-ecp384bp"))


@pytest.mark.parametrize("proposal, section", [
    ("aes128-sha256-modp768", "§2.4"),
    ("des-sha256-modp2048", "§2.1"),
    ("aes128-md5-prfsha256-modp2048", "§2.2"),
    ("aes128-sha256-prfmd5-modp2048", "§2.3"),
])
def test_rfc8247_forbidden_algorithms_are_refused_citing_it(proposal, section):
    with pytest.raises(ProposalError) as err:
        check_implemented(parse_ike_proposals(proposal))
    assert f"RFC 8247 {section}" in str(err.value) and "MUST NOT" in str(err.value)


def test_esp_pfs_with_modp768_is_refused_citing_rfc8247():
    with pytest.raises(ProposalError) as err:
        check_implemented(parse_esp_proposals("aes128gcm16-modp768"))
    assert "RFC 8247 §2.4" in str(err.value)
