"""The data plane's packet path: the TUN device, the ESP and AH sockets, and lab.esp between them.

Like strongSwan's kernel-libipsec router (this kernel has no ESP): packets routed into the TUN
device are matched against the SPD, protected and sent as ESP-in-UDP on port 4500 (NAT
detected or encapsulation forced) or as plain ESP on a raw socket (IP protocol 50); arriving
ESP is unprotected and written to the TUN device for the kernel to forward. Reads and sends go
in batches (UDP GSO out, coalesced TCP segments in, TUN offloads: lab.daemon.offload); no
process is run here (lab.daemon.routes tells the kernel where to route).
"""
from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lab.esp import SPD, Action, EspDrop, OutboundSA, Policy, SADatabase

from .offload import DATA_VALID, F_NEEDS_CSUM, VNET_HDR_LEN, OffloadError, coalesce, split
from .routes import FWMARK, DataPlaneError

if TYPE_CHECKING:
    from .dataplane import Binding, Pair
    from .gateway import Gateway

TUNSETIFF = 0x400454CA
TUNSETOFFLOAD = 0x400454D0
TUNSETVNETHDRSZ = 0x400454D8
IFF_TUN, IFF_NO_PI, IFF_VNET_HDR = 0x0001, 0x1000, 0x4000
TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6 = 0x01, 0x02, 0x04
READ_SIZE = 65535 + VNET_HDR_LEN
MAX_SEGMENTS = 128
SO_MARK = getattr(socket, "SO_MARK", 36)
BATCH = 64
SOL_UDP, UDP_SEGMENT = 17, 103
MAX_GSO_SEGMENTS = 64


class _Closed:
    """Stands for a socket that is closed or was never opened: a send fails as on a closed one."""

    def sendto(self, *args: Any) -> int:
        raise OSError(errno.EBADF, "socket closed")

    def sendmsg(self, *args: Any) -> int:
        raise OSError(errno.EBADF, "socket closed")


_CLOSED = _Closed()


def attach_route(outbound: OutboundSA, peer: tuple[str, int], udp: bool, ah: bool) -> None:
    """What the send path needs on an outbound SA: where to (`peer`), how (`udp`: ESP in UDP
    4500, else a raw socket) and `seal`, the protect call whose output that socket takes."""
    outbound.peer = peer
    outbound.udp = udp
    outbound.ah = ah
    # AH's ICV covers the outer IP header (RFC 4302 §3.3.3): AH goes out as a whole datagram
    outbound.seal = outbound.protect if ah else outbound.protect_payload


def _no_sa_events() -> None:
    pass


