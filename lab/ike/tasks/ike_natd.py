"""NAT detection (RFC 7296 §2.23), libcharon's ike_natd: the NAT_DETECTION_SOURCE_IP and
NAT_DETECTION_DESTINATION_IP hashes we send, and the peer's compared with the addresses its
message really carried, in IKE_SA_INIT and, with MOBIKE, in INFORMATIONAL exchanges (RFC 4555
§3.5, §3.8); the float to UDP 4500 once a NAT is seen; and, after that, following the peer's
address and port as the NAT maps them."""
from __future__ import annotations

import hashlib
import ipaddress
import struct
from typing import TYPE_CHECKING

from .. import payloads as pl
from ..const import NotifyType
from ..events import PeerAddressChanged
from ..states import IkeState
from .base import find_notify

if TYPE_CHECKING:
    from ..sa import IkeSA

Address = tuple[str, int]


def nat_hash(spi_i: bytes, spi_r: bytes, address: Address) -> bytes:
    # RFC 7296 §2.23: SHA-1(SPIi | SPIr | IP | port)
    ip = ipaddress.ip_address(address[0]).packed
    return hashlib.sha1(spi_i + spi_r + ip + struct.pack("!H", address[1])).digest()


def nat_detection_payloads(ike: IkeSA, established: bool = False, local: Address | None = None,
                           remote: Address | None = None) -> list[pl.Payload]:
    """NAT_DETECTION_SOURCE_IP / DESTINATION_IP (RFC 7296 §2.23) for `local` and `remote`
    (default the IKE SA's); `established`: in an INFORMATIONAL, where both SPIs are known
    (RFC 4555 §3.5, §3.8). With `encap = yes` the source hash is random, so the peer sees a
    NAT and both sides use UDP 4500, as strongSwan does."""
    spi_r = ike.spi_r if established or not ike.is_initiator else bytes(8)
    source = nat_hash(ike.spi_i, spi_r, local or ike.local)
    if ike.config.encap:
        source = ike.endpoint.random(20)
    return [pl.Notify(notify_type=NotifyType.NAT_DETECTION_SOURCE_IP, data=source),
            pl.Notify(notify_type=NotifyType.NAT_DETECTION_DESTINATION_IP,
                      data=nat_hash(ike.spi_i, spi_r, remote or ike.remote))]


def _received(payloads: list[pl.Payload]) -> tuple[list[bytes], pl.Notify | None]:
    """The peer's NAT_DETECTION_SOURCE_IP hashes (one per address it may send from) and its
    NAT_DETECTION_DESTINATION_IP."""
    sources = [p.data for p in payloads if isinstance(p, pl.Notify)
               and p.notify_type == NotifyType.NAT_DETECTION_SOURCE_IP]
    return sources, find_notify(payloads, NotifyType.NAT_DETECTION_DESTINATION_IP)


def evaluate_nat(ike: IkeSA, payloads: list[pl.Payload], now: float) -> None:
    """NAT detection in IKE_SA_INIT, and the initiator's float to UDP 4500."""
    # RFC 7296 §2.23: compare the peer's hashes with what the packet really carried
    spi_r = bytes(8) if not ike.is_initiator else ike.spi_r
    sources, destination = _received(payloads)
    if not sources and destination is None:
        return
    ike.remote_behind_nat = bool(sources) and nat_hash(ike.spi_i, spi_r, ike.remote) not in sources
    ike.local_behind_nat = destination is not None and destination.data != nat_hash(ike.spi_i, spi_r, ike.local)
    if ike.config.encap:
        ike.local_behind_nat = True
    ike.trace_note(now, "nat_detection", local_behind_nat=ike.local_behind_nat,
                   remote_behind_nat=ike.remote_behind_nat)
    if destination is not None:
        ike.natd_destination = destination.data
    # RFC 7296 §2.23: float to UDP 4500 once a NAT is seen; RFC 4555 §3.3: with MOBIKE also
    # without one, when the peer does NAT-T (there is no exchange to float in later)
    floats = ike.nat_detected or (ike.config.mobike and bool(sources) and destination is not None)
    if ike.is_initiator and floats and ike.remote[1] == ike.config.remote_port:
        ike.local = (ike.local[0], 4500)
        ike.remote = (ike.remote[0], 4500)


def evaluate_nat_informational(ike: IkeSA, payloads: list[pl.Payload], local: Address, remote: Address,
                               now: float) -> bool:
    """NAT detection in an INFORMATIONAL (RFC 4555 §3.5), for the addresses the message
    really carried; True when the payloads were there."""
    sources, destination = _received(payloads)
    if not sources or destination is None:
        return False
    ike.remote_behind_nat = nat_hash(ike.spi_i, ike.spi_r, remote) not in sources
    ike.local_behind_nat = destination.data != nat_hash(ike.spi_i, ike.spi_r, local) or ike.config.encap
    if ike.original_initiator:
        ike.natd_destination = destination.data
    ike.trace_note(now, "nat_detection", local_behind_nat=ike.local_behind_nat,
                   remote_behind_nat=ike.remote_behind_nat)
    return True


def unmapped(ike: IkeSA, destination: pl.Notify) -> bool:
    """Whether the peer's NAT_DETECTION_DESTINATION_IP is the hash of our own address: no NAT
    between us on this path."""
    return destination.data == nat_hash(ike.spi_i, ike.spi_r, ike.local)


def follow_peer(ike: IkeSA, src: Address, dst: Address, now: float, first_auth: bool = False) -> None:
    """RFC 7296 §2.23: after NAT detection, follow the peer's address and port as seen on
    authenticated messages (the NAT box may map it anew), and our float to 4500.
    `first_auth`: an IKE_AUTH request, whose IP header sets the IKE SA's addresses (RFC 4555
    §3.3). With MOBIKE nothing else moves the IKE SA (RFC 4555 §3.8)."""
    if first_auth and ike.state == IkeState.CONNECTING:
        ike.local, ike.remote = dst, src
        return
    if dst[1] == 4500 and ike.local[1] != 4500:
        ike.local = dst
    if ike.mobike:
        return
    if src != ike.remote and ike.remote_behind_nat:
        ike.trace_note(now, "peer_address_changed", old=f"{ike.remote[0]}:{ike.remote[1]}",
                       new=f"{src[0]}:{src[1]}")
        ike.endpoint.emit(PeerAddressChanged(ike.unique_id, ike.remote, src))
        ike.remote = src
