"""The gateway daemon: UDP 500/4500 sockets, a timer and a control socket around the
sans-I/O `IkeEndpoint`. One process per gateway namespace, or one thread of a process that
hosts several (lab.net.forkserver's gateway host: `signal_thread` stands in for SIGTERM there).

    ipsec-lab daemon --config swanctl.conf --control /run/gw.ctl [--trace FILE] [--export-keys DIR]

The control socket speaks JSON lines: one request object `{"cmd": ..., ...}` per line,
one response object per line (see `lab.daemon.control`).
"""
from __future__ import annotations

import asyncio
import dataclasses
import datetime
import errno
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from lab.ike import events as ev
from lab.ike.config import Config, IkeConfig, TcpEncap
from lab.ike.endpoint import IkeEndpoint, OutDatagram
from lab.ike.settings import Settings
from lab.ike.states import IkeState

from .dataplane import DataPlaneError
from .routes import ipv6_on

if TYPE_CHECKING:
    from .addresses import AddressMonitor
    from .dataplane import DataPlane
    from .tcp import TcpTransport
from .accounting import Accounting
from .keys import KeyExport
from .narrate import Summariser, line_kind, narrate, record_line_kind
from .radius import RadiusClient, RadiusServerConfig, RadiusTimeout
from .updown import Updown

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
SOL_UDP, UDP_GRO = 17, 104
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
ESP_RCVBUF = 4 << 20
IKE_PORTS = (500, 4500)
MAX_DATAGRAM = 65535


class GatewayError(RuntimeError):
    """A problem starting the gateway that a person can fix; the message says how."""


