"""The gateway daemon carries the core's Access-Requests (auth = eap-radius) to a RADIUS server
over UDP on loopback and its answers back: a road warrior in memory (EAP-MSCHAPv2 as carol)
gets up with the Framed-IP-Address as its virtual IP through a server that lies first each
time (the lies counted and logged, the true answers taken); a silent server ends in a refusal
after its tries, and the gateway serves the next peer through the second server."""
from __future__ import annotations

import asyncio
import datetime
import io

from lab.daemon.gateway import Gateway
from lab.ike.config import AuthConfig, RadiusServer, RadiusSettings
from lab.ike.endpoint import IkeEndpoint
from lab.ike.events import IkeSaUp
from lab.ike.memnet import eap_configs
from lab.ike.settings import Settings

from .test_eap_radius_gateway import FRAMED, SECRET, FakeRadius
from .test_radius import sign


def _clock():
    return datetime.datetime(2026, 6, 1, tzinfo=datetime.timezone.utc)


class Server(asyncio.DatagramProtocol):
    def __init__(self, fake: FakeRadius | None, lie: bool) -> None:
        self.fake, self.lie = fake, lie
        self.seen = 0

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data, addr) -> None:
        self.seen += 1
        if self.fake is None:
            return
        true = self.fake.answer(data)
        if self.lie:
            self.transport.sendto(sign(true, data, b"forger"), addr)  # RFC 3579 §3.2: to be discarded
        self.transport.sendto(true, addr)


async def serve(fake: FakeRadius | None, lie: bool = False):
    loop = asyncio.get_running_loop()
    transport, server = await loop.create_datagram_endpoint(lambda: Server(fake, lie), local_addr=("127.0.0.1", 0))
    return transport, server, transport.get_extra_info("sockname")[1]


def gateway_and_client(ports: list[int]):
    a, b = eap_configs("mschapv2", a_vips=["0.0.0.0"])
    b.connections["s2s"].remote = AuthConfig("eap-radius")
    b.radius = RadiusSettings([RadiusServer(f"r{i + 1}", "127.0.0.1", SECRET, auth_port=port, preference=10 - i)
                               for i, port in enumerate(ports)], retransmit_tries=2, retransmit_timeout=0.2)
    log = io.StringIO()
    gateway = Gateway(b, dataplane=False, log=log)
    gateway.endpoint.wall_clock = _clock
    client = IkeEndpoint(a, Settings(retransmit_timeout=0.5), wall_clock=_clock)
    return gateway, client, log


async def connect(gateway: Gateway, client: IkeEndpoint, wait: float = 5.0) -> list:
    """Carry IKE between the client in memory and the gateway (its sends caught), until the
    client's IKE SA is up or gone."""
    gateway.loop = asyncio.get_running_loop()
    sent: list = []
    gateway._send = sent.append
    client.initiate("s2s", gateway.now())
    events: list = []
    deadline = gateway.now() + wait
    while gateway.now() < deadline:
        for d in client.datagrams_to_send():
            gateway.endpoint.receive_datagram(d.data, d.src, d.dst, gateway.now())
            gateway._pump()
        for d in sent:
            client.receive_datagram(d.data, d.src, d.dst, gateway.now())
        sent.clear()
        due = client.get_timer()
        if due is not None and due <= gateway.now():
            client.handle_timer(gateway.now())
        while (event := client.next_event()) is not None:
            events.append(event)
        if any(type(e).__name__ in ("IkeSaUp", "IkeSaDeleted") for e in events):
            break
        await asyncio.sleep(0.01)
    return events


def test_through_a_lying_server_the_peer_gets_up_with_the_framed_ip():
    async def run():
        transport, server, port = await serve(FakeRadius(), lie=True)
        try:
            gateway, client, log = gateway_and_client([port])
            events = await connect(gateway, client)
        finally:
            transport.close()
        up = [e for e in events if isinstance(e, IkeSaUp)]
        assert up and up[0].virtual_ip == FRAMED
        counters = gateway.stats()["radius"]["r1"]
        assert counters["refused"] == 3 and counters["answers"] == 3 and counters.get("timeouts", 0) == 0
        assert log.getvalue().count("radius: answer from r1 refused: Message-Authenticator does not match") == 3
        assert "sending RADIUS Access-Request to server 'r1'" in log.getvalue()
        assert "received RADIUS Access-Accept from server 'r1'" in log.getvalue()
    asyncio.run(run())


