"""Post-quantum preshared keys (RFC 8784): a PPK, known to both peers by its PPK_ID, mixed into
SK_d, SK_pi and SK_pr, so that the CHILD_SAs' keys (and every rekeyed IKE SA's) stay safe from
someone who records the exchange now and breaks its Diffie-Hellman later.

swanctl.conf as strongSwan writes it: `ppk_id` and `ppk_required` in a connection, the key in a
`secrets { ppk-x { id = ... secret = ... } }` section.

    IKE_SA_INIT   initiator with a ppk_id: N(USE_PPK); a responder that has PPKs answers N(USE_PPK)
    IKE_AUTH      initiator: AUTH over SK_pi', N(PPK_IDENTITY, 2 | PPK_ID) and, unless
                  ppk_required, N(NO_PPK_AUTH, AUTH data over the plain SK_pi)
                  responder that has the PPK: verifies with SK_pi', answers with SK_pr' and
                  N(PPK_IDENTITY); one without it: verifies NO_PPK_AUTH with SK_pi and answers
                  without the PPK (fallback), or AUTHENTICATION_FAILED when it requires one

SK_d' = prf+(PPK, SK_d), SK_pi' = prf+(PPK, SK_pi), SK_pr' = prf+(PPK, SK_pr), each as long as
before (RFC 8784 §3); SK_e and SK_a stay as they are. The IKE_AUTH task calls the four hooks
below; nothing else of the exchange changes.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from . import payloads as pl
from .const import NotifyType
from .crypto.prf import prf_plus
from .errors import ExchangeFailed
from .identity import Identity

if TYPE_CHECKING:
    from .config import IkeConfig
    from .crypto import IkeSaKeys
    from .sa import IkeSA

PPK_ID_OPAQUE, PPK_ID_FIXED = 1, 2  # RFC 8784 §5.1; strongSwan and libreswan send and take FIXED


@dataclasses.dataclass
class PpkState:
    """What one IKE SA knows about PPKs while it is set up."""

    peer_supports: bool = False        # the peer sent USE_PPK in IKE_SA_INIT
    we_offered: bool = False           # we sent USE_PPK
    ppk_id: bytes = b""                # the PPK_ID in use (initiator: ours; responder: the peer's)
    plain_keys: IkeSaKeys | None = None         # the IKE SA keys before the PPK (for NO_PPK_AUTH and a fallback)
    used: bool = False                 # the IKE SA's SK_d, SK_pi, SK_pr have the PPK in them


def state(ike: IkeSA) -> PpkState:
    found = getattr(ike, "ppk_state", None)
    if found is None:
        found = PpkState()
        ike.ppk_state = found  # type: ignore[attr-defined]
    return found


def used(ike: IkeSA) -> bool:
    """The IKE SA's keys have a PPK in them."""
    found = getattr(ike, "ppk_state", None)
    return bool(found and found.used)


def mixed_keys(ike: IkeSA, ppk: bytes) -> IkeSaKeys:
    """The IKE SA's keys with the PPK mixed into SK_d, SK_pi and SK_pr (RFC 8784 §3)."""
    assert ike.algorithms is not None and ike.keys is not None and ike.algorithms.prf is not None
    keys, prf = ike.keys, ike.algorithms.prf
    return dataclasses.replace(keys, sk_d=prf_plus(prf, ppk, keys.sk_d, len(keys.sk_d)),
                               sk_pi=prf_plus(prf, ppk, keys.sk_pi, len(keys.sk_pi)),
                               sk_pr=prf_plus(prf, ppk, keys.sk_pr, len(keys.sk_pr)))


def _id_octets(identity: Identity) -> bytes:
    """The PPK_ID octets of a configured ppk_id, as strongSwan sends them (the identity's encoding)."""
    return identity.to_payload(pl.IDi).data


def _find(ike: IkeSA, ppk_id: bytes) -> bytes | None:
    return ike.endpoint.config.secrets.find_ppk(ppk_id)


def _notify(kind: int, data: bytes = b"") -> pl.Notify:
    return pl.Notify(notify_type=kind, data=data)


def _has(payloads: Sequence[pl.Payload], kind: int) -> pl.Notify | None:
    return next((p for p in payloads if isinstance(p, pl.Notify) and p.notify_type == kind), None)


# ------------------------------------------------------------------ IKE_SA_INIT


def init_request(ike: IkeSA) -> list[pl.Payload]:
    """Initiator: N(USE_PPK) when the connection names a ppk_id (RFC 8784 §3)."""
    if ike.config.ppk_id is None:
        return []
    state(ike).we_offered = True
    return [_notify(NotifyType.USE_PPK)]


