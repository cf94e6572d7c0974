"""Every packet of a capture annotated, decrypted where a run's keys allow.

    capture = analyze_capture("captures/nat-outside.pcap", keys=load_keys("keys"))
    for packet in capture.packets:
        print(packet.line())

IKE: exchange, initiator/responder, request/response, message ID, SPIs, the payload
chain, SK/SKF decrypted with lab.ike's own crypto (`ikev2_decryption_table`), fragments
of RFC 7383 reassembled, retransmissions recognised (the same message again). ESP: SPI,
sequence number, decrypted with lab.esp (`esp_sa`) to the inner packet, whose next header
tells the mode. IKE and ESP in TCP streams (RFC 9329, lab.viz.tcpstreams): each frame of a
stream is a Packet of its own (`tcp` says where it was), annotated and decrypted as on UDP.
AH: SPI, sequence number, the packet it covers. IP fragments reassembled and counted
(fragment n of m). `match_nat` pairs the packets of two captures taken on
either side of a NAT box, so that the address and port rewriting shows.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import ipaddress
import struct
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from lab.esp import EspDrop, InboundSA
from lab.ike import payloads as pl
from lab.ike.const import ExchangeType, NotifyType, ProtocolId, name_of
from lab.ike.errors import CryptoError, IntegrityError, ParseError
from lab.ike.message import Datagram, Message, classify_udp
from lab.ike.payloads import SK, SKF, chain_names, parse_chain
from lab.ike.protect import decrypt, decrypt_fragment

from .decode import CaptureError, _read_frames, _Reassembler
from .keys import KeyTables, load_keys
from .tcpstreams import StreamFrame, TcpStreams

PROTO_ICMP, PROTO_TCP, PROTO_UDP, PROTO_ESP, PROTO_AH, PROTO_ICMPV6 = 1, 6, 17, 50, 51, 58
PROTO_IPIP, PROTO_IPV6, PROTO_NONE = 4, 41, 59
PROTO_NAMES = {PROTO_ICMP: "ICMP", PROTO_TCP: "TCP", PROTO_UDP: "UDP", PROTO_ESP: "ESP", PROTO_AH: "AH",
               PROTO_ICMPV6: "ICMPv6", PROTO_IPIP: "IPv4", PROTO_IPV6: "IPv6", PROTO_NONE: "none"}
ICMP_TYPES = {0: "echo reply", 3: "unreachable", 8: "echo request", 11: "time exceeded"}
# strongSwan's short names for the notifies that fill every IKE_SA_INIT
NOTIFY_SHORT = {
    "NAT_DETECTION_SOURCE_IP": "NATD_S_IP", "NAT_DETECTION_DESTINATION_IP": "NATD_D_IP",
    "IKEV2_FRAGMENTATION_SUPPORTED": "FRAG_SUP", "SIGNATURE_HASH_ALGORITHMS": "HASH_ALG",
    "INTERMEDIATE_EXCHANGE_SUPPORTED": "IKE_INT_SUP",
    "CHILDLESS_IKEV2_SUPPORTED": "CHDLESS_SUP", "MULTIPLE_AUTH_SUPPORTED": "MULT_AUTH",
    "INITIAL_CONTACT": "INIT_CONTACT", "MOBIKE_SUPPORTED": "MOBIKE_SUP", "USE_TRANSPORT_MODE": "USE_TRANSP",
    "ESP_TFC_PADDING_NOT_SUPPORTED": "ESP_TFC_PAD_N", "NON_FIRST_FRAGMENTS_ALSO": "NON_FIRST_FRAG",
}


def short_names(names: Iterable[str]) -> list[str]:
    out = []
    for name in names:
        if name.startswith("N(") and name.endswith(")"):
            inner = name[2:-1]
            name = f"N({NOTIFY_SHORT.get(inner, inner)})"
        out.append(name)
    return out


@dataclass
class Inner:
    """The packet inside an ESP/AH packet (tunnel mode) or its transport payload."""

    protocol: int
    src: str
    dst: str
    length: int            # octets of the inner IP packet (tunnel) or of the transport payload
    sport: int = 0
    dport: int = 0
    summary: str = ""
    icmp_type: int | None = None
    icmp_code: int | None = None
    tcp_seq: int | None = None         # TCP: sequence number and payload octets (retransmissions repeat them)
    tcp_payload: int = 0
    df: bool | None = None             # IPv4 Don't Fragment (None: not an IPv4 packet)

    @property
    def protocol_name(self) -> str:
        return PROTO_NAMES.get(self.protocol, str(self.protocol))


@dataclass
class IkeInfo:
    exchange: int
    exchange_name: str
    initiator: bool            # sent by the original initiator of the IKE SA (I flag)
    response: bool
    message_id: int
    spi_i: str
    spi_r: str
    length: int                # the IKE message (header included)
    payloads: list[str]        # the chain as it travels (SK/SKF last)
    inner: list[str] | None = None      # the decrypted chain inside SK (or of the reassembled SKF set)
    inner_payloads: list = field(default_factory=list, repr=False)
    payload_objects: list = field(default_factory=list, repr=False)
    fragment: tuple[int, int] | None = None   # RFC 7383: SKF n of m
    reassembled: bool = False  # the last SKF fragment: `inner` is the whole message's
    fragment_verified: bool = False  # this SKF fragment decrypted and its ICV checked (RFC 7383 §2.6)
    decrypt_error: str | None = None
    key_generation: int | None = None  # RFC 9370 §2.2.2: which key set opened it (0: IKE_SA_INIT's), if several
    error: str | None = None   # the message does not parse

    @property
    def encrypted(self) -> bool:
        return bool(self.payloads) and self.payloads[-1].startswith(("SK", "SKF"))

    def chain(self, short: bool = True) -> str:
        """`SA KE Ni ...`, or `SK{ IDi AUTH ... }` when decrypted, `SK(96 octets)` when not."""
        names = short_names(self.payloads) if short else list(self.payloads)
        if self.encrypted:
            head = names[:-1]
            tag = "SKF" if self.fragment else "SK"
            if self.inner is not None:
                inner = short_names(self.inner) if short else self.inner
                body = f"{tag}{{ {' '.join(inner)} }}" if inner else f"{tag}{{ }}"
            elif self.fragment_verified:
                body = f"{tag}{{ ... }} (part of the message)"
            else:
                body = names[-1]
            names = head + [body]
        return " ".join(names)

    def child_spis(self) -> list[tuple[int, bytes]]:
        """(protocol, SPI) of every ESP/AH proposal in the (decrypted) SA payloads: the SPI
        the sender wants to receive on (RFC 7296 §3.3.1)."""
        out = []
        for payload in self.inner_payloads or self.payload_objects:
            if isinstance(payload, pl.SA):
                for proposal in payload.proposals[:1]:
                    if proposal.protocol_id in (ProtocolId.ESP, ProtocolId.AH) and len(proposal.spi) == 4:
                        out.append((int(proposal.protocol_id), proposal.spi))
        return out

    def ike_spi(self) -> bytes | None:
        """The new IKE SA's SPI its sender chose, in a CREATE_CHILD_SA rekeying the IKE SA (RFC 7296 §1.3.2)."""
        for payload in self.inner_payloads:
            if isinstance(payload, pl.SA):
                for proposal in payload.proposals[:1]:
                    if proposal.protocol_id == ProtocolId.IKE and len(proposal.spi) == 8:
                        return proposal.spi
        return None

    def deleted_spis(self) -> list[tuple[int, bytes]]:
        out = []
        for payload in self.inner_payloads:
            if isinstance(payload, pl.Delete):
                out += [(int(payload.protocol_id), spi) for spi in payload.spis]
                if payload.protocol_id == ProtocolId.IKE:
                    out.append((int(ProtocolId.IKE), b""))
        return out

    def rekeyed_spi(self) -> bytes | None:
        for payload in self.inner_payloads:
            if isinstance(payload, pl.Notify) and payload.notify_type == NotifyType.REKEY_SA:
                return payload.spi
        return None


