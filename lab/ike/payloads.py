"""Every IKEv2 payload of RFC 7296 §3 (and SKF, RFC 7383 §2.5) as a dataclass.

Each payload class knows its payload type, serializes its body with `body()` and
parses a body with `parse_body(body, base)`, where `base` is the body's offset in the
outermost buffer, so that a `ParseError` names an absolute offset. The generic payload
header (next payload, critical bit, length) is written and read by the chain functions
at the bottom of this module.
"""
from __future__ import annotations

import functools
import ipaddress
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from .const import (
    PAYLOAD_SHORT_NAMES,
    AuthMethod,
    CertEncoding,
    CfgType,
    DhGroup,
    IdType,
    NotifyType,
    PayloadType,
    ProtocolId,
    TransformAttr,
    TransformType,
    TsType,
    coerce,
    name_of,
)
from .errors import ParseError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_U16, _U32 = struct.Struct("!H"), struct.Struct("!I")


class Reader:
    """Bounds-checked reads from `data`; errors name offsets relative to `base`."""

    __slots__ = ("data", "pos", "base")

    def __init__(self, data: bytes, base: int = 0) -> None:
        self.data = data
        self.pos = 0
        self.base = base

    @property
    def offset(self) -> int:
        return self.base + self.pos

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ParseError(self.offset, f"{what}: needs {n} octets, {self.remaining} left")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def rest(self) -> bytes:
        chunk = self.data[self.pos:]
        self.pos = len(self.data)
        return chunk

    def u8(self, what: str) -> int:
        pos = self.pos
        if pos >= len(self.data):
            self.take(1, what)
        self.pos = pos + 1
        return self.data[pos]

    def u16(self, what: str) -> int:
        pos = self.pos
        if pos + 2 > len(self.data):
            self.take(2, what)
        self.pos = pos + 2
        value: int = _U16.unpack_from(self.data, pos)[0]
        return value

    def u32(self, what: str) -> int:
        pos = self.pos
        if pos + 4 > len(self.data):
            self.take(4, what)
        self.pos = pos + 4
        value: int = _U32.unpack_from(self.data, pos)[0]
        return value

    def end(self, what: str) -> None:
        if self.remaining:
            raise ParseError(self.offset, f"{what}: {self.remaining} unexpected trailing octets")


@dataclass
class Payload:
    """Base of all payloads. `critical` is the generic header's C bit (RFC 7296 §3.2)."""

    payload_type: ClassVar[int] = PayloadType.NONE
    critical: bool = field(default=False, kw_only=True)

    def body(self) -> bytes:
        raise NotImplementedError

    @classmethod
    def parse_body(cls, body: bytes, base: int) -> Payload:
        raise NotImplementedError

    @property
    def type_id(self) -> int:
        return self.payload_type


# ---------------------------------------------------------------- SA (§3.3)


@dataclass
class TransformAttribute:
    """RFC 7296 §3.3.5. TV format (AF=1) carries a 16-bit `value`; TLV carries bytes."""

    attr_type: int
    value: int | bytes

    def serialize(self) -> bytes:
        if isinstance(self.value, int):
            return struct.pack("!HH", 0x8000 | self.attr_type, self.value)
        return struct.pack("!HH", self.attr_type, len(self.value)) + self.value

    @classmethod
    def parse(cls, r: Reader) -> TransformAttribute:
        word = r.u16("transform attribute type")
        if word & 0x8000:
            return cls(word & 0x7FFF, r.u16("transform attribute value"))
        length = r.u16("transform attribute length")
        return cls(word, r.take(length, "transform attribute value"))


