"""ipsec-lab audit (lab/viz/audit.py, lab/conf/ipsecconf.py): each rule fires on a bad configuration
and stays silent on a good one; bad input names file, line and key; the library's scenarios, the
shipped weak and strong organizations and a capture made by strongSwan alone, audited."""
from __future__ import annotations

import datetime
import json
import shutil
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lab.cli import main
from lab.conf.ipsecconf import parse_ipsec_conf, parse_ipsec_secrets
from lab.conf.swanctl import ConfigError
from lab.iana import DhGroup, EncrId, IntegId, PrfId, ProtocolId, TransformType
from lab.viz import audit as audit_module
from lab.viz.audit import (DH_TABLE, ESP_TABLE, IKE_TABLE, AuditError, audit_paths, grade, psk_weakness, render_json,
                           render_markdown)

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
NOW = datetime.datetime(2027, 6, 1, tzinfo=datetime.timezone.utc)


def swanctl(proposals="aes256gcm16-prfsha256-x25519", esp="aes256gcm16-x25519", conn_extra="", child_extra="",
            secret="0sSlklrxIRKCHNyoFXkAIkCx5p9O9OAnS374MxOu8Bb2M=", local="192.0.2.1",
            remote="198.51.100.1", auth="psk", local_extra="", esp_key="esp_proposals") -> str:
    esp_line = f"{esp_key} = {esp}" if esp else ""
    return f"""connections {{
  s2s {{
    local_addrs = {local}
    remote_addrs = {remote}
    proposals = {proposals}
    dpd_delay = 30s
{conn_extra}
    local {{
      auth = {auth}
      id = a.example
{local_extra}
    }}
    remote {{
      auth = psk
      id = b.example
    }}
    children {{
      net {{
        local_ts = 10.1.0.0/24
        remote_ts = 10.2.0.0/24
        {esp_line}
{child_extra}
      }}
    }}
  }}
}}
secrets {{
  ike-1 {{
    id = b.example
    secret = {secret}
  }}
}}
"""


def audit_text(tmp_path: Path, text: str, name: str = "gw") -> list:
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    (folder / "swanctl.conf").write_text(text)
    return audit_paths([str(folder)], now=NOW).findings


def rules(findings, level=None) -> set[str]:
    return {f.rule for f in findings if level is None or f.level == level}


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def test_a_strong_configuration_gives_nothing(tmp_path):
    assert audit_text(tmp_path, swanctl(proposals="aes256gcm16-prfsha256-x25519-ke1_mlkem768")) == []


# ---------------------------------------------------------------- each rule: fires on bad, silent on good


@pytest.mark.parametrize("proposals, token, term, reference, level", [
    ("aes128-sha256-modp1024", "modp1024", "SHOULD NOT", "RFC 8247 §2.4", "should"),  # RFC 8247 §2.4 group 2
    ("aes128-sha256-modp768", "modp768", "MUST NOT", "RFC 8247 §2.4", "must"),       # group 1
    ("aes128-sha256-modp1536", "modp1536", "SHOULD NOT", "RFC 8247 §2.4", "should"),  # group 5
    ("aes128-sha256-modp2048s256", "modp2048s256", "SHOULD NOT", "RFC 8247 §2.4", "should"),  # group 24
    ("des-sha256-modp2048", "des", "MUST NOT", "RFC 8247 §2.1", "must"),
    ("3des-sha256-modp2048", "3des", "MAY", "RFC 8247 §2.1", "advice"),
    ("aes128-md5-prfsha256-modp2048", "md5", "MUST NOT", "RFC 8247 §2.3", "must"),
    ("aes128-sha1-prfsha256-modp2048", "sha1", "MUST-", "RFC 8247 §2.3", "should"),
    ("aes128-sha256-prfmd5-modp2048", "prfmd5", "MUST NOT", "RFC 8247 §2.2", "must"),
    ("aes128-sha256-prfsha1-modp2048", "prfsha1", "MUST-", "RFC 8247 §2.2", "should"),
])
def test_ike_algorithms_against_rfc_8247(tmp_path, proposals, token, term, reference, level):
    text = swanctl(proposals=proposals)
    found = [f for f in audit_text(tmp_path, text) if f.rule == "ike-algorithm"]
    assert [(f.term, f.reference, f.level) for f in found] == [(term, reference, level)]
    assert f" {token} " in found[0].message
    assert (found[0].line, found[0].key) == (line_of(text, "proposals ="), "connections.s2s.proposals")


@pytest.mark.parametrize("esp, token, term, reference", [
    ("des-sha256", "des", "MUST NOT", "RFC 8221 §5"),
    ("3des-sha256", "3des", "SHOULD NOT", "RFC 8221 §5"),
    ("blowfish-sha256", "blowfish128", "MUST NOT", "RFC 8221 §5"),
    ("aes128-md5", "md5", "MUST NOT", "RFC 8221 §6"),
    ("aes128-sha1", "sha1", "MUST-", "RFC 8221 §6"),
    ("aes128-aesxcbc", "aesxcbc", "MAY", "RFC 8221 §6"),
    ("aes128-sha256-modp1024", "modp1024", "SHOULD NOT", "RFC 8247 §2.4"),   # a PFS group is a key exchange too
])
def test_child_algorithms_against_rfc_8221(tmp_path, esp, token, term, reference):
    text = swanctl(esp=esp, child_extra="        rekey_bytes = 1000000")
    found = [f for f in audit_text(tmp_path, text) if f.rule == "child-algorithm"]
    assert [(f.term, f.reference) for f in found] == [(term, reference)]
    assert f" {token} " in found[0].message
    assert found[0].key == "connections.s2s.children.net.esp_proposals"
    assert found[0].line == line_of(text, "esp_proposals =")


