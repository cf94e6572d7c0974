"""The alternatives to IPsec on the wire: WireGuard's and OpenVPN's packets found in a capture,
each cut into its fields with their offsets, for the ladder, the header layouts and the MTU
figure. One `VpnFormat` per protocol in `FORMATS`; a third (a TLS VPN, ...) plugs in with
`register()`: its ports, how it is framed, `parse()` and the overhead arithmetic.

    for found in vpn_packets(analyze_capture("captures/nat-outside.pcap")):
        print(found.packet.frame, found.format.name, found.message.label)

WireGuard: the formats of the WireGuard paper (Donenfeld, NDSS 2017, §5.4) and
https://www.wireguard.com/protocol/. OpenVPN: its wire format as OpenVPN 2.6 sends it
(ssl_pkt.h, crypto.c; "OpenVPN protocol" in its source's doc/), without tls-auth or tls-crypt
(the lab's configurations use neither). Nothing here decrypts: neither keeps keys an
observer could use, so an observer sees what these functions see.
"""
from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

from .analysis import PROTO_TCP, PROTO_UDP, CaptureAnalysis, Packet
from .style import OKABE_ITO


@dataclass
class Field:
    """One field of a VPN message: offsets within the message (its first octet is 0)."""

    name: str                  # what the figure writes: "receiver index"
    start: int
    end: int
    value: str = ""            # what an observer reads in it ("0x947a79ab"), "" for opaque octets
    kind: str = "header"       # header, encrypted, tag, opaque (a colour of the layout)
    tshark: str = ""           # tshark's field that dissects the same octets ("wg.receiver")

    @property
    def length(self) -> int:
        return self.end - self.start


@dataclass
class VpnMessage:
    label: str                 # "Handshake Initiation", "P_CONTROL_V1"
    handshake: bool            # an arrow of the ladder (True) or data (a band)
    length: int                # octets of the message (UDP payload, or the TCP frame without its length)
    fields: list[Field]
    session: str = ""          # what a band groups by: "receiver 0x947a79ab", "peer id 0"
    counter: int | None = None # the packet counter an observer reads (WireGuard's counter, OpenVPN's packet id)
    detail: str = ""           # the ladder's line under the arrow
    ciphertext: int | None = None   # octets of the encrypted inner packet (with padding), data only
    keepalive: bool = False    # a data message with nothing inside (WireGuard: 0 octets before the tag)


@dataclass
class VpnFormat:
    """One VPN protocol: where it is found and how its messages are cut."""

    name: str                  # "WireGuard"
    key: str                   # "wireguard": file names, registry
    color: str
    transport: str             # "udp" or "tcp"
    ports: tuple[int, ...]
    tcp_length_prefix: bool = False    # each message after a 2-octet length (OpenVPN over TCP)
    tshark_decode_as: tuple[str, ...] = ()  # what tshark must be told to dissect it (-d ...)
    pads: bool = False         # pads the inner packet: its size is not on the wire
    tshark_proto: str = ""     # tshark's protocol (the message's whole span: "wg")
    tshark_rest: str = ""      # tshark's field over the data message's octets it does not cut further
    tshark_length: str = ""    # tshark's field for the 2-octet length over TCP

    def parse(self, payload: bytes) -> VpnMessage | None:
        raise NotImplementedError

    def payload_size(self, inner: int) -> tuple[int, int]:
        """(smallest, largest) octets of the message carrying an inner packet of `inner` octets."""
        raise NotImplementedError

    mtu: int | None = None     # the tunnel interface's MTU: no larger inner packet is sent

    def outer_headers(self) -> int:
        """Octets of IP and transport header around each message (IPv4, no options)."""
        return 20 + (8 if self.transport == "udp" else TCP_HEADER + 2 * self.tcp_length_prefix)

    def wire_size(self, inner: int) -> tuple[int, int]:
        low, high = self.payload_size(inner)
        return low + self.outer_headers(), high + self.outer_headers()


# Linux's TCP header with the timestamp option (RFC 7323 §3), as every segment of an
# established connection between two Linux hosts carries it: 20 + 12
TCP_HEADER = 32


