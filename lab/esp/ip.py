"""The few IPv4/IPv6 header operations the ESP/AH core needs, on plain bytes.

Addresses stay packed (4 or 16 octets): big-endian bytes of one length compare in the
same order as the numbers, so address ranges need no conversion.
"""
from __future__ import annotations

import functools
import ipaddress
import struct
from typing import NamedTuple

PROTO_HOPOPTS = 0
PROTO_ICMP = 1
PROTO_IPIP = 4
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_IPV6 = 41
PROTO_ROUTING = 43
PROTO_FRAGMENT = 44
PROTO_ESP = 50
PROTO_AH = 51
PROTO_ICMPV6 = 58
PROTO_NONE = 59
PROTO_DSTOPTS = 60
PROTO_SCTP = 132

PORT_PROTOCOLS = frozenset({PROTO_TCP, PROTO_UDP, PROTO_SCTP, 33, 136})
ICMP_PROTOCOLS = frozenset({PROTO_ICMP, PROTO_ICMPV6})

IPV4_HEADER = struct.Struct("!BBHHHBBH4s4s")
IPV6_HEADER = struct.Struct("!IHBB16s16s")
UDP_HEADER = struct.Struct("!HHHH")
PORTS = struct.Struct("!HH")
U16 = struct.Struct("!H")


class MalformedPacket(ValueError):
    """A packet too short or inconsistent to parse."""


def pack_address(address: str | bytes | ipaddress.IPv4Address | ipaddress.IPv6Address) -> bytes:
    """4 or 16 octets for an address given as text, ipaddress object or packed bytes."""
    if isinstance(address, bytes):
        if len(address) not in (4, 16):
            raise ValueError(f"a packed address has 4 or 16 octets, not {len(address)}")
        return address
    if isinstance(address, str):
        return _pack_text(address)
    return ipaddress.ip_address(address).packed


@functools.lru_cache(maxsize=4096)
def _pack_text(address: str) -> bytes:
    return ipaddress.ip_address(address).packed


def internet_sum(data: bytes | bytearray | memoryview) -> int:
    """The 16-bit big-endian words of `data` added up (odd length: zero-padded), as one integer
    congruent to their one's-complement sum modulo 0xffff: since 2**16 = 1 (mod 0xffff), the
    whole big-endian value is (RFC 1071 §2(B))."""
    value = int.from_bytes(data, "big")
    return value << 8 if len(data) & 1 else value


def checksum_of_sum(total: int) -> int:
    """The checksum field for a sum: the one's complement of the folded sum (RFC 1071 §1)."""
    folded = total % 0xFFFF
    return 0xFFFF - folded if folded else 0


def checksum(data: bytes, initial: int = 0) -> int:
    """The Internet checksum (RFC 1071) of `data` (padded to even length) plus `initial`."""
    return checksum_of_sum(internet_sum(data) + initial)


def ipv4_header_checksum(header: bytes | bytearray) -> int:
    """Checksum of an IPv4 header whose checksum field is zero."""
    return checksum(bytes(header))


def udp6_checksum(src: bytes, dst: bytes, segment: bytes) -> int:
    """UDP checksum over the IPv6 pseudo-header (RFC 8200 §8.1); 0 is sent as 0xffff (RFC 768)."""
    pseudo = src + dst + len(segment).to_bytes(4, "big") + b"\x00\x00\x00\x11"
    c = checksum(pseudo + segment)
    return c or 0xFFFF


def ipv4_fixup(header: bytearray, total_length: int, protocol: int) -> bytes:
    """A copy of an IPv4 header with new total length, protocol and checksum."""
    header[2:4] = total_length.to_bytes(2, "big")
    header[9] = protocol
    header[10:12] = b"\x00\x00"
    header[10:12] = ipv4_header_checksum(header).to_bytes(2, "big")
    return bytes(header)


