"""The IKE SA and its CHILD SAs, with one task per exchange (strongSwan libcharon's model):
IkeInit, IkeAuth, ChildCreate (new or rekey), IkeRekey, ChildDelete, IkeDelete, Dpd.

Sans-I/O: an `IkeSA` never touches a socket or a clock. Its endpoint (lab.ike.endpoint)
feeds it parsed messages and the time, and collects the datagrams, events and trace
records it produces. Message IDs and the window follow RFC 7296 §2.3 (window size 1).
"""
from __future__ import annotations

import hashlib
import ipaddress
import struct
from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Iterable, Sequence

from . import payloads as pl
from .config import ChildConfig, ChildMode, Fragmentation, IkeConfig
from .const import (AuthMethod, CfgAttr, CfgType, DhGroup, ExchangeType, HashAlgorithm, NotifyType,
                    ProtocolId, TransformType, name_of)
from .crypto import (AuthenticationFailed, SkCipher, decode_signature_hash_algorithms, derive_child_sa_keys,
                     derive_ike_sa_keys, encode_signature_hash_algorithms,
                     psk_auth_data, sign_auth, signed_octets, verify_auth, verify_psk_auth)
from .crypto.dh import KeyExchange
from .errors import CryptoError, IntegrityError, ParseError
from .events import (AuthFailed, ChildKeys, ChildSaDeleted, ChildSaRekeyed, ChildSaUp, IkeSaDeleted, IkeSaRekeyed,
                     IkeSaUp, NegotiationFailed, PeerUnreachable)
from .identity import Identity
from .message import Message
from .proposals import ChosenAlgorithms, ProposalError, promote_dh_group, proposal_dh_groups, select_proposal
from .protect import DirectionKeys, Reassembly, ReassemblyError, decrypt, decrypt_fragment, encrypt, encrypt_fragments

if TYPE_CHECKING:
    from .endpoint import IkeEndpoint

Address = tuple[str, int]

# RFC 7427 §4: the hashes we accept and announce
OUR_SIGNATURE_HASHES = (HashAlgorithm.SHA2_256, HashAlgorithm.SHA2_384, HashAlgorithm.SHA2_512)
CHILD_ERRORS = (NotifyType.NO_PROPOSAL_CHOSEN, NotifyType.TS_UNACCEPTABLE, NotifyType.SINGLE_PAIR_REQUIRED,
                NotifyType.INTERNAL_ADDRESS_FAILURE, NotifyType.FAILED_CP_REQUIRED, NotifyType.INVALID_SELECTORS,
                NotifyType.NO_ADDITIONAL_SAS)


class IkeState(Enum):
    CONNECTING = "CONNECTING"
    ESTABLISHED = "ESTABLISHED"
    REKEYED = "REKEYED"
    DELETING = "DELETING"
    DELETED = "DELETED"


class ChildState(Enum):
    INSTALLED = "INSTALLED"
    REKEYING = "REKEYING"
    REKEYED = "REKEYED"
    DELETING = "DELETING"
    DELETED = "DELETED"


class ExchangeFailed(Exception):
    """An exchange that cannot go on; `notify` is what to answer a request with."""

    def __init__(self, reason: str, notify: int | None = None, data: bytes = b"") -> None:
        super().__init__(reason)
        self.reason = reason
        self.notify = notify
        self.data = data


def nat_hash(spi_i: bytes, spi_r: bytes, address: Address) -> bytes:
    # RFC 7296 §2.23: SHA-1(SPIi | SPIr | IP | port)
    return hashlib.sha1(spi_i + spi_r + ipaddress.ip_address(address[0]).packed + struct.pack("!H", address[1])).digest()


def _intersect(a: pl.TrafficSelector, b: pl.TrafficSelector) -> pl.TrafficSelector | None:
    # RFC 7296 §2.9: narrowing keeps the overlap of ranges, protocols and ports
    if a.start_addr.version != b.start_addr.version:
        return None
    if a.ip_protocol and b.ip_protocol and a.ip_protocol != b.ip_protocol:
        return None
    start, end = max(a.start_addr, b.start_addr), min(a.end_addr, b.end_addr)
    sport, eport = max(a.start_port, b.start_port), min(a.end_port, b.end_port)
    if start > end or sport > eport:
        return None
    return pl.TrafficSelector(start, end, a.ip_protocol or b.ip_protocol, sport, eport)


def narrow(offered: Sequence, allowed: Sequence[pl.TrafficSelector]) -> list[pl.TrafficSelector]:
    """The parts of the initiator's selectors our configuration allows (RFC 7296 §2.9)."""
    out: list[pl.TrafficSelector] = []
    for ts in offered:
        if not isinstance(ts, pl.TrafficSelector):
            continue
        for mine in allowed:
            common = _intersect(ts, mine)
            if common is not None and common not in out:
                out.append(common)
    return out


def _covers(outer: Sequence[pl.TrafficSelector], inner: Sequence) -> bool:
    return all(isinstance(ts, pl.TrafficSelector) and any(_intersect(ts, o) == ts for o in outer) for ts in inner)


def _find_notify(payloads: Iterable[pl.Payload], notify_type: int) -> pl.Notify | None:
    return next((p for p in payloads if isinstance(p, pl.Notify) and p.notify_type == notify_type), None)


def _first(payloads: Iterable[pl.Payload], kind: type) -> pl.Payload | None:
    return next((p for p in payloads if isinstance(p, kind)), None)


def _error_notify(payloads: Iterable[pl.Payload]) -> pl.Notify | None:
    return next((p for p in payloads if isinstance(p, pl.Notify) and p.is_error), None)


@dataclass
class ChildSA:
    unique_id: int
    config: ChildConfig
    spi_in: bytes
    spi_out: bytes
    algorithms: ChosenAlgorithms
    keys_in: ChildKeys
    keys_out: ChildKeys
    mode: str
    local_ts: list[pl.TrafficSelector]
    remote_ts: list[pl.TrafficSelector]
    established: float
    rekey_at: float | None
    expire_at: float | None
    state: ChildState = ChildState.INSTALLED
    # §2.8.1: nonces of the exchange that made this SA, for collision resolution
    nonces: tuple[bytes, bytes] = (b"", b"")
    created_by_us: bool = False

    @property
    def protocol(self) -> int:
        return self.algorithms.protocol


# ---------------------------------------------------------------- tasks


class Task:
    """One exchange we initiate."""

    exchange: int = ExchangeType.INFORMATIONAL
    name = "task"

    def build(self, ike: "IkeSA", now: float) -> list[pl.Payload]:
        raise NotImplementedError

    def process(self, ike: "IkeSA", payloads: list[pl.Payload], now: float) -> None:
        raise NotImplementedError

    def abort(self, ike: "IkeSA", reason: str, now: float) -> None:
        """The exchange will not complete (timeout, SA deleted)."""


