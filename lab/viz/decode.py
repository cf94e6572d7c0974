"""List the IKE messages in a capture: one header line and the payload chain each.

Works on captures from any implementation: pcap or pcapng, Ethernet, Linux cooked or
raw IP, IPv4 and IPv6, IP fragments reassembled, IKE on UDP 500 and behind the non-ESP
marker on UDP 4500 (RFC 3948 §2.2), and IKE and ESP framed in TCP streams (RFC 9329: port 4500,
or any port where the stream starts with "IKETCP"; lab.viz.tcpstreams follows them).
"""
from __future__ import annotations

import ipaddress
import json
import struct
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lab.ike.const import ExchangeType, name_of
from lab.ike.errors import ParseError
from lab.ike.message import Datagram, Message, classify_udp
from lab.ike.payloads import SK, SKF, Payload, chain_names

from .tcpstreams import StreamFrame, TcpStreams


class CaptureError(Exception):
    """A capture file that cannot be read."""


@dataclass
class DecodedMessage:
    frame: int
    time: float
    src: str
    sport: int
    dst: str
    dport: int
    length: int
    exchange: int = 0
    exchange_name: str = ""
    is_initiator: bool = False
    is_response: bool = False
    message_id: int = 0
    spi_i: str = ""
    spi_r: str = ""
    payloads: list[str] = field(default_factory=list)
    error: str | None = None
    tcp: bool = False  # carried in a TCP stream (RFC 9329)

    def header_line(self) -> str:
        where = f"{_endpoint(self.src, self.sport)} -> {_endpoint(self.dst, self.dport)}" + (" TCP" if self.tcp else "")
        head = f"#{self.frame:<4} {self.time:10.6f}  {where}"
        if self.error is not None:
            return f"{head}  not a valid IKE message: {self.error}"
        role = "initiator" if self.is_initiator else "responder"
        kind = "response" if self.is_response else "request"
        return (f"{head}  {self.exchange_name} {role} {kind} mid={self.message_id} "
                f"spi_i={self.spi_i} spi_r={self.spi_r}")


@dataclass
class CaptureSummary:
    messages: list[DecodedMessage]
    esp_in_udp: int = 0
    keepalives: int = 0
    plain_esp: int = 0
    esp_in_tcp: int = 0
    tcp_streams: int = 0
    tcp_broken: int = 0  # places a stream could not be followed: a gap in the capture, bad framing, a mid-stream start


