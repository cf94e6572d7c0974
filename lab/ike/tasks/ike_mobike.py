"""MOBIKE (RFC 4555), all of it: the support both sides announce in IKE_AUTH with their address
lists (§3.2, §3.4), the INFORMATIONAL exchanges that move an IKE SA and its IPsec SAs to new
addresses, tell the peer our address list (§3.6) and check that the peer can receive at a new
address (return routability, COOKIE2, §3.7), NAT mapping changes noticed by DPD (§3.8), and what
an IKE SA does when our addresses change (without MOBIKE: reauthentication, as strongSwan).

The original initiator decides which addresses the IPsec SAs use (§2.1): when its own address
changes it moves its SAs at once and sends UPDATE_SA_ADDRESSES from the new address, with NAT
detection and a COOKIE2 (`MobikeUpdate`). The responder takes the new addresses from the IP
header, answers with NAT detection for them, checks return routability with a COOKIE2 of its
own (`ReturnRoutability`) and only then moves its IPsec SAs (§3.5, §3.7). The NAT detection
hashes themselves are lab.ike.tasks.ike_natd's.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import TYPE_CHECKING

from .. import payloads as pl
from ..child_sa import IpsecPath
from ..const import ExchangeType, NotifyType, name_of
from ..events import AddressesUpdated
from ..states import ChildState, IkeState
from .base import Task, find_notify, notify
from .child_create import ChildCreate
from .ike_delete import IkeDelete
from .ike_natd import evaluate_nat_informational, nat_detection_payloads, unmapped

if TYPE_CHECKING:
    from ..sa import IkeSA

Address = tuple[str, int]

COOKIE2_SIZE = 16  # RFC 4555 §4.2.5: 8 to 64 octets, unpredictable to the peer

Router = Callable[[str], "str | None"]  # our source address toward a peer, None: no route

MOBIKE_NOTIFIES = frozenset({
    NotifyType.UPDATE_SA_ADDRESSES, NotifyType.ADDITIONAL_IP4_ADDRESS, NotifyType.ADDITIONAL_IP6_ADDRESS,
    NotifyType.NO_ADDITIONAL_ADDRESSES, NotifyType.COOKIE2, NotifyType.NAT_DETECTION_SOURCE_IP,
    NotifyType.NAT_DETECTION_DESTINATION_IP, NotifyType.NO_NATS_ALLOWED})

# RFC 4555 §3.6: the address octets an ADDITIONAL_*_ADDRESS notify carries
_ADDRESS_SIZES: dict[int, int] = {NotifyType.ADDITIONAL_IP4_ADDRESS: 4, NotifyType.ADDITIONAL_IP6_ADDRESS: 16}


def is_mobike_informational(payloads: list[pl.Payload]) -> bool:
    return any(isinstance(p, pl.Notify) and p.notify_type in MOBIKE_NOTIFIES for p in payloads)


def echo_cookie2(exchange: int, cookie2: pl.Notify | None, payloads: list[pl.Payload]) -> list[pl.Payload]:
    """The response's payloads with the request's COOKIE2 copied as it was (RFC 4555 §3.7: the
    recipient of an INFORMATIONAL request does so, whatever else the request carried)."""
    if exchange != ExchangeType.INFORMATIONAL or cookie2 is None:
        return payloads
    return [*payloads, notify(NotifyType.COOKIE2, bytes(cookie2.data))]


def new_cookie2(ike: IkeSA) -> bytes:
    return ike.endpoint.random(COOKIE2_SIZE)  # RFC 4555 §4.2.5: unpredictable to the peer


def check_cookie2(ike: IkeSA, sent: bytes, payloads: list[pl.Payload], now: float, what: str) -> bool:
    """RFC 4555 §3.7: the response must carry our COOKIE2 as it was; if not, the IKE SA is closed."""
    echoed = find_notify(payloads, NotifyType.COOKIE2)
    if echoed is not None and bytes(echoed.data) == sent:
        return True
    ike.trace_note(now, "cookie2_mismatch", exchange=what)
    ike.destroy(f"COOKIE2 of the {what} not echoed as sent (RFC 4555 §3.7)", now)
    return False


class MobikeUpdate(Task):
    """Initiator side: UPDATE_SA_ADDRESSES (`update`), our address list (`addresses`, §3.6), or
    both, in one INFORMATIONAL request; built with the addresses the IKE SA has when it is sent."""

    name = "INFORMATIONAL"

    def __init__(self, update: bool = True, addresses: bool = True) -> None:
        self.update = update
        self.addresses = addresses
        self.cookie2 = b""
        self.generation = -1
        self.sent_from: tuple[str, int] | None = None

    def build_i(self, ike: IkeSA, now: float) -> list[pl.Payload] | None:
        if ike.state.value != "ESTABLISHED" or not ike.mobike:
            return None
        self.generation = ike.address_generation
        self.sent_from = ike.local
        out: list[pl.Payload] = []
        if self.update:
            out.append(notify(NotifyType.UPDATE_SA_ADDRESSES))  # RFC 4555 §3.5
            out += nat_detection_payloads(ike, established=True)
        if self.addresses:
            out += address_list_payloads(ike)  # RFC 4555 §3.6
        self.cookie2 = new_cookie2(ike)
        out.append(notify(NotifyType.COOKIE2, self.cookie2))
        ike.trace_note(now, "mobike_update" if self.update else "mobike_addresses",
                       local=f"{ike.local[0]}:{ike.local[1]}", remote=f"{ike.remote[0]}:{ike.remote[1]}")
        return out

    def process_i(self, ike: IkeSA, payloads: list[pl.Payload], now: float) -> None:
        if not check_cookie2(ike, self.cookie2, payloads, now, "UPDATE_SA_ADDRESSES" if self.update else
                             "address list update"):
            return
        if not self.update:
            return
        if self.generation != ike.address_generation:
            # RFC 4555 §3.5: the address changed again since; a newer update is on its way
            ike.trace_note(now, "mobike_update_superseded")
            return
        if find_notify(payloads, NotifyType.UNACCEPTABLE_ADDRESSES) is not None:
            ike.trace_note(now, "mobike_unacceptable_addresses", local=f"{ike.local[0]}:{ike.local[1]}")
            return
        evaluate_nat_informational(ike, payloads, ike.local, ike.remote, now)
        move_ipsec_sas(ike, now, "UPDATE_SA_ADDRESSES answered")

    def abort(self, ike: IkeSA, reason: str, now: float) -> None:
        ike.trace_note(now, "mobike_update_failed", reason=reason)


class ReturnRoutability(Task):
    """Responder side (RFC 4555 §3.7): an INFORMATIONAL with a COOKIE2 to the initiator's new
    address; a response that echoes it proves the initiator receives there, and only then do
    the IPsec SAs move (§3.5)."""

    name = "INFORMATIONAL"

    def __init__(self) -> None:
        self.cookie2 = b""
        self.generation = -1
        self.target: tuple[str, int] | None = None

    def build_i(self, ike: IkeSA, now: float) -> list[pl.Payload] | None:
        if ike.state.value != "ESTABLISHED":
            return None
        self.generation = ike.address_generation
        self.target = ike.remote
        self.cookie2 = new_cookie2(ike)
        ike.trace_note(now, "return_routability_check", remote=f"{ike.remote[0]}:{ike.remote[1]}")
        return [notify(NotifyType.COOKIE2, self.cookie2)]

    def process_i(self, ike: IkeSA, payloads: list[pl.Payload], now: float) -> None:
        if not check_cookie2(ike, self.cookie2, payloads, now, "return routability check"):
            return
        if self.generation != ike.address_generation or self.target != ike.remote:
            # RFC 4555 §3.7: the request went to more than one address; it proves nothing
            return
        ike.trace_note(now, "return_routability_ok", remote=f"{ike.remote[0]}:{ike.remote[1]}")
        move_ipsec_sas(ike, now, "return routability checked")

    def abort(self, ike: IkeSA, reason: str, now: float) -> None:
        ike.trace_note(now, "return_routability_failed", reason=reason)


class MobikeInformational(Task):
    """Responder side of an INFORMATIONAL that carries MOBIKE notifies (RFC 4555 §3.5, §3.6,
    §3.8): address list updates, UPDATE_SA_ADDRESSES, NAT detection (answered for the addresses
    the request came from and went to). COOKIE2 is echoed by the task manager (§3.7)."""

    name = "INFORMATIONAL"

    def __init__(self) -> None:
        self.reply: list[pl.Payload] = []

    def process_r(self, ike: IkeSA, payloads: list[pl.Payload], now: float) -> None:
        src, dst = ike.tm.request_src, ike.tm.request_dst
        assert src is not None and dst is not None
        self.reply = []
        natd = find_notify(payloads, NotifyType.NAT_DETECTION_DESTINATION_IP) is not None
        listed = take_peer_addresses(ike, payloads, src, now)
        update = find_notify(payloads, NotifyType.UPDATE_SA_ADDRESSES) is not None
        if update and ike.mobike and not ike.original_initiator:
            if not peer_requested_update(ike, payloads, src, dst, now):
                self.reply.append(notify(NotifyType.UNACCEPTABLE_ADDRESSES))
        elif listed and ike.mobike and ike.original_initiator and src != ike.remote:
            # RFC 4555 §3.5: the responder's addresses changed; as initiator we decide, and move
            responder_moved(ike, src, dst, now)
        if natd and not self.reply:
            # RFC 4555 §3.8: NAT detection in a request is answered with NAT detection
            self.reply = nat_detection_payloads(ike, established=True, local=dst, remote=src)

    def build_r(self, ike: IkeSA, now: float) -> list[pl.Payload]:
        return self.reply


# ---------------------------------------------------------------- IKE_AUTH: both announce it (§3.2)


def supported_payloads(ike: IkeSA) -> list[pl.Payload]:
    """The initiator's IKE_AUTH request: MOBIKE_SUPPORTED, in the request with the SA payload,
    with our other addresses (RFC 4555 §3.2, §3.4); nothing when the connection has mobike = no."""
    if not ike.config.mobike:
        return []
    return [notify(NotifyType.MOBIKE_SUPPORTED), *address_list_payloads(ike, informational=False)]


def peer_offers(ike: IkeSA, request: list[pl.Payload]) -> None:
    """The responder notes whether the initiator's IKE_AUTH request announced MOBIKE (§3.2)."""
    ike.peer_mobike = find_notify(request, NotifyType.MOBIKE_SUPPORTED) is not None