@dataclass
class Transform:
    """RFC 7296 §3.3.2."""

    transform_type: int
    transform_id: int
    attributes: list[TransformAttribute] = field(default_factory=list)

    @property
    def key_length(self) -> int | None:
        for attribute in self.attributes:
            if attribute.attr_type == TransformAttr.KEY_LENGTH and isinstance(attribute.value, int):
                return attribute.value
        return None

    def serialize(self, last: bool) -> bytes:
        attrs = b"".join(a.serialize() for a in self.attributes)
        return struct.pack("!BBHBBH", 0 if last else 3, 0, 8 + len(attrs),
                           self.transform_type, 0, self.transform_id) + attrs

    @classmethod
    def parse(cls, r: Reader) -> tuple[Transform, bool]:
        start = r.offset
        last_flag = r.u8("transform last-substructure")
        r.u8("transform reserved")
        length = r.u16("transform length")
        if last_flag not in (0, 3):
            raise ParseError(start, f"transform last-substructure is {last_flag}, must be 0 or 3")
        if length < 8:
            raise ParseError(start + 2, f"transform length {length} is below 8")
        inner = Reader(r.take(length - 4, "transform"), r.offset - (length - 4))
        transform_type = inner.u8("transform type")
        inner.u8("transform reserved")
        transform_id = inner.u16("transform id")
        attributes = []
        while inner.remaining:
            attributes.append(TransformAttribute.parse(inner))
        return cls(coerce(TransformType, transform_type), transform_id, attributes), last_flag == 0


@dataclass
class Proposal:
    """RFC 7296 §3.3.1."""

    number: int
    protocol_id: int
    spi: bytes = b""
    transforms: list[Transform] = field(default_factory=list)

    def serialize(self, last: bool) -> bytes:
        body = b"".join(t.serialize(i == len(self.transforms) - 1) for i, t in enumerate(self.transforms))
        return struct.pack("!BBHBBBB", 0 if last else 2, 0, 8 + len(self.spi) + len(body),
                           self.number, self.protocol_id, len(self.spi), len(self.transforms)) + self.spi + body

    @classmethod
    def parse(cls, r: Reader) -> tuple[Proposal, bool]:
        start = r.offset
        last_flag = r.u8("proposal last-substructure")
        r.u8("proposal reserved")
        length = r.u16("proposal length")
        if last_flag not in (0, 2):
            raise ParseError(start, f"proposal last-substructure is {last_flag}, must be 0 or 2")
        if length < 8:
            raise ParseError(start + 2, f"proposal length {length} is below 8")
        inner = Reader(r.take(length - 4, "proposal"), start + 4)
        number = inner.u8("proposal number")
        protocol_id = inner.u8("protocol id")
        spi_size = inner.u8("SPI size")
        count = inner.u8("number of transforms")
        spi = inner.take(spi_size, "proposal SPI")
        transforms = []
        last = inner.remaining == 0
        while inner.remaining:
            where = inner.offset
            transform, last = Transform.parse(inner)
            transforms.append(transform)
            if last and inner.remaining:
                raise ParseError(where, "transform marked last but more follow in the proposal")
        if transforms and not last:
            raise ParseError(inner.offset, "last transform of the proposal not marked last")
        if len(transforms) != count:
            raise ParseError(start + 7, f"proposal says {count} transforms, holds {len(transforms)}")
        return cls(number, coerce(ProtocolId, protocol_id), spi, transforms), last_flag == 0


@dataclass
class SA(Payload):
    """Security Association payload, RFC 7296 §3.3."""

    payload_type: ClassVar[int] = PayloadType.SA
    proposals: list[Proposal] = field(default_factory=list)

    def body(self) -> bytes:
        return b"".join(p.serialize(i == len(self.proposals) - 1) for i, p in enumerate(self.proposals))

    @classmethod
    def parse_body(cls, body: bytes, base: int) -> SA:
        r = Reader(body, base)
        proposals = []
        last = False
        while r.remaining:
            if last:
                raise ParseError(r.offset, "proposal follows one marked last")
            proposal, last = Proposal.parse(r)
            proposals.append(proposal)
        if proposals and not last:
            raise ParseError(r.offset, "last proposal not marked last")
        return cls(proposals)


