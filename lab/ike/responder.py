"""Answering requests on an existing IKE SA: IKE_AUTH, CREATE_CHILD_SA (new CHILD_SA, CHILD_SA
rekey, IKE SA rekey) and INFORMATIONAL (deletes, liveness checks), with the collision rules
of RFC 7296 §2.25."""
from __future__ import annotations

import struct
from . import payloads as pl
from .config import ChildConfig, ChildMode
from .const import CfgAttr, CfgType, ExchangeType, NotifyType, ProtocolId, TransformType, name_of
from .crypto import AuthenticationFailed
from .errors import CryptoError
from .events import AuthFailed, NegotiationFailed
from .identity import Identity
from .proposals import ChosenAlgorithms, ProposalError, select_proposal
from .sa import (ChildCreate, ChildDelete, ChildSA, ChildState, ExchangeFailed, IkeSA, IkeState,
                 _find_notify, _first, narrow)

def _notify(kind: int, data: bytes = b"", protocol: int = 0, spi: bytes = b"") -> pl.Notify:
    return pl.Notify(notify_type=kind, data=data, protocol_id=protocol, spi=spi)


def respond(ike: IkeSA, exchange: int, message_id: int, inner: list[pl.Payload], now: float) -> None:
    if exchange == ExchangeType.IKE_AUTH:
        out = _ike_auth(ike, inner, now)
    elif exchange == ExchangeType.CREATE_CHILD_SA:
        out = _create_child_sa(ike, inner, now)
    elif exchange == ExchangeType.INFORMATIONAL:
        out = _informational(ike, inner, now)
    else:
        ike.endpoint.drop(f"request of unsupported exchange {name_of(ExchangeType, exchange)}", now, ike)
        return
    if out is None:
        return
    payloads, after = out
    ike.send_response(exchange, message_id, payloads, now)
    if after is not None:
        after()


# ---------------------------------------------------------------- IKE_AUTH


def _ike_auth(ike: IkeSA, inner: list[pl.Payload], now: float):
    if ike.is_initiator or ike.state != IkeState.CONNECTING:
        ike.endpoint.drop("IKE_AUTH request on an SA that is not waiting for one", now, ike)
        return None
    endpoint = ike.endpoint
    id_i, auth = _first(inner, pl.IDi), _first(inner, pl.AUTH)
    if id_i is None or auth is None:
        return _auth_failure(ike, "IKE_AUTH request lacks IDi or AUTH", now)
    peer_id = Identity.from_payload(id_i)
    id_r = _first(inner, pl.IDr)
    wanted_local = Identity.from_payload(id_r) if id_r is not None else None
    config = endpoint.config.find_connection_for(ike.local[0], ike.remote[0], remote_id=peer_id,
                                                 local_id=wanted_local)
    if config is None:
        return _auth_failure(ike, f"no connection for peer identity {peer_id}"
                             + (f" asking for {wanted_local}" if wanted_local is not None else ""), now)
    if config is not ike.config:
        ike.config = config
        ike.local_id = config.local_identity(ike.local[0])
    try:
        ike.verify_peer_auth(id_i, auth, inner, peer_id, config)
    except (AuthenticationFailed, CryptoError) as err:
        return _auth_failure(ike, str(err), now)
    ike.remote_id = peer_id
    ike.peer_certreq = ike.peer_certreq or _first(inner, pl.CERTREQ) is not None
    id_payload = ike.local_id.to_payload(pl.IDr)
    try:
        reply: list[pl.Payload] = [id_payload, *ike.cert_payloads(), ike.auth_payload(id_payload)]
    except ExchangeFailed as err:
        return _auth_failure(ike, err.reason, now)
    ike.established(now)
    reply += _first_child(ike, inner, now)
    return reply, None


def _auth_failure(ike: IkeSA, reason: str, now: float):
    ike.endpoint.emit(AuthFailed(ike.unique_id, ike.config.name, reason, by_peer=False))
    # RFC 7296 §2.21.2: answer AUTHENTICATION_FAILED, then forget the SA
    return [_notify(NotifyType.AUTHENTICATION_FAILED)], lambda: ike.destroy(f"authentication failed: {reason}", now,
                                                                             quiet=True)


def _assign_virtual_ip(ike: IkeSA, cp: pl.CP | None) -> list[pl.Payload]:
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


