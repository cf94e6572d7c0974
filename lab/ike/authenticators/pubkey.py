"""Signature authentication (RFC 7296 §2.15) with certificates, and the Digital Signature
method of RFC 7427: we sign with our certificate's key, by a hash the peer announced in
SIGNATURE_HASH_ALGORITHMS (§4); the peer's signature is checked against its certificate,
whose chain must end at one of our trust anchors. The CERT and CERTREQ payloads travel with
this method (RFC 7296 §3.6, §3.7)."""
from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .. import payloads as pl
from ..certs import certreq_hashes, local_chain, verify_peer_certificate
from ..config import AuthConfig
from ..const import AuthMethod, CertEncoding, HashAlgorithm
from ..crypto import AuthenticationFailed, default_scheme, sign_auth, verify_auth
from ..crypto.auth import SignatureScheme
from ..errors import ExchangeFailed
from ..identity import Identity
from .base import Authenticator, auth_octets

if TYPE_CHECKING:
    from ..sa import IkeSA

# RFC 7427 §4: the hashes we accept and announce
OUR_SIGNATURE_HASHES = (HashAlgorithm.SHA2_256, HashAlgorithm.SHA2_384, HashAlgorithm.SHA2_512)


class PubkeyAuthenticator(Authenticator):
    """`round_auth`: the round's side whose certificates sign (ours) or are trusted and pinned
    (the peer's)."""

    def __init__(self, ike: IkeSA, round_auth: AuthConfig) -> None:
        super().__init__(ike)
        self.round_auth = round_auth

    def build(self, id_payload: pl.Identification) -> pl.AUTH:
        ike, auth = self.ike, self.round_auth
        octets = auth_octets(ike, True, id_payload.body())
        if not auth.certs and not auth.pubkeys:
            raise ExchangeFailed(f"connection {ike.config.name} uses pubkey authentication but has no certificate")
        # a certificate's key, else our raw public key's (swanctl.conf pubkeys, RFC 7670)
        key = ike.endpoint.config.secrets.private_key_for(auth.certs[0] if auth.certs else auth.pubkeys[0])
        if key is None:
            raise ExchangeFailed(f"no private key for the certificate of connection {ike.config.name}")
        scheme = default_scheme(key.key)
        if ike.peer_hashes and int(scheme.hash_algorithm) not in ike.peer_hashes:
            # RFC 7427 §4: a hash the peer announced, for the same kind of key
            scheme = next((s for s in SignatureScheme if s.kind == scheme.kind
                           and int(s.hash_algorithm) in ike.peer_hashes), scheme)
        return pl.AUTH(method=AuthMethod.DIGITAL_SIGNATURE, data=sign_auth(AuthMethod.DIGITAL_SIGNATURE, key.key,
                                                                           octets, scheme))

    def verify(self, id_payload: pl.Identification, auth: pl.AUTH, payloads: Sequence[pl.Payload] = ()) -> None:
        ike = self.ike
        octets = auth_octets(ike, False, id_payload.body())
        if auth.method == AuthMethod.SHARED_KEY_MIC:
            raise AuthenticationFailed("peer used a pre-shared key, connection expects a signature")
        certs = [p for p in payloads if isinstance(p, pl.CERT)]
        if self.round_auth.pubkeys and not self.round_auth.certs:
            self._verify_raw(id_payload, auth, octets, certs)
            return
        clock = ike.endpoint.wall_clock
        if clock is None:
            raise AuthenticationFailed("no wall clock given to the endpoint: certificate validity cannot be checked")
        anchors = list(self.round_auth.cacerts) or ike.endpoint.config.trust_anchors(ike.config)
        end_entity = verify_peer_certificate(certs, SimpleNamespace(remote=self.round_auth), anchors,
                                             Identity.from_payload(id_payload), clock(),
                                             crls=ike.endpoint.config.crls, revocation=self.round_auth.revocation,
                                             uri_issuers=ike.endpoint.config.crl_uri_issuers)
        verify_auth(auth.method, end_entity, auth.data, octets, accepted_hashes=OUR_SIGNATURE_HASHES)
        self.end_entity = end_entity  # the certificate that signed, for a client profile's own checks


    def _verify_raw(self, id_payload: pl.Identification, auth: pl.AUTH, octets: bytes, certs: list[pl.CERT]) -> None:
        """The peer's signature against the raw public keys configured for it (RFC 7670): no
        chain, no CA; the key is trusted for the configured identity only."""
        peer_id, wanted = Identity.from_payload(id_payload), self.round_auth.id
        if wanted is not None and not peer_id.matches(wanted):
            raise AuthenticationFailed(f"identity {peer_id} is not {wanted}, whom remote.pubkeys trusts")
        keys = list(self.round_auth.pubkeys)
        raw = [c for c in certs if c.encoding == CertEncoding.RAW_PUBLIC_KEY]
        if raw:  # RFC 7670 §3: a Raw Public Key CERT payload must be one of the trusted keys
            sent = {bytes(c.data) for c in raw}
            keys = [k for k in keys if k.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo) in sent]
        for key in keys:
            try:
                verify_auth(auth.method, key, auth.data, octets, accepted_hashes=OUR_SIGNATURE_HASHES)
                return
            except AuthenticationFailed:
                continue
        raise AuthenticationFailed("the peer's signature does not verify with any raw public key in remote.pubkeys")


def cert_payloads(ike: IkeSA, auth: AuthConfig) -> list[pl.Payload]:
    """Our certificates for a round of `auth` (RFC 7296 §3.6), as swanctl.conf send_cert says: our
    own, then the intermediate CAs of x509ca/ that lead from it towards the root."""
    if str(auth.method) != "pubkey" or not auth.certs:
        return []
    if str(ike.config.send_cert) == "never":
        return []
    if str(ike.config.send_cert) == "ifasked" and not ike.peer_certreq:
        return []
    chain = local_chain(auth.certs, ike.endpoint.config.cacerts)
    return [pl.CERT(encoding=CertEncoding.X509_SIGNATURE, data=c.public_bytes(Encoding.DER)) for c in chain]


def certreq_payloads(ike: IkeSA) -> list[pl.Payload]:
    """CERTREQ with the hashes of the trust anchors we accept the peer's certificate from (RFC 7296 §3.7)."""
    data = certreq_hashes(ike.endpoint.config.trust_anchors(ike.config))
    return [pl.CERTREQ(encoding=CertEncoding.X509_SIGNATURE, data=data)] if data else []