# ---------------------------------------------------------------- the tables, row by row, as the RFCs print them

_E, _P, _I, _D = TransformType.ENCR, TransformType.PRF, TransformType.INTEG, TransformType.DH
_IKE, _ESP, _AH = ProtocolId.IKE, ProtocolId.ESP, ProtocolId.AH

# (protocol, transform type, id, the RFC's Status column, section, level); None: the row is MUST/SHOULD, not graded.
# Quoted from RFC 8247 (September 2017) and RFC 8221 (October 2017).
RFC_ROWS = [
    # RFC 8247 §2.1 "| ENCR_AES_CBC | MUST | No | (*) |"
    (_IKE, _E, EncrId.AES_CBC, None, None, None),
    # RFC 8247 §2.1 "| ENCR_AES_GCM_16 | SHOULD | Yes | (*) |"
    (_IKE, _E, EncrId.AES_GCM_16, None, None, None),
    # RFC 8247 §2.1 "| ENCR_3DES | MAY | No | |"
    (_IKE, _E, EncrId.TRIPLE_DES, "MAY", "RFC 8247 §2.1", "advice"),
    # RFC 8247 §2.1 "| ENCR_DES | MUST NOT | No | |"
    (_IKE, _E, EncrId.DES, "MUST NOT", "RFC 8247 §2.1", "must"),
    # RFC 8247 §2.1 "| ENCR_NULL | MUST NOT | No | |"
    (_IKE, _E, EncrId.NULL, "MUST NOT", "RFC 8247 §2.1", "must"),
    # RFC 8247 §2.2 "| PRF_HMAC_SHA2_256 | MUST | |"
    (_IKE, _P, PrfId.HMAC_SHA2_256, None, None, None),
    # RFC 8247 §2.2 "| PRF_HMAC_SHA1 | MUST- | |"
    (_IKE, _P, PrfId.HMAC_SHA1, "MUST-", "RFC 8247 §2.2", "should"),
    # RFC 8247 §2.2 "| PRF_HMAC_MD5 | MUST NOT | |"
    (_IKE, _P, PrfId.HMAC_MD5, "MUST NOT", "RFC 8247 §2.2", "must"),
    # RFC 8247 §2.3 "| AUTH_HMAC_SHA2_256_128 | MUST | |"
    (_IKE, _I, IntegId.HMAC_SHA2_256_128, None, None, None),
    # RFC 8247 §2.3 "| AUTH_HMAC_SHA1_96 | MUST- | |"
    (_IKE, _I, IntegId.HMAC_SHA1_96, "MUST-", "RFC 8247 §2.3", "should"),
    # RFC 8247 §2.3 "| AUTH_AES_XCBC_96 | SHOULD | (IoT) |" and "For the non-IoT VPN deployment, it has been
    # downgraded from SHOULD in RFC 4307 to MAY"
    (_IKE, _I, IntegId.AES_XCBC_96, "MAY", "RFC 8247 §2.3", "advice"),
    # RFC 8247 §2.3 "| AUTH_HMAC_MD5_96 | MUST NOT | |", "| AUTH_DES_MAC | MUST NOT | |", "| AUTH_KPDK_MD5 | MUST NOT | |"
    (_IKE, _I, IntegId.HMAC_MD5_96, "MUST NOT", "RFC 8247 §2.3", "must"),
    (_IKE, _I, IntegId.DES_MAC, "MUST NOT", "RFC 8247 §2.3", "must"),
    (_IKE, _I, IntegId.KPDK_MD5, "MUST NOT", "RFC 8247 §2.3", "must"),
    # RFC 8247 §2.4 "| 14 | 2048-bit MODP Group | MUST |", "| 19 | 256-bit random ECP group | SHOULD |"
    (_IKE, _D, DhGroup.MODP_2048, None, None, None),
    (_IKE, _D, DhGroup.ECP_256, None, None, None),
    # RFC 8247 §2.4 "| 5 | 1536-bit MODP Group | SHOULD NOT |"
    (_IKE, _D, DhGroup.MODP_1536, "SHOULD NOT", "RFC 8247 §2.4", "should"),
    # RFC 8247 §2.4 "| 2 | 1024-bit MODP Group | SHOULD NOT |"
    (_IKE, _D, DhGroup.MODP_1024, "SHOULD NOT", "RFC 8247 §2.4", "should"),
    # RFC 8247 §2.4 "| 1 | 768-bit MODP Group | MUST NOT |"
    (_IKE, _D, DhGroup.MODP_768, "MUST NOT", "RFC 8247 §2.4", "must"),
    # RFC 8247 §2.4 "| 22 | 1024-bit MODP Group with 160-bit Prime Order Subgroup | MUST NOT |"
    (_IKE, _D, DhGroup.MODP_1024_160, "MUST NOT", "RFC 8247 §2.4", "must"),
    # RFC 8247 §2.4 "| 23 | 2048-bit MODP Group with 224-bit Prime Order Subgroup | SHOULD NOT |"
    (_IKE, _D, DhGroup.MODP_2048_224, "SHOULD NOT", "RFC 8247 §2.4", "should"),
    # RFC 8247 §2.4 "| 24 | 2048-bit MODP Group with 256-bit Prime Order Subgroup | SHOULD NOT |"
    (_IKE, _D, DhGroup.MODP_2048_256, "SHOULD NOT", "RFC 8247 §2.4", "should"),
    # a PFS group in a CHILD_SA proposal is graded by the same RFC 8247 §2.4 table
    (_ESP, _D, DhGroup.MODP_1024, "SHOULD NOT", "RFC 8247 §2.4", "should"),
    # RFC 8221 §5 "| ENCR_DES_IV64 | MUST NOT | No | UNSPECIFIED |"
    (_ESP, _E, EncrId.DES_IV64, "MUST NOT", "RFC 8221 §5", "must"),
    # RFC 8221 §5 "| ENCR_DES | MUST NOT | No | [RFC2405] |"
    (_ESP, _E, EncrId.DES, "MUST NOT", "RFC 8221 §5", "must"),
    # RFC 8221 §5 "| ENCR_3DES | SHOULD NOT | No | [RFC2451] |"
    (_ESP, _E, EncrId.TRIPLE_DES, "SHOULD NOT", "RFC 8221 §5", "should"),
    # RFC 8221 §5 "| ENCR_BLOWFISH | MUST NOT | No | [RFC2451] |"
    (_ESP, _E, EncrId.BLOWFISH, "MUST NOT", "RFC 8221 §5", "must"),
    # RFC 8221 §5 "| ENCR_3IDEA | MUST NOT | No | UNSPECIFIED |"
    (_ESP, _E, EncrId.TRIPLE_IDEA, "MUST NOT", "RFC 8221 §5", "must"),
    # RFC 8221 §5 "| ENCR_DES_IV32 | MUST NOT | No | UNSPECIFIED |"
    (_ESP, _E, EncrId.DES_IV32, "MUST NOT", "RFC 8221 §5", "must"),
    # RFC 8221 §5 "| ENCR_NULL | MUST | No | [RFC2410] |" (graded apart, by the esp-null rule), "| ENCR_AES_GCM_16 | MUST |"
    (_ESP, _E, EncrId.NULL, None, None, None),
    (_ESP, _E, EncrId.AES_GCM_16, None, None, None),
    # RFC 8221 §6 "| AUTH_HMAC_MD5_96 | MUST NOT | [RFC2403][RFC7296] |"
    (_ESP, _I, IntegId.HMAC_MD5_96, "MUST NOT", "RFC 8221 §6", "must"),
    (_AH, _I, IntegId.HMAC_MD5_96, "MUST NOT", "RFC 8221 §6", "must"),
    # RFC 8221 §6 "| AUTH_HMAC_SHA1_96 | MUST- | [RFC2404][RFC7296] |"
    (_ESP, _I, IntegId.HMAC_SHA1_96, "MUST-", "RFC 8221 §6", "should"),
    # RFC 8221 §6 "| AUTH_DES_MAC | MUST NOT | UNSPECIFIED |", "| AUTH_KPDK_MD5 | MUST NOT | UNSPECIFIED |"
    (_ESP, _I, IntegId.DES_MAC, "MUST NOT", "RFC 8221 §6", "must"),
    (_ESP, _I, IntegId.KPDK_MD5, "MUST NOT", "RFC 8221 §6", "must"),
    # RFC 8221 §6 "| AUTH_AES_XCBC_96 | SHOULD / MAY | [RFC3566][RFC7296] (IoT) |" and "For the wide VPN deployment,
    # as it has not been widely adopted, it has been downgraded from SHOULD to MAY"
    (_ESP, _I, IntegId.AES_XCBC_96, "MAY", "RFC 8221 §6", "advice"),
    # RFC 8221 §6 "| AUTH_HMAC_SHA2_256_128 | MUST | [RFC4868] |"
    (_ESP, _I, IntegId.HMAC_SHA2_256_128, None, None, None),
]