@dataclass
class IpsecInfo:
    protocol: str              # "ESP" or "AH"
    spi: int
    seq: int
    encap: bool = False        # ESP in UDP (RFC 3948)
    tcp: bool = False          # ESP in a TCP stream (RFC 9329 §3.2)
    mode: str | None = None    # "tunnel" / "transport", known once decrypted (ESP) or from AH's next header
    next_header: int | None = None
    decrypted: bool = False
    icv_length: int | None = None
    error: str | None = None

    @property
    def spi_hex(self) -> str:
        return f"{self.spi:08x}"


@dataclass
class Packet:
    frame: int
    time: float                # pcap timestamp (Unix epoch seconds)
    src: str
    dst: str
    protocol: int
    length: int                # octets of this IP packet as captured (a fragment: its own size)
    sport: int = 0
    dport: int = 0
    kind: str = "other"        # ike, esp, ah, keepalive, ip-fragment, other
    data: bytes = field(default=b"", repr=False)   # the IP packet (reassembled for the last fragment)
    ip_fragment: tuple[int, int] | None = None     # IP fragment n of m
    fragment_frames: list[int] = field(default_factory=list)
    ike: IkeInfo | None = None
    ipsec: IpsecInfo | None = None
    inner: Inner | None = None
    summary: str = ""          # the clear-text packet (kind other)
    clear: Inner | None = None # what a clear-text packet (kind other) carries
    retransmission_of: int | None = None
    nat_peer: int | None = None            # the same packet's frame in the capture on the other side
    rewrite: str | None = None             # what the NAT box changed, e.g. "src 172.16.0.2:500 -> 198.51.100.1:500"
    # a frame of a TCP stream (RFC 9329): where it was; `data` is then the IP packet of the segment that
    # completed it (the frame is at tcp.offset in it when no other segment carried part of it)
    tcp: StreamFrame | None = field(default=None, repr=False)

    @property
    def encap(self) -> str:
        if self.tcp is not None:
            return "TCP stream (RFC 9329)" + (" + non-ESP marker" if self.kind == "ike" else "")
        if self.kind == "ike" and 4500 in (self.sport, self.dport):
            return "UDP 4500 + non-ESP marker"
        if self.ipsec is not None and self.ipsec.encap:
            return "ESP in UDP"
        return ""

    def endpoint(self, side: str) -> str:
        address, port = (self.src, self.sport) if side == "src" else (self.dst, self.dport)
        return f"{address}:{port}" if port else address

    def what(self) -> str:
        """One line on what the packet is."""
        if self.kind == "ip-fragment":
            n, m = self.ip_fragment or (0, 0)
            what = PROTO_NAMES.get(self.protocol, self.protocol)
            if not m:
                return f"IP fragment of a {what} datagram whose other fragments never arrived"
            return f"IP fragment {n}/{m} of a {what} datagram"
        if self.kind == "ike" and self.ike is not None:
            ike = self.ike
            if ike.error:
                return f"not a valid IKE message: {ike.error}"
            role = "initiator" if ike.initiator else "responder"
            head = f"{ike.exchange_name} {'response' if ike.response else 'request'} {ike.message_id} ({role})"
            if ike.fragment:
                head += f" fragment {ike.fragment[0]}/{ike.fragment[1]}"
            if self.tcp is not None:
                head += " in TCP"
            return f"{head} [ {ike.chain()} ]"
        if self.kind == "keepalive":
            return "NAT-keepalive in TCP (RFC 9329 §6.6)" if self.tcp is not None else "NAT-keepalive (RFC 3948 §2.3)"
        if self.ipsec is not None:
            sa = self.ipsec
            carrier = " in UDP" if sa.encap else (" in TCP" if sa.tcp else "")
            head = f"{sa.protocol}{carrier} SPI {sa.spi_hex} seq {sa.seq}"
            if sa.mode:
                head += f" {sa.mode}"
            if self.inner is not None:
                head += f": {self.inner.summary}"
            elif sa.error:
                head += f" ({sa.error})"
            return head
        return self.summary

    def line(self) -> str:
        where = f"{self.endpoint('src')} -> {self.endpoint('dst')}"
        extra = []
        if self.ip_fragment and self.kind != "ip-fragment":
            extra.append(f"IP fragment {self.ip_fragment[0]}/{self.ip_fragment[1]}, reassembled")
        if self.retransmission_of is not None:
            extra.append(f"retransmission of #{self.retransmission_of}")
        if self.rewrite:
            extra.append(f"NAT: {self.rewrite}")
        tail = f"  ({'; '.join(extra)})" if extra else ""
        return f"#{self.frame:<4} {where}  {self.length} B  {self.what()}{tail}"


