"""Makes the lab CAs and TLS certificates of the scenarios whose gateways run OpenVPN or ocserv
(OpenConnect), and of lateral-movement's reverse proxy, with the `cryptography` package: one CA
per set below (valid for 20 years) and, for each certificate of the set, a certificate and key
(subjectAltName and CN <name>.lab, the name being the node's unless said). Keys are RSA 2048,
or ECDSA P-256 where the set says. The files go into the scenario's hosts/<node>/:
x509/<name>.pem, private/<name>.key (PKCS #8) and the CA, x509ca/ca.pem unless the set says
otherwise; a client that only checks the server (openconnect, curl) gets the CA alone. Run once
per set; the files are kept with the scenarios.

    .venv/bin/python scripts/make_tls_certs.py compare-roaming [...]

The sets:
- compare-site-to-site: OpenVPN's gwe, gwf, gwg and gwh (TLS server and client use: each side of
  a point-to-point tunnel shows its certificate). restrictive-network and tcp-over-tcp use the same
  four gateways' files, copied there by this set.
- compare-roaming: the OpenConnect gateway gwf (TLS server use; its subjectAltName also holds
  the address openconnect dials, 198.51.100.4: openconnect checks it against the URL, RFC 6125
  §6.2 for IP addresses: an iPAddress entry), gwe gets the CA; and OpenVPN's gwg and gwh.
- restrictive-network: the OpenConnect gateway gwj (198.51.100.6), gwi gets the CA.
- lateral-movement: the company CA (ECDSA P-256) and app.lab's certificate (TLS server use) that
  the reverse proxy shows, hosts/proxy/x509/app.pem and private/app.key; the laptop client1 trusts
  the CA as hosts/client1/company-ca.pem.
"""
from __future__ import annotations

import datetime
import ipaddress
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


@dataclass(frozen=True)
class Cert:
    gateway: str                 # the node that shows the certificate
    address: str | None = None   # an IP address the peer dials (an iPAddress subjectAltName entry)
    client: bool = True          # also for TLS client use (OpenVPN), not server use alone (ocserv)
    ca_only: tuple[str, ...] = ()  # nodes that get the CA alone (the clients that check this gateway)
    name: str = ""               # the certificate's name (<name>.lab) and files', if not the node's


@dataclass(frozen=True)
class CertSet:
    certs: tuple[Cert, ...]
    scenarios: tuple[str, ...]   # the scenarios the files go to
    ca_name: str = ""            # the CA's common name, if not "ipsec-lab <set> CA"
    ecdsa: bool = False          # ECDSA P-256 keys, not RSA 2048
    ca_file: str = "x509ca/ca.pem"  # where in a node's folder the CA goes
    ca_with_cert: bool = True    # a certificate's node gets the CA too (OpenVPN checks its peer's)


SETS: dict[str, CertSet] = {
    "compare-site-to-site": CertSet((Cert("gwe"), Cert("gwf"), Cert("gwg"), Cert("gwh")),
                                    ("compare-site-to-site", "restrictive-network", "tcp-over-tcp")),
    "compare-roaming": CertSet((Cert("gwf", "198.51.100.4", client=False, ca_only=("gwe",)), Cert("gwg"),
                                Cert("gwh")), ("compare-roaming",)),
    "restrictive-network": CertSet((Cert("gwj", "198.51.100.6", client=False, ca_only=("gwi",)),),
                                   ("restrictive-network",)),
    "lateral-movement": CertSet((Cert("proxy", client=False, ca_only=("client1",), name="app"),),
                                ("lateral-movement",), ca_name="ipsec-lab lateral-movement company CA",
                                ecdsa=True, ca_file="company-ca.pem", ca_with_cert=False),
}


def name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ipsec-lab"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common)])


def usage(ca: bool, ecdsa: bool) -> x509.KeyUsage:
    # an ECDSA key signs and never enciphers (RFC 5480 §3: no keyEncipherment for id-ecPublicKey)
    return x509.KeyUsage(digital_signature=ecdsa or not ca, content_commitment=False,
                         key_encipherment=not ca and not ecdsa, data_encipherment=False, key_agreement=False,
                         key_cert_sign=ca, crl_sign=ca, encipher_only=False, decipher_only=False)


def new_key(ecdsa: bool) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    return ec.generate_private_key(ec.SECP256R1()) if ecdsa else rsa.generate_private_key(65537, 2048)


def pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_set(label: str, root: Path = SCENARIOS) -> list[Path]:
    """Makes set `label`'s CA and certificates and writes them; the paths written."""
    kind = SETS[label]
    now = datetime.datetime.now(datetime.UTC)
    until = now + datetime.timedelta(days=20 * 365)
    ca_key = new_key(kind.ecdsa)
    ca_name = name(kind.ca_name or f"ipsec-lab {label} CA")
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(until)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(usage(True, kind.ecdsa), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    files: dict[tuple[str, str], bytes] = {}
    for c in kind.certs:
        key = new_key(kind.ecdsa)
        own = c.name or c.gateway
        alt: list[x509.GeneralName] = [x509.DNSName(f"{own}.lab")]
        if c.address:
            alt.insert(0, x509.IPAddress(ipaddress.ip_address(c.address)))
        uses = [ExtendedKeyUsageOID.SERVER_AUTH] + ([ExtendedKeyUsageOID.CLIENT_AUTH] if c.client else [])
        cert = (x509.CertificateBuilder().subject_name(name(f"{own}.lab")).issuer_name(ca_name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now).not_valid_after(until)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(usage(False, kind.ecdsa), critical=True)
                .add_extension(x509.SubjectAlternativeName(alt), critical=False)
                .add_extension(x509.ExtendedKeyUsage(uses), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))
        if kind.ca_with_cert:
            files[(c.gateway, kind.ca_file)] = ca_pem
        files[(c.gateway, f"x509/{own}.pem")] = cert.public_bytes(serialization.Encoding.PEM)
        files[(c.gateway, f"private/{own}.key")] = pem_key(key)
        for node in c.ca_only:
            files[(node, kind.ca_file)] = ca_pem
    written = []
    for scenario in kind.scenarios:
        for (node, where), data in files.items():
            path = root / scenario / "hosts" / node / where
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            written.append(path)
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
