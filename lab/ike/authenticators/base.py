"""What every authenticator shares: the interface the IKE_AUTH task uses, and the octets an
AUTH payload signs or MACs (RFC 7296 §2.15)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .. import payloads as pl
from ..crypto import signed_octets

if TYPE_CHECKING:
    from ..sa import IkeSA


class Authenticator:
    """One side's proof of identity in one authentication round (libcharon's authenticator_t):
    `build` makes our AUTH payload over our ID payload, `verify` checks the peer's AUTH over
    its ID payload and raises AuthenticationFailed (or CryptoError) when it does not hold."""

    def __init__(self, ike: IkeSA) -> None:
        self.ike = ike

    def build(self, id_payload: pl.Identification) -> pl.AUTH:
        raise NotImplementedError

    def verify(self, id_payload: pl.Identification, auth: pl.AUTH, payloads: Sequence[pl.Payload] = ()) -> None:
        raise NotImplementedError


def auth_octets(ike: IkeSA, ours: bool, id_body: bytes) -> bytes:
    """RFC 7296 §2.15: the sender's IKE_SA_INIT message, the other side's nonce and
    prf(SK_p, ID') of the sender; `ours`: we are the sender. After IKE_INTERMEDIATE exchanges,
    IntAuth follows (RFC 9242 §3.3.2)."""
    assert ike.algorithms is not None and ike.keys is not None
    keys = ike.keys
    if ours == ike.is_initiator:
        message, nonce, sk_p = ike.init_request, ike.nonce_r, keys.sk_pi
    else:
        message, nonce, sk_p = ike.init_response, ike.nonce_i, keys.sk_pr
    # RFC 9242 §3.3.2: InitiatorSignedOctets = RealMessage1 | NonceRData | MACedIDForI | IntAuth
    return signed_octets(message, nonce, ike.prf_id, sk_p, id_body) + ike.int_auth()
