"""Revocation by CRL and the chain we send (lab.ike.certs), and the CRLs of x509crl/ in the
swanctl.conf reader: pure, no root."""
from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lab.conf.settings import ConfigError
from lab.conf.swanctl import load_swanctl
from lab.ike import payloads as pl
from lab.ike.certs import local_chain, verify_peer_certificate
from lab.ike.const import CertEncoding
from lab.ike.crypto.auth import AuthenticationFailed
from lab.ike.identity import Identity
from lab.ike.memnet import make_pki

NOW = datetime.datetime(2027, 1, 1, tzinfo=datetime.timezone.utc)
PINNED = type("Conf", (), {"remote": type("Remote", (), {"certs": []})()})()


def _payloads(*certs):
    return [pl.CERT(encoding=CertEncoding.X509_SIGNATURE, data=c.public_bytes(serialization.Encoding.DER))
            for c in certs]


def _crl(issuer: x509.Certificate, key, serials: list[int], when=datetime.datetime(2026, 6, 1,
                                                                                     tzinfo=datetime.timezone.utc),
         reason=x509.ReasonFlags.key_compromise) -> x509.CertificateRevocationList:
    builder = (x509.CertificateRevocationListBuilder().issuer_name(issuer.subject)
               .last_update(when).next_update(when + datetime.timedelta(days=3650)))
    for serial in serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when)
            .add_extension(x509.CRLReason(reason), critical=False).build())
    return builder.sign(key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki():
    return make_pki("ecdsa")


def test_a_certificate_the_issuers_crl_lists_is_refused_with_its_serial_date_and_reason(pki):
    cert, _key = pki["gwb.lab"]
    crl = _crl(pki["intermediate"], pki["intermediate_key"], [cert.serial_number])
    with pytest.raises(AuthenticationFailed) as err:
        verify_peer_certificate(_payloads(cert, pki["intermediate"]), PINNED, [pki["ca"]], Identity.parse("gwb.lab"),
                                NOW, crls=[crl])
    text = str(err.value)
    assert f"(serial {cert.serial_number:#x}) was revoked on 2026-06-01 00:00 UTC" in text
    assert "reason: key compromise" in text and "by the CRL of 'CN=Lab Intermediate CA'" in text


def test_crls_that_do_not_apply_are_not_used(pki):
    cert, _key = pki["gwb.lab"]
    ident = Identity.parse("gwb.lab")
    chain = _payloads(cert, pki["intermediate"])
    other_key = ec.generate_private_key(ec.SECP256R1())
    # another serial; the right issuer name but a signature by another key; a revocation after `now`
    unrelated = _crl(pki["intermediate"], pki["intermediate_key"], [cert.serial_number + 1])
    forged = _crl(pki["intermediate"], other_key, [cert.serial_number])
    later = _crl(pki["intermediate"], pki["intermediate_key"], [cert.serial_number],
                 when=datetime.datetime(2028, 1, 1, tzinfo=datetime.timezone.utc))
    for crls in ([], [unrelated], [forged], [later]):
        assert verify_peer_certificate(chain, PINNED, [pki["ca"]], ident, NOW, crls=crls) == cert


def test_a_revoked_intermediate_refuses_what_it_issued():
    # make_pki keeps no root key: a root of our own with an intermediate and a leaf
    ca_key, int_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))

    def build(cn, issuer_cn, public, signer, ca):
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        return (x509.CertificateBuilder().subject_name(name)
                .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_cn)]))
                .public_key(public).serial_number(x509.random_serial_number())
                .not_valid_before(datetime.datetime(2026, 1, 1)).not_valid_after(datetime.datetime(2030, 1, 1))
                .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
                .sign(signer, hashes.SHA256()))
    root = build("Root", "Root", ca_key.public_key(), ca_key, True)
    inter = build("Issuing", "Root", int_key.public_key(), ca_key, True)
    leaf = build("leaf.lab", "Issuing", leaf_key.public_key(), int_key, False)
    crl = _crl(root, ca_key, [inter.serial_number], reason=x509.ReasonFlags.ca_compromise)
    with pytest.raises(AuthenticationFailed, match="'CN=Issuing'.*revoked.*reason: ca compromise"):
        verify_peer_certificate(_payloads(leaf, inter), PINNED, [root], Identity.parse("leaf.lab"), NOW, crls=[crl])


def test_an_unchained_certificate_names_the_issuer_it_lacks(pki):
    cert, _key = pki["gwb.lab"]
    with pytest.raises(AuthenticationFailed, match="does not chain to a trusted CA: its issuer 'CN=Lab Intermediate "
                                                   r"CA' is neither a trusted CA here nor among the 1 certificate"):
        verify_peer_certificate(_payloads(cert), PINNED, [pki["ca"]], Identity.parse("gwb.lab"), NOW)


def test_we_send_the_intermediates_of_x509ca_up_to_and_without_the_root(pki):
    cert, _key = pki["gwa.lab"]
    assert local_chain([cert], [pki["ca"], pki["intermediate"]]) == [cert, pki["intermediate"]]
    assert local_chain([cert, pki["intermediate"]], [pki["ca"], pki["intermediate"]]) == [cert, pki["intermediate"]]
    assert local_chain([cert], [pki["ca"]]) == [cert]
    assert local_chain([], [pki["intermediate"]]) == []