def _endpoint(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def _payload_names(message: Message) -> list[str]:
    names = chain_names(message.payloads, not message.is_response)
    last: Payload | None = message.payloads[-1] if message.payloads else None
    if isinstance(last, SK):
        names[-1] = f"SK({len(last.data)} octets)"
    elif isinstance(last, SKF):
        names[-1] = f"SKF({last.fragment_number}/{last.total_fragments}, {len(last.data)} octets)"
    return names


def decode_ike(data: bytes, **where) -> DecodedMessage:
    """Decode one IKE message (without a non-ESP marker); never raises for bad bytes."""
    decoded = DecodedMessage(length=len(data), **where)
    try:
        message = Message.parse(data)
    except ParseError as err:
        decoded.error = str(err)
        if len(data) >= 20:
            decoded.spi_i, decoded.spi_r = data[:8].hex(), data[8:16].hex()
        return decoded
    decoded.exchange = int(message.exchange)
    decoded.exchange_name = name_of(ExchangeType, message.exchange)
    decoded.is_initiator = message.is_initiator
    decoded.is_response = message.is_response
    decoded.message_id = message.message_id
    decoded.spi_i = message.spi_i.hex()
    decoded.spi_r = message.spi_r.hex()
    decoded.payloads = _payload_names(message)
    return decoded


# ---------------------------------------------------------------- reading captures

# pcap's link types whose frames this module unwraps itself (tcpdump's, the lab's taps):
# https://www.tcpdump.org/linktypes.html. Any other file (pcapng, another link type) is read by scapy.
LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_LINUX_SLL, LINKTYPE_IPV4, LINKTYPE_IPV6, \
    LINKTYPE_LINUX_SLL2 = 0, 1, 101, 113, 228, 229, 276
ETHERTYPE_IPV4, ETHERTYPE_IPV6 = 0x0800, 0x86DD
ETHERTYPE_VLAN = (0x8100, 0x88A8, 0x9100)   # IEEE 802.1Q tag, 802.1ad (QinQ) and its older number
PCAP_MAGIC = {b"\xd4\xc3\xb2\xa1": ("<", 6), b"\xa1\xb2\xc3\xd4": (">", 6),
              b"\x4d\x3c\xb2\xa1": ("<", 9), b"\xa1\xb2\x3c\x4d": (">", 9)}  # (byte order, digits of the fraction)


def _ip_of_frame(linktype: int, frame: bytes) -> bytes | None:
    """The IPv4 or IPv6 packet a frame of `linktype` carries (with whatever trails it), else None."""
    if linktype == LINKTYPE_ETHERNET:
        at, ethertype = 14, int.from_bytes(frame[12:14], "big") if len(frame) >= 14 else 0
        while ethertype in ETHERTYPE_VLAN and len(frame) >= at + 4:
            ethertype, at = int.from_bytes(frame[at + 2:at + 4], "big"), at + 4
    elif linktype == LINKTYPE_LINUX_SLL:
        at, ethertype = 16, int.from_bytes(frame[14:16], "big") if len(frame) >= 16 else 0
    elif linktype == LINKTYPE_LINUX_SLL2:
        at, ethertype = 20, int.from_bytes(frame[0:2], "big") if len(frame) >= 20 else 0
    elif linktype in (LINKTYPE_RAW, 12, 14, LINKTYPE_IPV4, LINKTYPE_IPV6):   # raw IP (12, 14 on some BSDs)
        version = frame[0] >> 4 if frame else 0
        return frame if version in (4, 6) else None
    elif linktype == LINKTYPE_NULL:   # a 4-octet address family in the writer's byte order
        family = int.from_bytes(frame[:4], "little") if len(frame) >= 4 else 0
        family = family if family < 0x10000 else int.from_bytes(frame[:4], "big")
        at, ethertype = 4, ETHERTYPE_IPV4 if family == 2 else ETHERTYPE_IPV6 if family in (10, 24, 28, 30) else 0
    else:
        raise ValueError(linktype)
    return frame[at:] if ethertype in (ETHERTYPE_IPV4, ETHERTYPE_IPV6) and len(frame) > at else None


def _pcap_records(path: Path) -> tuple[int, Iterator[tuple[float, bytes, int]]] | None:
    """(link type, (time, frame, octets on the wire) of each record) of a plain pcap file whose link
    type _ip_of_frame knows, else None (pcapng, another link type: scapy reads those)."""
    try:
        stream = open(path, "rb")
    except OSError as err:
        raise CaptureError(f"{path}: not a pcap or pcapng capture ({err})") from None
    head = stream.read(24)
    if len(head) < 24 or head[:4] not in PCAP_MAGIC:
        stream.close()
        return None
    order, digits = PCAP_MAGIC[head[:4]]
    # the link type in the low 16 bits, the FCS's length in the top 6 (pcap's file format, §4: LinkType)
    linktype = struct.unpack_from(order + "I", head, 20)[0] & 0x03FFFFFF
    try:
        _ip_of_frame(linktype, b"")
    except ValueError:
        stream.close()
        return None
    record, scale = struct.Struct(order + "IIII"), 10 ** digits

    def records() -> Iterator[tuple[float, bytes, int]]:
        with stream:
            while True:
                header = stream.read(16)
                if len(header) < 16:
                    return  # the end, or a record cut short by a tap that was stopped mid-write
                seconds, fraction, captured, wire = record.unpack(header)
                frame = stream.read(captured)  # cut short at the end of a file a tap left mid-write: what is there
                # the decimal time rounded once, as scapy's Decimal arithmetic rounds it
                stamp = float(f"{seconds}.{fraction:0{digits}d}") if fraction < scale else seconds + fraction / scale
                yield stamp, frame, wire
                if len(frame) < captured:
                    return
    return linktype, records()


def _read_frames(path: Path) -> Iterator[tuple[int, float, bytes | None]]:
    """(frame number, time, IP packet bytes or None) for every frame in a capture."""
    found = _pcap_records(path)
    if found is not None:
        linktype, records = found
        for number, (stamp, frame, _) in enumerate(records, start=1):
            yield number, stamp, _ip_of_frame(linktype, frame)
        return
    yield from _scapy_frames(path)


def _scapy_frames(path: Path) -> Iterator[tuple[int, float, bytes | None]]:
    """_read_frames for what _pcap_records does not read (pcapng, other link types): scapy's
    dissectors, about a millisecond a packet."""
    from scapy.error import Scapy_Exception
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6
    from scapy.utils import PcapReader

    try:
        reader = PcapReader(str(path))
    except (OSError, Scapy_Exception) as err:
        raise CaptureError(f"{path}: not a pcap or pcapng capture ({err})") from None
    with reader:
        for number, packet in enumerate(reader, start=1):
            layer = packet.getlayer(IP) or packet.getlayer(IPv6)
            yield number, float(packet.time), bytes(layer) if layer is not None else None


class _Reassembler:
    """IPv4 fragment reassembly (RFC 791), enough for IKE messages larger than the MTU."""

    def __init__(self) -> None:
        self.pending: dict[tuple, dict[int, bytes]] = {}
        self.total: dict[tuple, int] = {}
        self.frames: dict[tuple, dict[int, int]] = {}
        self.completed: list[int] = []  # frames of the datagram the last feed completed, in offset order

    def feed(self, packet: bytes, frame: int = 0) -> bytes | None:
        ihl = (packet[0] & 0x0F) * 4
        ident, flags_offset = struct.unpack_from("!HH", packet, 4)
        more = bool(flags_offset & 0x2000)
        offset = (flags_offset & 0x1FFF) * 8
        self.completed = []
        if not more and offset == 0:
            return packet
        key = (packet[12:16], packet[16:20], ident, packet[9])
        parts = self.pending.setdefault(key, {})
        parts[offset] = packet[ihl:]
        self.frames.setdefault(key, {})[offset] = frame
        if not more:
            self.total[key] = offset + len(packet) - ihl
        total = self.total.get(key)
        if total is None:
            return None
        payload = bytearray()
        while len(payload) < total:
            part = parts.get(len(payload))
            if part is None:
                return None
            payload += part
        del self.pending[key], self.total[key]
        self.completed = [frame for _, frame in sorted(self.frames.pop(key, {}).items())]
        header = bytearray(packet[:ihl])
        header[6:8] = b"\x00\x00"
        struct.pack_into("!H", header, 2, ihl + len(payload))
        return bytes(header) + bytes(payload[:total])


def _udp_of(packet: bytes) -> tuple[str, str, bytes] | None:
    """(src, dst, UDP datagram) of an IPv4 or IPv6 packet carrying UDP, else None."""
    version = packet[0] >> 4
    if version == 4 and len(packet) >= 20:
        ihl = (packet[0] & 0x0F) * 4
        if packet[9] != 17:
            return None
        return (str(ipaddress.IPv4Address(packet[12:16])), str(ipaddress.IPv4Address(packet[16:20])),
                packet[ihl:])
    if version == 6 and len(packet) >= 40 and packet[6] == 17:
        return (str(ipaddress.IPv6Address(packet[8:24])), str(ipaddress.IPv6Address(packet[24:40])),
                packet[40:])
    return None


def decode_capture(path: str | Path, ike_port: int = 500, natt_port: int = 4500) -> CaptureSummary:
    path = Path(path)
    if not path.exists():
        raise CaptureError(f"{path}: no such file")
    summary = CaptureSummary(messages=[])
    reassembler = _Reassembler()
    tcp = TcpStreams(natt_port)
    start: float | None = None
    for frame, stamp, packet in _read_frames(path):
        if start is None:
            start = stamp
        if packet is None or len(packet) < 20:
            continue
        if packet[0] >> 4 == 4:
            if packet[9] == 50:
                summary.plain_esp += 1
                continue
            packet = reassembler.feed(packet)
            if packet is None:
                continue
            if packet[9] == 6:
                _tcp_frames(summary, tcp.feed(packet, frame), stamp - start)
                continue
        udp = _udp_of(packet)
        if udp is None or len(udp[2]) < 8:
            continue
        src, dst, datagram = udp
        sport, dport, udp_length = struct.unpack_from("!HHH", datagram)
        payload = datagram[8:udp_length] if 8 <= udp_length <= len(datagram) else datagram[8:]
        if natt_port in (sport, dport):
            kind, payload = classify_udp(4500, payload)
        elif ike_port in (sport, dport):
            kind = Datagram.IKE
        else:
            continue
        if kind is Datagram.ESP:
            summary.esp_in_udp += 1
        elif kind is Datagram.KEEPALIVE:
            summary.keepalives += 1
        else:
            summary.messages.append(decode_ike(payload, frame=frame, time=stamp - start, src=src, sport=sport,
                                               dst=dst, dport=dport))
    _tcp_frames(summary, tcp.close(), None)
    summary.tcp_streams = tcp.stats["streams"] + tcp.stats["streams taken up mid-stream"]
    summary.tcp_broken = sum(n for what, n in tcp.stats.items() if what.startswith(("holes skipped", "framing errors",
                                                                                       "streams taken up mid-stream")))
    return summary


def _tcp_frames(summary: CaptureSummary, frames: list[StreamFrame], time: float | None) -> None:
    """The frames of RFC 9329 streams (lab.viz.tcpstreams) counted and their IKE messages decoded."""
    for item in frames:
        if item.kind == "ike":
            when = time if time is not None else (summary.messages[-1].time if summary.messages else 0.0)
            summary.messages.append(decode_ike(item.data, frame=item.frames[-1], time=when, src=item.src,
                                               sport=item.sport, dst=item.dst, dport=item.dport, tcp=True))
        elif item.kind == "esp":
            summary.esp_in_tcp += 1
        else:
            summary.keepalives += 1


def decode_pcap(path: str | Path) -> list[DecodedMessage]:
    """Every IKE message in the capture at `path`, in capture order."""
    return decode_capture(path).messages


def render_text(summary: CaptureSummary) -> Iterable[str]:
    for message in summary.messages:
        yield message.header_line()
        if message.error is None:
            yield "      " + " ".join(message.payloads)
    counts = [f"{len(summary.messages)} IKE messages"]
    if summary.esp_in_udp:
        counts.append(f"{summary.esp_in_udp} ESP-in-UDP packets")
    if summary.plain_esp:
        counts.append(f"{summary.plain_esp} ESP packets")
    if summary.tcp_streams:
        counts.append(f"{summary.tcp_streams} TCP stream(s) of IKE and ESP with {summary.esp_in_tcp} ESP-in-TCP packets"
                      + (f" ({summary.tcp_broken} places not followed: a gap, bad framing or a mid-stream start)"
                         if summary.tcp_broken else ""))
    if summary.keepalives:
        counts.append(f"{summary.keepalives} NAT-keepalives")
    bad = sum(1 for m in summary.messages if m.error is not None)
    if bad:
        counts.append(f"{bad} not valid IKE")
    yield ", ".join(counts)


def render_json(summary: CaptureSummary) -> Iterable[str]:
    for message in summary.messages:
        yield json.dumps(asdict(message))