def agreed_by_responder(ike: IkeSA, request: list[pl.Payload], now: float) -> list[pl.Payload]:
    """The responder's last IKE_AUTH response: when both support MOBIKE our answer says so, with
    our other addresses, and the initiator's address list is taken (RFC 4555 §3.2, §3.4)."""
    if not (ike.config.mobike and ike.peer_mobike):
        return []
    ike.mobike = True
    take_peer_addresses(ike, request, ike.remote, now)
    return [notify(NotifyType.MOBIKE_SUPPORTED), *address_list_payloads(ike, informational=False)]


def agreed_by_initiator(ike: IkeSA, response: list[pl.Payload], now: float) -> None:
    """The initiator's last IKE_AUTH response: MOBIKE is on when the responder supports it too (§3.2)."""
    if ike.config.mobike and find_notify(response, NotifyType.MOBIKE_SUPPORTED) is not None:
        ike.mobike = ike.peer_mobike = True
        take_peer_addresses(ike, response, ike.remote, now)


# ---------------------------------------------------------------- address lists (§3.4, §3.6)


def address_list_payloads(ike: IkeSA, informational: bool = True) -> list[pl.Payload]:
    """ADDITIONAL_IP4/IP6_ADDRESS for our addresses other than the IKE SA's (RFC 4555 §3.4,
    §3.6; at most 8, as strongSwan sends), or NO_ADDITIONAL_ADDRESSES in an INFORMATIONAL."""
    out: list[pl.Payload] = []
    for address in ike.endpoint.local_addresses:
        if address == ike.local[0] or len(out) >= 8:
            continue
        ip = ipaddress.ip_address(address)
        kind = NotifyType.ADDITIONAL_IP4_ADDRESS if ip.version == 4 else NotifyType.ADDITIONAL_IP6_ADDRESS
        out.append(notify(kind, ip.packed))
    if not out and informational:
        out.append(notify(NotifyType.NO_ADDITIONAL_ADDRESSES))
    return out


