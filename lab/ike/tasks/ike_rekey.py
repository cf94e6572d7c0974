"""CREATE_CHILD_SA rekeying the IKE SA (RFC 7296 §1.3.2, §2.18): a new IKE SA with new SPIs
and keys from SK_d, the CHILD SAs move over, the rekey initiator deletes the old one; the
collision rules of §2.8.2 and §2.25.2."""
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
from .base import Task, error_notify, first, new_key_exchange, new_nonce
from .child_create import ChildCreate, check_create_child_sa_request
from .child_delete import ChildDelete

if TYPE_CHECKING:
    from ..sa import IkeSA


class IkeRekey(Task):
    exchange = ExchangeType.CREATE_CHILD_SA
    name = "CREATE_CHILD_SA"

    def __init__(self) -> None:
        self.spi = b""
        self.nonce = b""
        self.kex: KeyExchange | None = None
        self.group: int | None = None
        self.proposals: list[pl.Proposal] = []
        self.reply: list[pl.Payload] = []
        self.made: tuple[IkeSA, tuple[bytes, bytes]] | None = None

    # ---------------------------------------------------------------- initiator

    def build_i(self, ike: IkeSA, now: float) -> list[pl.Payload] | None:
        if ike.state != IkeState.ESTABLISHED:
            return None
        self.spi = ike.endpoint.new_ike_spi()
        self.nonce = new_nonce(ike)
        # RFC 9370 §2.2.4: additional key exchanges at a rekey run in IKE_FOLLOWUP_KE, which ipsec-lab does
        # not implement: optional ones (ke1_none) are left out, proposals that require one are not offered
        proposals = without_additional_ke(ike.config.proposals)
        if not proposals:
            raise ExchangeFailed("rekeying this IKE SA needs its additional key exchanges in IKE_FOLLOWUP_KE "
                                 "(RFC 9370 §2.2.4), which ipsec-lab does not implement; the IKE SA is not rekeyed")
        if any(has_additional_ke(p) for p in ike.config.proposals):
            ike.trace_note(now, "rekey_without_additional_ke", reason="IKE_FOLLOWUP_KE (RFC 9370 §2.2.4) not implemented")
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
        new = ike.rekeyed(we_initiated=True, spi_i=self.spi, spi_r=chosen.spi, chosen=chosen, shared=shared,
                          nonce_i=self.nonce, nonce_r=nonce.data, now=now)
        ike.rekeying_ike = None
        ike.finish_ike_rekey(new, (self.nonce, nonce.data), we_initiated=True, now=now)

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
        # RFC 9370 §2.2.4: no IKE_FOLLOWUP_KE here, so a rekey takes no additional key exchange: optional
        # ones fall away, a required one is refused (§2.2.1)
        selected = select_proposal(without_additional_ke(ike.config.proposals), sa.proposals, prefer_local=True)
        if selected is None:
            required = "" if not any(has_additional_ke(p) for p in ike.config.proposals) else (
                ": ours require additional key exchanges, which a rekey runs in IKE_FOLLOWUP_KE (RFC 9370 §2.2.4), "
                "not implemented by ipsec-lab")
            if required:
                ike.trace_note(now, "ike_rekey_refused", reason="no acceptable IKE proposal" + required)
            raise ExchangeFailed("no acceptable IKE proposal" + required, NotifyType.NO_PROPOSAL_CHOSEN)
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
        new = ike.rekeyed(we_initiated=False, spi_i=chosen.spi, spi_r=spi_r, chosen=chosen, shared=shared,
                          nonce_i=nonce.data, nonce_r=nonce_r, now=now)
        self.reply = [pl.SA(proposals=[pl.Proposal(selected.number, ProtocolId.IKE, spi_r, selected.transforms)]),
                      pl.Nonce(data=nonce_r), pl.KE(dh_group=chosen.dh, data=kex.public_value)]
        self.made = (new, (nonce.data, nonce_r))

    def build_r(self, ike: IkeSA, now: float) -> list[pl.Payload]:
        return self.reply

    def responded(self, ike: IkeSA, now: float) -> None:
        if self.made is not None:
            ike.finish_ike_rekey(self.made[0], self.made[1], we_initiated=False, now=now)
