"""A task is one exchange with both halves, as in strongSwan's libcharon: the initiator
builds the request (`build_i`) and processes the response (`process_i`); the responder
processes the request (`process_r`), builds the response (`build_r`) and may act once it is
sent (`responded`). The task manager (lab.ike.task_manager) runs them."""
from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, TypeVar

from .. import payloads as pl
from ..const import ExchangeType, NotifyType, name_of
from ..errors import CryptoError, ExchangeFailed
from ..events import NegotiationFailed

if TYPE_CHECKING:
    from ..crypto.dh import KeyExchange
    from ..sa import IkeSA

CHILD_ERRORS = (NotifyType.NO_PROPOSAL_CHOSEN, NotifyType.TS_UNACCEPTABLE, NotifyType.SINGLE_PAIR_REQUIRED,
                NotifyType.INTERNAL_ADDRESS_FAILURE, NotifyType.FAILED_CP_REQUIRED, NotifyType.INVALID_SELECTORS,
                NotifyType.NO_ADDITIONAL_SAS)

P = TypeVar("P", bound=pl.Payload)


class Task:
    """One exchange. `exchange` is its type; `name` what traces and events call it."""

    exchange: int = ExchangeType.INFORMATIONAL
    name = "task"

    # ---------------------------------------------------------------- initiator
    def build_i(self, ike: IkeSA, now: float) -> list[pl.Payload] | None:
        """The request's payloads; None: nothing to do any more (the task is dropped)."""
        raise NotImplementedError

    def process_i(self, ike: IkeSA, payloads: list[pl.Payload], now: float) -> None:
        raise NotImplementedError

    def abort(self, ike: IkeSA, reason: str, now: float) -> None:
        """The exchange we initiated will not complete (timeout, SA deleted)."""

    # ---------------------------------------------------------------- responder
    def process_r(self, ike: IkeSA, payloads: list[pl.Payload], now: float) -> None:
        """Take in the request; raise ExchangeFailed(notify=...) to answer with that notify."""
        raise NotImplementedError

    def build_r(self, ike: IkeSA, now: float) -> list[pl.Payload]:
        raise NotImplementedError

    def responded(self, ike: IkeSA, now: float) -> None:
        """The response is on its way."""

    # ---------------------------------------------------------------- both
    def negotiation_failed(self, ike: IkeSA, reason: str) -> None:
        """Tell the endpoint's owner that this exchange set up less than it was for (a CHILD SA
        not created, a rekey refused), as the task manager does for one that failed outright."""
        ike.endpoint.emit(NegotiationFailed(ike.unique_id, ike.config.name, name_of(ExchangeType, self.exchange),
                                            reason))


def new_nonce(ike: IkeSA) -> bytes:
    """A fresh nonce of the configured size (RFC 7296 §2.10: at least 128 bits, random)."""
    return ike.endpoint.random(ike.endpoint.settings.nonce_size)


def new_key_exchange(ike: IkeSA, group: int) -> KeyExchange:
    """A fresh private value in `group` for a KE payload (RFC 7296 §1.2, §1.3), drawn from the
    endpoint's random source like the nonces (so a seeded run draws the same)."""
    return ike.endpoint.random.key_exchange(group)


def answer_key_exchange(ike: IkeSA, payloads: Iterable[pl.Payload], method: int, request: str, wanted: str,
                        label: str) -> tuple[KeyExchange, bytes]:
    """The responder's side of one key exchange of `method` (an additional one of RFC 9370): the
    request's KE payload must be of it (else INVALID_SYNTAX: "`request` request without a KE
    payload of `wanted`"); our fresh key exchange and the shared secret. A KE payload of the wrong
    length is INVALID_SYNTAX too (draft-ietf-ipsecme-ikev2-mlkem), said as "`label`: why"."""
    ke = first(payloads, pl.KE)
    if not isinstance(ke, pl.KE) or ke.dh_group != method:
        raise ExchangeFailed(f"{request} request without a KE payload of {wanted}", NotifyType.INVALID_SYNTAX)
    try:
        kex = new_key_exchange(ike, method)
        return kex, kex.shared_secret(ke.data)
    except CryptoError as err:
        raise ExchangeFailed(f"{label}: {err}", NotifyType.INVALID_SYNTAX) from None


def find_notify(payloads: Iterable[pl.Payload], notify_type: int) -> pl.Notify | None:
    return next((p for p in payloads if isinstance(p, pl.Notify) and p.notify_type == notify_type), None)


def first(payloads: Iterable[pl.Payload], kind: type[P]) -> P | None:
    return next((p for p in payloads if isinstance(p, kind)), None)


def error_notify(payloads: Iterable[pl.Payload]) -> pl.Notify | None:
    return next((p for p in payloads if isinstance(p, pl.Notify) and p.is_error), None)


def notify(kind: int, data: bytes = b"", protocol: int = 0, spi: bytes = b"") -> pl.Notify:
    return pl.Notify(notify_type=kind, data=data, protocol_id=protocol, spi=spi)