def _folder(tmp_path: Path, pki) -> Path:
    cert, key = pki["gwa.lab"]
    for sub in ("x509", "x509ca", "private", "x509crl"):
        (tmp_path / sub).mkdir()
    (tmp_path / "x509" / "gwa.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "x509ca" / "ca.pem").write_bytes(pki["ca"].public_bytes(serialization.Encoding.PEM))
    (tmp_path / "private" / "gwa.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (tmp_path / "swanctl.conf").write_text(
        "connections {\n  s2s {\n    local {\n      auth = pubkey\n      certs = gwa.pem\n    }\n"
        "    remote {\n      auth = pubkey\n    }\n  }\n}\n")
    return tmp_path


def test_the_reader_loads_the_crls_of_x509crl_pem_and_der(tmp_path, pki):
    folder = _folder(tmp_path, pki)
    crl = _crl(pki["intermediate"], pki["intermediate_key"], [1])
    (folder / "x509crl" / "a.crl").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    (folder / "x509crl" / "b.crl").write_bytes(crl.public_bytes(serialization.Encoding.DER))
    config = load_swanctl(folder / "swanctl.conf")
    assert len(config.crls) == 2 and all(c.issuer == pki["intermediate"].subject for c in config.crls)


def test_a_file_in_x509crl_that_is_no_crl_is_refused_with_file_and_line(tmp_path, pki):
    folder = _folder(tmp_path, pki)
    (folder / "x509crl" / "notes.txt").write_text("not a CRL\n")
    with pytest.raises(ConfigError) as err:
        load_swanctl(folder / "swanctl.conf")
    text = str(err.value)
    assert "swanctl.conf:8" in text and "notes.txt' in x509crl/ is not a certificate revocation list" in text


def _leaf_with(pki, cdp: bool):
    """A certificate the intermediate issued for gwc.lab, with or without a CRL distribution point."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gwc.lab")])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(pki["intermediate"].subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(NOW - datetime.timedelta(days=1)).not_valid_after(NOW + datetime.timedelta(days=30))
               .add_extension(x509.SubjectAlternativeName([x509.DNSName("gwc.lab")]), critical=False))
    if cdp:
        builder = builder.add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
            [x509.UniformResourceIdentifier("http://10.2.0.10/int.crl")], None, None, None)]), critical=False)
    return builder.sign(pki["intermediate_key"], hashes.SHA256())


@pytest.mark.parametrize("revocation, cdp, uri_issuer, crl, refused", [
    ("relaxed", True, False, None, False),
    ("strict", False, False, None, True),      # no CRL at all: strict refuses
    ("strict", False, False, "good", False),   # the issuer's current CRL, not listing it: good standing
    ("strict", False, False, "stale", True),   # a CRL past its nextUpdate proves nothing
    ("ifuri", False, False, None, False),      # no URI known: as relaxed
    ("ifuri", True, False, None, True),        # the certificate names a CRL URI, no CRL at hand
    ("ifuri", False, True, None, True),        # its CA's authority section has crl_uris
    ("ifuri", True, False, "good", False),
])
def test_revocation_strict_and_ifuri_as_swanctl_conf_says(pki, revocation, cdp, uri_issuer, crl, refused):
    leaf = _leaf_with(pki, cdp)
    crls = []
    if crl:
        when = NOW - datetime.timedelta(days=1 if crl == "good" else 60)
        crls = [x509.CertificateRevocationListBuilder().issuer_name(pki["intermediate"].subject).last_update(when)
                .next_update(when + datetime.timedelta(days=7)).sign(pki["intermediate_key"], hashes.SHA256())]
    check = lambda: verify_peer_certificate(  # noqa: E731
        # the intermediate as the trust anchor: one link to check (the root's CRL, which strict
        # would want for the intermediate, cannot be made: make_pki keeps no root key)
        _payloads(leaf), PINNED, [pki["intermediate"]], Identity.parse("gwc.lab"), NOW, crls=crls,
        revocation=revocation, uri_issuers=[pki["intermediate"].subject] if uri_issuer else [])
    if not refused:
        assert check() == leaf
        return
    with pytest.raises(AuthenticationFailed) as err:
        check()
    assert "no revocation information for certificate 'CN=gwc.lab'" in str(err.value)
    assert f"(revocation = {revocation} refuses it; relaxed would accept it)" in str(err.value)


def test_strict_wants_a_crl_for_every_link_of_the_chain(pki):
    leaf = _leaf_with(pki, False)
    crl = (x509.CertificateRevocationListBuilder().issuer_name(pki["intermediate"].subject).last_update(NOW)
           .next_update(NOW + datetime.timedelta(days=7)).sign(pki["intermediate_key"], hashes.SHA256()))
    with pytest.raises(AuthenticationFailed, match="certificate 'CN=Lab Intermediate CA': no CRL of 'CN=Lab Root CA'"):
        verify_peer_certificate(_payloads(leaf, pki["intermediate"]), PINNED, [pki["ca"]], Identity.parse("gwc.lab"),
                                NOW, crls=[crl], revocation="strict")
