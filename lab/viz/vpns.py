"""The alternatives to IPsec on the wire: WireGuard's, OpenVPN's and OpenConnect's packets found
in a capture, each cut into its fields with their offsets, for the ladder, the header layouts and
the MTU figure. One `VpnFormat` per protocol in `FORMATS`; another one plugs in with `register()`:
its ports, how it is framed, `parse()` (or `parse_flow()`, when a message depends on what came
before it) and the overhead arithmetic.

    for found in vpn_packets(analyze_capture("captures/nat-outside.pcap")):
        print(found.packet.frame, found.format.name, found.message.label)

WireGuard: the formats of the WireGuard paper (Donenfeld, NDSS 2017, §5.4) and
https://www.wireguard.com/protocol/. OpenVPN: its wire format as OpenVPN 2.6 sends it
(ssl_pkt.h, crypto.c; "OpenVPN protocol" in its source's doc/), without tls-auth or tls-crypt
(the lab's configurations use neither). OpenConnect: TLS records on TCP 443 (RFC 8446 §5, RFC
5246 §6.2) and DTLS 1.2 records on UDP 443 (RFC 6347 §4.1), AnyConnect's CSTP and DTLS headers
inside them (draft-mavrogiannopoulos-openconnect-03). Two formats may share a TCP port (OpenVPN
and TLS on 443): a connection's first octets choose (`VpnFormat.claims`). Nothing here decrypts:
none of them keeps keys an observer could use, so an observer sees what these functions see.
"""
from __future__ import annotations

import copy
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

from .analysis import PROTO_TCP, PROTO_UDP, CaptureAnalysis, Packet
from .style import COLORS, OKABE_ITO


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
    negotiated: tuple[int, str] | None = None   # a ServerHello's (version, AEAD) of the records after it


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

    def parse_flow(self, payload: bytes, flow: dict, from_server: bool) -> VpnMessage | None:
        """parse() for a format whose messages depend on what came before in the same flow (both
        directions of one UDP or TCP flow share `flow`): TLS's records after the handshake."""
        return self.parse(payload)

    def claims(self, start: bytes) -> bool:
        """Over TCP: is a connection whose first octets are `start` this format's? (Two formats
        can share a port: OpenVPN and HTTPS on TCP 443.)"""
        return True

    def next_message(self, buffer: bytes) -> tuple[int, int] | None:
        """Over TCP: (start, end) of the next whole message in the stream's `buffer` (end: the
        octets it takes), None until all of it has come."""
        if len(buffer) < 2:
            return None
        length = struct.unpack_from("!H", buffer)[0]
        return (2, 2 + length) if len(buffer) >= 2 + length else None

    def configured(self, found: list[VpnPacket]) -> VpnFormat:
        """The format as the captures' handshakes set it up (the cipher a TLS handshake chose);
        itself when nothing is negotiated in the open."""
        return self

    def payload_size(self, inner: int) -> tuple[int, int]:
        """(smallest, largest) octets of the message carrying an inner packet of `inner` octets."""
        raise NotImplementedError

    mtu: int | None = None     # the tunnel interface's MTU: no larger inner packet is sent
    algorithm: str = ""        # the cipher of its data packets, as the MTU figure names its row

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
                         tshark_proto="wg", tshark_rest="wg.encrypted_packet", mtu=1420,
                         algorithm="ChaCha20-Poly1305")

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
                         tshark_length="openvpn.plen" if tcp else "", algorithm="AES-256-GCM")

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

    def claims(self, start: bytes) -> bool:
        # over TCP: a 2-octet length, then an opcode (a TLS record starts 0x16 0x03); IKE and ESP in
        # TCP start with "IKETCP" (RFC 9329 §3), whose "E" reads as opcode 8 after a length of 18763
        return (len(start) >= 3 and start[2] >> 3 in OPENVPN_OPCODES and not _tls_start(start)
                and not start.startswith(b"IKETCP"))


# ---------------------------------------------------------------- OpenConnect: TLS and DTLS

# AnyConnect's framing inside the records (draft-mavrogiannopoulos-openconnect-03 §2.2; openconnect's
# cstp.c and dtls.c): over TLS each packet follows an 8-octet CSTP header ("STF", 1, length, type,
# 0); over DTLS a 1-octet packet type. Both are encrypted: an observer sees only the record around them.
CSTP_HEADER = 8
DTLS_PACKET_TYPE = 1
TLS_VERSIONS = {0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2", 0x0304: "TLS 1.3", 0xFEFF: "DTLS 1.0",
                0xFEFD: "DTLS 1.2", 0x0100: "DTLS 0.9"}