@dataclass
class CaptureAnalysis:
    path: Path
    packets: list[Packet]
    keys: KeyTables
    problems: list[str] = field(default_factory=list)
    span: str = ""  # which part of the capture the packets are, when not all of it ("steps 6-9")
    tcp: Counter = field(default_factory=Counter)   # RFC 9329 streams: frames, holes, resynchronisations
    tcp_notes: list[str] = field(default_factory=list)   # where a stream could not be followed, in words
    # what the figures found in these packets, kept for the next figure that asks (lab.viz.vpns.vpn_packets);
    # not copied by dataclasses.replace, which makes another selection of packets
    memo: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def title(self) -> str:
        """The name a figure of this capture carries: its name, and which part of it."""
        return f"{self.name} ({self.span})" if self.span else self.name

    @property
    def start(self) -> float:
        return self.packets[0].time if self.packets else 0.0

    def ike(self) -> list[Packet]:
        return [p for p in self.packets if p.kind == "ike"]

    def ipsec(self) -> list[Packet]:
        return [p for p in self.packets if p.ipsec is not None]

    def frame(self, number: int) -> Packet:
        return self.packets[number - 1] if 0 < number <= len(self.packets) and \
            self.packets[number - 1].frame == number else next(p for p in self.packets if p.frame == number)