def _first_child(ike: IkeSA, inner: list[pl.Payload], now: float) -> list[pl.Payload]:
    sa, tsi, tsr = _first(inner, pl.SA), _first(inner, pl.TSi), _first(inner, pl.TSr)
    if sa is None or tsi is None or tsr is None:
        return []  # RFC 6023 childless; nothing to set up
    try:
        cp_reply = _assign_virtual_ip(ike, _first(inner, pl.CP))
        payloads, child = _new_child(ike, inner, sa, tsi, tsr, ike.nonce_i, ike.nonce_r, None, now, pfs=False)
    except ExchangeFailed as err:
        ike.endpoint.emit(NegotiationFailed(ike.unique_id, ike.config.name, "IKE_AUTH",
                                            f"no CHILD_SA: {err.reason}"))
        return [_notify(err.notify or NotifyType.NO_PROPOSAL_CHOSEN, err.data)]
    return cp_reply + payloads


def _select_child_config(ike: IkeSA, tsi: pl.TSi, tsr: pl.TSr,
                         only: ChildConfig | None = None) -> tuple[ChildConfig, list, list]:
    remote_address = ike.assigned_ip or ike.remote[0]
    for config in ([only] if only is not None else ike.config.children.values()):
        # RFC 7296 §2.9: TSi is the initiator's (our remote) side, TSr ours
        local = narrow(tsr.selectors, config.local_selectors(ike.local[0]))
        remote = narrow(tsi.selectors, config.remote_selectors(remote_address))
        if local and remote:
            return config, local, remote
    raise ExchangeFailed("traffic selectors not acceptable", NotifyType.TS_UNACCEPTABLE)


def _new_child(ike: IkeSA, inner: list[pl.Payload], sa: pl.SA, tsi: pl.TSi, tsr: pl.TSr, nonce_i: bytes,
               nonce_r: bytes, ke: pl.KE | None, now: float, pfs: bool, rekeyed: ChildSA | None = None
               ) -> tuple[list[pl.Payload], ChildSA]:
    config, local_ts, remote_ts = _select_child_config(ike, tsi, tsr, rekeyed.config if rekeyed else None)
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
        kex = ike.endpoint.random.key_exchange(chosen.dh)
        try:
            shared = kex.shared_secret(ke.data)
        except CryptoError as err:
            raise ExchangeFailed(f"peer's KE value rejected: {err}", NotifyType.INVALID_SYNTAX) from None
        reply_ke = [pl.KE(dh_group=chosen.dh, data=kex.public_value)]
    transport = _find_notify(inner, NotifyType.USE_TRANSPORT_MODE) is not None and config.mode == ChildMode.TRANSPORT
    spi_in = ike.endpoint.new_child_spi()
    child = ike.make_child(config, spi_in, chosen.spi, chosen, nonce_i, nonce_r, shared, False,
                           "transport" if transport else "tunnel", local_ts, remote_ts, now, rekeyed)
    out: list[pl.Payload] = []
    if transport:
        out.append(_notify(NotifyType.USE_TRANSPORT_MODE))
    out.append(pl.SA(proposals=[pl.Proposal(selected.number, selected.protocol_id, spi_in, selected.transforms)]))
    if nonce_r is not ike.nonce_r:
        out.append(pl.Nonce(data=nonce_r))
    out += reply_ke
    out += [pl.TSi(selectors=remote_ts), pl.TSr(selectors=local_ts)]
    return out, child


# ---------------------------------------------------------------- CREATE_CHILD_SA


def _create_child_sa(ike: IkeSA, inner: list[pl.Payload], now: float):
    sa, nonce, ke = _first(inner, pl.SA), _first(inner, pl.Nonce), _first(inner, pl.KE)
    if sa is None or nonce is None or not sa.proposals:
        return [_notify(NotifyType.INVALID_SYNTAX)], None
    if not 16 <= len(nonce.data) <= 256:
        return [_notify(NotifyType.INVALID_SYNTAX)], None
    if sa.proposals[0].protocol_id == ProtocolId.IKE:
        return _rekey_ike(ike, sa, nonce, ke, now)
    if ike.state != IkeState.ESTABLISHED or ike.rekeying_ike is not None:
        # RFC 7296 §2.25.2: no CHILD_SA work while the IKE SA is rekeyed or closed
        return [_notify(NotifyType.TEMPORARY_FAILURE)], None
    tsi, tsr = _first(inner, pl.TSi), _first(inner, pl.TSr)
    if tsi is None or tsr is None:
        return [_notify(NotifyType.INVALID_SYNTAX)], None
    rekey = _find_notify(inner, NotifyType.REKEY_SA)
    old = None
    if rekey is not None:
        old = ike.find_child(rekey.spi, inbound=False)
        if old is None:
            # RFC 7296 §2.25
            return [_notify(NotifyType.CHILD_SA_NOT_FOUND, protocol=rekey.protocol_id, spi=rekey.spi)], None
        if old.state in (ChildState.DELETING, ChildState.REKEYED):
            # RFC 7296 §2.25.1: it is being closed
            return [_notify(NotifyType.TEMPORARY_FAILURE)], None
    nonce_r = ike.endpoint.random(ike.endpoint.settings.nonce_size)
    try:
        payloads, child = _new_child(ike, inner, sa, tsi, tsr, nonce.data, nonce_r, ke, now, pfs=True, rekeyed=old)
    except ExchangeFailed as err:
        ike.endpoint.emit(NegotiationFailed(ike.unique_id, ike.config.name, "CREATE_CHILD_SA",
                                            f"peer's CHILD_SA request refused: {err.reason}"))
        return [_notify(err.notify or NotifyType.NO_PROPOSAL_CHOSEN, err.data)], None
    if old is not None:
        return payloads, lambda: ike.finish_child_rekey(old, child, now)
    return payloads, None


