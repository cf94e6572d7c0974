"""Pre-shared key authentication (RFC 7296 §2.15): AUTH = prf(prf(Shared Secret, "Key Pad for
IKEv2"), <signed octets>), the secret found in the secrets section by both identities."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .. import payloads as pl
from ..const import AuthMethod, name_of
from ..crypto import AuthenticationFailed, psk_auth_data, verify_psk_auth
from ..errors import ExchangeFailed
from ..identity import Identity
from .base import Authenticator, auth_octets

if TYPE_CHECKING:
    from ..sa import IkeSA


class PskAuthenticator(Authenticator):
    """`local_id`: the identity we prove in this round (default the IKE SA's)."""

    def __init__(self, ike: IkeSA, local_id: Identity | None = None) -> None:
        super().__init__(ike)
        self.local_id = local_id or ike.local_id

    def build(self, id_payload: pl.Identification) -> pl.AUTH:
        ike = self.ike
        octets = auth_octets(ike, True, id_payload.body())
        assert ike.algorithms is not None
        secret = ike.endpoint.config.find_psk(self.local_id, ike.remote_id or ike.config.remote_identity)
        if secret is None:
            raise ExchangeFailed(f"no pre-shared key for {self.local_id} - {ike.config.remote_identity} "
                                 f"in the secrets section")
        return pl.AUTH(method=AuthMethod.SHARED_KEY_MIC, data=psk_auth_data(ike.prf_id, secret, octets))

    def verify(self, id_payload: pl.Identification, auth: pl.AUTH, payloads: Sequence[pl.Payload] = ()) -> None:
        ike = self.ike
        octets = auth_octets(ike, False, id_payload.body())
        assert ike.algorithms is not None
        if auth.method != AuthMethod.SHARED_KEY_MIC:
            raise AuthenticationFailed(f"peer used {name_of(AuthMethod, auth.method)}, connection expects a PSK")
        peer_id = Identity.from_payload(id_payload)
        secret = ike.endpoint.config.find_psk(ike.local_id, peer_id)
        if secret is None:
            raise AuthenticationFailed(f"no pre-shared key for {ike.local_id} - {peer_id}")
        verify_psk_auth(ike.prf_id, secret, octets, auth.data)