class IkeInit(Task):
    exchange = ExchangeType.IKE_SA_INIT
    name = "IKE_SA_INIT"

    def __init__(self) -> None:
        self.cookie: bytes | None = None
        self.tried_groups: set[int] = set()

    def build(self, ike: "IkeSA", now: float) -> list[pl.Payload]:
        conf = ike.config
        proposals = ike.proposals_to_offer
        group = proposal_dh_groups(proposals[0])[0]
        if ike.kex is None or ike.kex.group != group:
            ike.kex = ike.endpoint.random.key_exchange(group)
        self.tried_groups.add(group)
        out: list[pl.Payload] = []
        if self.cookie is not None:
            out.append(pl.Notify(notify_type=NotifyType.COOKIE, data=self.cookie))  # RFC 7296 §2.6: first
        out += [pl.SA(proposals=proposals), pl.KE(dh_group=group, data=ike.kex.public_value),
                pl.Nonce(data=ike.nonce_i)]
        out += ike.nat_detection_payloads()
        if conf.fragmentation != Fragmentation.NO:
            out.append(pl.Notify(notify_type=NotifyType.IKEV2_FRAGMENTATION_SUPPORTED))
        out.append(pl.Notify(notify_type=NotifyType.SIGNATURE_HASH_ALGORITHMS,
                             data=encode_signature_hash_algorithms(OUR_SIGNATURE_HASHES)))
        return out

    def process(self, ike: "IkeSA", payloads: list[pl.Payload], now: float) -> None:
        cookie = _find_notify(payloads, NotifyType.COOKIE)
        if cookie is not None:
            if self.cookie is not None and self.cookie == cookie.data:
                raise ExchangeFailed("responder keeps asking for the same cookie")
            self.cookie = cookie.data  # RFC 7296 §2.6: retry with the cookie
            ike.retry_task(self, now)
            return
        invalid_ke = _find_notify(payloads, NotifyType.INVALID_KE_PAYLOAD)
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
            ike.retry_task(self, now)
            return
        error = _error_notify(payloads)
        if error is not None:
            raise ExchangeFailed(f"peer answered {name_of(NotifyType, error.notify_type)}")
        sa, ke, nonce = _first(payloads, pl.SA), _first(payloads, pl.KE), _first(payloads, pl.Nonce)
        if sa is None or ke is None or nonce is None:
            raise ExchangeFailed("IKE_SA_INIT response lacks SA, KE or Nr")
        chosen = ike.check_returned_proposal(sa, ike.proposals_to_offer, ProtocolId.IKE)
        if ke.dh_group != chosen.dh or ike.kex is None or ke.dh_group != ike.kex.group:
            raise ExchangeFailed("responder's KE group differs from the chosen proposal's")
        if not 16 <= len(nonce.data) <= 256:
            raise ExchangeFailed(f"Nr of {len(nonce.data)} octets is outside 16..256")  # RFC 7296 §3.9
        ike.nonce_r = nonce.data
        ike.spi_r = ike.pending_response_spi_r
        ike.peer_init_payloads(payloads)
        try:
            shared = ike.kex.shared_secret(ke.data)
        except CryptoError as err:
            raise ExchangeFailed(f"responder's KE value rejected: {err}") from None
        ike.set_algorithms(chosen, shared)
        ike.evaluate_nat(payloads, now)


class IkeAuth(Task):
    exchange = ExchangeType.IKE_AUTH
    name = "IKE_AUTH"

    def __init__(self, child: ChildConfig | None) -> None:
        self.child = child
        self.spi_in = b""

    def build(self, ike: "IkeSA", now: float) -> list[pl.Payload]:
        out: list[pl.Payload] = []
        id_payload = ike.local_id.to_payload(pl.IDi)
        out.append(id_payload)
        out += ike.cert_payloads()
        if ike.config.send_certreq and ike.config.remote.method == "pubkey":
            out += ike.certreq_payloads()
        if not ike.config.remote_identity.is_any and not ike.config.remote_identity.has_wildcards:
            out.append(ike.config.remote_identity.to_payload(pl.IDr))
        out.append(ike.auth_payload(id_payload))
        out.append(pl.Notify(notify_type=NotifyType.INITIAL_CONTACT))
        if self.child is not None:
            if ike.config.vips:
                out.append(pl.CP(cfg_type=CfgType.CFG_REQUEST,
                                 attributes=[pl.CfgAttribute(CfgAttr.INTERNAL_IP4_ADDRESS),
                                             pl.CfgAttribute(CfgAttr.INTERNAL_IP4_DNS)]))
            if self.child.mode == ChildMode.TRANSPORT:
                out.append(pl.Notify(notify_type=NotifyType.USE_TRANSPORT_MODE))
            self.spi_in = ike.endpoint.new_child_spi()
            out.append(pl.SA(proposals=ike.child_proposals(self.child, self.spi_in, pfs=False)))
            out.append(pl.TSi(selectors=ike.child_local_ts(self.child)))
            out.append(pl.TSr(selectors=ike.child_remote_ts(self.child)))
        return out

    def process(self, ike: "IkeSA", payloads: list[pl.Payload], now: float) -> None:
        if _find_notify(payloads, NotifyType.AUTHENTICATION_FAILED) is not None:
            ike.auth_failed("peer answered AUTHENTICATION_FAILED", by_peer=True, now=now)
            return
        error = _error_notify(payloads)
        if error is not None and error.notify_type not in CHILD_ERRORS:
            raise ExchangeFailed(f"peer answered {name_of(NotifyType, error.notify_type)}")
        id_r, auth = _first(payloads, pl.IDr), _first(payloads, pl.AUTH)
        if id_r is None or auth is None:
            raise ExchangeFailed("IKE_AUTH response lacks IDr or AUTH")
        peer_id = Identity.from_payload(id_r)
        if not peer_id.matches(ike.config.remote_identity):
            ike.auth_failed(f"responder identity {peer_id} does not match the expected {ike.config.remote_identity}",
                            by_peer=False, now=now, tell_peer=True)
            return
        try:
            ike.verify_peer_auth(id_r, auth, payloads, peer_id)
        except (AuthenticationFailed, CryptoError) as err:
            ike.auth_failed(str(err), by_peer=False, now=now, tell_peer=True)
            return
        ike.remote_id = peer_id
        cp = _first(payloads, pl.CP)
        if isinstance(cp, pl.CP):
            ike.take_virtual_ip(cp)  # before IkeSaUp, which carries it (RFC 7296 §3.15)
        ike.established(now)
        if self.child is None:
            return
        if error is not None:
            ike.endpoint.emit(NegotiationFailed(ike.unique_id, ike.config.name, "IKE_AUTH",
                                                f"CHILD_SA {self.child.name} not created: peer answered "
                                                f"{name_of(NotifyType, error.notify_type)}"))
            return
        try:
            ike.install_child_from_response(self.child, self.spi_in, payloads, ike.nonce_i, ike.nonce_r, None, now,
                                            we_initiated=True, rekeyed=None)
        except ExchangeFailed as err:
            ike.endpoint.emit(NegotiationFailed(ike.unique_id, ike.config.name, "IKE_AUTH", err.reason))


class ChildCreate(Task):
    """CREATE_CHILD_SA for a new CHILD_SA, or to rekey `rekeying` (RFC 7296 §1.3.1, §1.3.3)."""

    exchange = ExchangeType.CREATE_CHILD_SA
    name = "CREATE_CHILD_SA"

    def __init__(self, config: ChildConfig, rekeying: ChildSA | None = None) -> None:
        self.config = config
        self.rekeying = rekeying
        self.spi_in = b""
        self.nonce = b""
        self.kex: KeyExchange | None = None
        self.group: int | None = None
        self.proposals: list[pl.Proposal] = []

    def build(self, ike: "IkeSA", now: float) -> list[pl.Payload] | None:
        if self.rekeying is not None and self.rekeying.state != ChildState.INSTALLED:
            return None  # rekeyed or deleted meanwhile (e.g. by the peer): nothing left to do
        self.spi_in = ike.endpoint.new_child_spi()
        self.nonce = ike.endpoint.random(ike.endpoint.settings.nonce_size)
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
            self.kex = ike.endpoint.random.key_exchange(groups[0])
            out.append(pl.KE(dh_group=groups[0], data=self.kex.public_value))
        if self.rekeying is not None:
            out += [pl.TSi(selectors=list(self.rekeying.local_ts)), pl.TSr(selectors=list(self.rekeying.remote_ts))]
        else:
            out += [pl.TSi(selectors=ike.child_local_ts(self.config)),
                    pl.TSr(selectors=ike.child_remote_ts(self.config))]
        return out

    def process(self, ike: "IkeSA", payloads: list[pl.Payload], now: float) -> None:
        error = _error_notify(payloads)
        if error is not None:
            kind = error.notify_type
            if kind == NotifyType.INVALID_KE_PAYLOAD and len(error.data) == 2 and self.group is None:
                self.group = struct.unpack("!H", error.data)[0]
                if self.rekeying is not None:
                    ike.child_rekey_failed(self.rekeying, now)
                ike.retry_task(self, now)
                return
            if kind == NotifyType.TEMPORARY_FAILURE:
                # RFC 7296 §2.25: do not retry at once
                if self.rekeying is not None:
                    ike.child_rekey_failed(self.rekeying, now)
                ike.retry_later(self, now)
                return
            if kind == NotifyType.CHILD_SA_NOT_FOUND and self.rekeying is not None:
                # RFC 7296 §2.25: the peer has no such SA; ours goes silently
                ike.remove_child(self.rekeying, "peer does not know it (CHILD_SA_NOT_FOUND)", now)
                return
            if self.rekeying is not None:
                ike.child_rekey_failed(self.rekeying, now)
            ike.endpoint.emit(NegotiationFailed(ike.unique_id, ike.config.name, "CREATE_CHILD_SA",
                                                f"CHILD_SA {self.config.name}: peer answered {name_of(NotifyType, kind)}"))
            return
        nonce, ke = _first(payloads, pl.Nonce), _first(payloads, pl.KE)
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
        if self.rekeying is not None and self.rekeying.state not in (ChildState.REKEYING, ChildState.INSTALLED):
            # RFC 7296 §2.25.1: the peer deleted it meanwhile; the new SA is deleted again
            child = ike.install_child_from_response(self.config, self.spi_in, payloads, self.nonce, nonce.data, shared,
                                                    now, we_initiated=True, rekeyed=None, proposals=self.proposals)
            ike.queue(ChildDelete([child]), now)
            return
        child = ike.install_child_from_response(self.config, self.spi_in, payloads, self.nonce, nonce.data, shared,
                                                now, we_initiated=True, rekeyed=self.rekeying,
                                                proposals=self.proposals)
        if self.rekeying is not None:
            ike.finish_child_rekey(self.rekeying, child, now)

    def abort(self, ike: "IkeSA", reason: str, now: float) -> None:
        if self.rekeying is not None:
            ike.child_rekey_failed(self.rekeying, now)