# ---------------------------------------------------------------- KE (§3.4)


@dataclass
class KE(Payload):
    payload_type: ClassVar[int] = PayloadType.KE
    dh_group: int = DhGroup.NONE
    data: bytes = b""

    def body(self) -> bytes:
        return struct.pack("!HH", self.dh_group, 0) + self.data

    @classmethod
    def parse_body(cls, body: bytes, base: int) -> KE:
        r = Reader(body, base)
        group = r.u16("KE Diffie-Hellman group")
        r.u16("KE reserved")
        return cls(dh_group=coerce(DhGroup, group), data=r.rest())


# ---------------------------------------------------------------- IDi/IDr (§3.5)


@dataclass
class Identification(Payload):
    id_type: int = IdType.ID_FQDN
    data: bytes = b""

    def body(self) -> bytes:
        return struct.pack("!B3x", self.id_type) + self.data

    @classmethod
    def parse_body(cls, body: bytes, base: int) -> Identification:
        r = Reader(body, base)
        id_type = r.u8("ID type")
        r.take(3, "ID reserved")
        return cls(id_type=coerce(IdType, id_type), data=r.rest())

    def describe(self) -> str:
        """The identity as strongSwan prints it (e.g. `gwa.lab`, `192.0.2.1`)."""
        try:
            if self.id_type == IdType.ID_IPV4_ADDR and len(self.data) == 4:
                return str(ipaddress.IPv4Address(self.data))
            if self.id_type == IdType.ID_IPV6_ADDR and len(self.data) == 16:
                return str(ipaddress.IPv6Address(self.data))
            if self.id_type in (IdType.ID_FQDN, IdType.ID_RFC822_ADDR):
                return self.data.decode("ascii")
        except UnicodeDecodeError:
            pass
        return self.data.hex()


@dataclass
class IDi(Identification):
    payload_type: ClassVar[int] = PayloadType.IDi


@dataclass
class IDr(Identification):
    payload_type: ClassVar[int] = PayloadType.IDr


# ---------------------------------------------------------------- CERT, CERTREQ (§3.6, §3.7)


@dataclass
class CERT(Payload):
    payload_type: ClassVar[int] = PayloadType.CERT
    encoding: int = CertEncoding.X509_SIGNATURE
    data: bytes = b""

    def body(self) -> bytes:
        return bytes([self.encoding]) + self.data

    @classmethod
    def parse_body(cls, body: bytes, base: int) -> CERT:
        r = Reader(body, base)
        encoding = r.u8("certificate encoding")
        return cls(encoding=coerce(CertEncoding, encoding), data=r.rest())


@dataclass
class CERTREQ(Payload):
    """For X.509 the data is a concatenation of SHA-1 hashes of CA public keys (§3.7)."""

    payload_type: ClassVar[int] = PayloadType.CERTREQ
    encoding: int = CertEncoding.X509_SIGNATURE
    data: bytes = b""

    @property
    def ca_hashes(self) -> list[bytes]:
        return [self.data[i:i + 20] for i in range(0, len(self.data) - len(self.data) % 20, 20)]

    def body(self) -> bytes:
        return bytes([self.encoding]) + self.data

    @classmethod
    def parse_body(cls, body: bytes, base: int) -> CERTREQ:
        r = Reader(body, base)
        encoding = r.u8("certificate encoding")
        return cls(encoding=coerce(CertEncoding, encoding), data=r.rest())


# ---------------------------------------------------------------- AUTH (§3.8)


@dataclass
class AUTH(Payload):
    payload_type: ClassVar[int] = PayloadType.AUTH
    method: int = AuthMethod.SHARED_KEY_MIC
    data: bytes = b""

    def body(self) -> bytes:
        return struct.pack("!B3x", self.method) + self.data

    @classmethod
    def parse_body(cls, body: bytes, base: int) -> AUTH:
        r = Reader(body, base)
        method = r.u8("auth method")
        r.take(3, "AUTH reserved")
        return cls(method=coerce(AuthMethod, method), data=r.rest())


