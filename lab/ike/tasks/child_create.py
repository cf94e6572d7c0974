"""CREATE_CHILD_SA for a new CHILD SA (RFC 7296 §1.3.1) or to rekey one (§1.3.3, REKEY_SA),
with PFS and INVALID_KE_PAYLOAD (§1.3), and the collisions of §2.8.1 and §2.25."""
from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import payloads as pl
from ..child_sa import ChildSA, narrow
from ..config import ChildConfig, ChildMode, selector_address, transport_nat_selectors
from ..const import ExchangeType, NotifyType, ProtocolId, TransformType, name_of
from ..crypto.dh import KeyExchange
from ..errors import CryptoError, ExchangeFailed
from ..proposals import ChosenAlgorithms, ProposalError, promote_dh_group, proposal_dh_groups, select_proposal
from ..states import ChildState, IkeState
from .base import error_notify, find_notify, first, new_key_exchange, new_nonce, notify
from .child_delete import ChildDelete
from .followup import FollowupKe

if TYPE_CHECKING:
    from ..sa import IkeSA


def check_create_child_sa_request(inner: list[pl.Payload]) -> tuple[pl.SA, pl.Nonce]:
    """SA and Ni are mandatory (RFC 7296 §1.3), Ni of 16..256 octets (§3.9)."""
    sa, nonce = first(inner, pl.SA), first(inner, pl.Nonce)
    if not isinstance(sa, pl.SA) or not isinstance(nonce, pl.Nonce) or not sa.proposals:
        raise ExchangeFailed("CREATE_CHILD_SA request lacks SA or Ni", NotifyType.INVALID_SYNTAX)
    if not 16 <= len(nonce.data) <= 256:
        raise ExchangeFailed("CREATE_CHILD_SA request has a Ni outside 16..256 octets", NotifyType.INVALID_SYNTAX)
    return sa, nonce