def _rekey_ike(ike: IkeSA, sa: pl.SA, nonce: pl.Nonce, ke: pl.KE | None, now: float):
    if ike.state != IkeState.ESTABLISHED:
        return [_notify(NotifyType.TEMPORARY_FAILURE)], None
    pending = ike.pending.task if ike.pending is not None else None
    if isinstance(pending, (ChildCreate, ChildDelete)):
        # RFC 7296 §2.25.1: no IKE rekey while a CHILD_SA is being created, rekeyed or closed
        return [_notify(NotifyType.TEMPORARY_FAILURE)], None
    selected = select_proposal(ike.config.proposals, sa.proposals, prefer_local=True)
    if selected is None:
        return [_notify(NotifyType.NO_PROPOSAL_CHOSEN)], None
    chosen = ChosenAlgorithms.from_proposal(selected)
    if len(chosen.spi) != 8:
        return [_notify(NotifyType.INVALID_SYNTAX)], None
    if ke is None or ke.dh_group != chosen.dh:
        return [_notify(NotifyType.INVALID_KE_PAYLOAD, struct.pack("!H", chosen.dh or 0))], None
    kex = ike.endpoint.random.key_exchange(chosen.dh)
    try:
        shared = kex.shared_secret(ke.data)
    except CryptoError:
        return [_notify(NotifyType.INVALID_SYNTAX)], None
    spi_r = ike.endpoint.new_ike_spi()
    nonce_r = ike.endpoint.random(ike.endpoint.settings.nonce_size)
    new = ike.endpoint.rekeyed_ike_sa(ike, we_initiated=False, spi_i=chosen.spi, spi_r=spi_r, chosen=chosen,
                                      shared=shared, nonce_i=nonce.data, nonce_r=nonce_r, now=now)
    reply = [pl.SA(proposals=[pl.Proposal(selected.number, ProtocolId.IKE, spi_r, selected.transforms)]),
             pl.Nonce(data=nonce_r), pl.KE(dh_group=chosen.dh, data=kex.public_value)]
    return reply, lambda: ike.finish_ike_rekey(new, (nonce.data, nonce_r), we_initiated=False, now=now)


# ---------------------------------------------------------------- INFORMATIONAL


def _informational(ike: IkeSA, inner: list[pl.Payload], now: float):
    if _find_notify(inner, NotifyType.AUTHENTICATION_FAILED) is not None:
        # RFC 7296 §2.21.2: the initiator did not accept our AUTH
        ike.endpoint.emit(AuthFailed(ike.unique_id, ike.config.name, "peer rejected our authentication",
                                     by_peer=True))
        return [], lambda: ike.destroy("peer rejected our authentication", now, quiet=True)
    deletes = [p for p in inner if isinstance(p, pl.Delete)]
    if any(d.protocol_id == ProtocolId.IKE for d in deletes):
        # RFC 7296 §1.4.1: answer, then the IKE SA and its children are gone
        return [], lambda: ike.destroy("deleted by peer", now)
    ours: dict[int, list[bytes]] = {}
    for delete in deletes:
        if delete.protocol_id not in (ProtocolId.ESP, ProtocolId.AH):
            continue
        for spi in delete.spis:
            child = ike.find_child(spi, inbound=False)
            if child is None or child.protocol != delete.protocol_id:
                continue  # RFC 7296 §2.25.1: nothing to say about an SA we do not have
            if child.state != ChildState.DELETING:
                ours.setdefault(child.protocol, []).append(child.spi_in)  # RFC 7296 §1.4.1: close our half too
            ike.remove_child(child, "deleted by peer", now)
    reply: list[pl.Payload] = [pl.Delete(protocol_id=p, spis=spis) for p, spis in sorted(ours.items())]
    return reply, None


__all__ = ["respond"]
