"""Packets as they pass: a pcap file read while tcpdump still writes it (`PcapTail`), the
key tables of a running lab that grow while its daemons make SAs (`LiveKeys`), and the
annotation of each packet (`LiveTap`, on lab.viz.analysis.PacketAnalyser). Nothing here
starts a process: the live tap's socket is opened by lab.net.watch."""
from __future__ import annotations

import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .analysis import Packet, PacketAnalyser, fingerprint
from .keys import ESP_TABLE, IKE_TABLE, KeyTables, load_keys

ETH_P_IP, ETH_P_IPV6, ETH_P_8021Q = 0x0800, 0x86DD, 0x8100
# pcap link types (https://www.tcpdump.org/linktypes.html)
LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_LINUX_SLL, LINKTYPE_IPV4, LINKTYPE_IPV6 = 0, 1, 101, 113, 228, 229
LINKTYPE_LINUX_SLL2 = 276


def ip_of_frame(linktype: int, frame: bytes) -> bytes | None:
    """The IP packet inside a link-layer frame (Ethernet with or without a VLAN tag, Linux
    cooked v1/v2, raw IP, BSD loopback), or None when it carries something else (ARP, ...)."""
    if linktype == LINKTYPE_ETHERNET:
        if len(frame) < 14:
            return None
        ethertype, offset = struct.unpack_from("!H", frame, 12)[0], 14
        if ethertype == ETH_P_8021Q and len(frame) >= 18:
            ethertype, offset = struct.unpack_from("!H", frame, 16)[0], 18
        return frame[offset:] if ethertype in (ETH_P_IP, ETH_P_IPV6) else None
    if linktype == LINKTYPE_LINUX_SLL:
        return frame[16:] if len(frame) >= 16 and struct.unpack_from("!H", frame, 14)[0] in (ETH_P_IP, ETH_P_IPV6) \
            else None
    if linktype == LINKTYPE_LINUX_SLL2:
        return frame[20:] if len(frame) >= 20 and struct.unpack_from("!H", frame, 0)[0] in (ETH_P_IP, ETH_P_IPV6) \
            else None
    if linktype == LINKTYPE_NULL:
        return frame[4:] if len(frame) > 4 else None
    if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6, 12, 14):
        return frame
    return None


class PcapStream:
    """A classic pcap byte stream fed in pieces: `feed(data)` returns the complete records
    so far as (frame number, time, IP packet or None)."""

    def __init__(self) -> None:
        self.buffer = b""
        self.header_done = False
        self.endian = "<"
        self.nanos = False
        self.linktype = LINKTYPE_ETHERNET
        self.frame = 0
        self.error: str | None = None

    def feed(self, data: bytes) -> list[tuple[int, float, bytes | None]]:
        self.buffer += data
        out: list[tuple[int, float, bytes | None]] = []
        if not self.header_done:
            if len(self.buffer) < 24:
                return out
            magic = self.buffer[:4]
            if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
                self.endian = "<"
            elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
                self.endian = ">"
            else:
                self.error = "not a pcap stream (pcapng is not read live)"
                self.buffer = b""
                return out
            self.nanos = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
            self.linktype = struct.unpack_from(self.endian + "I", self.buffer, 20)[0] & 0x0FFFFFFF
            self.buffer = self.buffer[24:]
            self.header_done = True
        record = struct.Struct(self.endian + "IIII")
        while len(self.buffer) >= 16:
            seconds, fraction, caplen, _length = record.unpack_from(self.buffer)
            if len(self.buffer) < 16 + caplen:
                break
            frame = self.buffer[16:16 + caplen]
            self.buffer = self.buffer[16 + caplen:]
            self.frame += 1
            stamp = seconds + fraction / (1e9 if self.nanos else 1e6)
            out.append((self.frame, stamp, ip_of_frame(self.linktype, frame)))
        return out


