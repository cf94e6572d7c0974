"""RADIUS accounting of the gateway (strongSwan's eap-radius with accounting = yes): an
Accounting-Request Start when an IKE SA authenticated through RADIUS is up, a Stop when it is
gone, with the octets and packets its CHILD SAs carried (RFC 2866 §5.3-§5.4, Gigawords past
2^32, RFC 2869 §5.1), the session time and the Access-Accept's Class echoed (RFC 2865 §5.25).
Input is what the gateway received from the user (the inbound SAs), output what it sent.

The counts are taken from the data plane when each CHILD SA is deleted, before it is removed."""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lab.ike import events as ev
from lab.ike import radius

if TYPE_CHECKING:
    from lab.ike.endpoint import IkeEndpoint

    from .radius import RadiusClient


@dataclass
class Session:
    server: str
    user: bytes
    framed_ip: str | None
    classes: list[bytes]
    session_id: bytes
    started: float
    children: set[bytes] = field(default_factory=set)
    octets_in: int = 0
    octets_out: int = 0
    packets_in: int = 0
    packets_out: int = 0


class Accounting:
    """Sessions by IKE SA id; `send(server, request, check, port)` is the I/O (a coroutine
    scheduler of the gateway); `counts(spi_in)` the data plane's counts of a CHILD SA."""

    def __init__(self, endpoint: IkeEndpoint, client: RadiusClient, nas_identifier: bytes | None,
                 send: Callable[..., None], counts: Callable[[bytes], dict[str, Any] | None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.endpoint = endpoint
        self.client = client
        self.nas_identifier = nas_identifier
        self.send = send
        self.counts = counts
        self.clock = clock
        self.sessions: dict[int, Session] = {}

    def on_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.IkeSaUp):
            ike = self.endpoint.by_id.get(event.ike_sa)
            if ike is None or ike.radius_server is None or event.ike_sa in self.sessions:
                return
            user = (ike.remote_eap_id or ike.remote_id)
            session = Session(ike.radius_server, user.data if user is not None else b"", ike.radius_framed_ip,
                              list(ike.radius_classes), f"{event.ike_sa:08X}-{os.urandom(4).hex()}".encode(),
                              self.clock())
            self.sessions[event.ike_sa] = session
            self._request(session, radius.ACCT_START)
        elif isinstance(event, ev.IkeSaRekeyed) and event.ike_sa in self.sessions:
            self.sessions[event.new_ike_sa] = self.sessions.pop(event.ike_sa)
        elif isinstance(event, ev.ChildSaUp) and event.ike_sa in self.sessions:
            self.sessions[event.ike_sa].children.add(event.spi_in)
        elif isinstance(event, ev.ChildSaDeleted) and event.ike_sa in self.sessions:
            self._count(self.sessions[event.ike_sa], event.spi_in)
        elif isinstance(event, ev.IkeSaDeleted) and event.ike_sa in self.sessions:
            session = self.sessions.pop(event.ike_sa)
            for spi in list(session.children):
                self._count(session, spi)
            self._request(session, radius.ACCT_STOP)

    def _count(self, session: Session, spi_in: bytes) -> None:
        if spi_in not in session.children:
            return
        session.children.discard(spi_in)
        counts = self.counts(spi_in)
        if counts is None:
            return
        session.octets_in += counts["bytes_in"]
        session.octets_out += counts["bytes_out"]
        session.packets_in += counts["packets_in"]
        session.packets_out += counts["packets_out"]

    def _request(self, session: Session, status: int) -> None:
        server = next((s for s in self.client.servers if s.name == session.server), None)
        if server is None:
            return
        request = radius.accounting_request(
            server.secret, os.urandom(1)[0], status, session.session_id, session.user, session.framed_ip,
            session.classes, self.nas_identifier, session.octets_in, session.octets_out, session.packets_in,
            session.packets_out, int(self.clock() - session.started))

        def check(raw: bytes) -> None:
            radius.check_accounting_response(raw, request, server.secret)

        self.send(server, request, check, server.acct_port,
                  "Start" if status == radius.ACCT_START else
                  f"Stop ({session.octets_in} octets in, {session.octets_out} out)")