# ---------------------------------------------------------------- Nonce (§3.9)


@dataclass
class Nonce(Payload):
    payload_type: ClassVar[int] = PayloadType.NONCE
    data: bytes = b""

    def body(self) -> bytes:
        return self.data

    @classmethod
    def parse_body(cls, body: bytes, base: int) -> Nonce:
        return cls(data=body)


# ---------------------------------------------------------------- Notify (§3.10)


@dataclass
class Notify(Payload):
    payload_type: ClassVar[int] = PayloadType.N
    notify_type: int = NotifyType.INITIAL_CONTACT
    data: bytes = b""
    protocol_id: int = 0
    spi: bytes = b""

    @property
    def is_error(self) -> bool:
        # §3.10.1: types below 16384 are errors
        return self.notify_type < 16384

    def body(self) -> bytes:
        return struct.pack("!BBH", self.protocol_id, len(self.spi), self.notify_type) + self.spi + self.data

    @classmethod
    def parse_body(cls, body: bytes, base: int) -> Notify:
        r = Reader(body, base)
        protocol_id = r.u8("notify protocol id")
        spi_size = r.u8("notify SPI size")
        notify_type = r.u16("notify message type")
        spi = r.take(spi_size, "notify SPI")
        return cls(notify_type=coerce(NotifyType, notify_type), data=r.rest(),
                   protocol_id=coerce(ProtocolId, protocol_id), spi=spi)


# ---------------------------------------------------------------- Delete (§3.11)


@dataclass
class Delete(Payload):
    """An IKE SA delete has no SPIs (SPI size 0); ESP/AH deletes list 4-octet SPIs."""

    payload_type: ClassVar[int] = PayloadType.D
    protocol_id: int = ProtocolId.IKE
    spis: list[bytes] = field(default_factory=list)

    def body(self) -> bytes:
        sizes = {len(s) for s in self.spis}
        if len(sizes) > 1:
            raise ValueError("Delete payload SPIs must all have the same size")
        spi_size = sizes.pop() if sizes else (0 if self.protocol_id == ProtocolId.IKE else 4)
        return struct.pack("!BBH", self.protocol_id, spi_size, len(self.spis)) + b"".join(self.spis)

    @classmethod
    def parse_body(cls, body: bytes, base: int) -> Delete:
        r = Reader(body, base)
        protocol_id = r.u8("delete protocol id")
        spi_size = r.u8("delete SPI size")
        count = r.u16("delete number of SPIs")
        if spi_size == 0 and count:
            raise ParseError(base + 2, f"delete lists {count} SPIs of size 0")
        spis = [r.take(spi_size, f"delete SPI {i + 1} of {count}") for i in range(count)]
        r.end("delete payload")
        return cls(protocol_id=coerce(ProtocolId, protocol_id), spis=spis)


# ---------------------------------------------------------------- Vendor ID (§3.12)


@dataclass
class VendorID(Payload):
    payload_type: ClassVar[int] = PayloadType.V
    data: bytes = b""

    def body(self) -> bytes:
        return self.data

    @classmethod
    def parse_body(cls, body: bytes, base: int) -> VendorID:
        return cls(data=body)


# ---------------------------------------------------------------- TSi/TSr (§3.13)