def take_peer_addresses(ike: IkeSA, payloads: list[pl.Payload], src: Address, now: float) -> bool:
    """RFC 4555 §3.6: a new address list replaces the old one; the message's source is in it."""
    listed = [p for p in payloads if isinstance(p, pl.Notify) and p.notify_type in (
        NotifyType.ADDITIONAL_IP4_ADDRESS, NotifyType.ADDITIONAL_IP6_ADDRESS, NotifyType.NO_ADDITIONAL_ADDRESSES)]
    if not listed:
        return False
    addresses = [src[0]]
    for item in listed:
        size = _ADDRESS_SIZES.get(item.notify_type)
        if size is None:
            continue
        if len(item.data) != size:
            ike.endpoint.drop(f"{name_of(NotifyType, item.notify_type)} of {len(item.data)} octets", now, ike)
            continue
        address = str(ipaddress.ip_address(bytes(item.data)))
        if address not in addresses:
            addresses.append(address)
    ike.peer_addresses = addresses
    ike.trace_note(now, "peer_addresses", addresses=addresses)
    return True


# ---------------------------------------------------------------- moving (§3.5, §3.7, §3.8)


def ipsec_moved(ike: IkeSA) -> bool:
    """Whether the IKE SA's addresses or NAT state differ from where its IPsec SAs run."""
    return ike.ipsec_path != IpsecPath(ike.local, ike.remote, ike.nat_detected)