# ---------------------------------------------------------------- IP


@functools.lru_cache(maxsize=4096)
def _address(octets: bytes) -> str:
    """An IPv4 or IPv6 address as ipaddress writes it (a capture holds a few, again and again)."""
    return str(ipaddress.IPv4Address(octets) if len(octets) == 4 else ipaddress.IPv6Address(octets))


def _ip_fields(packet: bytes) -> tuple[int, str, str, int, int] | None:
    """(version, src, dst, protocol, header length) of an IPv4 or IPv6 packet."""
    if not packet:
        return None
    version = packet[0] >> 4
    if version == 4 and len(packet) >= 20:
        return 4, _address(packet[12:16]), _address(packet[16:20]), packet[9], (packet[0] & 0x0F) * 4
    if version == 6 and len(packet) >= 40:
        return 6, _address(packet[8:24]), _address(packet[24:40]), packet[6], 40
    return None


def _ip_payload(packet: bytes, header_length: int) -> bytes:
    if packet[0] >> 4 == 4:
        total = struct.unpack_from("!H", packet, 2)[0]
        return packet[header_length:total] if header_length <= total <= len(packet) else packet[header_length:]
    return packet[40:40 + struct.unpack_from("!H", packet, 4)[0]]


def _transport(protocol: int, payload: bytes, src: str, dst: str) -> Inner:
    """What a transport payload is (ports, ICMP type) between `src` and `dst`."""
    sport = dport = 0
    icmp_type = icmp_code = tcp_seq = None
    tcp_payload = 0
    words = ""
    if protocol in (PROTO_ICMP, PROTO_ICMPV6) and payload:
        icmp_type = payload[0]
        icmp_code = payload[1] if len(payload) > 1 else None
        words = ICMP_TYPES.get(icmp_type, f"type {icmp_type}") if protocol == PROTO_ICMP else f"type {icmp_type}"
        if protocol == PROTO_ICMP and icmp_type == 3 and icmp_code == 4:
            # RFC 1191 §4: the next-hop MTU in the low 16 bits of the second word
            mtu = struct.unpack_from("!H", payload, 6)[0] if len(payload) >= 8 else 0
            words = f"fragmentation needed (MTU {mtu})"
    elif protocol in (PROTO_TCP, PROTO_UDP) and len(payload) >= 4:
        sport, dport = struct.unpack_from("!HH", payload)
        words = f"{sport} > {dport}"
        if protocol == PROTO_TCP and len(payload) >= 13:
            tcp_seq = struct.unpack_from("!I", payload, 4)[0]
            tcp_payload = max(0, len(payload) - (payload[12] >> 4) * 4)
    name = PROTO_NAMES.get(protocol, f"protocol {protocol}")
    return Inner(protocol, src, dst, len(payload), sport, dport, " ".join(w for w in (name, words, src, ">", dst) if w),
                 icmp_type, icmp_code, tcp_seq, tcp_payload)


def describe_ip(packet: bytes) -> Inner | None:
    """What an IP packet is: protocol, addresses, ports, a few words."""
    fields = _ip_fields(packet)
    if fields is None:
        return None
    _, src, dst, protocol, ihl = fields
    payload = _ip_payload(packet, ihl)
    inner = _transport(protocol, payload, src, dst)
    inner.length = struct.unpack_from("!H", packet, 2)[0] if packet[0] >> 4 == 4 else 40 + len(payload)
    inner.df = bool(packet[6] & 0x40) if packet[0] >> 4 == 4 else None
    return inner


# ---------------------------------------------------------------- the analyser


