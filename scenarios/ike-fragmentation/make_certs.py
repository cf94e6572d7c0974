"""Makes this scenario's lab CA and the two gateways' certificates (RSA 4096, so that IKE_AUTH
is larger than the path's 1280 octets), valid for 20 years, into hosts/<gw>/x509ca, x509 and
private. Run once; the files are kept with the scenario.

    .venv/bin/python scenarios/ike-fragmentation/make_certs.py
"""
import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HERE = Path(__file__).resolve().parent


def name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ipsec-lab"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common)])


def main() -> None:
    now = datetime.datetime.now(datetime.timezone.utc)
    until = now + datetime.timedelta(days=20 * 365)
    ca_key = rsa.generate_private_key(65537, 4096)
    ca_name = name("ipsec-lab ike-fragmentation CA")
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(until)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    for gateway in ("gwa", "gwb"):
        key = rsa.generate_private_key(65537, 4096)
        cert = (x509.CertificateBuilder().subject_name(name(f"{gateway}.lab")).issuer_name(ca_name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now).not_valid_after(until)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
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
