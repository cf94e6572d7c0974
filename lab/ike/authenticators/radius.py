"""auth = eap-radius (strongSwan's eap-radius plugin): the responder's EAP round carried to a
RADIUS server by the relay (lab.ike.eap.radius_relay); the AUTH payloads after it are keyed
with the MSK the server sent in its MS-MPPE keys (RFC 7296 §2.16, RFC 2548 §2.4.2), as any
EAP round's are (EapAuthenticator)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import RadiusServer
from ..eap.radius_relay import EapRadiusRelay, RelayOutcome
from ..identity import Identity
from .eap import EapAuthenticator, eap_identity_octets

if TYPE_CHECKING:
    from ..sa import IkeSA


class RadiusAuthenticator(EapAuthenticator):
    """One peer's EAP round relayed to `server`; `outcome` is the server's last word."""

    def __init__(self, ike: IkeSA, server: RadiusServer, peer_id: Identity) -> None:
        super().__init__(ike)
        self.server_config = server
        settings = ike.endpoint.config.radius
        nas = settings.nas_identifier.encode() if settings is not None and settings.nas_identifier else None
        self.relay = EapRadiusRelay(eap_identity_octets(peer_id), server.secret, ike.endpoint.random,
                                    nas_identifier=nas, nas_ip=ike.local[0] if ":" not in ike.local[0] else None,
                                    calling_station=ike.remote[0].encode(), called_station=ike.local[0].encode())
        self.outcome: RelayOutcome | None = None

    def take(self, outcome: RelayOutcome) -> None:
        self.outcome = outcome
        if outcome.done and outcome.accepted:
            self.msk = outcome.msk

    @property
    def succeeded(self) -> bool:
        return self.outcome is not None and self.outcome.done and self.outcome.accepted

    @property
    def failed(self) -> str | None:
        if self.outcome is None or not self.outcome.done or self.outcome.accepted:
            return None
        said = f" ({self.outcome.reply_message})" if self.outcome.reply_message else ""
        return f"RADIUS server {self.server_config.name} answered Access-Reject{said}"
