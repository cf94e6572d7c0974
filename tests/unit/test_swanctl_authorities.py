"""swanctl.conf's authorities sections (lab.conf.swanctl) and the CRLs the daemon fetches for them
(lab.daemon.crls): an authority's CA is a trust anchor; its CRL, fetched from a file:// or an
http:// URI (a server on loopback here), revokes what that CA issued; a URI that fails or gives
another CA's CRL is logged and skipped. No root."""
from __future__ import annotations

import datetime
import http.server
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from lab.conf.settings import ConfigError
from lab.conf.swanctl import load_swanctl
from lab.daemon.crls import fetch_authority_crls
from lab.ike import payloads as pl
from lab.ike.certs import verify_peer_certificate
from lab.ike.const import CertEncoding
from lab.ike.crypto.auth import AuthenticationFailed
from lab.ike.identity import Identity
from lab.ike.memnet import make_pki

NOW = datetime.datetime(2027, 1, 1, tzinfo=datetime.UTC)
PINNED = type("Conf", (), {"remote": type("Remote", (), {"certs": []})()})()
WHEN = datetime.datetime(2026, 6, 1, tzinfo=datetime.UTC)


def _crl(issuer, key, serials):
    builder = (x509.CertificateRevocationListBuilder().issuer_name(issuer.subject)
               .last_update(WHEN).next_update(WHEN + datetime.timedelta(days=30)))
    for serial in serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(WHEN).build())
    return builder.sign(key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki():
    return make_pki("ecdsa")


def _folder(tmp_path: Path, pki, authorities: str) -> Path:
    (tmp_path / "x509ca").mkdir()
    (tmp_path / "x509ca" / "int.pem").write_bytes(pki["intermediate"].public_bytes(serialization.Encoding.PEM))
    conf = tmp_path / "swanctl.conf"
    conf.write_text("connections {\n  c {\n    remote_addrs = 192.0.2.1\n    local { auth = psk }\n"
                    "    remote { auth = psk }\n  }\n}\nsecrets {\n  ike { secret = 0sAAAAAAAAAAAAAAAAAAAAAA== }\n}\n"
                    + authorities)
    return conf


def test_an_authority_is_a_trust_anchor_with_its_uris(tmp_path, pki):
    conf = _folder(tmp_path, pki, "authorities {\n  lab-int {\n    cacert = int.pem\n"
                   "    crl_uris = file:///x/int.crl, http://10.2.0.1/int.crl\n"
                   "    ocsp_uris = http://10.2.0.1:8880\n  }\n}\n")
    config = load_swanctl(conf)
    (authority,) = config.authorities
    assert authority.name == "lab-int" and authority.cacert == pki["intermediate"]
    assert authority.crl_uris == ["file:///x/int.crl", "http://10.2.0.1/int.crl"]
    assert authority.ocsp_uris == ["http://10.2.0.1:8880"] and authority.where.endswith("swanctl.conf:13")
    assert pki["intermediate"] in config.cacerts


@pytest.mark.parametrize("body, where, words", [
    ("  a {\n    crl_uris = http://x/c.crl\n  }\n", ":12:", "either cacert = <file in x509ca/> or file = <path>"),
    ("  a {\n    cacert = int.pem\n    file = /etc/x.pem\n  }\n", ":12:", "not both"),
    ("  a {\n    cacert = nothere.pem\n  }\n", ":13:", "cannot read certificate"),
    ("  a {\n    cacert = int.pem\n    crl_uris = ftp://x/c.crl\n  }\n", ":14:", "'ftp://x/c.crl' is not a URI"),
    ("  a {\n    cacert = int.pem\n    handle = 4a\n  }\n", ":14:", "PKCS#11 token is not supported"),
    ("  a {\n    cacert = int.pem\n    crls = x\n  }\n", ":14:", "unknown key 'crls' in authorities.a"),
    ("  cacert = int.pem\n", ":12:", "cannot stand directly in authorities"),
])
def test_a_wrong_authority_is_refused_at_its_line(tmp_path, pki, body, where, words):
    conf = _folder(tmp_path, pki, "authorities {\n" + body + "}\n")
    with pytest.raises(ConfigError) as err:
        load_swanctl(conf)
    assert where in str(err.value) and words in str(err.value), str(err.value)


class _Serve(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}

    def do_GET(self):
        data = self.files.get(self.path)
        self.send_response(200 if data is not None else 404)
        self.end_headers()
        if data is not None:
            self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.HTTPServer(("127.0.0.1", 0), _Serve)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


def test_the_fetched_crl_revokes_what_the_authority_issued(tmp_path, pki, server):
    cert, _ = pki["gwb.lab"]
    revoking = _crl(pki["intermediate"], pki["intermediate_key"], [cert.serial_number])
    forged = _crl(pki["intermediate"], ec.generate_private_key(ec.SECP256R1()), [])
    _Serve.files = {"/int.crl": revoking.public_bytes(serialization.Encoding.DER), "/forged.crl": forged.public_bytes(
        serialization.Encoding.PEM), "/junk.crl": b"not a crl"}
    conf = _folder(tmp_path, pki, "authorities {\n  lab-int {\n    cacert = int.pem\n"
                   f"    crl_uris = ldap://ldap.lab/cn=x, file://{tmp_path}/none.crl, {server}/missing.crl, "
                   f"{server}/junk.crl, {server}/forged.crl, {server}/int.crl\n    ocsp_uris = http://o\n  }}\n}}\n")
    log: list[str] = []
    crls = fetch_authority_crls(load_swanctl(conf).authorities, log.append)
    assert crls == [revoking]
    text = "\n".join(log)
    assert "ldap://ldap.lab/cn=x failed" not in text and "fetches CRLs from file://, http:// and https:// only" in text
    assert "none.crl failed: No such file or directory" in text
    assert "missing.crl failed: Not Found" in text and "junk.crl gave no CRL" in text
    assert "forged.crl is not signed by 'CN=Lab Intermediate CA': not used" in text
    assert f"CRL of 'CN=Lab Intermediate CA' from {server}/int.crl: 1 revoked certificate(s)" in text
    assert "ocsp_uris are not asked" in text
    with pytest.raises(AuthenticationFailed, match="was revoked on 2026-06-01"):
        verify_peer_certificate([pl.CERT(encoding=CertEncoding.X509_SIGNATURE, data=c.public_bytes(
            serialization.Encoding.DER)) for c in (cert, pki["intermediate"])], PINNED, [pki["ca"]],
            Identity.parse("gwb.lab"), NOW, crls=crls)


def test_no_crl_at_all_is_said_and_the_first_good_one_wins(tmp_path, pki):
    cert, _ = pki["gwb.lab"]
    first = _crl(pki["intermediate"], pki["intermediate_key"], [cert.serial_number])
    second = _crl(pki["intermediate"], pki["intermediate_key"], [])
    (tmp_path / "a.crl").write_bytes(first.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "b.crl").write_bytes(second.public_bytes(serialization.Encoding.PEM))
    conf = _folder(tmp_path, pki, "authorities {\n  one {\n    cacert = int.pem\n"
                   f"    crl_uris = file://{tmp_path}/a.crl, file://{tmp_path}/b.crl\n  }}\n"
                   f"  two {{\n    cacert = int.pem\n    crl_uris = file://{tmp_path}/gone.crl\n  }}\n}}\n")
    log: list[str] = []
    assert fetch_authority_crls(load_swanctl(conf).authorities, log.append) == [first]
    assert "accepted without one (revocation = relaxed" in log[-1] and log[-1].startswith("authority two")


def _round_folder(tmp_path: Path, pki, remote: str) -> Path:
    for sub in ("x509", "x509ca", "private"):
        (tmp_path / sub).mkdir(exist_ok=True)
    cert, key = pki["gwb.lab"]
    (tmp_path / "x509" / "gw.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "private" / "gw.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (tmp_path / "x509ca" / "int.pem").write_bytes(pki["intermediate"].public_bytes(serialization.Encoding.PEM))
    conf = tmp_path / "swanctl.conf"
    conf.write_text("connections {\n  c {\n    remote_addrs = 192.0.2.1\n    local {\n      auth = pubkey\n"
                    f"      cert-1 {{\n        file = {tmp_path}/x509/gw.pem\n      }}\n    }}\n    remote {{\n"
                    f"      auth = pubkey\n{remote}    }}\n  }}\n}}\n")
    return conf


def test_cert_and_cacert_sections_name_a_file_as_certs_and_cacerts_do(tmp_path, pki):
    cert, _ = pki["gwb.lab"]
    conf = _round_folder(tmp_path, pki, "      cacert-lab {\n        file = int.pem\n      }\n")
    connection = load_swanctl(conf).connections["c"]
    assert connection.local.certs == [cert] and connection.remote.cacerts == [pki["intermediate"]]


@pytest.mark.parametrize("remote, where, words", [
    ("      cacert-1 {\n        handle = 0a0b\n      }\n", ":13:", "certificates on a PKCS#11 token is not supported"),
    ("      cacert-1 {\n      }\n", ":12:", "cacert-1 needs file = PATH"),
    ("      cacert-1 {\n        file = nothere.pem\n      }\n", ":13:", "certificate file 'nothere.pem' not found"),
    ("      token-1 {\n        file = int.pem\n      }\n", ":12:", "unknown section 'token-1'"),
])
def test_a_wrong_cert_section_is_refused_at_its_line(tmp_path, pki, remote, where, words):
    with pytest.raises(ConfigError) as err:
        load_swanctl(_round_folder(tmp_path, pki, remote))
    assert where in str(err.value) and words in str(err.value), str(err.value)


def test_revocation_is_read_per_remote_round_and_a_wrong_one_refused(tmp_path, pki):
    conf = _round_folder(tmp_path, pki, "      cacerts = int.pem\n      revocation = strict\n")
    assert load_swanctl(conf).connections["c"].remote.revocation == "strict"
    conf.write_text(conf.read_text().replace("revocation = strict", "revocation = paranoid"))
    with pytest.raises(ConfigError, match=r":13: connections.c.remote.revocation: revocation = paranoid: write strict"):
        load_swanctl(conf)
