"""Replies back through the SA their flow came in on, when several SAs serve one policy.

Two transport-mode clients behind one NAT box reach a server from the same address: after
the RFC 7296 §2.23.1 substitution both CHILD_SAs have the selectors {server <-> NAT address}
and the SPD cannot tell them apart (RFC 4301 §4.4.1 wants one SA per selector set). What
tells them apart is the upper-layer flow: the client's TCP or UDP ports, or its ICMP echo
identifier. `ReturnFlows` remembers, for each flow that arrived, the SA (any object) it
arrived on, so the reply can leave on the matching one; strongSwan's connmark plugin does the
same with conntrack marks for transport-mode SAs.

    flows.learn(inner_packet, pair)   # after unprotecting it
    flows.lookup(outgoing_packet)     # -> the pair, or None (then the policy's default SA)

Pure: no clock; the oldest flow is forgotten once `capacity` are known.
"""
from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from .ip import PROTO_ICMP, PROTO_ICMPV6, PROTO_SCTP, PROTO_TCP, PROTO_UDP, MalformedPacket, ipv6_find

_PORTS = frozenset({PROTO_TCP, PROTO_UDP, PROTO_SCTP, 136})
# ICMP echo request/reply (RFC 792) and ICMPv6 echo request/reply (RFC 4443 §4)
_ECHO = {PROTO_ICMP: frozenset({0, 8}), PROTO_ICMPV6: frozenset({128, 129})}
_WANTED = frozenset(_PORTS | set(_ECHO))


def flow_key(packet: bytes, inbound: bool) -> tuple[Any, ...] | None:
    """(protocol, local address, remote address, local port, remote port) of a packet seen
    from this host (inbound: it is the destination), the echo identifier standing for both
    ports of ICMP echoes; None for anything else."""
    n = len(packet)
    if n < 20:
        return None
    version = packet[0] >> 4
    if version == 4:
        if packet[6] & 0x1F or packet[7]:
            return None
        proto, off = packet[9], (packet[0] & 0x0F) * 4
        src, dst = packet[12:16], packet[16:20]
    elif version == 6 and n >= 40:
        try:
            _, off, proto = ipv6_find(packet, _WANTED)
        except MalformedPacket:
            return None
        src, dst = packet[8:24], packet[24:40]
    else:
        return None
    if off + 8 > n:
        return None
    if proto in _PORTS:
        sport, dport = packet[off] << 8 | packet[off + 1], packet[off + 2] << 8 | packet[off + 3]
    elif proto in _ECHO and packet[off] in _ECHO[proto]:
        sport = dport = packet[off + 4] << 8 | packet[off + 5]
    else:
        return None
    if inbound:
        return proto, dst, src, dport, sport
    return proto, src, dst, sport, dport


class ReturnFlows:
    def __init__(self, capacity: int = 65536) -> None:
        self.capacity = capacity
        self.flows: dict[tuple[Any, ...], Any] = {}

    def learn(self, packet: bytes, target: Hashable) -> None:
        """`packet` arrived through `target`: its flow's replies go back through it."""
        key = flow_key(packet, inbound=True)
        if key is None:
            return
        flows = self.flows
        if flows.get(key) is target:
            return
        flows.pop(key, None)
        flows[key] = target
        if len(flows) > self.capacity:
            del flows[next(iter(flows))]

    def lookup(self, packet: bytes) -> Any:
        """The target the flow of a leaving `packet` arrived through, or None."""
        key = flow_key(packet, inbound=False)
        return None if key is None else self.flows.get(key)

    def replace(self, old: Any, new: Any) -> int:
        """Flows of `old` now go through `new` (a rekeyed SA); how many."""
        n = 0
        for key, target in self.flows.items():
            if target is old:
                self.flows[key] = new
                n += 1
        return n

    def forget(self, target: Any) -> None:
        self.flows = {k: t for k, t in self.flows.items() if t is not target}

    def __len__(self) -> int:
        return len(self.flows)


__all__ = ["ReturnFlows", "flow_key"]