class _Analyser:
    def __init__(self, keys: KeyTables, ike_port: int = 500, natt_port: int = 4500) -> None:
        self.keys = keys
        self.ike_port, self.natt_port = ike_port, natt_port
        self.seen_ike: dict[bytes, int] = {}
        self.skf_sets: dict[tuple, dict[int, bytes]] = {}
        self.skf_done: dict[bytes, tuple[list[str], list]] = {}
        self.esp_sas: dict[int, InboundSA] = {}
        self.problems: list[str] = []

    # -- IKE

    def ike(self, packet: Packet, data: bytes) -> None:
        digest = hashlib.sha256(data).digest()
        if digest in self.seen_ike:
            packet.retransmission_of = self.seen_ike[digest]
        else:
            self.seen_ike[digest] = packet.frame
        try:
            message = Message.parse(data)
        except ParseError as err:
            packet.ike = IkeInfo(0, "?", False, False, 0, data[:8].hex(), data[8:16].hex(), len(data), [],
                                 error=str(err))
            return
        names = chain_names(message.payloads, not message.is_response)
        last = message.payloads[-1] if message.payloads else None
        info = IkeInfo(int(message.exchange), name_of(ExchangeType, message.exchange), message.is_initiator,
                       message.is_response, message.message_id, message.spi_i.hex(), message.spi_r.hex(), len(data),
                       names, payload_objects=list(message.payloads))
        packet.ike = info
        if isinstance(last, SK):
            info.payloads[-1] = f"SK({len(last.data)} octets)"
        elif isinstance(last, SKF):
            info.payloads[-1] = f"SKF({last.fragment_number}/{last.total_fragments}, {len(last.data)} octets)"
            info.fragment = (last.fragment_number, last.total_fragments)
        if not isinstance(last, (SK, SKF)):
            return
        generations = self.keys.ike_sa_generations(message.spi_i, message.spi_r)
        if not generations:
            if self.keys:
                info.decrypt_error = "no keys for this IKE SA"
            return
        # RFC 9370 §2.2.2: after each IKE_INTERMEDIATE key exchange new keys protect the messages; the ones in
        # force for this message are those its ICV verifies under (newest first: most messages come late)
        for number in reversed(range(len(generations))):
            sa_keys = generations[number]
            cipher, direction = sa_keys.cipher(), sa_keys.direction(message.is_initiator)
            try:
                if isinstance(last, SK):
                    inner = decrypt(data, message, cipher, direction)
                    info.inner_payloads = inner
                    info.inner = chain_names(inner, not message.is_response)
                    info.key_generation = number if len(generations) > 1 else None
                    return
                piece = decrypt_fragment(data, message, cipher, direction)
            except IntegrityError as err:
                if number:
                    continue
                info.decrypt_error = f"ICV does not verify: {err}"
                return
            except (ParseError, CryptoError) as err:
                info.decrypt_error = str(err)
                return
            info.key_generation = number if len(generations) > 1 else None
            info.fragment_verified = True
            self._fragment(info, last, piece, message)
            return

    def _fragment(self, info: IkeInfo, skf: SKF, piece: bytes, message: Message) -> None:
        # RFC 7383 §2.6: fragments are verified alone, the message is whole when all have arrived
        key = (info.spi_i, info.spi_r, info.message_id, info.response, info.initiator, skf.total_fragments)
        pieces = self.skf_sets.setdefault(key, {})
        if skf.fragment_number == 1:
            pieces[0] = bytes([skf.inner_first])
        pieces[skf.fragment_number] = piece
        if all(n in pieces for n in range(skf.total_fragments + 1)):
            plaintext = b"".join(pieces[n] for n in range(1, skf.total_fragments + 1))
            del self.skf_sets[key]
            try:
                inner = parse_chain(plaintext, pieces[0][0], 0)
            except ParseError as err:
                info.decrypt_error = f"reassembled fragments do not parse: {err}"
                return
            info.inner_payloads = inner
            info.inner = chain_names(inner, not message.is_response)
            info.reassembled = True

    # -- ESP and AH

    def esp(self, packet: Packet, esp: bytes, encap: bool) -> None:
        if len(esp) < 8:
            packet.summary = "ESP packet shorter than its header"
            return
        spi, seq = struct.unpack_from("!II", esp)
        info = IpsecInfo("ESP", spi, seq, encap=encap)
        packet.kind, packet.ipsec = "esp", info
        sa_keys = self.keys.esp_sa(spi, packet.src, packet.dst)
        if sa_keys is None:
            if self.keys:
                info.error = "no keys for this SPI"
            return
        sa = self.esp_sas.get(spi)
        if sa is None:
            sa = self.esp_sas[spi] = sa_keys.inbound_sa()
        info.icv_length = sa.icv_size
        try:
            payload, next_header = sa.open_payload(esp)
        except EspDrop as err:
            info.error = f"not decrypted: {err.reason.value if hasattr(err, 'reason') else err}"
            return
        info.decrypted, info.next_header = True, next_header
        if next_header in (PROTO_IPIP, PROTO_IPV6):
            # RFC 4303 §2.3: an IP packet as next header is tunnel mode
            info.mode = "tunnel"
            packet.inner = describe_ip(payload)
        elif next_header == PROTO_NONE:
            info.mode = None
            packet.inner = Inner(PROTO_NONE, packet.src, packet.dst, len(payload), summary="dummy packet (RFC 4303 §2.6)")
        else:
            info.mode = "transport"
            packet.inner = _transport(next_header, payload, packet.src, packet.dst)

    def ah(self, packet: Packet, payload: bytes) -> None:
        if len(payload) < 12:
            packet.summary = "AH packet shorter than its header"
            return
        next_header, length_words, _, spi, seq = struct.unpack_from("!BBHII", payload)
        ah_length = (length_words + 2) * 4
        info = IpsecInfo("AH", spi, seq, next_header=next_header, icv_length=ah_length - 12)
        packet.kind, packet.ipsec = "ah", info
        rest = payload[ah_length:]
        if next_header in (PROTO_IPIP, PROTO_IPV6):
            info.mode = "tunnel"
            packet.inner = describe_ip(rest)
        else:
            info.mode = "transport"
            packet.inner = _transport(next_header, rest, packet.src, packet.dst)

    # -- one IP packet

    def stream_frame(self, packet: Packet, item: StreamFrame) -> None:
        """One frame of an RFC 9329 stream, `packet` its own (the segment's addresses and ports)."""
        packet.tcp = item
        if item.kind == "ike":
            packet.kind = "ike"
            self.ike(packet, item.data)
        elif item.kind == "esp":
            self.esp(packet, item.data, False)
            if packet.ipsec is not None:
                packet.ipsec.tcp = True
        else:
            packet.kind = "keepalive"

    def packet(self, packet: Packet, data: bytes) -> None:
        fields = _ip_fields(data)
        if fields is None:
            packet.summary = "not IP"
            return
        _, _, _, protocol, ihl = fields
        payload = _ip_payload(data, ihl)
        if protocol == PROTO_ESP:
            self.esp(packet, payload, False)
            return
        if protocol == PROTO_AH:
            self.ah(packet, payload)
            return
        if protocol == PROTO_UDP and len(payload) >= 8:
            sport, dport, udp_length = struct.unpack_from("!HHH", payload)
            packet.sport, packet.dport = sport, dport
            body = payload[8:udp_length] if 8 <= udp_length <= len(payload) else payload[8:]
            if self.natt_port in (sport, dport):
                kind, body = classify_udp(4500, body)
            elif self.ike_port in (sport, dport):
                kind = Datagram.IKE
            else:
                kind = None
            if kind is Datagram.IKE:
                packet.kind = "ike"
                self.ike(packet, body)
                return
            if kind is Datagram.KEEPALIVE:
                packet.kind = "keepalive"
                return
            if kind is Datagram.ESP:
                self.esp(packet, body, True)
                return
        packet.clear = describe_ip(data)
        if packet.clear is not None:
            packet.summary = packet.clear.summary
            packet.sport, packet.dport = packet.clear.sport, packet.clear.dport


