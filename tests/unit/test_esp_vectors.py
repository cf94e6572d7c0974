"""lab.esp against published vectors: byte-exact protect with the published IV, and unprotect.

Sources (see esp_vectors.py): RFC 7634 Appendix A, draft-mcgrew-gcm-test-01 §4,
RFC 3602 §4 cases #5 and #7; RFC 4868 §2.6 for ICV truncation lengths.
"""
from __future__ import annotations

import hashlib
import hmac

import pytest

from lab.esp import EspConfigError, EspDrop, InboundSA, Mode, OutboundSA, encr_keymat_size, icv_size, integ_keymat_size
from lab.esp.ip import checksum
from lab.iana import EncrId, IntegId

from . import esp_vectors as V

ENCR_BY_NAME = {
    "aes-gcm": EncrId.AES_GCM_16,
    "chacha20-poly1305": EncrId.CHACHA20_POLY1305,
    "aes-gmac": EncrId.NULL_AUTH_AES_GMAC,
}

AEAD_CASES = [V.RFC7634_A, *V.GCM_CASES, V.GMAC_CASE]


def _split(plaintext: bytes) -> tuple[bytes, int]:
    padlen = plaintext[-2]
    return plaintext[: -2 - padlen], plaintext[-1]


@pytest.mark.parametrize("case", AEAD_CASES, ids=lambda c: c.source)
def test_aead_seal_is_byte_exact(case: V.AeadCase) -> None:
    out = OutboundSA(
        case.spi, mode=Mode.TRANSPORT, encr_id=ENCR_BY_NAME[case.encr], encr_key=case.keymat,
        esn=case.esn, next_seq=case.seq, iv_source=lambda seq: case.iv,
    )
    payload, nh = _split(case.plaintext)
    assert out.seal_payload(payload, nh) == case.packet


@pytest.mark.parametrize("case", AEAD_CASES, ids=lambda c: c.source)
def test_aead_open_recovers_plaintext(case: V.AeadCase) -> None:
    inb = InboundSA(
        case.spi, mode=Mode.TRANSPORT, encr_id=ENCR_BY_NAME[case.encr], encr_key=case.keymat,
        esn=case.esn, highest_seq=case.seq - 1,
    )
    assert inb.open_payload(case.packet) == _split(case.plaintext)
    assert inb.window.top == case.seq


def test_rfc7634_appendix_a_tunnel_mode_protect_payload() -> None:
    case = V.RFC7634_A
    inner, nh = _split(case.plaintext)
    assert nh == 4
    out = OutboundSA(
        case.spi, encr_id=EncrId.CHACHA20_POLY1305, encr_key=case.keymat, next_seq=case.seq,
        iv_source=lambda seq: case.iv, local="198.51.100.5", remote="192.0.2.5",
    )
    assert out.protect_payload(inner) == case.packet
    inb = InboundSA(case.spi, encr_id=EncrId.CHACHA20_POLY1305, encr_key=case.keymat, local="192.0.2.5", remote="198.51.100.5")
    assert inb.unprotect(case.packet) == inner


@pytest.mark.parametrize(
    "case", [c for c in V.GCM_CASES if c.esn], ids=lambda c: c.source
)
def test_gcm_esn_vectors_infer_seq_hi_from_window(case: V.AeadCase) -> None:
    inb = InboundSA(case.spi, mode=Mode.TRANSPORT, encr_id=EncrId.AES_GCM_16, encr_key=case.keymat, esn=True,
                    highest_seq=case.seq - 5)
    inb.open_payload(case.packet)
    wrong = InboundSA(case.spi, mode=Mode.TRANSPORT, encr_id=EncrId.AES_GCM_16, encr_key=case.keymat, esn=False,
                      highest_seq=0)
    with pytest.raises(EspDrop) as exc:
        wrong.open_payload(case.packet)
    assert exc.value.reason in ("auth_failed", "too_old")


def test_rfc3602_case5_transport_protect_is_byte_exact() -> None:
    c = V.RFC3602_CASE5
    out = OutboundSA(c.spi, mode=Mode.TRANSPORT, encr_id=EncrId.AES_CBC, encr_key=c.key, next_seq=c.seq,
                     iv_source=lambda seq: c.iv)
    assert out.protect(c.original) == c.outer + c.esp


def test_rfc3602_case5_transport_unprotect_rebuilds_original() -> None:
    c = V.RFC3602_CASE5
    inb = InboundSA(c.spi, mode=Mode.TRANSPORT, encr_id=EncrId.AES_CBC, encr_key=c.key)
    assert inb.unprotect_datagram(c.outer + c.esp) == c.original


def test_rfc3602_case7_tunnel_protect() -> None:
    c = V.RFC3602_CASE7
    out = OutboundSA(c.spi, encr_id=EncrId.AES_CBC, encr_key=c.key, next_seq=c.seq, iv_source=lambda seq: c.iv,
                     local="192.168.123.3", remote="192.168.123.200")
    wire = out.protect(c.original)
    assert wire[20:] == c.esp
    # the outer header matches the RFC's but for the Identification field, which is ours to choose
    assert wire[:4] + wire[6:10] + wire[12:20] == c.outer[:4] + c.outer[6:10] + c.outer[12:20]
    assert checksum(wire[:20]) == 0


