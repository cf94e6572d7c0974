"""INFORMATIONAL with a Delete of the IKE SA (RFC 7296 §1.4.1): answered empty, then the IKE
SA and its CHILD SAs are gone on both sides."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .. import payloads as pl
from ..const import ProtocolId
from ..states import IkeState
from .base import Task

if TYPE_CHECKING:
    from ..sa import IkeSA


class IkeDelete(Task):
    name = "INFORMATIONAL"

    def __init__(self, reason: str = "deleted") -> None:
        self.reason = reason

    def build_i(self, ike: IkeSA, now: float) -> list[pl.Payload]:
        ike.state = IkeState.DELETING
        return [pl.Delete(protocol_id=ProtocolId.IKE)]

    def process_i(self, ike: IkeSA, payloads: list[pl.Payload], now: float) -> None:
        ike.destroy(self.reason, now)

    def abort(self, ike: IkeSA, reason: str, now: float) -> None:
        ike.destroy(self.reason, now)

    def process_r(self, ike: IkeSA, payloads: list[pl.Payload], now: float) -> None:
        pass

    def build_r(self, ike: IkeSA, now: float) -> list[pl.Payload]:
        return []

    def responded(self, ike: IkeSA, now: float) -> None:
        ike.destroy("deleted by peer", now)
