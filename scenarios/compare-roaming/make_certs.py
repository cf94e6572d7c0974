"""Makes the lab CA and the OpenConnect gateway's certificate of the two scenarios with an ocserv
gateway: compare-roaming (gwf at 198.51.100.4) and restrictive-network (gwj at 198.51.100.6).
Each scenario gets a CA of its own (RSA 2048, 20 years) in hosts/<gateway>/x509ca/ca.pem and
hosts/<client>/x509ca/ca.pem, and the gateway a certificate for TLS server use whose
subjectAltName is the address the client dials (openconnect checks it against the URL, RFC 6125
§6.2 for IP addresses: an iPAddress entry) in x509/<gateway>.pem and private/<gateway>.key. Run
once; the files are kept with the scenarios.

    .venv/bin/python scenarios/compare-roaming/make_certs.py
"""
import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SCENARIOS = Path(__file__).resolve().parents[1]
GATEWAYS = {"compare-roaming": ("gwf", "198.51.100.4", "gwe"), "restrictive-network": ("gwj", "198.51.100.6", "gwi")}


def name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ipsec-lab"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common)])


def usage(ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=not ca, content_commitment=False, key_encipherment=not ca,
                         data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                         encipher_only=False, decipher_only=False)


def main() -> None:
    now = datetime.datetime.now(datetime.UTC)
    until = now + datetime.timedelta(days=20 * 365)
    for scenario, (gateway, address, client) in GATEWAYS.items():
        ca_key = rsa.generate_private_key(65537, 2048)
        ca_name = name(f"ipsec-lab {scenario} CA")
        ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
              .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(until)
              .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
              .add_extension(usage(True), critical=True)
              .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
              .sign(ca_key, hashes.SHA256()))
        key = rsa.generate_private_key(65537, 2048)
        cert = (x509.CertificateBuilder().subject_name(name(f"{gateway}.lab")).issuer_name(ca_name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now).not_valid_after(until)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(usage(False), critical=True)
                .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address)),
                                                            x509.DNSName(f"{gateway}.lab")]), critical=False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))
        hosts = SCENARIOS / scenario / "hosts"
        pem = ca.public_bytes(serialization.Encoding.PEM)
        for folder, sub, filename, data in (
                (gateway, "x509ca", "ca.pem", pem), (client, "x509ca", "ca.pem", pem),
                (gateway, "x509", f"{gateway}.pem", cert.public_bytes(serialization.Encoding.PEM)),
                (gateway, "private", f"{gateway}.key", key.private_bytes(serialization.Encoding.PEM,
                                                                         serialization.PrivateFormat.PKCS8,
                                                                         serialization.NoEncryption()))):
            (hosts / folder / sub).mkdir(parents=True, exist_ok=True)
            (hosts / folder / sub / filename).write_bytes(data)


if __name__ == "__main__":
    main()