class PacketAnalyser:
    """One packet at a time, in capture order (a file read whole, or a live tap): IP
    fragments reassembled, IKE and ESP annotated and decrypted with `keys` (which may be
    replaced while packets flow, when new key tables appear)."""

    def __init__(self, keys: KeyTables | None = None, ike_port: int = 500, natt_port: int = 4500) -> None:
        self.analyser = _Analyser(keys if keys is not None else KeyTables(), ike_port, natt_port)
        self.reassembler = _Reassembler()
        self.packets: list[Packet] = []
        self.keep = True  # False: do not keep every packet (a live tap that runs for hours)
        self._recent: dict[int, Packet] = {}
        self.streams = TcpStreams(natt_port)

    @property
    def keys(self) -> KeyTables:
        return self.analyser.keys

    @keys.setter
    def keys(self, keys: KeyTables) -> None:
        self.analyser.keys = keys

    def add(self, frame: int, stamp: float, data: bytes | None) -> Packet:
        fields = _ip_fields(data) if data is not None else None
        if data is None or fields is None:
            packet = Packet(frame, stamp, "", "", 0, 0, kind="other", summary="not an IP packet")
            self._keep(packet)
            return packet
        _, src, dst, protocol, _ = fields
        length = struct.unpack_from("!H", data, 2)[0] if data[0] >> 4 == 4 else len(data)
        packet = Packet(frame, stamp, src, dst, protocol, min(length, len(data)) or len(data), data=data)
        self._keep(packet)
        if data[0] >> 4 == 4:
            whole = self.reassembler.feed(data, frame)
            members = self.reassembler.completed
            if whole is None:
                packet.kind = "ip-fragment"
                return packet
            if members:
                for n, member in enumerate(members, start=1):
                    earlier = self._recent.get(member)
                    if earlier is not None:
                        earlier.ip_fragment = (n, len(members))
                        earlier.fragment_frames = members
                packet.data = whole
                data = whole
        if protocol == PROTO_TCP:
            frames = self.streams.feed(data, frame)
            self.analyser.packet(packet, data)
            clear = packet.clear
            if clear is not None and clear.tcp_payload and (src, clear.sport, dst, clear.dport) in self.streams.directions:
                packet.summary += " (part of a frame of an RFC 9329 stream of IKE and ESP)"
            self._stream_frames(frames)
            return packet
        self.analyser.packet(packet, data)
        return packet

    def _stream_frames(self, frames: list[StreamFrame]) -> None:
        """Each frame of an RFC 9329 stream made a Packet: the packet of the segment that completed it,
        or a Packet of the same frame number after it when that segment completed several frames."""
        for item in frames:
            segment = self._recent.get(item.frames[-1])
            if segment is None:
                continue
            if segment.tcp is None:
                target = segment
                target.summary, target.clear = "", None
            else:
                target = dataclasses.replace(segment, kind="other", ike=None, ipsec=None, inner=None, tcp=None,
                                             retransmission_of=None, summary="", clear=None)
                if self.keep:
                    self.packets.append(target)
            self.analyser.stream_frame(target, item)

    def finish(self) -> None:
        """The capture ended: frames held behind a hole in a stream (lab.viz.tcpstreams)."""
        self._stream_frames(self.streams.close())

    def _keep(self, packet: Packet) -> None:
        if self.keep:
            self.packets.append(packet)
        self._recent[packet.frame] = packet
        if len(self._recent) > 4096:
            for frame in sorted(self._recent)[:2048]:
                del self._recent[frame]

    @property
    def problems(self) -> list[str]:
        return self.analyser.problems + self.keys.problems


