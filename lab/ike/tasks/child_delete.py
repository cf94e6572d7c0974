"""INFORMATIONAL with Delete payloads for CHILD SAs (RFC 7296 §1.4.1): each side closes both
halves; the answer lists the SPIs of the responder's own inbound halves."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .. import payloads as pl
from ..child_sa import ChildSA
from ..const import ProtocolId
from ..states import ChildState
from .base import Task

if TYPE_CHECKING:
    from ..sa import IkeSA


class ChildDelete(Task):
    name = "INFORMATIONAL"

    def __init__(self, children: list[ChildSA] | None = None, reason: str = "deleted") -> None:
        self.children = children or []
        self.reason = reason
        self.reply: list[pl.Payload] = []

    # ---------------------------------------------------------------- initiator

    def build_i(self, ike: IkeSA, now: float) -> list[pl.Payload] | None:
        live = [c for c in self.children if c.state != ChildState.DELETED]
        for child in live:
            child.state = ChildState.DELETING
        self.children = live
        if not live:
            return None
        # RFC 7296 §1.4.1: list the SPIs of our inbound SAs, one Delete payload per protocol
        protocols = sorted({c.protocol for c in live})
        return [pl.Delete(protocol_id=p, spis=[c.spi_in for c in live if c.protocol == p]) for p in protocols]

    def process_i(self, ike: IkeSA, payloads: list[pl.Payload], now: float) -> None:
        for child in self.children:
            ike.remove_child(child, self.reason, now)

    def abort(self, ike: IkeSA, reason: str, now: float) -> None:
        for child in self.children:
            ike.remove_child(child, self.reason, now)

    # ---------------------------------------------------------------- responder

    def process_r(self, ike: IkeSA, payloads: list[pl.Payload], now: float) -> None:
        ours: dict[int, list[bytes]] = {}
        for delete in (p for p in payloads if isinstance(p, pl.Delete)):
            if delete.protocol_id not in (ProtocolId.ESP, ProtocolId.AH):
                continue
            for spi in delete.spis:
                child = ike.find_child(spi, inbound=False)
                if child is None or child.protocol != delete.protocol_id:
                    continue  # RFC 7296 §2.25.1: nothing to say about an SA we do not have
                if child.state != ChildState.DELETING:
                    ours.setdefault(child.protocol, []).append(child.spi_in)  # RFC 7296 §1.4.1: close our half too
                ike.remove_child(child, "deleted by peer", now)
        self.reply = [pl.Delete(protocol_id=p, spis=spis) for p, spis in sorted(ours.items())]

    def build_r(self, ike: IkeSA, now: float) -> list[pl.Payload]:
        return self.reply