def move_ipsec_sas(ike: IkeSA, now: float, reason: str) -> None:
    """The IPsec SAs follow the IKE SA's addresses and NAT state (RFC 4555 §3.5)."""
    if not ipsec_moved(ike):
        return
    old_local, old_remote, _ = ike.ipsec_path
    ike.ipsec_path = IpsecPath(ike.local, ike.remote, ike.nat_detected)
    spis = tuple(c.spi_in for c in ike.children if c.state != ChildState.DELETED)
    ike.trace_note(now, "ipsec_sas_moved", old_local=f"{old_local[0]}:{old_local[1]}",
                   old_remote=f"{old_remote[0]}:{old_remote[1]}", local=f"{ike.local[0]}:{ike.local[1]}",
                   remote=f"{ike.remote[0]}:{ike.remote[1]}", encap=ike.nat_detected, children=len(spis),
                   reason=reason)
    ike.endpoint.emit(AddressesUpdated(ike.unique_id, old_local, old_remote, ike.local, ike.remote,
                                       ike.nat_detected, ike.local_behind_nat, spis, reason))


def queue_update(ike: IkeSA, now: float, addresses: bool = True, update: bool = True) -> None:
    # RFC 4555 §3.5: one queued update is enough; it is built with the addresses of its sending
    queued = [t for t in ike.tm.tasks if isinstance(t, MobikeUpdate)]
    for task in queued:
        task.update = task.update or update
        task.addresses = task.addresses or addresses
    if not queued:
        ike.tm.queue(MobikeUpdate(update=update, addresses=addresses), now)


def local_addresses_changed(ike: IkeSA, addresses: list[str], set_changed: bool, router: Router | None,
                            now: float) -> None:
    """Our addresses changed (RFC 4555 §3.5): keep the path while our address is still the
    one routed to the peer (`router`, when the I/O layer knows routes); otherwise move with
    MOBIKE, or reauthenticate without it (as strongSwan does: a new IKE SA from the new
    address, the old one deleted)."""
    if ike.state != IkeState.ESTABLISHED:
        return
    route = router(ike.remote[0]) if router else None
    # strongSwan's is_current_path_valid: our address is still there and routes to the peer
    valid = ike.local[0] in addresses and (router is None or route is not None)
    if valid:
        if ike.mobike and set_changed:
            queue_update(ike, now, update=False)  # RFC 4555 §3.6: tell the peer the new list
        return
    if not ike.mobike and ike.config.initiator_local_address() is not None:
        return  # strongSwan keeps a statically configured path without MOBIKE
    new = (route if route in addresses else None) if router else (addresses[0] if addresses else None)
    if new is None:
        ike.trace_note(now, "no_path", remote=ike.remote[0])
        return
    old = ike.local
    ike.local = (new, old[1])
    ike.address_generation += 1
    ike.trace_note(now, "local_address_changed", old=f"{old[0]}:{old[1]}", new=f"{new}:{old[1]}",
                   mobike=ike.mobike)
    if ike.mobike:
        if ike.original_initiator:
            # RFC 4555 §3.5: the initiator moves its IPsec SAs at once, then tells the responder
            move_ipsec_sas(ike, now, "our address changed")
            queue_update(ike, now)
        else:
            # RFC 4555 §3.5: a responder whose source address is gone may move, and tells the initiator
            move_ipsec_sas(ike, now, "our address is gone")
            queue_update(ike, now, update=False)
    elif ike.original_initiator:
        reauthenticate(ike, now)