class ChildCreate(FollowupKe):
    """CREATE_CHILD_SA for a new CHILD_SA, or to rekey `rekeying` (RFC 7296 §1.3.1, §1.3.3)."""

    def __init__(self, config: ChildConfig | None = None, rekeying: ChildSA | None = None) -> None:
        self.config = config
        self.rekeying = rekeying
        self.spi_in = b""
        self.nonce = b""
        self.kex: KeyExchange | None = None
        self.group: int | None = None
        self.proposals: list[pl.Proposal] = []
        self.reply: list[pl.Payload] = []
        self.made: tuple[ChildSA, ChildSA] | None = None  # responder: (old, new) of a rekey
        # RFC 9370 §2.2.4: state across the IKE_FOLLOWUP_KE exchanges
        self.link = b""
        self.pending_ke: list[tuple[int, int]] = []
        self.additional: list[bytes] = []     # SK(1) .. SK(n)
        self.first_response: list[pl.Payload] = []
        self.nonce_r = b""
        self.shared: bytes | None = None
        self.maker: ChildMaker | None = None  # responder: the CHILD SA waiting for its keys
        self.old: ChildSA | None = None       # responder: the CHILD SA a rekey replaces

    @property
    def exchange(self) -> int:  # type: ignore[override]
        return ExchangeType.IKE_FOLLOWUP_KE if self.link else ExchangeType.CREATE_CHILD_SA

    @property
    def name(self) -> str:  # type: ignore[override]
        return "IKE_FOLLOWUP_KE" if self.link else "CREATE_CHILD_SA"

    # ---------------------------------------------------------------- initiator

    def build_i(self, ike: IkeSA, now: float) -> list[pl.Payload] | None:
        assert self.config is not None
        if self.link:
            _, method = self.pending_ke[0]
            self.kex = new_key_exchange(ike, method)
            # RFC 9370 §2.2.4: the request carries the link data and the KE of the next additional key exchange
            return [pl.Notify(notify_type=NotifyType.ADDITIONAL_KEY_EXCHANGE, data=self.link),
                    pl.KE(dh_group=method, data=self.kex.public_value)]
        if self.rekeying is not None and self.rekeying.state != ChildState.INSTALLED:
            return None  # rekeyed or deleted meanwhile (e.g. by the peer): nothing left to do
        self.spi_in = ike.endpoint.new_child_spi()
        self.nonce = new_nonce(ike)
        self.proposals = ike.child_proposals(self.config, self.spi_in, pfs=True)
        if self.group is not None:
            self.proposals = promote_dh_group(self.proposals, self.group)
        groups = proposal_dh_groups(self.proposals[0])
        out: list[pl.Payload] = []
        if self.rekeying is not None:
            self.rekeying.state = ChildState.REKEYING
            # RFC 7296 §1.3.3: the SPI we expect in inbound packets of the SA being rekeyed
            out.append(pl.Notify(notify_type=NotifyType.REKEY_SA, protocol_id=self.rekeying.protocol,
                                 spi=self.rekeying.spi_in))
        if self.config.mode == ChildMode.TRANSPORT:
            out.append(pl.Notify(notify_type=NotifyType.USE_TRANSPORT_MODE))
        out += [pl.SA(proposals=self.proposals), pl.Nonce(data=self.nonce)]
        if groups:
            self.kex = new_key_exchange(ike, groups[0])
            out.append(pl.KE(dh_group=groups[0], data=self.kex.public_value))
        if self.rekeying is not None:
            out += [pl.TSi(selectors=list(self.rekeying.local_ts)), pl.TSr(selectors=list(self.rekeying.remote_ts))]
        else:
            out += [pl.TSi(selectors=ike.child_local_ts(self.config)),
                    pl.TSr(selectors=ike.child_remote_ts(self.config))]
        return out

    def process_i(self, ike: IkeSA, payloads: list[pl.Payload], now: float) -> None:
        assert self.config is not None
        if self.link:
            self._process_followup_i(ike, payloads, now)
            return
        error = error_notify(payloads)
        if error is not None:
            kind = error.notify_type
            if kind == NotifyType.INVALID_KE_PAYLOAD and len(error.data) == 2 and self.group is None:
                self.group = struct.unpack("!H", error.data)[0]
                if self.rekeying is not None:
                    ike.child_rekey_failed(self.rekeying, now)
                ike.tm.retry(self, now)
                return
            if kind == NotifyType.TEMPORARY_FAILURE:
                # RFC 7296 §2.25: do not retry at once
                if self.rekeying is not None:
                    ike.child_rekey_failed(self.rekeying, now)
                ike.tm.retry_later(self, now)
                return
            if kind == NotifyType.CHILD_SA_NOT_FOUND and self.rekeying is not None:
                # RFC 7296 §2.25: the peer has no such SA; ours goes silently
                ike.remove_child(self.rekeying, "peer does not know it (CHILD_SA_NOT_FOUND)", now)
                return
            if self.rekeying is not None:
                ike.child_rekey_failed(self.rekeying, now)
            self.negotiation_failed(ike, f"CHILD_SA {self.config.name}: peer answered {name_of(NotifyType, kind)}")
            return
        nonce, ke = first(payloads, pl.Nonce), first(payloads, pl.KE)
        if nonce is None:
            raise ExchangeFailed("CREATE_CHILD_SA response lacks Nr")
        shared = None
        if self.kex is not None:
            if ke is None or ke.dh_group != self.kex.group:
                raise ExchangeFailed("CREATE_CHILD_SA response lacks a KE payload of our group")
            try:
                shared = self.kex.shared_secret(ke.data)
            except CryptoError as err:
                raise ExchangeFailed(f"peer's KE value rejected: {err}") from None
        self.first_response, self.nonce_r, self.shared = payloads, nonce.data, shared
        sa = first(payloads, pl.SA)
        if shared is not None and sa is not None:
            chosen = ike.check_returned_proposal(sa, self.proposals, self.proposals[0].protocol_id)
            self.pending_ke = list(chosen.additional)
            if self.pending_ke:
                # RFC 9370 §2.2.4: the responder's ADDITIONAL_KEY_EXCHANGE notify links the first IKE_FOLLOWUP_KE
                self._take_link(payloads)
                ike.tm.retry(self, now)
                return
        self._install_i(ike, now)

    def _process_followup_i(self, ike: IkeSA, payloads: list[pl.Payload], now: float) -> None:
        assert self.config is not None and self.kex is not None
        ttype = self.pending_ke[0][0]
        error = error_notify(payloads)
        if error is not None:
            if self.rekeying is not None:
                ike.child_rekey_failed(self.rekeying, now)
            self.negotiation_failed(ike, f"CHILD_SA {self.config.name}: peer answered "
                                         f"{name_of(NotifyType, error.notify_type)} to IKE_FOLLOWUP_KE ADDKE{ttype - 5}")
            return
        if self._take_followup_response(ike, payloads, now):
            return
        self._install_i(ike, now)

    def _install_i(self, ike: IkeSA, now: float) -> None:
        assert self.config is not None
        payloads, nonce_r, shared, additional = self.first_response, self.nonce_r, self.shared, tuple(self.additional)
        if self.rekeying is not None and self.rekeying.state not in (ChildState.REKEYING, ChildState.INSTALLED):
            # RFC 7296 §2.25.1: the peer deleted it meanwhile; the new SA is deleted again
            child = ike.install_child_from_response(self.config, self.spi_in, payloads, self.nonce, nonce_r, shared,
                                                    now, we_initiated=True, rekeyed=None, proposals=self.proposals,
                                                    additional=additional)
            ike.tm.queue(ChildDelete([child]), now)
            return
        child = ike.install_child_from_response(self.config, self.spi_in, payloads, self.nonce, nonce_r, shared,
                                                now, we_initiated=True, rekeyed=self.rekeying,
                                                proposals=self.proposals, additional=additional)
        if self.rekeying is not None:
            ike.finish_child_rekey(self.rekeying, child, now)

    def abort(self, ike: IkeSA, reason: str, now: float) -> None:
        if self.rekeying is not None:
            ike.child_rekey_failed(self.rekeying, now)

    # ---------------------------------------------------------------- responder

    def process_r(self, ike: IkeSA, inner: list[pl.Payload], now: float) -> None:
        sa, nonce = check_create_child_sa_request(inner)
        if ike.state != IkeState.ESTABLISHED or ike.rekeying_ike is not None:
            # RFC 7296 §2.25.2: no CHILD_SA work while the IKE SA is rekeyed or closed
            raise ExchangeFailed("IKE SA busy", NotifyType.TEMPORARY_FAILURE)
        tsi, tsr = first(inner, pl.TSi), first(inner, pl.TSr)
        if tsi is None or tsr is None:
            raise ExchangeFailed("CREATE_CHILD_SA request lacks TSi or TSr", NotifyType.INVALID_SYNTAX)
        rekey = find_notify(inner, NotifyType.REKEY_SA)
        old = None
        if rekey is not None:
            old = ike.find_child(rekey.spi, inbound=False)
            if old is None:
                # RFC 7296 §2.25
                self.reply = [notify(NotifyType.CHILD_SA_NOT_FOUND, protocol=rekey.protocol_id, spi=rekey.spi)]
                return
            if old.state in (ChildState.DELETING, ChildState.REKEYED):
                # RFC 7296 §2.25.1: it is being closed
                raise ExchangeFailed("CHILD SA being closed", NotifyType.TEMPORARY_FAILURE)
        nonce_r = new_nonce(ike)
        try:
            self.reply, child = new_child_as_responder(ike, inner, sa, tsi, tsr, nonce.data, nonce_r,
                                                       first(inner, pl.KE), now, pfs=True, rekeyed=old)
        except ExchangeFailed as err:
            self.negotiation_failed(ike, f"peer's CHILD_SA request refused: {err.reason}")
            raise ExchangeFailed(err.reason, err.notify or NotifyType.NO_PROPOSAL_CHOSEN, err.data) from None
        if isinstance(child, ChildMaker):
            self.maker, self.old = child, old
            self.pending_ke = list(child.chosen.additional)
            self._new_link(ike)
            return
        if old is not None:
            self.made = (old, child)

    def process_followup_r(self, ike: IkeSA, inner: list[pl.Payload], now: float) -> None:
        """One IKE_FOLLOWUP_KE request of this CHILD SA, found by its link data (RFC 9370 §2.2.4)."""
        assert self.maker is not None
        if not self._answer_followup_request(ike, inner, now):
            return
        child = self.maker.make(tuple(self.additional), now)
        self.maker = None
        if self.old is not None:
            self.made = (self.old, child)

    def build_r(self, ike: IkeSA, now: float) -> list[pl.Payload]:
        return self.reply

    def responded(self, ike: IkeSA, now: float) -> None:
        if self.made is not None:
            ike.finish_child_rekey(*self.made, now)


