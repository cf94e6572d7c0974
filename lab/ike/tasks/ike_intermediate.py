"""IKE_INTERMEDIATE (RFC 9242) carrying the additional key exchanges of RFC 9370: one exchange
per negotiated Additional Key Exchange transform, in the order of their transform types, after
IKE_SA_INIT and before IKE_AUTH (§2.2.2). The initiator sends its KE payload, the responder
answers with its own; both then derive SKEYSEED and the keys anew from SK_d and the new shared
secret. What each message holds goes into the AUTH payload as IntAuth (RFC 9242 §3.3.2, done
where the messages are sealed and opened: lab.ike.task_manager)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .. import payloads as pl
from ..const import DhGroup, ExchangeType, NotifyType, name_of
from ..errors import CryptoError, ExchangeFailed
from .base import Task, answer_key_exchange, error_notify, first, new_key_exchange

if TYPE_CHECKING:
    from ..crypto.dh import KeyExchange
    from ..sa import IkeSA


def _label(ttype: int, method: int) -> str:
    return f"ADDKE{ttype - 5} {name_of(DhGroup, method)}"


class IkeIntermediate(Task):
    exchange = ExchangeType.IKE_INTERMEDIATE
    name = "IKE_INTERMEDIATE"

    def __init__(self) -> None:
        self.kex: KeyExchange | None = None
        self.reply: list[pl.Payload] = []
        self.shared = b""

    # ---------------------------------------------------------------- initiator

    def build_i(self, ike: IkeSA, now: float) -> list[pl.Payload]:
        if not ike.additional_pending:
            raise ExchangeFailed("IKE_INTERMEDIATE without an additional key exchange to run")
        _, method = ike.additional_pending[0]
        self.kex = new_key_exchange(ike, method)
        # RFC 9370 §2.2.2: the request carries the initiator's KE payload of the next additional key exchange
        return [pl.KE(dh_group=method, data=self.kex.public_value)]

    def process_i(self, ike: IkeSA, payloads: list[pl.Payload], now: float) -> None:
        assert self.kex is not None
        ttype, method = ike.additional_pending[0]
        error = error_notify(payloads)
        if error is not None:
            raise ExchangeFailed(f"peer answered {name_of(NotifyType, error.notify_type)} to the "
                                 f"{_label(ttype, method)} key exchange")
        ke = first(payloads, pl.KE)
        if not isinstance(ke, pl.KE):
            raise ExchangeFailed("IKE_INTERMEDIATE response lacks the KE payload")
        if ke.dh_group != method:
            raise ExchangeFailed(f"responder's KE is {name_of(DhGroup, ke.dh_group)}, not {name_of(DhGroup, method)}")
        try:
            shared = self.kex.shared_secret(ke.data)
        except CryptoError as err:
            raise ExchangeFailed(f"responder's KE value rejected: {err}") from None
        ike.additional_pending.pop(0)
        ike.intermediate_count += 1
        # RFC 9370 §2.2.2: new keys after each exchange; the IntAuth of this response was taken under the old ones
        ike.update_keys(shared, now)
        ike.trace_note(now, "additional_ke", transform=f"ADDKE{ttype - 5}", method=name_of(DhGroup, method))

    # ---------------------------------------------------------------- responder

    def process_r(self, ike: IkeSA, payloads: list[pl.Payload], now: float) -> None:
        try:
            self._process_r(ike, payloads, now)
        except ExchangeFailed as err:
            ike.trace_note(now, "ike_intermediate_refused", reason=err.reason)
            raise

    def _process_r(self, ike: IkeSA, payloads: list[pl.Payload], now: float) -> None:
        if not ike.additional_pending:
            # RFC 9242 §3.2: IKE_INTERMEDIATE is for data both agreed to exchange; we have none left
            raise ExchangeFailed("IKE_INTERMEDIATE request with no additional key exchange pending",
                                 NotifyType.INVALID_SYNTAX)
        ttype, method = ike.additional_pending[0]
        # RFC 9370 §2.2.2: each request carries the next negotiated method, in the order of the transform
        # types; we answer anything else with INVALID_SYNTAX (strongSwan 6 answers NO_PROPOSAL_CHOSEN)
        self.kex, self.shared = answer_key_exchange(ike, payloads, method, "IKE_INTERMEDIATE", _label(ttype, method),
                                                    _label(ttype, method))
        self.reply = [pl.KE(dh_group=method, data=self.kex.public_value)]

    def build_r(self, ike: IkeSA, now: float) -> list[pl.Payload]:
        return self.reply

    def responded(self, ike: IkeSA, now: float) -> None:
        ttype, method = ike.additional_pending.pop(0)
        ike.intermediate_count += 1
        # RFC 9370 §2.2.2: the response went out under the old keys; the new ones protect the next request
        ike.update_keys(self.shared, now, deferred=True)
        ike.trace_note(now, "additional_ke", transform=f"ADDKE{ttype - 5}", method=name_of(DhGroup, method))