# ---------------------------------------------------------------- WireGuard

WG_TYPES = {1: "Handshake Initiation", 2: "Handshake Response", 3: "Cookie Reply", 4: "Transport Data"}
WG_SIZES = {1: 148, 2: 92, 3: 64}
WG_TAG = 16   # Poly1305


def _le32(data: bytes, at: int) -> str:
    return f"0x{struct.unpack_from('<I', data, at)[0]:08x}"


class WireGuard(VpnFormat):
    def __init__(self) -> None:
        # mtu: wireguard-go's default interface MTU (device.DefaultMTU), as the lab's configurations
        # leave it: 1500 less 40 (IPv6), 8 (UDP) and 32 (WireGuard), so that it passes over IPv6 too
        super().__init__("WireGuard", "wireguard", OKABE_ITO["vermillion"], "udp", (51820,), pads=True,
                         tshark_proto="wg", tshark_rest="wg.encrypted_packet", mtu=1420)

    def parse(self, payload: bytes) -> VpnMessage | None:
        if len(payload) < 4 or payload[0] not in WG_TYPES or payload[1:4] != b"\0\0\0":
            return None
        kind = payload[0]
        head = [Field("type", 0, 1, str(kind), tshark="wg.type"), Field("reserved", 1, 4, tshark="wg.reserved")]
        if kind in WG_SIZES and len(payload) != WG_SIZES[kind]:
            return None
        if kind == 1:   # protocol: "First Message: Initiator to Responder"
            fields = head + [Field("sender index", 4, 8, _le32(payload, 4), tshark="wg.sender"),
                             Field("ephemeral", 8, 40, "", "opaque", "wg.ephemeral"),
                             Field("static (encrypted)", 40, 88, "", "encrypted", "wg.encrypted_static"),
                             Field("timestamp (encrypted)", 88, 116, "", "encrypted", "wg.encrypted_timestamp"),
                             Field("mac1", 116, 132, "", "tag", "wg.mac1"), Field("mac2", 132, 148, "", "tag", "wg.mac2")]
            return VpnMessage("Handshake Initiation", True, len(payload), fields,
                              detail=f"sender {_le32(payload, 4)}, ephemeral key, static key and timestamp encrypted")
        if kind == 2:   # "Second Message: Responder to Initiator"
            fields = head + [Field("sender index", 4, 8, _le32(payload, 4), tshark="wg.sender"),
                             Field("receiver index", 8, 12, _le32(payload, 8), tshark="wg.receiver"),
                             Field("ephemeral", 12, 44, "", "opaque", "wg.ephemeral"),
                             Field("empty (encrypted)", 44, 60, "", "encrypted", "wg.encrypted_empty"),
                             Field("mac1", 60, 76, "", "tag", "wg.mac1"), Field("mac2", 76, 92, "", "tag", "wg.mac2")]
            return VpnMessage("Handshake Response", True, len(payload), fields,
                              detail=f"sender {_le32(payload, 4)}, receiver {_le32(payload, 8)}, ephemeral key")
        if kind == 3:   # "Cookie MACs" (under load)
            fields = head + [Field("receiver index", 4, 8, _le32(payload, 4), tshark="wg.receiver"),
                             Field("nonce", 8, 32, "", "opaque", "wg.nonce"),
                             Field("cookie (encrypted)", 32, 64, "", "encrypted", "wg.encrypted_cookie")]
            return VpnMessage("Cookie Reply", True, len(payload), fields,
                              detail=f"receiver {_le32(payload, 4)}: under load, prove your address first")
        if len(payload) < 16 + WG_TAG:
            return None   # "Subsequent Messages: Transport Data Messages"
        counter = struct.unpack_from("<Q", payload, 8)[0]
        inner = len(payload) - 16 - WG_TAG
        fields = head + [Field("receiver index", 4, 8, _le32(payload, 4), tshark="wg.receiver"),
                         Field("counter", 8, 16, str(counter), tshark="wg.counter")]
        if inner:
            fields.append(Field("inner packet + padding (encrypted)", 16, 16 + inner, "", "encrypted"))
        fields.append(Field("tag", 16 + inner, len(payload), "", "tag"))
        return VpnMessage("Keepalive" if not inner else "Transport Data", False, len(payload), fields,
                          session=f"receiver {_le32(payload, 4)}", counter=counter, ciphertext=inner,
                          keepalive=not inner)

    def padded(self, inner: int) -> int:
        """The inner packet padded to a multiple of 16 (paper §5.4.6), but not beyond the interface's
        MTU (wireguard-go's calculatePaddingSize): a packet of the MTU's size is not padded."""
        return min(-(-inner // 16) * 16, max(self.mtu or inner, inner))

    def payload_size(self, inner: int) -> tuple[int, int]:
        return 16 + self.padded(inner) + WG_TAG, 16 + self.padded(inner) + WG_TAG


# ---------------------------------------------------------------- OpenVPN

OPENVPN_OPCODES = {
    1: "P_CONTROL_HARD_RESET_CLIENT_V1", 2: "P_CONTROL_HARD_RESET_SERVER_V1", 3: "P_CONTROL_SOFT_RESET_V1",
    4: "P_CONTROL_V1", 5: "P_ACK_V1", 6: "P_DATA_V1", 7: "P_CONTROL_HARD_RESET_CLIENT_V2",
    8: "P_CONTROL_HARD_RESET_SERVER_V2", 9: "P_DATA_V2", 10: "P_CONTROL_HARD_RESET_CLIENT_V3",
    11: "P_CONTROL_WKC_V1",
}
OPENVPN_TAG = 16   # AES-GCM (data-ciphers AES-256-GCM)
TLS_TYPES = {20: "ChangeCipherSpec", 21: "Alert", 22: "Handshake", 23: "ApplicationData"}
TLS_HANDSHAKES = {1: "ClientHello", 2: "ServerHello", 4: "NewSessionTicket", 11: "Certificate",
                  12: "ServerKeyExchange", 13: "CertificateRequest", 14: "ServerHelloDone", 16: "ClientKeyExchange",
                  20: "Finished"}


class OpenVpn(VpnFormat):
    def __init__(self, transport: str = "udp") -> None:
        tcp = transport == "tcp"
        super().__init__("OpenVPN over TCP" if tcp else "OpenVPN", "openvpn-tcp" if tcp else "openvpn",
                         OKABE_ITO["reddish purple"] if tcp else OKABE_ITO["bluish green"], transport,
                         (443,) if tcp else (1194,), tcp_length_prefix=tcp,
                         tshark_decode_as=("tcp.port==443,openvpn",) if tcp else (), tshark_proto="openvpn",
                         tshark_rest="openvpn.data",
                         tshark_length="openvpn.plen" if tcp else "")

    def parse(self, payload: bytes) -> VpnMessage | None:
        if not payload:
            return None
        opcode, key_id = payload[0] >> 3, payload[0] & 7
        name = OPENVPN_OPCODES.get(opcode)
        if name is None:
            return None
        head = [Field("opcode", 0, 1, f"{opcode} ({name})", tshark="openvpn.opcode"),
                Field("key id", 0, 1, str(key_id), tshark="openvpn.keyid")]
        if opcode in (6, 9):
            return self._data(payload, opcode, key_id, head)
        at = 9
        if len(payload) < 10:
            return None
        session = payload[1:9].hex()
        fields = head + [Field("session id", 1, 9, "0x" + session, tshark="openvpn.sessionid"),
                         Field("ACKs", 9, 10, str(payload[9]), tshark="openvpn.mpidarraylength")]
        acks = payload[9]
        at = 10
        ids = []
        for _ in range(acks):
            if len(payload) < at + 4:
                return None
            ids.append(struct.unpack_from("!I", payload, at)[0])
            fields.append(Field("ACK", at, at + 4, str(ids[-1]), tshark="openvpn.mpidarrayelement"))
            at += 4
        if acks:
            if len(payload) < at + 8:
                return None
            fields.append(Field("remote session id", at, at + 8, "0x" + payload[at:at + 8].hex(),
                                tshark="openvpn.rsessionid"))
            at += 8
        packet_id = None
        if opcode != 5:     # P_ACK_V1 carries no packet id of its own
            if len(payload) < at + 4:
                return None
            packet_id = struct.unpack_from("!I", payload, at)[0]
            fields.append(Field("packet id", at, at + 4, str(packet_id), tshark="openvpn.mpid"))
            at += 4
        if at < len(payload):
            # tshark dissects the TLS records where they start a record, else shows them as data
            fields.append(Field("TLS records", at, len(payload), "", "opaque"))
        detail = [f"session {session[:8]}"]
        if packet_id is not None:
            detail.append(f"packet id {packet_id}")
        if ids:
            detail.append("ACK " + ",".join(map(str, ids)))
        if at < len(payload):
            detail.append(f"TLS {len(payload) - at} octets")
        return VpnMessage(name, True, len(payload), fields, counter=packet_id, detail=", ".join(detail))

    def _data(self, payload: bytes, opcode: int, key_id: int, fields: list[Field]) -> VpnMessage | None:
        at = 1
        session = f"key id {key_id}"
        if opcode == 9:
            if len(payload) < 4:
                return None
            peer = int.from_bytes(payload[1:4], "big")
            fields.append(Field("peer id", 1, 4, str(peer), tshark="openvpn.peerid"))
            session, at = f"peer id {peer}", 4
        if len(payload) < at + 4 + OPENVPN_TAG:
            return None
        # crypto.c, openvpn_encrypt_aead: packet id, then the tag, then the ciphertext; GCM pads nothing
        packet_id = struct.unpack_from("!I", payload, at)[0]
        # tshark dissects these three as one (openvpn.data): the test checks they fill it
        fields += [Field("packet id", at, at + 4, str(packet_id)), Field("tag", at + 4, at + 4 + OPENVPN_TAG, "", "tag"),
                   Field("inner packet (encrypted)", at + 4 + OPENVPN_TAG, len(payload), "", "encrypted")]
        return VpnMessage(OPENVPN_OPCODES[opcode], False, len(payload), fields, session=session, counter=packet_id,
                          ciphertext=len(payload) - at - 4 - OPENVPN_TAG)

    def payload_size(self, inner: int) -> tuple[int, int]:
        return 4 + 4 + OPENVPN_TAG + inner, 4 + 4 + OPENVPN_TAG + inner


# the formats the figures know, in the order they are drawn; a third one is added by register()
FORMATS: list[VpnFormat] = [WireGuard(), OpenVpn("udp"), OpenVpn("tcp")]


def register(fmt: VpnFormat) -> None:
    """Add a VPN format (after the ones there); its key must be new."""
    if any(f.key == fmt.key for f in FORMATS):
        raise ValueError(f"a VPN format {fmt.key!r} is already registered")
    FORMATS.append(fmt)


# ---------------------------------------------------------------- finding them in a capture


@dataclass
class VpnPacket:
    """A VPN message in a captured packet."""

    packet: Packet
    format: VpnFormat
    message: VpnMessage
    offset: int | None         # where the message starts in packet.data (None: it spans TCP segments)
    frames: list[int] = field(default_factory=list)   # the TCP segments it came in (TCP only)

    @property
    def src(self) -> str:
        return self.packet.src

    @property
    def dst(self) -> str:
        return self.packet.dst


def ip_transport(packet: Packet) -> tuple[int, int, int, int] | None:
    """(protocol, sport, dport, offset of the payload) of an IPv4 UDP or TCP packet."""
    data = packet.data
    if len(data) < 20 or data[0] >> 4 != 4:
        return None
    ihl = (data[0] & 0x0F) * 4
    total = min(struct.unpack_from("!H", data, 2)[0], len(data))
    if struct.unpack_from("!H", data, 6)[0] & 0x3FFF:
        return None  # an IP fragment
    if data[9] == PROTO_UDP and total >= ihl + 8:
        sport, dport = struct.unpack_from("!HH", data, ihl)
        return PROTO_UDP, sport, dport, ihl + 8
    if data[9] == PROTO_TCP and total >= ihl + 20:
        sport, dport = struct.unpack_from("!HH", data, ihl)
        return PROTO_TCP, sport, dport, ihl + (data[ihl + 12] >> 4) * 4
    return None


class _Stream:
    """One direction of a TCP connection, followed from its SYN, cut at the 2-octet lengths."""

    def __init__(self, next_seq: int) -> None:
        self.next_seq = next_seq
        self.buffer = b""
        self.frames: list[tuple[int, int]] = []   # (frame, offset of the buffer's first octet in it) per octet run
        self.broken = False


def vpn_packets(capture: CaptureAnalysis, formats: Iterable[VpnFormat] | None = None) -> list[VpnPacket]:
    """Every message of the registered formats in the capture, in capture order."""
    formats = list(FORMATS if formats is None else formats)
    found: list[VpnPacket] = []
    streams: dict[tuple, _Stream] = {}
    for packet in capture.packets:
        transport = ip_transport(packet)
        if transport is None:
            continue
        protocol, sport, dport, at = transport
        data = packet.data
        total = min(struct.unpack_from("!H", data, 2)[0], len(data))
        for fmt in formats:
            if (fmt.transport == "udp") != (protocol == PROTO_UDP) or not ({sport, dport} & set(fmt.ports)):
                continue
            if protocol == PROTO_UDP:
                message = fmt.parse(data[at:total])
                if message is not None:
                    found.append(VpnPacket(packet, fmt, message, at, [packet.frame]))
                break
            ihl = (data[0] & 0x0F) * 4
            seq, flags = struct.unpack_from("!I", data, ihl + 4)[0], data[ihl + 13]
            key = (packet.src, sport, packet.dst, dport)
            if flags & 0x02:   # SYN: the stream's data begins at seq + 1
                streams[key] = _Stream((seq + 1) & 0xFFFFFFFF)
                break
            stream = streams.get(key)
            segment = data[at:total]
            if stream is None or stream.broken or not segment:
                break
            behind = (stream.next_seq - seq) & 0xFFFFFFFF
            if behind and behind < 1 << 31:     # a retransmission: only what is new counts
                segment, at = segment[behind:], at + behind
                if not segment:
                    break
            elif seq != stream.next_seq:        # a gap: the capture lost a segment
                stream.broken = True
                break
            stream.next_seq = (stream.next_seq + len(segment)) & 0xFFFFFFFF
            start_in_buffer = len(stream.buffer)
            stream.buffer += segment
            stream.frames.append((packet.frame, start_in_buffer))
            while len(stream.buffer) >= 2:
                length = struct.unpack_from("!H", stream.buffer)[0]
                if len(stream.buffer) < 2 + length:
                    break
                message = fmt.parse(stream.buffer[2:2 + length])
                # within this segment when it started here: its offset in the IP packet
                offset = at + 2 - start_in_buffer if start_in_buffer == 0 else None
                frames = sorted({f for f, s in stream.frames if s < 2 + length} | {packet.frame})
                if message is not None:
                    found.append(VpnPacket(packet, fmt, message, offset, frames))
                stream.buffer = stream.buffer[2 + length:]
                at += 2 + length - start_in_buffer
                start_in_buffer = 0
                stream.frames = [(f, s - 2 - length) for f, s in stream.frames if s >= 2 + length] \
                    if stream.buffer else []
                if stream.buffer and not stream.frames:
                    stream.frames = [(packet.frame, 0)]
            break
    return found


def formats_in(found: list[VpnPacket]) -> list[VpnFormat]:
    """The formats present, in FORMATS' order."""
    keys = {f.format.key for f in found}
    return [f for f in FORMATS if f.key in keys]


def handshake_before_data(found: list[VpnPacket], fmt: VpnFormat) -> list[VpnPacket]:
    """The messages of `fmt` before its first data message that carries a packet."""
    out = []
    for item in found:
        if item.format.key != fmt.key:
            continue
        if not item.message.handshake and not item.message.keepalive:
            break
        out.append(item)
    return out


__all__ = ["FORMATS", "Field", "OpenVpn", "VpnFormat", "VpnMessage", "VpnPacket", "WireGuard", "formats_in",
           "handshake_before_data", "ip_transport", "register", "vpn_packets"]
