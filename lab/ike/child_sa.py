"""A CHILD SA as the IKE core keeps it, the path an IKE SA's CHILD SAs run on, and traffic
selector narrowing (RFC 7296 §2.9)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from . import payloads as pl
from .config import ChildConfig
from .events import ChildKeys
from .proposals import ChosenAlgorithms
from .states import ChildState


class IpsecPath(NamedTuple):
    """Where an IKE SA's IPsec SAs run: our address, the peer's, and whether ESP goes in UDP
    (RFC 3948). With MOBIKE it follows the IKE SA's addresses once a move is decided (RFC 4555 §3.5)."""

    local: tuple[str, int]
    remote: tuple[str, int]
    encap: bool


@dataclass
class ChildSA:
    unique_id: int
    config: ChildConfig
    spi_in: bytes
    spi_out: bytes
    algorithms: ChosenAlgorithms
    keys_in: ChildKeys
    keys_out: ChildKeys
    mode: str
    local_ts: list[pl.TrafficSelector]
    remote_ts: list[pl.TrafficSelector]
    established: float
    rekey_at: float | None
    expire_at: float | None
    state: ChildState = ChildState.INSTALLED
    # §2.8.1: nonces of the exchange that made this SA, for collision resolution
    nonces: tuple[bytes, bytes] = (b"", b"")
    created_by_us: bool = False

    @property
    def protocol(self) -> int:
        return self.algorithms.protocol


def intersect(a: pl.TrafficSelector, b: pl.TrafficSelector) -> pl.TrafficSelector | None:
    # RFC 7296 §2.9: narrowing keeps the overlap of ranges, protocols and ports
    if a.start_addr.version != b.start_addr.version:
        return None
    if a.ip_protocol and b.ip_protocol and a.ip_protocol != b.ip_protocol:
        return None
    # one family (checked above): compared as numbers, which mypy can follow
    start = a.start_addr if int(a.start_addr) >= int(b.start_addr) else b.start_addr
    end = a.end_addr if int(a.end_addr) <= int(b.end_addr) else b.end_addr
    sport, eport = max(a.start_port, b.start_port), min(a.end_port, b.end_port)
    if int(start) > int(end) or sport > eport:
        return None
    return pl.TrafficSelector(start, end, a.ip_protocol or b.ip_protocol, sport, eport)


def narrow(offered: Sequence[pl.TrafficSelector | pl.RawTrafficSelector],
           allowed: Sequence[pl.TrafficSelector]) -> list[pl.TrafficSelector]:
    """The parts of the initiator's selectors our configuration allows (RFC 7296 §2.9)."""
    out: list[pl.TrafficSelector] = []
    for ts in offered:
        if not isinstance(ts, pl.TrafficSelector):
            continue
        for mine in allowed:
            common = intersect(ts, mine)
            if common is not None and common not in out:
                out.append(common)
    return out


def covers(outer: Sequence[pl.TrafficSelector], inner: Sequence[pl.TrafficSelector | pl.RawTrafficSelector]) -> bool:
    return all(isinstance(ts, pl.TrafficSelector) and any(intersect(ts, o) == ts for o in outer) for ts in inner)


def parsed(selectors: Sequence[pl.TrafficSelector | pl.RawTrafficSelector]) -> list[pl.TrafficSelector]:
    """The selectors of a type we parse (after `covers`, which refuses any other, all of them)."""
    return [ts for ts in selectors if isinstance(ts, pl.TrafficSelector)]
