"""Outbound and inbound IPsec SAs: ESP (RFC 4303) and AH (RFC 4302), sans-I/O.

    out = OutboundSA(spi, mode=Mode.TUNNEL, encr_id=EncrId.AES_GCM_16, encr_key=k,
                     local="192.0.2.1", remote="198.51.100.1")
    wire = out.protect(ip_packet)            # the whole outer IP datagram
    esp = out.protect_payload(ip_packet)     # ESP header onwards

    inb = InboundSA(spi, ..., local="198.51.100.1", remote="192.0.2.1")
    ip_packet = inb.unprotect(esp)           # ESP: header onwards; AH: the whole datagram
    ip_packet = inb.unprotect_datagram(wire) # the whole outer datagram, ESP or AH

What to send where:
- raw IP socket with IP_HDRINCL, a pcap, scapy: `protect()` (IPv4/IPv6 [+ UDP] + ESP/AH).
- raw socket for protocol 50 without IP_HDRINCL, or the UDP 4500 socket when the SA
  has `encap` (RFC 3948): `protect_payload()`; send it to (`remote`, `encap.dport`).
- AH covers the IP header (RFC 4302 §3.3.3), so AH has `protect()` only.

Nothing here reads a clock: lifetimes in seconds are checked by `handle_time(now)`.
Drops raise `EspDrop` (see errors.py); events (lifetimes, sequence numbers) queue in
`sa.events`, to be taken with `next_event()`.
"""
from __future__ import annotations

import ipaddress
import os
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from hmac import compare_digest
from typing import Any

from lab.iana import EncrId, IntegId, name_of

from .algorithms import ah_mac, esp_encr, esp_transform
from .errors import DropCounters, DropReason, EspConfigError, EspDrop
from .ip import (
    IPV4_HEADER,
    IPV6_HEADER,
    PROTO_AH,
    PROTO_DSTOPTS,
    PROTO_ESP,
    PROTO_HOPOPTS,
    PROTO_IPIP,
    PROTO_IPV6,
    PROTO_NONE,
    PROTO_UDP,
    UDP_HEADER,
    MalformedPacket,
    five_tuple,
    ipv4_fixup,
    ipv6_esp_split,
    ipv6_find,
    pack_address,
    udp6_checksum,
)
from .lifetime import NO_LIFETIME, Lifetime, SaEvent, SaEventKind, SaState
from .natt import checksum_fixup
from .replay import REPLAY, ReplayWindow
from .spd import Selector

SEQ_MAX_32 = (1 << 32) - 1
SEQ_MAX_64 = (1 << 64) - 1
_NEVER = 1 << 100

_ESP_HEADER = struct.Struct("!II")
_AH_HEADER = struct.Struct("!BBHII")
_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")
_U16 = struct.Struct("!H")

# RFC 4303 §2.4: pad bytes are 1, 2, 3, ...
_PAD = [bytes(range(1, n + 1)) for n in range(256)]
_TRAILER = [[_PAD[p] + bytes((p, nh)) for nh in range(256)] for p in range(16)]

# RFC 4302 Appendix A.1: IPv4 options that stay in the ICV; all others are zeroed
_IMMUTABLE_IPV4_OPTIONS = frozenset({0, 1, 130, 133, 134, 148, 149})

_ESP_OR_UDP = frozenset({PROTO_ESP, PROTO_UDP})
_AH_ONLY = frozenset({PROTO_AH})


class Mode(StrEnum):
    TUNNEL = "tunnel"
    TRANSPORT = "transport"


class IpsecProto(IntEnum):
    ESP = PROTO_ESP
    AH = PROTO_AH


class DfPolicy(StrEnum):
    """The DF bit of an IPv4 outer header (RFC 4301 §8.1): copied from the inner packet, set or cleared."""

    COPY = "copy"
    SET = "set"
    CLEAR = "clear"


@dataclass(frozen=True)
class UdpEncap:
    """UDP encapsulation of ESP (RFC 3948): the ports on the wire, after NAT."""

    sport: int = 4500
    dport: int = 4500


def _zero_ipv4_mutable(header: bytes) -> bytes:
    """An IPv4 header as AH's ICV sees it (RFC 4302 §3.3.3.1.1)."""
    h = bytearray(header)
    h[1] = 0
    h[6:9] = b"\x00\x00\x00"
    h[10:12] = b"\x00\x00"
    i, end = 20, len(h)
    while i < end:
        t = h[i]
        if t == 0:
            break
        if t == 1:
            i += 1
            continue
        length = h[i + 1] if i + 1 < end else 0
        if length < 2 or i + length > end:
            raise MalformedPacket("bad IPv4 option length")
        if t not in _IMMUTABLE_IPV4_OPTIONS:
            h[i : i + length] = bytes(length)
        i += length
    return bytes(h)


def _zero_ipv6_mutable(header: bytes) -> bytes:
    """An IPv6 header and its extension headers as AH's ICV sees them (RFC 4302 §3.3.3.1.2)."""
    h = bytearray(header)
    h[0:4] = b"\x60\x00\x00\x00"
    h[7] = 0
    nh, off, end = h[6], 40, len(h)
    while off < end:
        if off + 8 > end:
            raise MalformedPacket("IPv6 extension header truncated")
        length = (h[off + 1] + 1) * 8
        if nh == PROTO_HOPOPTS or nh == PROTO_DSTOPTS:
            i, stop = off + 2, off + length
            while i < stop:
                t = h[i]
                if t == 0:
                    i += 1
                    continue
                olen = h[i + 1] if i + 1 < stop else 0
                if i + 2 + olen > stop:
                    raise MalformedPacket("bad IPv6 option length")
                if t & 0x20:
                    # RFC 8200 §4.2: the third-highest bit of the type marks data that may change en route
                    h[i + 2 : i + 2 + olen] = bytes(olen)
                i += 2 + olen
        nh = h[off]
        off += length
    return bytes(h)


