"""IKE and ESP over TCP (RFC 9329) for the gateway: the listening socket (responder), the
streams it opens (initiator), and what goes in and out of them. The framing is
lab.esp.tcpencap's; this module only moves octets.

A message the IKE endpoint sends goes into a stream when one leads to its destination (the
exact peer address and port, else the newest stream with that peer's IP), otherwise out of
the UDP sockets. IKE frames read from a stream are handed to the endpoint with the non-ESP
marker, as if they had arrived on port 4500 (whatever the TCP port), from the stream's far end
(so NAT detection hashes the TCP addresses, RFC 9329 §6.5), ESP frames to the data plane. Bad
framing is counted (drops "tcp framing: ...") and its stream closed; nothing else stops.

The initiator re-opens a stream that broke (reset, closed) while it still has IKE SAs with
that peer (RFC 9329 §6.1: the SAs are not tied to the TCP connection): the SAs stay, their
next messages and packets take the new stream.
"""
from __future__ import annotations

import errno
import socket
from collections import Counter
from typing import TYPE_CHECKING, Any

from lab.esp.tcpencap import PREFIX, StreamDecoder, frame_esp, frame_ike
from lab.ike.message import NON_ESP_MARKER

if TYPE_CHECKING:
    from .gateway import Gateway

Address = tuple[str, int]
SO_MARK = getattr(socket, "SO_MARK", 36)
READ = 65536
MAX_BUFFERED = 4 << 20       # octets waiting to be written before ESP is dropped (IKE never is)
RECONNECT = (0.5, 1.0, 2.0, 4.0)  # seconds before each retry; then every 4 s


class Stream:
    """One TCP connection carrying IKE and ESP. `initiator`: we opened it (and sent the prefix)."""

    def __init__(self, transport: TcpTransport, sock: socket.socket, peer: Address, local: Address,
                 initiator: bool, connected: bool) -> None:
        self.transport = transport
        self.sock = sock
        self.peer = peer
        self.local = local
        self.initiator = initiator
        self.connected = connected
        # RFC 9329 §4: only the initiator's direction starts with "IKETCP"
        self.decoder = StreamDecoder(expect_prefix=not initiator)
        self.out = bytearray(PREFIX if initiator else b"")
        self.closed = False
        self.writing = False
        self.stats: Counter[str] = Counter()

    def describe(self) -> dict[str, Any]:
        return {"peer": f"{self.peer[0]}:{self.peer[1]}", "local": f"{self.local[0]}:{self.local[1]}",
                "initiator": self.initiator, "connected": self.connected, **dict(self.stats),
                "frames_in": {k: v for k, v in self.decoder.stats.items() if k != "octets"}}

    def write(self, data: bytes, droppable: bool = False) -> bool:
        if self.closed:
            return False
        if droppable and len(self.out) > MAX_BUFFERED:
            self.stats["esp_dropped_full"] += 1
            return False
        self.out += data
        if self.connected and not self.writing:
            self.flush()
        return True

    def flush(self) -> None:
        while self.out and not self.closed:
            try:
                sent = self.sock.send(self.out)
            except BlockingIOError:
                break
            except OSError as err:
                self.transport.broken(self, f"send: {err.strerror or err}")
                return
            self.stats["octets_out"] += sent
            del self.out[:sent]
        loop = self.transport.gateway.loop
        if loop is None or self.closed:
            return
        if self.out and not self.writing:
            loop.add_writer(self.sock, self.flush)
            self.writing = True
        elif not self.out and self.writing:
            loop.remove_writer(self.sock)
            self.writing = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        loop = self.transport.gateway.loop
        if loop is not None:
            loop.remove_reader(self.sock)
            if self.writing or not self.connected:
                loop.remove_writer(self.sock)
        self.sock.close()


