"""IKE_AUTH (RFC 7296 §1.2, §2.15): identities, AUTH (PSK or signatures), certificates, the
first CHILD SA (or none, RFC 6023) and a virtual IP from a pool (§3.15). A rejected AUTH is
answered AUTHENTICATION_FAILED, or told to the responder in an INFORMATIONAL (§2.21.2)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .. import payloads as pl
from ..config import ChildConfig, ChildMode
from ..const import CfgAttr, CfgType, ExchangeType, NotifyType, name_of
from ..crypto import AuthenticationFailed
from ..errors import CryptoError
from ..events import AuthFailed, NegotiationFailed
from ..identity import Identity
from .base import CHILD_ERRORS, ExchangeFailed, Task, error_notify, find_notify, first, notify
from .child_create import new_child_as_responder

if TYPE_CHECKING:
    from ..sa import IkeSA


class IkeAuth(Task):
    exchange = ExchangeType.IKE_AUTH
    name = "IKE_AUTH"

    def __init__(self, child: ChildConfig | None = None) -> None:
        self.child = child
        self.spi_in = b""
        self.reply: list[pl.Payload] = []
        self.failure: str | None = None

    # ---------------------------------------------------------------- initiator

    def build_i(self, ike: "IkeSA", now: float) -> list[pl.Payload]:
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

    def process_i(self, ike: "IkeSA", payloads: list[pl.Payload], now: float) -> None:
        if find_notify(payloads, NotifyType.AUTHENTICATION_FAILED) is not None:
            ike.auth_failed("peer answered AUTHENTICATION_FAILED", by_peer=True, now=now)
            return
        error = error_notify(payloads)
        if error is not None and error.notify_type not in CHILD_ERRORS:
            raise ExchangeFailed(f"peer answered {name_of(NotifyType, error.notify_type)}")
        id_r, auth = first(payloads, pl.IDr), first(payloads, pl.AUTH)
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
        cp = first(payloads, pl.CP)
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

    # ---------------------------------------------------------------- responder

    def process_r(self, ike: "IkeSA", inner: list[pl.Payload], now: float) -> None:
        endpoint = ike.endpoint
        id_i, auth = first(inner, pl.IDi), first(inner, pl.AUTH)
        if id_i is None or auth is None:
            return self._fail(ike, "IKE_AUTH request lacks IDi or AUTH")
        peer_id = Identity.from_payload(id_i)
        id_r = first(inner, pl.IDr)
        wanted_local = Identity.from_payload(id_r) if id_r is not None else None
        config = endpoint.config.find_connection_for(ike.local[0], ike.remote[0], remote_id=peer_id,
                                                     local_id=wanted_local)
        if config is None:
            return self._fail(ike, f"no connection for peer identity {peer_id}"
                              + (f" asking for {wanted_local}" if wanted_local is not None else ""))
        if config is not ike.config:
            ike.config = config
            ike.local_id = config.local_identity(ike.local[0])
        try:
            ike.verify_peer_auth(id_i, auth, inner, peer_id, config)
        except (AuthenticationFailed, CryptoError) as err:
            return self._fail(ike, str(err))
        ike.remote_id = peer_id
        ike.peer_certreq = ike.peer_certreq or first(inner, pl.CERTREQ) is not None
        id_payload = ike.local_id.to_payload(pl.IDr)
        try:
            reply: list[pl.Payload] = [id_payload, *ike.cert_payloads(), ike.auth_payload(id_payload)]
        except ExchangeFailed as err:
            return self._fail(ike, err.reason)
        ike.established(now)
        self.reply = reply + _first_child(ike, inner, now)

    def _fail(self, ike: "IkeSA", reason: str) -> None:
        ike.endpoint.emit(AuthFailed(ike.unique_id, ike.config.name, reason, by_peer=False))
        # RFC 7296 §2.21.2: answer AUTHENTICATION_FAILED, then forget the SA
        self.failure = reason
        self.reply = [notify(NotifyType.AUTHENTICATION_FAILED)]

    def build_r(self, ike: "IkeSA", now: float) -> list[pl.Payload]:
        return self.reply

    def responded(self, ike: "IkeSA", now: float) -> None:
        if self.failure is not None:
            ike.destroy(f"authentication failed: {self.failure}", now, quiet=True)


class AuthRejected(Task):
    """The initiator tells us it did not accept our AUTH (RFC 7296 §2.21.2): an INFORMATIONAL
    with AUTHENTICATION_FAILED; we answer and forget the SA."""

    name = "INFORMATIONAL"

    def process_r(self, ike: "IkeSA", payloads: list[pl.Payload], now: float) -> None:
        ike.endpoint.emit(AuthFailed(ike.unique_id, ike.config.name, "peer rejected our authentication",
                                     by_peer=True))

    def build_r(self, ike: "IkeSA", now: float) -> list[pl.Payload]:
        return []

    def responded(self, ike: "IkeSA", now: float) -> None:
        ike.destroy("peer rejected our authentication", now, quiet=True)


def _assign_virtual_ip(ike: "IkeSA", cp: pl.CP | None) -> list[pl.Payload]:
    if cp is None or cp.cfg_type != CfgType.CFG_REQUEST:
        return []
    wants_v4 = any(a.attr_type == CfgAttr.INTERNAL_IP4_ADDRESS for a in cp.attributes)
    if not wants_v4:
        return []
    lease = ike.endpoint.lease_address(ike.config, ike.remote_id)
    if lease is None:
        raise ExchangeFailed("no virtual IP to give (no pool or pool exhausted)", NotifyType.INTERNAL_ADDRESS_FAILURE)
    address, dns = lease
    ike.assigned_ip = str(address)
    attributes = [pl.CfgAttribute(CfgAttr.INTERNAL_IP4_ADDRESS, address.packed)]
    if any(a.attr_type == CfgAttr.INTERNAL_IP4_DNS for a in cp.attributes):
        attributes += [pl.CfgAttribute(CfgAttr.INTERNAL_IP4_DNS, d.packed) for d in dns if d.version == 4]
    return [pl.CP(cfg_type=CfgType.CFG_REPLY, attributes=attributes)]


def _first_child(ike: "IkeSA", inner: list[pl.Payload], now: float) -> list[pl.Payload]:
    sa, tsi, tsr = first(inner, pl.SA), first(inner, pl.TSi), first(inner, pl.TSr)
    if sa is None or tsi is None or tsr is None:
        return []  # RFC 6023 childless; nothing to set up
    try:
        cp_reply = _assign_virtual_ip(ike, first(inner, pl.CP))
        payloads, _ = new_child_as_responder(ike, inner, sa, tsi, tsr, ike.nonce_i, ike.nonce_r, None, now,
                                             pfs=False)
    except ExchangeFailed as err:
        ike.endpoint.emit(NegotiationFailed(ike.unique_id, ike.config.name, "IKE_AUTH",
                                            f"no CHILD_SA: {err.reason}"))
        return [notify(err.notify or NotifyType.NO_PROPOSAL_CHOSEN, err.data)]
    return cp_reply + payloads