class _SA:
    """What inbound and outbound SAs share: algorithms, lifetimes, counters, events."""

    direction = ""

    def __init__(
        self,
        spi: int,
        *,
        protocol: IpsecProto | int,
        mode: Mode | str,
        encr_id: int | None,
        encr_key: bytes,
        integ_id: int,
        integ_key: bytes,
        local: Any,
        remote: Any,
        esn: bool,
        encap: UdpEncap | None,
        lifetime: Lifetime,
        now: float,
        selectors: Iterable[Selector],
        name: str,
        shared_drops: DropCounters | None,
    ) -> None:
        if not 0 <= spi <= 0xFFFFFFFF:
            raise EspConfigError(f"SPI {spi} does not fit in 32 bits")
        self.spi = spi
        self.protocol = IpsecProto(protocol)
        self.mode = Mode(mode)
        self.esn = bool(esn)
        self.encap = encap
        self.name = name
        self.local = pack_address(local) if local is not None else None
        self.remote = pack_address(remote) if remote is not None else None
        if self.local is not None and self.remote is not None and len(self.local) != len(self.remote):
            raise EspConfigError("local and remote addresses must be of one IP version")
        if self.mode is Mode.TUNNEL and (self.local is None or self.remote is None):
            raise EspConfigError("a tunnel-mode SA needs local and remote addresses for the outer header")
        self.selectors: tuple[Selector, ...] = tuple(selectors)
        self.encr_id = encr_id
        self.integ_id = integ_id
        if self.protocol is IpsecProto.AH:
            if encr_id not in (None, EncrId.NULL) or encr_key:
                raise EspConfigError("AH has no encryption (RFC 4302 §1)")
            if encap is not None:
                raise EspConfigError("UDP encapsulation (RFC 3948) is defined for ESP only")
            self.encr_id = None
            self._mac, self.icv_size = ah_mac(integ_id, integ_key)
            self._xform = None
        else:
            if encr_id is None:
                raise EspConfigError("an ESP SA needs encr_id (EncrId.NULL for integrity only)")
            self._xform = esp_transform(encr_id, encr_key, integ_id, integ_key)
            self.icv_size = self._xform.icv_size
            self._key_bits = (len(encr_key) - esp_encr(encr_id, len(encr_key)).salt_size) * 8
        self.lifetime = lifetime
        self.created_at = now
        self.state = SaState.ACTIVE
        self.packets = 0
        self.bytes = 0
        self.drops = DropCounters()
        self.shared_drops = shared_drops
        self.events: list[SaEvent] = []
        self._set_marks()

    def _set_marks(self) -> None:
        lt = self.lifetime
        if self.state is SaState.ACTIVE:
            p = [v for v in (lt.soft_packets, lt.hard_packets) if v is not None]
            b = [v for v in (lt.soft_bytes, lt.hard_bytes) if v is not None]
        elif self.state is SaState.SOFT_EXPIRED:
            p = [lt.hard_packets] if lt.hard_packets is not None else []
            b = [lt.hard_bytes] if lt.hard_bytes is not None else []
        else:
            p = b = []
        self._packet_mark = min(p) if p else _NEVER
        self._byte_mark = min(b) if b else _NEVER

    def _emit(self, kind: SaEventKind, trigger: str) -> None:
        self.events.append(SaEvent(kind, self.spi, self.direction, self.protocol.name.lower(), trigger, self.name))

    def _crossed(self) -> None:
        lt = self.lifetime
        if self.state is SaState.ACTIVE:
            trigger = None
            if lt.soft_packets is not None and self.packets >= lt.soft_packets:
                trigger = "packets"
            elif lt.soft_bytes is not None and self.bytes >= lt.soft_bytes:
                trigger = "bytes"
            if trigger:
                self.state = SaState.SOFT_EXPIRED
                self._emit(SaEventKind.SOFT_EXPIRED, trigger)
        if self.state is not SaState.HARD_EXPIRED:
            trigger = None
            if lt.hard_packets is not None and self.packets >= lt.hard_packets:
                trigger = "packets"
            elif lt.hard_bytes is not None and self.bytes >= lt.hard_bytes:
                trigger = "bytes"
            if trigger:
                self._expire(trigger)
        self._set_marks()

    def _expire(self, trigger: str) -> None:
        self.state = SaState.HARD_EXPIRED
        self._emit(SaEventKind.HARD_EXPIRED, trigger)
        self._set_marks()

    def _account(self, n: int) -> None:
        self.packets += 1
        self.bytes += n
        if self.packets >= self._packet_mark or self.bytes >= self._byte_mark:
            self._crossed()

    def handle_time(self, now: float) -> None:
        """Raise the soft/hard events whose time has come (RFC 4301 §4.4.2.1)."""
        lt = self.lifetime
        if self.state is SaState.ACTIVE and lt.soft_seconds is not None and now >= self.created_at + lt.soft_seconds:
            self.state = SaState.SOFT_EXPIRED
            self._emit(SaEventKind.SOFT_EXPIRED, "seconds")
            self._set_marks()
        if self.state is not SaState.HARD_EXPIRED and lt.hard_seconds is not None and now >= self.created_at + lt.hard_seconds:
            self._expire("seconds")

    def next_deadline(self) -> float | None:
        """When `handle_time` has something to do next, or None."""
        lt = self.lifetime
        if self.state is SaState.ACTIVE and lt.soft_seconds is not None:
            return self.created_at + lt.soft_seconds
        if self.state is not SaState.HARD_EXPIRED and lt.hard_seconds is not None:
            return self.created_at + lt.hard_seconds
        return None

    def next_event(self) -> SaEvent | None:
        return self.events.pop(0) if self.events else None

    def _drop(self, reason: DropReason, detail: str = "") -> EspDrop:
        self.drops[reason] += 1
        if self.shared_drops is not None:
            self.shared_drops[reason] += 1
        return EspDrop(reason, self.spi, detail)

    def describe(self) -> dict[str, Any]:
        def addr(a: bytes | None) -> str | None:
            return None if a is None else str(ipaddress.ip_address(a))

        d: dict[str, Any] = {
            "name": self.name,
            "spi": f"0x{self.spi:08x}",
            "direction": self.direction,
            "protocol": self.protocol.name.lower(),
            "mode": self.mode.value,
            "encr": None if self.encr_id is None else name_of(EncrId, self.encr_id),
            "encr_key_bits": None if self.encr_id in (None, EncrId.NULL) else self._key_bits,
            "integ": name_of(IntegId, self.integ_id),
            "icv_size": self.icv_size,
            "esn": self.esn,
            "encap": None if self.encap is None else {"sport": self.encap.sport, "dport": self.encap.dport},
            "local": addr(self.local),
            "remote": addr(self.remote),
            "selectors": [s.describe() for s in self.selectors],
            "state": self.state.value,
            "created_at": self.created_at,
            "packets": self.packets,
            "bytes": self.bytes,
            "drops": self.drops.nonzero(),
            "lifetime": {k: v for k, v in vars(self.lifetime).items() if v is not None},
        }
        return d