def ipv6_esp_split(packet: bytes) -> tuple[int, int, int]:
    """Where ESP/AH goes in an IPv6 packet in transport mode (RFC 4303 §3.1.1, RFC 4302 §3.1.1).

    Returns (offset of the next-header octet to rewrite, offset where the protected
    part starts, protocol found there). Hop-by-hop, routing and destination options
    before a routing header stay in front, as Linux does.
    """
    nh_at, off, nh = 6, 40, packet[6]
    routing = False
    n = len(packet)
    while nh == PROTO_HOPOPTS or nh == PROTO_ROUTING or (nh == PROTO_DSTOPTS and not routing):
        if off + 8 > n:
            raise MalformedPacket("IPv6 extension header runs past the packet")
        routing = routing or nh == PROTO_ROUTING
        nh_at, nh = off, packet[off]
        off += (packet[off + 1] + 1) * 8
    if off > n:
        raise MalformedPacket("IPv6 extension header runs past the packet")
    return nh_at, off, nh


def ipv6_find(packet: bytes, wanted: frozenset[int]) -> tuple[int, int, int]:
    """Walk IPv6 extension headers up to the first protocol in `wanted`.

    Returns (offset of the next-header octet naming it, its offset, the protocol);
    raises MalformedPacket on a fragment or a header that runs past the packet.
    """
    nh_at, off, nh = 6, 40, packet[6]
    n = len(packet)
    while nh not in wanted:
        if nh == PROTO_HOPOPTS or nh == PROTO_ROUTING or nh == PROTO_DSTOPTS:
            if off + 8 > n:
                raise MalformedPacket("IPv6 extension header runs past the packet")
            nh_at, nh = off, packet[off]
            off += (packet[off + 1] + 1) * 8
        elif nh == PROTO_FRAGMENT:
            # RFC 4303 §3.4.1, RFC 4302 §3.4.1: fragments are reassembled before IPsec
            raise MalformedPacket("IPv6 fragment")
        else:
            raise MalformedPacket(f"no {sorted(wanted)} header (found protocol {nh})")
    if off > n:
        raise MalformedPacket("IPv6 extension header runs past the packet")
    return nh_at, off, nh


class FiveTuple(NamedTuple):
    """What selectors look at (RFC 4301 §4.4.1.1); ports are None when opaque."""

    version: int
    src: bytes
    dst: bytes
    protocol: int
    sport: int | None
    dport: int | None


def five_tuple(packet: bytes) -> FiveTuple:
    """Addresses, next-layer protocol and ports of an IPv4/IPv6 packet.

    TCP, UDP, SCTP, DCCP and UDP-Lite give their ports; ICMP and ICMPv6 give
    type << 8 | code as both ports (RFC 4301 §4.4.1.1, RFC 7296 §3.13.1); non-initial
    fragments and other protocols give None (OPAQUE).
    """
    n = len(packet)
    if n < 1:
        raise MalformedPacket("empty packet")
    version = packet[0] >> 4
    if version == 4:
        if n < 20:
            raise MalformedPacket("IPv4 header truncated")
        ihl = (packet[0] & 0x0F) * 4
        proto = packet[9]
        src, dst = packet[12:16], packet[16:20]
        if (packet[6] & 0x1F) or packet[7]:
            return FiveTuple(4, src, dst, proto, None, None)
        off = ihl
    elif version == 6:
        if n < 40:
            raise MalformedPacket("IPv6 header truncated")
        src, dst = packet[8:24], packet[24:40]
        proto, off = packet[6], 40
        while proto in (PROTO_HOPOPTS, PROTO_ROUTING, PROTO_DSTOPTS, PROTO_FRAGMENT):
            if off + 8 > n:
                raise MalformedPacket("IPv6 extension header runs past the packet")
            if proto == PROTO_FRAGMENT:
                if U16.unpack_from(packet, off + 2)[0] & 0xFFF8:
                    return FiveTuple(6, src, dst, packet[off], None, None)
                proto, off = packet[off], off + 8
            else:
                proto, off = packet[off], off + (packet[off + 1] + 1) * 8
    else:
        raise MalformedPacket(f"IP version {version}")
    if proto in PORT_PROTOCOLS:
        if off + 4 > n:
            return FiveTuple(version, src, dst, proto, None, None)
        sport, dport = PORTS.unpack_from(packet, off)
        return FiveTuple(version, src, dst, proto, sport, dport)
    if proto in ICMP_PROTOCOLS:
        if off + 2 > n:
            return FiveTuple(version, src, dst, proto, None, None)
        tc = U16.unpack_from(packet, off)[0]
        return FiveTuple(version, src, dst, proto, tc, tc)
    return FiveTuple(version, src, dst, proto, None, None)