def _bind_udp(port: int, address: str = "0.0.0.0") -> socket.socket:
    six = ":" in address
    sock = socket.socket(socket.AF_INET6 if six else socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if six:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # IPv4 has its own socket
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
    else:
        sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
    if port == 4500:
        try:
            sock.setsockopt(SOL_UDP, UDP_GRO, 1)  # ESP-in-UDP arrives coalesced where the kernel can
        except OSError:
            pass
        for option in (SO_RCVBUFFORCE, socket.SO_RCVBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, ESP_RCVBUF)
                break
            except OSError:
                pass
    try:
        sock.bind((address, port))
    except PermissionError:
        sock.close()
        raise GatewayError(f"binding UDP port {port} needs root (run the daemon as root)") from None
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise GatewayError(f"UDP port {port} is taken in this namespace (is another IKE daemon or charon "
                               f"running here?)") from None
        raise
    sock.setblocking(False)
    return sock


def route_source(remote: str) -> str | None:
    """The address the kernel would send from to reach `remote` (strongSwan's local_addrs = %any),
    looked up outside the tunnel's routing table (our fwmark)."""
    family = socket.AF_INET6 if ":" in remote else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_MARK", 36), 0x220)
        except OSError:
            pass
        try:
            probe.connect((remote, 500))
        except OSError:
            return None
        return probe.getsockname()[0]


# A gateway that runs in a thread of its own (several gateways in one process) gets no signal:
# signals reach a process, and Python runs their handlers in the main thread. Its SIGINT or
# SIGTERM comes through signal_thread instead, with the same effect.
_thread_signals: dict[int, Callable[[int], None]] = {}  # thread ident -> its gateway's handler
_pending_signals: dict[int, int] = {}  # a signal sent before the thread's gateway was up
_signals_lock = threading.Lock()


def signal_thread(ident: int, signum: int) -> None:
    """Stop the gateway running in thread `ident` as SIGINT or SIGTERM stops one (now, or as soon
    as it is up)."""
    with _signals_lock:
        handler = _thread_signals.get(ident)
        if handler is None:
            _pending_signals[ident] = signum
    if handler is not None:
        try:
            handler(signum)
        except RuntimeError:  # its event loop has closed: the gateway is ending anyway
            pass


def forget_thread(ident: int) -> None:
    """Thread `ident` has ended: a signal it never took is dropped."""
    with _signals_lock:
        _thread_signals.pop(ident, None)
        _pending_signals.pop(ident, None)


def _take_thread_signals(handler: Callable[[int], None]) -> None:
    ident = threading.get_ident()
    with _signals_lock:
        _thread_signals[ident] = handler
        pending = _pending_signals.pop(ident, None)
    if pending is not None:
        handler(pending)


class Gateway:
    def __init__(self, config: Config, control_path: str | None = None, *, settings: Settings | None = None,
                 trace_path: str | None = None, export_keys: str | None = None, log: TextIO | None = None,
                 bind_address: str = "0.0.0.0", ports: tuple[int, int] = IKE_PORTS, dataplane: bool = True,
                 tun_name: str = "ipsec0", tunnel_mtu: int = 1400, offload: bool = True,
                 keepalive_interval: float = 20.0, random: Callable[[int], bytes] = os.urandom,
                 checksum_fixup: bool = True) -> None:
        self.config = config
        self.control_path = control_path
        # the only clock and the only random source the core sees
        # keys leave the core only when asked to be exported
        settings = dataclasses.replace(settings or Settings(), export_keys=bool(export_keys))
        # auth = eap-radius: the Access-Requests the core asks for go out here (lab.daemon.radius)
        self.radius: RadiusClient | None = None
        if config.radius is not None and config.radius.servers:
            radius = config.radius
            self.radius = RadiusClient(radius.servers, tries=radius.retransmit_tries,
                                       timeout=radius.retransmit_timeout, base=radius.retransmit_base, say=self.say)
        self.radius_tasks: set[asyncio.Task] = set()
        self.accounting_tasks: set[asyncio.Task] = set()
        self.endpoint = IkeEndpoint(config, settings, random=random, route_source=route_source,
                                    wall_clock=lambda: datetime.datetime.now(datetime.UTC),
                                    radius_pick=self.radius.pick_name if self.radius else None)
        self.accounting: Accounting | None = None
        if self.radius is not None and config.radius is not None and config.radius.accounting:
            self.accounting = Accounting(self.endpoint, self.radius, config.radius.nas_identifier.encode() or None,
                                         self._send_accounting,
                                         lambda spi: self.dataplane.describe_child(spi) if self.dataplane else None)
        # written out once per pump of the endpoint (see _pump), not a write per line
        self.trace_file = open(trace_path, "a") if trace_path else None
        self._held: list[str] | None = None  # log lines said during a pump
        self.keys = KeyExport(export_keys) if export_keys else None
        self.log = log if log is not None else sys.stdout  # sys.stdout now: a gateway host routes it per thread
        self.bind_address = bind_address
        self.ports = ports
        self.sockets: dict[int, socket.socket] = {}
        self.sockets6: dict[int, socket.socket] = {}  # the same ports over IPv6, on a host with IPv6
        self.loop: asyncio.AbstractEventLoop | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.stopping: asyncio.Event | None = None
        self.started = time.monotonic()
        self.waiters: list[tuple[Callable[[ev.Event], bool], asyncio.Future]] = []
        self.esp_handler: Callable[[bytes, tuple, tuple], None] | None = None
        self.esp_flush: Callable[[], None] | None = None
        self.event_handlers: list[Callable[[ev.Event], None]] = []
        self.want_dataplane = dataplane
        self.tun_name, self.tunnel_mtu = tun_name, tunnel_mtu
        self.offload = offload
        self.keepalive_interval = keepalive_interval
        self.checksum_fixup = checksum_fixup
        self.dataplane: DataPlane | None = None
        self.tcp: TcpTransport | None = None  # IKE and ESP over TCP (RFC 9329), when a connection wants it
        self.successor: dict[int, int] = {}  # IKE SA id -> the one a TCP fallback started in its place
        self.addresses: AddressMonitor | None = None  # the AddressMonitor (MOBIKE: our addresses change under us)
        # under attack the log and the trace stay small: repeats are summarised (narrate.Summariser)
        self.log_summary = Summariser()
        self.trace_summary = Summariser(summary=self._trace_summary)
        self.summary_timer: asyncio.TimerHandle | None = None
        self.updown = Updown(self)  # children's updown scripts (swanctl.conf updown = ...)

    # ------------------------------------------------------------ running

    def now(self) -> float:
        return time.monotonic() - self.started

    def say(self, line: str) -> None:
        text = f"{time.strftime('%H:%M:%S')} {line}\n"
        if self._held is not None:
            self._held.append(text)
            return
        self.log.write(text)
        self.log.flush()

    def _write_out(self) -> None:
        """The log lines held during a pump, and the trace, written out."""
        held, self._held = self._held, None
        if held:
            self.log.write("".join(held))
            self.log.flush()
        if self.trace_file is not None and not self.trace_file.closed:
            self.trace_file.flush()

    async def run(self, ready: Callable[[], None] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        server = None
        try:
            # whatever of this is made before a failure or a signal is undone in `finally`
            authorities = getattr(self.config, "authorities", ())
            if any(a.crl_uris for a in authorities):
                from .crls import fetch_authority_crls
                self.config.crls += fetch_authority_crls(authorities, self.say)
            for port in self.ports:
                self.sockets[port] = _bind_udp(port, self.bind_address)
                self.loop.add_reader(self.sockets[port], self._readable, port)
            if self.bind_address == "0.0.0.0" and ipv6_on():
                for port in self.ports:
                    self.sockets6[port] = _bind_udp(port, "::")
                    self.loop.add_reader(self.sockets6[port], self._readable, port, True)
            tcp_ports = [c.tcp_port for c in self.config.connections.values() if c.tcp != TcpEncap.NO]
            if tcp_ports:
                from .tcp import TcpTransport
                self.tcp = TcpTransport(self, port=tcp_ports[0], address=self.bind_address)
                self.tcp.start()
            if self.want_dataplane:
                from .dataplane import DataPlane
                self.dataplane = DataPlane(self, self.tun_name, self.tunnel_mtu, offload=self.offload,
                                           random=self.endpoint.random,
                                           keepalive_interval=self.keepalive_interval,
                                           checksum_fixup=self.checksum_fixup)
                self.dataplane.start()
            from .addresses import AddressMonitor
            self.addresses = AddressMonitor(self, exclude=("lo", self.tun_name))
            self.addresses.start()
            if self.control_path:
                from .control import serve_control
                try:
                    os.unlink(self.control_path)
                except FileNotFoundError:
                    pass
                server = await serve_control(self, self.control_path)
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    self.loop.add_signal_handler(sig, self._signalled, sig)
                except (RuntimeError, ValueError):  # not the main thread (tests, a gateway host)
                    _take_thread_signals(self._signal_soon)
                    break
            self.say(f"ipsec-lab gateway up: {len(self.config.connections)} connection(s), UDP "
                     f"{'/'.join(map(str, self.ports))}"
                     + (f", TCP {self.tcp.port}" if self.tcp is not None else "")
                     + (f", control {self.control_path}" if self.control_path else ""))
            for conn in self.config.connections.values():
                for child in conn.children.values():
                    if str(child.start_action) == "start" and not child.mode.is_shunt:
                        self.initiate(conn.name, child.name)
            self._pump()
            if ready is not None:
                ready()
            await self.stopping.wait()
            if self.signalled != signal.SIGKILL:  # SIGKILL through signal_thread: a crash, no goodbye
                await self._shutdown()
        finally:
            if server is not None:
                server.close()
                await server.wait_closed()
            if self.control_path and server is not None:
                try:
                    os.unlink(self.control_path)
                except FileNotFoundError:
                    pass
            if self.addresses is not None:
                self.addresses.stop()
            if self.dataplane is not None:
                self.dataplane.stop()
            if self.tcp is not None:
                self.tcp.stop()
            for sock in [*self.sockets.values(), *self.sockets6.values()]:
                self.loop.remove_reader(sock)
                sock.close()
            if self.timer is not None:
                self.timer.cancel()
            if self.summary_timer is not None:
                self.summary_timer.cancel()
            self._write_summaries(everything=True)
            if self.trace_file is not None:
                self.trace_file.close()
            self.say("ipsec-lab gateway stopped")
            with _signals_lock:
                _thread_signals.pop(threading.get_ident(), None)
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    if self.loop.remove_signal_handler(sig):
                        signal.signal(sig, signal.SIG_IGN)  # done: a late signal no longer cuts anything short
                except (RuntimeError, ValueError):
                    pass

    def _signalled(self, signum: int) -> None:
        """SIGINT or SIGTERM: delete the IKE SAs, undo everything, exit 128 + signum (run_gateway)."""
        self.signalled = signum
        if self.stopping is not None:
            self.stopping.set()

    signalled: int | None = None

    def _signal_soon(self, signum: int) -> None:
        """_signalled from another thread (signal_thread)."""
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self._signalled, signum)

    async def _shutdown(self, grace: float = 2.0) -> None:
        """Delete every IKE SA (the peer learns of it), waiting at most `grace` seconds."""
        for task in list(self.radius_tasks):
            task.cancel()
        if self.endpoint.terminate(self.now()):
            self._pump()
            deadline = time.monotonic() + grace
            while self.endpoint.by_id and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        if self.accounting_tasks:  # the Stops of the SAs just deleted (RFC 2866 §5.1)
            await asyncio.wait(list(self.accounting_tasks), timeout=grace)
            for task in list(self.accounting_tasks):
                task.cancel()

    def stop(self) -> None:
        if self.stopping is not None and self.loop is not None:
            self.loop.call_soon_threadsafe(self.stopping.set)

    # ------------------------------------------------------------ wire

    def udp_socket(self, port: int, peer: str) -> socket.socket | None:
        """Our UDP socket on `port` of the peer's IP version."""
        return (self.sockets6 if ":" in peer else self.sockets).get(port)

    def _readable(self, port: int, six: bool = False) -> None:
        sock = (self.sockets6 if six else self.sockets)[port]
        esp_handler = self.esp_handler
        for _ in range(64):
            try:
                data, ancillary, _flags, src = sock.recvmsg(MAX_DATAGRAM, 64)
            except BlockingIOError:
                break
            except OSError as err:
                self.endpoint.drop(f"receive error: {err}", self.now())
                break
            dst_ip, segment = ("::" if six else self.bind_address), 0
            for level, kind, value in ancillary:
                if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(value) >= 12:
                    dst_ip = socket.inet_ntoa(value[8:12])
                elif level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO and len(value) >= 16:
                    dst_ip = socket.inet_ntop(socket.AF_INET6, value[:16])
                elif level == SOL_UDP and kind == UDP_GRO:
                    segment = struct.unpack("i", value[:4])[0]
            pieces = [data[i:i + segment] for i in range(0, len(data), segment)] if segment else [data]
            if segment and self.dataplane is not None:
                self.dataplane.stats["gro_receives"] += 1
            for piece in pieces:
                # RFC 3948 §2.2: on 4500, anything but a non-ESP marker or a keepalive is ESP
                if esp_handler is not None and port == 4500 and len(piece) > 8 and piece[:4] != b"\0\0\0\0":
                    esp_handler(piece, (src[0], src[1]), (dst_ip, port))
                    continue
                if self.tcp is not None and self.tcp.peers:
                    self.tcp.heard_over_udp(src[0])
                self.endpoint.receive_datagram(piece, (src[0], src[1]), (dst_ip, port), self.now())
        if self.esp_flush is not None:
            self.esp_flush()
        self._pump()

    def _send(self, datagram: OutDatagram) -> None:
        if self.tcp is not None and self.tcp.send_ike(datagram.data, datagram.dst):
            return
        port = datagram.src[1] if datagram.src[1] in self.sockets else self.ports[0]
        try:
            if ":" in datagram.dst[0]:
                sock = self.sockets6.get(port)
                if sock is None:
                    self.endpoint.drop("send error: no IPv6 on this host", self.now())
                    return
                pktinfo6 = struct.pack("16sI", socket.inet_pton(socket.AF_INET6, datagram.src[0]), 0)
                sock.sendmsg([datagram.data], [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, pktinfo6)], 0,
                             datagram.dst)
                return
            sock = self.sockets[port]
            pktinfo = struct.pack("I4s4s", 0, socket.inet_aton(datagram.src[0]), bytes(4))
            sock.sendmsg([datagram.data], [(socket.IPPROTO_IP, IP_PKTINFO, pktinfo)], 0, datagram.dst)
        except OSError as err:
            self.endpoint.drop(f"send error: {err.strerror}", self.now())

    def _pump(self) -> None:
        """Send what the endpoint produced, handle its events and trace, re-arm the timer; what
        it logs and traces is written out at the end, in one write each."""
        self._batched(self._pump_once)

    def _batched(self, work: Callable[[], None]) -> None:
        """Run `work` with the log lines it says held, then write them and the trace out."""
        if self._held is not None:
            return work()
        self._held = []
        try:
            work()
        finally:
            self._write_out()

    def _pump_once(self) -> None:
        for datagram in self.endpoint.datagrams_to_send():
            self._send(datagram)
        wall, now = time.time(), self.now()
        for record in self.endpoint.pop_trace():
            # the record's own moment on the wall clock (the clock of pcap timestamps)
            record["wall"] = round(wall - (now - record["t"]), 6)
            line = narrate(record)
            if line:
                for out in self.log_summary.add(line, now, record_line_kind(record, line)):
                    self.say(out)
            if self.trace_file is not None:
                kind = _trace_kind(record)
                for item in [record] if kind is None else self.trace_summary.add(record, now, kind):
                    self._write_trace(item)
        self._arm_summaries()
        if self.keys is not None:
            self.keys.update_ike(self.endpoint)
        while (event := self.endpoint.next_event()) is not None:
            self._event(event)
        if self.loop is not None:
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            due = self.endpoint.get_timer()
            if due is not None:
                self.timer = self.loop.call_later(max(0.0, due - self.now()), self._on_timer)

    def _arm_summaries(self) -> None:
        if self.loop is None or self.summary_timer is not None:
            return
        due = [t for t in (self.log_summary.due(), self.trace_summary.due()) if t is not None]
        if not due:
            return
        self.summary_timer = self.loop.call_later(max(0.0, min(due) - self.now()), self._on_summary_timer)

    def _on_summary_timer(self) -> None:
        self.summary_timer = None
        self._batched(self._write_summaries)
        self._arm_summaries()

    def _write_summaries(self, everything: bool = False) -> None:
        now = self.now()
        for line in self.log_summary.flush(now, everything):
            self.say(line)
        for record in self.trace_summary.flush(now, everything):
            self._write_trace(record)

    def _write_trace(self, record: dict[str, Any]) -> None:
        if self.trace_file is not None:
            self.trace_file.write(_TRACE_JSON.encode(record) + "\n")

    def _trace_summary(self, first: dict[str, Any], more: int, span: float) -> dict[str, Any]:
        now = self.now()
        return {"t": now, "kind": "summary", "of": first["kind"], "more": more, "seconds": round(span, 3),
                "like": {k: v for k, v in first.items() if k not in ("t", "wall")},
                "wall": round(time.time(), 6)}

    def _on_timer(self) -> None:
        self.timer = None
        self.endpoint.handle_timer(self.now())
        self._pump()

    def _event(self, event: ev.Event) -> None:
        if self.keys is not None and isinstance(event, ev.ChildSaUp):
            self.keys.add_child(event)
        if self.accounting is not None:
            self.accounting.on_event(event)  # before the data plane forgets a deleted CHILD SA's counts
        if isinstance(event, ev.RadiusRequest) and self.loop is not None:
            task = self.loop.create_task(self._ask_radius(event))
            self.radius_tasks.add(task)
            task.add_done_callback(self.radius_tasks.discard)
        for handler in self.event_handlers:
            handler(event)
        # after the data plane installed (or removed) the SA, as charon's updown plugin does
        self.updown.on_event(event)
        for matcher, future in list(self.waiters):
            if not future.done() and matcher(event):
                future.set_result(event)
                self.waiters.remove((matcher, future))

    async def _ask_radius(self, event: ev.RadiusRequest) -> None:
        """One Access-Request of an IKE SA's EAP-RADIUS round, sent (again) until a true answer
        comes; the answer goes back into the core, whose held IKE_AUTH response then goes out.
        A lying answer is counted and logged by the client and the request keeps waiting."""
        assert self.radius is not None
        server = next((s for s in self.radius.servers if s.name == event.server), None)
        if server is None:
            return

        def check(raw: bytes) -> None:
            if self.endpoint.radius_waiting(event.ike_sa):  # the IKE SA may be gone meanwhile
                self.endpoint.radius_answer(event.ike_sa, raw, self.now())  # raises RadiusError for a lie

        try:
            await self.radius.exchange(server, event.packet, check)
        except RadiusTimeout as err:
            self.endpoint.radius_failed(event.ike_sa, str(err), self.now())
        except OSError as err:
            self.say(f"radius: cannot reach {server.name} ({server.address}): {err.strerror}")
            self.endpoint.radius_failed(event.ike_sa, f"RADIUS server {server.name} unreachable", self.now())
        self._pump()

    def _send_accounting(self, server: RadiusServerConfig, request: bytes, check: Callable[[bytes], None],
                         port: int, what: str) -> None:
        if self.loop is None or self.radius is None:
            return
        radius = self.radius

        async def send() -> None:
            try:
                await radius.exchange(server, request, check, port=port)
                self.say(f"radius: accounting {what} answered by {server.name}")
            except RadiusTimeout:
                self.say(f"radius: accounting {what} not answered by {server.name}")
            except OSError as err:
                self.say(f"radius: accounting {what} not sent to {server.name}: {err.strerror}")
        task = self.loop.create_task(send())
        self.accounting_tasks.add(task)
        task.add_done_callback(self.accounting_tasks.discard)

    # ------------------------------------------------------------ commands (control socket)

    def initiate(self, name: str, child: str | None = None, reuse: bool = False) -> int:
        """Start connection `name` with `child` (its first if None) in a new IKE SA; with `reuse`,
        the child alone in an established IKE SA of the connection if there is one, as swanctl
        --initiate does (CREATE_CHILD_SA, RFC 7296 §1.3.1). The IKE SA's id."""
        conn = self.config.connections.get(name)
        if conn is not None and conn.children:
            if child is not None and child in conn.children and conn.children[child].mode.is_shunt:
                raise ValueError(f"{name}/{child} is a shunt (mode = {conn.children[child].mode}): it is a policy "
                                 f"installed at start (start_action = trap), there is no SA to initiate")
            if child is None:
                negotiable = [c.name for c in conn.children.values() if not c.mode.is_shunt]
                if not negotiable:
                    raise ValueError(f"connection {name} has only shunts (mode = pass/drop): nothing to initiate")
                child = negotiable[0]
        if reuse and child is not None:
            established = [ike for ike in self.endpoint.find(name=name) if ike.state == IkeState.ESTABLISHED]
            if established:
                self.endpoint.create_child(self.now(), established[0].unique_id, child)
                self._pump()
                return established[0].unique_id
        if conn is not None and conn.tcp == TcpEncap.YES:
            return self._initiate_tcp(conn, child)
        ike = self.endpoint.initiate(name, self.now(), child=child)
        if conn is not None and conn.tcp == TcpEncap.FALLBACK and self.loop is not None:
            self.loop.call_later(conn.tcp_fallback_time, self._tcp_fallback, ike.unique_id, conn, child)
        self._pump()
        return ike.unique_id

    def _initiate_tcp(self, conn: IkeConfig, child: str | None, replaces: int | None = None) -> int:
        """IKE_SA_INIT into a new TCP stream (RFC 9329 §6.1), the IKE SA on the stream's ports."""
        remote = conn.initiator_remote_address()
        if self.tcp is None or remote is None:
            raise ValueError(f"connection {conn.name} wants TCP but the daemon listens on none (it started without a "
                             f"tcp connection: restart it) or the connection has no single remote address")
        stream = self.tcp.connect(str(remote), conn.tcp_port)
        ike = self.endpoint.initiate(conn.name, self.now(), child=child, ports=(stream.local[1], conn.tcp_port))
        if replaces is not None:
            self.successor[replaces] = ike.unique_id
        self._pump()
        return ike.unique_id

    def attempt(self, ike_id: int) -> list[int]:
        """The IKE SAs of one initiation: `ike_id` and the ones that replaced it (a TCP fallback)."""
        ids = [ike_id]
        while ids[-1] in self.successor:
            ids.append(self.successor[ids[-1]])
        return ids

    def _tcp_fallback(self, ike_id: int, conn: IkeConfig, child: str | None) -> None:
        """RFC 9329 §5.1: no answer to IKE_SA_INIT over UDP in tcp_fallback_time: try TCP."""
        ike = self.endpoint.by_id.get(ike_id)
        if ike is None or ike.state != IkeState.CONNECTING or ike.spi_r != bytes(8):
            return  # answered (or gone) meanwhile
        self.say(f"[TCP] {conn.name}: no answer over UDP from {ike.remote[0]} in {conn.tcp_fallback_time} s; "
                 f"falling back to TCP port {conn.tcp_port} (RFC 9329 §5.1)")
        try:
            self.endpoint.terminate(self.now(), ike_id=ike_id)
            self._initiate_tcp(conn, child, replaces=ike_id)
        except (OSError, ValueError) as err:
            self.say(f"[TCP] {conn.name}: {err}")
            self._pump()

    async def wait_for(self, matcher: Callable[[ev.Event], bool], timeout: float) -> ev.Event | None:
        assert self.loop is not None
        future: asyncio.Future = self.loop.create_future()
        self.waiters.append((matcher, future))
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return None
        finally:
            if (matcher, future) in self.waiters:
                self.waiters.remove((matcher, future))

    def stats(self) -> dict[str, Any]:
        return {"uptime": round(self.now(), 1), "ike_sas": len(self.endpoint.by_id),
                "child_sas": sum(len(s.children) for s in self.endpoint.by_id.values()),
                "half_open": self.endpoint.half_open_count, "reassemblies": self.endpoint.reassemblies,
                "counters": dict(self.endpoint.stats), "drops": dict(self.endpoint.drops),
                "dataplane": self.dataplane.totals() if self.dataplane is not None else None,
                "tcp": self.tcp.describe() if self.tcp is not None else None,
                **({"radius": {name: dict(c) for name, c in self.radius.counters.items()}} if self.radius else {})}

    def list_sas(self) -> list[dict[str, Any]]:
        sas = self.endpoint.list_sas()
        if self.dataplane is not None:
            for sa in sas:
                for child in sa["children"]:
                    child["traffic"] = self.dataplane.describe_child(bytes.fromhex(child["spi_in"]))
        return sas

    def list_conns(self) -> list[dict[str, Any]]:
        from lab.ike.proposals import format_proposals
        out = []
        for conn in self.config.connections.values():
            out.append({
                "name": conn.name, "local_addrs": [str(a) for a in conn.local_addrs],
                "remote_addrs": [str(a) for a in conn.remote_addrs], "proposals": format_proposals(conn.proposals),
                "local": {"auth": str(conn.local.method), "id": str(conn.local_identity())},
                "remote": {"auth": str(conn.remote.method), "id": str(conn.remote_identity)},
                "children": [{"name": c.name, "mode": str(c.mode), "local_ts": [str(t) for t in c.local_ts],
                              "remote_ts": [str(t) for t in c.remote_ts],
                              "esp_proposals": format_proposals(c.esp_proposals)} for c in conn.children.values()],
            })
        return out


