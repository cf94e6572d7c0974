"""RADIUS for EAP relaying, pure (no sockets, no clock): the Access-Request that carries an EAP
packet to a RADIUS server, the checks of its answer, the MSK from the MS-MPPE keys and the
attributes a gateway takes from an Access-Accept (virtual IP, Class).

pyrad's packet codec does the encoding, the decoding of attributes, the Response Authenticator,
the Message-Authenticator and the salt decryption of the MS-MPPE keys; this module decides what
an answer must carry to be believed and turns pyrad's errors into RadiusError with a reason a
log line can show. pyrad did not serve for: splitting an EAP packet over EAP-Message attributes
(RFC 3579 §3.1) and the checks of the decrypted key's length octet (RFC 2548 §2.4.2)."""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import struct
from collections import OrderedDict
from dataclasses import dataclass, field

from pyrad.packet import AcctPacket, AuthPacket, Packet, PacketError

# RFC 2865 §3: codes
ACCESS_REQUEST = 1
ACCESS_ACCEPT = 2
ACCESS_REJECT = 3
ACCESS_CHALLENGE = 11
ACCOUNTING_REQUEST = 4  # RFC 2866 §3
ACCOUNTING_RESPONSE = 5
CODE_NAMES = {ACCESS_REQUEST: "Access-Request", ACCESS_ACCEPT: "Access-Accept",
              ACCESS_REJECT: "Access-Reject", ACCESS_CHALLENGE: "Access-Challenge",
              ACCOUNTING_REQUEST: "Accounting-Request", ACCOUNTING_RESPONSE: "Accounting-Response"}

# RFC 2865 §5: attribute types
USER_NAME = 1
NAS_IP_ADDRESS = 4
NAS_PORT = 5
SERVICE_TYPE = 6
FRAMED_IP_ADDRESS = 8
REPLY_MESSAGE = 18
STATE = 24
CLASS = 25
VENDOR_SPECIFIC = 26
CALLED_STATION_ID = 30
CALLING_STATION_ID = 31
NAS_IDENTIFIER = 32
NAS_PORT_TYPE = 61
EAP_MESSAGE = 79  # RFC 3579 §3.1
MESSAGE_AUTHENTICATOR = 80  # RFC 3579 §3.2
FRAMED_MTU = 12
# RFC 2866 §5: accounting attributes
ACCT_STATUS_TYPE = 40
ACCT_INPUT_OCTETS = 42
ACCT_OUTPUT_OCTETS = 43
ACCT_SESSION_ID = 44
ACCT_SESSION_TIME = 46
ACCT_INPUT_PACKETS = 47
ACCT_OUTPUT_PACKETS = 48
ACCT_TERMINATE_CAUSE = 49
ACCT_INPUT_GIGAWORDS = 52  # RFC 2869 §5.1
ACCT_OUTPUT_GIGAWORDS = 53  # RFC 2869 §5.2
ACCT_START, ACCT_STOP = 1, 2  # RFC 2866 §5.1
TERMINATE_USER_REQUEST = 1  # RFC 2866 §5.10

# RFC 2548 §2.4.2, §2.4.3: Microsoft's vendor id and the MPPE key attributes
MICROSOFT = 311
MS_MPPE_SEND_KEY = 16
MS_MPPE_RECV_KEY = 17

SERVICE_FRAMED = 2  # RFC 2865 §5.6
NAS_PORT_VIRTUAL = 5  # RFC 2865 §5.41


class RadiusError(Exception):
    """An answer not to be believed or not to be read; the message says why."""


def split_eap(eap: bytes) -> list[bytes]:
    """RFC 3579 §3.1: an EAP packet longer than 253 octets goes in consecutive EAP-Message
    attributes, each at most 253 octets."""
    return [eap[i:i + 253] for i in range(0, len(eap), 253)] or [b""]