class OutboundSA(_SA):
    """An SA for packets leaving: `protect`, `protect_payload`, `dummy`."""

    direction = "out"
    # where and how the I/O layer sends this SA's packets, set by it (lab.daemon's attach_route)
    peer: tuple[str, int]
    udp: bool
    ah: bool
    seal: Callable[[bytes], bytes]

    def __init__(
        self,
        spi: int,
        *,
        protocol: IpsecProto | int = IpsecProto.ESP,
        mode: Mode | str = Mode.TUNNEL,
        encr_id: int | None = None,
        encr_key: bytes = b"",
        integ_id: int = IntegId.NONE,
        integ_key: bytes = b"",
        local: Any = None,
        remote: Any = None,
        esn: bool = False,
        encap: UdpEncap | None = None,
        lifetime: Lifetime = NO_LIFETIME,
        now: float = 0.0,
        next_seq: int = 1,
        seq_rekey_margin: int = 1 << 24,
        iv_source: Callable[[int], bytes] | None = None,
        random: Callable[[int], bytes] = os.urandom,
        tfc_pad_to: int | None = None,
        ttl: int = 64,
        copy_dscp: bool = True,
        df: DfPolicy | str = DfPolicy.COPY,
        selectors: Iterable[Selector] = (),
        name: str = "",
        shared_drops: DropCounters | None = None,
    ) -> None:
        """`next_seq` is the sequence number of the first packet; `iv_source(seq)` gives IVs.

        The default IV is the 64-bit sequence number for AES-GCM, GMAC and ChaCha20 (they
        need unique IVs only: RFC 4106 §3.1, RFC 7634 §2) and random for AES-CBC (RFC 3602 §3).
        `random(n)` gives n random octets: AES-CBC IVs, the outer IPv4 ID, dummy packets.
        `seq_rekey_margin`: SEQ_REKEY is raised this many packets before the last one.
        """
        super().__init__(
            spi, protocol=protocol, mode=mode, encr_id=encr_id, encr_key=encr_key, integ_id=integ_id,
            integ_key=integ_key, local=local, remote=remote, esn=esn, encap=encap, lifetime=lifetime,
            now=now, selectors=selectors, name=name, shared_drops=shared_drops,
        )
        self.seq_max = SEQ_MAX_64 if self.esn else SEQ_MAX_32
        if next_seq < 1:
            raise EspConfigError("the first sequence number is 1 (RFC 4303 §3.3.3)")
        self.next_seq = next_seq
        self._rekey_at = max(1, self.seq_max - seq_rekey_margin)
        self._rekey_signalled = False
        self._seq_alarm = min(self._rekey_at, self.seq_max) - 1
        self.ttl = ttl
        self.copy_dscp = copy_dscp
        self.df = DfPolicy(df)
        self._random = random
        self._ident = int.from_bytes(random(2), "big")
        if tfc_pad_to is not None and (self.mode is not Mode.TUNNEL or self.protocol is not IpsecProto.ESP):
            raise EspConfigError("TFC padding needs ESP in tunnel mode (RFC 4303 §2.7)")
        self.tfc_pad_to = tfc_pad_to or 0
        if self._xform is not None:
            self._iv = self._iv_source(iv_source)
            self._align = self._xform.align
            self._xseal = self._xform.seal
        self._prepare_outer()
        if self.protocol is IpsecProto.AH:
            self._impl = self._ah_tunnel if self.mode is Mode.TUNNEL else self._ah_transport
        else:
            self._impl = self._esp_tunnel if self.mode is Mode.TUNNEL else self._esp_transport

    def _iv_source(self, source: Callable[[int], bytes] | None) -> Callable[[int], bytes]:
        size = self._xform.iv_size if self._xform is not None else 0  # AH: no IV
        if source is None:
            if size == 0:
                return lambda seq: b""
            if self.encr_id == EncrId.AES_CBC:
                random = self._random
                return lambda seq: random(16)
            return _U64.pack

        def checked(seq: int) -> bytes:
            iv = source(seq)
            if len(iv) != size:
                raise EspConfigError(f"iv_source gave {len(iv)} octets; {name_of(EncrId, self.encr_id or 0)} needs {size}")
            return iv

        return checked

    def move(self, local: str, remote: str) -> None:
        """New outer addresses (MOBIKE, RFC 4555 §3.5), for the datagrams protect() builds."""
        local_packed, remote_packed = pack_address(local), pack_address(remote)
        if len(local_packed) != len(remote_packed):
            raise EspConfigError("local and remote must be of the same IP version")
        self.local, self.remote = local_packed, remote_packed
        self._prepare_outer()

    def _prepare_outer(self) -> None:
        self._outer_proto = PROTO_UDP if self.encap is not None else int(self.protocol)
        if self.local is None or self.remote is None:
            self._outer_v = 0
            return
        self._outer_v = 4 if len(self.local) == 4 else 6
        if self._outer_v == 4:
            words = self.local + self.remote
            s = 0x4500 + (self.ttl << 8 | self._outer_proto)
            for i in range(0, 8, 2):
                s += words[i] << 8 | words[i + 1]
            self._hsum = s

    def _take_seq(self) -> int:
        seq = self.next_seq
        if seq > self._seq_alarm:
            self._seq_alarm_hit(seq)
        self.next_seq = seq + 1
        return seq

    def _seq_alarm_hit(self, seq: int) -> None:
        if seq > self.seq_max:
            # RFC 4303 §3.3.3: the counter must not cycle; a new SA is needed
            raise self._drop(DropReason.SEQ_EXHAUSTED)
        if not self._rekey_signalled and seq >= self._rekey_at:
            self._rekey_signalled = True
            self._emit(SaEventKind.SEQ_REKEY, "sequence")
        if seq == self.seq_max:
            self._emit(SaEventKind.SEQ_EXHAUSTED, "sequence")
            self._seq_alarm = self.seq_max
        else:
            self._seq_alarm = self.seq_max - 1

    @property
    def seq_exhausted(self) -> bool:
        return self.next_seq > self.seq_max

    def protect(self, packet: bytes) -> bytes:
        """The whole outer IP datagram for an IP packet: [IP][UDP]ESP... or [IP]AH..."""
        if self.state is SaState.HARD_EXPIRED:
            raise self._drop(DropReason.EXPIRED)
        return self._impl(packet, True)

    def protect_payload(self, packet: bytes) -> bytes:
        """ESP header onwards, for a UDP 4500 socket or a protocol-50 raw socket without IP_HDRINCL."""
        if self.protocol is IpsecProto.AH:
            raise EspConfigError("AH's ICV covers the IP header: send protect()'s whole datagram")
        if self.state is SaState.HARD_EXPIRED:
            raise self._drop(DropReason.EXPIRED)
        return self._impl(packet, False)

    def seal_payload(self, payload: bytes, next_header: int) -> bytes:
        """ESP header onwards around any payload with the given next header (no IP processing)."""
        if self.protocol is IpsecProto.AH:
            raise EspConfigError("seal_payload is for ESP")
        if self.state is SaState.HARD_EXPIRED:
            raise self._drop(DropReason.EXPIRED)
        esp = self._seal(payload, next_header, 0)
        self._account(len(payload))
        return esp

    def dummy_payload(self, size: int = 0) -> bytes:
        """A dummy ESP packet (next header 59, RFC 4303 §2.6), ESP header onwards."""
        if self.protocol is IpsecProto.AH:
            raise EspConfigError("dummy packets are an ESP feature")
        if self.state is SaState.HARD_EXPIRED:
            raise self._drop(DropReason.EXPIRED)
        return self._seal(self._random(size), PROTO_NONE, 0)

    def dummy(self, size: int = 0) -> bytes:
        """A dummy ESP packet as a whole datagram to `remote`."""
        if self.local is None or self.remote is None:
            raise EspConfigError("a dummy datagram needs local and remote addresses")
        return self._outer(self.dummy_payload(size), 0, False)

    def _seal(self, payload: bytes, nh: int, tfc: int) -> bytes:
        seq = self._take_seq()
        padlen = -(len(payload) + tfc + 2) % self._align
        trailer = _TRAILER[padlen][nh]
        if tfc:
            trailer = bytes(tfc) + trailer
        header = _ESP_HEADER.pack(self.spi, seq & 0xFFFFFFFF)
        return self._xseal(header, _U32.pack(seq >> 32) if self.esn else None, self._iv(seq), payload, trailer)

    def _inner_fields(self, packet: bytes) -> tuple[int, int, bool]:
        if len(packet) >= 20:
            b0 = packet[0]
            if b0 >> 4 == 4:
                return PROTO_IPIP, packet[1], bool(packet[6] & 0x40)
            if b0 >> 4 == 6 and len(packet) >= 40:
                return PROTO_IPV6, (b0 & 0x0F) << 4 | packet[1] >> 4, False
        raise self._drop(DropReason.MALFORMED, "not an IPv4/IPv6 packet")

    def _esp_tunnel(self, packet: bytes, full: bool) -> bytes:
        n = len(packet)
        v = packet[0] >> 4 if n >= 20 else 0
        if v == 4:
            nh = PROTO_IPIP
        elif v == 6 and n >= 40:
            nh = PROTO_IPV6
        else:
            raise self._drop(DropReason.MALFORMED, "not an IPv4/IPv6 packet")
        seq = self.next_seq
        if seq > self._seq_alarm:
            self._seq_alarm_hit(seq)
        self.next_seq = seq + 1
        if self.tfc_pad_to > n:
            tfc = self.tfc_pad_to - n
            trailer = bytes(tfc) + _TRAILER[-(self.tfc_pad_to + 2) % self._align][nh]
        else:
            trailer = _TRAILER[-(n + 2) % self._align][nh]
        esp = self._xseal(
            _ESP_HEADER.pack(self.spi, seq & 0xFFFFFFFF),
            _U32.pack(seq >> 32) if self.esn else None,
            self._iv(seq),
            packet,
            trailer,
        )
        self.packets += 1
        self.bytes += n
        if self.packets >= self._packet_mark or self.bytes >= self._byte_mark:
            self._crossed()
        if not full:
            return esp
        nh, tos, df = self._inner_fields(packet)
        return self._outer(esp, tos, df)

    def _outer(self, esp: bytes, tos: int, df: bool) -> bytes:
        if not self.copy_dscp:
            tos = 0
        encap = self.encap
        if self._outer_v == 4:
            if encap is not None:
                udp = UDP_HEADER.pack(encap.sport, encap.dport, 8 + len(esp), 0)
                total = 28 + len(esp)
            else:
                udp = b""
                total = 20 + len(esp)
            ident = self._ident = (self._ident + 1) & 0xFFFF
            policy = self.df
            frag = 0x4000 if (policy is DfPolicy.SET or (policy is DfPolicy.COPY and df)) else 0
            s = self._hsum + total + ident + tos + frag
            s = (s & 0xFFFF) + (s >> 16)
            s = (s & 0xFFFF) + (s >> 16)
            header = IPV4_HEADER.pack(0x45, tos, total, ident, frag, self.ttl, self._outer_proto, s ^ 0xFFFF,
                                      self.local, self.remote)
            return b"".join((header, udp, esp))
        if encap is not None:
            seg = UDP_HEADER.pack(encap.sport, encap.dport, 8 + len(esp), 0) + esp
            assert self.local is not None and self.remote is not None  # a tunnel has both (checked in __init__)
            c = udp6_checksum(self.local, self.remote, seg)
            seg = seg[:6] + _U16.pack(c) + esp
            header = IPV6_HEADER.pack(0x60000000 | tos << 20, len(seg), PROTO_UDP, self.ttl, self.local, self.remote)
            return header + seg
        header = IPV6_HEADER.pack(0x60000000 | tos << 20, len(esp), int(self.protocol), self.ttl, self.local, self.remote)
        return header + esp

    def _transport_split(self, packet: bytes) -> tuple[int, int, int, int]:
        """(version, offset of the protected part, offset of the next-header octet, next header)."""
        n = len(packet)
        v = packet[0] >> 4 if n else 0
        if v == 4 and n >= 20:
            ihl = (packet[0] & 0x0F) * 4
            if ihl < 20 or ihl > n:
                raise self._drop(DropReason.MALFORMED, "bad IPv4 header length")
            if packet[6] & 0x3F or packet[7]:
                # RFC 4303 §3.1.1, RFC 4302 §3.1.1: transport mode protects whole datagrams
                raise self._drop(DropReason.MALFORMED, "transport mode cannot protect a fragment")
            return 4, ihl, 9, packet[9]
        if v == 6 and n >= 40:
            try:
                nh_at, off, nh = ipv6_esp_split(packet)
            except MalformedPacket as exc:
                raise self._drop(DropReason.MALFORMED, str(exc)) from None
            return 6, off, nh_at, nh
        raise self._drop(DropReason.MALFORMED, "not an IPv4/IPv6 packet")

    def _esp_transport(self, packet: bytes, full: bool) -> bytes:
        v, off, nh_at, nh = self._transport_split(packet)
        esp = self._seal(packet[off:], nh, 0)
        self._account(len(packet))
        if not full:
            return esp
        header = bytearray(packet[:off])
        encap = self.encap
        if v == 4:
            if encap is not None:
                udp = UDP_HEADER.pack(encap.sport, encap.dport, 8 + len(esp), 0)
                return ipv4_fixup(header, off + 8 + len(esp), PROTO_UDP) + udp + esp
            return ipv4_fixup(header, off + len(esp), PROTO_ESP) + esp
        if encap is not None:
            seg = UDP_HEADER.pack(encap.sport, encap.dport, 8 + len(esp), 0) + esp
            c = udp6_checksum(bytes(header[8:24]), bytes(header[24:40]), seg)
            seg = seg[:6] + _U16.pack(c) + esp
            header[nh_at] = PROTO_UDP
        else:
            seg = esp
            header[nh_at] = PROTO_ESP
        header[4:6] = _U16.pack(off - 40 + len(seg))
        return bytes(header) + seg

    def _ah_fields(self, v: int) -> tuple[int, bytes]:
        icv = self.icv_size
        # RFC 4302 §2.6, §3.3.3.2.1: AH is a multiple of 32 bits (IPv4) or 64 bits (IPv6)
        align = 8 if v == 6 else 4
        length = 12 + icv + (-(12 + icv) % align)
        return length, bytes(length - 12)

    def _ah_icv(self, zeroed_header: bytes, ah_zero: bytes, payload: bytes, seq: int) -> bytes:
        h = self._mac.copy()
        h.update(zeroed_header)
        h.update(ah_zero)
        h.update(payload)
        if self.esn:
            # RFC 4302 §3.3.3.2: seq_hi is appended for the ICV only
            h.update(_U32.pack(seq >> 32))
        return h.finalize()[: self.icv_size]

    def _ah_tunnel(self, packet: bytes, full: bool) -> bytes:
        nh, tos, df = self._inner_fields(packet)
        seq = self._take_seq()
        v = self._outer_v
        ah_len, zero_icv = self._ah_fields(v)
        ah = _AH_HEADER.pack(nh, ah_len // 4 - 2, 0, self.spi, seq & 0xFFFFFFFF)
        outer = self._outer(ah + zero_icv + packet, tos, df)
        hlen = 20 if v == 4 else 40
        zeroed = _zero_ipv4_mutable(outer[:hlen]) if v == 4 else _zero_ipv6_mutable(outer[:hlen])
        icv = self._ah_icv(zeroed, ah + zero_icv, packet, seq)
        self._account(len(packet))
        return b"".join((outer[:hlen], ah, icv, zero_icv[len(icv):], packet))

    def _ah_transport(self, packet: bytes, full: bool) -> bytes:
        v, off, nh_at, nh = self._transport_split(packet)
        seq = self._take_seq()
        ah_len, zero_icv = self._ah_fields(v)
        ah = _AH_HEADER.pack(nh, ah_len // 4 - 2, 0, self.spi, seq & 0xFFFFFFFF)
        header = bytearray(packet[:off])
        payload = packet[off:]
        try:
            if v == 4:
                new_header = ipv4_fixup(header, len(packet) + ah_len, PROTO_AH)
                zeroed = _zero_ipv4_mutable(new_header)
            else:
                header[nh_at] = PROTO_AH
                header[4:6] = _U16.pack(len(packet) - 40 + ah_len)
                new_header = bytes(header)
                zeroed = _zero_ipv6_mutable(new_header)
        except MalformedPacket as exc:
            raise self._drop(DropReason.MALFORMED, str(exc)) from None
        icv = self._ah_icv(zeroed, ah + zero_icv, payload, seq)
        self._account(len(packet))
        return b"".join((new_header, ah, icv, zero_icv[len(icv):], payload))

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["next_seq"] = self.next_seq
        d["seq_exhausted"] = self.seq_exhausted
        d["tfc_pad_to"] = self.tfc_pad_to or None
        return d


class InboundSA(_SA):
    """An SA for packets arriving: `unprotect`, `unprotect_datagram`, `open_payload`."""

    direction = "in"

    def __init__(
        self,
        spi: int,
        *,
        protocol: IpsecProto | int = IpsecProto.ESP,
        mode: Mode | str = Mode.TUNNEL,
        encr_id: int | None = None,
        encr_key: bytes = b"",
        integ_id: int = IntegId.NONE,
        integ_key: bytes = b"",
        local: Any = None,
        remote: Any = None,
        esn: bool = False,
        encap: UdpEncap | None = None,
        lifetime: Lifetime = NO_LIFETIME,
        now: float = 0.0,
        replay_window: int = 64,
        highest_seq: int = 0,
        selectors: Iterable[Selector] = (),
        name: str = "",
        shared_drops: DropCounters | None = None,
        real_src: Any = None,
        real_dst: Any = None,
    ) -> None:
        """`replay_window` in packets (0 disables anti-replay; RFC 4303 §3.4.3 prefers 64).

        `highest_seq` places the window as if that number had been the highest seen
        (for an SA taken over mid-stream, or to replay published vectors).
        `local`/`remote` are this gateway's and the peer's addresses: in transport mode
        they form the rebuilt IP header when only the ESP part arrived (UDP 4500).
        `real_src`/`real_dst` (transport mode across a NAT): the addresses the peer put in the
        pseudo-header of its TCP/UDP checksums, i.e. its own and ours as it sees them; the
        checksums of arriving packets are fixed up to the addresses in their header
        (RFC 3948 §3.1.2; in IKEv2 they come from the traffic selectors, RFC 7296 §2.23.1).
        """
        super().__init__(
            spi, protocol=protocol, mode=mode, encr_id=encr_id, encr_key=encr_key, integ_id=integ_id,
            integ_key=integ_key, local=local, remote=remote, esn=esn, encap=encap, lifetime=lifetime,
            now=now, selectors=selectors, name=name, shared_drops=shared_drops,
        )
        try:
            self.window = ReplayWindow(replay_window, esn=self.esn, highest_seq=highest_seq)
        except ValueError as exc:
            raise EspConfigError(str(exc)) from None
        self.dummy_received = 0
        self.real_src = pack_address(real_src) if real_src is not None else None
        self.real_dst = pack_address(real_dst) if real_dst is not None else None
        if (self.real_src is not None or self.real_dst is not None) and self.mode is not Mode.TRANSPORT:
            raise EspConfigError("the checksum fix-up (real_src, real_dst) is for transport mode; a tunnel's inner "
                                 "header is not rewritten by a NAT")
        self._fixup = self.real_src is not None or self.real_dst is not None
        self.checksums_fixed = 0
        if self._xform is not None:
            self._xcheck = self._xform.check_length
            self._xopen = self._xform.open

    def unprotect(self, data: bytes) -> bytes:
        """The inner IP packet (tunnel) or the rebuilt original packet (transport).

        ESP: `data` is the ESP header onwards (UDP 4500 payload, protocol-50 raw socket
        without the IP header). AH: `data` is the whole IP datagram.
        """
        if self.protocol is IpsecProto.AH:
            return self._ah_in(data)
        return self._esp_in(data, None, 0)

    def unprotect_datagram(self, packet: bytes) -> bytes:
        """Like `unprotect`, from the whole outer datagram: IP [+ UDP 4500] + ESP, or IP + AH."""
        if self.protocol is IpsecProto.AH:
            return self._ah_in(packet)
        try:
            packet, v, off = self._outer_checks(packet)
            if v == 4:
                nh_at, proto = 9, packet[9]
            else:
                nh_at, off, proto = ipv6_find(packet, _ESP_OR_UDP)
        except MalformedPacket as exc:
            raise self._drop(DropReason.MALFORMED, str(exc)) from None
        if proto == PROTO_UDP:
            esp_at = off + 8
            if packet[esp_at : esp_at + 4] == b"\x00\x00\x00\x00":
                # RFC 3948 §2.2: a zero non-ESP marker means IKE, not ESP
                raise self._drop(DropReason.MALFORMED, "non-ESP marker: this is IKE")
        elif proto == PROTO_ESP:
            esp_at = off
        else:
            raise self._drop(DropReason.MALFORMED, f"protocol {proto} is neither ESP nor UDP")
        return self._esp_in(packet[esp_at:], packet[:off], nh_at)

    def open_payload(self, data: bytes) -> tuple[bytes, int]:
        """(payload, next header) of an ESP packet (header onwards), all checks done, no IP processing.

        The payload includes any TFC padding.
        """
        if self.protocol is IpsecProto.AH:
            raise EspConfigError("open_payload is for ESP")
        pt, end, nh = self._esp_open(data)
        self._account(end)
        return pt[:end], nh

    def _outer_checks(self, packet: bytes) -> tuple[bytes, int, int]:
        """(packet trimmed to its IP length, version, header length); fragments are refused."""
        n = len(packet)
        v = packet[0] >> 4 if n else 0
        if v == 4:
            ihl = (packet[0] & 0x0F) * 4
            if n < 20 or ihl < 20:
                raise MalformedPacket("IPv4 header truncated")
            total = _U16.unpack_from(packet, 2)[0]
            if total > n or total < ihl:
                raise MalformedPacket("IPv4 total length does not fit")
            if packet[6] & 0x3F or packet[7]:
                # RFC 4303 §3.4.1, RFC 4302 §3.4.1: fragments must be reassembled first
                raise MalformedPacket("IPv4 fragment")
            return (packet[:total] if total < n else packet), 4, ihl
        if v == 6:
            if n < 40:
                raise MalformedPacket("IPv6 header truncated")
            total = 40 + _U16.unpack_from(packet, 4)[0]
            if total > n:
                raise MalformedPacket("IPv6 payload length does not fit")
            return (packet[:total] if total < n else packet), 6, 40
        raise MalformedPacket("not an IPv4/IPv6 packet")

    def _check_seq(self, seq_lo: int) -> int:
        seq = self.window.check(seq_lo)
        if seq < 0:
            raise self._drop(DropReason.REPLAY if seq == REPLAY else DropReason.TOO_OLD)
        return seq

    def _deliver(self, packet: bytes) -> bytes:
        if not self.selectors:
            self.packets += 1
            self.bytes += len(packet)
            if self.packets >= self._packet_mark or self.bytes >= self._byte_mark:
                self._crossed()
            return packet
        try:
            ft = five_tuple(packet)
        except MalformedPacket as exc:
            raise self._drop(DropReason.MALFORMED, str(exc)) from None
        for s in self.selectors:
            if s.matches(ft, False):
                break
        else:
            # RFC 4301 §5.2 step 4: the inner packet must fit the SA's selectors
            raise self._drop(DropReason.SELECTOR_MISMATCH)
        self._account(len(packet))
        return packet

    def _esp_open(self, data: bytes) -> tuple[bytes, int, int]:
        if self.state is SaState.HARD_EXPIRED:
            raise self._drop(DropReason.EXPIRED)
        if not self._xcheck(len(data)):
            raise self._drop(DropReason.MALFORMED, "ESP packet length")
        window = self.window
        seq = window.check(_U32.unpack_from(data, 4)[0])
        if seq < 0:
            raise self._drop(DropReason.REPLAY if seq == REPLAY else DropReason.TOO_OLD)
        pt = self._xopen(data, _U32.pack(seq >> 32) if self.esn else None)
        if pt is None:
            raise self._drop(DropReason.AUTH_FAILED)
        window.accept(seq)
        padlen = pt[-2]
        end = len(pt) - 2 - padlen
        if end < 0 or (padlen and pt[end:-2] != _PAD[padlen]):
            # RFC 4303 §2.4: the receiver may check the pad bytes
            raise self._drop(DropReason.BAD_PADDING)
        return pt, end, pt[-1]

    def _esp_in(self, data: bytes, header: bytes | None, nh_at: int) -> bytes:
        pt, end, nh = self._esp_open(data)
        if nh == PROTO_NONE:
            # RFC 4303 §2.6: dummy packets are discarded silently
            self.dummy_received += 1
            raise self._drop(DropReason.DUMMY)
        if self.mode is Mode.TUNNEL:
            if nh == PROTO_IPIP:
                if end < 20 or pt[0] >> 4 != 4:
                    raise self._drop(DropReason.MALFORMED, "inner IPv4 header")
                length = pt[2] << 8 | pt[3]
                if length < 20 or length > end:
                    raise self._drop(DropReason.MALFORMED, "inner IPv4 total length")
            elif nh == PROTO_IPV6:
                if end < 40 or pt[0] >> 4 != 6:
                    raise self._drop(DropReason.MALFORMED, "inner IPv6 header")
                length = 40 + (pt[4] << 8 | pt[5])
                if length > end:
                    raise self._drop(DropReason.MALFORMED, "inner IPv6 payload length")
            else:
                raise self._drop(DropReason.BAD_NEXT_HEADER, f"next header {nh} in tunnel mode")
            # RFC 4303 §2.7: TFC padding ends where the inner IP length says
            return self._deliver(pt[:length])
        payload = pt[:end]
        if header is None:
            header = self._transport_header(len(payload), nh)
        elif header[0] >> 4 == 4:
            header = ipv4_fixup(bytearray(header), len(header) + end, nh)
        else:
            h = bytearray(header)
            h[nh_at] = nh
            h[4:6] = _U16.pack(len(header) - 40 + end)
            header = bytes(h)
        packet = header + payload
        if self._fixup:
            fixed = checksum_fixup(packet, self.real_src, self.real_dst)
            if fixed is not packet:
                self.checksums_fixed += 1
                packet = fixed
        return self._deliver(packet)

    def _transport_header(self, length: int, nh: int) -> bytes:
        src, dst = self.remote, self.local
        if src is None or dst is None:
            raise EspConfigError("transport mode from ESP-only input needs the SA's local and remote addresses")
        if len(src) == 4:
            total = 20 + length
            header = bytearray(IPV4_HEADER.pack(0x45, 0, total, 0, 0x4000, 64, nh, 0, src, dst))
            return ipv4_fixup(header, total, nh)
        return IPV6_HEADER.pack(0x60000000, length, nh, 64, src, dst)

    def _ah_in(self, packet: bytes) -> bytes:
        if self.state is SaState.HARD_EXPIRED:
            raise self._drop(DropReason.EXPIRED)
        try:
            packet, v, off = self._outer_checks(packet)
            if v == 4:
                nh_at = 9
                if packet[9] != PROTO_AH:
                    raise MalformedPacket("not an AH packet")
            else:
                nh_at, off, _ = ipv6_find(packet, _AH_ONLY)
            if off + 12 > len(packet):
                raise MalformedPacket("AH header truncated")
            nh, plen, _, spi, seq_lo = _AH_HEADER.unpack_from(packet, off)
            ah_len = (plen + 2) * 4
            if ah_len < 12 + self.icv_size or off + ah_len > len(packet):
                raise MalformedPacket("AH length")
            header = packet[:off]
            zeroed = _zero_ipv4_mutable(header) if v == 4 else _zero_ipv6_mutable(header)
        except MalformedPacket as exc:
            raise self._drop(DropReason.MALFORMED, str(exc)) from None
        seq = self._check_seq(seq_lo)
        h = self._mac.copy()
        h.update(zeroed)
        h.update(packet[off : off + 12])
        h.update(bytes(self.icv_size))
        # RFC 4302 §3.3.3.2.1: ICV padding is covered as sent
        h.update(packet[off + 12 + self.icv_size : off + ah_len])
        payload = packet[off + ah_len :]
        h.update(payload)
        if self.esn:
            h.update(_U32.pack(seq >> 32))
        icv = h.finalize()[: self.icv_size]
        if not compare_digest(icv, packet[off + 12 : off + 12 + self.icv_size]):
            raise self._drop(DropReason.AUTH_FAILED)
        self.window.accept(seq)
        if self.mode is Mode.TUNNEL:
            if nh == PROTO_IPIP and payload[:1] and payload[0] >> 4 == 4 and len(payload) >= 20:
                length = payload[2] << 8 | payload[3]
            elif nh == PROTO_IPV6 and payload[:1] and payload[0] >> 4 == 6 and len(payload) >= 40:
                length = 40 + (payload[4] << 8 | payload[5])
            elif nh in (PROTO_IPIP, PROTO_IPV6):
                raise self._drop(DropReason.MALFORMED, "inner IP header")
            else:
                raise self._drop(DropReason.BAD_NEXT_HEADER, f"next header {nh} in tunnel mode")
            if length > len(payload) or length < (20 if nh == PROTO_IPIP else 40):
                raise self._drop(DropReason.MALFORMED, "inner IP length")
            return self._deliver(payload[:length])
        if v == 4:
            header = ipv4_fixup(bytearray(header), len(header) + len(payload), nh)
        else:
            hb = bytearray(header)
            hb[nh_at] = nh
            hb[4:6] = _U16.pack(len(header) - 40 + len(payload))
            header = bytes(hb)
        return self._deliver(header + payload)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["replay_window"] = self.window.size
        d["highest_seq"] = self.window.top
        d["dummy_received"] = self.dummy_received
        if self._fixup:
            d["real_src"] = str(ipaddress.ip_address(self.real_src)) if self.real_src else None
            d["real_dst"] = str(ipaddress.ip_address(self.real_dst)) if self.real_dst else None
            d["checksums_fixed"] = self.checksums_fixed
        return d


__all__ = (
    "DfPolicy",
    "InboundSA",
    "IpsecProto",
    "Mode",
    "OutboundSA",
    "UdpEncap",
    "SEQ_MAX_32",
    "SEQ_MAX_64",
)