class ChildDelete(Task):
    name = "INFORMATIONAL"

    def __init__(self, children: list[ChildSA], reason: str = "deleted") -> None:
        self.children = children
        self.reason = reason

    def build(self, ike: "IkeSA", now: float) -> list[pl.Payload]:
        live = [c for c in self.children if c.state != ChildState.DELETED]
        for child in live:
            child.state = ChildState.DELETING
        self.children = live
        if not live:
            return []
        # RFC 7296 §1.4.1: list the SPIs of our inbound SAs, one Delete payload per protocol
        protocols = sorted({c.protocol for c in live})
        return [pl.Delete(protocol_id=p, spis=[c.spi_in for c in live if c.protocol == p]) for p in protocols]

    def process(self, ike: "IkeSA", payloads: list[pl.Payload], now: float) -> None:
        for child in self.children:
            ike.remove_child(child, self.reason, now)

    def abort(self, ike: "IkeSA", reason: str, now: float) -> None:
        for child in self.children:
            ike.remove_child(child, self.reason, now)


class IkeDelete(Task):
    name = "INFORMATIONAL"

    def __init__(self, reason: str = "deleted") -> None:
        self.reason = reason

    def build(self, ike: "IkeSA", now: float) -> list[pl.Payload]:
        ike.state = IkeState.DELETING
        return [pl.Delete(protocol_id=ProtocolId.IKE)]

    def process(self, ike: "IkeSA", payloads: list[pl.Payload], now: float) -> None:
        ike.destroy(self.reason, now)

    def abort(self, ike: "IkeSA", reason: str, now: float) -> None:
        ike.destroy(self.reason, now)


class Dpd(Task):
    """Empty INFORMATIONAL request as liveness check (RFC 7296 §1.4, §2.4)."""

    name = "INFORMATIONAL"

    def build(self, ike: "IkeSA", now: float) -> list[pl.Payload]:
        return []

    def process(self, ike: "IkeSA", payloads: list[pl.Payload], now: float) -> None:
        ike.trace_note(now, "dpd_ok")


class IkeRekey(Task):
    """CREATE_CHILD_SA rekeying the IKE SA (RFC 7296 §1.3.2, §2.18)."""

    exchange = ExchangeType.CREATE_CHILD_SA
    name = "CREATE_CHILD_SA"

    def __init__(self) -> None:
        self.spi = b""
        self.nonce = b""
        self.kex: KeyExchange | None = None
        self.group: int | None = None
        self.proposals: list[pl.Proposal] = []

    def build(self, ike: "IkeSA", now: float) -> list[pl.Payload] | None:
        if ike.state != IkeState.ESTABLISHED:
            return None
        self.spi = ike.endpoint.new_ike_spi()
        self.nonce = ike.endpoint.random(ike.endpoint.settings.nonce_size)
        proposals = ike.config.proposals
        if self.group is not None:
            proposals = promote_dh_group(proposals, self.group)
        elif ike.algorithms is not None and ike.algorithms.dh is not None:
            proposals = promote_dh_group(proposals, ike.algorithms.dh)
        self.proposals = [pl.Proposal(p.number, p.protocol_id, self.spi, list(p.transforms)) for p in proposals]
        group = proposal_dh_groups(self.proposals[0])[0]
        self.kex = ike.endpoint.random.key_exchange(group)
        ike.rekeying_ike = self
        return [pl.SA(proposals=self.proposals), pl.Nonce(data=self.nonce),
                pl.KE(dh_group=group, data=self.kex.public_value)]

    def process(self, ike: "IkeSA", payloads: list[pl.Payload], now: float) -> None:
        error = _error_notify(payloads)
        if error is not None:
            ike.ike_rekey_failed(now)
            if error.notify_type == NotifyType.INVALID_KE_PAYLOAD and len(error.data) == 2 and self.group is None:
                self.group = struct.unpack("!H", error.data)[0]
                ike.retry_task(self, now)
                return
            if error.notify_type == NotifyType.TEMPORARY_FAILURE:
                if ike.state == IkeState.ESTABLISHED:
                    ike.retry_later(self, now)
                return
            ike.endpoint.emit(NegotiationFailed(ike.unique_id, ike.config.name, "CREATE_CHILD_SA",
                                                f"IKE rekey: peer answered {name_of(NotifyType, error.notify_type)}"))
            return
        sa, nonce, ke = _first(payloads, pl.SA), _first(payloads, pl.Nonce), _first(payloads, pl.KE)
        if sa is None or nonce is None or ke is None or self.kex is None:
            raise ExchangeFailed("IKE rekey response lacks SA, Nr or KE")
        chosen = ike.check_returned_proposal(sa, self.proposals, ProtocolId.IKE)
        if len(chosen.spi) != 8 or ke.dh_group != self.kex.group:
            raise ExchangeFailed("IKE rekey response has a bad SPI or KE group")
        try:
            shared = self.kex.shared_secret(ke.data)
        except CryptoError as err:
            raise ExchangeFailed(f"peer's KE value rejected: {err}") from None
        new = ike.endpoint.rekeyed_ike_sa(ike, we_initiated=True, spi_i=self.spi, spi_r=chosen.spi, chosen=chosen,
                                          shared=shared, nonce_i=self.nonce, nonce_r=nonce.data, now=now)
        ike.rekeying_ike = None
        ike.finish_ike_rekey(new, (self.nonce, nonce.data), we_initiated=True, now=now)

    def abort(self, ike: "IkeSA", reason: str, now: float) -> None:
        ike.ike_rekey_failed(now)


# ---------------------------------------------------------------- the IKE SA


@dataclass
class Pending:
    task: Task
    message_id: int
    datagrams: list[bytes]
    sent_at: float
    tries: int = 0
    next_at: float = 0.0