@pytest.mark.parametrize("protocol, ttype, tid, term, reference, level", RFC_ROWS,
                         ids=[f"{p.name}-{t.name}-{i.name}" for p, t, i, *_ in RFC_ROWS])
def test_each_algorithm_has_the_level_and_section_the_rfc_gives(protocol, ttype, tid, term, reference, level):
    assert grade(protocol, ttype, tid) == ((term, reference) if term else None)
    if term:
        assert audit_module._term_level(term) == level


def test_the_tables_hold_no_row_the_rfcs_do_not():
    pinned = {(p == _IKE or t == _D, t, i) for p, t, i, term, *_ in RFC_ROWS if term}
    listed = ({(True, t, i) for t, i in IKE_TABLE} | {(True, _D, g) for g in DH_TABLE}
              | {(False, t, i) for t, i in ESP_TABLE})
    assert listed == pinned


def test_a_default_proposal_list_is_not_graded(tmp_path):
    text = swanctl().replace("    proposals = aes256gcm16-prfsha256-x25519\n", "")
    assert "ike-algorithm" not in rules(audit_text(tmp_path, text))


def test_ikev1_and_aggressive_mode(tmp_path):
    assert "ikev1" not in rules(audit_text(tmp_path, swanctl(conn_extra="    version = 2")))
    found = [f for f in audit_text(tmp_path, swanctl(conn_extra="    version = 1"), "v1") if f.rule == "ikev1"]
    assert [(f.level, f.reference, f.key) for f in found] == [("must", "RFC 9395 §1", "connections.s2s.version")]


