"""Makes this scenario's lab CA and the OpenVPN gateways' certificates (RSA 2048, valid for 20
years, subjectAltName and CN <gateway>.lab, for TLS server and client use) into
hosts/<gw>/x509ca/ca.pem, x509/<gw>.pem and private/<gw>.key. Run once; the files are kept with
the scenario.

    .venv/bin/python scenarios/compare-site-to-site/make_certs.py
"""
import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HERE = Path(__file__).resolve().parent
GATEWAYS = ("gwe", "gwf", "gwg", "gwh")


def name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ipsec-lab"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common)])


def usage(ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=not ca, content_commitment=False, key_encipherment=not ca,
                         data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                         encipher_only=False, decipher_only=False)


def main() -> None:
    now = datetime.datetime.now(datetime.timezone.utc)
    until = now + datetime.timedelta(days=20 * 365)
    ca_key = rsa.generate_private_key(65537, 2048)
    ca_name = name("ipsec-lab compare-site-to-site CA")
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(until)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(usage(True), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    for gateway in GATEWAYS:
        key = rsa.generate_private_key(65537, 2048)
        cert = (x509.CertificateBuilder().subject_name(name(f"{gateway}.lab")).issuer_name(ca_name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now).not_valid_after(until)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(usage(False), critical=True)
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(f"{gateway}.lab")]), critical=False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))
        folder = HERE / "hosts" / gateway
        for sub, filename, data in (
                ("x509ca", "ca.pem", ca.public_bytes(serialization.Encoding.PEM)),
                ("x509", f"{gateway}.pem", cert.public_bytes(serialization.Encoding.PEM)),
                ("private", f"{gateway}.key", key.private_bytes(serialization.Encoding.PEM,
                                                               serialization.PrivateFormat.PKCS8,
                                                               serialization.NoEncryption()))):
            (folder / sub).mkdir(parents=True, exist_ok=True)
            (folder / sub / filename).write_bytes(data)


if __name__ == "__main__":
    main()
