"""The gateway's own addresses, watched: an rtnetlink socket (RTMGRP_IPV4_IFADDR and
RTMGRP_IPV4_ROUTE) wakes the daemon when an address or a route changes in its namespace, and
the IKE endpoint is told the new address list (`IkeEndpoint.local_addresses_changed`), which
moves its SAs with MOBIKE (RFC 4555) or reauthenticates them. Where the kernel refuses the
socket the list is polled instead. The core never looks at interfaces itself."""
from __future__ import annotations

import asyncio
import ipaddress
import socket
import subprocess
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .gateway import Gateway

NETLINK_ROUTE = 0
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_ROUTE = 0x40
SETTLE = 0.05  # seconds: an `ip addr del; ip addr add; ip route replace` arrives as one change
POLL = 1.0


def read_addresses(exclude: tuple[str, ...] = ("lo",)) -> list[str]:
    """This namespace's IPv4 addresses, primary first, from `ip -o -4 addr show` (not on the
    interfaces in `exclude`, nor host-scoped ones)."""
    out = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True).stdout
    addresses: list[str] = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 4 or "inet" not in parts:
            continue
        device = parts[1].split("@")[0]
        if device in exclude or ("scope" in parts and parts[parts.index("scope") + 1] == "host"):
            continue
        try:
            address = str(ipaddress.ip_interface(parts[parts.index("inet") + 1]).ip)
        except ValueError:
            continue
        if address not in addresses:
            addresses.append(address)
    return addresses


class AddressMonitor:
    def __init__(self, gateway: Gateway, exclude: tuple[str, ...] = ("lo",)) -> None:
        self.gateway = gateway
        self.exclude = exclude
        self.sock: socket.socket | None = None
        self.pending: asyncio.TimerHandle | None = None
        self.poller: asyncio.TimerHandle | None = None
        self.last: list[str] | None = None
        self.changes = 0

    def start(self) -> None:
        loop = self.gateway.loop
        assert loop is not None
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, NETLINK_ROUTE)
            sock.bind((0, RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE))
        except (OSError, AttributeError) as err:
            self.gateway.say(f"[NET] no rtnetlink socket ({err}): polling the addresses every {POLL:g} s")
            self.poller = loop.call_later(POLL, self._poll)
        else:
            self.sock = sock
            loop.add_reader(sock, self._readable)
        self.check(initial=True)

    def stop(self) -> None:
        loop = self.gateway.loop
        for handle in (self.pending, self.poller):
            if handle is not None:
                handle.cancel()
        self.pending = self.poller = None
        if self.sock is not None:
            if loop is not None:
                loop.remove_reader(self.sock)
            self.sock.close()
            self.sock = None

    def _readable(self) -> None:
        assert self.sock is not None
        while True:
            try:
                self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break  # ENOBUFS: we missed some; the check below reads everything anew
        if self.pending is None and self.gateway.loop is not None:
            self.pending = self.gateway.loop.call_later(SETTLE, self.check)

    def _poll(self) -> None:
        self.check()
        if self.gateway.loop is not None:
            self.poller = self.gateway.loop.call_later(POLL, self._poll)

    def check(self, initial: bool = False) -> None:
        """Read the addresses and tell the endpoint; also when only a route changed (the path
        to a peer may have), which the endpoint checks per IKE SA."""
        self.pending = None
        addresses = read_addresses(self.exclude)
        if addresses != self.last and not initial:
            self.changes += 1
            self.gateway.say(f"[NET] local addresses: {', '.join(addresses) or 'none'}")
        self.last = addresses
        self.gateway.endpoint.local_addresses_changed(addresses, self.gateway.now())
        self.gateway._pump()