def init_response_received(ike: IkeSA, payloads: Sequence[pl.Payload]) -> None:
    """Initiator: a responder without USE_PPK cannot use the PPK; with ppk_required that ends
    the SA here (RFC 8784 §3: the initiator MUST abort)."""
    found = state(ike)
    found.peer_supports = _has(payloads, NotifyType.USE_PPK) is not None
    if ike.config.ppk_required and not found.peer_supports:
        raise ExchangeFailed("ppk_required = yes but the responder did not answer USE_PPK (RFC 8784 §3)")


def init_reply(ike: IkeSA, request: Sequence[pl.Payload]) -> list[pl.Payload]:
    """Responder: N(USE_PPK) back when the initiator sent it and we have PPKs."""
    found = state(ike)
    found.peer_supports = _has(request, NotifyType.USE_PPK) is not None
    if not found.peer_supports or not ike.endpoint.config.secrets.ppk:
        return []
    found.we_offered = True
    return [_notify(NotifyType.USE_PPK)]


# ------------------------------------------------------------------ IKE_AUTH, initiator


def initiator_auth(ike: IkeSA, make_auth: Callable[[], pl.AUTH]) -> list[pl.Payload]:
    """Our AUTH, and with a PPK in use N(PPK_IDENTITY) and N(NO_PPK_AUTH) after it (RFC 8784 §3)."""
    found = state(ike)
    config = ike.config
    if config.ppk_id is None or not (found.we_offered and found.peer_supports):
        if config.ppk_required:
            raise ExchangeFailed("ppk_required = yes but no PPK can be used with this peer")
        return [make_auth()]
    ppk_id = _id_octets(config.ppk_id)
    ppk = _find(ike, ppk_id)
    if ppk is None:
        if config.ppk_required:
            raise ExchangeFailed(f"ppk_required = yes but there is no PPK for '{config.ppk_id}' in the secrets "
                                 f"section (secrets {{ ppk-x {{ id = {config.ppk_id} secret = ... }} }})")
        return [make_auth()]
    found.plain_keys, found.ppk_id = ike.keys, ppk_id
    extra = []
    if not config.ppk_required:
        # the AUTH a responder without the PPK can check instead (over the plain SK_pi)
        extra.append(_notify(NotifyType.NO_PPK_AUTH, make_auth().data))
    ike.keys = mixed_keys(ike, ppk)
    found.used = True
    return [make_auth(), _notify(NotifyType.PPK_IDENTITY, bytes([PPK_ID_FIXED]) + ppk_id), *extra]


def initiator_response(ike: IkeSA, payloads: Sequence[pl.Payload]) -> None:
    """The responder's first IKE_AUTH answer: with N(PPK_IDENTITY) it used the PPK; without it
    it fell back to NO_PPK_AUTH, which we take back (the plain keys) unless ppk_required."""
    found = state(ike)
    if not found.used:
        return
    if _has(payloads, NotifyType.PPK_IDENTITY) is not None:
        return
    if ike.config.ppk_required:
        raise ExchangeFailed("the responder did not use the PPK (no PPK_IDENTITY in its IKE_AUTH response) "
                             "and ppk_required = yes")
    ike.keys, found.used = found.plain_keys, False


# ------------------------------------------------------------------ IKE_AUTH, responder


def responder_auth(ike: IkeSA, config: IkeConfig, request: Sequence[pl.Payload],
                   auth: pl.AUTH | None) -> tuple[pl.AUTH | None, list[pl.Payload]]:
    """Which AUTH of the request to verify, and what our answer adds (N(PPK_IDENTITY)); raises
    ExchangeFailed for AUTHENTICATION_FAILED. With the peer's PPK known the IKE SA's keys get it
    before anything is verified or built (RFC 8784 §3)."""
    found = state(ike)
    identity = _has(request, NotifyType.PPK_IDENTITY)
    no_ppk_auth = _has(request, NotifyType.NO_PPK_AUTH)
    if identity is None or not found.we_offered or auth is None:
        if config.ppk_required:
            raise ExchangeFailed(f"connection {config.name} requires a PPK (ppk_required = yes), the peer used none")
        return auth, []
    data = identity.data
    ppk = None
    if len(data) >= 2 and data[0] in (PPK_ID_OPAQUE, PPK_ID_FIXED):
        ppk = _find(ike, data[1:])
    if ppk is not None:
        found.plain_keys, found.ppk_id, found.used = ike.keys, data[1:], True
        ike.keys = mixed_keys(ike, ppk)
        return auth, [_notify(NotifyType.PPK_IDENTITY)]
    if config.ppk_required:
        raise ExchangeFailed(f"no PPK for the PPK_ID the peer sent ({data[1:]!r}) and connection {config.name} "
                             f"requires one")
    if no_ppk_auth is None:
        # RFC 8784 §3: without the PPK and without NO_PPK_AUTH the AUTH cannot be checked
        raise ExchangeFailed(f"no PPK for the PPK_ID the peer sent ({data[1:]!r}) and no NO_PPK_AUTH to fall back to")
    return pl.AUTH(method=auth.method, data=no_ppk_auth.data), []