def access_request(secret: bytes, identifier: int, authenticator: bytes, user_name: bytes, eap: bytes,
                   state: bytes | None = None, nas_identifier: bytes | None = None,
                   nas_ip: str | None = None, calling_station: bytes | None = None,
                   called_station: bytes | None = None) -> bytes:
    """An Access-Request carrying `eap`, with the Message-Authenticator every packet with an
    EAP-Message must have (RFC 3579 §3.2) and the State of the last Access-Challenge
    (RFC 2865 §5.24); `authenticator` is the 16 random octets of RFC 2865 §3."""
    if len(authenticator) != 16:
        raise ValueError("the Request Authenticator has 16 octets (RFC 2865 §3)")
    packet = AuthPacket(code=ACCESS_REQUEST, id=identifier, secret=secret, authenticator=authenticator)
    packet.add_message_authenticator()
    packet[USER_NAME] = [user_name]
    packet[SERVICE_TYPE] = [struct.pack("!I", SERVICE_FRAMED)]
    packet[NAS_PORT_TYPE] = [struct.pack("!I", NAS_PORT_VIRTUAL)]
    if nas_identifier:
        packet[NAS_IDENTIFIER] = [nas_identifier]
    if nas_ip:
        packet[NAS_IP_ADDRESS] = [ipaddress.IPv4Address(nas_ip).packed]
    if called_station:
        packet[CALLED_STATION_ID] = [called_station]
    if calling_station:
        packet[CALLING_STATION_ID] = [calling_station]
    packet[EAP_MESSAGE] = split_eap(eap)
    if state is not None:
        packet[STATE] = [state]
    request: bytes = packet.RequestPacket()  # pyrad has no type hints
    return request


def decrypt_mppe_key(value: bytes, secret: bytes, request_authenticator: bytes) -> bytes:
    """RFC 2548 §2.4.2/§2.4.3: an MS-MPPE-Send/Recv-Key: a two-octet salt with its high bit set,
    then the key's length octet, the key and padding, hidden with MD5(secret + Request
    Authenticator + salt) chained over 16-octet blocks (pyrad's RFC 2868 salt decryption)."""
    if len(value) < 18 or (len(value) - 2) % 16:
        raise RadiusError(f"MS-MPPE key of {len(value)} octets: not a salt and 16-octet blocks (RFC 2548 §2.4.2)")
    if not value[0] & 0x80:
        raise RadiusError("MS-MPPE key salt without its high bit set (RFC 2548 §2.4.2)")
    packet = Packet(secret=secret)
    packet.request_authenticator = request_authenticator
    salt = value[:2]
    plain = packet._salt_en_decrypt(value[2:], salt, encrypt=False)
    length = plain[0]
    if length > len(plain) - 1:
        # RFC 2548 §2.4.2: the length octet counts the key only; more than the blocks hold
        # means another secret or another request
        raise RadiusError(f"MS-MPPE key decrypts to a length of {length} octets in {len(plain) - 1}: "
                          "wrong shared secret or not the answer to our request")
    key: bytes = plain[1:1 + length]
    return key


@dataclass
class Reply:
    """What a gateway uses of a believed answer."""
    code: int
    identifier: int
    eap: bytes | None
    state: bytes | None
    attributes: OrderedDict[object, list[bytes]] = field(default_factory=OrderedDict)
    send_key: bytes | None = None
    recv_key: bytes | None = None

    @property
    def code_name(self) -> str:
        return CODE_NAMES.get(self.code, f"code {self.code}")

    @property
    def msk(self) -> bytes | None:
        """As strongSwan's eap-radius: the MSK is MS-MPPE-Recv-Key then MS-MPPE-Send-Key
        (RFC 2548 §2.4.3: Recv-Key is the key the authenticator receives with). For EAP-MSCHAPv2
        that is 32 octets where the client has them and 32 zero octets: the same key for the
        AUTH payload's prf, as HMAC pads a key shorter than its block with zeros (RFC 2104 §2)."""
        if self.recv_key is None or self.send_key is None:
            return None
        return self.recv_key + self.send_key

    def first(self, attribute: int) -> bytes | None:
        values = self.attributes.get(attribute)
        return values[0] if values else None

    @property
    def framed_ip(self) -> str | None:
        """RFC 2865 §5.8: the address for the user; 255.255.255.255 and 255.255.255.254 mean
        the user or the NAS chooses, not an address."""
        value = self.first(FRAMED_IP_ADDRESS)
        if value is None:
            return None
        if len(value) != 4:
            raise RadiusError(f"Framed-IP-Address of {len(value)} octets, not 4 (RFC 2865 §5.8)")
        address = ipaddress.IPv4Address(value)
        if str(address) in ("255.255.255.255", "255.255.255.254"):
            return None
        return str(address)

    @property
    def classes(self) -> list[bytes]:
        """RFC 2865 §5.25: Class values, echoed in accounting; strongSwan uses them as groups."""
        return list(self.attributes.get(CLASS, []))

    @property
    def reply_message(self) -> str | None:
        value = self.first(REPLY_MESSAGE)
        return value.decode("utf-8", "replace") if value is not None else None


