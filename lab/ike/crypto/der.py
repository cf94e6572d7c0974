"""A minimal DER encoder and decoder (X.690) for the few structures IKEv2 needs:
RFC 7427 AlgorithmIdentifiers and a PKCS #8 wrapper for fixed DH private values.

Decoding is total: malformed input gives a `ParseError` with the offset in the buffer.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ParseError

TAG_INTEGER = 0x02
TAG_OCTET_STRING = 0x04
TAG_NULL = 0x05
TAG_OID = 0x06
TAG_SEQUENCE = 0x30


def der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def der_tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + der_length(len(content)) + content


def der_sequence(*items: bytes) -> bytes:
    return der_tlv(TAG_SEQUENCE, b"".join(items))


def der_integer(value: int) -> bytes:
    if value < 0:
        raise ValueError("negative INTEGERs are not needed here")
    return der_tlv(TAG_INTEGER, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def der_octet_string(content: bytes) -> bytes:
    return der_tlv(TAG_OCTET_STRING, content)


def der_null() -> bytes:
    return der_tlv(TAG_NULL, b"")


def der_context(number: int, content: bytes) -> bytes:
    """An explicitly tagged [number] constructed field."""
    return der_tlv(0xA0 | number, content)


def der_oid(dotted: str) -> bytes:
    return der_tlv(TAG_OID, oid_content(dotted))


def oid_content(dotted: str) -> bytes:
    """The contents octets of an OBJECT IDENTIFIER (X.690 §8.19)."""
    arcs = [int(a) for a in dotted.split(".")]
    if len(arcs) < 2 or arcs[0] > 2 or (arcs[0] < 2 and arcs[1] > 39):
        raise ValueError(f"not an OBJECT IDENTIFIER: {dotted}")
    out = bytearray()
    for arc in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return bytes(out)


@dataclass(frozen=True)
class Tlv:
    tag: int
    content: bytes
    offset: int
    content_offset: int
    end: int


def der_read(data: bytes, pos: int = 0, limit: int | None = None) -> Tlv:
    """The TLV at `pos` (definite lengths, single-octet tags only)."""
    limit = len(data) if limit is None else limit
    start = pos
    if pos + 2 > limit:
        raise ParseError(pos, "DER: truncated tag/length")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise ParseError(pos, "DER: multi-octet tags are not supported")
    first = data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    elif first == 0x80:
        raise ParseError(start + 1, "DER: indefinite length is not DER")
    else:
        count = first & 0x7F
        if count > 4 or pos + count > limit:
            raise ParseError(start + 1, f"DER: length of {count} octets is unusable")
        length = int.from_bytes(data[pos:pos + count], "big")
        if length < 0x80 or data[pos] == 0:
            raise ParseError(start + 1, "DER: length is not minimally encoded")
        pos += count
    if pos + length > limit:
        raise ParseError(start, f"DER: value of {length} octets runs past the end")
    return Tlv(tag, bytes(data[pos:pos + length]), start, pos, pos + length)


def der_children(tlv: Tlv) -> list[Tlv]:
    """The TLVs inside a constructed value, in order."""
    items = []
    pos = 0
    while pos < len(tlv.content):
        child = der_read(tlv.content, pos)
        items.append(Tlv(child.tag, child.content, tlv.content_offset + child.offset,
                         tlv.content_offset + child.content_offset, tlv.content_offset + child.end))
        pos = child.end
    return items


def oid_to_str(content: bytes, offset: int = 0) -> str:
    if not content:
        raise ParseError(offset, "DER: empty OBJECT IDENTIFIER")
    arcs: list[int] = []
    value = 0
    for i, octet in enumerate(content):
        if value == 0 and octet == 0x80:
            raise ParseError(offset + i, "DER: OBJECT IDENTIFIER arc is not minimally encoded")
        value = (value << 7) | (octet & 0x7F)
        if not octet & 0x80:
            arcs.append(value)
            value = 0
    if content[-1] & 0x80:
        raise ParseError(offset + len(content) - 1, "DER: OBJECT IDENTIFIER ends inside an arc")
    first = arcs[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(str(a) for a in head + arcs[1:])


def der_int_value(tlv: Tlv) -> int:
    if tlv.tag != TAG_INTEGER or not tlv.content:
        raise ParseError(tlv.offset, "DER: expected an INTEGER")
    if tlv.content[0] & 0x80:
        raise ParseError(tlv.content_offset, "DER: negative INTEGER where a count was expected")
    return int.from_bytes(tlv.content, "big")
