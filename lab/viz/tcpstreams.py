"""TCP streams that carry IKE and ESP (RFC 9329) followed through a capture, cut into frames.

    streams = TcpStreams()
    for frame, stamp, ip_packet in ...:                # capture order
        for item in streams.feed(ip_packet, frame):    # the frames this segment completed
            ...                                        # StreamFrame(kind="ike" | "esp" | "keepalive", data, ...)
    streams.close()                                    # the capture ended: what was held back, if anything
    streams.stats                                      # streams, resynchronised, skipped segments, ...

A stream is recognised by its first octets, "IKETCP" (RFC 9329 §4), on any port (4500 by
default, 443 behind a hotel's firewall); its other direction goes with it. The framing itself
is lab.esp.tcpencap's (one framer in the lab). What a capture does to a stream is handled
here: segments retransmitted (read once), out of order (held until the hole is filled),
a frame split over segments or several in one, a segment the capture lost (the hole
skipped after a while, the framing found again: at a later segment's start, or inside one
where an ESP packet of a known SPI begins), and a stream that started before the
capture (no SYN, no prefix: followed from the first segment that begins a frame, when the
port is 4500 or one where a stream was recognised). Each of these is counted in `stats`.
IPv4 and IPv6. Never raises for bad bytes.
"""
from __future__ import annotations

import ipaddress
import struct
from collections import Counter
from dataclasses import dataclass, field

from lab.esp.tcpencap import IKE_HEADER, LENGTH_SIZE, NON_ESP_MARKER, PREFIX, TCP_PORT, Frame, StreamDecoder

HOLD_SEGMENTS = 16        # segments held behind a hole before it is taken as lost by the capture
SYN, RST, ACK = 0x02, 0x04, 0x10

Key = tuple[str, int, str, int]   # (src, sport, dst, dport) of one direction


@dataclass
class StreamFrame:
    """One frame of a stream: an IKE message (without its marker), an ESP packet or a keepalive."""

    kind: str                  # "ike", "esp", "keepalive"
    data: bytes
    src: str
    sport: int
    dst: str
    dport: int
    frames: list[int]          # the capture frames of the segments that carried it, in stream order
    offset: int | None = None  # where its length field is in the completing segment's IP packet, when all
                               # of the frame is in that segment (else None: split over segments)
    alone: bool = False        # the only stream data in its segment
    server_port: int = 0       # the port the stream was opened to (4500, 443, ...)

    @property
    def wire(self) -> bytes:
        """The frame as it travels: length, non-ESP marker for IKE, then the message (RFC 9329 §3)."""
        body = (NON_ESP_MARKER if self.kind == "ike" else b"") + self.data
        return struct.pack("!H", LENGTH_SIZE + len(body)) + body


def tcp_segment(packet: bytes) -> tuple[str, int, str, int, int, int, int, bytes] | None:
    """(src, sport, dst, dport, seq, flags, offset of the payload in `packet`, payload) of an
    IPv4 or IPv6 packet carrying a TCP segment (not a fragment), else None."""
    if not packet:
        return None
    version = packet[0] >> 4
    if version == 4 and len(packet) >= 20:
        ihl = (packet[0] & 0x0F) * 4
        if packet[9] != 6 or struct.unpack_from("!H", packet, 6)[0] & 0x3FFF:
            return None
        end = min(struct.unpack_from("!H", packet, 2)[0], len(packet))
        src, dst = str(ipaddress.IPv4Address(packet[12:16])), str(ipaddress.IPv4Address(packet[16:20]))
    elif version == 6 and len(packet) >= 40 and packet[6] == 6:
        ihl = 40
        end = min(40 + struct.unpack_from("!H", packet, 4)[0], len(packet))
        src, dst = str(ipaddress.IPv6Address(packet[8:24])), str(ipaddress.IPv6Address(packet[24:40]))
    else:
        return None
    if end - ihl < 20:
        return None
    sport, dport, seq = struct.unpack_from("!HHI", packet, ihl)
    data_offset = ihl + (packet[ihl + 12] >> 4) * 4
    if data_offset > end:
        return None
    return src, sport, dst, dport, seq, packet[ihl + 13], data_offset, packet[data_offset:end]


