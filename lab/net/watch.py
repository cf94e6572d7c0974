"""The live tap behind `ipsec-lab watch NODE:IFACE ...`: the packets on interfaces of a running
lab (`ipsec-lab up` or `ipsec-lab run` in another terminal), as they pass.

The lab is found by its record (/run/ipsec-lab/labs/<pid>.json): its node shells say which
network namespace each node is, its run folder where the keys appear. The tap is an
AF_PACKET socket opened inside the node's namespace (setns(2) for a moment, then back), so
no process of ours ever runs in the lab's namespaces and its teardown finds only its own.
The annotation is lab.viz's (lab.viz.live); `ipsec-lab watch` joins the two (lab.viz.cli).
"""
from __future__ import annotations

import ctypes
import os
import select
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import world
from .cleanup import LabRecord, _alive, owner_alive, records

CLONE_NEWNET = 0x40000000
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


class WatchError(RuntimeError):
    """No running lab, no such node or interface; the message says what there is."""


@dataclass
class PacketSocket:
    node: str
    intf: str
    sock: socket.socket

    @property
    def name(self) -> str:
        return f"{self.node}:{self.intf}"


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def open_packet_socket(pid: int, intf: str) -> socket.socket:
    """An AF_PACKET socket on `intf` in the network namespace of process `pid`."""
    own = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    try:
        _setns(target)
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            try:
                sock.bind((intf, 0))
            except OSError:
                sock.close()
                raise
        finally:
            _setns(own)
    finally:
        os.close(own)
        os.close(target)
    sock.setblocking(False)
    return sock


def find_lab(node: str, owner: int | None = None) -> LabRecord:
    running = [r for r in records() if owner_alive(r)]
    if owner is not None:
        running = [r for r in running if r.owner == owner]
    if not running:
        raise WatchError("no lab is running: start one in another terminal (sudo .venv/bin/ipsec-lab up "
                         "net2net-nat), then watch it")
    with_node = [r for r in running if node in r.shells]
    if not with_node:
        names = ", ".join(sorted({n for r in running for n in r.shells}))
        raise WatchError(f"no node {node!r} in the running lab (its nodes: {names})")
    return with_node[-1]


def _interfaces(pid: int) -> list[str]:
    own = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    try:
        _setns(target)
        try:
            return [name for _i, name in socket.if_nameindex() if name != "lo"]
        finally:
            _setns(own)
    finally:
        os.close(own)
        os.close(target)


def key_locations(record: LabRecord) -> tuple[list[Path], list[tuple[Path, str]]]:
    """(folders, (base, glob) patterns) where the lab's key tables are or will appear: the run
    folder's keys/ and each gateway's keys/ (our daemons write theirs while they run)."""
    folders, patterns = [], []
    if record.out:
        out = Path(record.out)
        folders.append(out / "keys")
        patterns.append((out, "nodes/*/keys"))
    # a run folder with a long path keeps its gateways' files in a short one (lab.net.runner)
    patterns.append((Path(tempfile.gettempdir()) / f"ipsec-lab-{world.tag(record.owner)}", "*/*/keys"))
    return folders, patterns


def parse_target(text: str) -> tuple[str, str]:
    node, sep, intf = text.partition(":")
    if not sep or not node or not intf:
        raise WatchError(f"{text!r}: give NODE:IFACE, e.g. nat:nat-out")
    return node, intf


class LiveSource:
    """Packet sockets on interfaces of the running lab; `frames()` yields (tap name, time,
    IP packet or None for a frame without one) as they arrive, until the lab ends."""

    Error = WatchError

    def __init__(self, targets: list[str], owner: int | None = None) -> None:
        pairs = [parse_target(t) for t in targets]
        self.record = find_lab(pairs[0][0], owner)
        self.taps: list[PacketSocket] = []
        try:
            for node, intf in pairs:
                if node not in self.record.shells:
                    raise WatchError(f"no node {node!r} in the running lab (its nodes: "
                                     f"{', '.join(sorted(self.record.shells))})")
                pid = self.record.shells[node]
                try:
                    sock = open_packet_socket(pid, intf)
                except OSError as err:
                    names = ", ".join(_interfaces(pid)) if _alive(pid) else "?"
                    raise WatchError(f"cannot tap {node}:{intf} ({err.strerror or err}); {node} has: {names}") from None
                self.taps.append(PacketSocket(node, intf, sock))
        except BaseException:
            self.close()
            raise
        self.ended = False

    def describe(self) -> str:
        return f"the lab {self.record.name} (pid {self.record.owner})"

    def key_locations(self) -> tuple[list[Path], list[tuple[Path, str]]]:
        return key_locations(self.record)

    def lab_alive(self) -> bool:
        return owner_alive(self.record) and all(_alive(self.record.shells[t.node]) for t in self.taps)

    def frames(self, poll: float = 0.2) -> Iterator[tuple[str, float, bytes | None] | None]:
        by_fd = {tap.sock.fileno(): tap for tap in self.taps}
        last_check = 0.0
        while True:
            now = time.monotonic()
            if now - last_check > 0.3:
                last_check = now
                if not self.lab_alive():
                    self.ended = True
                    return
            ready, _, _ = select.select(list(by_fd), [], [], poll)
            if not ready:
                yield None
            for fd in ready:
                tap = by_fd[fd]
                while True:
                    try:
                        frame = tap.sock.recv(65535)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        self.ended = True
                        return
                    ethertype = frame[12:14] if len(frame) > 14 else b""
                    ip = frame[14:] if ethertype in (b"\x08\x00", b"\x86\xdd") else None
                    yield tap.name, time.time(), ip

    def close(self) -> None:
        for tap in self.taps:
            tap.sock.close()
        self.taps = []


__all__ = ["LiveSource", "WatchError", "find_lab", "key_locations", "open_packet_socket", "parse_target"]