class PcapTail:
    """The records a growing pcap file gained since the last `read()`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.offset = 0
        self.stream = PcapStream()

    def read(self) -> list[tuple[int, float, bytes | None]]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except OSError:
            return []
        self.offset += len(data)
        return self.stream.feed(data)


class LiveKeys:
    """Key tables from several folders (a running lab's DIR/nodes/<node>/keys/, DIR/keys/),
    read again when one of their files changes; `refresh()` says whether they did."""

    def __init__(self, folders: Iterable[str | Path] = (), patterns: Iterable[tuple[Path, str]] = ()) -> None:
        self.folders = [Path(f) for f in folders]
        self.patterns = list(patterns)   # (base, glob) to find folders that appear later
        self.tables = KeyTables()
        self.stamps: dict[Path, int] = {}    # st_mtime_ns
        self.checked = 0.0
        self.refresh(force=True)

    def _all_folders(self) -> list[Path]:
        found = list(self.folders)
        for base, pattern in self.patterns:
            found += [p for p in sorted(base.glob(pattern)) if p.is_dir() and p not in found]
        return found

    def refresh(self, force: bool = False, every: float = 0.3) -> bool:
        now = time.monotonic()
        if not force and now - self.checked < every:
            return False
        self.checked = now
        stamps = {}
        folders = self._all_folders()
        for folder in folders:
            for name in (IKE_TABLE, ESP_TABLE):
                path = folder / name
                try:
                    stamps[path] = path.stat().st_mtime_ns
                except OSError:
                    pass
        if stamps == self.stamps and not force:
            return False
        self.stamps = stamps
        merged = KeyTables()
        for folder in folders:
            tables = load_keys(folder)
            for rows in tables.ike_generations.values():
                for row in rows:
                    merged.add_ike(row)
            merged.ike.update(tables.ike)
            for spi, entries in tables.esp.items():
                have = merged.esp.setdefault(spi, [])
                have += [e for e in entries if e not in have]
        self.tables = merged
        return True

    def summary(self) -> str:
        return f"{len(self.tables.ike)} IKE SA(s), {sum(len(v) for v in self.tables.esp.values())} ESP SA key(s)"


@dataclass
class LiveTap:
    """One interface's packets, annotated as they come, decrypted with `keys` as they grow."""

    name: str
    keys: LiveKeys | None = None
    analyser: PacketAnalyser = field(default_factory=PacketAnalyser)
    frames: int = 0
    start: float | None = None

    def __post_init__(self) -> None:
        self.analyser.keep = False
        if self.keys is not None:
            self.analyser.keys = self.keys.tables

    def add(self, stamp: float, ip_packet: bytes | None) -> Packet:
        if self.keys is not None and self.keys.refresh():
            self.analyser.keys = self.keys.tables
        self.frames += 1
        if self.start is None:
            self.start = stamp
        packet = self.analyser.add(self.frames, stamp, ip_packet)
        needs_keys = (packet.ike is not None and packet.ike.encrypted and packet.ike.inner is None
                      and not packet.ike.fragment_verified) or \
                     (packet.ipsec is not None and packet.ipsec.protocol == "ESP" and not packet.ipsec.decrypted)
        if needs_keys and self.keys is not None and self.keys.refresh(force=True):
            # keys written a moment ago (the SA was just made): try this packet again
            self.analyser.keys = self.keys.tables
            packet = self._again(packet, stamp, ip_packet)
        return packet

    def _again(self, packet: Packet, stamp: float, ip_packet: bytes | None) -> Packet:
        fresh = Packet(packet.frame, stamp, packet.src, packet.dst, packet.protocol, packet.length, data=packet.data,
                       sport=packet.sport, dport=packet.dport)
        if packet.tcp is not None:   # a frame of an RFC 9329 stream: the frame again, not the segment
            self.analyser.analyser.stream_frame(fresh, packet.tcp)
        else:
            self.analyser.analyser.packet(fresh, packet.data)
        if fresh.retransmission_of == fresh.frame:
            fresh.retransmission_of = None  # it saw itself the first time
        fresh.ip_fragment, fresh.fragment_frames = packet.ip_fragment, packet.fragment_frames
        return fresh


class NatMatcher:
    """The same packet seen on two taps (both sides of a NAT box) within `window` seconds:
    `add(tap, packet)` returns the rewrite when the other side saw it already."""

    def __init__(self, window: float = 2.0) -> None:
        self.window = window
        self.waiting: dict[bytes, list[tuple[str, Packet]]] = {}

    def add(self, tap: str, packet: Packet) -> str | None:
        key = fingerprint(packet)
        if key is None:
            return None
        now = packet.time
        candidates = [(t, p) for t, p in self.waiting.get(key, []) if now - p.time <= self.window]
        match = next(((t, p) for t, p in candidates if t != tap), None)
        if match is None:
            candidates.append((tap, packet))
            self.waiting[key] = candidates[-8:]
            if len(self.waiting) > 20000:
                self.waiting = {k: v for k, v in self.waiting.items() if v and now - v[-1][1].time <= self.window}
            return None
        candidates.remove(match)
        self.waiting[key] = candidates
        before = match[1]
        parts = []
        if (before.src, before.sport) != (packet.src, packet.sport):
            parts.append(f"src {before.endpoint('src')} -> {packet.endpoint('src')}")
        if (before.dst, before.dport) != (packet.dst, packet.dport):
            parts.append(f"dst {before.endpoint('dst')} -> {packet.endpoint('dst')}")
        if not parts:
            return None
        return f"{', '.join(parts)} (seen first on {match[0]})"


def watch(source, out, count: int | None = None, seconds: float | None = None, show_all: bool = False) -> int:
    """Print each packet `source` yields, annotated, until it ends, `count` were shown or `seconds`
    passed; returns how many. `source` is lab.net.watch.LiveSource (or anything with `taps`
    names, `describe()`, `key_locations()`, `frames()` yielding (tap, time, IP packet or None) or
    None when idle, and `ended`)."""
    folders, patterns = source.key_locations()
    keys = LiveKeys(folders, patterns)
    names = [tap.name for tap in source.taps]
    lives = {name: LiveTap(name, keys) for name in names}
    matcher = NatMatcher() if len(names) > 1 else None
    print(f"watching {', '.join(names)} of {source.describe()}; keys so far: {keys.summary()}; Ctrl-C ends",
          file=out, flush=True)
    shown, started, first = 0, time.monotonic(), None
    for item in source.frames():
        if seconds is not None and time.monotonic() - started >= seconds:
            break
        if item is None:
            continue
        name, stamp, ip = item
        if ip is None and not show_all:
            continue
        packet = lives[name].add(stamp, ip)
        if matcher is not None and ip is not None:
            packet.rewrite = matcher.add(name, packet) or packet.rewrite
        first = stamp if first is None else first
        print(packet_line(name, packet, first), file=out, flush=True)
        shown += 1
        if count is not None and shown >= count:
            break
    if source.ended:
        print("the lab is down: nothing more to watch", file=out, flush=True)
    return shown


def packet_line(tap: str, packet: Packet, start: float | None = None) -> str:
    """One annotated line: time since the tap started, where, what (decrypted where keys are known)."""
    offset = packet.time - start if start is not None else packet.time
    return f"{offset:8.3f}  {tap:<14} {packet.line()}"


__all__ = ["LiveKeys", "LiveTap", "NatMatcher", "PcapStream", "PcapTail", "ip_of_frame", "packet_line", "watch"]