HANDSHAKE_NAMES = {**TLS_HANDSHAKES, 3: "HelloVerifyRequest", 8: "EncryptedExtensions", 15: "CertificateVerify"}
# cipher suite -> (its name, the AEAD that protects records); IANA's TLS Cipher Suites registry
SUITES = {
    0x1301: ("TLS_AES_128_GCM_SHA256", "AES-128-GCM"), 0x1302: ("TLS_AES_256_GCM_SHA384", "AES-256-GCM"),
    0x1303: ("TLS_CHACHA20_POLY1305_SHA256", "ChaCha20-Poly1305"), 0x1304: ("TLS_AES_128_CCM_SHA256", "AES-128-CCM"),
    0x009C: ("TLS_RSA_WITH_AES_128_GCM_SHA256", "AES-128-GCM"), 0x009D: ("TLS_RSA_WITH_AES_256_GCM_SHA384", "AES-256-GCM"),
    0x00A8: ("TLS_PSK_WITH_AES_128_GCM_SHA256", "AES-128-GCM"), 0x00A9: ("TLS_PSK_WITH_AES_256_GCM_SHA384", "AES-256-GCM"),
    0xC02B: ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "AES-128-GCM"),
    0xC02C: ("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "AES-256-GCM"),
    0xC02F: ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "AES-128-GCM"),
    0xC030: ("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "AES-256-GCM"),
    0xCCA8: ("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "ChaCha20-Poly1305"),
    0xCCA9: ("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "ChaCha20-Poly1305"),
    0xCCAB: ("TLS_PSK_WITH_CHACHA20_POLY1305_SHA256", "ChaCha20-Poly1305"),
    0xCCAC: ("TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256", "ChaCha20-Poly1305"),
    0xD001: ("TLS_ECDHE_PSK_WITH_AES_128_GCM_SHA256", "AES-128-GCM"),
    0xD002: ("TLS_ECDHE_PSK_WITH_AES_256_GCM_SHA384", "AES-256-GCM"),
}
AEAD_TAG = 16
# the TLS records of the login (HTTPS: the form posts and CONNECT) an observer cannot tell from the
# tunnel's; the ladder draws them as arrows until the tunnel's first empty CSTP packet (a DPD or
# keepalive: nothing but the CSTP header) or this many, whichever comes first
HTTP_RECORDS = 16


def _u16(data: bytes, at: int) -> int:
    return struct.unpack_from("!H", data, at)[0]


def _u24(data: bytes, at: int) -> int:
    return int.from_bytes(data[at:at + 3], "big")


def _tls_start(data: bytes) -> bool:
    """A TLS handshake record (RFC 8446 §5.1): content type 22, legacy version 3.x."""
    return len(data) >= 3 and data[0] == 22 and data[1] == 3


def explicit_nonce(aead: str, version: int) -> int:
    """Octets of explicit nonce before each record's ciphertext: 8 for AES-GCM and AES-CCM in TLS and
    DTLS 1.2 (RFC 5288 §3, RFC 6655 §3), none for ChaCha20-Poly1305 (RFC 7905 §2) or in TLS 1.3
    (RFC 8446 §5.3)."""
    return 0 if version == 0x0304 or aead.startswith("ChaCha20") else 8


class _Records(VpnFormat):
    """What OpenConnect's TLS and DTLS share: records, the handshake in clear, the AEAD the
    ServerHello chose, AnyConnect's header inside each data record."""

    dtls = False
    version = 0x0303              # the records' protection until a ServerHello says otherwise
    aead = "AES-256-GCM"
    negotiated_here = False       # version and aead from a ServerHello of the captures (configured)

    @property
    def prefix(self) -> str:
        return "dtls" if self.dtls else "tls"

    def _header(self) -> int:
        return 13 if self.dtls else 5   # RFC 6347 §4.1 (type, version, epoch, sequence number, length); RFC 8446 §5.1

    def _inside(self) -> int:
        return DTLS_PACKET_TYPE if self.dtls else CSTP_HEADER

    def payload_size(self, inner: int) -> tuple[int, int]:
        # TLS 1.3 adds the inner content type (1 octet) to the plaintext (RFC 8446 §5.2)
        size = self._header() + explicit_nonce(self.aead, self.version) + self._inside() + inner \
            + (self.version == 0x0304) + AEAD_TAG
        return size, size

    def configured(self, found: list[VpnPacket]) -> VpnFormat:
        for item in found:
            if item.format.key == self.key and item.message.negotiated:
                version, aead = item.message.negotiated
                out = copy.copy(self)
                out.version, out.aead, out.algorithm = version, aead, aead
                out.negotiated_here = True
                out.name = f"{self.name} ({TLS_VERSIONS.get(version, hex(version))})" if not self.dtls else self.name
                return out
        return self

    def _handshake(self, data: bytes, at: int, end: int, flow: dict, fields: list[Field], labels: list[str],
                   details: list[str], from_server: bool) -> dict:
        """The handshake messages of one record in clear (RFC 8446 §4; DTLS: RFC 6347 §4.2.2, a
        12-octet header). A message that goes on in the next record is left uncut (tshark joins it)."""
        p = at
        negotiated: dict = {}
        hlen_header = 12 if self.dtls else 4
        pre = self.prefix
        while p + hlen_header <= end:
            kind, length = data[p], _u24(data, p + 1)
            if self.dtls and (_u24(data, p + 6) != 0 or _u24(data, p + 9) != length):
                labels.append("Handshake fragment")
                break
            if p + hlen_header + length > end:
                labels.append("Handshake (continues)")
                break
            name = HANDSHAKE_NAMES.get(kind, f"handshake {kind}")
            fields += [Field("handshake type", p, p + 1, f"{kind} ({name})", tshark=f"{pre}.handshake.type"),
                       Field("handshake length", p + 1, p + 4, str(length), tshark=f"{pre}.handshake.length")]
            if self.dtls:
                fields.append(Field("message seq", p + 4, p + 6, str(_u16(data, p + 4)),
                                    tshark="dtls.handshake.message_seq"))
            body = p + hlen_header
            if kind in (1, 2):
                negotiated = self._hello(data, body, body + length, kind, flow, fields, details) or negotiated
            elif kind == 11 and length >= 3:
                count, q = 0, body + 3
                while q + 3 <= body + length:
                    q += 3 + _u24(data, q)
                    count += 1
                details.append(f"{count} certificate{'s' if count != 1 else ''} in clear")
            labels.append(name)
            p = body + length
        return negotiated

    def _hello(self, data: bytes, at: int, end: int, kind: int, flow: dict, fields: list[Field],
               details: list[str]) -> dict:
        """ClientHello: the server name (SNI) an observer reads; ServerHello: the suite and version chosen."""
        pre = self.prefix
        p = at + 2 + 32
        if p >= end:
            return {}
        p += 1 + data[p]                                # session id
        if kind == 1 and self.dtls:
            p += 1 + data[p]                            # the cookie (RFC 6347 §4.2.1)
        if kind == 1:
            p += 2 + _u16(data, p)                      # cipher suites
            p += 1 + data[p]                            # compression methods
        else:
            suite = _u16(data, p)
            fields.append(Field("cipher suite", p, p + 2, f"0x{suite:04x}", tshark=f"{pre}.handshake.ciphersuite"))
            flow["suite"] = suite
            flow["version"] = _u16(data, at)
            details.append(SUITES.get(suite, (f"suite 0x{suite:04x}", ""))[0])
            p += 2 + 1
        if p + 2 <= end:
            q, stop = p + 2, min(end, p + 2 + _u16(data, p))
            while q + 4 <= stop:
                ext, length = _u16(data, q), _u16(data, q + 2)
                if ext == 0 and kind == 1 and length >= 5:          # server_name (RFC 6066 §3)
                    size = _u16(data, q + 7)
                    name = data[q + 9:q + 9 + size].decode("ascii", "replace")
                    fields.append(Field("server name (SNI)", q + 9, q + 9 + size, name,
                                        tshark=f"{pre}.handshake.extensions_server_name"))
                    details.append(f"SNI {name}")
                elif ext == 43 and kind == 2 and length == 2:       # supported_versions (RFC 8446 §4.2.1)
                    flow["version"] = _u16(data, q + 4)
                    fields.append(Field("supported version", q + 4, q + 6, f"0x{flow['version']:04x}",
                                        tshark=f"{pre}.handshake.extensions.supported_version"))
                q += 4 + length
        if kind == 1 and not any(f.name == "server name (SNI)" for f in fields):
            details.append("no server name (SNI)")
        if kind == 2:
            version = flow["version"]
            details.append(TLS_VERSIONS.get(version, hex(version)))
            aead = SUITES.get(flow["suite"], ("", ""))[1]
            flow["aead"] = aead
            return {"negotiated": (version, aead)} if aead else {}
        return {}

    def _data_fields(self, data: bytes, at: int, end: int, flow: dict) -> tuple[list[Field], int] | None:
        """The fields of an encrypted data record's body (nonce, AnyConnect header, inner packet, tag),
        and the inner packet's size; None when the AEAD is unknown or the body too short."""
        aead, version = flow.get("aead"), flow.get("version", 0)
        if not aead:
            return None
        nonce = explicit_nonce(aead, version)
        inner = end - at - nonce - self._inside() - (version == 0x0304) - AEAD_TAG
        if inner < 0:
            return None
        fields = []
        if nonce:
            fields.append(Field("explicit nonce", at, at + nonce, "0x" + data[at:at + nonce].hex(), "opaque"))
        p = at + nonce
        fields.append(Field("packet type (encrypted)" if self.dtls else "CSTP header (encrypted)", p,
                            p + self._inside(), "", "encrypted"))
        p += self._inside()
        if inner:
            fields.append(Field("inner packet (encrypted)", p, p + inner, "", "encrypted"))
            p += inner
        if version == 0x0304:
            fields.append(Field("content type (encrypted)", p, p + 1, "", "encrypted"))
            p += 1
        fields.append(Field("tag", p, end, "", "tag"))
        return fields, inner


class OpenConnectTls(_Records):
    """OpenConnect's TLS connection (TCP 443): the login over HTTPS, then CSTP, the tunnel's control
    channel, which carries the data too while DTLS is not up (or is blocked)."""

    def __init__(self) -> None:
        super().__init__("OpenConnect over TLS", "openconnect-tls", COLORS["ike4500"], "tcp", (443,),
                         tshark_proto="tls.record", tshark_rest="tls.app_data", algorithm="AES-256-GCM")
        self.version = 0x0304     # what openconnect and ocserv (GnuTLS) agree on unless told otherwise

    def claims(self, start: bytes) -> bool:
        return _tls_start(start)

    def next_message(self, buffer: bytes) -> tuple[int, int] | None:
        if len(buffer) < 5:
            return None
        end = 5 + _u16(buffer, 3)
        return (0, end) if len(buffer) >= end else None

    def parse(self, payload: bytes) -> VpnMessage | None:
        return self.parse_flow(payload, {}, False)

    def parse_flow(self, payload: bytes, flow: dict, from_server: bool) -> VpnMessage | None:
        if len(payload) < 5 or payload[0] not in TLS_TYPES or payload[1] != 3 or len(payload) != 5 + _u16(payload, 3):
            return None
        kind, length = payload[0], len(payload)
        side = "server" if from_server else "client"
        ccs = flow.setdefault("ccs", set())
        tls13 = flow.get("version") == 0x0304
        # TLS 1.3 writes every record after the ServerHello as type 23 (application data) on the
        # outside; tshark calls that field the opaque type (RFC 8446 §5.2)
        kind_field = "tls.record.opaque_type" if tls13 and kind == 23 else "tls.record.content_type"
        fields = [Field("content type", 0, 1, f"{kind} ({TLS_TYPES[kind]})", tshark=kind_field),
                  Field("version", 1, 3, f"0x{_u16(payload, 1):04x}", tshark="tls.record.version"),
                  Field("length", 3, 5, str(length - 5), tshark="tls.record.length")]
        labels: list[str] = []
        details: list[str] = []
        negotiated: dict = {}
        if kind == 22 and side not in ccs:
            negotiated = self._handshake(payload, 5, length, flow, fields, labels, details, from_server)
        elif kind == 20:
            ccs.add(side)
            fields.append(Field("change cipher spec", 5, length, tshark="tls.change_cipher_spec"))
            labels.append("ChangeCipherSpec")
            if tls13:
                details.append("for middleboxes only (RFC 8446 §D.4)")
        elif kind in (21, 22):
            fields.append(Field("encrypted", 5, length, "", "encrypted"))
            labels.append("Finished (encrypted)" if kind == 22 else "Alert (encrypted)" if side in ccs else "Alert")
        else:
            return self._application(payload, flow, from_server, fields)
        return VpnMessage(", ".join(labels) or TLS_TYPES[kind], True, length, fields, detail=", ".join(details),
                          negotiated=negotiated.get("negotiated"))

    def _application(self, payload: bytes, flow: dict, from_server: bool, fields: list[Field]) -> VpnMessage:
        length = len(payload)
        tls13 = flow.get("version") == 0x0304
        if tls13 and not flow.get("client finished"):
            if from_server:
                return VpnMessage("Application Data (handshake)", True, length,
                                  fields + [Field("encrypted", 5, length, "", "encrypted")],
                                  detail="TLS 1.3: the server's certificate and Finished, encrypted")
            flow["client finished"] = True
            return VpnMessage("Application Data (Finished)", True, length,
                              fields + [Field("encrypted", 5, length, "", "encrypted")],
                              detail="TLS 1.3: the client's Finished, encrypted")
        cut = self._data_fields(payload, 5, length, flow)
        if cut is not None and cut[1] == 0:
            flow["tunnel"] = True          # an empty CSTP packet (DPD, keepalive): the tunnel is up
        http = flow.get("http", 0)
        if not flow.get("tunnel") and http < HTTP_RECORDS:
            flow["http"] = http + 1
            return VpnMessage("Application Data", True, length,
                              fields + [Field("encrypted", 5, length, "", "encrypted")],
                              detail="HTTPS, encrypted: the login's requests and answers, CONNECT")
        flow["tunnel"] = True
        session = f"TCP port {flow.get('client port', '?')}"
        if cut is None:
            return VpnMessage("Application Data", False, length,
                              fields + [Field("encrypted", 5, length, "", "encrypted")], session=session)
        body, inner = cut
        return VpnMessage("CSTP", False, length, fields + body, session=session, ciphertext=inner,
                          keepalive=inner == 0)


class OpenConnectDtls(_Records):
    """OpenConnect's DTLS (UDP 443): its own handshake, keyed from the TLS session, then the data."""

    dtls = True

    def __init__(self) -> None:
        super().__init__("OpenConnect DTLS", "openconnect", OKABE_ITO["sky blue"], "udp", (443,),
                         tshark_proto="dtls", tshark_rest="dtls.app_data",
                         algorithm="AES-256-GCM")
        self.version = 0xFEFD

    def parse(self, payload: bytes) -> VpnMessage | None:
        return self.parse_flow(payload, {}, False)

    def parse_flow(self, payload: bytes, flow: dict, from_server: bool) -> VpnMessage | None:
        side = "server" if from_server else "client"
        at = 0
        fields: list[Field] = []
        labels: list[str] = []
        details: list[str] = []
        negotiated: dict = {}
        data: tuple[int, int, int] | None = None
        records = 0
        while at < len(payload):
            if len(payload) - at < 13:
                return None
            kind, version, epoch = payload[at], _u16(payload, at + 1), _u16(payload, at + 3)
            seq, length = int.from_bytes(payload[at + 5:at + 11], "big"), _u16(payload, at + 11)
            end = at + 13 + length
            if kind not in TLS_TYPES or version not in (0xFEFF, 0xFEFD, 0x0100) or end > len(payload):
                return None
            records += 1
            # RFC 6347 §4.1: the record header, all in clear
            fields += [Field("content type", at, at + 1, f"{kind} ({TLS_TYPES[kind]})", tshark="dtls.record.content_type"),
                       Field("version", at + 1, at + 3, f"0x{version:04x}", tshark="dtls.record.version"),
                       Field("epoch", at + 3, at + 5, str(epoch), tshark="dtls.record.epoch"),
                       Field("sequence number", at + 5, at + 11, str(seq), tshark="dtls.record.sequence_number"),
                       Field("length", at + 11, at + 13, str(length), tshark="dtls.record.length")]
            if kind == 22 and epoch == 0:
                negotiated = self._handshake(payload, at + 13, end, flow, fields, labels, details,
                                             from_server) or negotiated
            elif kind == 20:
                flow.setdefault("ccs", set()).add(side)
                fields.append(Field("change cipher spec", at + 13, end, tshark="dtls.change_cipher_spec"))
                labels.append("ChangeCipherSpec")
            elif kind == 23 and epoch > 0:
                cut = self._data_fields(payload, at + 13, end, flow)
                if cut is None:
                    fields.append(Field("encrypted", at + 13, end, "", "encrypted"))
                    data = (epoch, seq, -1)
                else:
                    fields += cut[0]
                    data = (epoch, seq, cut[1])
                labels.append("Application Data")
            else:
                fields.append(Field("encrypted" if epoch else "body", at + 13, end, "",
                                    "encrypted" if epoch else "opaque"))
                labels.append(("Finished (encrypted)" if kind == 22 else "Alert (encrypted)") if epoch
                              else TLS_TYPES[kind])
            at = end
        if records == 1 and data is not None:
            epoch, seq, inner = data
            return VpnMessage("Application Data", False, len(payload), fields, session=f"epoch {epoch}", counter=seq,
                              ciphertext=inner if inner >= 0 else None, keepalive=inner == 0)
        return VpnMessage(", ".join(labels), True, len(payload), fields, detail=", ".join(details),
                          negotiated=negotiated.get("negotiated"))


# the formats the figures know, in the order they are drawn; a third one is added by register()
FORMATS: list[VpnFormat] = [WireGuard(), OpenVpn("udp"), OpenVpn("tcp"), OpenConnectDtls(),
                             OpenConnectTls()]


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
    """One direction of a TCP connection, followed from its SYN, cut into its format's messages."""

    def __init__(self, next_seq: int) -> None:
        self.next_seq = next_seq
        self.buffer = b""
        self.frames: list[tuple[int, int]] = []   # (frame, offset of the buffer's first octet in it) per octet run
        self.broken = False
        self.format: VpnFormat | None = None      # chosen by the connection's first octets (VpnFormat.claims)
        self.ahead: dict[int, tuple[Packet, bytes, int]] = {}   # seq -> (packet, segment, offset), beyond a gap
        self.unread = 0                           # segments with data not cut into messages (after a gap)


def _flow(flows: dict[tuple, dict], fmt: VpnFormat, packet: Packet, sport: int, dport: int) -> dict:
    """What `fmt`'s messages of this UDP or TCP flow (both directions) told so far."""
    entry = flows.setdefault((fmt.key, frozenset({(packet.src, sport), (packet.dst, dport)})), {})
    entry.setdefault("client port", dport if sport in fmt.ports else sport)
    return entry


def vpn_packets(capture: CaptureAnalysis, formats: Iterable[VpnFormat] | None = None) -> list[VpnPacket]:
    """Every message of the registered formats in the capture, in capture order (found once per
    capture and formats: each figure asks again)."""
    formats = list(FORMATS if formats is None else formats)
    return list(_found(capture, formats)[1])


def vpn_unread(capture: CaptureAnalysis, formats: Iterable[VpnFormat] | None = None) -> dict[str, int]:
    """Format key -> TCP segments with data that vpn_packets could not cut into messages: those after
    a gap in the capture that never filled (a segment the tap missed; tcpdump counts what it
    dropped). The figures say so: their counts are of what was read."""
    return dict(_found(capture, list(FORMATS if formats is None else formats))[2])


def _found(capture: CaptureAnalysis, formats: list[VpnFormat]) -> tuple:
    key = ("vpn_packets", len(capture.packets)) + tuple(id(f) for f in formats)
    store = getattr(capture, "memo", {})   # anything with .packets will do (a test's stand-in has no memo)
    memo = store.get(key)
    if memo is None or memo[0] != formats:
        unread: dict[str, int] = {}
        memo = store[key] = (formats, _vpn_packets(capture, formats, unread), unread)
    return memo


# segments of one TCP stream kept while a missing one is awaited; beyond, the stream is left alone
MAX_AHEAD = 4096


def _vpn_packets(capture: CaptureAnalysis, formats: list[VpnFormat], unread: dict[str, int]) -> list[VpnPacket]:
    found: list[VpnPacket] = []
    streams: dict[tuple, _Stream] = {}
    flows: dict[tuple, dict] = {}     # (format, both endpoints) -> what its handshake told (VpnFormat.parse_flow)
    for packet in capture.packets:
        transport = ip_transport(packet)
        if transport is None:
            continue
        protocol, sport, dport, at = transport
        data = packet.data
        total = min(struct.unpack_from("!H", data, 2)[0], len(data))
        candidates = [f for f in formats if (f.transport == "udp") == (protocol == PROTO_UDP)
                      and {sport, dport} & set(f.ports)]
        if not candidates:
            continue

        if protocol == PROTO_UDP:
            for fmt in candidates:
                message = fmt.parse_flow(data[at:total], _flow(flows, fmt, packet, sport, dport), sport in fmt.ports)
                if message is not None:
                    found.append(VpnPacket(packet, fmt, message, at, [packet.frame]))
                    break
            continue
        ihl = (data[0] & 0x0F) * 4
        seq, flags = struct.unpack_from("!I", data, ihl + 4)[0], data[ihl + 13]
        key = (packet.src, sport, packet.dst, dport)
        if flags & 0x02:   # SYN: the stream's data begins at seq + 1
            streams[key] = _Stream((seq + 1) & 0xFFFFFFFF)
            continue
        stream = streams.get(key)
        segment = data[at:total]
        if stream is None or not segment:
            continue
        if stream.broken:
            stream.unread += 1
            continue
        ahead = (seq - stream.next_seq) & 0xFFFFFFFF
        if ahead and ahead < 1 << 31:
            # a gap: octets before this segment are missing (lost on the path before the tap, or by the
            # tap); it waits for the sender's retransmission of them
            if len(stream.ahead) >= MAX_AHEAD:
                stream.broken, stream.unread = True, len(stream.ahead) + 1
                stream.ahead.clear()
            else:
                stream.ahead.setdefault(seq, (packet, segment, at))
            continue
        _take(stream, packet, segment, seq, at, candidates, flows, found)
        while stream.ahead and not stream.broken:   # the segments that waited, now that the gap is filled
            waiting = next((s for s in stream.ahead if ((stream.next_seq - s) & 0xFFFFFFFF) < 1 << 31), None)
            if waiting is None:
                break
            packet_then, segment_then, at_then = stream.ahead.pop(waiting)
            _take(stream, packet_then, segment_then, waiting, at_then, candidates, flows, found)
    for stream in streams.values():
        if stream.format is not None and stream.unread + len(stream.ahead):
            unread[stream.format.key] = unread.get(stream.format.key, 0) + stream.unread + len(stream.ahead)
    found.sort(key=lambda item: item.packet.frame)   # a message that waited for a retransmission: where it was captured
    return found


def _take(stream: _Stream, packet: Packet, segment: bytes, seq: int, at: int, candidates: list[VpnFormat],
          flows: dict[tuple, dict], found: list[VpnPacket]) -> None:
    """The stream's next octets (`segment`, at offset `at` of `packet`, from sequence number `seq`),
    cut into its format's messages."""
    behind = (stream.next_seq - seq) & 0xFFFFFFFF
    if behind and behind < 1 << 31:     # a retransmission: only what is new counts
        segment, at = segment[behind:], at + behind
        if not segment:
            return
    if stream.format is None:
        stream.format = next((f for f in candidates if f.claims(segment)), None)
        if stream.format is None:
            stream.broken = True
            return
    fmt = stream.format
    transport = ip_transport(packet)
    assert transport is not None   # the caller took `segment` from this packet's TCP payload
    _, sport, dport, _ = transport
    stream.next_seq = (stream.next_seq + len(segment)) & 0xFFFFFFFF
    start_in_buffer = len(stream.buffer)
    stream.buffer += segment
    stream.frames.append((packet.frame, start_in_buffer))
    while True:
        span = fmt.next_message(stream.buffer)
        if span is None:
            break
        begin, end = span
        message = fmt.parse_flow(stream.buffer[begin:end], _flow(flows, fmt, packet, sport, dport),
                                 sport in fmt.ports)
        # within this segment when it started here: its offset in the IP packet
        offset = at + begin if start_in_buffer == 0 else None
        frames = sorted({f for f, s in stream.frames if s < end} | {packet.frame})
        if message is not None:
            found.append(VpnPacket(packet, fmt, message, offset, frames))
        stream.buffer = stream.buffer[end:]
        at += end - start_in_buffer
        start_in_buffer = 0
        stream.frames = [(f, s - end) for f, s in stream.frames if s >= end] if stream.buffer else []
        if stream.buffer and not stream.frames:
            stream.frames = [(packet.frame, 0)]


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


__all__ = ["FORMATS", "Field", "OpenConnectDtls", "OpenConnectTls", "OpenVpn", "VpnFormat", "VpnMessage", "VpnPacket",
           "WireGuard", "explicit_nonce", "formats_in", "handshake_before_data", "ip_transport", "register",
           "vpn_packets", "vpn_unread"]