@dataclass
class TrafficSelector:
    """RFC 7296 §3.13.1, TS_IPV4_ADDR_RANGE or TS_IPV6_ADDR_RANGE."""

    start_addr: IPAddress
    end_addr: IPAddress
    ip_protocol: int = 0
    start_port: int = 0
    end_port: int = 65535

    @property
    def ts_type(self) -> int:
        return TsType.TS_IPV4_ADDR_RANGE if self.start_addr.version == 4 else TsType.TS_IPV6_ADDR_RANGE

    def serialize(self) -> bytes:
        if self.start_addr.version != self.end_addr.version:
            raise ValueError("traffic selector mixes IPv4 and IPv6 addresses")
        addrs = self.start_addr.packed + self.end_addr.packed
        return struct.pack("!BBHHH", self.ts_type, self.ip_protocol, 8 + len(addrs),
                           self.start_port, self.end_port) + addrs

    def __str__(self) -> str:
        if self.start_addr == self.end_addr:
            addr = str(self.start_addr)
        else:
            try:
                nets = list(ipaddress.summarize_address_range(self.start_addr, self.end_addr))
            except (TypeError, ValueError):
                nets = []
            addr = str(nets[0]) if len(nets) == 1 else f"{self.start_addr}..{self.end_addr}"
        extra = ""
        if self.ip_protocol or (self.start_port, self.end_port) != (0, 65535):
            ports = "" if (self.start_port, self.end_port) == (0, 65535) else (
                f"/{self.start_port}" if self.start_port == self.end_port else f"/{self.start_port}-{self.end_port}")
            extra = f"[{self.ip_protocol}{ports}]"
        return addr + extra


@dataclass
class RawTrafficSelector:
    """A selector of a type this codec does not interpret (e.g. TS_FC_ADDR_RANGE, RFC 4595)."""

    ts_type: int
    ip_protocol: int = 0
    data: bytes = b""

    def serialize(self) -> bytes:
        return struct.pack("!BBH", self.ts_type, self.ip_protocol, 4 + len(self.data)) + self.data

    def __str__(self) -> str:
        return f"TS({self.ts_type}:{self.data.hex()})"


def _parse_selector(r: Reader) -> TrafficSelector | RawTrafficSelector:
    start = r.offset
    ts_type = r.u8("TS type")
    ip_protocol = r.u8("TS IP protocol")
    length = r.u16("TS selector length")
    if length < 4:
        raise ParseError(start + 2, f"selector length {length} is below 4")
    body = r.take(length - 4, "traffic selector")
    if ts_type in (TsType.TS_IPV4_ADDR_RANGE, TsType.TS_IPV6_ADDR_RANGE):
        size = 4 if ts_type == TsType.TS_IPV4_ADDR_RANGE else 16
        if length != 8 + 2 * size:
            raise ParseError(start + 2, f"{TsType(ts_type).name} selector length is {length}, must be {8 + 2 * size}")
        start_port, end_port = struct.unpack("!HH", body[:4])
        make = ipaddress.IPv4Address if size == 4 else ipaddress.IPv6Address
        return TrafficSelector(make(body[4:4 + size]), make(body[4 + size:]), ip_protocol, start_port, end_port)
    return RawTrafficSelector(ts_type, ip_protocol, body)


@dataclass
class TrafficSelectors(Payload):
    selectors: Sequence[TrafficSelector | RawTrafficSelector] = field(default_factory=list)

    def body(self) -> bytes:
        return struct.pack("!B3x", len(self.selectors)) + b"".join(s.serialize() for s in self.selectors)

    @classmethod
    def parse_body(cls, body: bytes, base: int) -> TrafficSelectors:
        r = Reader(body, base)
        count = r.u8("number of TSs")
        r.take(3, "TS reserved")
        selectors = [_parse_selector(r) for _ in range(count)]
        r.end("traffic selectors payload")
        return cls(selectors=selectors)


@dataclass
class TSi(TrafficSelectors):
    payload_type: ClassVar[int] = PayloadType.TSi


@dataclass
class TSr(TrafficSelectors):
    payload_type: ClassVar[int] = PayloadType.TSr


# ---------------------------------------------------------------- SK (§3.14), SKF (RFC 7383 §2.5)


