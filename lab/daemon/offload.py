"""TUN offloads for the userspace data plane: every packet read from or written to a TUN
device opened with IFF_VNET_HDR is preceded by a virtio_net_hdr.

Out (`split`): with TUN_F_CSUM and TUN_F_TSO4/6 the kernel hands over TCP super-packets
of up to 64 KiB whose checksums are left to the device; they are cut here into
gso_size-sized IP packets with complete headers and checksums, as a NIC doing TSO would.

In (`coalesce`): consecutive in-order TCP segments of one flow, as they come out of one
receive batch, are joined into one super-packet (GSO TCPV4/TCPV6) that the kernel
forwards as one and segments itself where needed: GRO in userspace.

Pure functions on bytes, no I/O: tests/unit/test_tun_offload.py checks them with scapy.
"""
from __future__ import annotations

import struct
from typing import Any

from lab.esp.ip import checksum_of_sum, internet_sum

# virtio spec 5.1.6 (struct virtio_net_hdr; the legacy header is in native byte order)
VNET_HDR = struct.Struct("=BBHHHH")
VNET_HDR_LEN = VNET_HDR.size

F_NEEDS_CSUM = 1
F_DATA_VALID = 2
GSO_NONE = 0
GSO_TCPV4 = 1
GSO_UDP = 3
GSO_TCPV6 = 4
GSO_UDP_L4 = 5
GSO_ECN = 0x80

TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK, TCP_URG, TCP_ECE, TCP_CWR = 1, 2, 4, 8, 16, 32, 64, 128
PROTO_TCP, PROTO_UDP = 6, 17

MAX_COALESCE_SEGMENTS = 64
MAX_IP_LENGTH = 65535

# RFC 4303 §3.4.4.1: ESP's ICV authenticated the packet, so DATA_VALID spares the kernel its checksum check
DATA_VALID = VNET_HDR.pack(F_DATA_VALID, GSO_NONE, 0, 0, 0, 0)

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_from = int.from_bytes


class OffloadError(ValueError):
    """A packet from the TUN device whose offload request cannot be carried out."""


def _pseudo(packet, version: int) -> int:
    """The addresses of the IPv4 (RFC 793 §3.1) or IPv6 (RFC 8200 §8.1) pseudo-header, summed."""
    return _from(packet[12:20], "big") if version == 4 else _from(packet[8:40], "big")


def complete_checksum(packet, csum_start: int, csum_offset: int) -> bytes:
    """NEEDS_CSUM without GSO: the checksum field at csum_start + csum_offset holds the
    pseudo-header sum; add everything from csum_start on and store the complement."""
    at = csum_start + csum_offset
    if csum_start >= len(packet) or at + 2 > len(packet):
        raise OffloadError(f"checksum at {csum_start}+{csum_offset} lies outside a {len(packet)}-byte packet")
    check = checksum_of_sum(internet_sum(packet[csum_start:]))
    if check == 0 and csum_offset == 6:
        check = 0xFFFF  # RFC 768: a computed UDP checksum of zero is sent as all ones
    out = bytearray(packet)
    out[at] = check >> 8
    out[at + 1] = check & 0xFF
    return bytes(out)


def _ip_header(packet, l4: int, protocol: int) -> int:
    """The IP version of a packet whose transport header starts at l4, after checks."""
    n = len(packet)
    version = packet[0] >> 4 if n else 0
    if version == 4:
        if n < 20 or (packet[0] & 0x0F) * 4 != l4 or packet[9] != protocol:
            raise OffloadError("IPv4 header does not match csum_start or protocol")
    elif version == 6:
        if n < 40 or l4 < 40:
            raise OffloadError("IPv6 header does not match csum_start")
        if l4 == 40 and packet[6] != protocol:
            raise OffloadError("IPv6 next header does not match the GSO type")
    else:
        raise OffloadError(f"IP version {version} in a GSO packet")
    return version


