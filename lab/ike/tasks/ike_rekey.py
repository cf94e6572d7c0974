"""CREATE_CHILD_SA rekeying the IKE SA (RFC 7296 §1.3.2, §2.18): a new IKE SA with new SPIs
and keys from SK_d, the CHILD SAs move over, the rekey initiator deletes the old one; the
collision rules of §2.8.2 and §2.25.2. Additional key exchanges (RFC 9370 §2.2.4): CREATE_CHILD_SA
carries the first KE, then one IKE_FOLLOWUP_KE exchange per additional one, linked by the link data
of the ADDITIONAL_KEY_EXCHANGE notify; SKEYSEED = prf(SK_d, SK(0) | Ni | Nr | SK(1) | ... | SK(n))."""
from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from .. import payloads as pl
from ..const import ExchangeType, NotifyType, ProtocolId, name_of
from ..crypto.dh import KeyExchange
from ..errors import CryptoError, ExchangeFailed
from ..proposals import (
    ChosenAlgorithms,
    has_additional_ke,
    promote_dh_group,
    proposal_dh_groups,
    select_proposal,
    without_additional_ke,
)
from ..states import IkeState
from .base import Task, error_notify, find_notify, first, new_key_exchange, new_nonce
from .child_create import ChildCreate, check_create_child_sa_request
from .child_delete import ChildDelete
from .followup import FollowupKe

if TYPE_CHECKING:
    from ..sa import IkeSA