def check_attribute_lengths(raw: bytes) -> None:
    """RFC 2865 §5: each attribute's Length covers its type and length octets and lies inside
    the packet's Length; pyrad 2.6 takes an attribute that claims more as a shorter value."""
    length = struct.unpack("!H", raw[2:4])[0]
    if length < 20 or length > len(raw):
        raise RadiusError(f"answer's Length field says {length} octets, {len(raw)} arrived (RFC 2865 §3)")
    at = 20
    while at < length:
        if length - at < 2:
            raise RadiusError(f"answer ends inside an attribute header at octet {at} (RFC 2865 §5)")
        kind, size = raw[at], raw[at + 1]
        if size < 2 or at + size > length:
            raise RadiusError(f"attribute {kind} at octet {at} claims {size} octets, the packet has "
                              f"{length - at} left: truncated (RFC 2865 §5)")
        at += size


def parse_reply(raw: bytes, request: bytes, secret: bytes) -> Reply:
    """The server's answer to `request` (the octets we sent), believed only when its identifier
    matches, its Response Authenticator (RFC 2865 §3) and Message-Authenticator (RFC 3579 §3.2)
    hold and its attributes decode; raises RadiusError naming what did not hold."""
    if len(raw) < 20:
        raise RadiusError(f"answer of {len(raw)} octets, shorter than the 20-octet header (RFC 2865 §3)")
    try:
        sent = AuthPacket(secret=secret, packet=request)
    except PacketError as error:  # our own request: a bug, not the server's fault
        raise ValueError(f"cannot decode our own request: {error}") from error
    check_attribute_lengths(raw)
    try:
        reply = Packet(secret=secret, packet=raw)
    except PacketError as error:
        raise RadiusError(f"answer not decodable: {error} (RFC 2865 §3, §5)") from error
    except (IndexError, struct.error) as error:
        raise RadiusError(f"answer with a truncated attribute: {error} (RFC 2865 §5)") from error
    if reply.code not in (ACCESS_ACCEPT, ACCESS_REJECT, ACCESS_CHALLENGE):
        raise RadiusError(f"answer code {reply.code} is not Access-Accept, -Reject or -Challenge (RFC 2865 §3)")
    if reply.id != sent.id:
        raise RadiusError(f"answer identifier {reply.id} is not our request's {sent.id} (RFC 2865 §3)")
    eap_parts = OrderedDict.get(reply, EAP_MESSAGE)
    has_ma = OrderedDict.__contains__(reply, MESSAGE_AUTHENTICATOR)
    if eap_parts and not has_ma:
        # RFC 3579 §3.2: a packet with EAP-Message and no Message-Authenticator is silently discarded
        raise RadiusError("answer carries EAP-Message without Message-Authenticator (RFC 3579 §3.2)")
    if has_ma:
        value = OrderedDict.__getitem__(reply, MESSAGE_AUTHENTICATOR)[0]
        if len(value) != 16:
            raise RadiusError(f"Message-Authenticator of {len(value)} octets, not 16 (RFC 3579 §3.2)")
        if not reply.verify_message_authenticator(
                secret=secret, original_authenticator=sent.authenticator, original_code=sent.code):
            raise RadiusError("Message-Authenticator does not match: another shared secret or a forged "
                              "answer (RFC 3579 §3.2)")
    # RFC 2865 §3: Response Authenticator = MD5(Code+ID+Length+RequestAuth+Attributes+Secret)
    length = struct.unpack("!H", raw[2:4])[0]
    digest = hashlib.md5(raw[0:4] + sent.authenticator + raw[20:length] + secret).digest()
    if not hmac.compare_digest(digest, raw[4:20]):
        raise RadiusError("Response Authenticator does not match: another shared secret or a forged answer "
                          "(RFC 2865 §3)")
    attributes: OrderedDict[object, list[bytes]] = OrderedDict((key, list(values)) for key, values in reply.items())
    result = Reply(code=reply.code, identifier=reply.id, eap=b"".join(eap_parts) if eap_parts else None,
                   state=(OrderedDict.get(reply, STATE) or [None])[0], attributes=attributes)
    for value in OrderedDict.get(reply, VENDOR_SPECIFIC, []):
        # RFC 2865 §5.26: Vendor-Id, then the vendor's type-length-value sub-attributes
        if len(value) < 6:
            raise RadiusError(f"Vendor-Specific of {len(value)} octets, too short for an id and an attribute "
                              "(RFC 2865 §5.26)")
        vendor = struct.unpack("!I", value[:4])[0]
        parts = Packet._PktSplitSubAttributes(value, 4)
        if parts is None:
            raise RadiusError(f"Vendor-Specific of vendor {vendor} with a truncated sub-attribute (RFC 2865 §5.26)")
        for kind, data in parts:
            attributes.setdefault((vendor, kind), []).append(data)
    send = attributes.get((MICROSOFT, MS_MPPE_SEND_KEY))
    recv = attributes.get((MICROSOFT, MS_MPPE_RECV_KEY))
    if send:
        result.send_key = decrypt_mppe_key(send[0], secret, sent.authenticator)
    if recv:
        result.recv_key = decrypt_mppe_key(recv[0], secret, sent.authenticator)
    if result.eap is not None and len(result.eap) >= 4:
        length = struct.unpack("!H", result.eap[2:4])[0]
        if length != len(result.eap):
            # RFC 3579 §3.1: the EAP-Messages together are one EAP packet
            raise RadiusError(f"EAP-Message attributes hold {len(result.eap)} octets, their EAP packet says "
                              f"{length} (truncated or padded, RFC 3579 §3.1)")
    elif result.eap is not None:
        raise RadiusError(f"EAP-Message of {len(result.eap)} octets, shorter than an EAP header (RFC 3579 §3.1)")
    return result



