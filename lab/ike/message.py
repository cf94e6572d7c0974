"""The IKEv2 message: header (RFC 7296 §3.1) and payload chain; UDP 4500 demultiplexing
(RFC 3948 §2.2, RFC 7296 §2.23)."""
from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TypeVar

from .const import ExchangeType, HeaderFlag, PayloadType, coerce, name_of
from .errors import ParseError
from .payloads import ENCRYPTED_TYPES, Payload, UnknownPayload, chain_names, parse_chain, serialize_chain

HEADER_LENGTH = 28
P = TypeVar("P", bound=Payload)


@dataclass
class Header:
    """The fixed 28-octet IKE header, RFC 7296 §3.1."""

    spi_i: bytes
    spi_r: bytes
    next_payload: int
    major_version: int
    minor_version: int
    exchange: int
    flags: int
    message_id: int
    length: int

    @property
    def is_initiator(self) -> bool:
        return bool(self.flags & HeaderFlag.INITIATOR)

    @property
    def is_response(self) -> bool:
        return bool(self.flags & HeaderFlag.RESPONSE)

    def serialize(self) -> bytes:
        return struct.pack("!8s8sBBBBII", self.spi_i, self.spi_r, self.next_payload,
                           (self.major_version << 4) | self.minor_version, self.exchange,
                           self.flags, self.message_id, self.length)

    @classmethod
    def parse(cls, data: bytes) -> Header:
        if len(data) < HEADER_LENGTH:
            raise ParseError(len(data), f"IKE header needs {HEADER_LENGTH} octets, datagram has {len(data)}")
        spi_i, spi_r, next_payload, version, exchange, flags, message_id, length = struct.unpack_from(
            "!8s8sBBBBII", data)
        return cls(spi_i, spi_r, next_payload, version >> 4, version & 0x0F,
                   coerce(ExchangeType, exchange), flags, message_id, length)


@dataclass
class Message:
    """An IKEv2 message. For a protected message the last payload is SK or SKF, whose
    contents stay opaque here (see lab.ike.protect for encryption)."""

    spi_i: bytes
    spi_r: bytes
    exchange: int
    message_id: int
    is_initiator: bool
    is_response: bool
    payloads: list[Payload] = field(default_factory=list)
    version_flag: bool = False
    major_version: int = 2
    minor_version: int = 0

    @property
    def flags(self) -> int:
        return ((HeaderFlag.INITIATOR if self.is_initiator else 0)
                | (HeaderFlag.RESPONSE if self.is_response else 0)
                | (HeaderFlag.VERSION if self.version_flag else 0))

    def header(self, next_payload: int, length: int) -> Header:
        return Header(self.spi_i, self.spi_r, next_payload, self.major_version, self.minor_version,
                      self.exchange, self.flags, self.message_id, length)

    def serialize(self) -> bytes:
        if len(self.spi_i) != 8 or len(self.spi_r) != 8:
            raise ValueError("IKE SPIs are 8 octets each (RFC 7296 §3.1)")
        first, body = serialize_chain(self.payloads)
        return self.header(first, HEADER_LENGTH + len(body)).serialize() + body

    @classmethod
    def parse(cls, data: bytes) -> Message:
        """Parse one IKE message (without a non-ESP marker). Any input gives a Message or
        a ParseError naming the offset and the reason."""
        header = Header.parse(data)
        if header.major_version != 2:
            # RFC 7296 §2.5: a major version we do not speak; the header is still usable
            raise ParseError(17, f"IKE major version {header.major_version} is not 2")
        if header.length != len(data):
            raise ParseError(24, f"header length {header.length} differs from the datagram's {len(data)} octets")
        payloads = parse_chain(data[HEADER_LENGTH:], header.next_payload, HEADER_LENGTH)
        return cls(header.spi_i, header.spi_r, header.exchange, header.message_id,
                   header.is_initiator, header.is_response, payloads,
                   bool(header.flags & HeaderFlag.VERSION), header.major_version, header.minor_version)

    # -- convenience for callers

    def get(self, kind: type[P]) -> P | None:
        for payload in self.payloads:
            if isinstance(payload, kind):
                return payload
        return None

    def all(self, kind: type[P]) -> Iterator[P]:
        return (p for p in self.payloads if isinstance(p, kind))

    @property
    def encrypted(self) -> Payload | None:
        last = self.payloads[-1] if self.payloads else None
        return last if last is not None and last.type_id in ENCRYPTED_TYPES else None

    def unsupported_critical(self) -> list[int]:
        """Types of unknown payloads with the critical bit set: RFC 7296 §2.5 says such a
        message is rejected with UNSUPPORTED_CRITICAL_PAYLOAD naming the type."""
        return [p.unknown_type for p in self.payloads if isinstance(p, UnknownPayload) and p.critical]

    @property
    def exchange_name(self) -> str:
        return name_of(ExchangeType, self.exchange)

    def summary(self, inner: Sequence[Payload] | None = None) -> str:
        """One line in the style of strongSwan's log: `IKE_SA_INIT request 0 [ SA KE Ni ... ]`."""
        kind = "response" if self.is_response else "request"
        names = chain_names(self.payloads, not self.is_response)
        if inner is not None:
            names = names[:-1] + [f"{names[-1]}{{ {' '.join(chain_names(inner, not self.is_response))} }}"]
        return f"{self.exchange_name} {kind} {self.message_id} [ {' '.join(names)} ]"


# ---------------------------------------------------------------- UDP 4500 (RFC 3948)


class Datagram(Enum):
    IKE = "ike"
    ESP = "esp"
    KEEPALIVE = "keepalive"


NON_ESP_MARKER = b"\x00\x00\x00\x00"


def classify_udp(port: int, payload: bytes) -> tuple[Datagram, bytes]:
    """Tell what a UDP datagram to or from IKE port `port` carries.

    Port 500 carries only IKE. On 4500 (RFC 3948 §2.2): a single 0xFF octet is a
    NAT-keepalive; four zero octets (the non-ESP marker) precede an IKE message;
    anything else is ESP, whose SPI is never zero (RFC 4303 §2.1).
    """
    if port != 4500:
        return Datagram.IKE, payload
    if payload == b"\xff":
        return Datagram.KEEPALIVE, payload
    if payload[:4] == NON_ESP_MARKER:
        return Datagram.IKE, payload[4:]
    return Datagram.ESP, payload


def frame_udp(port: int, ike_message: bytes) -> bytes:
    """The UDP payload for an IKE message sent from or to `port` (non-ESP marker on 4500)."""
    return NON_ESP_MARKER + ike_message if port == 4500 else ike_message


def is_ike_header_plausible(data: bytes) -> bool:
    """Cheap check used by capture tools before a full parse."""
    if len(data) < HEADER_LENGTH:
        return False
    return data[17] >> 4 == 2 and data[18] in set(ExchangeType) | set(range(240, 256))


__all__ = [
    "Datagram", "HEADER_LENGTH", "Header", "Message", "NON_ESP_MARKER", "PayloadType",
    "classify_udp", "frame_udp", "is_ike_header_plausible",
]
