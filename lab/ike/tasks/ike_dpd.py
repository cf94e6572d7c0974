"""Liveness check (RFC 7296 §1.4, §2.4): an empty INFORMATIONAL request, answered empty."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .. import payloads as pl
from .base import Task

if TYPE_CHECKING:
    from ..sa import IkeSA


class Dpd(Task):
    name = "INFORMATIONAL"

    def build_i(self, ike: "IkeSA", now: float) -> list[pl.Payload]:
        return []

    def process_i(self, ike: "IkeSA", payloads: list[pl.Payload], now: float) -> None:
        ike.trace_note(now, "dpd_ok")

    def process_r(self, ike: "IkeSA", payloads: list[pl.Payload], now: float) -> None:
        pass

    def build_r(self, ike: "IkeSA", now: float) -> list[pl.Payload]:
        return []