class IkeRekey(FollowupKe):

    def __init__(self) -> None:
        self.spi = b""
        self.nonce = b""
        self.kex: KeyExchange | None = None
        self.group: int | None = None
        self.proposals: list[pl.Proposal] = []
        self.reply: list[pl.Payload] = []
        self.made: tuple[IkeSA, tuple[bytes, bytes]] | None = None
        # RFC 9370 §2.2.4: state across the IKE_FOLLOWUP_KE exchanges
        self.chosen: ChosenAlgorithms | None = None
        self.spi_r = b""
        self.nonce_r = b""
        self.nonce_i = b""
        self.shared = b""                     # SK(0), from CREATE_CHILD_SA
        self.additional: list[bytes] = []     # SK(1) .. SK(n)
        self.pending_ke: list[tuple[int, int]] = []
        self.link = b""

    @property
    def exchange(self) -> int:  # type: ignore[override]
        return ExchangeType.IKE_FOLLOWUP_KE if self.link else ExchangeType.CREATE_CHILD_SA

    @property
    def name(self) -> str:  # type: ignore[override]
        return "IKE_FOLLOWUP_KE" if self.link else "CREATE_CHILD_SA"

    # ---------------------------------------------------------------- initiator

    def build_i(self, ike: IkeSA, now: float) -> list[pl.Payload] | None:
        if self.link:
            return self._build_followup_i(ike)
        if ike.state != IkeState.ESTABLISHED:
            return None
        self.spi = ike.endpoint.new_ike_spi()
        self.nonce = new_nonce(ike)
        # RFC 9370 §2.2.4: additional key exchanges at a rekey run in IKE_FOLLOWUP_KE; a peer that never said
        # INTERMEDIATE_EXCHANGE_SUPPORTED (RFC 9242 §3.1) knows no Additional Key Exchange transforms
        proposals = list(ike.config.proposals) if ike.peer_intermediate else without_additional_ke(ike.config.proposals)
        if not proposals:
            raise ExchangeFailed("rekeying this IKE SA needs additional key exchanges (RFC 9370 §2.2.4), "
                                 "and the peer did not offer IKE_INTERMEDIATE support; the IKE SA is not rekeyed")
        if self.group is not None:
            proposals = promote_dh_group(proposals, self.group)
        elif ike.algorithms is not None and ike.algorithms.dh is not None:
            proposals = promote_dh_group(proposals, ike.algorithms.dh)
        self.proposals = [pl.Proposal(p.number, p.protocol_id, self.spi, list(p.transforms)) for p in proposals]
        group = proposal_dh_groups(self.proposals[0])[0]
        self.kex = new_key_exchange(ike, group)
        ike.rekeying_ike = self
        return [pl.SA(proposals=self.proposals), pl.Nonce(data=self.nonce),
                pl.KE(dh_group=group, data=self.kex.public_value)]

    def process_i(self, ike: IkeSA, payloads: list[pl.Payload], now: float) -> None:
        if self.link:
            self._process_followup_i(ike, payloads, now)
            return
        error = error_notify(payloads)
        if error is not None:
            ike.ike_rekey_failed(now)
            if error.notify_type == NotifyType.INVALID_KE_PAYLOAD and len(error.data) == 2 and self.group is None:
                self.group = struct.unpack("!H", error.data)[0]
                ike.tm.retry(self, now)
                return
            if error.notify_type == NotifyType.TEMPORARY_FAILURE:
                if ike.state == IkeState.ESTABLISHED:
                    ike.tm.retry_later(self, now)
                return
            self.negotiation_failed(ike, f"IKE rekey: peer answered {name_of(NotifyType, error.notify_type)}")
            return
        sa, nonce, ke = first(payloads, pl.SA), first(payloads, pl.Nonce), first(payloads, pl.KE)
        if sa is None or nonce is None or ke is None or self.kex is None:
            raise ExchangeFailed("IKE rekey response lacks SA, Nr or KE")
        chosen = ike.check_returned_proposal(sa, self.proposals, ProtocolId.IKE)
        if len(chosen.spi) != 8 or ke.dh_group != self.kex.group:
            raise ExchangeFailed("IKE rekey response has a bad SPI or KE group")
        try:
            shared = self.kex.shared_secret(ke.data)
        except CryptoError as err:
            raise ExchangeFailed(f"peer's KE value rejected: {err}") from None
        self.chosen, self.spi_r, self.nonce_r, self.shared = chosen, chosen.spi, nonce.data, shared
        self.pending_ke = list(chosen.additional)
        if self.pending_ke:
            # RFC 9370 §2.2.4: the responder's ADDITIONAL_KEY_EXCHANGE notify links the first IKE_FOLLOWUP_KE
            self._take_link(payloads)
            ike.tm.retry(self, now)
            return
        self._finish_i(ike, now)

    def _build_followup_i(self, ike: IkeSA) -> list[pl.Payload]:
        _, method = self.pending_ke[0]
        self.kex = new_key_exchange(ike, method)
        # RFC 9370 §2.2.4: the request carries the link data and the KE of the next additional key exchange
        return [pl.Notify(notify_type=NotifyType.ADDITIONAL_KEY_EXCHANGE, data=self.link),
                pl.KE(dh_group=method, data=self.kex.public_value)]

    def _process_followup_i(self, ike: IkeSA, payloads: list[pl.Payload], now: float) -> None:
        assert self.kex is not None
        ttype = self.pending_ke[0][0]
        error = error_notify(payloads)
        if error is not None:
            ike.ike_rekey_failed(now)
            self.negotiation_failed(ike, f"IKE rekey: peer answered {name_of(NotifyType, error.notify_type)} "
                                         f"to IKE_FOLLOWUP_KE ADDKE{ttype - 5}")
            return
        if self._take_followup_response(ike, payloads, now):
            return
        self._finish_i(ike, now)

    def _finish_i(self, ike: IkeSA, now: float) -> None:
        assert self.chosen is not None
        new = ike.rekeyed(we_initiated=True, spi_i=self.spi, spi_r=self.spi_r, chosen=self.chosen, shared=self.shared,
                          nonce_i=self.nonce, nonce_r=self.nonce_r, now=now, additional=tuple(self.additional))
        ike.rekeying_ike = None
        ike.finish_ike_rekey(new, (self.nonce, self.nonce_r), we_initiated=True, now=now)

    def abort(self, ike: IkeSA, reason: str, now: float) -> None:
        ike.ike_rekey_failed(now)

    # ---------------------------------------------------------------- responder

    def process_r(self, ike: IkeSA, inner: list[pl.Payload], now: float) -> None:
        sa, nonce = check_create_child_sa_request(inner)
        ke = first(inner, pl.KE)
        if ike.state != IkeState.ESTABLISHED:
            raise ExchangeFailed("IKE SA not established", NotifyType.TEMPORARY_FAILURE)
        if isinstance(ike.tm.pending_task, (ChildCreate, ChildDelete)):
            # RFC 7296 §2.25.1: no IKE rekey while a CHILD_SA is being created, rekeyed or closed
            raise ExchangeFailed("CHILD SA work in flight", NotifyType.TEMPORARY_FAILURE)
        # RFC 9370 §2.2.4: additional key exchanges run in IKE_FOLLOWUP_KE (RFC 9370 §2.2.1: optional ones may
        # fall away, a required one the peer does not offer is NO_PROPOSAL_CHOSEN)
        selected = select_proposal(ike.config.proposals, sa.proposals, prefer_local=True)
        if selected is None:
            if any(has_additional_ke(p) for p in ike.config.proposals):
                ike.trace_note(now, "ike_rekey_refused", reason="no acceptable IKE proposal (ours have additional "
                                                                "key exchanges, RFC 9370 §2.2.4)")
            raise ExchangeFailed("no acceptable IKE proposal", NotifyType.NO_PROPOSAL_CHOSEN)
        chosen = ChosenAlgorithms.from_proposal(selected)
        if len(chosen.spi) != 8:
            raise ExchangeFailed("IKE SPI is not 8 octets", NotifyType.INVALID_SYNTAX)
        if not isinstance(ke, pl.KE) or ke.dh_group != chosen.dh:
            raise ExchangeFailed("KE group differs", NotifyType.INVALID_KE_PAYLOAD, struct.pack("!H", chosen.dh or 0))
        kex = new_key_exchange(ike, chosen.dh)
        try:
            shared = kex.shared_secret(ke.data)
        except CryptoError:
            raise ExchangeFailed("peer's KE value rejected", NotifyType.INVALID_SYNTAX) from None
        spi_r = ike.endpoint.new_ike_spi()
        nonce_r = new_nonce(ike)
        self.reply = [pl.SA(proposals=[pl.Proposal(selected.number, ProtocolId.IKE, spi_r, selected.transforms)]),
                      pl.Nonce(data=nonce_r), pl.KE(dh_group=chosen.dh, data=kex.public_value)]
        self.chosen, self.spi, self.spi_r, self.nonce_i, self.nonce_r, self.shared = (
            chosen, chosen.spi, spi_r, nonce.data, nonce_r, shared)
        self.pending_ke = list(chosen.additional)
        if self.pending_ke:
            self._new_link(ike)
            return
        self._make_r(ike, now)

    def _make_r(self, ike: IkeSA, now: float) -> None:
        assert self.chosen is not None
        new = ike.rekeyed(we_initiated=False, spi_i=self.spi, spi_r=self.spi_r, chosen=self.chosen, shared=self.shared,
                          nonce_i=self.nonce_i, nonce_r=self.nonce_r, now=now, additional=tuple(self.additional))
        self.made = (new, (self.nonce_i, self.nonce_r))

    def process_followup_r(self, ike: IkeSA, inner: list[pl.Payload], now: float) -> None:
        """One IKE_FOLLOWUP_KE request of this rekey, found by its link data (RFC 9370 §2.2.4)."""
        if not self._answer_followup_request(ike, inner, now):
            return
        self._make_r(ike, now)

    def build_r(self, ike: IkeSA, now: float) -> list[pl.Payload]:
        return self.reply

    def responded(self, ike: IkeSA, now: float) -> None:
        if self.made is not None:
            made, self.made = self.made, None
            ike.finish_ike_rekey(made[0], made[1], we_initiated=False, now=now)