class TcpTransport:
    def __init__(self, gateway: Gateway, port: int = 4500, address: str = "0.0.0.0", listen: bool = True) -> None:
        self.gateway = gateway
        self.port = port
        self.address = address
        self.want_listen = listen
        self.listener: socket.socket | None = None
        self.by_addr: dict[Address, Stream] = {}
        self.by_ip: dict[str, Stream] = {}       # the newest stream with each peer IP
        self.initiated: dict[str, int] = {}      # peer IP -> its TCP port, for streams we re-open
        self.retries: dict[str, int] = {}
        # peers whose IKE runs over TCP: while their stream is down, IKE waits for the next one
        # and ESP is dropped (neither goes out by UDP, which the path may not pass)
        self.peers: set[str] = set()
        self.pending: dict[str, list[bytes]] = {}
        self.stats: Counter[str] = Counter()

    # ------------------------------------------------------------ setup

    def start(self) -> None:
        if not self.want_listen:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        _mark(sock)
        try:
            sock.bind((self.address, self.port))
        except OSError as err:
            sock.close()
            from .gateway import GatewayError
            raise GatewayError(f"cannot listen on TCP port {self.port}: {err.strerror}") from None
        sock.listen(16)
        sock.setblocking(False)
        self.listener = sock
        assert self.gateway.loop is not None
        self.gateway.loop.add_reader(sock, self._accept)

    def stop(self) -> None:
        self.initiated.clear()
        for stream in list(self.by_addr.values()):
            stream.close()
        self.by_addr.clear()
        self.by_ip.clear()
        if self.listener is not None:
            if self.gateway.loop is not None:
                self.gateway.loop.remove_reader(self.listener)
            self.listener.close()
            self.listener = None

    def describe(self) -> dict[str, Any]:
        return {"listening": self.listener is not None and f"{self.address}:{self.port}", **dict(self.stats),
                "streams": [s.describe() for s in self.by_addr.values()]}

    # ------------------------------------------------------------ opening

    def _accept(self) -> None:
        assert self.listener is not None
        for _ in range(16):
            try:
                sock, peer = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:
                self.stats["accept_errors"] += 1
                self.gateway.say(f"[TCP] accept failed: {err.strerror}")
                return
            sock.setblocking(False)
            _mark(sock)
            local = sock.getsockname()[:2]
            stream = Stream(self, sock, (peer[0], peer[1]), (local[0], local[1]), initiator=False, connected=True)
            self._register(stream)
            self.stats["accepted"] += 1
            self.gateway.say(f"[TCP] stream from {peer[0]}:{peer[1]} accepted (RFC 9329)")

    def connect(self, peer_ip: str, port: int) -> Stream:
        """A stream to the peer (the connection completes in the background; what is written
        before waits for it). Registered at once, so the endpoint's first message takes it."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        _mark(sock)
        code = sock.connect_ex((peer_ip, port))
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            raise OSError(code, f"cannot connect to {peer_ip}:{port}: {errno.errorcode.get(code, code)}")
        local = sock.getsockname()[:2]  # the port is bound by connect_ex already
        stream = Stream(self, sock, (peer_ip, port), (local[0], local[1]), initiator=True, connected=code == 0)
        self.initiated[peer_ip] = port
        self._register(stream)
        self.stats["connects"] += 1
        if code == 0:
            self._connected(stream)
        else:
            assert self.gateway.loop is not None
            self.gateway.loop.add_writer(sock, self._connect_done, stream)
        return stream

    def _connect_done(self, stream: Stream) -> None:
        loop = self.gateway.loop
        assert loop is not None
        loop.remove_writer(stream.sock)
        code = stream.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self.broken(stream, f"connect: {errno.errorcode.get(code, code)}")
            return
        stream.connected = True
        self._connected(stream)

    def _connected(self, stream: Stream) -> None:
        self.retries.pop(stream.peer[0], None)
        self.gateway.say(f"[TCP] stream to {stream.peer[0]}:{stream.peer[1]} open from port {stream.local[1]} "
                         f"(RFC 9329)")
        stream.flush()

    def _register(self, stream: Stream) -> None:
        self.by_addr[stream.peer] = stream
        self.by_ip[stream.peer[0]] = stream
        self.peers.add(stream.peer[0])
        for frame in self.pending.pop(stream.peer[0], []):
            stream.write(frame)
        assert self.gateway.loop is not None
        self.gateway.loop.add_reader(stream.sock, self._readable, stream)

    # ------------------------------------------------------------ out

    def stream_to(self, dst: Address) -> Stream | None:
        stream = self.by_addr.get(dst)
        if stream is None:
            stream = self.by_ip.get(dst[0])
        return stream

    def send_ike(self, data: bytes, dst: Address) -> bool:
        """An IKE datagram of the endpoint's (marker or not) written into the stream to `dst`;
        False when no stream leads there (it goes by UDP)."""
        stream = self.stream_to(dst)
        message = data[4:] if data[:4] == NON_ESP_MARKER else data
        if stream is None:
            if dst[0] not in self.peers:
                return False
            held = self.pending.setdefault(dst[0], [])
            if len(held) < 64:
                held.append(frame_ike(message))
                self.stats["ike_held"] += 1
            return True
        stream.write(frame_ike(message))  # RFC 9329 §3.1
        self.stats["ike_out"] += 1
        return True

    def send_esp(self, payload: bytes, peer_ip: str) -> bool:
        stream = self.by_ip.get(peer_ip)
        if stream is None:
            if peer_ip not in self.peers:
                return False
            self.stats["esp_dropped_no_stream"] += 1
            return True
        if stream.write(frame_esp(payload), droppable=True):  # RFC 9329 §3.2
            self.stats["esp_out"] += 1
        return True

    def heard_over_udp(self, peer_ip: str) -> None:
        """The peer spoke IKE over UDP and has no stream: what we send it goes by UDP again."""
        if peer_ip not in self.by_ip and peer_ip not in self.initiated:
            self.peers.discard(peer_ip)
            self.pending.pop(peer_ip, None)

    def carries(self, peer_ip: str) -> bool:
        return peer_ip in self.peers

    # ------------------------------------------------------------ in

    def _readable(self, stream: Stream) -> None:
        gateway = self.gateway
        try:
            data = stream.sock.recv(READ)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as err:
            self.broken(stream, err.strerror or str(err))
            return
        if not data:
            error = stream.decoder.close()
            if error is not None:
                self._bad_framing(stream, error.reason, str(error))
            self.broken(stream, "closed by the peer")
            return
        stream.stats["octets_in"] += len(data)
        frames = stream.decoder.feed(data)
        endpoint, now = gateway.endpoint, gateway.now()
        esp_handler = gateway.esp_handler
        for frame in frames:
            if frame.kind == "ike":
                endpoint.receive_datagram(NON_ESP_MARKER + frame.data, stream.peer, stream.local, now, tcp=True)
            elif frame.kind == "esp":
                if esp_handler is not None:
                    esp_handler(frame.data, stream.peer, stream.local)
                else:
                    self.stats["esp_without_dataplane"] += 1
            else:
                self.stats["keepalives_in"] += 1  # RFC 9329 §6.6: dropped silently
        if frames and gateway.esp_flush is not None:
            gateway.esp_flush()
        if stream.decoder.error is not None:
            self._bad_framing(stream, stream.decoder.error.reason, str(stream.decoder.error))
            self.broken(stream, "bad framing")
        gateway._pump()

    def _bad_framing(self, stream: Stream, reason: str, detail: str) -> None:
        self.stats["bad_framing"] += 1
        self.gateway.endpoint.drop(f"tcp framing: {reason}", self.gateway.now())
        self.gateway.say(f"[TCP] stream from {stream.peer[0]}:{stream.peer[1]}: {detail}; closing it")

    def broken(self, stream: Stream, why: str) -> None:
        """A stream ended; the initiator re-opens it while IKE SAs with the peer remain."""
        if stream.closed:
            return
        stream.close()
        if self.by_addr.get(stream.peer) is stream:
            del self.by_addr[stream.peer]
        if self.by_ip.get(stream.peer[0]) is stream:
            del self.by_ip[stream.peer[0]]
            newer = [s for s in self.by_addr.values() if s.peer[0] == stream.peer[0]]
            if newer:
                self.by_ip[stream.peer[0]] = newer[-1]
        self.stats["closed"] += 1
        self.gateway.say(f"[TCP] stream {stream.local[1]} - {stream.peer[0]}:{stream.peer[1]} ended ({why})")
        if stream.initiator and stream.peer[0] in self.initiated:
            self._reconnect_later(stream.peer[0])

    def _reconnect_later(self, peer_ip: str) -> None:
        tries = self.retries.get(peer_ip, 0)
        self.retries[peer_ip] = tries + 1
        delay = RECONNECT[min(tries, len(RECONNECT) - 1)]
        assert self.gateway.loop is not None
        self.gateway.loop.call_later(delay, self._reconnect, peer_ip)

    def _reconnect(self, peer_ip: str) -> None:
        port = self.initiated.get(peer_ip)
        if port is None or peer_ip in self.by_ip:
            return
        if not any(ike.remote[0] == peer_ip for ike in self.gateway.endpoint.by_id.values()):
            self.initiated.pop(peer_ip, None)  # nothing left to carry
            self.retries.pop(peer_ip, None)
            self.peers.discard(peer_ip)
            self.pending.pop(peer_ip, None)
            return
        self.stats["reconnects"] += 1
        self.gateway.say(f"[TCP] re-opening the stream to {peer_ip}:{port}; the IKE and CHILD SAs stay "
                         f"(RFC 9329 §6.1)")
        try:
            self.connect(peer_ip, port)
        except OSError as err:
            self.gateway.say(f"[TCP] {err.strerror}")
            self._reconnect_later(peer_ip)


def _mark(sock: socket.socket) -> None:
    """Our own packets are never routed into the tunnel (lab.daemon.routes.FWMARK)."""
    from .routes import FWMARK
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_MARK, FWMARK)
    except OSError:
        pass
