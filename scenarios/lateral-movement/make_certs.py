"""Makes this scenario's lab CA (the company's) and the certificate of its one application's
name, app.lab, that the reverse proxy shows (ECDSA P-256, valid for 20 years, subjectAltName
DNS:app.lab, for TLS servers): hosts/proxy/x509/app.pem and private/app.key, and the CA the
laptop trusts, hosts/client1/company-ca.pem. Run once; the files are kept with the scenario.

    .venv/bin/python scenarios/lateral-movement/make_certs.py
"""
import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HERE = Path(__file__).resolve().parent


def name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ipsec-lab"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common)])


def usage(ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                         encipher_only=False, decipher_only=False)


def main() -> None:
    now = datetime.datetime.now(datetime.UTC)
    until = now + datetime.timedelta(days=20 * 365)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("ipsec-lab lateral-movement company CA")
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(until)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(usage(True), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(name("app.lab")).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(until)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage(False), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("app.lab")]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    hosts = HERE / "hosts"
    for path, data in (
            (hosts / "proxy" / "x509" / "app.pem", cert.public_bytes(serialization.Encoding.PEM)),
            (hosts / "proxy" / "private" / "app.key", key.private_bytes(serialization.Encoding.PEM,
                                                                         serialization.PrivateFormat.PKCS8,
                                                                         serialization.NoEncryption())),
            (hosts / "client1" / "company-ca.pem", ca.public_bytes(serialization.Encoding.PEM))):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


if __name__ == "__main__":
    main()