def test_null_encryption_and_ah(tmp_path):
    found = audit_text(tmp_path, swanctl(esp="null-sha256"))
    assert "esp-null" in rules(found) and "ah" not in rules(found)
    found = audit_text(tmp_path, swanctl(esp="sha256", esp_key="ah_proposals"), "ah")
    assert "ah" in rules(found) and "esp-null" not in rules(found)
    assert "esp-null" not in rules(audit_text(tmp_path, swanctl(), "good"))


def test_64_bit_blocks_need_a_volume_limit(tmp_path):
    found = [f for f in audit_text(tmp_path, swanctl(esp="3des-sha256")) if f.rule == "block64-lifetime"]
    assert len(found) == 1 and "no volume limit" in found[0].message
    # not "SHOULD NOT": that is 3DES's own status (RFC 8221 §5), given by the child-algorithm finding
    assert (found[0].term, found[0].reference, found[0].level) == ("64-bit block", "RFC 8221 §5", "should")
    text = swanctl(esp="3des-sha256", child_extra="        rekey_bytes = 100000000000")
    found = [f for f in audit_text(tmp_path, text, "long") if f.rule == "block64-lifetime"]
    assert found[0].key.endswith("rekey_bytes") and found[0].line == line_of(text, "rekey_bytes")
    text = swanctl(esp="3des-sha256", child_extra="        rekey_bytes = 500000000")
    assert "block64-lifetime" not in rules(audit_text(tmp_path, text, "short"))


def test_pfs(tmp_path):
    found = [f for f in audit_text(tmp_path, swanctl(esp="aes256gcm16")) if f.rule == "pfs"]
    # RFC 7296 §1.3: "The CREATE_CHILD_SA request MAY optionally contain a KE payload for an additional
    # Diffie-Hellman exchange to enable stronger guarantees of forward secrecy for the Child SA."
    assert [(f.term, f.reference, f.level) for f in found] == [("MAY", "RFC 7296 §1.3", "advice")]
    assert "pfs" in rules(audit_text(tmp_path, swanctl(esp=""), "default"))   # strongSwan's default has no group
    assert "pfs" not in rules(audit_text(tmp_path, swanctl(), "good"))


# RFC 7296 §2.8: "the new SA should be established before the old one expires"; §2.8.1: "the timing of rekeying
# requests SHOULD be jittered"; the 24 h and 8 h are the lab's reading of NIST SP 800-77r1 (cited without section)
@pytest.mark.parametrize("where, extra, expected", [
    ("child", "        rekey_time = 1h\n        life_time = 1h", ("make-before-break", "must", "RFC 7296 §2.8")),
    ("child", "        rekey_time = 1h\n        life_time = 3630s", ("make-before-break", "should", "RFC 7296 §2.8")),
    ("child", "        rekey_time = 12h", ("lifetime", "advice", "NIST SP 800-77r1")),
    ("child", "        rand_time = 0", ("jitter", "should", "RFC 7296 §2.8.1")),
    ("conn", "    rekey_time = 2d", ("lifetime", "advice", "NIST SP 800-77r1")),
    ("conn", "    over_time = 0", ("make-before-break", "should", "RFC 7296 §2.8")),
    ("conn", "    rand_time = 0s", ("jitter", "should", "RFC 7296 §2.8.1")),
])
def test_lifetimes(tmp_path, where, extra, expected):
    text = swanctl(**{f"{where}_extra": extra})
    found = [(f.rule, f.level, f.reference) for f in audit_text(tmp_path, text)
             if f.rule in ("make-before-break", "lifetime", "jitter")]
    assert found == [expected]


def test_good_lifetimes_are_silent(tmp_path):
    text = swanctl(conn_extra="    rekey_time = 4h\n    over_time = 10m", child_extra="        rekey_time = 1h\n"
                   "        life_time = 66m\n        rand_time = 6m")
    assert not rules(audit_text(tmp_path, text)) & {"make-before-break", "lifetime", "jitter"}