def test_a_silent_server_refuses_the_peer_and_the_next_goes_to_the_second():
    async def run():
        dead, _, dead_port = await serve(None)
        alive, _, alive_port = await serve(FakeRadius())
        try:
            gateway, client, log = gateway_and_client([dead_port, alive_port])
            first = await connect(gateway, client)
            assert "IkeSaUp" not in [type(e).__name__ for e in first]
            assert "AuthFailed" in [type(e).__name__ for e in first]  # AUTHENTICATION_FAILED from the gateway
            assert gateway.stats()["radius"]["r1"]["timeouts"] == 1
            assert "r1 (127.0.0.1) did not answer after 2 tries; marked down" in log.getvalue()
            second = await connect(gateway, client)
        finally:
            dead.close()
            alive.close()
        up = [e for e in second if isinstance(e, IkeSaUp)]
        assert up and up[0].virtual_ip == FRAMED
        assert gateway.stats()["radius"]["r2"]["answers"] == 3
    asyncio.run(run())


class Accounting(asyncio.DatagramProtocol):
    """An accounting server: records each Accounting-Request, answers it (RFC 2866 §3)."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data, addr) -> None:
        import hashlib
        import struct
        self.requests.append(data)
        header = struct.pack("!BBH", 5, data[1], 20)
        self.transport.sendto(header + hashlib.md5(header + data[4:20] + SECRET).digest(), addr)


def test_accounting_start_and_stop_with_the_child_sas_counts():
    from lab.ike import radius

    from .test_radius import attributes_of

    async def run():
        loop = asyncio.get_running_loop()
        transport, _, port = await serve(FakeRadius())
        acct_transport, acct = await loop.create_datagram_endpoint(Accounting, local_addr=("127.0.0.1", 0))
        try:
            gateway, client, log = gateway_and_client([port])
            gateway.config.radius.accounting = True
            gateway.config.radius.servers[0].acct_port = acct_transport.get_extra_info("sockname")[1]
            gateway = Gateway(gateway.config, dataplane=False, log=log)
            gateway.endpoint.wall_clock = _clock
            assert gateway.accounting is not None
            counts = {"bytes_in": 5 * 2 ** 32 + 1234, "bytes_out": 5678, "packets_in": 7, "packets_out": 9}
            gateway.accounting.counts = lambda spi: counts
            up = await connect(gateway, client)
            assert any(isinstance(e, IkeSaUp) for e in up)
            for _ in range(50):
                if acct.requests:
                    break
                await asyncio.sleep(0.02)
            for ike in list(gateway.endpoint.by_id.values()):
                ike.destroy("the user logged off", gateway.now())  # its CHILD SAs deleted first
            gateway._pump()
            for _ in range(100):
                if len(acct.requests) == 2:
                    break
                await asyncio.sleep(0.02)
        finally:
            transport.close()
            acct_transport.close()
        start, stop = [dict(attributes_of(r)) for r in acct.requests]
        assert start[radius.ACCT_STATUS_TYPE] == b"\x00\x00\x00\x01" and stop[radius.ACCT_STATUS_TYPE] == b"\x00\x00\x00\x02"
        assert start[radius.USER_NAME] == b"carol" and start[radius.CLASS] == b"staff"
        assert start[radius.ACCT_SESSION_ID] == stop[radius.ACCT_SESSION_ID]
        assert int.from_bytes(stop[radius.ACCT_INPUT_GIGAWORDS], "big") == 5
        assert int.from_bytes(stop[radius.ACCT_INPUT_OCTETS], "big") == 1234
        assert int.from_bytes(stop[radius.ACCT_OUTPUT_OCTETS], "big") == 5678
        assert int.from_bytes(stop[radius.ACCT_INPUT_PACKETS], "big") == 7
        assert "radius: accounting Start answered by r1" in log.getvalue()
        assert f"radius: accounting Stop ({5 * 2 ** 32 + 1234} octets in, 5678 out) answered by r1" in log.getvalue()
    asyncio.run(run())
