"""IKE and ESP in one TCP stream (RFC 9329): the framing, sans-I/O.

The initiator opens a TCP connection (port 4500 by default, RFC 9329 §2) and first sends the
six octets "IKETCP" (the stream prefix, §4). After that, in both directions, every message is
a 16-bit length followed by the message (§3): an IKE message starts with the four zero octets
of the non-ESP marker (§3.1), an ESP packet with its SPI, never zero (§3.2), and a NAT
keepalive is the single octet 0xFF (§6.6). The length counts itself.

    decoder = StreamDecoder(expect_prefix=True)      # the responder's side of a stream
    for frame in decoder.feed(data):                 # what recv() gave, any size
        ...                                          # Frame(kind="ike" | "esp" | "keepalive", data)
    if decoder.error:                                # hostile or broken framing: close the stream
        ...

    PREFIX + frame_ike(message)                      # what an initiator writes first
    frame_esp(packet)

A decoder that met an error stays failed (a stream has no resynchronisation point, §3: a bad
length loses every later boundary): it hands back the frames before the error, then nothing.
Pure: bytes in, frames out; no socket, no clock.
"""
from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass
from typing import Literal

PREFIX = b"IKETCP"          # RFC 9329 §4: the stream prefix, sent once by the initiator
NON_ESP_MARKER = bytes(4)   # RFC 9329 §3.1 (as RFC 3948 §2.2 on UDP 4500)
KEEPALIVE = b"\xff"         # RFC 9329 §6.6: a NAT keepalive is one octet, 0xFF
LENGTH_SIZE = 2             # RFC 9329 §3: a 16-bit length that counts itself
IKE_HEADER = 28             # RFC 7296 §3.1
ESP_MIN = 8                 # RFC 4303 §2: SPI and sequence number at least
# the largest frame accepted: strongSwan's charon.max_packet default (an IKE message over TCP
# needs no fragmentation, RFC 9329 §7.5; an ESP packet is at most the tunnel MTU plus overhead)
MAX_FRAME = 10000
TCP_PORT = 4500             # RFC 9329 §2: the responder's port unless configured otherwise

FrameKind = Literal["ike", "esp", "keepalive"]


class FramingError(ValueError):
    """The stream broke the framing of RFC 9329 §3-§4; `reason` is a short key for counters."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True)
class Frame:
    kind: FrameKind
    data: bytes  # the IKE message without the marker, the ESP packet, or b"\xff"

    @property
    def wire_length(self) -> int:
        """Octets this frame took in the stream (length field and marker included)."""
        return LENGTH_SIZE + len(self.data) + (len(NON_ESP_MARKER) if self.kind == "ike" else 0)


def _frame(body: bytes) -> bytes:
    total = LENGTH_SIZE + len(body)
    if total > 0xFFFF:
        raise ValueError(f"a {len(body)}-octet message does not fit a 16-bit length (RFC 9329 §3)")
    return struct.pack("!H", total) + body


def frame_ike(message: bytes) -> bytes:
    """An IKE message (as serialized, no marker) framed for the stream (RFC 9329 §3.1)."""
    return _frame(NON_ESP_MARKER + message)


def frame_esp(packet: bytes) -> bytes:
    """An ESP packet (SPI first) framed for the stream (RFC 9329 §3.2)."""
    if len(packet) < 4 or packet[:4] == NON_ESP_MARKER:
        raise ValueError("an ESP packet starts with a non-zero SPI (RFC 4303 §2.1)")
    return _frame(packet)


def frame_keepalive() -> bytes:
    return _frame(KEEPALIVE)  # RFC 9329 §6.6


class StreamDecoder:
    """One direction of one TCP-encapsulated stream. `expect_prefix`: this is what an
    initiator sends, so it must start with "IKETCP" (the responder's side, RFC 9329 §4)."""

    def __init__(self, expect_prefix: bool, max_frame: int = MAX_FRAME) -> None:
        self.expect_prefix = expect_prefix
        self.max_frame = max_frame
        self.buffer = bytearray()
        self.error: FramingError | None = None
        self.stats: Counter[str] = Counter()  # frames by kind, octets

    def feed(self, data: bytes) -> list[Frame]:
        """The frames that `data` completes, in order; on bad framing the frames before it and
        `self.error` set (the caller closes the stream). After an error, data is ignored."""
        if self.error is not None:
            return []
        self.buffer += data
        self.stats["octets"] += len(data)
        frames: list[Frame] = []
        try:
            if self.expect_prefix:
                if len(self.buffer) < len(PREFIX):
                    if not PREFIX.startswith(bytes(self.buffer)):
                        raise FramingError("bad prefix", f"the stream starts {bytes(self.buffer)!r}, not 'IKETCP' "
                                                         f"(RFC 9329 §4)")
                    return frames
                if self.buffer[:len(PREFIX)] != PREFIX:
                    raise FramingError("bad prefix", f"the stream starts {bytes(self.buffer[:6])!r}, not 'IKETCP' "
                                                     f"(RFC 9329 §4)")
                del self.buffer[:len(PREFIX)]
                self.expect_prefix = False
            at = 0
            while len(self.buffer) - at >= LENGTH_SIZE:
                length = struct.unpack_from("!H", self.buffer, at)[0]
                # RFC 9329 §3: the length counts itself; an empty frame or one too big is not a message
                if length <= LENGTH_SIZE:
                    raise FramingError("short frame", f"length field {length} (at least 3: it counts itself)")
                if length > self.max_frame:
                    raise FramingError("oversized frame", f"length field {length} > {self.max_frame}")
                if len(self.buffer) - at < length:
                    break
                body = bytes(self.buffer[at + LENGTH_SIZE:at + length])
                frames.append(self._classify(body))
                at += length
            del self.buffer[:at]
        except FramingError as err:
            self.error = err
            self.stats[f"error {err.reason}"] += 1
            self.buffer.clear()
        return frames

    def _classify(self, body: bytes) -> Frame:
        if body == KEEPALIVE:
            self.stats["keepalive"] += 1
            return Frame("keepalive", body)
        if len(body) < 4:
            raise FramingError("short frame", f"{len(body)}-octet message (neither IKE nor ESP)")
        if body[:4] == NON_ESP_MARKER:  # RFC 9329 §3.1
            message = body[4:]
            if len(message) < IKE_HEADER:
                raise FramingError("short frame", f"{len(message)}-octet IKE message (the header alone is 28)")
            declared = struct.unpack_from("!I", message, 24)[0]
            # RFC 7296 §3.1: the header's Length is the whole message; a frame is one message
            if declared != len(message):
                raise FramingError("garbage", f"an IKE header declaring {declared} octets in a "
                                              f"{len(message)}-octet frame")
            self.stats["ike"] += 1
            return Frame("ike", message)
        spi = struct.unpack_from("!I", body)[0]
        if spi < 256:  # RFC 4303 §2.1: SPIs 1-255 are reserved, so no ESP packet carries one
            raise FramingError("garbage", f"SPI {spi} (reserved) in an ESP frame")
        if len(body) < ESP_MIN:
            raise FramingError("short frame", f"{len(body)}-octet ESP packet (SPI and sequence number are 8)")
        self.stats["esp"] += 1
        return Frame("esp", body)

    def close(self) -> FramingError | None:
        """The stream ended: an unfinished frame (or prefix) left over is an error."""
        if self.error is None and self.buffer:
            self.error = FramingError("truncated", f"the stream ended inside a frame ({len(self.buffer)} octets "
                                                   f"left)")
            self.stats[f"error {self.error.reason}"] += 1
        return self.error