@dataclass
class ChildMaker:
    """A CHILD SA agreed in CREATE_CHILD_SA whose keys wait for IKE_FOLLOWUP_KE (RFC 9370 §2.2.4)."""
    chosen: ChosenAlgorithms
    make: Callable[[tuple[bytes, ...], float], ChildSA]


def select_child_config(ike: IkeSA, tsi: pl.TSi, tsr: pl.TSr, only: ChildConfig | None = None,
                        transport: bool = False) -> tuple[ChildConfig, list[pl.TrafficSelector], list[pl.TrafficSelector]]:
    remote_address = ike.assigned_ips or ike.remote[0]
    for config in ([only] if only is not None else ike.config.children.values()):
        if config.mode not in (ChildMode.TUNNEL, ChildMode.TRANSPORT):
            continue  # pass and drop children are shunt policies, never negotiated
        offered_i: Sequence[pl.TrafficSelector | pl.RawTrafficSelector] = tsi.selectors
        offered_r: Sequence[pl.TrafficSelector | pl.RawTrafficSelector] = tsr.selectors
        if transport and config.mode == ChildMode.TRANSPORT:
            # RFC 7296 §2.23.1, responder: substitute the NATed side's address before any lookup
            if ike.remote_behind_nat:
                offered_i = transport_nat_selectors(offered_i, ike.remote[0])
            if ike.local_behind_nat:
                offered_r = transport_nat_selectors(offered_r, ike.local[0])
        # RFC 7296 §2.9: TSi is the initiator's (our remote) side, TSr ours
        local = narrow(offered_r, config.local_selectors(ike.local[0]))
        remote = narrow(offered_i, config.remote_selectors(remote_address))
        if local and remote:
            return config, local, remote
    raise ExchangeFailed("traffic selectors not acceptable", NotifyType.TS_UNACCEPTABLE)


