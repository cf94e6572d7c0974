"""The Security Association Database (RFC 4301 §4.4.2): SAs by protocol and SPI.

Inbound lookup is by SPI alone (RFC 4301 §4.1, unicast). Every SA added shares the
database's `drops` counters and `events` queue, so the daemon reads one place.
"""
from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

from .errors import DropCounters, DropReason, EspDrop
from .ip import PROTO_AH, PROTO_ESP, PROTO_UDP, MalformedPacket, ipv6_find
from .lifetime import SaEvent
from .sa import InboundSA, IpsecProto, OutboundSA

_U32 = struct.Struct("!I")
_U16 = struct.Struct("!H")
_IPSEC = frozenset({PROTO_ESP, PROTO_AH, PROTO_UDP})


class SADatabase:
    def __init__(self) -> None:
        self.inbound: dict[tuple[int, int], InboundSA] = {}
        self.outbound: dict[tuple[int, int], OutboundSA] = {}
        self.drops = DropCounters()
        self.events: list[SaEvent] = []

    def add(self, sa: InboundSA | OutboundSA) -> None:
        key = (int(sa.protocol), sa.spi)
        if key in (self.inbound if isinstance(sa, InboundSA) else self.outbound):
            raise ValueError(f"an {sa.direction}bound {sa.protocol.name} SA with SPI 0x{sa.spi:08x} exists")
        if isinstance(sa, InboundSA):
            self.inbound[key] = sa
        else:
            self.outbound[key] = sa
        self.events.extend(sa.events)
        sa.events = self.events
        sa.shared_drops = self.drops

    def remove(self, sa: InboundSA | OutboundSA) -> None:
        table = self.inbound if isinstance(sa, InboundSA) else self.outbound
        table.pop((int(sa.protocol), sa.spi), None)

    @property
    def drop_unknown_spi(self) -> int:
        return self.drops[DropReason.UNKNOWN_SPI]

    def get(self, spi: int, protocol: int = PROTO_ESP) -> InboundSA | None:
        return self.inbound.get((protocol, spi))

    def lookup(self, spi: int, protocol: int = PROTO_ESP) -> InboundSA:
        """The inbound SA for `spi`; an unknown SPI is counted and raises EspDrop."""
        sa = self.inbound.get((protocol, spi))
        if sa is None:
            # RFC 4303 §3.4.2: no SA for the SPI, discard and count
            self.drops[DropReason.UNKNOWN_SPI] += 1
            raise EspDrop(DropReason.UNKNOWN_SPI, spi)
        return sa

    def _malformed(self, detail: str) -> EspDrop:
        self.drops[DropReason.MALFORMED] += 1
        return EspDrop(DropReason.MALFORMED, None, detail)

    def unprotect(self, data: bytes) -> bytes:
        """ESP header onwards (UDP 4500 payload, raw protocol-50 payload) to the inner packet."""
        if len(data) < 8:
            raise self._malformed("shorter than an ESP header")
        return self.lookup(_U32.unpack_from(data, 0)[0]).unprotect(data)

    def unprotect_datagram(self, packet: bytes) -> bytes:
        """A whole IP datagram carrying ESP, UDP-encapsulated ESP or AH, to the inner packet."""
        n = len(packet)
        try:
            v = packet[0] >> 4 if n else 0
            if v == 4 and n >= 20:
                off, proto = (packet[0] & 0x0F) * 4, packet[9]
            elif v == 6 and n >= 40:
                _, off, proto = ipv6_find(packet, _IPSEC)
            else:
                raise MalformedPacket("not an IPv4/IPv6 packet")
        except MalformedPacket as exc:
            raise self._malformed(str(exc)) from None
        if proto == PROTO_UDP:
            off += 8
        elif proto not in (PROTO_ESP, PROTO_AH):
            raise self._malformed(f"protocol {proto} is not IPsec")
        if proto == PROTO_AH:
            off += 4
        if off + 4 > n:
            raise self._malformed("truncated")
        spi = _U32.unpack_from(packet, off)[0]
        sa = self.lookup(spi, PROTO_AH if proto == PROTO_AH else PROTO_ESP)
        return sa.unprotect_datagram(packet)

    def __iter__(self) -> Iterator[InboundSA | OutboundSA]:
        yield from self.outbound.values()
        yield from self.inbound.values()

    def __len__(self) -> int:
        return len(self.inbound) + len(self.outbound)

    def next_event(self) -> SaEvent | None:
        return self.events.pop(0) if self.events else None

    def handle_time(self, now: float) -> None:
        for sa in list(self):
            sa.handle_time(now)

    def next_deadline(self) -> float | None:
        deadlines = [d for d in (sa.next_deadline() for sa in self) if d is not None]
        return min(deadlines) if deadlines else None

    def describe(self) -> dict[str, Any]:
        return {
            "sas": [sa.describe() for sa in self],
            "drops": self.drops.nonzero(),
        }


__all__ = ["SADatabase", "IpsecProto"]
