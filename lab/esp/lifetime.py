"""SA lifetimes (RFC 4301 §4.4.2.1) and the events an SA raises for the daemon."""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class Lifetime:
    """Soft and hard limits; None means no limit.

    Bytes count the IP packets given to `protect` or returned by `unprotect`.
    With hard_packets=N, N packets pass and the (N+1)-th is refused; HARD_EXPIRED is
    raised as the N-th passes, so the daemon can replace the SA first. Bytes work the
    same way: the packet that reaches the limit passes, later ones do not.
    """

    soft_bytes: int | None = None
    hard_bytes: int | None = None
    soft_packets: int | None = None
    hard_packets: int | None = None
    soft_seconds: float | None = None
    hard_seconds: float | None = None

    def __post_init__(self) -> None:
        for kind in ("bytes", "packets", "seconds"):
            soft, hard = getattr(self, f"soft_{kind}"), getattr(self, f"hard_{kind}")
            for v in (soft, hard):
                if v is not None and v <= 0:
                    raise ValueError(f"a {kind} lifetime must be positive")
            if soft is not None and hard is not None and soft > hard:
                raise ValueError(f"soft_{kind} ({soft}) is beyond hard_{kind} ({hard})")


NO_LIFETIME = Lifetime()


class SaState(StrEnum):
    ACTIVE = "active"
    SOFT_EXPIRED = "soft_expired"
    HARD_EXPIRED = "hard_expired"


class SaEventKind(StrEnum):
    SOFT_EXPIRED = "soft_expired"
    HARD_EXPIRED = "hard_expired"
    SEQ_REKEY = "seq_rekey"
    SEQ_EXHAUSTED = "seq_exhausted"


@dataclass(frozen=True)
class SaEvent:
    """Something the daemon must act on: rekey (soft, seq_rekey) or replace (hard, exhausted).

    `trigger` is "bytes", "packets", "seconds" or "sequence".
    """

    kind: SaEventKind
    spi: int
    direction: str
    protocol: str
    trigger: str
    name: str = ""
