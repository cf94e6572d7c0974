"""Wireshark key tables from lab.daemon.keys: every IKE SA our stack can negotiate gets a line,
and tshark 4.0 accepts every algorithm name we write."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from lab.daemon.keys import IKE_ENCR_NAMES, IKE_INTEG_NAMES
from lab.ike.const import EncrId, IntegId
from lab.ike.crypto.algorithms import AES_CBC_KEY_LENGTHS, AES_GCM_KEY_LENGTHS

CAPTURE = Path(__file__).resolve().parent.parent / "data" / "strongswan_s2s.pcap"
AES_GCM = (EncrId.AES_GCM_8, EncrId.AES_GCM_12, EncrId.AES_GCM_16)
INTEG_KEY_OCTETS = {IntegId.NONE: 0, IntegId.HMAC_SHA1_96: 20, IntegId.HMAC_SHA2_256_128: 32,
                    IntegId.HMAC_SHA2_384_192: 48, IntegId.HMAC_SHA2_512_256: 64}


def test_every_aes_ike_sa_has_a_wireshark_name():
    wanted = {(EncrId.AES_CBC, bits) for bits in AES_CBC_KEY_LENGTHS}
    wanted |= {(encr, bits) for encr in AES_GCM for bits in AES_GCM_KEY_LENGTHS}
    assert wanted <= set(IKE_ENCR_NAMES), sorted(wanted - set(IKE_ENCR_NAMES))


def _table_lines() -> list[str]:
    lines = []
    for (encr, bits), name in IKE_ENCR_NAMES.items():
        aead = encr in AES_GCM
        key = "aa" * (bits // 8 + (4 if aead else 0))  # RFC 5282 §7.1: GCM keys carry a 4-octet salt
        for integ, integ_name in IKE_INTEG_NAMES.items():
            if aead != (integ == IntegId.NONE):
                continue
            integ_key = "bb" * INTEG_KEY_OCTETS[integ]
            lines.append(",".join(["0123456789abcdef", "fedcba9876543210", key, key, f'"{name}"', integ_key,
                                   integ_key, f'"{integ_name}"']))
    return lines


@pytest.mark.parametrize("line", _table_lines(), ids=lambda line: line.split('"')[1] + "+" + line.split('"')[3])
def test_tshark_accepts_each_ikev2_decryption_table_line(tmp_path, line):
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.fail("tshark is missing: install Debian's tshark package (make setup does)")
    (tmp_path / "wireshark").mkdir()
    (tmp_path / "wireshark" / "ikev2_decryption_table").write_text(line + "\n")
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path), HOME=str(tmp_path))
    run = subprocess.run([tshark, "-r", str(CAPTURE), "-c", "1"], capture_output=True, text=True, timeout=60,
                         env=env)
    complaints = [text for text in run.stderr.splitlines() if "Running as user" not in text]
    assert run.returncode == 0 and not complaints, run.stderr