def test_rfc3602_case7_tunnel_unprotect() -> None:
    c = V.RFC3602_CASE7
    inb = InboundSA(c.spi, encr_id=EncrId.AES_CBC, encr_key=c.key, local="192.168.123.200", remote="192.168.123.3")
    assert inb.unprotect(c.esp) == c.original
    inb2 = InboundSA(c.spi, encr_id=EncrId.AES_CBC, encr_key=c.key, local="192.168.123.200", remote="192.168.123.3")
    assert inb2.unprotect_datagram(c.outer + c.esp) == c.original


def test_cbc_chaining_state_does_not_leak_between_packets() -> None:
    c = V.RFC3602_CASE7
    fixed = OutboundSA(c.spi, encr_id=EncrId.AES_CBC, encr_key=c.key, next_seq=c.seq, iv_source=lambda seq: c.iv,
                       local="192.0.2.1", remote="192.0.2.2")
    for i in range(5):
        esp = fixed.protect_payload(c.original)
        assert esp[:8] == c.esp[:4] + (c.seq + i).to_bytes(4, "big")
        assert esp[8:] == c.esp[8:]
    rand = OutboundSA(c.spi, encr_id=EncrId.AES_CBC, encr_key=c.key, next_seq=10, local="192.0.2.1", remote="192.0.2.2")
    inb = InboundSA(c.spi, encr_id=EncrId.AES_CBC, encr_key=c.key, local="192.0.2.2", remote="192.0.2.1")
    assert inb.unprotect(c.esp) == c.original
    ivs = set()
    for _ in range(5):
        esp = rand.protect_payload(c.original)
        ivs.add(esp[8:24])
        assert inb.unprotect(esp) == c.original
    assert len(ivs) == 5


# RFC 4868 §2.6 (and RFC 2404 §2 for SHA-1): HMAC-SHA-2 ICVs are the first half of the output
@pytest.mark.parametrize(
    "integ_id, hash_name, key_octets, icv_octets",
    [
        (IntegId.HMAC_SHA1_96, "sha1", 20, 12),
        (IntegId.HMAC_SHA2_256_128, "sha256", 32, 16),
        (IntegId.HMAC_SHA2_384_192, "sha384", 48, 24),
        (IntegId.HMAC_SHA2_512_256, "sha512", 64, 32),
    ],
)
def test_hmac_icv_is_truncated_per_rfc4868(integ_id: int, hash_name: str, key_octets: int, icv_octets: int) -> None:
    assert integ_keymat_size(integ_id) == key_octets
    assert icv_size(EncrId.NULL, integ_id) == icv_octets
    key = bytes(range(0x40, 0x40 + key_octets))
    out = OutboundSA(0x1234, mode=Mode.TRANSPORT, encr_id=EncrId.NULL, integ_id=integ_id, integ_key=key, next_seq=9)
    esp = out.seal_payload(b"abcdefgh", 17)
    body = b"\x00\x00\x12\x34\x00\x00\x00\x09" + b"abcdefgh" + b"\x01\x02\x02\x11"
    assert esp == body + hmac.new(key, body, getattr(hashlib, hash_name)).digest()[:icv_octets]
    out_esn = OutboundSA(0x1234, mode=Mode.TRANSPORT, encr_id=EncrId.NULL, integ_id=integ_id, integ_key=key,
                         esn=True, next_seq=(3 << 32) | 9)
    esp = out_esn.seal_payload(b"abcdefgh", 17)
    # RFC 4303 §2.2.1: seq_hi is appended for the ICV and not sent
    mac = hmac.new(key, body + b"\x00\x00\x00\x03", getattr(hashlib, hash_name)).digest()[:icv_octets]
    assert esp == body + mac


def test_keymat_sizes() -> None:
    # RFC 4106 §8.1, RFC 7634 §4: AEAD KEYMAT carries a 4-octet salt after the key
    assert encr_keymat_size(EncrId.AES_GCM_16, 128) == 20
    assert encr_keymat_size(EncrId.AES_GCM_16, 256) == 36
    assert encr_keymat_size(EncrId.CHACHA20_POLY1305) == 36
    assert encr_keymat_size(EncrId.AES_CBC, 128) == 16
    assert encr_keymat_size(EncrId.AES_CBC, 256) == 32
    assert encr_keymat_size(EncrId.NULL) == 0
    with pytest.raises(EspConfigError):
        encr_keymat_size(EncrId.AES_GCM_16, 100)
    with pytest.raises(EspConfigError):
        encr_keymat_size(EncrId.DES)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(encr_id=EncrId.AES_GCM_16, encr_key=bytes(16)),
        dict(encr_id=EncrId.AES_GCM_16, encr_key=bytes(20), integ_id=IntegId.HMAC_SHA2_256_128, integ_key=bytes(32)),
        dict(encr_id=EncrId.AES_CBC, encr_key=bytes(20)),
        dict(encr_id=EncrId.AES_CBC, encr_key=bytes(16), integ_id=IntegId.HMAC_SHA2_256_128, integ_key=bytes(16)),
        dict(encr_id=EncrId.NULL),
        dict(encr_id=EncrId.TRIPLE_DES, encr_key=bytes(24)),
        dict(encr_id=EncrId.CHACHA20_POLY1305, encr_key=bytes(20)),
        dict(),
    ],
)
def test_bad_algorithm_setups_are_refused(kwargs: dict) -> None:
    with pytest.raises(EspConfigError):
        OutboundSA(0x1000, mode=Mode.TRANSPORT, **kwargs)