@pytest.mark.parametrize("secret, weak", [
    ('"password1"', "common word"), ('"Secret123!"', "characters"), ('"a-lab-only-psk"', "characters"),
    ('"aaaaaaaaaaaaaaaaaaaaaaaa"', "distinct"), ('"thequickbrownfoxjumps"', "one kind"),
])
def test_weak_psks(tmp_path, secret, weak):
    text = swanctl(secret=secret)
    found = [f for f in audit_text(tmp_path, text) if f.rule == "psk"]
    assert len(found) == 1 and weak in found[0].message and found[0].reference == "RFC 7296 §2.15"
    assert (found[0].line, found[0].key) == (line_of(text, "secret ="), "secrets.ike-1.secret")
    assert secret.strip('"') not in found[0].message     # the key itself is never printed


def test_strong_psks_are_silent():
    assert psk_weakness(b"V9#kq2!mZp7@Lx4$Rt8&Wn3") is None
    assert psk_weakness(bytes(range(32))) is None


def test_dpd_and_fragmentation(tmp_path):
    text = swanctl().replace("    dpd_delay = 30s\n", "")
    found = [f for f in audit_text(tmp_path, text) if f.rule == "dpd"]
    assert len(found) == 1 and found[0].key == "connections.s2s.dpd_delay"
    assert "dpd" not in rules(audit_text(tmp_path, swanctl(), "good"))
    assert "fragmentation" not in rules(audit_text(tmp_path, swanctl(conn_extra="    fragmentation = no"), "psk"))


