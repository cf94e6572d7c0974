"""Liveness check (RFC 7296 §1.4, §2.4): an empty INFORMATIONAL request, answered empty."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .. import payloads as pl
from ..const import NotifyType
from .base import Task, find_notify
from .ike_natd import nat_detection_payloads

if TYPE_CHECKING:
    from ..sa import IkeSA


class Dpd(Task):
    name = "INFORMATIONAL"

    def build_i(self, ike: "IkeSA", now: float) -> list[pl.Payload]:
        if ike.mobike and ike.original_initiator and ike.local_behind_nat:
            # RFC 4555 §3.8: behind a NAT, DPD carries NAT detection to notice a new mapping
            return nat_detection_payloads(ike, established=True)
        return []

    def process_i(self, ike: "IkeSA", payloads: list[pl.Payload], now: float) -> None:
        ike.trace_note(now, "dpd_ok")
        if find_notify(payloads, NotifyType.NAT_DETECTION_DESTINATION_IP) is not None:
            ike.nat_mapping_check(payloads, now)

    def process_r(self, ike: "IkeSA", payloads: list[pl.Payload], now: float) -> None:
        pass

    def build_r(self, ike: "IkeSA", now: float) -> list[pl.Payload]:
        return []