_SHARED: dict[tuple, CaptureAnalysis] | None = None   # while shared_analyses() is in force


@contextlib.contextmanager
def shared_analyses() -> Iterator[None]:
    """Within it, analyze_capture reads each capture once: the figures, report.html, the narration
    and the audit of a run folder each ask for every capture, and a large one takes seconds. Each
    caller still gets packets of its own (shallow copies) to annotate, as if it had read the file."""
    global _SHARED
    outer, _SHARED = _SHARED, {} if _SHARED is None else _SHARED
    try:
        yield
    finally:
        _SHARED = outer


def _shared_key(path: Path, keys: KeyTables, ike_port: int, natt_port: int) -> tuple | None:
    """The same file unchanged, read with the same key tables (loaded from the same folder)."""
    if keys.folder is None and keys:
        return None
    stat = path.stat()
    return (str(path.resolve()), stat.st_size, stat.st_mtime_ns, ike_port, natt_port,
            str(keys.folder.resolve()) if keys.folder is not None else None,
            tuple(sorted(keys.ike)), tuple(sorted(keys.esp)), len(keys.problems))


def _copy(analysis: CaptureAnalysis) -> CaptureAnalysis:
    packets = []
    for packet in analysis.packets:
        twin = object.__new__(Packet)
        twin.__dict__.update(packet.__dict__)
        packets.append(twin)
    return CaptureAnalysis(analysis.path, packets, analysis.keys, list(analysis.problems), analysis.span,
                           Counter(analysis.tcp), list(analysis.tcp_notes))


