"""Makes the lab CAs and TLS certificates of the scenarios whose gateways run OpenVPN or ocserv
(OpenConnect), with the `cryptography` package: one CA per set below (RSA 2048, valid for 20
years) and, for each gateway of the set, a certificate and key (RSA 2048, subjectAltName and CN
<gateway>.lab). The files go into the scenario's hosts/<gateway>/: x509ca/ca.pem, x509/<gateway>.pem
and private/<gateway>.key (PKCS #8); a client that only checks the gateway (openconnect) gets
x509ca/ca.pem alone. Run once per set; the files are kept with the scenarios.

    .venv/bin/python scripts/make_tls_certs.py compare-roaming [...]

The sets:
- compare-site-to-site: OpenVPN's gwe, gwf, gwg and gwh (TLS server and client use: each side of
  a point-to-point tunnel shows its certificate). restrictive-network and tcp-over-tcp use the same
  four gateways' files, copied there by this set.
- compare-roaming: the OpenConnect gateway gwf (TLS server use; its subjectAltName also holds
  the address openconnect dials, 198.51.100.4: openconnect checks it against the URL, RFC 6125
  §6.2 for IP addresses: an iPAddress entry), gwe gets the CA; and OpenVPN's gwg and gwh.
- restrictive-network: the OpenConnect gateway gwj (198.51.100.6), gwi gets the CA.
"""
from __future__ import annotations

import datetime
import ipaddress
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


@dataclass(frozen=True)
class Cert:
    gateway: str
    address: str | None = None   # an IP address the peer dials (an iPAddress subjectAltName entry)
    client: bool = True          # also for TLS client use (OpenVPN), not server use alone (ocserv)
    ca_only: tuple[str, ...] = ()  # nodes that get the CA alone (the clients that check this gateway)


# set (and the CA's name) -> (the certificates, the scenarios their files go to)
SETS: dict[str, tuple[tuple[Cert, ...], tuple[str, ...]]] = {
    "compare-site-to-site": ((Cert("gwe"), Cert("gwf"), Cert("gwg"), Cert("gwh")),
                             ("compare-site-to-site", "restrictive-network", "tcp-over-tcp")),
    "compare-roaming": ((Cert("gwf", "198.51.100.4", client=False, ca_only=("gwe",)), Cert("gwg"), Cert("gwh")),
                        ("compare-roaming",)),
    "restrictive-network": ((Cert("gwj", "198.51.100.6", client=False, ca_only=("gwi",)),),
                            ("restrictive-network",)),
}


def name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ipsec-lab"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common)])


def usage(ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=not ca, content_commitment=False, key_encipherment=not ca,
                         data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                         encipher_only=False, decipher_only=False)


def pem_key(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_set(label: str, root: Path = SCENARIOS) -> list[Path]:
    """Makes set `label`'s CA and certificates and writes them; the paths written."""
    certs, scenarios = SETS[label]
    now = datetime.datetime.now(datetime.UTC)
    until = now + datetime.timedelta(days=20 * 365)
    ca_key = rsa.generate_private_key(65537, 2048)
    ca_name = name(f"ipsec-lab {label} CA")
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(until)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(usage(True), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    files: dict[tuple[str, str, str], bytes] = {}
    for c in certs:
        key = rsa.generate_private_key(65537, 2048)
        alt: list[x509.GeneralName] = [x509.DNSName(f"{c.gateway}.lab")]
        if c.address:
            alt.insert(0, x509.IPAddress(ipaddress.ip_address(c.address)))
        uses = [ExtendedKeyUsageOID.SERVER_AUTH] + ([ExtendedKeyUsageOID.CLIENT_AUTH] if c.client else [])
        cert = (x509.CertificateBuilder().subject_name(name(f"{c.gateway}.lab")).issuer_name(ca_name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now).not_valid_after(until)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(usage(False), critical=True)
                .add_extension(x509.SubjectAlternativeName(alt), critical=False)
                .add_extension(x509.ExtendedKeyUsage(uses), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))
        files[(c.gateway, "x509ca", "ca.pem")] = ca_pem
        files[(c.gateway, "x509", f"{c.gateway}.pem")] = cert.public_bytes(serialization.Encoding.PEM)
        files[(c.gateway, "private", f"{c.gateway}.key")] = pem_key(key)
        for node in c.ca_only:
            files[(node, "x509ca", "ca.pem")] = ca_pem
    written = []
    for scenario in scenarios:
        for (node, sub, filename), data in files.items():
            folder = root / scenario / "hosts" / node / sub
            folder.mkdir(parents=True, exist_ok=True)
            (folder / filename).write_bytes(data)
            written.append(folder / filename)
    return written


def main(argv: list[str]) -> int:
    unknown = [a for a in argv if a not in SETS]
    if not argv or unknown:
        print(f"usage: make_tls_certs.py SET [...]; the sets: {', '.join(SETS)}"
              + (f" (not {', '.join(unknown)})" if unknown else ""), file=sys.stderr)
        return 2
    for label in argv:
        for path in make_set(label):
            print(path.relative_to(SCENARIOS.parent))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