def _cert(folder: Path, *, bits=2048, hash_=hashes.SHA256(), days=365, eku=None, curve=None) -> None:
    key = ec.generate_private_key(curve) if curve else rsa.generate_private_key(public_exponent=65537, key_size=bits)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gw.example")])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(1).not_valid_before(NOW - datetime.timedelta(days=1))
               .not_valid_after(NOW + datetime.timedelta(days=days)))
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    cert = builder.sign(key, hash_)
    (folder / "x509").mkdir(parents=True, exist_ok=True)
    (folder / "x509" / "gw.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


@pytest.mark.parametrize("kwargs, pools, expected", [
    ({"bits": 1024}, False, {("cert-key", "must")}),
    ({"days": 10}, False, {("cert-validity", "should")}),
    ({"days": -1}, False, {("cert-validity", "must")}),
    ({"eku": [ExtendedKeyUsageOID.CLIENT_AUTH]}, True, {("cert-eku", "should")}),
    ({"eku": [ExtendedKeyUsageOID.SERVER_AUTH]}, True, set()),
    ({"curve": ec.SECP256R1()}, False, set()),
    ({}, False, set()),
])
def test_certificates(tmp_path, kwargs, pools, expected):
    folder = tmp_path / "gw"
    _cert(folder, **kwargs)
    text = swanctl(auth="pubkey", local_extra="      certs = gw.pem",
                   conn_extra="    pools = p\n" if pools else "")
    found = {(f.rule, f.level) for f in audit_text(tmp_path, text) if f.rule.startswith("cert")}
    assert found == expected
    if expected:
        hit = next(f for f in audit_text(tmp_path, text) if f.rule.startswith("cert"))
        assert hit.key == "connections.s2s.local.certs" and hit.line == line_of(text, "certs =")


def test_a_certificate_signed_with_sha1(tmp_path):
    # made with: openssl req -x509 -sha1 -newkey rsa:2048 -nodes -days 36500 -subj /CN=sha1.example
    (tmp_path / "gw" / "x509").mkdir(parents=True)
    shutil.copy(DATA / "audit" / "sha1-cert.pem", tmp_path / "gw" / "x509" / "gw.pem")
    text = swanctl(auth="pubkey", local_extra="      certs = gw.pem")
    found = [(f.rule, f.level, f.reference) for f in audit_text(tmp_path, text) if f.rule.startswith("cert")]
    assert found == [("cert-hash", "must", "NIST SP 800-131A Rev. 2 §9")]


def test_fragmentation_off_with_certificates(tmp_path):
    _cert(tmp_path / "gw")
    text = swanctl(auth="pubkey", local_extra="      certs = gw.pem", conn_extra="    fragmentation = no")
    found = [f for f in audit_text(tmp_path, text) if f.rule == "fragmentation"]
    assert len(found) == 1 and found[0].reference == "RFC 7383 §1"


def test_post_quantum(tmp_path):
    found = [f for f in audit_text(tmp_path, swanctl()) if f.rule == "post-quantum"]
    assert len(found) == 1 and "1192 octets" in found[0].message and "1096" in found[0].message
    assert "post-quantum" not in rules(audit_text(tmp_path, swanctl(proposals="aes256gcm16-prfsha256-x25519-"
                                                                              "ke1_mlkem768"), "hybrid"))
    assert "post-quantum" not in rules(audit_text(tmp_path, swanctl(conn_extra="    ppk_id = pq.example"), "ppk"))
    report = audit_paths([str(tmp_path / "hybrid")], now=NOW)
    assert report.post_quantum[0]["status"] == "hybrid" and report.post_quantum[0]["post_quantum"] == ["ke1_mlkem768"]


# ---------------------------------------------------------------- the two ends of a connection


def pair(tmp_path, a: dict, b: dict) -> list:
    a_text = swanctl(local="192.0.2.1", remote="198.51.100.1", **a)
    b_text = swanctl(local="198.51.100.1", remote="192.0.2.1", **b).replace("10.1.0.0/24", "X").replace(
        "10.2.0.0/24", "10.1.0.0/24").replace("X", "10.2.0.0/24")
    for name, text in (("gwa", a_text), ("gwb", b_text)):
        (tmp_path / "org" / name).mkdir(parents=True, exist_ok=True)
        (tmp_path / "org" / name / "swanctl.conf").write_text(text)
    return audit_paths([str(tmp_path / "org")], now=NOW).findings


def test_two_equal_ends_are_silent(tmp_path):
    assert not {f.rule for f in pair(tmp_path, {}, {})} & {"peer-mismatch", "peer-pfs", "peer-weaker",
                                                            "peer-differs", "org-policy"}


def test_no_common_ike_proposal(tmp_path):
    found = [f for f in pair(tmp_path, {}, {"proposals": "aes128-sha256-modp2048"}) if f.rule == "peer-mismatch"]
    assert {(f.subject, f.level) for f in found} == {("gwa:s2s", "must"), ("gwb:s2s", "must")}
    assert "gwb/swanctl.conf:5" in next(f.message for f in found if f.subject == "gwa:s2s")


def test_no_common_esp_proposal(tmp_path):
    found = [f for f in pair(tmp_path, {}, {"esp": "aes128-sha256-x25519"}) if f.rule == "peer-mismatch"]
    assert {f.subject for f in found} == {"gwa:s2s/net", "gwb:s2s/net"}


def test_pfs_on_one_end_only_breaks_the_first_rekey(tmp_path):
    # RFC 7296 §1.2: the CHILD_SA of IKE_AUTH carries no KE; the rekey's CREATE_CHILD_SA does
    found = [f for f in pair(tmp_path, {}, {"esp": "aes256gcm16"}) if f.rule.startswith("peer")]
    assert {(f.rule, f.level) for f in found} == {("peer-pfs", "must")}


def test_weaker_than_first_choice(tmp_path):
    found = pair(tmp_path, {"proposals": "aes256gcm16-prfsha256-x25519, aes128-sha1-modp2048"},
                 {"proposals": "aes128-sha1-modp2048"})
    weaker = [f for f in found if f.rule == "peer-weaker"]
    assert [f.subject for f in weaker] == ["gwa:s2s"] and "aes128-sha1-modp2048" in weaker[0].message


def test_different_but_overlapping_lists(tmp_path):
    found = pair(tmp_path, {"proposals": "aes256gcm16-prfsha256-x25519, aes256gcm16-prfsha384-ecp384"},
                 {"proposals": "aes256gcm16-prfsha256-x25519"})
    assert {f.subject for f in found if f.rule == "peer-differs"} == {"gwa:s2s", "gwb:s2s"}


def test_organization_policy(tmp_path):
    for name, proposals in (("a", "aes256gcm16-prfsha256-x25519"), ("b", "aes256gcm16-prfsha256-x25519"),
                            ("c", "aes128-sha256-modp2048")):
        (tmp_path / "org" / name).mkdir(parents=True)
        text = swanctl(proposals=proposals, remote=f"203.0.113.{ord(name)}")
        (tmp_path / "org" / name / "swanctl.conf").write_text(text)
    found = [f for f in audit_paths([str(tmp_path / "org")], now=NOW).findings if f.rule == "org-policy"]
    assert [f.subject for f in found] == ["c:s2s"]


# ---------------------------------------------------------------- ipsec.conf


LEGACY = """# a legacy site
config setup
    uniqueids=yes

conn %default
    keyexchange=ikev2
    ikelifetime=3h
    dpdaction=restart
    dpddelay=30s

conn base
    authby=secret
    ike=aes256-sha256-modp1024!

conn site
    also=base
    left=192.0.2.1
    right=198.51.100.1
    leftsubnet=10.1.0.0/24
    rightsubnet=10.2.0.0/24
    esp=aes256-sha256-modp3072!
    auto=start
"""


def test_ipsec_conf_reader():
    conf = parse_ipsec_conf(LEGACY, "ipsec.conf")
    site = conf.conns["site"]
    assert site.value("ike") == "aes256-sha256-modp1024!" and site.get("ike").line == 13
    assert site.get("keyexchange").line == 6 and site.get("left").line == 17 and "also" not in site.settings
    assert set(conf.conns) == {"base", "site"}


@pytest.mark.parametrize("text, where", [
    ("conn a\n    also=b\n", "f.conf:2: conn a also: also=b: no conn 'b' is defined"),
    ("conn a\n    also=b\nconn b\n    also=a\n", "f.conf:4: conn b also: also=a makes a loop"),
    ("    left=1\n", "f.conf:1: an indented parameter outside any section"),
    ("conn a\n    left 1\n", "f.conf:2: conn a: 'left 1' is not a parameter"),
    ("connection a\n", "f.conf:1: 'connection a' is not a section"),
    ("conn a\n    ike=\"aes\n", "f.conf:2: conn a ike: unterminated string"),
    ("conn a\nconn a\n", "f.conf:2: conn a: conn 'a' is defined twice (first at f.conf:1)"),
])
def test_ipsec_conf_errors_name_file_line_and_key(text, where):
    with pytest.raises(ConfigError) as info:
        parse_ipsec_conf(text, "f.conf")
    assert str(info.value).startswith(where)


def test_ipsec_secrets():
    secrets = parse_ipsec_secrets('# keys\n@a @b : PSK "two words"\n: RSA key.pem\n', "s")
    assert [(s.ids, s.kind, s.secret, s.line) for s in secrets] == [(["@a", "@b"], "PSK", "two words", 2),
                                                                      ([], "RSA", "key.pem", 3)]
    with pytest.raises(ConfigError, match="s:1: not a secret"):
        parse_ipsec_secrets("garbage\n", "s")


def test_ipsec_conf_audited_with_file_and_line(tmp_path):
    (tmp_path / "ipsec.conf").write_text(LEGACY)
    (tmp_path / "ipsec.secrets").write_text(': PSK "short"\n')
    found = audit_paths([str(tmp_path / "ipsec.conf")], now=NOW).findings
    dh = [f for f in found if f.rule == "ike-algorithm" and f.subject.endswith(":site")]
    # the line is where `ike=` is written (in conn base, pulled in by also=), the key names the conn that uses it
    # RFC 8247 §2.4: group 2 (modp1024) is SHOULD NOT
    assert [(f.line, f.key, f.term) for f in dh] == [(13, "conn site ike", "SHOULD NOT")]
    assert "pfs" not in rules(found) and "dpd" not in rules(found)
    assert [(f.file.endswith("ipsec.secrets"), f.line) for f in found if f.rule == "psk"] == [(True, 1)]


# ---------------------------------------------------------------- bad input


def test_a_broken_proposal_names_file_line_and_key(tmp_path):
    text = swanctl(proposals="aes128-sha256-modp9999")
    (tmp_path / "swanctl.conf").write_text(text)
    with pytest.raises(AuditError, match=rf"swanctl.conf:{line_of(text, 'proposals =')}: connections.s2s.proposals: "
                                         r"unknown algorithm 'modp9999'"):
        audit_paths([str(tmp_path / "swanctl.conf")])


def test_bad_input_through_the_command(tmp_path, capsys):
    text = swanctl(child_extra="        rekey_time = soon")
    (tmp_path / "swanctl.conf").write_text(text)
    assert main(["audit", str(tmp_path / "swanctl.conf")]) == 2
    err = capsys.readouterr().err
    assert f"swanctl.conf:{line_of(text, 'soon')}: connections.s2s.children.net.rekey_time: 'soon' is not a time" in err
    (tmp_path / "swanctl.conf").write_text("connections {\n")
    assert main(["audit", str(tmp_path / "swanctl.conf")]) == 2
    assert "never closed" in capsys.readouterr().err
    assert main(["audit", str(tmp_path / "missing")]) == 2


# ---------------------------------------------------------------- the shipped organizations, the library, a capture


def test_the_weak_organization(capsys):
    weak = str(DATA / "audit" / "weak-org")
    assert main(["audit", weak, "--format", "json"]) == 1
    data = json.loads(capsys.readouterr().out)
    found = {(f["rule"], f["subject"]) for f in data["findings"]}
    for expected in [("ikev1", "legacy:warehouse"), ("peer-weaker", "hq:branch"), ("peer-mismatch", "hq:branch/lan"),
                     ("make-before-break", "hq:branch/lan"), ("psk", "legacy"), ("block64-lifetime", "branch:hq/lan")]:
        assert expected in found
    assert not any(f["rule"].startswith("peer") and "legacy" in f["subject"] for f in data["findings"])
    assert main(["audit", weak, "--fail-on", "never", "--format", "markdown"]) == 0
    assert "| must (Historic) |" in capsys.readouterr().out


def test_the_strong_organization_passes_at_advice_level(capsys):
    assert main(["audit", str(DATA / "audit" / "strong-org"), "--fail-on", "advice"]) == 0
    assert "2 of 2 connections protected" in capsys.readouterr().out


def test_the_scenario_library():
    report = audit_paths([str(ROOT / "scenarios")])
    # the "must" findings of the library are lessons: certificate-expired's expired certificate of gw,
    # and strongswan6's hub and spoke3 (5.9.8), which share no proposal (an additional key exchange)
    musts = {(f.rule, Path(f.file).relative_to(ROOT / "scenarios").parts[0], Path(f.subject or "").name)
             for f in report.at_or_above("must")}
    assert musts == {("cert-validity", "certificate-expired", "gw:rw (gw.pem)"),
                     ("peer-mismatch", "strongswan6", "hub:spoke3"), ("peer-mismatch", "strongswan6", "spoke3:hub")}
    by_rule = {}
    for f in report.findings:
        by_rule.setdefault(f.rule, set()).add(Path(f.file).relative_to(ROOT / "scenarios").parts[0])
    # what the teaching scenarios do on purpose, the audit says
    assert by_rule["ah"] == {"ah-vs-esp", "overhead"} and by_rule["esp-null"] == {"ah-vs-esp", "overhead"}
    assert by_rule["fragmentation"] == {"ike-fragmentation"}
    assert by_rule["peer-differs"] == {"mixed-strongswan"}
    assert by_rule["peer-mismatch"] == {"strongswan6"}  # only the refusal strongswan6 shows


def test_the_library_pairs_the_ends_of_its_connections(tmp_path):
    shutil.copytree(ROOT / "scenarios" / "net2net", tmp_path / "net2net")
    conf = tmp_path / "net2net" / "hosts" / "gwb" / "swanctl.conf"
    conf.write_text(conf.read_text().replace("esp_proposals = aes128gcm16", "esp_proposals = aes256gcm16"))
    found = audit_paths([str(tmp_path / "net2net")], now=NOW).findings
    assert {f.subject for f in found if f.rule == "peer-mismatch"} == {"gwa:s2s/net", "gwb:s2s/net"}


def test_a_strongswan_capture_without_keys():
    report = audit_paths([str(DATA / "strongswan_s2s.pcap")])
    # no keys: IKE_AUTH and the rekeys stay encrypted, IKE_SA_INIT is in the clear
    assert [(o.frame, o.exchange, o.offered, o.chosen) for o in report.captures] == [
        (1, "IKE_SA_INIT", ["aes128-sha256-modp2048"], "aes128-sha256-modp2048")]
    assert "aes128-sha256-modp2048" in render_markdown(report)
    assert json.loads(render_json(report))["captures"][0]["initiator"] == "203.0.113.1:500"


def test_a_capture_offering_weak_groups_is_graded(tmp_path):
    from lab.ike.message import Message
    from lab.ike.payloads import SA
    from lab.ike.proposals import parse_ike_proposals
    from scapy.layers.inet import IP, UDP
    from scapy.utils import wrpcap

    message = Message(spi_i=b"\x01" * 8, spi_r=b"\x00" * 8, exchange=34, message_id=0, is_initiator=True,
                      is_response=False, payloads=[SA(parse_ike_proposals("aes128-sha1-modp1024"))])
    wrpcap(str(tmp_path / "weak.pcap"), [IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=500, dport=500)
                                         / message.serialize()])
    report = audit_paths([str(tmp_path / "weak.pcap")])
    assert report.captures[0].offered == ["aes128-sha1-modp1024"] and report.captures[0].chosen is None
    offered = "frame 1 IKE_SA_INIT request (offered)"
    # RFC 8247 §2.3 AUTH_HMAC_SHA1_96 MUST-, §2.4 group 2 (1024-bit MODP) SHOULD NOT
    assert {(f.term, f.key) for f in report.findings} >= {("MUST-", offered), ("SHOULD NOT", offered)}