_TRACE_JSON = json.JSONEncoder(default=str)  # one encoder: json.dumps(default=...) makes one per call


def _trace_kind(record: dict[str, Any]) -> Any:
    """The kind under which a trace record is summarised when repeated, or None for records
    kept one by one: drops, and messages that belong to no IKE SA (IKE_SA_INIT requests and
    the unauthenticated answers to them) are what a flood makes."""
    if record["kind"] == "drop":
        return ("drop", line_kind(record.get("reason", "")))
    if record["kind"] == "message" and record.get("ike_sa") is None:
        return ("message", record.get("dir"), record.get("exchange"), tuple(record.get("payloads") or ()))
    return None


def run_gateway(config_path: str, control_path: str | None, trace_path: str | None, export_keys: str | None,
                settings: Settings | None = None, dataplane: bool = True, tunnel_mtu: int = 1400,
                offload: bool = True, keepalive_interval: float = 20.0, checksum_fixup: bool = True) -> int:
    from lab.conf.swanctl import ConfigError, load_swanctl
    try:
        config = load_swanctl(config_path)
    except ConfigError as err:
        print(f"ipsec-lab daemon: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"ipsec-lab daemon: cannot read {config_path}: {err.strerror}", file=sys.stderr)
        return 2
    if export_keys is None:
        export_keys = getattr(config, "export_keys", None)
    gateway = Gateway(config, control_path, settings=settings, trace_path=trace_path, export_keys=export_keys,
                      dataplane=dataplane, tunnel_mtu=tunnel_mtu, offload=offload,
                      keepalive_interval=keepalive_interval, checksum_fixup=checksum_fixup)
    try:
        asyncio.run(gateway.run())
    except (GatewayError, DataPlaneError) as err:
        print(f"ipsec-lab daemon: {err}", file=sys.stderr)
        return 1
    if gateway.signalled == signal.SIGKILL:  # only through signal_thread: a real SIGKILL prints nothing
        print("ipsec-lab daemon: killed (SIGKILL to its thread of a gateway host): no goodbye to its peers; its TUN "
              "device, routes and sockets gone", file=sys.stderr)
        return 128 + signal.SIGKILL
    if gateway.signalled is not None:
        print(f"ipsec-lab daemon: interrupted ({signal.Signals(gateway.signalled).name}); its IKE SAs are deleted, "
              f"its TUN device, routes and sockets gone", file=sys.stderr)
        return 128 + gateway.signalled
    return 0
