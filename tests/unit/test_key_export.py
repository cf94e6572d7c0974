"""Wireshark key tables from lab.daemon.keys: every name lab.iana gives for Wireshark's
ikev2_decryption_table and esp_sa is one tshark 4.0 accepts, and the lines our exporter writes
for an SA use those names."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from lab.ike.wireshark import ESP_ENCR_NAMES, ESP_INTEG_NAMES, IKE_ENCR_NAMES, IKE_INTEG_NAMES
from lab.iana import ALGORITHMS, EncrId, IntegId, TransformType, algorithm

CAPTURE = Path(__file__).resolve().parent.parent / "data" / "strongswan_s2s.pcap"
ENCRS = [a for a in ALGORITHMS if a.type == TransformType.ENCR]
INTEGS = [a for a in ALGORITHMS if a.type == TransformType.INTEG]


def _tshark_complaints(tmp_path: Path, table: str, lines: list[str]) -> list[str]:
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.fail("tshark is missing: install Debian's tshark package (scripts/setup.sh does)")
    (tmp_path / "wireshark").mkdir()
    (tmp_path / "wireshark" / table).write_text("".join(line + "\n" for line in lines))
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path), HOME=str(tmp_path))
    run = subprocess.run([tshark, "-r", str(CAPTURE), "-c", "1"], capture_output=True, text=True, timeout=60,
                         env=env)
    assert run.returncode == 0, run.stderr
    return [text for text in run.stderr.splitlines() if "Running as user" not in text]


def _key(octets: int, fill: str) -> str:
    return fill * octets


def _ike_lines() -> list[str]:
    lines = []
    cbc, gcm = algorithm(TransformType.ENCR, EncrId.AES_CBC, 128), algorithm(TransformType.ENCR, EncrId.AES_GCM_16, 128)
    sha256 = algorithm(TransformType.INTEG, IntegId.HMAC_SHA2_256_128)
    none = algorithm(TransformType.INTEG, IntegId.NONE)
    pairs = [(e, none if e.aead else sha256) for e in ENCRS if e.wireshark_ike]
    pairs += [(gcm if i.id == IntegId.NONE else cbc, i) for i in INTEGS if i.wireshark_ike]
    for encr, integ in pairs:
        # RFC 5282 §7.1: the key column of an AEAD cipher holds key and salt, as KEYMAT does
        key, integ_key = _key(encr.key_size, "aa"), _key(integ.key_size, "bb")
        lines.append(",".join(["0123456789abcdef", "fedcba9876543210", key, key, f'"{encr.wireshark_ike}"',
                               integ_key, integ_key, f'"{integ.wireshark_ike}"']))
    return lines


def _esp_lines() -> list[str]:
    lines = []
    cbc, gcm = algorithm(TransformType.ENCR, EncrId.AES_CBC, 128), algorithm(TransformType.ENCR, EncrId.AES_GCM_16, 128)
    sha256 = algorithm(TransformType.INTEG, IntegId.HMAC_SHA2_256_128)
    none = algorithm(TransformType.INTEG, IntegId.NONE)
    pairs = [(e, none if e.aead else sha256) for e in ENCRS if e.wireshark_esp]
    pairs += [(gcm if i.id == IntegId.NONE else cbc, i) for i in INTEGS if i.wireshark_esp]
    for number, (encr, integ) in enumerate(pairs, 1):
        integ_key = f"0x{_key(integ.key_size, 'bb')}" if integ.key_size else ""
        lines.append(",".join(f'"{v}"' for v in ("IPv4", "*", "*", f"0x{number:08x}", encr.wireshark_esp,
                                                   f"0x{_key(encr.key_size, 'aa')}", integ.wireshark_esp, integ_key)))
    return lines


def test_tshark_accepts_every_ikev2_decryption_table_name(tmp_path):
    lines = _ike_lines()
    assert len(lines) >= 20
    complaints = _tshark_complaints(tmp_path, "ikev2_decryption_table", lines)
    assert not complaints, (complaints, lines)


def test_tshark_accepts_every_esp_sa_name(tmp_path):
    lines = _esp_lines()
    assert len(lines) >= 10
    complaints = _tshark_complaints(tmp_path, "esp_sa", lines)
    assert not complaints, (complaints, lines)


def test_tshark_refuses_a_name_it_does_not_know(tmp_path):
    """The check above can fail: a made-up name is reported with its line."""
    lines = _esp_lines()[:2] + ['"IPv4","*","*","0x000000ff","ChaCha20 with Poly1305 [RFC7634]","0x00","NULL",""']
    complaints = _tshark_complaints(tmp_path, "esp_sa", lines)
    assert any("esp_sa:3" in text for text in complaints), complaints


def test_every_aes_ike_sa_has_a_wireshark_name():
    for entry in ENCRS:
        if entry.ike and entry.id in (EncrId.AES_CBC, EncrId.AES_GCM_8, EncrId.AES_GCM_12, EncrId.AES_GCM_16):
            assert (entry.id, entry.key_bits) in IKE_ENCR_NAMES and entry.id in ESP_ENCR_NAMES, entry.name
    for entry in INTEGS:
        if entry.ike:
            assert entry.id in IKE_INTEG_NAMES and entry.id in ESP_INTEG_NAMES, entry.name
