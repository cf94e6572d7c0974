"""The gateway's RADIUS client (as strongSwan's eap-radius radius_client and radius_socket):
one request at a time per conversation over UDP, the same octets sent again after a timeout that
grows by `base` each try (RFC 2865 §2.5: a retransmission keeps its Identifier and Request
Authenticator; strongSwan: timeout * base^try), and failover: a server that did not answer
after all tries is marked down and the next conversation goes to another.

What came back is judged by the caller's `check` (lab.ike.eap.radius_relay): an answer it
refuses (bad authenticator, truncated attributes) is counted, logged and dropped, and the
request keeps waiting for a true answer (RFC 2865 §3, RFC 3579 §3.2: silently discarded)."""
from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import Callable
from typing import TypeVar

from ..ike.config import RadiusServer as RadiusServerConfig  # one server of the eap-radius plugin's `servers`
from ..ike.radius import RadiusError

T = TypeVar("T")


class RadiusTimeout(Exception):
    """No true answer from any try; the server is marked down."""


class _Waiter(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait(data)


class RadiusClient:
    """The servers of one gateway with their retransmission settings (strongSwan's defaults:
    4 tries, 2 s, base 1.4); `counters` per server name: sent, retransmits, answers, refused,
    timeouts; `say` writes a log line."""

    def __init__(self, servers: list[RadiusServerConfig], tries: int = 4, timeout: float = 2.0,
                 base: float = 1.4, say: Callable[[str], None] = lambda line: None,
                 source: str | None = None) -> None:
        if not servers:
            raise ValueError("eap-radius needs at least one server")
        self.servers = list(servers)
        self.tries = tries
        self.timeout = timeout
        self.base = base
        self.say = say
        self.source = source
        self.down: set[str] = set()
        self.counters: dict[str, Counter[str]] = {s.name: Counter() for s in servers}

    def pick(self) -> RadiusServerConfig:
        """The server for a new conversation: the most preferred one not marked down; when all
        are down, all are tried again (strongSwan resets its server states the same way)."""
        alive = [s for s in self.servers if s.name not in self.down]
        if not alive:
            self.say("radius: every server is marked down; trying them all again")
            self.down.clear()
            alive = list(self.servers)
        return max(alive, key=lambda s: s.preference)  # max keeps the first of equal ones

    def pick_name(self) -> str:
        return self.pick().name

    def schedule(self) -> list[float]:
        """The wait after each try, in seconds."""
        return [self.timeout * self.base ** n for n in range(self.tries)]

    async def exchange(self, server: RadiusServerConfig, request: bytes, check: Callable[[bytes], T],
                       port: int | None = None) -> T:
        """Send `request` to `server` and return `check` of the first answer it believes;
        raises RadiusTimeout once every try went unanswered (the server is then marked down)."""
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in server.address else socket.AF_INET
        local = (self.source, 0) if self.source else None
        transport, waiter = await loop.create_datagram_endpoint(
            _Waiter, local_addr=local, family=family)
        counters = self.counters[server.name]
        target = (server.address, port or server.auth_port)
        try:
            for attempt, wait in enumerate(self.schedule()):
                transport.sendto(request, target)
                counters["sent"] += 1
                if attempt:
                    counters["retransmits"] += 1
                    self.say(f"radius: no answer from {server.name} ({server.address}), "
                             f"sending again ({attempt + 1} of {self.tries})")
                deadline = loop.time() + wait
                while True:
                    left = deadline - loop.time()
                    if left <= 0:
                        break
                    try:
                        raw = await asyncio.wait_for(waiter.queue.get(), left)
                    except TimeoutError:
                        break
                    try:
                        result = check(raw)
                    except RadiusError as error:
                        counters["refused"] += 1
                        self.say(f"radius: answer from {server.name} refused: {error}")
                        continue
                    counters["answers"] += 1
                    self.down.discard(server.name)
                    return result
            counters["timeouts"] += 1
            self.down.add(server.name)
            self.say(f"radius: {server.name} ({server.address}) did not answer after {self.tries} tries; "
                     "marked down")
            raise RadiusTimeout(f"RADIUS server {server.name} ({server.address}) did not answer")
        finally:
            transport.close()