class IkeSA:
    """One IKE SA, initiator or responder of it (`is_initiator`: the original initiator, RFC
    7296 §2.2; after an IKE rekey, the initiator of the rekeying exchange)."""

    def __init__(self, endpoint: "IkeEndpoint", unique_id: int, config: IkeConfig, is_initiator: bool,
                 local: Address, remote: Address, spi_i: bytes, spi_r: bytes, now: float) -> None:
        self.endpoint = endpoint
        self.unique_id = unique_id
        self.config = config
        self.is_initiator = is_initiator
        self.local = local
        self.remote = remote
        self.spi_i = spi_i
        self.spi_r = spi_r
        self.created = now
        self.state = IkeState.CONNECTING
        self.algorithms: ChosenAlgorithms | None = None
        self.cipher: SkCipher | None = None
        self.keys = None
        self.kex: KeyExchange | None = None
        self.nonce_i = b""
        self.nonce_r = b""
        self.proposals_to_offer = list(config.proposals)
        self.pending_response_spi_r = b""
        self.init_request = b""   # RealMessage1 (RFC 7296 §2.15)
        self.init_response = b""  # RealMessage2
        self.local_id = config.local_identity(local[0])
        self.remote_id: Identity | None = None
        self.local_behind_nat = False
        self.remote_behind_nat = False
        self.peer_fragmentation = False
        self.peer_hashes: list[int] = []
        self.peer_certreq = False
        self.virtual_ip: str | None = None
        self.assigned_ip: str | None = None
        self.children: list[ChildSA] = []
        self.tasks: deque[Task] = deque()
        self.delayed: list[tuple[float, Task]] = []
        self.pending: Pending | None = None
        self.mid_out = 0
        self.mid_in = 0
        self.last_request: bytes | None = None
        self.last_response: list[bytes] = []
        self.reassembly: dict[tuple[bool, int], Reassembly] = {}
        self.last_heard = now
        self.rekey_at: float | None = None
        self.expire_at: float | None = None
        self.rekeying_ike: IkeRekey | None = None
        # RFC 7296 §2.8.2: a completed rekey in a collision waits for the other exchange
        self.ike_rekeys_done: list[tuple["IkeSA", tuple[bytes, bytes], bool]] = []
        # RFC 7296 §2.8.1: completed rekeys of a CHILD_SA (by its spi_in), for collisions
        self.child_rekeys_done: dict[bytes, list[tuple[ChildSA, bool]]] = {}
        self.destroy_at: float | None = None

    # ------------------------------------------------------------ identity and keys

    @property
    def our_spi(self) -> bytes:
        return self.spi_i if self.is_initiator else self.spi_r

    def trace_note(self, now: float, what: str, **fields) -> None:
        self.endpoint.trace(now, "note", ike_sa=self.unique_id, what=what, **fields)

    def set_state(self, state: IkeState, now: float) -> None:
        if state != self.state:
            self.endpoint.trace(now, "state", ike_sa=self.unique_id, object="IKE_SA", name=self.config.name,
                                old=self.state.value, new=state.value)
            self.state = state

    def set_algorithms(self, chosen: ChosenAlgorithms, shared: bytes, keys=None) -> None:
        self.algorithms = chosen
        if chosen.encr is None or chosen.prf is None:
            raise ExchangeFailed("chosen IKE proposal lacks encryption or PRF")
        try:
            self.cipher = SkCipher(chosen.encr, chosen.encr_key_length, chosen.integ or 0)
            self.keys = keys or derive_ike_sa_keys(chosen.prf, chosen.encr, chosen.encr_key_length, chosen.integ or 0,
                                                   shared, self.nonce_i, self.nonce_r, self.spi_i, self.spi_r)
        except CryptoError as err:
            raise ExchangeFailed(str(err), NotifyType.NO_PROPOSAL_CHOSEN) from None
        self.endpoint.ike_keys_ready(self)

    @property
    def keys_out(self) -> DirectionKeys:
        k = self.keys
        return DirectionKeys(k.sk_ei, k.sk_ai) if self.is_initiator else DirectionKeys(k.sk_er, k.sk_ar)

    @property
    def keys_in(self) -> DirectionKeys:
        k = self.keys
        return DirectionKeys(k.sk_er, k.sk_ar) if self.is_initiator else DirectionKeys(k.sk_ei, k.sk_ai)

    def check_returned_proposal(self, sa: pl.SA, offered: list[pl.Proposal], protocol: int) -> ChosenAlgorithms:
        """RFC 7296 §2.7: the responder returns one proposal, one transform per type, that we offered."""
        if len(sa.proposals) != 1:
            raise ExchangeFailed(f"responder returned {len(sa.proposals)} proposals instead of one")
        returned = sa.proposals[0]
        try:
            chosen = ChosenAlgorithms.from_proposal(returned)
        except ProposalError as err:
            raise ExchangeFailed(f"responder's proposal is not a choice: {err}") from None
        mine = next((p for p in offered if p.number == returned.number), None)
        if returned.protocol_id != protocol or mine is None:
            raise ExchangeFailed("responder returned a proposal we did not offer")
        if select_proposal([mine], [pl.Proposal(returned.number, returned.protocol_id, returned.spi,
                                                 returned.transforms)]) is None:
            raise ExchangeFailed("responder's choice is not within the proposal we offered")
        return chosen

    # ------------------------------------------------------------ IKE_SA_INIT details

    def nat_detection_payloads(self) -> list[pl.Payload]:
        """NAT_DETECTION_SOURCE_IP / DESTINATION_IP (RFC 7296 §2.23). With `encap = yes` the
        source hash is random, so the peer sees a NAT and both sides use UDP 4500, as strongSwan does."""
        spi_r = self.spi_r if not self.is_initiator else bytes(8)
        source = nat_hash(self.spi_i, spi_r, self.local)
        if self.config.encap:
            source = self.endpoint.random(20)
        return [pl.Notify(notify_type=NotifyType.NAT_DETECTION_SOURCE_IP, data=source),
                pl.Notify(notify_type=NotifyType.NAT_DETECTION_DESTINATION_IP,
                          data=nat_hash(self.spi_i, spi_r, self.remote))]

    def peer_init_payloads(self, payloads: list[pl.Payload]) -> None:
        self.peer_fragmentation = _find_notify(payloads, NotifyType.IKEV2_FRAGMENTATION_SUPPORTED) is not None
        hashes = _find_notify(payloads, NotifyType.SIGNATURE_HASH_ALGORITHMS)
        if hashes is not None:
            try:
                self.peer_hashes = [int(h) for h in decode_signature_hash_algorithms(hashes.data)]
            except (ParseError, CryptoError):
                self.peer_hashes = []
        self.peer_certreq = any(isinstance(p, pl.CERTREQ) for p in payloads)

    def evaluate_nat(self, payloads: list[pl.Payload], now: float) -> None:
        # RFC 7296 §2.23: compare the peer's hashes with what the packet really carried
        spi_r = bytes(8) if not self.is_initiator else self.spi_r
        sources = [p.data for p in payloads if isinstance(p, pl.Notify)
                   and p.notify_type == NotifyType.NAT_DETECTION_SOURCE_IP]
        destination = _find_notify(payloads, NotifyType.NAT_DETECTION_DESTINATION_IP)
        if not sources and destination is None:
            return
        self.remote_behind_nat = bool(sources) and nat_hash(self.spi_i, spi_r, self.remote) not in sources
        self.local_behind_nat = destination is not None and destination.data != nat_hash(self.spi_i, spi_r, self.local)
        if self.config.encap:
            self.local_behind_nat = True
        self.trace_note(now, "nat_detection", local_behind_nat=self.local_behind_nat,
                        remote_behind_nat=self.remote_behind_nat)
        if self.is_initiator and self.nat_detected and self.remote[1] == self.config.remote_port:
            # RFC 7296 §2.23: float to UDP 4500 once a NAT is seen
            self.local = (self.local[0], 4500)
            self.remote = (self.remote[0], 4500)

    @property
    def nat_detected(self) -> bool:
        return self.local_behind_nat or self.remote_behind_nat

    # ------------------------------------------------------------ authentication

    def _local_auth_method(self) -> str:
        return str(self.config.local.method)

    def cert_payloads(self) -> list[pl.Payload]:
        if self._local_auth_method() != "pubkey" or not self.config.local.certs:
            return []
        if str(self.config.send_cert) == "never":
            return []
        if str(self.config.send_cert) == "ifasked" and not self.peer_certreq:
            return []
        from cryptography.hazmat.primitives.serialization import Encoding

        from .const import CertEncoding
        return [pl.CERT(encoding=CertEncoding.X509_SIGNATURE, data=c.public_bytes(Encoding.DER))
                for c in self.config.local.certs]

    def certreq_payloads(self) -> list[pl.Payload]:
        from .certs import certreq_hashes
        from .const import CertEncoding
        anchors = self.endpoint.config.trust_anchors(self.config)
        data = certreq_hashes(anchors)
        return [pl.CERTREQ(encoding=CertEncoding.X509_SIGNATURE, data=data)] if data else []

    def _signed_octets(self, ours: bool, id_body: bytes) -> bytes:
        assert self.algorithms is not None and self.keys is not None
        prf_id = self.algorithms.prf
        if ours:
            message, nonce = (self.init_request, self.nonce_r) if self.is_initiator else (self.init_response,
                                                                                        self.nonce_i)
            sk_p = self.keys.sk_pi if self.is_initiator else self.keys.sk_pr
        else:
            message, nonce = (self.init_response, self.nonce_i) if self.is_initiator else (self.init_request,
                                                                                         self.nonce_r)
            sk_p = self.keys.sk_pr if self.is_initiator else self.keys.sk_pi
        return signed_octets(message, nonce, prf_id, sk_p, id_body)

    def auth_payload(self, id_payload: pl.Identification) -> pl.AUTH:
        octets = self._signed_octets(True, id_payload.body())
        assert self.algorithms is not None
        if self._local_auth_method() == "psk":
            secret = self.endpoint.config.find_psk(self.local_id, self.remote_id or self.config.remote_identity)
            if secret is None:
                raise ExchangeFailed(f"no pre-shared key for {self.local_id} - {self.config.remote_identity} "
                                     f"in the secrets section")
            return pl.AUTH(method=AuthMethod.SHARED_KEY_MIC, data=psk_auth_data(self.algorithms.prf, secret, octets))
        if not self.config.local.certs:
            raise ExchangeFailed(f"connection {self.config.name} uses pubkey authentication but has no certificate")
        key = self.endpoint.config.secrets.private_key_for(self.config.local.certs[0])
        if key is None:
            raise ExchangeFailed(f"no private key for the certificate of connection {self.config.name}")
        from .crypto import default_scheme
        from .crypto.auth import SignatureScheme
        scheme = default_scheme(key.key)
        if self.peer_hashes and int(scheme.hash_algorithm) not in self.peer_hashes:
            scheme = next((s for s in SignatureScheme if s.kind == scheme.kind
                           and int(s.hash_algorithm) in self.peer_hashes), scheme)
        return pl.AUTH(method=AuthMethod.DIGITAL_SIGNATURE, data=sign_auth(AuthMethod.DIGITAL_SIGNATURE, key.key,
                                                                           octets, scheme))

    def verify_peer_auth(self, id_payload: pl.Identification, auth: pl.AUTH, payloads: list[pl.Payload],
                         peer_id: Identity, config: IkeConfig | None = None) -> None:
        """Raises AuthenticationFailed / CryptoError when the peer's AUTH does not check out."""
        config = config or self.config
        octets = self._signed_octets(False, id_payload.body())
        assert self.algorithms is not None
        if str(config.remote.method) == "psk":
            if auth.method != AuthMethod.SHARED_KEY_MIC:
                raise AuthenticationFailed(f"peer used {name_of(AuthMethod, auth.method)}, connection expects a PSK")
            secret = self.endpoint.config.find_psk(self.local_id, peer_id)
            if secret is None:
                raise AuthenticationFailed(f"no pre-shared key for {self.local_id} - {peer_id}")
            verify_psk_auth(self.algorithms.prf, secret, octets, auth.data)
            return
        if auth.method == AuthMethod.SHARED_KEY_MIC:
            raise AuthenticationFailed("peer used a pre-shared key, connection expects a signature")
        from .certs import verify_peer_certificate
        certs = [p for p in payloads if isinstance(p, pl.CERT)]
        if self.endpoint.wall_clock is None:
            raise AuthenticationFailed("no wall clock given to the endpoint: certificate validity cannot be checked")
        end_entity = verify_peer_certificate(certs, config, self.endpoint.config.trust_anchors(config), peer_id,
                                             self.endpoint.wall_clock())
        verify_auth(auth.method, end_entity, auth.data, octets, accepted_hashes=OUR_SIGNATURE_HASHES)

    def auth_failed(self, reason: str, by_peer: bool, now: float, tell_peer: bool = False) -> None:
        self.endpoint.emit(AuthFailed(self.unique_id, self.config.name, reason, by_peer))
        if tell_peer and self.keys is not None:
            # RFC 7296 §2.21.2: tell the responder, then forget the SA
            self.send_request_once([pl.Notify(notify_type=NotifyType.AUTHENTICATION_FAILED)], now)
        self.destroy(f"authentication failed: {reason}", now, quiet=True)

    def established(self, now: float) -> None:
        self.destroy_at = None
        self.set_state(IkeState.ESTABLISHED, now)
        self.schedule_ike_lifetime(now)
        assert self.algorithms is not None
        self.endpoint.emit(IkeSaUp(self.unique_id, self.config.name, self.local, self.remote, self.spi_i, self.spi_r,
                                   str(self.local_id), str(self.remote_id), str(self.algorithms),
                                   self.local_behind_nat, self.remote_behind_nat, self.virtual_ip))

    def schedule_ike_lifetime(self, now: float) -> None:
        conf = self.config
        if conf.rekey_time:
            jitter = self.endpoint.random.uniform(0, conf.rand_time or 0) if self.endpoint.jitter else 0
            self.rekey_at = now + conf.rekey_time - min(jitter, conf.rekey_time)
            self.expire_at = now + conf.rekey_time + (conf.over_time or 0)

    # ------------------------------------------------------------ children

    def child_local_ts(self, child: ChildConfig) -> list[pl.TrafficSelector]:
        if self.config.vips and self.virtual_ip is None:
            # a virtual IP is asked for and not known yet: offer any address, the responder narrows
            from .config import DynamicTrafficSelector
            out = []
            for ts in child.local_ts:
                if isinstance(ts, DynamicTrafficSelector):
                    out.append(pl.TrafficSelector(ipaddress.IPv4Address(0), ipaddress.IPv4Address(2**32 - 1),
                                                  ts.ip_protocol, ts.start_port, ts.end_port))
                else:
                    out.append(ts)
            return out
        return child.local_selectors(self.virtual_ip or self.local[0])

    def child_remote_ts(self, child: ChildConfig) -> list[pl.TrafficSelector]:
        return child.remote_selectors(self.assigned_ip or self.remote[0])

    def child_proposals(self, child: ChildConfig, spi: bytes, pfs: bool) -> list[pl.Proposal]:
        out = []
        for p in child.ipsec_proposals:
            transforms = [t for t in p.transforms if pfs or t.transform_type != TransformType.DH]
            out.append(pl.Proposal(p.number, p.protocol_id, spi, transforms))
        return out

    def take_virtual_ip(self, cp: pl.CP) -> None:
        for attr in cp.attributes:
            if attr.attr_type == CfgAttr.INTERNAL_IP4_ADDRESS and len(attr.value) >= 4:
                self.virtual_ip = str(ipaddress.IPv4Address(attr.value[:4]))

    def _child_lifetimes(self, config: ChildConfig, now: float) -> tuple[float | None, float | None]:
        if not config.rekey_time:
            return None, (now + config.life_time) if config.life_time else None
        jitter = self.endpoint.random.uniform(0, config.rand_time or 0) if self.endpoint.jitter else 0
        return now + config.rekey_time - min(jitter, config.rekey_time), now + (config.life_time or config.rekey_time)

    def make_child(self, config: ChildConfig, spi_in: bytes, spi_out: bytes, chosen: ChosenAlgorithms,
                   nonce_i: bytes, nonce_r: bytes, shared: bytes | None, we_are_exchange_initiator: bool,
                   mode: str, local_ts: list, remote_ts: list, now: float, rekeyed: ChildSA | None) -> ChildSA:
        assert self.algorithms is not None and self.keys is not None
        try:
            keys = derive_child_sa_keys(self.algorithms.prf, self.keys.sk_d, chosen.encr, chosen.encr_key_length,
                                        chosen.integ or 0, nonce_i, nonce_r, shared)
        except CryptoError as err:
            raise ExchangeFailed(str(err), NotifyType.NO_PROPOSAL_CHOSEN) from None
        # RFC 7296 §2.17: initiator-to-responder keys first
        keys_i, keys_r = ChildKeys(keys.encr_i, keys.integ_i), ChildKeys(keys.encr_r, keys.integ_r)
        keys_out, keys_in = (keys_i, keys_r) if we_are_exchange_initiator else (keys_r, keys_i)
        rekey_at, expire_at = self._child_lifetimes(config, now)
        child = ChildSA(self.endpoint.new_child_id(), config, spi_in, spi_out, chosen, keys_in, keys_out, mode,
                        list(local_ts), list(remote_ts), now, rekey_at, expire_at, nonces=(nonce_i, nonce_r),
                        created_by_us=we_are_exchange_initiator)
        self.children.append(child)
        self.endpoint.trace(now, "state", ike_sa=self.unique_id, object="CHILD_SA", name=config.name,
                            old="CREATED", new="INSTALLED", spi_in=spi_in.hex(), spi_out=spi_out.hex())
        self.endpoint.emit(ChildSaUp(
            self.unique_id, config.name, child.unique_id, chosen.protocol, spi_in, spi_out, chosen.encr,
            chosen.encr_key_length, chosen.integ or 0, chosen.esn, keys_in, keys_out, mode, tuple(local_ts),
            tuple(remote_ts), self.local, self.remote, self.nat_detected, config.replay_window, str(chosen),
            rekeyed.spi_in if rekeyed is not None else None, we_are_exchange_initiator))
        return child

    def install_child_from_response(self, config: ChildConfig, spi_in: bytes, payloads: list[pl.Payload],
                                    nonce_i: bytes, nonce_r: bytes, shared: bytes | None, now: float, *,
                                    we_initiated: bool, rekeyed: ChildSA | None,
                                    proposals: list[pl.Proposal] | None = None) -> ChildSA:
        sa, tsi, tsr = _first(payloads, pl.SA), _first(payloads, pl.TSi), _first(payloads, pl.TSr)
        if sa is None or tsi is None or tsr is None:
            raise ExchangeFailed("response lacks SA, TSi or TSr for the CHILD_SA")
        offered = proposals if proposals is not None else self.child_proposals(config, spi_in, pfs=False)
        chosen = self.check_returned_proposal(sa, offered, offered[0].protocol_id if offered else ProtocolId.ESP)
        if len(chosen.spi) != 4:
            raise ExchangeFailed(f"responder's {name_of(ProtocolId, chosen.protocol)} SPI has {len(chosen.spi)} "
                                 f"octets, not 4")
        if chosen.protocol == ProtocolId.AH and self.nat_detected:
            raise ExchangeFailed("AH cannot cross a NAT (its ICV covers the IP addresses; RFC 3948 is ESP only)")
        ours_i = list(rekeyed.local_ts) if rekeyed else self.child_local_ts(config)
        ours_r = list(rekeyed.remote_ts) if rekeyed else self.child_remote_ts(config)
        if not tsi.selectors or not tsr.selectors or not _covers(ours_i, tsi.selectors) or not _covers(ours_r, tsr.selectors):
            # RFC 7296 §2.9: the responder may only narrow
            raise ExchangeFailed("responder's traffic selectors are not within ours")
        transport = _find_notify(payloads, NotifyType.USE_TRANSPORT_MODE) is not None
        mode = "transport" if transport and config.mode == ChildMode.TRANSPORT else "tunnel"
        if config.mode == ChildMode.TRANSPORT and not transport:
            raise ExchangeFailed("responder refused transport mode")
        return self.make_child(config, spi_in, chosen.spi, chosen, nonce_i, nonce_r, shared, True, mode,
                               list(tsi.selectors), list(tsr.selectors), now, rekeyed)

    def find_child(self, spi: bytes, inbound: bool) -> ChildSA | None:
        for child in self.children:
            if (child.spi_in if inbound else child.spi_out) == spi and child.state != ChildState.DELETED:
                return child
        return None

    def remove_child(self, child: ChildSA, reason: str, now: float) -> None:
        if child.state == ChildState.DELETED:
            return
        child.state = ChildState.DELETED
        if child in self.children:
            self.children.remove(child)
        self.child_rekeys_done.pop(child.spi_in, None)
        child.keys_in = child.keys_out = ChildKeys(b"", b"")  # gone with the SA
        self.endpoint.trace(now, "state", ike_sa=self.unique_id, object="CHILD_SA", name=child.config.name,
                            old="INSTALLED", new="DELETED", spi_in=child.spi_in.hex(), reason=reason)
        self.endpoint.emit(ChildSaDeleted(self.unique_id, child.config.name, child.spi_in, child.spi_out, reason))

    def finish_child_rekey(self, old: ChildSA, new: ChildSA, now: float) -> None:
        """A rekey of `old` completed, by our exchange or the peer's. RFC 7296 §2.8: the rekey
        initiator deletes the old SA once the new one is up; §2.8.1: when both sides rekeyed
        at once, the new SA made with the lowest nonce is redundant and its creator deletes it."""
        done = self.child_rekeys_done.setdefault(old.spi_in, [])
        done.append((new, new.created_by_us))
        if len(done) == 1 and not new.created_by_us and old.state == ChildState.REKEYING:
            return  # our own rekey of it is in flight: wait for it to decide
        self._resolve_child_rekey(old, now)

    def child_rekey_failed(self, old: ChildSA, now: float) -> None:
        """Our rekey of `old` did not complete; a rekey by the peer may have."""
        if self.child_rekeys_done.get(old.spi_in):
            self._resolve_child_rekey(old, now)
        elif old.state == ChildState.REKEYING:
            old.state = ChildState.INSTALLED

    def _resolve_child_rekey(self, old: ChildSA, now: float) -> None:
        done = [child for child, _ in self.child_rekeys_done.pop(old.spi_in, [])]
        if not done:
            return
        winner = done[0]
        if len(done) > 1:
            loser = min(done, key=lambda c: min(c.nonces))
            winner = next(c for c in done if c is not loser)
            self.trace_note(now, "rekey_collision", child=old.config.name, redundant=loser.spi_in.hex(),
                            kept=winner.spi_in.hex())
            if loser.created_by_us:
                self.queue(ChildDelete([loser], "redundant after a rekey collision"), now)
        old.state = ChildState.REKEYED
        self.endpoint.emit(ChildSaRekeyed(self.unique_id, old.config.name, old.spi_in, old.spi_out, winner.spi_in,
                                          winner.spi_out))
        if winner.created_by_us:
            self.queue(ChildDelete([old], "rekeyed"), now)

    def finish_ike_rekey(self, new: "IkeSA", nonces: tuple[bytes, bytes], we_initiated: bool, now: float) -> None:
        """RFC 7296 §2.18: children move to the new IKE SA, the rekey initiator deletes the old
        one; §2.8.2: in a collision the new IKE SA with the lowest nonce is redundant."""
        self.ike_rekeys_done.append((new, nonces, we_initiated))
        if len(self.ike_rekeys_done) == 1 and not we_initiated and self.rekeying_ike is not None:
            return  # our own IKE rekey is in flight: wait for it to decide
        self._resolve_ike_rekey(now)

    def ike_rekey_failed(self, now: float) -> None:
        self.rekeying_ike = None
        if self.ike_rekeys_done:
            self._resolve_ike_rekey(now)

    def _resolve_ike_rekey(self, now: float) -> None:
        done, self.ike_rekeys_done = self.ike_rekeys_done, []
        winner = done[0]
        if len(done) > 1:
            loser = min(done, key=lambda entry: min(entry[1]))
            winner = next(entry for entry in done if entry is not loser)
            self.trace_note(now, "ike_rekey_collision", redundant=loser[0].our_spi.hex(), kept=winner[0].our_spi.hex())
            if loser[2]:
                loser[0].queue(IkeDelete("redundant after an IKE rekey collision"), now)
            else:
                # RFC 7296 §2.8.2: its creator deletes it; should that never come, we delete it (as strongSwan does)
                loser[0].delayed.append((now + self.endpoint.settings.half_open_timeout,
                                         IkeDelete("redundant after an IKE rekey collision, not deleted by the peer")))
        self._move_to(winner[0], now)
        self.set_state(IkeState.REKEYED, now)
        if winner[2]:
            self.queue(IkeDelete("rekeyed"), now)

    def _move_to(self, new: "IkeSA", now: float) -> None:
        for child in self.children:
            new.children.append(child)
        self.children = []
        new.virtual_ip, new.assigned_ip = self.virtual_ip, self.assigned_ip
        self.endpoint.emit(IkeSaRekeyed(self.unique_id, new.unique_id, new.spi_i, new.spi_r))
        # RFC 7296 §2.18: the CHILD SAs now live on the new IKE SA, and so does the work queued for them
        # (a CHILD_SA rekey refused with TEMPORARY_FAILURE during the IKE rekey, §2.25.2)
        child_tasks = (ChildCreate, ChildDelete)
        new.delayed += [entry for entry in self.delayed if isinstance(entry[1], child_tasks)]
        self.delayed = [entry for entry in self.delayed if not isinstance(entry[1], child_tasks)]
        for task in [t for t in self.tasks if isinstance(t, child_tasks)]:
            self.tasks.remove(task)
            new.queue(task, now)

    # ------------------------------------------------------------ sending

    def queue(self, task: Task, now: float, front: bool = False) -> None:
        if front:
            self.tasks.appendleft(task)
        else:
            self.tasks.append(task)
        self.start_next(now)

    def retry_task(self, task: Task, now: float) -> None:
        """Send the same exchange again, with a new message (INVALID_KE, COOKIE)."""
        self.pending = None
        if task.exchange == ExchangeType.IKE_SA_INIT:
            self.mid_out = 0
        self.tasks.appendleft(task)
        self.start_next(now)

    def retry_later(self, task: Task, now: float) -> None:
        # RFC 7296 §2.25: wait before retrying; a random wait, or two sides refusing each other
        # (an IKE rekey against a CHILD_SA rekey, §2.25.2) retry in step and collide forever
        settings = self.endpoint.settings
        delay = settings.temporary_failure_retry - self.endpoint.random.uniform(0, settings.temporary_failure_jitter)
        self.delayed.append((now + delay, task))

    def start_next(self, now: float) -> None:
        if self.pending is not None or self.state in (IkeState.DELETED,):
            return
        while self.tasks and self.pending is None:
            task = self.tasks.popleft()
            if self.state == IkeState.REKEYED and not isinstance(task, (IkeDelete, ChildDelete)):
                continue
            if self.state == IkeState.DELETING and not isinstance(task, IkeDelete):
                continue
            try:
                payloads = task.build(self, now)
            except ExchangeFailed as err:
                self.task_failed(task, err.reason, now)
                continue
            if payloads is None or (isinstance(task, ChildDelete) and not payloads):
                continue
            self.send_request(task, payloads, now)

    def _template(self, exchange: int, message_id: int, response: bool) -> Message:
        return Message(self.spi_i, self.spi_r, exchange, message_id, self.is_initiator, response)

    def _seal(self, exchange: int, message_id: int, response: bool, payloads: list[pl.Payload]) -> list[bytes]:
        template = self._template(exchange, message_id, response)
        if exchange == ExchangeType.IKE_SA_INIT:
            template.payloads = payloads
            return [template.serialize()]
        assert self.cipher is not None
        whole = encrypt(template, payloads, self.cipher, self.keys_out, self.endpoint.random)
        limit = self.endpoint.settings.fragment_size - self._ip_udp_overhead()
        if (len(whole) > limit and self.peer_fragmentation and self.config.fragmentation != Fragmentation.NO
                and exchange != ExchangeType.IKE_SA_INIT) or (self.config.fragmentation == Fragmentation.FORCE
                                                             and exchange == ExchangeType.IKE_AUTH):
            # RFC 7383 §2.5: fragment once the message would exceed the fragment size
            return encrypt_fragments(template, payloads, self.cipher, self.keys_out, self.endpoint.random, limit)
        return [whole]

    def _ip_udp_overhead(self) -> int:
        ip = 40 if ":" in self.remote[0] else 20
        return ip + 8 + (4 if self.local[1] == 4500 or self.remote[1] == 4500 else 0)

    def send_request(self, task: Task, payloads: list[pl.Payload], now: float) -> None:
        message_id = self.mid_out
        datagrams = self._seal(task.exchange, message_id, False, payloads)
        if task.exchange == ExchangeType.IKE_SA_INIT:
            self.init_request = datagrams[0]
        self.pending = Pending(task, message_id, datagrams, now, 0,
                               now + self.endpoint.settings.retransmit_timeout)
        self.endpoint.transmit(self, datagrams, task.exchange, message_id, False, payloads, now)

    def send_request_once(self, payloads: list[pl.Payload], now: float) -> None:
        datagrams = self._seal(ExchangeType.INFORMATIONAL, self.mid_out, False, payloads)
        self.endpoint.transmit(self, datagrams, ExchangeType.INFORMATIONAL, self.mid_out, False, payloads, now)
        self.mid_out += 1

    def send_response(self, exchange: int, message_id: int, payloads: list[pl.Payload], now: float) -> None:
        datagrams = self._seal(exchange, message_id, True, payloads)
        self.last_response = datagrams
        self.endpoint.transmit(self, datagrams, exchange, message_id, True, payloads, now)

    # ------------------------------------------------------------ timers

    def next_timer(self) -> float | None:
        times = [t for t, _ in self.delayed]
        if self.pending is not None:
            times.append(self.pending.next_at)
        if self.state == IkeState.ESTABLISHED:
            if self.rekey_at is not None:
                times.append(self.rekey_at)
            if self.expire_at is not None:
                times.append(self.expire_at)
            if self.config.dpd_delay and self.pending is None:
                times.append(self.last_heard + self.config.dpd_delay)
            for child in self.children:
                if child.rekey_at is not None and child.state == ChildState.INSTALLED:
                    times.append(child.rekey_at)
                if child.expire_at is not None:
                    times.append(child.expire_at)
        if self.destroy_at is not None:
            times.append(self.destroy_at)
        return min(times) if times else None

    def on_timer(self, now: float) -> None:
        settings = self.endpoint.settings
        if self.destroy_at is not None and now >= self.destroy_at:
            self.destroy("half-open SA timed out" if self.state == IkeState.CONNECTING else "expired", now)
            return
        if self.pending is not None and now >= self.pending.next_at:
            pending = self.pending
            if pending.tries >= settings.retransmit_tries:
                self._give_up(pending, now)
                return
            pending.tries += 1
            # strongSwan's retransmission: timeout * base^tries
            pending.next_at = now + settings.retransmit_timeout * settings.retransmit_base ** pending.tries
            if pending.tries == settings.retransmit_tries:
                pending.next_at = now + settings.retransmit_timeout * settings.retransmit_base ** (pending.tries + 1)
            self.endpoint.retransmit(self, pending, now)
        for entry in [d for d in self.delayed if d[0] <= now]:
            self.delayed.remove(entry)
            self.queue(entry[1], now)
        if self.state != IkeState.ESTABLISHED:
            return
        if self.expire_at is not None and now >= self.expire_at:
            self.queue(IkeDelete("IKE SA lifetime expired"), now, front=True)
            self.expire_at = None
            return
        if self.rekey_at is not None and now >= self.rekey_at:
            self.rekey_at = None
            self.queue(IkeRekey(), now)
        if self.config.dpd_delay and self.pending is None and not self.tasks and now >= self.last_heard + self.config.dpd_delay:
            self.last_heard = now
            self.queue(Dpd(), now)
        for child in list(self.children):
            if child.expire_at is not None and now >= child.expire_at:
                child.expire_at = None
                self.queue(ChildDelete([child], "CHILD_SA lifetime expired"), now, front=True)
            elif child.rekey_at is not None and now >= child.rekey_at and child.state == ChildState.INSTALLED:
                child.rekey_at = None
                self.queue(ChildCreate(child.config, child), now)

    def _give_up(self, pending: Pending, now: float) -> None:
        # RFC 7296 §2.4: the peer is considered dead after the retransmissions
        self.pending = None
        name = name_of(ExchangeType, pending.task.exchange)
        self.endpoint.emit(PeerUnreachable(self.unique_id, self.config.name, name, pending.tries + 1))
        pending.task.abort(self, "retransmissions exhausted", now)
        action = self._dpd_action()
        self.destroy(f"peer did not answer {name} after {pending.tries + 1} tries", now, quiet=True)
        if action == "restart" and self.is_initiator:
            self.endpoint.restart(self.config, now)

    def _dpd_action(self) -> str:
        # swanctl.conf dpd_action: restart is stored as START, clear as NONE (strongSwan's action_t)
        actions = {str(c.dpd_action) for c in self.config.children.values()}
        return "restart" if "start" in actions else ("trap" if "trap" in actions else "clear")

    # ------------------------------------------------------------ receiving

    def receive(self, message: Message, data: bytes, src: Address, dst: Address, now: float) -> None:
        if message.is_response:
            self._receive_response(message, data, src, now)
        else:
            self._receive_request(message, data, src, dst, now)

    def _unprotect(self, message: Message, data: bytes, now: float) -> list[pl.Payload] | None:
        """The inner payloads; None while fragments are missing or when the message does not
        verify (counted as a drop, no state change)."""
        if message.exchange == ExchangeType.IKE_SA_INIT:
            return message.payloads
        if self.cipher is None:
            self.endpoint.drop("no keys yet", now, self)
            return None
        last = message.encrypted
        if last is None:
            # RFC 7296 §3.14: after IKE_SA_INIT everything is protected
            self.endpoint.drop("unprotected message after IKE_SA_INIT", now, self)
            return None
        try:
            if isinstance(last, pl.SKF):
                piece = decrypt_fragment(data, message, self.cipher, self.keys_in)
                key = (message.is_response, message.message_id)
                reassembly = self.reassembly.get(key)
                if reassembly is None:
                    settings = self.endpoint.settings
                    reassembly = self.reassembly[key] = Reassembly(message.message_id, settings.max_fragments,
                                                                    settings.max_reassembly)
                inner = reassembly.add(last, piece)
                if inner is not None:
                    del self.reassembly[key]
                return inner
            return decrypt(data, message, self.cipher, self.keys_in)
        except IntegrityError as err:
            self.endpoint.drop(f"integrity check failed: {err}", now, self)
        except ParseError as err:
            self.endpoint.drop(f"malformed encrypted payloads: {err}", now, self)
        except ReassemblyError as err:
            self.reassembly.pop((message.is_response, message.message_id), None)
            self.endpoint.drop(f"fragment reassembly: {err}", now, self)
        except CryptoError as err:
            self.endpoint.drop(f"cannot decrypt: {err}", now, self)
        return None

    def _receive_response(self, message: Message, data: bytes, src: Address, now: float) -> None:
        pending = self.pending
        if pending is None or message.message_id != pending.message_id:
            self.endpoint.drop(f"unexpected response with message ID {message.message_id}", now, self)
            return
        if message.exchange != pending.task.exchange:
            self.endpoint.drop("response of another exchange type", now, self)
            return
        if pending.task.exchange == ExchangeType.IKE_SA_INIT:
            self.pending_response_spi_r = message.spi_r
            self.init_response = data
        inner = self._unprotect(message, data, now)
        if inner is None:
            return
        unsupported = [p for p in inner if isinstance(p, pl.UnknownPayload) and p.critical]
        if unsupported:
            self.endpoint.drop("response with an unsupported critical payload", now, self)
            return
        self.endpoint.trace_message(self, "in", message, inner, src, self.local, len(data), now)
        self.last_heard = now
        self.pending = None
        self.mid_out = pending.message_id + 1
        self._follow_peer(src, self.local, now)
        try:
            pending.task.process(self, inner, now)
        except ExchangeFailed as err:
            self.task_failed(pending.task, err.reason, now)
        self.start_next(now)

    def task_failed(self, task: Task, reason: str, now: float) -> None:
        name = name_of(ExchangeType, task.exchange)
        self.endpoint.emit(NegotiationFailed(self.unique_id, self.config.name, name, reason))
        task.abort(self, reason, now)
        if isinstance(task, (IkeInit, IkeAuth)):
            self.destroy(f"{name} failed: {reason}", now, quiet=True)

    def _follow_peer(self, src: Address, dst: Address, now: float) -> None:
        """RFC 7296 §2.23: after NAT detection, follow the peer's address and port as seen
        on authenticated messages (the NAT box may map it anew), and our float to 4500."""
        if dst[1] == 4500 and self.local[1] != 4500:
            self.local = dst
        if src != self.remote and self.remote_behind_nat:
            self.trace_note(now, "peer_address_changed", old=f"{self.remote[0]}:{self.remote[1]}",
                            new=f"{src[0]}:{src[1]}")
            self.remote = src

    def _receive_request(self, message: Message, data: bytes, src: Address, dst: Address, now: float) -> None:
        if message.message_id == self.mid_in - 1 and self.last_response:
            skf = message.encrypted
            if not isinstance(skf, pl.SKF) or skf.fragment_number == 1:
                # RFC 7296 §2.1: a retransmitted request gets the same response again
                self.endpoint.resend(self, self.last_response, now)
            return
        if message.message_id != self.mid_in:
            self.endpoint.drop(f"request with message ID {message.message_id}, expected {self.mid_in}", now, self)
            return
        inner = self._unprotect(message, data, now)
        if inner is None:
            return
        self.endpoint.trace_message(self, "in", message, inner, src, dst, len(data), now)
        self.last_heard = now
        self.mid_in += 1
        self._follow_peer(src, dst, now)
        unsupported = [p for p in inner if isinstance(p, pl.UnknownPayload) and p.critical]
        if unsupported:
            # RFC 7296 §2.5
            self.send_response(message.exchange, message.message_id, [pl.Notify(
                notify_type=NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD, data=bytes([unsupported[0].unknown_type]))], now)
            return
        from .responder import respond
        respond(self, message.exchange, message.message_id, inner, now)
        self.start_next(now)

    # ------------------------------------------------------------ the end

    def destroy(self, reason: str, now: float, quiet: bool = False) -> None:
        if self.state == IkeState.DELETED:
            return
        for child in list(self.children):
            self.remove_child(child, reason, now)
        if self.pending is not None:
            pending, self.pending = self.pending, None
            if not isinstance(pending.task, (IkeDelete, ChildDelete)):
                pending.task.abort(self, reason, now)
        self.tasks.clear()
        self.delayed.clear()
        was = self.state
        self.set_state(IkeState.DELETED, now)
        # no key material outlives its SA (RFC 7296 §2.12: forget DH secrets and keys once done)
        self.keys = self.cipher = self.kex = self.rekeying_ike = None
        self.ike_rekeys_done = []
        if was != IkeState.REKEYED or not quiet:
            self.endpoint.emit(IkeSaDeleted(self.unique_id, self.config.name, reason))
        self.endpoint.forget(self)
