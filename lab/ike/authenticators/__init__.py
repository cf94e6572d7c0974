"""Authenticators, as in strongSwan's libcharon (sa/ikev2/authenticators): one per way of
proving an identity in IKE_AUTH, each building our AUTH payload and verifying the peer's
(lab.ike.authenticators.base.Authenticator). The IKE_AUTH task picks one per authentication
round (RFC 4739) with `builder` and `verifier`; an EAP round (RFC 7296 §2.16) runs an
EapAuthenticator, which also carries the EAP conversation."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import AuthClass, AuthConfig
from ..crypto import AuthenticationFailed
from ..identity import Identity
from .base import Authenticator, auth_octets
from .eap import EAP_METHODS, EapAuthenticator, eap_identity_octets, identity_from_eap
from .psk import PskAuthenticator
from .pubkey import OUR_SIGNATURE_HASHES, PubkeyAuthenticator, cert_payloads, certreq_payloads

if TYPE_CHECKING:
    from ..sa import IkeSA


def builder(ike: IkeSA, round_auth: AuthConfig, identity: Identity | None = None) -> Authenticator:
    """The authenticator of our AUTH in a round of `round_auth` (psk or pubkey) as `identity`
    (default the IKE SA's)."""
    if str(round_auth.method) == "psk":
        return PskAuthenticator(ike, identity)
    return PubkeyAuthenticator(ike, round_auth)


def verifier(ike: IkeSA, round_auth: AuthConfig) -> Authenticator:
    """The authenticator that checks the peer's AUTH in its round of `round_auth`; raises
    AuthenticationFailed for an EAP round, which takes no AUTH payload from the initiator."""
    if AuthClass(round_auth.method).is_eap:
        raise AuthenticationFailed(f"peer sent an AUTH payload, the connection expects {round_auth.method} "
                                   f"(RFC 7296 §2.16: no AUTH in the first IKE_AUTH request)")
    if str(round_auth.method) == "psk":
        return PskAuthenticator(ike)
    return PubkeyAuthenticator(ike, round_auth)


__all__ = ["EAP_METHODS", "OUR_SIGNATURE_HASHES", "Authenticator", "EapAuthenticator", "PskAuthenticator",
           "PubkeyAuthenticator", "auth_octets", "builder", "cert_payloads", "certreq_payloads",
           "eap_identity_octets", "identity_from_eap", "verifier"]