def _starts_frames(data: bytes) -> bool:
    """Whether a segment taken mid-stream plausibly begins at a frame boundary (RFC 9329 §3):
    its frames read cleanly and either end exactly with it or hold an IKE message whose header
    agrees with the frame's length (a random octet pair rarely does either)."""
    decoder = StreamDecoder(expect_prefix=False)
    frames = decoder.feed(data)
    if decoder.error is not None:
        return False
    if frames and not decoder.buffer:
        return True
    if any(f.kind == "ike" for f in frames):
        return True
    rest = bytes(decoder.buffer)
    if len(rest) < LENGTH_SIZE + 4 + IKE_HEADER or rest[2:6] != NON_ESP_MARKER:
        return False
    length = struct.unpack_from("!H", rest)[0]
    declared = struct.unpack_from("!I", rest, 6 + 24)[0]
    return declared == length - LENGTH_SIZE - 4 and rest[6 + 17] == 0x20  # RFC 7296 §3.1: version 2.0


def _known_frames(data: bytes, spis: set[bytes]) -> bool:
    """Whether `data` reads cleanly as frames whose ESP packets all carry SPIs in `spis`, the
    last one possibly unfinished."""
    decoder = StreamDecoder(expect_prefix=False)
    frames = decoder.feed(data)
    if decoder.error is not None or any(f.kind == "esp" and f.data[:4] not in spis for f in frames):
        return False
    rest = bytes(decoder.buffer)
    return len(rest) < LENGTH_SIZE + 4 or rest[2:6] in spis or rest[2:6] == NON_ESP_MARKER


def _boundary(data: bytes, spis: set[bytes]) -> int | None:
    """Where a frame plausibly begins in a segment taken after a hole or mid-stream (RFC 9329 §3):
    at its start (_starts_frames), else where an ESP packet with an SPI this direction already
    carried begins (four octets a random place rarely holds) and what follows reads cleanly."""
    if _starts_frames(data):
        return 0
    if not spis:
        return None
    for at in range(1, len(data) - LENGTH_SIZE - 4 + 1):
        if data[at + LENGTH_SIZE:at + LENGTH_SIZE + 4] in spis and _known_frames(data[at:], spis):
            return at
    return None


@dataclass
class _Direction:
    key: Key
    synced: bool               # the next octet expected (nxt) is known to start or continue the framing
    nxt: int = 0
    decoder: StreamDecoder | None = None
    held: dict[int, tuple[bytes, int, int]] = field(default_factory=dict)   # seq -> (data, frame, ip offset)
    chunks: list[tuple[int, int, int, int]] = field(default_factory=list)   # (start, end, frame, ip offset)
    position: int = 0          # stream octets given to the decoder since it started
    spis: set[bytes] = field(default_factory=set)   # of the ESP packets seen: where to find the framing again
    consumed: int = 0          # of those, the octets of the frames it has returned (and the prefix)