def new_child_as_responder(ike: IkeSA, inner: list[pl.Payload], sa: pl.SA, tsi: pl.TSi, tsr: pl.TSr,
                           nonce_i: bytes, nonce_r: bytes, ke: pl.KE | None, now: float, pfs: bool,
                           rekeyed: ChildSA | None = None) -> tuple[list[pl.Payload], ChildSA | ChildMaker]:
    """The CHILD SA a request asks for (IKE_AUTH or CREATE_CHILD_SA), made (or, when additional key
    exchanges follow, its maker), and the payloads of our answer; ExchangeFailed with the notify to
    answer when it cannot be."""
    wants_transport = find_notify(inner, NotifyType.USE_TRANSPORT_MODE) is not None
    config, local_ts, remote_ts = select_child_config(ike, tsi, tsr, rekeyed.config if rekeyed else None,
                                                      transport=wants_transport)
    ours = [pl.Proposal(p.number, p.protocol_id, b"", [t for t in p.transforms
                                                     if pfs or t.transform_type != TransformType.DH])
            for p in config.ipsec_proposals]
    selected = select_proposal(ours, sa.proposals, prefer_local=True, skip_dh=not pfs)
    if selected is None:
        raise ExchangeFailed("no acceptable ESP proposal", NotifyType.NO_PROPOSAL_CHOSEN)
    try:
        chosen = ChosenAlgorithms.from_proposal(selected)
    except ProposalError as err:
        raise ExchangeFailed(str(err), NotifyType.NO_PROPOSAL_CHOSEN) from None
    if len(chosen.spi) != 4:
        raise ExchangeFailed("peer's ESP/AH SPI is not 4 octets", NotifyType.INVALID_SYNTAX)
    if chosen.protocol == ProtocolId.AH and ike.nat_detected:
        # RFC 3948 encapsulates ESP only; AH's ICV covers the addresses a NAT rewrites
        raise ExchangeFailed("AH cannot cross a NAT", NotifyType.NO_PROPOSAL_CHOSEN)
    shared = None
    reply_ke: list[pl.Payload] = []
    if pfs and chosen.dh is not None:
        if ke is None or ke.dh_group != chosen.dh:
            # RFC 7296 §1.3: name the group we want
            raise ExchangeFailed("KE group differs from the chosen proposal's", NotifyType.INVALID_KE_PAYLOAD,
                                 struct.pack("!H", chosen.dh))
        kex = new_key_exchange(ike, chosen.dh)
        try:
            shared = kex.shared_secret(ke.data)
        except CryptoError as err:
            raise ExchangeFailed(f"peer's KE value rejected: {err}", NotifyType.INVALID_SYNTAX) from None
        reply_ke = [pl.KE(dh_group=chosen.dh, data=kex.public_value)]
    transport = wants_transport and config.mode == ChildMode.TRANSPORT
    # RFC 7296 §2.23.1: the selectors as received name the addresses the initiator's checksums cover
    originals = (selector_address(tsr.selectors), selector_address(tsi.selectors)) \
        if transport and ike.nat_detected else (None, None)
    spi_in = ike.endpoint.new_child_spi()

    def make(additional: tuple[bytes, ...], when: float) -> ChildSA:
        return ike.make_child(config, spi_in, chosen.spi, chosen, nonce_i, nonce_r, shared, False,
                              "transport" if transport else "tunnel", local_ts, remote_ts, when, rekeyed,
                              originals=originals, additional=additional)
    # RFC 9370 §2.2.4: with additional key exchanges the CHILD SA is made after the last IKE_FOLLOWUP_KE
    child: ChildSA | ChildMaker = ChildMaker(chosen, make) if pfs and chosen.additional else make((), now)
    out: list[pl.Payload] = []
    if transport:
        out.append(notify(NotifyType.USE_TRANSPORT_MODE))
    out.append(pl.SA(proposals=[pl.Proposal(selected.number, selected.protocol_id, spi_in, selected.transforms)]))
    if nonce_r is not ike.nonce_r:
        out.append(pl.Nonce(data=nonce_r))
    out += reply_ke
    out += [pl.TSi(selectors=remote_ts), pl.TSr(selectors=local_ts)]
    return out, child