@dataclass
class SK(Payload):
    """Encrypted and Authenticated payload. `inner_first` is the type of the first
    payload inside (carried in SK's Next Payload field, §3.14); `data` is
    IV || ciphertext || ICV, opaque to the codec."""

    payload_type: ClassVar[int] = PayloadType.SK
    inner_first: int = PayloadType.NONE
    data: bytes = b""

    def body(self) -> bytes:
        return self.data

    @classmethod
    def parse_body(cls, body: bytes, base: int) -> SK:
        return cls(data=body)


@dataclass
class SKF(Payload):
    """Encrypted and Authenticated Fragment, RFC 7383 §2.5. Only fragment 1 carries the
    inner first payload type; the others carry 0."""

    payload_type: ClassVar[int] = PayloadType.SKF
    fragment_number: int = 1
    total_fragments: int = 1
    inner_first: int = PayloadType.NONE
    data: bytes = b""

    def body(self) -> bytes:
        return struct.pack("!HH", self.fragment_number, self.total_fragments) + self.data

    @classmethod
    def parse_body(cls, body: bytes, base: int) -> SKF:
        r = Reader(body, base)
        number = r.u16("SKF fragment number")
        total = r.u16("SKF total fragments")
        return cls(fragment_number=number, total_fragments=total, data=r.rest())


# ---------------------------------------------------------------- CP (§3.15)


@dataclass
class CfgAttribute:
    """RFC 7296 §3.15.1; the reserved R bit is sent as zero."""

    attr_type: int
    value: bytes = b""

    def serialize(self) -> bytes:
        return struct.pack("!HH", self.attr_type & 0x7FFF, len(self.value)) + self.value


@dataclass
class CP(Payload):
    payload_type: ClassVar[int] = PayloadType.CP
    cfg_type: int = CfgType.CFG_REQUEST
    attributes: list[CfgAttribute] = field(default_factory=list)

    def body(self) -> bytes:
        return struct.pack("!B3x", self.cfg_type) + b"".join(a.serialize() for a in self.attributes)

    @classmethod
    def parse_body(cls, body: bytes, base: int) -> CP:
        r = Reader(body, base)
        cfg_type = r.u8("CFG type")
        r.take(3, "CP reserved")
        attributes = []
        while r.remaining:
            attr_type = r.u16("configuration attribute type") & 0x7FFF
            length = r.u16("configuration attribute length")
            attributes.append(CfgAttribute(attr_type, r.take(length, "configuration attribute value")))
        return cls(cfg_type=coerce(CfgType, cfg_type), attributes=attributes)


# ---------------------------------------------------------------- EAP (§3.16)


@dataclass
class EAP(Payload):
    """The payload body is one EAP message (RFC 3748 §4): code, identifier, length, data."""

    payload_type: ClassVar[int] = PayloadType.EAP
    message: bytes = b"\x03\x00\x00\x04"

    @property
    def code(self) -> int:
        return self.message[0]

    def body(self) -> bytes:
        return self.message

    @classmethod
    def parse_body(cls, body: bytes, base: int) -> EAP:
        r = Reader(body, base)
        r.u8("EAP code")
        r.u8("EAP identifier")
        length = r.u16("EAP length")
        if length != len(body):
            raise ParseError(base + 2, f"EAP length field says {length}, payload holds {len(body)} octets")
        return cls(message=body)


# ---------------------------------------------------------------- unknown (§2.5)


@dataclass
class UnknownPayload(Payload):
    """A payload type this codec does not know. §2.5: if `critical` is set the whole
    message must be rejected with UNSUPPORTED_CRITICAL_PAYLOAD; otherwise it is skipped."""

    unknown_type: int = 0
    data: bytes = b""

    @property
    def type_id(self) -> int:
        return self.unknown_type

    def body(self) -> bytes:
        return self.data


PAYLOAD_CLASSES: dict[int, type[Payload]] = {
    cls.payload_type: cls
    for cls in (SA, KE, IDi, IDr, CERT, CERTREQ, AUTH, Nonce, Notify, Delete, VendorID, TSi, TSr, SK, CP, EAP, SKF)
}