def analyze_capture(path: str | Path, keys: KeyTables | str | Path | None = None, ike_port: int = 500,
                    natt_port: int = 4500) -> CaptureAnalysis:
    """Every packet of the capture at `path`, annotated (and decrypted with `keys`)."""
    path = Path(path)
    if not path.exists():
        raise CaptureError(f"{path}: no such file")
    if not isinstance(keys, KeyTables):
        keys = load_keys(keys)
    shared = _SHARED
    key = _shared_key(path, keys, ike_port, natt_port) if shared is not None else None
    if shared is not None and key is not None and key in shared:
        return _copy(shared[key])
    analysis = _analyze(path, keys, ike_port, natt_port)
    if shared is not None and key is not None:
        shared[key] = _copy(analysis)
    return analysis


def _analyze(path: Path, keys: KeyTables, ike_port: int, natt_port: int) -> CaptureAnalysis:
    analyser = PacketAnalyser(keys, ike_port, natt_port)
    for frame, stamp, data in _read_frames(path):
        analyser.add(frame, stamp, data)
    analyser.finish()
    packets = sorted(analyser.packets, key=lambda p: p.frame)   # a stream's frames after their segment's
    for packet in packets:
        if packet.kind == "ip-fragment" and packet.ip_fragment is None:
            packet.ip_fragment = (0, 0)  # never completed
    return CaptureAnalysis(path, packets, keys, analyser.problems, tcp=analyser.streams.stats,
                           tcp_notes=analyser.streams.notes)


# ---------------------------------------------------------------- both sides of a NAT box


@dataclass
class NatPair:
    inside: Packet
    outside: Packet

    @property
    def outbound(self) -> bool:
        """From the inside to the outside (the inside packet's source was rewritten)."""
        return self.inside.src != self.outside.src or self.inside.sport != self.outside.sport

    def rewrite(self) -> str:
        parts = []
        if (self.inside.src, self.inside.sport) != (self.outside.src, self.outside.sport):
            parts.append(f"src {self.inside.endpoint('src')} -> {self.outside.endpoint('src')}")
        if (self.inside.dst, self.inside.dport) != (self.outside.dst, self.outside.dport):
            parts.append(f"dst {self.outside.endpoint('dst')} -> {self.inside.endpoint('dst')}")
        return ", ".join(parts) or "unchanged"


def fingerprint(packet: Packet) -> bytes | None:
    """What a NAT box leaves alone: the UDP payload, the ESP/AH packet, else IP ID and payload."""
    data = packet.data
    fields = _ip_fields(data)
    if fields is None or packet.kind == "ip-fragment":
        return None
    _, _, _, protocol, ihl = fields
    payload = _ip_payload(data, ihl)
    if packet.tcp is not None:   # a frame of an RFC 9329 stream: the frame, whatever the segments
        return b"t" + hashlib.sha256(packet.tcp.data).digest()
    if protocol == PROTO_UDP:
        return b"u" + hashlib.sha256(payload[8:]).digest()
    if protocol in (PROTO_ESP, PROTO_AH):
        return b"e" + hashlib.sha256(payload[:64] if protocol == PROTO_AH else payload).digest()
    ident = data[4:6] if data[0] >> 4 == 4 else b""
    return b"o" + ident + bytes([protocol]) + hashlib.sha256(payload[8:]).digest()


def match_nat(inside: CaptureAnalysis, outside: CaptureAnalysis, window: float = 2.0) -> list[NatPair]:
    """Pair each packet seen inside a NAT box with the same packet seen outside (closest in
    time, within `window` seconds), and note the rewrite on both."""
    waiting: dict[bytes, list[Packet]] = {}
    for packet in inside.packets:
        key = fingerprint(packet)
        if key is not None:
            waiting.setdefault(key, []).append(packet)
    pairs = []
    for packet in outside.packets:
        key = fingerprint(packet)
        candidates = waiting.get(key or b"", [])
        best = min(candidates, key=lambda p: abs(p.time - packet.time), default=None)
        if best is None or abs(best.time - packet.time) > window:
            continue
        candidates.remove(best)
        pair = NatPair(best, packet)
        pairs.append(pair)
        best.nat_peer, packet.nat_peer = packet.frame, best.frame
        best.rewrite = packet.rewrite = pair.rewrite()
    pairs.sort(key=lambda p: min(p.inside.time, p.outside.time))
    return pairs


__all__ = ["CaptureAnalysis", "CaptureError", "IkeInfo", "Inner", "IpsecInfo", "NatPair", "Packet", "PacketAnalyser",
           "analyze_capture", "describe_ip", "fingerprint", "match_nat", "shared_analyses", "short_names"]
