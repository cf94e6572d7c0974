"""One task per exchange, each with its initiator and responder halves (libcharon's model)."""
from __future__ import annotations

from .. import payloads as pl
from ..const import ExchangeType, NotifyType, ProtocolId
from .base import CHILD_ERRORS, Task, error_notify, find_notify, first, notify
from .child_create import ChildCreate
from .child_delete import ChildDelete
from .ike_auth import AuthRejected, IkeAuth
from .ike_delete import IkeDelete
from .ike_dpd import Dpd
from .ike_init import IkeInit
from .ike_intermediate import IkeIntermediate
from .ike_mobike import MobikeInformational, MobikeUpdate, ReturnRoutability, is_mobike_informational
from .ike_rekey import IkeFollowupKe, IkeRekey


def responder_task(exchange: int, inner: list[pl.Payload]) -> Task | None:
    """The task that answers a request of `exchange` carrying `inner` (None: not an exchange we answer)."""
    if exchange == ExchangeType.IKE_AUTH:
        return IkeAuth()
    if exchange == ExchangeType.IKE_INTERMEDIATE:
        return IkeIntermediate()
    if exchange == ExchangeType.IKE_FOLLOWUP_KE:
        return IkeFollowupKe()
    if exchange == ExchangeType.CREATE_CHILD_SA:
        sa = first(inner, pl.SA)
        if isinstance(sa, pl.SA) and sa.proposals and sa.proposals[0].protocol_id == ProtocolId.IKE:
            return IkeRekey()
        return ChildCreate()
    if exchange == ExchangeType.INFORMATIONAL:
        if find_notify(inner, NotifyType.AUTHENTICATION_FAILED) is not None:
            return AuthRejected()
        deletes = [p for p in inner if isinstance(p, pl.Delete)]
        if any(d.protocol_id == ProtocolId.IKE for d in deletes):
            return IkeDelete()
        if deletes:
            return ChildDelete()
        if is_mobike_informational(inner):
            return MobikeInformational()
        return Dpd()
    return None


__all__ = ["CHILD_ERRORS", "AuthRejected", "ChildCreate", "ChildDelete", "Dpd", "IkeAuth", "IkeDelete", "IkeInit",
           "IkeFollowupKe", "IkeIntermediate", "IkeRekey",
           "MobikeInformational", "MobikeUpdate", "ReturnRoutability", "Task", "error_notify",
           "find_notify", "first", "notify", "responder_task"]
