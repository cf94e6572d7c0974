"""Liveness check (RFC 7296 §1.4, §2.4): an empty INFORMATIONAL request, answered empty."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .. import payloads as pl
from ..const import NotifyType
from .base import Task, find_notify
from .ike_mobike import dpd_payloads, nat_mapping_check

if TYPE_CHECKING:
    from ..sa import IkeSA


class Dpd(Task):
    name = "INFORMATIONAL"

    def build_i(self, ike: IkeSA, now: float) -> list[pl.Payload]:
        return dpd_payloads(ike)  # RFC 4555 §3.8: NAT detection, behind a NAT with MOBIKE

    def process_i(self, ike: IkeSA, payloads: list[pl.Payload], now: float) -> None:
        ike.trace_note(now, "dpd_ok")
        if find_notify(payloads, NotifyType.NAT_DETECTION_DESTINATION_IP) is not None:
            nat_mapping_check(ike, payloads, now)

    def process_r(self, ike: IkeSA, payloads: list[pl.Payload], now: float) -> None:
        pass

    def build_r(self, ike: IkeSA, now: float) -> list[pl.Payload]:
        return []