class IkeFollowupKe(Task):
    """The responder's answer to an IKE_FOLLOWUP_KE request: the IKE rekey or CREATE_CHILD_SA its link
    data names does the work."""
    exchange = ExchangeType.IKE_FOLLOWUP_KE
    name = "IKE_FOLLOWUP_KE"

    def __init__(self) -> None:
        self.rekey: IkeRekey | ChildCreate | None = None

    def process_r(self, ike: IkeSA, inner: list[pl.Payload], now: float) -> None:
        link = find_notify(inner, NotifyType.ADDITIONAL_KEY_EXCHANGE)
        rekey = ike.followups.get(bytes(link.data)) if link is not None else None
        if not isinstance(rekey, (IkeRekey, ChildCreate)):
            # RFC 9370 §2.2.4: link data we do not know is answered with STATE_NOT_FOUND
            ike.trace_note(now, "followup_ke_refused", reason="unknown link data")
            raise ExchangeFailed("IKE_FOLLOWUP_KE with unknown link data", NotifyType.STATE_NOT_FOUND)
        self.rekey = rekey
        try:
            rekey.process_followup_r(ike, inner, now)
        except ExchangeFailed:
            ike.followups.pop(rekey.link, None)
            raise

    def build_r(self, ike: IkeSA, now: float) -> list[pl.Payload]:
        assert self.rekey is not None
        return self.rekey.reply

    def responded(self, ike: IkeSA, now: float) -> None:
        assert self.rekey is not None
        self.rekey.responded(ike, now)