ENCRYPTED_TYPES = (PayloadType.SK, PayloadType.SKF)


# ---------------------------------------------------------------- payload chains (§3.2)


def serialize_chain(payloads: Sequence[Payload]) -> tuple[int, bytes]:
    """Serialize payloads with generic headers; returns (type of the first, octets).
    An SK/SKF payload must be last: its Next Payload field names the first inner payload."""
    out = bytearray()
    for index, payload in enumerate(payloads):
        last = index == len(payloads) - 1
        if payload.type_id in ENCRYPTED_TYPES:
            if not last:
                raise ValueError("the Encrypted payload must be the last payload (RFC 7296 §3.14)")
            next_type = payload.inner_first  # type: ignore[attr-defined]
        else:
            next_type = PayloadType.NONE if last else payloads[index + 1].type_id
        body = payload.body()
        if 4 + len(body) > 0xFFFF:
            raise ValueError(f"payload {payload.type_id} is too long ({len(body)} octets)")
        out += struct.pack("!BBH", next_type, 0x80 if payload.critical else 0, 4 + len(body)) + body
    first = payloads[0].type_id if payloads else PayloadType.NONE
    return first, bytes(out)


def parse_chain(data: bytes, first_type: int, base: int = 0) -> list[Payload]:
    """Parse a chain of payloads that starts with a payload of `first_type` and must
    fill `data` exactly. Unknown payload types come back as `UnknownPayload`."""
    payloads: list[Payload] = []
    pos = 0
    current = first_type
    while current != PayloadType.NONE:
        at = base + pos
        if pos + 4 > len(data):
            raise ParseError(at, f"generic header of payload type {current}: needs 4 octets, {len(data) - pos} left")
        next_type, flags, length = struct.unpack_from("!BBH", data, pos)
        if length < 4:
            raise ParseError(at + 2, f"payload length {length} is below 4")
        if pos + length > len(data):
            raise ParseError(at + 2, f"payload length {length} runs past the end ({len(data) - pos} octets left)")
        body = data[pos + 4:pos + length]
        cls = PAYLOAD_CLASSES.get(current)
        critical = bool(flags & 0x80)
        if cls is None:
            payload: Payload = UnknownPayload(unknown_type=current, data=body, critical=critical)
        else:
            payload = cls.parse_body(body, at + 4)
            payload.critical = critical
        pos += length
        payloads.append(payload)
        if current in ENCRYPTED_TYPES:
            payload.inner_first = next_type  # type: ignore[attr-defined]
            if pos != len(data):
                raise ParseError(base + pos, f"{len(data) - pos} octets follow the Encrypted payload, which must be last")
            return payloads
        current = next_type
    if pos != len(data):
        raise ParseError(base + pos, f"{len(data) - pos} octets after the last payload")
    return payloads


def chain_names(payloads: Iterable[Payload], in_request: bool | None = None) -> list[str]:
    """Short names for a payload chain, notifies with their type: `N(NAT_DETECTION_SOURCE_IP)`.
    Knowing whether the chain is in a request, nonces are written `Ni` (the exchange
    initiator's) or `Nr` as in RFC 7296 §1.2 and §1.3."""
    names = []
    for p in payloads:
        cls = type(p)
        if cls is Nonce and in_request is not None:
            names.append("Ni" if in_request else "Nr")
        elif cls is Notify:
            names.append(_notify_label(p.notify_type))  # type: ignore[attr-defined]
        elif cls is UnknownPayload:
            names.append(f"UNKNOWN({p.unknown_type}{',critical' if p.critical else ''})")  # type: ignore[attr-defined]
        else:
            names.append(PAYLOAD_SHORT_NAMES.get(p.type_id, str(p.type_id)))
    return names


@functools.lru_cache(maxsize=1024)
def _notify_label(notify_type: int) -> str:
    return f"N({name_of(NotifyType, notify_type)})"
