"""Checking a peer's certificate chain against configured trust anchors (RFC 7296 §3.6,
§3.7, RFC 5280 in the small: issuer signatures, validity, CA constraints)."""
from __future__ import annotations

import datetime
import hashlib
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from . import payloads as pl
from .const import CertEncoding
from .crypto.auth import AuthenticationFailed
from .identity import Identity, certificate_matches

MAX_CHAIN = 8


def certreq_hashes(anchors: Sequence[x509.Certificate]) -> bytes:
    """CERTREQ data: SHA-1 of each CA's SubjectPublicKeyInfo (RFC 7296 §3.7)."""
    return b"".join(hashlib.sha1(ca.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).digest() for ca in anchors)


def _load(payload: pl.CERT) -> x509.Certificate:
    if payload.encoding != CertEncoding.X509_SIGNATURE:
        raise AuthenticationFailed(f"certificate encoding {payload.encoding} is not X.509 (4)")
    try:
        return x509.load_der_x509_certificate(payload.data)
    except ValueError as err:
        raise AuthenticationFailed(f"peer sent a certificate that does not parse: {err}") from None


def _valid_at(cert: x509.Certificate, when: datetime.datetime) -> None:
    if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
        raise AuthenticationFailed(f"certificate '{cert.subject.rfc4514_string()}' is not valid now "
                                   f"({cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d})")


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def verify_peer_certificate(cert_payloads: Sequence[pl.CERT], config, anchors: Sequence[x509.Certificate],
                            peer_id: Identity, now: datetime.datetime) -> x509.Certificate:
    """The peer's end-entity certificate once it checks out: it names `peer_id`, chains
    (through the intermediates it sent) to one of `anchors` by issuer signature, and every
    link is valid at `now`. Otherwise AuthenticationFailed saying why."""
    if not cert_payloads:
        pinned = list(config.remote.certs)
        if not pinned:
            raise AuthenticationFailed("peer sent no certificate and none is configured for it")
        certs = pinned
    else:
        certs = [_load(p) for p in cert_payloads[:MAX_CHAIN]]
    end_entity, intermediates = certs[0], certs[1:]
    if not peer_id.is_any and not certificate_matches(end_entity, peer_id):
        raise AuthenticationFailed(f"identity {peer_id} is not in the peer's certificate "
                                   f"'{end_entity.subject.rfc4514_string()}'")
    if config.remote.certs and end_entity not in config.remote.certs:
        raise AuthenticationFailed("peer's certificate is not the one pinned in remote.certs")
    _valid_at(end_entity, now)
    if end_entity in anchors:
        return end_entity
    if not anchors:
        raise AuthenticationFailed("no CA certificate (cacerts / x509ca) to check the peer's certificate against")
    current = end_entity
    pool = list(intermediates)
    for _ in range(MAX_CHAIN):
        anchor = next((a for a in anchors if _issued_by(current, a)), None)
        if anchor is not None:
            _valid_at(anchor, now)
            return end_entity
        issuer = next((c for c in pool if _issued_by(current, c)), None)
        if issuer is None or not _is_ca(issuer):
            break
        _valid_at(issuer, now)
        pool.remove(issuer)
        current = issuer
    raise AuthenticationFailed(f"peer's certificate '{end_entity.subject.rfc4514_string()}' does not chain to a "
                               f"trusted CA")