class PacketPath:
    """TUN reads protected and sent, arrivals unprotected and written to the TUN device. The SAD
    and SPD are filled by the data plane; `shared` (policies several IKE SAs serve, by id) and
    `by_spi_in` are the data plane's, read here to send each reply through the SA its flow came
    in on; `on_sa_events` is called when lab.esp reports lifetimes reached."""

    def __init__(self, gateway: Gateway, tun_name: str = "ipsec0", offload: bool = True,
                 shared: dict[int, Binding] | None = None, by_spi_in: dict[bytes, Pair] | None = None,
                 on_sa_events: Callable[[], None] = _no_sa_events) -> None:
        self.gateway = gateway
        self.tun_name = tun_name
        self.want_offload = offload
        self.sad = SADatabase()
        self.spd = SPD(counters=self.sad.drops)
        self.stats: Counter[str] = Counter()
        self.shared = shared if shared is not None else {}
        self.by_spi_in = by_spi_in if by_spi_in is not None else {}
        self.on_sa_events = on_sa_events
        self.tun_fd: int | None = None
        self.raw: socket.socket | None = None
        self.raw_ah: socket.socket | None = None
        self.raw6: socket.socket | None = None
        self.gso = True
        self.offload = False
        self._rx: list[bytes] = []

    # ------------------------------------------------------------ setup and teardown

    def _open_tun(self, flags: int) -> int:
        try:
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
        except OSError as err:
            raise DataPlaneError(f"cannot open /dev/net/tun ({err.strerror}): the data plane needs root and TUN "
                                 f"support") from None
        try:
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", self.tun_name.encode(), IFF_TUN | IFF_NO_PI | flags))
        except OSError as err:
            os.close(fd)
            raise DataPlaneError(f"cannot create TUN device {self.tun_name}: {err.strerror}") from None
        return fd

    def _open_tun_offload(self) -> tuple[int | None, str]:
        """(the TUN device with a virtio_net_hdr on every packet and checksum and TSO offloads on,
        "") or (None, why not) if the kernel refuses any of it."""
        try:
            fd = self._open_tun(IFF_VNET_HDR)
        except DataPlaneError as err:
            return None, str(err)
        try:
            fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", VNET_HDR_LEN))
            fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)
        except OSError as err:
            os.close(fd)
            return None, err.strerror or str(err)
        return fd, ""

    def open_tun(self) -> None:
        """The TUN device, with offloads if wanted and the kernel agrees."""
        fd, refused = self._open_tun_offload() if self.want_offload else (None, "")
        self.offload = fd is not None
        if fd is None:
            fd = self._open_tun(0)
            if refused:
                self.gateway.say(f"[ESP] the kernel refused TUN offloads ({refused}): running without them")
        self.tun_fd = fd

    def open_sockets(self) -> None:
        """Our sockets marked (FWMARK: never routed into the tunnel), the raw ESP and AH sockets,
        and the event loop reading all of them."""
        for sock in [*self.gateway.sockets.values(), *self.gateway.sockets6.values()]:
            sock.setsockopt(socket.SOL_SOCKET, SO_MARK, FWMARK)
        self.raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ESP)
        self.raw.setsockopt(socket.SOL_SOCKET, SO_MARK, FWMARK)
        self.raw.setblocking(False)
        if self.gateway.sockets6:
            # ESP over IPv6: the kernel adds the IPv6 header going out and takes it off coming in
            self.raw6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ESP)
            self.raw6.setsockopt(socket.SOL_SOCKET, SO_MARK, FWMARK)
            self.raw6.setblocking(False)
        # AH's ICV covers the outer IP header (RFC 4302 §3.3.3), so AH datagrams are sent whole
        self.raw_ah = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_AH)
        self.raw_ah.setsockopt(socket.SOL_SOCKET, SO_MARK, FWMARK)
        self.raw_ah.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
        self.raw_ah.setblocking(False)
        loop = self.gateway.loop
        assert loop is not None
        assert self.tun_fd is not None, "open_tun() comes first"
        loop.add_reader(self.tun_fd, self._tun_readable)
        loop.add_reader(self.raw, self._raw_readable)
        loop.add_reader(self.raw_ah, self._raw_ah_readable)
        if self.raw6 is not None:
            loop.add_reader(self.raw6, self._raw6_readable)
        self.gateway.esp_handler = self.on_udp_esp
        if self.offload:
            self.gateway.esp_flush = self.flush

    def stop_delivery(self) -> None:
        """Nothing more is written to the TUN device: what waits for a flush is dropped."""
        self.gateway.esp_flush = None
        self._rx = []

    def close(self) -> None:
        loop = self.gateway.loop
        if self.tun_fd is not None:
            if loop is not None:
                loop.remove_reader(self.tun_fd)
            os.close(self.tun_fd)
            self.tun_fd = None
        for attribute in ("raw", "raw_ah", "raw6"):
            sock = getattr(self, attribute)
            if sock is not None:
                if loop is not None:
                    loop.remove_reader(sock)
                sock.close()
                setattr(self, attribute, None)

    # ------------------------------------------------------------ out: TUN -> ESP

    def _tun_readable(self) -> None:
        """Read a batch from the TUN device, protect it, and send it: ESP-in-UDP datagrams of
        equal size to one peer go out in one sendmsg with UDP GSO (UDP_SEGMENT)."""
        if self.offload:
            self._tun_readable_offload()
            return
        fd = self.tun_fd
        if fd is None:  # closed under a pending callback
            return
        spd, stats, shared = self.spd, self.stats, self.shared
        read = os.read
        batch: list[tuple[OutboundSA, bytes]] = []
        for _ in range(BATCH):
            try:
                packet = read(fd, 65535)
            except (BlockingIOError, OSError):
                break
            try:
                policy = spd.outbound(packet)
                sa = policy.sa if not shared else self._sa_for(policy, packet)
                if sa is None:
                    stats["no_sa"] += 1
                    continue
                batch.append((sa, sa.seal(packet)))
            except EspDrop:
                stats["dropped_out"] += 1
        if batch:
            self._send_batch(batch)
        if self.sad.events:
            self.on_sa_events()

    def _tun_readable_offload(self) -> None:
        """As `_tun_readable`, for reads that start with a virtio_net_hdr: a TCP super-packet
        is cut into segments (lab.daemon.offload.split), all of them under one SPD lookup."""
        fd = self.tun_fd
        if fd is None:  # closed under a pending callback
            return
        spd, stats, shared = self.spd, self.stats, self.shared
        read = os.read
        batch: list[tuple[OutboundSA, bytes]] = []
        for _ in range(BATCH):
            try:
                buf = read(fd, READ_SIZE)
            except (BlockingIOError, OSError):
                break
            if buf[1] or buf[0] & F_NEEDS_CSUM:
                try:
                    packets = split(buf)
                except OffloadError:
                    stats["dropped_offload"] += 1
                    continue
                if buf[1]:
                    stats["tso_reads"] += 1
            else:
                packets = [buf[VNET_HDR_LEN:]]
            try:
                policy = spd.outbound(packets[0])
                sa = policy.sa if not shared else self._sa_for(policy, packets[0])
                if sa is None:
                    stats["no_sa"] += len(packets)
                    continue
                seal = sa.seal
                batch.extend([(sa, seal(p)) for p in packets])
            except EspDrop:
                stats["dropped_out"] += 1
            if len(batch) >= MAX_SEGMENTS:
                break
        if batch:
            self._send_batch(batch)
        if self.sad.events:
            self.on_sa_events()

    def _sa_for(self, policy: Policy, packet: bytes) -> OutboundSA | None:
        """The outbound SA for a packet of a policy that several peers' SAs serve: the one its
        flow came in on, else the policy's latest."""
        binding = self.shared.get(id(policy))
        if binding is not None and binding.flows is not None:
            pair = binding.flows.lookup(packet)
            if pair is not None:
                self.stats["flow_returns"] += 1
                return pair.outbound
        if policy.action is Action.BYPASS:
            self.stats["bypass_in_tun"] += 1
        return policy.sa

    def _send_batch(self, batch: list[tuple[OutboundSA, bytes]]) -> None:
        stats = self.stats
        udp4: socket.socket | _Closed = self.gateway.sockets.get(4500) or _CLOSED
        udp6: socket.socket | _Closed = self.gateway.sockets6.get(4500) or _CLOSED
        raw4: socket.socket | _Closed = self.raw or _CLOSED
        raw6: socket.socket | _Closed = self.raw6 or _CLOSED
        raw_ah: socket.socket | _Closed = self.raw_ah or _CLOSED
        tcp = self.gateway.tcp if self.gateway.tcp is not None and self.gateway.tcp.peers else None
        i, n = 0, len(batch)
        while i < n:
            sa, payload = batch[i]
            six = ":" in sa.peer[0]
            udp, raw = (udp6, raw6) if six else (udp4, raw4)
            if tcp is not None and not sa.ah and tcp.send_esp(payload, sa.peer[0]):  # RFC 9329 §3.2
                stats["packets_out"] += 1
                stats["packets_out_tcp"] += 1
                i += 1
                continue
            if not sa.udp or not self.gso:
                try:
                    if sa.udp:
                        udp.sendto(payload, sa.peer)
                    elif sa.ah and not six:
                        raw_ah.sendto(payload, (sa.peer[0], 0))
                    elif sa.ah:
                        raise OSError(errno.EAFNOSUPPORT, "AH over IPv6 is not supported")
                    else:
                        raw.sendto(payload, (sa.peer[0], 0))
                    stats["packets_out"] += 1
                except OSError:
                    stats["send_errors"] += 1
                i += 1
                continue
            size = len(payload)
            j = i + 1
            while (j < n and j - i < MAX_GSO_SEGMENTS and batch[j][0].peer == sa.peer and batch[j][0].udp
                   and (tcp is None or not tcp.carries(sa.peer[0]))
                   and len(batch[j][1]) == size and (j - i + 1) * size <= 65000):
                j += 1
            if j < n and j - i < MAX_GSO_SEGMENTS and batch[j][0].peer == sa.peer and batch[j][0].udp \
                    and len(batch[j][1]) < size and (j - i) * size + len(batch[j][1]) <= 65000:
                j += 1  # the last segment may be shorter
            try:
                if j - i == 1:
                    udp.sendto(payload, sa.peer)
                else:
                    udp.sendmsg([b"".join(p for _, p in batch[i:j])],
                                [(SOL_UDP, UDP_SEGMENT, struct.pack("H", size))], 0, sa.peer)
                    stats["gso_sends"] += 1
                stats["packets_out"] += j - i
            except OSError:
                stats["send_errors"] += j - i
            i = j

    # ------------------------------------------------------------ in: ESP -> TUN

    def on_udp_esp(self, data: bytes, src: tuple[str, int], dst: tuple[str, int]) -> None:
        self._inbound(data)

    def _raw_readable(self) -> None:
        raw = self.raw
        if raw is None:
            return
        for _ in range(BATCH):
            try:
                packet = raw.recv(65535)
            except (BlockingIOError, OSError):
                break
            ihl = (packet[0] & 0x0F) * 4
            self._inbound(packet[ihl:])
        if self._rx:
            self.flush()

    def _raw6_readable(self) -> None:
        raw6 = self.raw6
        if raw6 is None:
            return
        for _ in range(BATCH):
            try:
                packet = raw6.recv(65535)  # an IPv6 raw socket hands over what follows the IPv6 header
            except (BlockingIOError, OSError):
                break
            self._inbound(packet)
        if self._rx:
            self.flush()

    def _raw_ah_readable(self) -> None:
        raw_ah = self.raw_ah
        if raw_ah is None:
            return
        for _ in range(BATCH):
            try:
                packet = raw_ah.recv(65535)
            except (BlockingIOError, OSError):
                break
            # AH is checked over the whole datagram, outer IP header included (RFC 4302 §3.3.3)
            self._inbound(packet, self.sad.unprotect_datagram)
        if self._rx:
            self.flush()

    def _deliver(self, inner: bytes) -> None:
        if self.offload:
            self._rx.append(inner)
            return
        fd = self.tun_fd
        if fd is None:  # closed
            self.stats["tun_write_errors"] += 1
            return
        try:
            os.write(fd, inner)
            self.stats["packets_in"] += 1
        except OSError:
            self.stats["tun_write_errors"] += 1

    def flush(self) -> None:
        """Write the packets unprotected since the last flush to the TUN device: in-order TCP
        segments of one flow as one GSO super-packet (lab.daemon.offload.coalesce)."""
        rx = self._rx
        if not rx:
            return
        self._rx = []
        fd, stats, writev = self.tun_fd, self.stats, os.writev
        if fd is None:  # closed
            stats["tun_write_errors"] += len(rx)
            return
        for vector in coalesce(rx):
            single = vector[0] is DATA_VALID
            try:
                writev(fd, vector)
            except OSError:
                stats["tun_write_errors"] += 1 if single else len(vector) - 3
                continue
            if single:
                stats["packets_in"] += 1
            else:
                stats["packets_in"] += len(vector) - 3
                stats["gro_writes"] += 1

    def _inbound(self, data: bytes, unprotect: Callable[[bytes], bytes] | None = None) -> None:
        """Unprotect one arrival (ESP from its header on, by default), count a drop or deliver it."""
        try:
            inner = (unprotect or self.sad.unprotect)(data)
        except EspDrop:
            self.stats["dropped_in"] += 1
            return
        if self.shared:
            pair = self.by_spi_in.get(data[:4])
            if pair is not None:
                for binding in self.shared.values():
                    if pair in binding.pairs and binding.flows is not None:
                        binding.flows.learn(inner, pair)
                        break
        self._deliver(inner)
        if self.sad.events:
            self.on_sa_events()