def test_a_run_folder_gets_its_audit(tmp_path):
    from lab.cli import _audit_run

    run = tmp_path / "run"
    shutil.copytree(DATA / "runs" / "net2net-nat", run)
    _audit_run(run)
    _audit_run(run)   # once more: the section is replaced, not added twice
    report = (run / "report.md").read_text()
    assert report.count("## Audit") == 1 and report.count("<!-- audit -->") == 1
    assert "nodes/gwa/swanctl/swanctl.conf:29 `secrets.ike-s2s.secret`" in report
    data = json.loads((run / "audit.json").read_text())
    assert {c["file"] for c in data["captures"]} == {"captures/nat-inside.pcap", "captures/nat-outside.pcap"}
    # with the run's keys/: IKE_AUTH and the CREATE_CHILD_SAs are read too, and the rekeys timed
    seen = [(c["frame"], c["exchange"], c["chosen"]) for c in data["captures"]
            if c["file"] == "captures/nat-inside.pcap"]
    assert seen == [(3, "IKE_SA_INIT", "aes128gcm16-prfsha256-x25519"), (5, "IKE_AUTH", "aes128gcm16"),
                    (17, "CREATE_CHILD_SA", "aes128gcm16"), (21, "CREATE_CHILD_SA", "aes128gcm16-prfsha256-x25519")]
    rekeys = [(r["frame"], r["sa"]) for r in data["lifetimes"] if r["file"] == "captures/nat-inside.pcap"]
    assert rekeys == [(17, "CHILD_SA"), (21, "IKE SA")]
    assert all(0 < r["rekeyed_after"] < 60 for r in data["lifetimes"])
    assert "| nodes/gwb/swanctl/swanctl.conf:20 |" in (run / "audit.md").read_text()


def test_without_keys_only_ike_sa_init_is_read(tmp_path):
    shutil.copy(DATA / "runs" / "net2net-nat" / "captures" / "nat-inside.pcap", tmp_path)
    report = audit_paths([str(tmp_path / "nat-inside.pcap")])
    assert [o.exchange for o in report.captures] == ["IKE_SA_INIT"] and report.lifetimes == []
    report = audit_paths([str(tmp_path / "nat-inside.pcap")], keys=str(DATA / "runs" / "net2net-nat" / "keys"))
    assert [o.exchange for o in report.captures] == ["IKE_SA_INIT", "IKE_AUTH", "CREATE_CHILD_SA", "CREATE_CHILD_SA"]