def peer_requested_update(ike: IkeSA, payloads: list[pl.Payload], src: Address, dst: Address, now: float) -> bool:
    """UPDATE_SA_ADDRESSES (RFC 4555 §3.5): the IKE SA takes the request's addresses; the
    IPsec SAs follow once return routability is checked (§3.7). False: not acceptable."""
    if not ike.config.match_remote(src[0]) or not ike.config.match_local(dst[0]):
        ike.trace_note(now, "mobike_unacceptable_addresses", remote=f"{src[0]}:{src[1]}")
        return False
    old_remote = ike.remote
    ike.local, ike.remote = dst, src
    evaluate_nat_informational(ike, payloads, dst, src, now)
    ike.trace_note(now, "update_sa_addresses", old=f"{old_remote[0]}:{old_remote[1]}", new=f"{src[0]}:{src[1]}")
    if src != old_remote:
        ike.address_generation += 1
    if not ipsec_moved(ike):
        return True
    if ike.endpoint.settings.return_routability and src != ike.ipsec_path.remote:
        if not any(isinstance(t, ReturnRoutability) for t in ike.tm.tasks):
            ike.tm.tasks.append(ReturnRoutability())  # sent once this response is out
    else:
        move_ipsec_sas(ike, now, "UPDATE_SA_ADDRESSES")
    return True


def responder_moved(ike: IkeSA, src: Address, dst: Address, now: float) -> None:
    """As original initiator: the responder announced its addresses from a new one (RFC 4555
    §3.5, §3.6); we decide to follow it, and say so with UPDATE_SA_ADDRESSES."""
    old = ike.remote
    ike.remote, ike.local = src, dst
    ike.address_generation += 1
    ike.trace_note(now, "peer_address_changed", old=f"{old[0]}:{old[1]}", new=f"{src[0]}:{src[1]}")
    move_ipsec_sas(ike, now, "the responder moved")
    queue_update(ike, now)


def dpd_payloads(ike: IkeSA) -> list[pl.Payload]:
    """RFC 4555 §3.8: behind a NAT, DPD carries NAT detection to notice a new mapping."""
    if ike.mobike and ike.original_initiator and ike.local_behind_nat:
        return nat_detection_payloads(ike, established=True)
    return []


def nat_mapping_check(ike: IkeSA, payloads: list[pl.Payload], now: float) -> None:
    """RFC 4555 §3.8: a NAT_DETECTION_DESTINATION_IP unlike the last one means the NAT maps
    us anew: send UPDATE_SA_ADDRESSES."""
    destination = find_notify(payloads, NotifyType.NAT_DETECTION_DESTINATION_IP)
    if destination is None or not ike.original_initiator:
        return
    if unmapped(ike, destination):
        return  # the peer sees our own address: no NAT on this path
    previous, ike.natd_destination = ike.natd_destination, destination.data
    if previous is not None and previous != destination.data:
        ike.trace_note(now, "nat_mapping_changed")
        ike.address_generation += 1
        queue_update(ike, now, addresses=False)


# ---------------------------------------------------------------- without MOBIKE


def reauthenticate(ike: IkeSA, now: float) -> None:
    """Without MOBIKE: a new IKE SA with the same CHILD SAs from our new address, this one
    deleted first (strongSwan's break-before-make reauthentication on an address change)."""
    children = []
    for child in ike.children:
        if child.state == ChildState.INSTALLED and child.config not in children:
            children.append(child.config)
    ike.trace_note(now, "reauthenticate", reason="our address changed and MOBIKE is off",
                   children=[c.name for c in children])
    ike.tm.clear("reauthenticating", now)
    ike.tm.queue(IkeDelete("reauthenticated after an address change"), now)
    new = ike.endpoint.initiate(ike.config.name, now, child=children[0].name if children else None)
    for config in children[1:]:
        new.queue(ChildCreate(config), now)