class TcpStreams:
    """Every RFC 9329 stream of a capture, segment by segment (see the module's text)."""

    def __init__(self, port: int = TCP_PORT) -> None:
        self.port = port
        self.directions: dict[Key, _Direction] = {}
        self.pending: dict[Key, int] = {}      # client direction -> its SYN's seq + 1, prefix not seen yet
        self.servers: set[tuple[str, int]] = set()   # endpoints where a stream was recognised
        self.ignored: set[Key] = set()         # streams seen to carry something else
        self.stats: Counter[str] = Counter()
        self.notes: list[str] = []             # what a reader should know: resynchronised, skipped, broken

    # -- which streams are followed

    def _ours(self, key: Key) -> bool:
        src, sport, dst, dport = key
        return self.port in (sport, dport) or (src, sport) in self.servers or (dst, dport) in self.servers

    def _start(self, key: Key, nxt: int, prefix: bool) -> _Direction:
        direction = _Direction(key, True, nxt, StreamDecoder(expect_prefix=prefix))
        direction.consumed = len(PREFIX) if prefix else 0
        self.directions[key] = direction
        return direction

    def feed(self, packet: bytes, frame: int) -> list[StreamFrame]:
        """The frames this IP packet's TCP segment completes (in stream order), if it belongs to
        an RFC 9329 stream; [] otherwise."""
        segment = tcp_segment(packet)
        if segment is None:
            return []
        src, sport, dst, dport, seq, flags, offset, data = segment
        key, back = (src, sport, dst, dport), (dst, dport, src, sport)
        if flags & SYN:
            self.ignored.discard(key)
            self.ignored.discard(back)
            self.directions.pop(key, None)
            if not flags & ACK:   # the client's SYN: its data will say whether this is RFC 9329
                self.pending[key] = (seq + 1) & 0xFFFFFFFF
                self.directions.pop(back, None)
            elif back in self.pending:   # the server's SYN-ACK: followed once the client's prefix is seen
                self._start(key, (seq + 1) & 0xFFFFFFFF, False)
            return []
        if flags & RST:
            return self._end(key, "reset") + self._end(back, "reset")
        if not data or key in self.ignored:
            return []
        if key in self.pending:
            expected = self.pending[key]
            if seq == expected and data[:len(PREFIX)] == PREFIX[:len(data)]:
                # RFC 9329 §4: the stream prefix; the stream is followed in both directions
                del self.pending[key]
                self.servers.add((dst, dport))
                self.stats["streams"] += 1
                self._start(key, expected, True)
            elif seq == expected:
                del self.pending[key]
                self.ignored |= {key, back}
                self.directions.pop(back, None)
                return []
            else:
                return []   # the first data segment is still to come (or lost): nothing to say yet
        direction = self.directions.get(key)
        if direction is None:
            if key in self.ignored or not self._ours(key):
                return []
            if back in self.pending:   # the server spoke first: not RFC 9329 (the initiator speaks first)
                del self.pending[back]
                self.ignored |= {key, back}
                return []
            # a stream that started before the capture: followed from a segment that begins a frame
            direction = self.directions[key] = _Direction(key, False)
            self.stats["streams taken up mid-stream"] += 1
            self.notes.append(f"{src}:{sport} > {dst}:{dport}: the stream started before the capture (no SYN, no "
                              "\"IKETCP\" prefix); followed from the first segment that begins a frame")
        return self._segment(direction, seq, data, frame, offset)

    # -- one direction

    def _segment(self, direction: _Direction, seq: int, data: bytes, frame: int, offset: int) -> list[StreamFrame]:
        if not direction.synced:
            return self._resync(direction, seq, data, frame, offset)
        behind = (direction.nxt - seq) & 0xFFFFFFFF
        if behind and behind < 1 << 31:   # it starts before what is expected: a retransmission
            if behind >= len(data):
                self.stats["retransmitted segments"] += 1
                return []
            self.stats["retransmitted segments"] += 1   # partly new: only the new octets count
            data, seq, offset = data[behind:], direction.nxt, offset + behind
        if seq != direction.nxt:
            if seq not in direction.held or len(direction.held[seq][0]) < len(data):
                if seq not in direction.held:
                    self.stats["segments held behind a hole"] += 1
                direction.held[seq] = (data, frame, offset)
            if len(direction.held) > HOLD_SEGMENTS:
                return self._skip_hole(direction)
            return []
        out = self._deliver(direction, data, frame, offset)
        return out + self._drain(direction)

    def _drain(self, direction: _Direction) -> list[StreamFrame]:
        """Held segments that now follow on, delivered."""
        out: list[StreamFrame] = []
        while direction.synced and direction.held:
            progressed = False
            for seq in sorted(direction.held, key=lambda s: (s - direction.nxt) & 0xFFFFFFFF):
                behind = (direction.nxt - seq) & 0xFFFFFFFF
                data, frame, offset = direction.held[seq]
                if behind and behind < 1 << 31:
                    del direction.held[seq]
                    if behind < len(data):
                        out += self._deliver(direction, data[behind:], frame, offset + behind)
                        progressed = True
                    break
                if seq == direction.nxt:
                    del direction.held[seq]
                    out += self._deliver(direction, data, frame, offset)
                    progressed = True
                    break
            if not progressed:
                break
        return out

    def _skip_hole(self, direction: _Direction) -> list[StreamFrame]:
        """The capture lost what fills the hole: skip to the first held segment that begins a frame."""
        self.stats["holes skipped (segments the capture lost)"] += 1
        src, sport, dst, dport = direction.key
        self.notes.append(f"{src}:{sport} > {dst}:{dport}: segments missing from the capture; the frames around "
                          "the hole are left out")
        held = sorted(direction.held.items(), key=lambda item: (item[0] - direction.nxt) & 0xFFFFFFFF)
        direction.held.clear()
        direction.synced = False
        direction.chunks.clear()
        out: list[StreamFrame] = []
        for seq, (data, frame, offset) in held:
            if direction.synced:
                direction.held[seq] = (data, frame, offset)
            else:
                out += self._resync(direction, seq, data, frame, offset)
        return out + self._drain(direction)

    def _resync(self, direction: _Direction, seq: int, data: bytes, frame: int, offset: int) -> list[StreamFrame]:
        at = _boundary(data, direction.spis)
        if at is None:
            self.stats["segments skipped (not at a frame boundary)"] += 1
            return []
        self.stats["resynchronised"] += 1
        data, seq, offset = data[at:], (seq + at) & 0xFFFFFFFF, offset + at
        direction.synced, direction.nxt = True, seq
        direction.decoder = StreamDecoder(expect_prefix=False)
        direction.position = direction.consumed = 0
        direction.chunks.clear()
        return self._deliver(direction, data, frame, offset)

    def _deliver(self, direction: _Direction, data: bytes, frame: int, offset: int) -> list[StreamFrame]:
        decoder = direction.decoder
        assert decoder is not None
        direction.chunks.append((direction.position, direction.position + len(data), frame, offset))
        direction.position += len(data)
        direction.nxt = (direction.nxt + len(data)) & 0xFFFFFFFF
        out = [self._located(direction, item) for item in decoder.feed(data)]
        if decoder.error is not None:
            src, sport, dst, dport = direction.key
            self.stats[f"framing errors ({decoder.error.reason})"] += 1
            self.notes.append(f"{src}:{sport} > {dst}:{dport}: {decoder.error} (frame #{frame}); the framing is "
                              "looked for again from a later segment")
            direction.synced = False
            direction.chunks.clear()
        return out

    def _located(self, direction: _Direction, item: Frame) -> StreamFrame:
        start = direction.consumed
        end = start + item.wire_length
        direction.consumed = end
        carriers = [c for c in direction.chunks if c[0] < end and c[1] > start]
        src, sport, dst, dport = direction.key
        if (dst, dport) in self.servers or ((src, sport) not in self.servers and dport == self.port):
            server_port = dport
        else:
            server_port = sport
        out = StreamFrame(item.kind, item.data, src, sport, dst, dport, [c[2] for c in carriers],
                          server_port=server_port)
        if len(carriers) == 1:
            chunk = carriers[0]
            out.offset = chunk[3] + start - chunk[0]
            out.alone = chunk[0] == start and chunk[1] == end
        direction.chunks = [c for c in direction.chunks if c[1] > end]
        self.stats[f"{item.kind} frames"] += 1
        if item.kind == "esp":
            direction.spis.add(item.data[:4])
        return out

    def _end(self, key: Key, why: str) -> list[StreamFrame]:
        """The stream ended (reset): what was held behind a hole, the hole skipped."""
        self.pending.pop(key, None)
        direction = self.directions.get(key)
        if direction is None:
            return []
        out = self._skip_hole(direction) if direction.held else []
        del self.directions[key]
        if direction.decoder is not None and direction.synced and direction.decoder.buffer:
            self.stats[f"streams ended inside a frame ({why})"] += 1
        return out

    def close(self) -> list[StreamFrame]:
        """The capture ended: frames behind a hole that never filled, after skipping it."""
        out: list[StreamFrame] = []
        for direction in list(self.directions.values()):
            if direction.held:
                out += self._skip_hole(direction)
        return out


__all__ = ["StreamFrame", "TcpStreams", "tcp_segment"]
