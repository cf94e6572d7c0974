"""The Security Policy Database (RFC 4301 §4.4.1): ordered policies, first match wins.

A `Selector` is one selector set: local and remote address ranges, next-layer
protocol and local/remote port ranges, each possibly ANY. "Local" and "remote" are
seen from this gateway: for an outbound packet local is its source, for an inbound
one its destination. ICMP and ICMPv6 carry type << 8 | code in both port fields
(RFC 4301 §4.4.1.1), so a range of types/codes can be given as either port range.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

from .errors import DropCounters, DropReason, EspDrop
from .ip import FiveTuple, MalformedPacket, five_tuple

ANY_PORTS = (0, 65535)

PROTOCOL_NAMES = {"icmp": 1, "tcp": 6, "udp": 17, "esp": 50, "ah": 51, "icmpv6": 58, "ipv6-icmp": 58, "sctp": 132}


class Action(StrEnum):
    # RFC 4301 §4.4.1
    PROTECT = "protect"
    BYPASS = "bypass"
    DISCARD = "discard"


class AddressRange(NamedTuple):
    """An inclusive range of packed addresses of one family."""

    lo: bytes
    hi: bytes

    @property
    def version(self) -> int:
        return 4 if len(self.lo) == 4 else 6

    def __contains__(self, address: object) -> bool:
        return isinstance(address, bytes) and len(address) == len(self.lo) and self.lo <= address <= self.hi

    def __str__(self) -> str:
        lo, hi = ipaddress.ip_address(self.lo), ipaddress.ip_address(self.hi)
        if lo == hi:
            return str(lo)
        nets = list(ipaddress.summarize_address_range(lo, hi))
        return str(nets[0]) if len(nets) == 1 else f"{lo}-{hi}"


def address_range(spec: str | AddressRange | ipaddress.IPv4Network | ipaddress.IPv6Network | None) -> AddressRange | None:
    """A range from "10.1.0.0/16", "192.0.2.7", "10.0.0.1-10.0.0.9", a network, or None/"any" (ANY)."""
    if spec is None or isinstance(spec, AddressRange):
        return spec
    if isinstance(spec, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
        return AddressRange(spec.network_address.packed, spec.broadcast_address.packed)
    text = str(spec).strip()
    if text.lower() in ("any", "*", ""):
        return None
    if "-" in text:
        a, b = (ipaddress.ip_address(part.strip()) for part in text.split("-", 1))
        if a.version != b.version or int(a) > int(b):
            raise ValueError(f"bad address range {text!r}")
        return AddressRange(a.packed, b.packed)
    net = ipaddress.ip_network(text, strict=False)
    return AddressRange(net.network_address.packed, net.broadcast_address.packed)


def _protocol(spec: int | str | None) -> int | None:
    if spec is None:
        return None
    if isinstance(spec, int):
        return spec
    text = spec.strip().lower()
    if text in ("any", "*", ""):
        return None
    if text.isdigit():
        return int(text)
    try:
        return PROTOCOL_NAMES[text]
    except KeyError:
        raise ValueError(f"unknown protocol {spec!r}") from None


def _ports(spec: int | tuple[int, int] | str | None) -> tuple[int, int]:
    if spec is None:
        return ANY_PORTS
    if isinstance(spec, int):
        lo = hi = spec
    elif isinstance(spec, str):
        text = spec.strip().lower()
        if text in ("any", "*", ""):
            return ANY_PORTS
        lo_s, _, hi_s = text.partition("-")
        lo, hi = int(lo_s), int(hi_s or lo_s)
    else:
        lo, hi = spec
    if not 0 <= lo <= hi <= 65535:
        raise ValueError(f"bad port range {spec!r}")
    return (lo, hi)


def icmp_range(icmp_type: int | None = None, code: int | None = None) -> tuple[int, int]:
    """The 16-bit range for an ICMP type (and code) selector (RFC 4301 §4.4.1.1)."""
    if icmp_type is None:
        return ANY_PORTS
    if code is None:
        return (icmp_type << 8, icmp_type << 8 | 0xFF)
    return (icmp_type << 8 | code, icmp_type << 8 | code)


@dataclass(frozen=True)
class Selector:
    local: AddressRange | None = None
    remote: AddressRange | None = None
    protocol: int | None = None
    local_ports: tuple[int, int] = ANY_PORTS
    remote_ports: tuple[int, int] = ANY_PORTS

    @classmethod
    def of(
        cls,
        local: Any = None,
        remote: Any = None,
        protocol: int | str | None = None,
        local_ports: Any = None,
        remote_ports: Any = None,
    ) -> Selector:
        """A selector from friendly forms: "10.1.0.0/16", "tcp", 443, (1024, 65535), "any"."""
        return cls(address_range(local), address_range(remote), _protocol(protocol), _ports(local_ports), _ports(remote_ports))

    def matches(self, ft: FiveTuple, outbound: bool) -> bool:
        if outbound:
            local, remote, lport, rport = ft.src, ft.dst, ft.sport, ft.dport
        else:
            local, remote, lport, rport = ft.dst, ft.src, ft.dport, ft.sport
        r = self.local
        if r is not None and not (len(local) == len(r.lo) and r.lo <= local <= r.hi):
            return False
        r = self.remote
        if r is not None and not (len(remote) == len(r.lo) and r.lo <= remote <= r.hi):
            return False
        if self.protocol is not None and ft.protocol != self.protocol:
            return False
        p = self.local_ports
        if p != ANY_PORTS and (lport is None or not p[0] <= lport <= p[1]):
            # RFC 4301 §4.4.1.1: OPAQUE ports (fragments, unknown protocols) only match ANY
            return False
        p = self.remote_ports
        if p != ANY_PORTS and (rport is None or not p[0] <= rport <= p[1]):
            return False
        return True

    def describe(self) -> dict[str, Any]:
        def ports(p: tuple[int, int]) -> str:
            return "any" if p == ANY_PORTS else (str(p[0]) if p[0] == p[1] else f"{p[0]}-{p[1]}")

        return {
            "local": str(self.local) if self.local else "any",
            "remote": str(self.remote) if self.remote else "any",
            "protocol": "any" if self.protocol is None else self.protocol,
            "local_ports": ports(self.local_ports),
            "remote_ports": ports(self.remote_ports),
        }


def selectors_match(selectors: Iterable[Selector], packet: bytes, outbound: bool) -> bool:
    """Whether an IP packet fits any of `selectors` (an empty list means ANY)."""
    ft = five_tuple(packet)
    return any(s.matches(ft, outbound) for s in selectors)


@dataclass(eq=False)
class Policy:
    """An SPD entry: selector sets, an action and, for PROTECT, the SA or child it uses."""

    action: Action
    selectors: tuple[Selector, ...] = (Selector(),)
    sa: Any = None
    child: str | None = None
    name: str = ""
    hits: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        self.action = Action(self.action)
        if isinstance(self.selectors, Selector):
            self.selectors = (self.selectors,)
        else:
            self.selectors = tuple(self.selectors)
        if not self.selectors:
            raise ValueError("a policy needs at least one selector set")

    @classmethod
    def of(cls, action: Action | str, *, sa: Any = None, child: str | None = None, name: str = "", **selector: Any) -> Policy:
        return cls(Action(action), (Selector.of(**selector),), sa=sa, child=child, name=name)

    def matches(self, ft: FiveTuple, outbound: bool) -> bool:
        for s in self.selectors:
            if s.matches(ft, outbound):
                return True
        return False

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "action": self.action.value,
            "child": self.child,
            "sa": None if self.sa is None else f"0x{self.sa.spi:08x}",
            "selectors": [s.describe() for s in self.selectors],
            "hits": self.hits,
        }


class SPD:
    """Ordered policies; `outbound` and `inbound` decide for a packet, counting drops.

    No match means DISCARD (RFC 4301 §4.4.1: the SPD must end in a catch-all; an
    implicit DISCARD stands in for it).
    """

    def __init__(self, policies: Iterable[Policy] = (), counters: DropCounters | None = None) -> None:
        self.policies: list[Policy] = list(policies)
        self.drops = counters if counters is not None else DropCounters()

    def add(self, policy: Policy, index: int | None = None) -> Policy:
        if index is None:
            self.policies.append(policy)
        else:
            self.policies.insert(index, policy)
        return policy

    def remove(self, name: str) -> None:
        self.policies = [p for p in self.policies if p.name != name]

    def bind(self, child: str, sa: Any) -> int:
        """Point every PROTECT policy of `child` at `sa` (after a CHILD_SA comes up or rekeys)."""
        n = 0
        for p in self.policies:
            if p.child == child and p.action is Action.PROTECT:
                p.sa = sa
                n += 1
        return n

    def lookup(self, ft: FiveTuple, outbound: bool) -> Policy | None:
        for p in self.policies:
            if p.matches(ft, outbound):
                return p
        return None

    def _drop(self, reason: DropReason, detail: str = "") -> EspDrop:
        self.drops[reason] += 1
        return EspDrop(reason, None, detail)

    def _classify(self, packet: bytes, outbound: bool) -> Policy:
        try:
            ft = five_tuple(packet)
        except MalformedPacket as exc:
            raise self._drop(DropReason.MALFORMED, str(exc)) from None
        policy = self.lookup(ft, outbound)
        if policy is None:
            raise self._drop(DropReason.POLICY_DISCARD, "no policy matches")
        policy.hits += 1
        if policy.action is Action.DISCARD:
            raise self._drop(DropReason.POLICY_DISCARD, policy.name)
        return policy

    def outbound(self, packet: bytes) -> Policy:
        """The policy for a packet leaving through this gateway: PROTECT (with `.sa`) or BYPASS.

        DISCARD, no match or an unparsable packet raise EspDrop. A PROTECT policy whose
        SA is not there yet is returned as is: the daemon starts IKE for `.child`.
        """
        return self._classify(packet, True)

    def inbound(self, packet: bytes) -> Policy:
        """Check a packet that arrived without IPsec: only BYPASS lets it in (RFC 4301 §5.2 step 3a)."""
        policy = self._classify(packet, False)
        if policy.action is Action.PROTECT:
            raise self._drop(DropReason.UNPROTECTED, policy.name)
        return policy

    def describe(self) -> list[dict[str, Any]]:
        return [p.describe() for p in self.policies]
