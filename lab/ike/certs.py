"""Checking a peer's certificate chain against configured trust anchors (RFC 7296 §3.6,
§3.7, RFC 5280 in the small: issuer signatures, validity, CA constraints, revocation by the
CRLs handed in), and the chain we send of our own. Pure: CRLs arrive as parsed objects; nothing
here fetches one."""
from __future__ import annotations

import datetime
import hashlib
from collections.abc import Sequence
from typing import Protocol

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


def _name(cert_or_name: x509.Certificate | x509.Name) -> str:
    name = cert_or_name if isinstance(cert_or_name, x509.Name) else cert_or_name.subject
    return name.rfc4514_string()


def crl_signed_by(crl: x509.CertificateRevocationList, ca: x509.Certificate) -> bool:
    """RFC 5280 §6.3.3 (f), (g): the CRL's issuer is the CA and its signature verifies with the CA's key."""
    if crl.issuer != ca.subject:
        return False
    try:
        return crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    except (TypeError, UnsupportedAlgorithm):
        return False


def _not_revoked(cert: x509.Certificate, issuer: x509.Certificate, crls: Sequence[x509.CertificateRevocationList],
                 now: datetime.datetime, revocation: str = "relaxed", uri_issuers: Sequence[x509.Name] = ()) -> None:
    """AuthenticationFailed if a CRL that `issuer` signed lists `cert` (RFC 5280 §6.3.3: the CRL's
    issuer is the certificate's, its signature verifies with the issuer's key). A CRL of another
    CA, or one whose signature does not verify, is not used. Without any CRL for the issuer the
    certificate passes (strongSwan's default, revocation = relaxed); with revocation = strict it
    fails, with ifuri it fails when a CRL URI is known for it (its CRL distribution points
    extension, RFC 5280 §4.2.1.13, or crl_uris of its CA's authority section) (swanctl.conf(5))."""
    checked = False
    for crl in crls:
        if not crl_signed_by(crl, issuer):
            continue
        # a CRL past its nextUpdate still revokes, but is no proof of good standing (charon: stale)
        checked = checked or crl.next_update_utc is None or crl.next_update_utc >= now
        entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        if entry is None or entry.revocation_date_utc > now:
            continue
        try:
            flag = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
            reason = flag.name.replace("_", " ")  # RFC 5280 §5.3.1 keyCompromise: "key compromise", as charon
        except x509.ExtensionNotFound:
            reason = "unspecified"
        raise AuthenticationFailed(f"certificate '{_name(cert)}' (serial {cert.serial_number:#x}) was revoked on "
                                   f"{entry.revocation_date_utc:%Y-%m-%d %H:%M} UTC, reason: {reason}, by the CRL of "
                                   f"'{_name(issuer)}'")
    if checked or revocation == "relaxed":
        return
    try:
        cert.extensions.get_extension_for_class(x509.CRLDistributionPoints)
        has_uri = True
    except x509.ExtensionNotFound:
        has_uri = issuer.subject in uri_issuers
    if revocation == "strict" or has_uri:
        raise AuthenticationFailed(f"no revocation information for certificate '{_name(cert)}': no CRL of "
                                   f"'{_name(issuer)}' at hand" + (" although a CRL URI is known" if has_uri else "")
                                   + f" (revocation = {revocation} refuses it; relaxed would accept it)")


def local_chain(certs: Sequence[x509.Certificate], cas: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """Our certificates as sent in CERT payloads (RFC 7296 §3.6): `certs` (the end entity first, any
    intermediates written after it in the same file), then the intermediate CAs among `cas` that
    continue the chain, up to and without the self-signed root (strongSwan sends them so too)."""
    chain = list(certs)
    if not chain:
        return chain
    current = chain[-1]
    for _ in range(MAX_CHAIN):
        issuer = next((c for c in cas if c not in chain and _issued_by(current, c) and _is_ca(c)), None)
        if issuer is None or issuer.subject == issuer.issuer:
            break
        chain.append(issuer)
        current = issuer
    return chain[:MAX_CHAIN]


class _PinnedCerts(Protocol):
    @property
    def certs(self) -> Sequence[x509.Certificate]: ...


class PeerConfig(Protocol):
    """What the check reads of a connection: the certificates pinned for the peer (remote.certs)."""

    @property
    def remote(self) -> _PinnedCerts: ...


def verify_peer_certificate(cert_payloads: Sequence[pl.CERT], config: PeerConfig, anchors: Sequence[x509.Certificate],
                            peer_id: Identity, now: datetime.datetime,
                            crls: Sequence[x509.CertificateRevocationList] = (), revocation: str = "relaxed",
                            uri_issuers: Sequence[x509.Name] = ()) -> x509.Certificate:
    """The peer's end-entity certificate once it checks out: it names `peer_id`, chains
    (through the intermediates it sent) to one of `anchors` by issuer signature, every link is
    valid at `now` and none is revoked by one of `crls`. Otherwise AuthenticationFailed saying why."""
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
            _not_revoked(current, anchor, crls, now, revocation, uri_issuers)
            return end_entity
        issuer = next((c for c in pool if _issued_by(current, c)), None)
        if issuer is None or not _is_ca(issuer):
            break
        _valid_at(issuer, now)
        _not_revoked(current, issuer, crls, now, revocation, uri_issuers)
        pool.remove(issuer)
        current = issuer
    raise AuthenticationFailed(f"peer's certificate '{end_entity.subject.rfc4514_string()}' does not chain to a "
                               f"trusted CA: its issuer '{_name(current.issuer)}' is neither a trusted CA here nor "
                               f"among the {len(certs)} certificate(s) the peer sent")
