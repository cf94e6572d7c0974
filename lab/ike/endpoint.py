"""`IkeEndpoint`: every IKE SA of one gateway, as a sans-I/O object (aioquic's model).

Feed it what arrives on UDP 500/4500 with `receive_datagram(payload, src, dst, now)` and
call `handle_timer(now)` when `get_timer()` says; collect `datagrams_to_send()`,
`next_event()` and `pop_trace()`. Commands: `initiate`, `terminate`, `rekey_child`,
`rekey_ike`, `list_sas`. Nothing here opens a socket or reads a clock.
"""
from __future__ import annotations

import datetime
import hashlib
import hmac
import ipaddress
import os
import re
import struct
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from . import payloads as pl
from .child_sa import ChildSA
from .config import Config, IkeConfig, IPAddress, RadiusServer
from .const import ExchangeType, NotifyType, ProtocolId, name_of
from .errors import ExchangeFailed, ParseError
from .events import Event, IkeSaUp
from .identity import Identity
from .interface import SaRef
from .message import Datagram, Message, classify_udp, frame_udp
from .payloads import chain_names
from .proposals import deprecated_only, invalid_ke_group, select_proposal, without_additional_ke
from .radius import RadiusError
from .randomness import RandomSource
from .sa import IkeSA
from .settings import Settings
from .states import ChildState, IkeState
from .tasks import ChildCreate, ChildDelete, IkeAuth, IkeDelete, IkeInit, IkeRekey, find_notify
from .tasks import ike_mobike as mobike

Address = tuple[str, int]


@dataclass
class OutDatagram:
    data: bytes  # the UDP payload, non-ESP marker included on port 4500
    src: Address
    dst: Address


