"""lab.daemon.radius on loopback against fake servers that replay FreeRADIUS's recorded answers
(tests/data/radius): retransmission of the same octets, a lying server's answers refused and
counted while the true one is still taken, failover to a second server after a dead one."""
from __future__ import annotations

import asyncio

import pytest

from lab.daemon.radius import RadiusClient, RadiusServerConfig, RadiusTimeout
from lab.ike import radius

from .test_radius import ACCEPT, REQUEST, SECRET, sign


class FakeServer(asyncio.DatagramProtocol):
    """Answers each request with what `behave(n, request)` returns (n counts the requests)."""

    def __init__(self, behave) -> None:
        self.behave = behave
        self.received: list[bytes] = []

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data, addr) -> None:
        self.received.append(data)
        for answer in self.behave(len(self.received), data):
            self.transport.sendto(answer, addr)


async def serve(behave):
    loop = asyncio.get_running_loop()
    transport, server = await loop.create_datagram_endpoint(lambda: FakeServer(behave), local_addr=("127.0.0.1", 0))
    return transport, server, transport.get_extra_info("sockname")[1]


def check(raw: bytes) -> radius.Reply:
    return radius.parse_reply(raw, REQUEST, SECRET)


def client(ports, lines, tries=3):
    servers = [RadiusServerConfig(f"r{i + 1}", "127.0.0.1", SECRET, auth_port=p, preference=10 - i)
               for i, p in enumerate(ports)]
    return RadiusClient(servers, tries=tries, timeout=0.1, base=1.5, say=lines.append)


def test_retransmits_the_same_octets_until_answered():
    async def run():
        transport, server, port = await serve(lambda n, data: [ACCEPT] if n == 3 else [])
        lines: list[str] = []
        c = client([port], lines)
        try:
            reply = await c.exchange(c.pick(), REQUEST, check)
        finally:
            transport.close()
        assert reply.code == radius.ACCESS_ACCEPT
        assert server.received == [REQUEST] * 3  # RFC 2865 §2.5: same Identifier and authenticator
        assert c.counters["r1"]["retransmits"] == 2 and c.counters["r1"]["answers"] == 1
        assert sum("sending again" in line for line in lines) == 2
    asyncio.run(run())


def test_lies_are_counted_and_logged_and_the_true_answer_taken():
    forged = sign(ACCEPT, REQUEST, ma_secret=b"forger")
    async def run():
        transport, _server, port = await serve(lambda n, data: [forged, ACCEPT[:-9], ACCEPT])
        lines: list[str] = []
        c = client([port], lines)
        try:
            reply = await c.exchange(c.pick(), REQUEST, check)
        finally:
            transport.close()
        assert reply.msk
        assert c.counters["r1"]["refused"] == 2 and c.counters["r1"]["retransmits"] == 0
        assert any("Message-Authenticator" in line for line in lines)
        assert any("truncated" in line or "Length" in line for line in lines)
    asyncio.run(run())


def test_a_dead_server_times_out_and_the_next_conversation_fails_over():
    async def run():
        dead_t, dead, dead_port = await serve(lambda n, data: [])
        live_t, _live, live_port = await serve(lambda n, data: [ACCEPT])
        lines: list[str] = []
        c = client([dead_port, live_port], lines)
        try:
            first = c.pick()
            assert first.name == "r1"
            with pytest.raises(RadiusTimeout):
                await c.exchange(first, REQUEST, check)
            assert len(dead.received) == 3 and c.counters["r1"]["timeouts"] == 1
            second = c.pick()
            assert second.name == "r2"
            reply = await c.exchange(second, REQUEST, check)
            assert reply.code == radius.ACCESS_ACCEPT
        finally:
            dead_t.close()
            live_t.close()
        assert any("marked down" in line for line in lines)
    asyncio.run(run())


def test_only_lies_end_in_a_timeout_with_every_lie_counted():
    async def run():
        transport, _server, port = await serve(lambda n, data: [ACCEPT[:30]])
        c = client([port], [], tries=2)
        try:
            with pytest.raises(RadiusTimeout):
                await c.exchange(c.pick(), REQUEST, check)
        finally:
            transport.close()
        assert c.counters["r1"]["refused"] == 2 and c.counters["r1"]["timeouts"] == 1
    asyncio.run(run())


def test_the_wait_grows_by_the_base():
    c = RadiusClient([RadiusServerConfig("a", "127.0.0.1", b"s")])
    assert c.schedule() == pytest.approx([2.0, 2.8, 3.92, 5.488])  # strongSwan's defaults
