"""MOBIKE (RFC 4555): the INFORMATIONAL exchanges that move an IKE SA and its IPsec SAs to new
addresses, tell the peer our address list, and check that the peer can receive at a new
address (return routability, COOKIE2).

The original initiator decides which addresses the IPsec SAs use (§2.1): when its own address
changes it moves its SAs at once and sends UPDATE_SA_ADDRESSES from the new address, with NAT
detection and a COOKIE2 (`MobikeUpdate`). The responder takes the new addresses from the IP
header, answers with NAT detection for them, checks return routability with a COOKIE2 of its
own (`ReturnRoutability`) and only then moves its IPsec SAs (§3.5, §3.7).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .. import payloads as pl
from ..const import NotifyType
from .base import Task, find_notify, notify
from .ike_natd import evaluate_nat_informational, nat_detection_payloads

if TYPE_CHECKING:
    from ..sa import IkeSA

COOKIE2_SIZE = 16  # RFC 4555 §4.2.5: 8 to 64 octets, unpredictable to the peer

MOBIKE_NOTIFIES = frozenset({
    NotifyType.UPDATE_SA_ADDRESSES, NotifyType.ADDITIONAL_IP4_ADDRESS, NotifyType.ADDITIONAL_IP6_ADDRESS,
    NotifyType.NO_ADDITIONAL_ADDRESSES, NotifyType.COOKIE2, NotifyType.NAT_DETECTION_SOURCE_IP,
    NotifyType.NAT_DETECTION_DESTINATION_IP, NotifyType.NO_NATS_ALLOWED})


def is_mobike_informational(payloads: list[pl.Payload]) -> bool:
    return any(isinstance(p, pl.Notify) and p.notify_type in MOBIKE_NOTIFIES for p in payloads)


def check_cookie2(ike: "IkeSA", sent: bytes, payloads: list[pl.Payload], now: float, what: str) -> bool:
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

    def build_i(self, ike: "IkeSA", now: float) -> list[pl.Payload] | None:
        if ike.state.value != "ESTABLISHED" or not ike.mobike:
            return None
        self.generation = ike.address_generation
        self.sent_from = ike.local
        out: list[pl.Payload] = []
        if self.update:
            out.append(notify(NotifyType.UPDATE_SA_ADDRESSES))  # RFC 4555 §3.5
            out += nat_detection_payloads(ike, established=True)
        if self.addresses:
            out += ike.address_list_payloads()  # RFC 4555 §3.6
        self.cookie2 = ike.endpoint.random(COOKIE2_SIZE)
        out.append(notify(NotifyType.COOKIE2, self.cookie2))
        ike.trace_note(now, "mobike_update" if self.update else "mobike_addresses",
                       local=f"{ike.local[0]}:{ike.local[1]}", remote=f"{ike.remote[0]}:{ike.remote[1]}")
        return out

    def process_i(self, ike: "IkeSA", payloads: list[pl.Payload], now: float) -> None:
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
        ike.move_ipsec_sas(now, "UPDATE_SA_ADDRESSES answered")

    def abort(self, ike: "IkeSA", reason: str, now: float) -> None:
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

    def build_i(self, ike: "IkeSA", now: float) -> list[pl.Payload] | None:
        if ike.state.value != "ESTABLISHED":
            return None
        self.generation = ike.address_generation
        self.target = ike.remote
        self.cookie2 = ike.endpoint.random(COOKIE2_SIZE)
        ike.trace_note(now, "return_routability_check", remote=f"{ike.remote[0]}:{ike.remote[1]}")
        return [notify(NotifyType.COOKIE2, self.cookie2)]

    def process_i(self, ike: "IkeSA", payloads: list[pl.Payload], now: float) -> None:
        if not check_cookie2(ike, self.cookie2, payloads, now, "return routability check"):
            return
        if self.generation != ike.address_generation or self.target != ike.remote:
            # RFC 4555 §3.7: the request went to more than one address; it proves nothing
            return
        ike.trace_note(now, "return_routability_ok", remote=f"{ike.remote[0]}:{ike.remote[1]}")
        ike.move_ipsec_sas(now, "return routability checked")

    def abort(self, ike: "IkeSA", reason: str, now: float) -> None:
        ike.trace_note(now, "return_routability_failed", reason=reason)


class MobikeInformational(Task):
    """Responder side of an INFORMATIONAL that carries MOBIKE notifies (RFC 4555 §3.5, §3.6,
    §3.8): address list updates, UPDATE_SA_ADDRESSES, NAT detection (answered for the addresses
    the request came from and went to). COOKIE2 is echoed by the task manager (§3.7)."""

    name = "INFORMATIONAL"

    def __init__(self) -> None:
        self.reply: list[pl.Payload] = []

    def process_r(self, ike: "IkeSA", payloads: list[pl.Payload], now: float) -> None:
        src, dst = ike.tm.request_src, ike.tm.request_dst
        assert src is not None and dst is not None
        self.reply = []
        natd = find_notify(payloads, NotifyType.NAT_DETECTION_DESTINATION_IP) is not None
        listed = ike.take_peer_addresses(payloads, src, now)
        update = find_notify(payloads, NotifyType.UPDATE_SA_ADDRESSES) is not None
        if update and ike.mobike and not ike.original_initiator:
            if not ike.peer_requested_update(payloads, src, dst, now):
                self.reply.append(notify(NotifyType.UNACCEPTABLE_ADDRESSES))
        elif listed and ike.mobike and ike.original_initiator and src != ike.remote:
            # RFC 4555 §3.5: the responder's addresses changed; as initiator we decide, and move
            ike.responder_moved(src, dst, now)
        if natd and not self.reply:
            # RFC 4555 §3.8: NAT detection in a request is answered with NAT detection
            self.reply = nat_detection_payloads(ike, established=True, local=dst, remote=src)

    def build_r(self, ike: "IkeSA", now: float) -> list[pl.Payload]:
        return self.reply
