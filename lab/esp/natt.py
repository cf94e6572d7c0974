"""Transport mode across a NAT: the TCP/UDP checksum fix-up (RFC 3948 §3.1.2).

In transport mode the TCP or UDP checksum inside ESP covers a pseudo-header with the IP
addresses the sender used. A NAT rewrites the outer (and only) IP header but cannot reach
the encrypted checksum, so after decapsulation the checksum no longer fits the header:
the receiving stack drops every TCP segment and every UDP datagram with a checksum. ICMP
(IPv4) has no pseudo-header, which is why ping works where TCP does not.

The fix-up replaces the sender's addresses by the ones in the header, incrementally
(RFC 1624): the rest of the sum stays as the sender computed it, so a corrupted payload is
still caught. IKEv1 carried the "real" addresses in NAT-OA payloads; IKEv2 has none and
takes them from the traffic selectors as received (RFC 7296 §2.23.1).

    fixed = checksum_fixup(packet, real_src, real_dst)

Pure: bytes in, bytes out.
"""
from __future__ import annotations

from .ip import PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, MalformedPacket, ipv6_find

# where the checksum sits in each header the pseudo-header covers
_CHECKSUM_AT = {PROTO_TCP: 16, PROTO_UDP: 6, PROTO_ICMPV6: 2}
_PSEUDO = frozenset(_CHECKSUM_AT)
_from = int.from_bytes


def _words(address: bytes) -> int:
    """The 16-bit words of an address added up, modulo 0xffff (2**16 = 1 mod 0xffff)."""
    return _from(address, "big") % 0xFFFF


def adjust_checksum(checksum: int, old: bytes, new: bytes) -> int:
    """A checksum field after the words `old` in what it covers became `new` (RFC 1624 eqn. 3:
    HC' = ~(~HC + ~m + m')); 0 stands for a sum of all ones, as a full computation gives."""
    total = (0xFFFF - checksum + _words(new) - _words(old)) % 0xFFFF
    return 0xFFFF - total if total else 0


def checksum_fixup(packet: bytes, real_src: bytes | None, real_dst: bytes | None) -> bytes:
    """`packet` with its TCP, UDP (or ICMPv6) checksum made to fit its own IP addresses, for a
    sender that computed it over `real_src` and `real_dst` (RFC 3948 §3.1.2, method 1).

    A UDP checksum of zero (IPv4: none sent, RFC 768) stays zero; a computed zero is sent as
    all ones. Other protocols, fragments and packets too short to hold the checksum are
    returned unchanged: the stack will judge them. None for an address leaves that one as is.
    """
    n = len(packet)
    if n < 20:
        return packet
    version = packet[0] >> 4
    if version == 4:
        src, dst = packet[12:16], packet[16:20]
        proto, off = packet[9], (packet[0] & 0x0F) * 4
        if packet[6] & 0x3F or packet[7]:
            return packet
    elif version == 6 and n >= 40:
        src, dst = packet[8:24], packet[24:40]
        try:
            _, off, proto = ipv6_find(packet, _PSEUDO)
        except MalformedPacket:
            return packet
    else:
        return packet
    at = _CHECKSUM_AT.get(proto)
    if at is None or (proto == PROTO_ICMPV6 and version == 4) or off + at + 2 > n:
        return packet
    old_src = src if real_src is None else real_src
    old_dst = dst if real_dst is None else real_dst
    if old_src == src and old_dst == dst:
        return packet
    if len(old_src) != len(src) or len(old_dst) != len(dst):
        # a NAT between address families would need a new pseudo-header, not a fix-up
        return packet
    checksum = packet[off + at] << 8 | packet[off + at + 1]
    if proto == PROTO_UDP and checksum == 0:
        # RFC 768: zero means the sender computed no checksum; there is nothing to fix
        return packet
    fixed = adjust_checksum(checksum, old_src + old_dst, src + dst)
    if proto == PROTO_UDP and fixed == 0:
        fixed = 0xFFFF  # RFC 768: a computed zero is transmitted as all ones
    out = bytearray(packet)
    out[off + at] = fixed >> 8
    out[off + at + 1] = fixed & 0xFF
    return bytes(out)


__all__ = ["adjust_checksum", "checksum_fixup"]