class IkeEndpoint:
    def __init__(self, config: Config, settings: Settings | None = None, *,
                 random: Callable[[int], bytes] = os.urandom,
                 wall_clock: Callable[[], datetime.datetime] | None = None, jitter: bool = True,
                 route_source: Callable[[str], str | None] | None = None,
                 radius_pick: Callable[[], str] | None = None) -> None:
        """`random(n)` gives n random octets: everything random here comes from it (RandomSource).
        `wall_clock()` gives the date to check certificates against; without it no certificate is
        accepted (the core reads no clock)."""
        self.config = config
        # the I/O layer's answer to "which of my addresses reaches this peer" (local_addrs = %any)
        self.route_source = route_source
        # the I/O layer's answer to "which RADIUS server now" (one marked down is skipped)
        self.radius_pick = radius_pick
        self.local_addresses: list[str] = []  # set by local_addresses_changed (MOBIKE, RFC 4555)
        self.settings = settings or Settings()
        self.random = RandomSource(random)
        self.wall_clock = wall_clock
        self.jitter = jitter
        self.sas: dict[bytes, IkeSA] = {}            # by our SPI
        self.half_open: dict[tuple[Address, bytes], IkeSA] = {}  # responder SAs by (peer, SPIi)
        self.by_id: dict[int, IkeSA] = {}
        self.out: list[OutDatagram] = []
        self.events: deque[Event] = deque()
        self.trace_records: list[dict[str, Any]] = []
        self.drops: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()
        self.leases: dict[str, dict[str, ipaddress.IPv4Address | ipaddress.IPv6Address]] = {}
        self._next_ike_id = 1
        self._next_child_id = 1
        self._cookie_secret = self.random(32)
        self._child_spis: set[bytes] = set()
        self.ike_key_log: list[dict[str, Any]] = []
        # what the limits count (Settings.half_open_limit, half_open_per_peer, ike_sas_per_peer,
        # reassembly_buffers): peer IP of every IKE SA, and of the responder SAs still half-open
        self._peer_of: dict[int, str] = {}
        self.sas_per_peer: Counter[str] = Counter()
        self._half_open_of: dict[int, str] = {}
        self._init_key_of: dict[int, tuple[Address, bytes]] = {}
        self.half_open_per_peer: Counter[str] = Counter()
        self.reassemblies = 0

    # ------------------------------------------------------------ identifiers

    def new_ike_spi(self) -> bytes:
        while True:
            spi = self.random(8)
            if spi != bytes(8) and spi not in self.sas:
                return spi

    def new_child_spi(self) -> bytes:
        while True:
            spi = self.random(4)
            # RFC 4303 §2.1: SPIs 1-255 are reserved, 0 is never used
            if int.from_bytes(spi, "big") > 255 and spi not in self._child_spis:
                self._child_spis.add(spi)
                return spi

    def new_child_id(self) -> int:
        self._next_child_id += 1
        return self._next_child_id - 1

    def _new_sa(self, config: IkeConfig, is_initiator: bool, local: Address, remote: Address, spi_i: bytes,
                spi_r: bytes, now: float) -> IkeSA:
        ike = IkeSA(self, 0, config, is_initiator, local, remote, spi_i, spi_r, now)
        self.register(ike)
        return ike

    def register(self, ike: IkeSA) -> None:
        ike.unique_id = self._next_ike_id
        self._next_ike_id += 1
        self.by_id[ike.unique_id] = ike
        self.sas[ike.our_spi] = ike
        self._peer_of[ike.unique_id] = ike.remote[0]
        self.sas_per_peer[ike.remote[0]] += 1

    @property
    def half_open_count(self) -> int:
        """Responder IKE SAs past IKE_SA_INIT and not yet through IKE_AUTH (RFC 7296 §2.6)."""
        return len(self._half_open_of)

    def _half_open_done(self, unique_id: int) -> None:
        peer = self._half_open_of.pop(unique_id, None)
        if peer is not None:
            _decrement(self.half_open_per_peer, peer)

    def reassembly_opened(self) -> bool:
        """A message starts being reassembled (RFC 7383 §2.6); False when every buffer is taken."""
        if self.settings.reassembly_buffers and self.reassemblies >= self.settings.reassembly_buffers:
            return False
        self.reassemblies += 1
        return True

    def reassembly_closed(self, count: int = 1) -> None:
        self.reassemblies = max(0, self.reassemblies - count)

    # ------------------------------------------------------------ output

    def emit(self, event: Event) -> None:
        if isinstance(event, IkeSaUp):
            self._half_open_done(event.ike_sa)
        self.events.append(event)
        self.trace(None, "event", event=type(event).__name__, ike_sa=event.ike_sa,
                   **{k: _plain(v) for k, v in vars(event).items()
                      if k not in ("ike_sa", "keys_in", "keys_out")})

    def next_event(self) -> Event | None:
        return self.events.popleft() if self.events else None

    def datagrams_to_send(self) -> list[OutDatagram]:
        out, self.out = self.out, []
        return out

    def trace(self, now: float | None, kind: str, **fields: Any) -> None:
        record: dict[str, Any] = {"t": now if now is not None else self._last_now, "kind": kind}
        record.update(fields)
        self.trace_records.append(record)

    _last_now = 0.0

    def pop_trace(self) -> list[dict[str, Any]]:
        records, self.trace_records = self.trace_records, []
        return records

    def trace_message(self, ike: SaRef | None, direction: str, message: Message, inner: Iterable[pl.Payload],
                      src: Address, dst: Address, length: int, now: float, fragments: int = 1) -> None:
        """One trace record per message; `ike` None for IKE_SA_INIT traffic that has no SA (yet)."""
        names = chain_names(list(inner), not message.is_response)
        self.trace(now, "message", ike_sa=ike.unique_id if ike is not None else None, dir=direction,
                   exchange=name_of(ExchangeType, message.exchange),
                   message_id=message.message_id, response=message.is_response, initiator=message.is_initiator,
                   encrypted=message.exchange != ExchangeType.IKE_SA_INIT, payloads=names,
                   src=f"{src[0]}:{src[1]}", dst=f"{dst[0]}:{dst[1]}", length=length, fragments=fragments,
                   spi_i=message.spi_i.hex(), spi_r=message.spi_r.hex())

    def send(self, ike: SaRef, datagrams: list[bytes], stat: str, local: Address | None = None,
             remote: Address | None = None) -> None:
        self.stats[stat] += 1
        for data in datagrams:
            self._queue(data, local or ike.local, remote or ike.remote)

    def _queue(self, data: bytes, local: Address, remote: Address) -> None:
        # RFC 3948 §2.2: IKE on port 4500 carries the non-ESP marker
        port = 4500 if 4500 in (local[1], remote[1]) else local[1]
        self.out.append(OutDatagram(frame_udp(port, data), local, remote))

    def drop(self, reason: str, now: float, ike: SaRef | None = None) -> None:
        """Count a dropped message by kind (numbers folded, so counters stay few) and trace it."""
        key = re.sub(r"\d+", "N", reason.split(":")[0])
        self.drops[key] += 1
        self.trace(now, "drop", reason=reason, ike_sa=ike.unique_id if ike else None)

    # ------------------------------------------------------------ commands

    def initiate(self, name: str, now: float, child: str | None = None,
                 ports: tuple[int, int] | None = None) -> IkeSA:
        """Start connection `name` (IKE_SA_INIT, then IKE_AUTH with its first or the named child).
        `ports` (ours, the peer's): the I/O layer's transport when it is not the configured UDP
        one, e.g. the two ends of a TCP stream (RFC 9329 §6.5: NAT detection hashes them)."""
        self._last_now = now
        config = self.config.connections.get(name)
        if config is None:
            raise KeyError(f"no connection named '{name}' (known: {', '.join(self.config.connections) or 'none'})")
        remote_ip = config.initiator_remote_address()
        if remote_ip is None:
            raise ValueError(f"connection '{name}' has no single remote address to initiate to")
        local_ip: str | IPAddress | None = config.initiator_local_address()
        if local_ip is None and self.route_source is not None:
            local_ip = self.route_source(str(remote_ip))
        if local_ip is None:
            raise ValueError(f"connection '{name}' needs a local address (local_addrs) to initiate from: "
                             f"no route to {remote_ip}")
        child_config = None
        if config.children:
            if child is not None and child not in config.children:
                raise KeyError(f"connection '{name}' has no child '{child}'")
            child_config = config.children[child] if child else next(iter(config.children.values()))
        port = 4500 if config.remote_port == 4500 else config.local_port
        remote_port = config.remote_port
        if ports is not None:
            port, remote_port = ports
        ike = self._new_sa(config, True, (str(local_ip), port), (str(remote_ip), remote_port),
                           self.new_ike_spi(), bytes(8), now)
        ike.nonce_i = self.random(self.settings.nonce_size)
        ike.queue(IkeInit(), now)
        ike.queue(IkeAuth(child_config), now)
        return ike

    def restart(self, config: IkeConfig, now: float) -> None:
        self.initiate(config.name, now)

    def find(self, ike_id: int | None = None, name: str | None = None) -> list[IkeSA]:
        return [ike for ike in self.by_id.values() if (ike_id is None or ike.unique_id == ike_id)
                and (name is None or ike.config.name == name) and ike.state != IkeState.DELETED]

    def terminate(self, now: float, ike_id: int | None = None, name: str | None = None) -> int:
        count = 0
        for ike in self.find(ike_id, name):
            if ike.state == IkeState.ESTABLISHED or ike.state == IkeState.REKEYED:
                ike.queue(IkeDelete("terminated by command"), now)
            else:
                ike.destroy("terminated by command", now)
            count += 1
        return count

    def _installed_children(self, name: str | None, spi_in: bytes | None) -> list[tuple[IkeSA, ChildSA]]:
        """INSTALLED CHILD SAs by config name and/or inbound SPI (None: any)."""
        return [(ike, child) for ike in self.find() for child in list(ike.children)
                if (name is None or child.config.name == name) and (spi_in is None or child.spi_in == spi_in)
                and child.state == ChildState.INSTALLED]

    def terminate_child(self, now: float, name: str | None = None, spi_in: bytes | None = None) -> int:
        found = self._installed_children(name, spi_in)
        for ike, child in found:
            ike.queue(ChildDelete([child], "terminated by command"), now)
        return len(found)

    def rekey_child(self, now: float, name: str | None = None, spi_in: bytes | None = None) -> int:
        found = self._installed_children(name, spi_in)
        for ike, child in found:
            ike.queue(ChildCreate(child.config, child), now)
        return len(found)

    def rekey_ike(self, now: float, ike_id: int | None = None, name: str | None = None) -> int:
        count = 0
        for ike in self.find(ike_id, name):
            if ike.state == IkeState.ESTABLISHED:
                ike.queue(IkeRekey(), now)
                count += 1
        return count

    def local_addresses_changed(self, addresses: Iterable[str], now: float) -> None:
        """The I/O layer's word that our addresses (or routes) changed: every IKE SA checks its
        path, and moves (MOBIKE, RFC 4555 §3.5), tells the peer its new address list (§3.6), or
        reauthenticates from a new address (without MOBIKE). `route_source` says which address
        reaches a peer now."""
        self._last_now = now
        addresses = list(dict.fromkeys(addresses))
        changed = addresses != self.local_addresses
        self.local_addresses = addresses
        if changed:
            self.trace(now, "note", what="local_addresses", addresses=addresses)
        for ike in list(self.by_id.values()):
            mobike.local_addresses_changed(ike, addresses, changed, self.route_source, now)

    def create_child(self, now: float, ike_id: int, child: str) -> None:
        ike = self.by_id[ike_id]
        ike.queue(ChildCreate(ike.config.children[child]), now)

    # ------------------------------------------------------------ RADIUS (auth = eap-radius)

    def radius_server(self) -> RadiusServer | None:
        """The server a new EAP-RADIUS conversation goes to: the I/O layer's pick, or the most
        preferred one configured (the first of equals)."""
        settings = self.config.radius
        if settings is None or not settings.servers:
            return None
        if self.radius_pick is not None:
            name = self.radius_pick()
            for server in settings.servers:
                if server.name == name:
                    return server
        return max(settings.servers, key=lambda s: s.preference)

    def _radius_waiter(self, ike_id: int) -> IkeAuth | None:
        ike = self.by_id.get(ike_id)
        if ike is None or ike.state == IkeState.DELETED or ike.tm.held is None:
            return None
        task = ike.auth_responder  # the IKE_AUTH task that spans the round trips holds the conversation
        return task if isinstance(task, IkeAuth) else None

    def radius_waiting(self, ike_id: int) -> bool:
        """Whether IKE SA `ike_id` still waits for a RADIUS answer."""
        return self._radius_waiter(ike_id) is not None

    def radius_answer(self, ike_id: int, raw: bytes, now: float) -> None:
        """The RADIUS server's answer for IKE SA `ike_id`: its held IKE_AUTH response goes out.
        Raises RadiusError when the answer is not to be believed (nothing changes; the request
        keeps waiting) or no IKE SA waits for one."""
        self._last_now = now
        task = self._radius_waiter(ike_id)
        if task is None:
            raise RadiusError(f"no IKE SA {ike_id} waits for a RADIUS answer")
        task.radius_answer(self.by_id[ike_id], raw, now)

    def radius_failed(self, ike_id: int, reason: str, now: float) -> None:
        """No RADIUS answer came for IKE SA `ike_id` (every try, RFC 2865 §2.5): it is refused."""
        self._last_now = now
        task = self._radius_waiter(ike_id)
        if task is not None:
            task.radius_failed(self.by_id[ike_id], reason, now)

    # ------------------------------------------------------------ timers

    def get_timer(self) -> float | None:
        times = [t for t in (ike.next_timer() for ike in self.by_id.values()) if t is not None]
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        self._last_now = now
        for ike in list(self.by_id.values()):
            due = ike.next_timer()
            if due is not None and due <= now:
                ike.on_timer(now)

    # ------------------------------------------------------------ input

    def receive_datagram(self, payload: bytes, src: Address, dst: Address, now: float, *,
                         tcp: bool = False) -> Datagram:
        """Handle a UDP payload that arrived at `dst` from `src`. Returns what it was; ESP
        (on 4500) is not for the IKE endpoint and is left to the data plane. `tcp`: an IKE frame
        of an RFC 9329 stream, given with its non-ESP marker whatever the stream's ports."""
        self._last_now = now
        # RFC 9329 §3.1: IKE in a stream carries the non-ESP marker on any TCP port, not only on 4500
        natt = tcp or 4500 in (src[1], dst[1])
        kind, data = classify_udp(4500 if natt else 500, payload)
        if kind is not Datagram.IKE:
            return kind
        self.stats["messages_in"] += 1
        if len(data) > self.settings.max_packet:
            # charon.max_packet: nothing larger is parsed
            self.drop(f"oversized datagram: {len(data)} octets, more than {self.settings.max_packet}", now)
            return kind
        try:
            message = Message.parse(data)
        except ParseError as err:
            self.drop(f"malformed: {err}", now)
            return kind
        if message.exchange == ExchangeType.IKE_SA_INIT and not message.is_response:
            self._ike_sa_init_request(message, data, src, dst, now)
            return kind
        our_spi = message.spi_r if message.is_initiator else message.spi_i
        ike = self.sas.get(our_spi)
        if ike is None:
            # RFC 7296 §2.21.4: INVALID_IKE_SPI may be sent, but unauthenticated; we drop and count
            self.drop("unknown IKE SPI", now)
            return kind
        if message.exchange == ExchangeType.IKE_SA_INIT and ike.is_initiator and ike.state == IkeState.CONNECTING:
            ike.receive(message, data, src, dst, now)  # SPIr is learnt from this response
            return kind
        if (message.spi_i, message.spi_r) != (ike.spi_i, ike.spi_r):
            self.drop("SPI pair does not match the IKE SA", now, ike)
            return kind
        ike.receive(message, data, src, dst, now)
        return kind

    # ------------------------------------------------------------ IKE_SA_INIT responder

    def _cookie(self, message: Message, nonce: bytes, src: Address) -> bytes:
        # RFC 7296 §2.6: Cookie = <VersionIDofSecret> | Hash(Ni | IPi | SPIi | <secret>)
        digest = hmac.new(self._cookie_secret, nonce + ipaddress.ip_address(src[0]).packed + message.spi_i,
                          hashlib.sha256).digest()
        return b"\x00\x01" + digest[:30]

    def _reply_unauthenticated(self, message: Message, notify: pl.Notify, src: Address, dst: Address,
                               now: float) -> None:
        reply = Message(message.spi_i, bytes(8), ExchangeType.IKE_SA_INIT, 0, False, True, [notify])
        data = reply.serialize()
        self.trace_message(None, "out", reply, reply.payloads, dst, src, len(data), now)
        self._queue(data, dst, src)

    def _ike_sa_init_request(self, message: Message, data: bytes, src: Address, dst: Address, now: float) -> None:
        if message.spi_r != bytes(8) or message.message_id != 0:
            self.drop("IKE_SA_INIT request with a responder SPI or message ID", now)
            return
        existing = self.half_open.get((src, message.spi_i))
        if existing is not None:
            if existing.init_request == data and existing.state == IkeState.CONNECTING:
                self.trace(now, "resend_response", ike_sa=existing.unique_id)
                self.send(existing, [existing.init_response], "responses_resent")  # RFC 7296 §2.1
            elif existing.init_request != data:
                self.drop("second IKE_SA_INIT with the same SPIi", now, existing)
            else:
                self.drop("IKE_SA_INIT request of an SA past IKE_SA_INIT", now, existing)
            return
        self.trace_message(None, "in", message, message.payloads, src, dst, len(data), now)
        sa, ke, nonce = message.get(pl.SA), message.get(pl.KE), message.get(pl.Nonce)
        if sa is None or ke is None or nonce is None:
            self._reply_unauthenticated(message, pl.Notify(notify_type=NotifyType.INVALID_SYNTAX), src, dst, now)
            self.drop("IKE_SA_INIT lacks SA, KE or Ni", now)
            return
        if not 16 <= len(nonce.data) <= 256:
            self.drop("IKE_SA_INIT nonce length outside 16..256", now)
            return
        half_open = self.half_open_count
        if half_open >= self.settings.cookie_threshold:
            # RFC 7296 §2.6: under load, require a cookie before keeping any state
            expected = self._cookie(message, nonce.data, src)
            offered = find_notify(message.payloads, NotifyType.COOKIE)
            if offered is None or not hmac.compare_digest(offered.data, expected):
                self.stats["cookies_sent"] += 1
                self._reply_unauthenticated(message, pl.Notify(notify_type=NotifyType.COOKIE, data=expected), src,
                                            dst, now)
                return
        if not self._within_limits(src[0], now):
            return
        configs = self.config.connections_for(dst[0], src[0])
        if not configs:
            self.drop("no connection for these addresses", now)
            self._reply_unauthenticated(message, pl.Notify(notify_type=NotifyType.NO_PROPOSAL_CHOSEN), src, dst, now)
            return
        config = configs[0]
        local = config.proposals
        if find_notify(message.payloads, NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED) is None:
            # RFC 9370 §2.2.1: without IKE_INTERMEDIATE no additional key exchange can run: the optional
            # ones fall away, a required one leaves no proposal (NO_PROPOSAL_CHOSEN)
            local = without_additional_ke(local)
        selected = select_proposal(local, sa.proposals, prefer_local=True)
        if selected is None:
            self._reply_unauthenticated(message, pl.Notify(notify_type=NotifyType.NO_PROPOSAL_CHOSEN), src, dst, now)
            weak = deprecated_only(sa.proposals)
            self.trace(now, "note", what="no_proposal_chosen", offered=len(sa.proposals),
                       **({"reason": weak} if weak else {}))
            return
        wanted = invalid_ke_group(selected, ke.dh_group)
        if wanted is not None:
            # RFC 7296 §1.3: the responder names the group it wants, keeps no state
            self._reply_unauthenticated(message, pl.Notify(notify_type=NotifyType.INVALID_KE_PAYLOAD,
                                                           data=struct.pack("!H", wanted)), src, dst, now)
            return
        ike = self._new_sa(config, False, dst, src, message.spi_i, self.new_ike_spi(), now)
        ike.init_request = data
        ike.nonce_i = nonce.data
        ike.nonce_r = self.random(self.settings.nonce_size)
        ike.destroy_at = now + self.settings.half_open_timeout
        self.half_open[(src, message.spi_i)] = ike
        self._init_key_of[ike.unique_id] = (src, message.spi_i)
        self._half_open_of[ike.unique_id] = src[0]
        self.half_open_per_peer[src[0]] += 1
        task = IkeInit(selected)
        try:
            task.process_r(ike, message.payloads, now)
        except ExchangeFailed as err:
            self.drop(f"IKE_SA_INIT refused: {err}", now, ike)
            self._reply_unauthenticated(message, pl.Notify(notify_type=NotifyType.INVALID_SYNTAX), src, dst, now)
            ike.destroy(f"IKE_SA_INIT refused: {err}", now, quiet=True)
            return
        ike.tm.respond(task, ExchangeType.IKE_SA_INIT, 0, now)

    def _within_limits(self, peer: str, now: float) -> bool:
        """charon's receiver drops an IKE_SA_INIT past its limits (after the cookie check, so the
        peer's address is known to be real): no answer, no state; counted."""
        settings = self.settings
        if settings.half_open_limit and self.half_open_count >= settings.half_open_limit:
            reason = f"half-open SA limit reached: {self.half_open_count} of {settings.half_open_limit}"
        elif settings.half_open_per_peer and self.half_open_per_peer[peer] >= settings.half_open_per_peer:
            reason = (f"half-open SA limit of the peer reached: {self.half_open_per_peer[peer]} from {peer}, "
                      f"limit {settings.half_open_per_peer}")
        elif settings.ike_sas_per_peer and self.sas_per_peer[peer] >= settings.ike_sas_per_peer:
            reason = (f"IKE SA limit of the peer reached: {self.sas_per_peer[peer]} with {peer}, "
                      f"limit {settings.ike_sas_per_peer}")
        else:
            return True
        self.stats["limits_hit"] += 1
        self.drop(reason, now)
        return False

    # ------------------------------------------------------------ SA bookkeeping

    def ike_keys_ready(self, ike: IkeSA) -> None:
        """Keys of a new IKE SA, handed out once through pop_ike_keys() when export is asked
        (settings.export_keys); otherwise they live only in the IkeSA, and go with it."""
        if self.settings.export_keys:
            self.ike_key_log.append({"ike_sa": ike.unique_id, "spi_i": ike.spi_i, "spi_r": ike.spi_r,
                                     "algorithms": ike.algorithms, "keys": ike.keys,
                                     "generation": ike.key_generation})  # RFC 9370 §2.2.2: one more per update

    def pop_ike_keys(self) -> list[dict[str, Any]]:
        """The IKE SA keys made since the last call (only with settings.export_keys)."""
        entries, self.ike_key_log = self.ike_key_log, []
        return entries

    def lease_address(self, config: IkeConfig, peer: Identity | None, version: int = 4
                      ) -> tuple[IPAddress, list[IPAddress]] | None:
        """An address of IP `version` from the connection's pools for `peer` (the same one again
        on reconnect): the first pool of that family with one free, as strongSwan's attribute
        manager tries them in order."""
        key = str(peer)
        for name in config.pools:
            pool = self.config.pools.get(name)
            if pool is None or pool.first.version != version:
                continue
            taken = self.leases.setdefault(name, {})
            if key in taken:
                return taken[key], pool.dns
            used = set(taken.values())
            for value in range(int(pool.first), int(pool.last) + 1):
                address = ipaddress.ip_address(value)
                if address not in used:
                    taken[key] = address
                    return address, pool.dns
        return None

    def forget(self, ike: IkeSA) -> None:
        self.sas.pop(ike.our_spi, None)
        self.by_id.pop(ike.unique_id, None)
        peer = self._peer_of.pop(ike.unique_id, None)
        if peer is not None:
            _decrement(self.sas_per_peer, peer)
        self._half_open_done(ike.unique_id)
        if ike.tm.reassembly:
            self.reassembly_closed(len(ike.tm.reassembly))
            ike.tm.reassembly.clear()
        key = self._init_key_of.pop(ike.unique_id, None)
        if key is not None and self.half_open.get(key) is ike:
            del self.half_open[key]

    # ------------------------------------------------------------ listing

    def list_sas(self) -> list[dict[str, Any]]:
        out = []
        for ike in self.by_id.values():
            out.append({
                "id": ike.unique_id, "name": ike.config.name, "state": ike.state.value,
                "initiator": ike.is_initiator, "spi_i": ike.spi_i.hex(), "spi_r": ike.spi_r.hex(),
                "local": f"{ike.local[0]}:{ike.local[1]}", "remote": f"{ike.remote[0]}:{ike.remote[1]}",
                "local_id": str(ike.local_id), "remote_id": str(ike.remote_id) if ike.remote_id else None,
                "algorithms": str(ike.algorithms) if ike.algorithms else None,
                "nat": {"local": ike.local_behind_nat, "remote": ike.remote_behind_nat},
                "virtual_ip": ike.virtual_ip, "assigned_ip": ike.assigned_ip,
                "virtual_ips": list(ike.virtual_ips), "assigned_ips": list(ike.assigned_ips),
                "mobike": ike.mobike, "peer_addresses": list(ike.peer_addresses),
                "children": [{
                    "name": c.config.name, "id": c.unique_id, "state": c.state.value, "mode": c.mode,
                    "spi_in": c.spi_in.hex(), "spi_out": c.spi_out.hex(), "algorithms": str(c.algorithms),
                    "local_ts": [str(t) for t in c.local_ts], "remote_ts": [str(t) for t in c.remote_ts],
                    "encap": ike.ipsec_path.encap if ike.state == IkeState.ESTABLISHED else ike.nat_detected,
                    "protocol": "AH" if c.protocol == ProtocolId.AH else "ESP"} for c in ike.children],
            })
        return out


def _decrement(counter: Counter[str], key: str) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]


_SCALARS = frozenset((str, int, bool, float, type(None)))


def _plain(value: Any) -> Any:
    if type(value) in _SCALARS:
        return value
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, pl.TrafficSelector):
        return str(value)
    return value
