"""IKE_SA_INIT (RFC 7296 §1.2): proposals, KE and nonces, NAT detection (§2.23), cookies
(§2.6), INVALID_KE_PAYLOAD (§1.3), fragmentation support (RFC 7383 §2.3) and signature hash
algorithms (RFC 7427 §4). The responder's stateless checks (cookie, proposal, KE group) run in
the endpoint before any SA exists; this task holds what follows."""
from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from .. import payloads as pl
from .. import ppk
from ..authenticators import OUR_SIGNATURE_HASHES, certreq_payloads
from ..config import Fragmentation
from ..const import DhGroup, ExchangeType, NotifyType, ProtocolId, name_of
from ..crypto import decode_signature_hash_algorithms, encode_signature_hash_algorithms
from ..errors import CryptoError, ExchangeFailed, ParseError
from ..profiles import windows_error
from ..proposals import ChosenAlgorithms, has_additional_ke, promote_dh_group, proposal_dh_groups
from .base import Task, error_notify, find_notify, first, new_key_exchange
from .ike_intermediate import IkeIntermediate
from .ike_natd import evaluate_nat, nat_detection_payloads

if TYPE_CHECKING:
    from ..sa import IkeSA


def peer_capabilities(ike: IkeSA, payloads: list[pl.Payload]) -> None:
    """What the peer's IKE_SA_INIT says it supports: fragmentation (RFC 7383 §2.3), signature
    hashes (RFC 7427 §4), certificates from our CAs (CERTREQ), several rounds (RFC 4739 §3)."""
    ike.peer_fragmentation = find_notify(payloads, NotifyType.IKEV2_FRAGMENTATION_SUPPORTED) is not None
    hashes = find_notify(payloads, NotifyType.SIGNATURE_HASH_ALGORITHMS)
    if hashes is not None:
        try:
            ike.peer_hashes = [int(h) for h in decode_signature_hash_algorithms(hashes.data)]
        except (ParseError, CryptoError):
            ike.peer_hashes = []
    ike.peer_certreq = any(isinstance(p, pl.CERTREQ) for p in payloads)
    ike.peer_multiple_auth = find_notify(payloads, NotifyType.MULTIPLE_AUTH_SUPPORTED) is not None
    ike.peer_intermediate = find_notify(payloads, NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED) is not None


