"""The IKE_FOLLOWUP_KE exchanges of RFC 9370 §2.2.4, as both tasks that run them (an IKE SA rekey
and CREATE_CHILD_SA) share them: the link data, one additional key exchange per exchange, the
shared secrets SK(1) .. SK(n) collected in order."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .. import payloads as pl
from ..const import DhGroup, ExchangeType, NotifyType, name_of
from ..crypto.dh import KeyExchange
from ..errors import CryptoError, ExchangeFailed
from .base import Task, answer_key_exchange, find_notify, first

if TYPE_CHECKING:
    from ..sa import IkeSA


class FollowupKe(Task):
    """A task whose exchange may be followed by IKE_FOLLOWUP_KE exchanges; the subclass sets the
    state below in its __init__ and makes its SA once `pending_ke` is empty."""

    link: bytes                         # link data of the next IKE_FOLLOWUP_KE, empty before
    pending_ke: list[tuple[int, int]]   # (transform type, method) of the exchanges still to run
    additional: list[bytes]             # SK(1) .. SK(n)
    kex: KeyExchange | None
    reply: list[pl.Payload]

    # the first exchange is CREATE_CHILD_SA, each after it an IKE_FOLLOWUP_KE (RFC 9370 §2.2.4)
    @property
    def exchange(self) -> int:  # type: ignore[override]
        return ExchangeType.IKE_FOLLOWUP_KE if self.link else ExchangeType.CREATE_CHILD_SA

    @property
    def name(self) -> str:  # type: ignore[override]
        return "IKE_FOLLOWUP_KE" if self.link else "CREATE_CHILD_SA"

    def _take_link(self, payloads: list[pl.Payload]) -> None:
        link = find_notify(payloads, NotifyType.ADDITIONAL_KEY_EXCHANGE)
        if link is None or not link.data:
            raise ExchangeFailed("responder chose additional key exchanges but sent no ADDITIONAL_KEY_EXCHANGE "
                                 "notify (RFC 9370 §2.2.4)")
        self.link = bytes(link.data)

    def _new_link(self, ike: IkeSA) -> None:
        # RFC 9370 §2.2.4: link data the initiator copies into its next IKE_FOLLOWUP_KE request
        ike.followups.pop(self.link, None)
        self.link = ike.endpoint.random(8)
        ike.followups[self.link] = self
        self.reply.append(pl.Notify(notify_type=NotifyType.ADDITIONAL_KEY_EXCHANGE, data=self.link))

    def _take_followup_response(self, ike: IkeSA, payloads: list[pl.Payload], now: float) -> bool:
        """The initiator: the KE of an IKE_FOLLOWUP_KE response taken; True when another exchange
        follows (then already queued), False after the last."""
        assert self.kex is not None
        ttype, method = self.pending_ke[0]
        ke = first(payloads, pl.KE)
        if not isinstance(ke, pl.KE) or ke.dh_group != method:
            raise ExchangeFailed(f"IKE_FOLLOWUP_KE response lacks the KE payload of {name_of(DhGroup, method)}")
        try:
            self.additional.append(self.kex.shared_secret(ke.data))
        except CryptoError as err:
            raise ExchangeFailed(f"peer's KE value rejected: {err}") from None
        self.pending_ke.pop(0)
        ike.trace_note(now, "followup_ke", transform=f"ADDKE{ttype - 5}", method=name_of(DhGroup, method))
        if self.pending_ke:
            # RFC 9370 §2.2.4: each response but the last carries new link data for the next exchange
            self._take_link(payloads)
            ike.tm.retry(self, now)
            return True
        return False

    def _answer_followup_request(self, ike: IkeSA, inner: list[pl.Payload], now: float) -> bool:
        """The responder: one IKE_FOLLOWUP_KE request answered with our KE (and new link data when
        another follows); True after the last, when the SA can be made."""
        ttype, method = self.pending_ke[0]
        kex, shared = answer_key_exchange(ike, inner, method, "IKE_FOLLOWUP_KE", name_of(DhGroup, method),
                                          f"ADDKE{ttype - 5}")
        self.additional.append(shared)
        self.pending_ke.pop(0)
        ike.trace_note(now, "followup_ke", transform=f"ADDKE{ttype - 5}", method=name_of(DhGroup, method))
        self.reply = [pl.KE(dh_group=method, data=kex.public_value)]
        if self.pending_ke:
            self._new_link(ike)
            return False
        ike.followups.pop(self.link, None)
        return True