def _u32(value: int) -> bytes:
    return struct.pack("!I", value & 0xFFFFFFFF)


def accounting_request(secret: bytes, identifier: int, status: int, session_id: bytes, user_name: bytes,
                       framed_ip: str | None = None, classes: list[bytes] | None = None,
                       nas_identifier: bytes | None = None, input_octets: int = 0, output_octets: int = 0,
                       input_packets: int = 0, output_packets: int = 0, session_time: int = 0,
                       terminate_cause: int = TERMINATE_USER_REQUEST) -> bytes:
    """An Accounting-Request Start or Stop (RFC 2866 §4.1, §5.1) of one session: its Request
    Authenticator is MD5 over the packet with 16 zero octets and the secret (§3). A Stop
    carries the byte and packet counts, octets past 2^32 in the Gigawords (RFC 2869 §5.1),
    the session time (§5.7) and why it ended (§5.10); the Access-Accept's Class values are
    echoed (RFC 2865 §5.25)."""
    packet = AcctPacket(code=ACCOUNTING_REQUEST, id=identifier, secret=secret)
    packet[ACCT_STATUS_TYPE] = [_u32(status)]
    packet[ACCT_SESSION_ID] = [session_id]
    packet[USER_NAME] = [user_name]
    if nas_identifier:
        packet[NAS_IDENTIFIER] = [nas_identifier]
    if framed_ip:
        packet[FRAMED_IP_ADDRESS] = [ipaddress.IPv4Address(framed_ip).packed]
    if classes:
        packet[CLASS] = list(classes)
    if status == ACCT_STOP:
        packet[ACCT_INPUT_OCTETS] = [_u32(input_octets)]
        packet[ACCT_OUTPUT_OCTETS] = [_u32(output_octets)]
        packet[ACCT_INPUT_GIGAWORDS] = [_u32(input_octets >> 32)]
        packet[ACCT_OUTPUT_GIGAWORDS] = [_u32(output_octets >> 32)]
        packet[ACCT_INPUT_PACKETS] = [_u32(input_packets)]
        packet[ACCT_OUTPUT_PACKETS] = [_u32(output_packets)]
        packet[ACCT_SESSION_TIME] = [_u32(session_time)]
        packet[ACCT_TERMINATE_CAUSE] = [_u32(terminate_cause)]
    request: bytes = packet.RequestPacket()  # pyrad has no type hints
    return request


def check_accounting_response(raw: bytes, request: bytes, secret: bytes) -> None:
    """RFC 2866 §3: the Accounting-Response to `request`, its Response Authenticator
    MD5(Code+ID+Length+Request Authenticator+Attributes+Secret); RadiusError otherwise."""
    if len(raw) < 20:
        raise RadiusError(f"answer of {len(raw)} octets, shorter than the 20-octet header (RFC 2866 §3)")
    check_attribute_lengths(raw)
    if raw[0] != ACCOUNTING_RESPONSE:
        raise RadiusError(f"answer code {raw[0]} to an Accounting-Request is not Accounting-Response (RFC 2866 §3)")
    if raw[1] != request[1]:
        raise RadiusError(f"answer identifier {raw[1]} is not our request's {request[1]} (RFC 2866 §3)")
    length = struct.unpack("!H", raw[2:4])[0]
    digest = hashlib.md5(raw[0:4] + request[4:20] + raw[20:length] + secret).digest()
    if not hmac.compare_digest(digest, raw[4:20]):
        raise RadiusError("Response Authenticator of the Accounting-Response does not match (RFC 2866 §3)")