class IkeInit(Task):
    exchange = ExchangeType.IKE_SA_INIT
    name = "IKE_SA_INIT"

    def __init__(self, selected: pl.Proposal | None = None) -> None:
        self.cookie: bytes | None = None
        self.tried_groups: set[int] = set()
        self.selected = selected  # responder: the proposal the endpoint chose
        self.reply: list[pl.Payload] = []

    # ---------------------------------------------------------------- initiator

    def build_i(self, ike: IkeSA, now: float) -> list[pl.Payload]:
        conf = ike.config
        proposals = ike.proposals_to_offer
        group = proposal_dh_groups(proposals[0])[0]
        if ike.kex is None or ike.kex.group != group:
            ike.kex = new_key_exchange(ike, group)
        self.tried_groups.add(group)
        out: list[pl.Payload] = []
        if self.cookie is not None:
            out.append(pl.Notify(notify_type=NotifyType.COOKIE, data=self.cookie))  # RFC 7296 §2.6: first
        out += [pl.SA(proposals=proposals), pl.KE(dh_group=group, data=ike.kex.public_value),
                pl.Nonce(data=ike.nonce_i)]
        out += nat_detection_payloads(ike)
        profile = conf.client_profile
        if conf.fragmentation != Fragmentation.NO:
            out.append(pl.Notify(notify_type=NotifyType.IKEV2_FRAGMENTATION_SUPPORTED))
        if profile is None or profile.send_signature_hashes:
            out.append(pl.Notify(notify_type=NotifyType.SIGNATURE_HASH_ALGORITHMS,
                                 data=encode_signature_hash_algorithms(OUR_SIGNATURE_HASHES)))
        if profile is None or profile.send_multiple_auth:
            out.append(pl.Notify(notify_type=NotifyType.MULTIPLE_AUTH_SUPPORTED))  # RFC 4739 §3, as strongSwan
        if any(has_additional_ke(p) for p in proposals):
            # RFC 9242 §3.1, RFC 9370 §2.2.1: sent when we offer additional key exchanges (as strongSwan 6)
            out.append(pl.Notify(notify_type=NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED))
        if profile is not None:
            out += [pl.VendorID(data=data) for _, data in profile.vendor_ids]  # RFC 7296 §3.12
        return out + ppk.init_request(ike)  # RFC 8784 §3

    def process_i(self, ike: IkeSA, payloads: list[pl.Payload], now: float) -> None:
        cookie = find_notify(payloads, NotifyType.COOKIE)
        if cookie is not None:
            if self.cookie is not None and self.cookie == cookie.data:
                raise ExchangeFailed("responder keeps asking for the same cookie")
            self.cookie = cookie.data  # RFC 7296 §2.6: retry with the cookie
            ike.tm.retry(self, now)
            return
        invalid_ke = find_notify(payloads, NotifyType.INVALID_KE_PAYLOAD)
        if invalid_ke is not None:
            if len(invalid_ke.data) != 2:
                raise ExchangeFailed("INVALID_KE_PAYLOAD without a 2-octet group")
            group = struct.unpack("!H", invalid_ke.data)[0]
            offered = {g for p in ike.config.proposals for g in proposal_dh_groups(p)}
            if group not in offered or group in self.tried_groups:
                raise ExchangeFailed(f"responder wants DH group {name_of(DhGroup, group)}, which we do not offer"
                                     if group not in offered else "responder rejected every DH group we tried")
            # RFC 7296 §1.3: retry with the group the responder asked for
            ike.proposals_to_offer = promote_dh_group(ike.config.proposals, group)
            ike.trace_note(now, "invalid_ke", group=name_of(DhGroup, group))
            ike.tm.retry(self, now)
            return
        error = error_notify(payloads)
        if error is not None:
            reason = f"peer answered {name_of(NotifyType, error.notify_type)}"
            profile = ike.config.client_profile
            if profile is not None and profile.windows_errors and error.notify_type == NotifyType.NO_PROPOSAL_CHOSEN:
                reason = windows_error(13868, reason)  # what Windows shows when no proposal is common
            raise ExchangeFailed(reason)
        sa, ke, nonce = first(payloads, pl.SA), first(payloads, pl.KE), first(payloads, pl.Nonce)
        if sa is None or ke is None or nonce is None:
            raise ExchangeFailed("IKE_SA_INIT response lacks SA, KE or Nr")
        chosen = ike.check_returned_proposal(sa, ike.proposals_to_offer, ProtocolId.IKE)
        if ke.dh_group != chosen.dh or ike.kex is None or ke.dh_group != ike.kex.group:
            raise ExchangeFailed("responder's KE group differs from the chosen proposal's")
        if not 16 <= len(nonce.data) <= 256:
            raise ExchangeFailed(f"Nr of {len(nonce.data)} octets is outside 16..256")  # RFC 7296 §3.9
        ike.nonce_r = nonce.data
        ike.spi_r = ike.tm.pending_response_spi_r
        peer_capabilities(ike, payloads)
        ppk.init_response_received(ike, payloads)  # RFC 8784 §3
        try:
            shared = ike.kex.shared_secret(ke.data)
        except CryptoError as err:
            raise ExchangeFailed(f"responder's KE value rejected: {err}") from None
        ike.set_algorithms(chosen, shared)
        evaluate_nat(ike, payloads, now)
        if chosen.additional:
            if not ike.peer_intermediate:
                # RFC 9370 §2.2.1: additional key exchanges run in IKE_INTERMEDIATE, which the peer must support
                raise ExchangeFailed("responder chose additional key exchanges without "
                                     "INTERMEDIATE_EXCHANGE_SUPPORTED")
            ike.additional_pending = list(chosen.additional)
            # RFC 9370 §2.2.2: one IKE_INTERMEDIATE exchange per additional key exchange, before IKE_AUTH
            for _ in chosen.additional:
                ike.tm.tasks.appendleft(IkeIntermediate())

    # ---------------------------------------------------------------- responder

    def process_r(self, ike: IkeSA, payloads: list[pl.Payload], now: float) -> None:
        assert self.selected is not None
        ke = first(payloads, pl.KE)
        assert isinstance(ke, pl.KE)
        chosen = ChosenAlgorithms.from_proposal(self.selected)
        if chosen.dh is None:
            raise ExchangeFailed("the selected IKE proposal has no key exchange method", NotifyType.INVALID_SYNTAX)
        try:
            ike.kex = new_key_exchange(ike, chosen.dh)
            shared = ike.kex.shared_secret(ke.data)
        except CryptoError as err:
            raise ExchangeFailed(str(err), NotifyType.INVALID_SYNTAX) from None
        ike.set_algorithms(chosen, shared)
        peer_capabilities(ike, payloads)
        ike.additional_pending = list(chosen.additional)
        evaluate_nat(ike, payloads, now)
        reply: list[pl.Payload] = [pl.SA(proposals=[self.selected]),
                                   pl.KE(dh_group=chosen.dh, data=ike.kex.public_value), pl.Nonce(data=ike.nonce_r)]
        reply += nat_detection_payloads(ike)
        if ike.config.fragmentation != "no" and ike.peer_fragmentation:
            reply.append(pl.Notify(notify_type=NotifyType.IKEV2_FRAGMENTATION_SUPPORTED))
        if find_notify(payloads, NotifyType.SIGNATURE_HASH_ALGORITHMS) is not None:
            reply.append(pl.Notify(notify_type=NotifyType.SIGNATURE_HASH_ALGORITHMS,
                                   data=encode_signature_hash_algorithms(OUR_SIGNATURE_HASHES)))
        if ike.config.send_certreq and str(ike.config.remote.method) == "pubkey":
            reply += certreq_payloads(ike)
        reply.append(pl.Notify(notify_type=NotifyType.MULTIPLE_AUTH_SUPPORTED))  # RFC 4739 §3
        if chosen.additional and ike.peer_intermediate:
            reply.append(pl.Notify(notify_type=NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED))  # RFC 9242 §3.1
        self.reply = reply + ppk.init_reply(ike, payloads)  # RFC 8784 §3

    def build_r(self, ike: IkeSA, now: float) -> list[pl.Payload]:
        return self.reply