def _folds(nbytes: int) -> tuple[tuple[int, int], ...]:
    """Shift-and-add steps that shrink an nbytes-long integer before `% 0xffff` without changing
    its remainder (2**k = 1 mod 0xffff for k a multiple of 16); multiples of 240 bits keep
    the shifts on CPython's 30-bit digit boundaries, where they are cheapest."""
    steps: list[tuple[int, int]] = []
    bits = nbytes * 8 + 8
    while bits > 4000 and len(steps) < 2:
        k = -(-bits // 480) * 240
        steps.append((k, (1 << k) - 1))
        bits = k + 1
    return tuple(steps)


def segment_tcp(packet, l4: int, mss: int) -> list[bytes]:
    """Cut a TCP super-packet (transport header at l4) into segments of mss payload bytes
    with their own IP length, IPv4 ID and header checksum, sequence number and checksum.

    The checksums are sums of the fixed header words plus what changes: sequence number,
    flags, lengths, ID. Each of those fields ends an even number of bytes before the end of
    its header, so its place value is 1 modulo 0xffff and it adds as a plain number."""
    n = len(packet)
    version = _ip_header(packet, l4, PROTO_TCP)
    if l4 + 20 > n:
        raise OffloadError("TCP header truncated")
    thl = (packet[l4 + 12] >> 4) * 4
    hl = l4 + thl
    if thl < 20 or hl >= n:
        raise OffloadError("TCP header length does not fit, or no payload")
    if mss <= 0:
        raise OffloadError("gso_size 0")
    ip, tcp = bytearray(packet[:l4]), bytearray(packet[l4:hl])
    seq0 = _U32.unpack_from(tcp, 4)[0]
    flags = tcp[13]
    tcp[4:8] = b"\0\0\0\0"
    tcp[13] = 0
    tcp[16] = tcp[17] = 0
    fixed = _pseudo(packet, version) + PROTO_TCP + thl + _from(tcp, "big")
    if version == 4:
        ident = packet[4] << 8 | packet[5]
        ip[2:6] = b"\0\0\0\0"
        ip[10:12] = b"\0\0"
        ip_fixed = _from(ip, "big") + l4 + thl
    folds = _folds(mss)
    pack_u32, pack_u16 = _U32.pack_into, _U16.pack_into
    out: list[bytes] = []
    append = out.append
    last_off = n - 1 - (n - 1 - hl) % mss
    i = 0
    for off in range(hl, n, mss):
        seg = packet[off : off + mss]
        size = len(seg)
        seq = (seq0 + off - hl) & 0xFFFFFFFF
        f = flags
        if off != last_off:
            f &= ~(TCP_FIN | TCP_PSH)  # RFC 793 §3.7 (PUSH) and §3.5 (FIN): on the last segment only
        if i:
            f &= ~TCP_CWR  # RFC 3168 §6.1.2: CWR on the first segment only
        x = _from(seg, "big")
        if size & 1:
            x <<= 8
        else:
            for k, mask in folds:
                x = (x >> k) + (x & mask)
        c = (fixed + size + seq + f + x) % 0xFFFF
        pack_u32(tcp, 4, seq)
        tcp[13] = f
        pack_u16(tcp, 16, 0xFFFF - c if c else 0)
        if version == 4:
            c = (ip_fixed + size + ((ident + i) & 0xFFFF)) % 0xFFFF
            pack_u16(ip, 2, l4 + thl + size)
            pack_u16(ip, 4, (ident + i) & 0xFFFF)
            pack_u16(ip, 10, 0xFFFF - c if c else 0)
        else:
            pack_u16(ip, 4, l4 - 40 + thl + size)
        append(b"".join((ip, tcp, seg)))
        i += 1
    return out


def split(buf: bytes) -> list[bytes]:
    """The IP packets in one TUN read (virtio_net_hdr + packet), checksums complete."""
    if len(buf) < VNET_HDR_LEN:
        raise OffloadError("shorter than a virtio_net_hdr")
    flags, gso_type, _hdr_len, gso_size, csum_start, csum_offset = VNET_HDR.unpack_from(buf)
    kind = gso_type & ~GSO_ECN
    if kind == GSO_NONE and not flags & F_NEEDS_CSUM:
        return [buf[VNET_HDR_LEN:]]
    packet = memoryview(buf)[VNET_HDR_LEN:]
    if kind == GSO_NONE:
        return [complete_checksum(packet, csum_start, csum_offset)]
    if kind == GSO_TCPV4 or kind == GSO_TCPV6:
        if not flags & F_NEEDS_CSUM or csum_offset != 16:
            raise OffloadError("TCP GSO packet without a partial checksum")
        return segment_tcp(packet, csum_start, gso_size)
    raise OffloadError(f"GSO type {gso_type} was not offered to the kernel")


def _tcp_start(p) -> tuple[int, int] | None:
    """(transport offset, header length) of a TCP segment that may head a super-packet: an IPv4
    header without options and not a fragment, or a bare IPv6 header; lengths that match the
    packet's; payload; ACK and no other flag."""
    n = len(p)
    if n < 40:
        return None
    b0 = p[0]
    if b0 == 0x45:
        if p[9] != PROTO_TCP or p[6] & 0x3F or p[7] or (p[2] << 8 | p[3]) != n:
            return None
        l4 = 20
    elif b0 >> 4 == 6:
        if n < 60 or p[6] != PROTO_TCP or 40 + (p[4] << 8 | p[5]) != n:
            return None
        l4 = 40
    else:
        return None
    thl = (p[l4 + 12] >> 4) * 4
    hl = l4 + thl
    if thl < 20 or hl >= n or p[l4 + 13] != TCP_ACK:
        return None
    return l4, hl


def coalesce(packets: list[bytes], max_length: int = MAX_IP_LENGTH,
             max_segments: int = MAX_COALESCE_SEGMENTS) -> list[list]:
    """Write vectors (virtio_net_hdr first) for `packets` in their order. A run of TCP
    segments of one flow with contiguous sequence numbers, equal payload sizes (the last
    may be shorter), headers equal but for length, IPv4 ID (one up each), sequence number
    and checksum, and no flag but ACK (PSH on the last) becomes one GSO super-packet."""
    out: list[list[Any]] = []
    n = len(packets)
    i = 0
    while i < n:
        p = packets[i]
        start = _tcp_start(p)
        if start is None or i + 1 == n:
            out.append([DATA_VALID, p])
            i += 1
            continue
        l4, hl = start
        mss = len(p) - hl
        seq = (_U32.unpack_from(p, l4 + 4)[0] + mss) & 0xFFFFFFFF
        total = len(p)
        if l4 == 20:
            same_ip: tuple[tuple[int, int], ...] = ((0, 2), (6, 10), (12, 20))
            ident = p[4] << 8 | p[5]
        else:
            same_ip = ((0, 4), (6, 40))
            ident = -1
        same = same_ip + ((l4, l4 + 4), (l4 + 8, l4 + 13), (l4 + 14, l4 + 16), (l4 + 18, hl))
        keys = [(a, b, p[a:b]) for a, b in same]
        j = i + 1
        last_flags = TCP_ACK
        while j < n and j - i < max_segments:
            q = packets[j]
            size = len(q) - hl
            if size <= 0 or size > mss or total + size > max_length:
                break
            if q[l4 + 13] & ~TCP_PSH != TCP_ACK or _U32.unpack_from(q, l4 + 4)[0] != seq:
                break
            if ident >= 0:
                if (q[2] << 8 | q[3]) != len(q) or (q[4] << 8 | q[5]) != (ident + j - i) & 0xFFFF:
                    break
            elif 40 + (q[4] << 8 | q[5]) != len(q):
                break
            for a, b, value in keys:
                if q[a:b] != value:
                    break
            else:
                total += size
                seq = (seq + size) & 0xFFFFFFFF
                last_flags = q[l4 + 13]
                j += 1
                if size < mss or last_flags & TCP_PSH:
                    break
                continue
            break
        if j - i == 1:
            out.append([DATA_VALID, p])
            i += 1
            continue
        out.append(_super_packet(packets, i, j, l4, hl, mss, total, last_flags))
        i = j
    return out


def _super_packet(packets: list[bytes], i: int, j: int, l4: int, hl: int, mss: int, total: int,
                  last_flags: int) -> list:
    p = packets[i]
    ip, tcp = bytearray(p[:l4]), bytearray(p[l4:hl])
    tcp_len = total - l4
    if l4 == 20:
        _U16.pack_into(ip, 2, total)
        ip[10] = ip[11] = 0
        _U16.pack_into(ip, 10, checksum_of_sum(_from(ip, "big")))
        version, gso = 4, GSO_TCPV4
    else:
        _U16.pack_into(ip, 4, tcp_len)
        version, gso = 6, GSO_TCPV6
    tcp[13] |= last_flags & TCP_PSH
    # virtio spec 5.1.6.2
    _U16.pack_into(tcp, 16, (_pseudo(p, version) + PROTO_TCP + tcp_len) % 0xFFFF or 0xFFFF)
    vector: list[bytes | memoryview] = [VNET_HDR.pack(F_NEEDS_CSUM, gso, hl, mss, l4, 16), bytes(ip), bytes(tcp)]
    vector.extend(memoryview(q)[hl:] for q in packets[i:j])
    return vector


__all__ = ["VNET_HDR", "VNET_HDR_LEN", "DATA_VALID", "OffloadError", "coalesce", "complete_checksum",
           "segment_tcp", "split"]
