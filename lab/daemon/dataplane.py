"""The gateway's ESP data plane: a TUN device, routes into it, and lab.esp doing the work.

Like strongSwan's kernel-libipsec (this kernel has no ESP): packets routed into the TUN
device are matched against the SPD, protected and sent as ESP-in-UDP on port 4500 (NAT
detected or encapsulation forced) or as plain ESP on a raw socket (IP protocol 50);
arriving ESP is unprotected and written to the TUN device for the kernel to forward.

Routing: remote selectors go into table 220, looked up by every packet that is not
marked with our fwmark; our own sockets set that mark (SO_MARK), so the outer packets
never loop back into the tunnel, even when a peer's address lies inside remote_ts.
"""
from __future__ import annotations

import fcntl
import ipaddress
import os
import socket
import struct
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from lab.esp import (SPD, Action, EspConfigError, EspDrop, InboundSA, IpsecProto, Lifetime, Mode, OutboundSA, Policy,
                     SADatabase, SaEventKind, Selector, UdpEncap)
from lab.esp.flows import ReturnFlows
from lab.esp.spd import ANY_PORTS, AddressRange
from lab.ike import events as ev
from lab.iana import ProtocolId
from lab.ike.config import Action as StartAction
from lab.ike.config import ChildMode, DynamicTrafficSelector
from lab.ike.payloads import TrafficSelector

from .offload import F_NEEDS_CSUM, VNET_HDR_LEN, DATA_VALID, OffloadError, coalesce, split

if TYPE_CHECKING:
    from .gateway import Gateway

TUNSETIFF = 0x400454CA
TUNSETOFFLOAD = 0x400454D0
TUNSETVNETHDRSZ = 0x400454D8
IFF_TUN, IFF_NO_PI, IFF_VNET_HDR = 0x0001, 0x1000, 0x4000
TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6 = 0x01, 0x02, 0x04
READ_SIZE = 65535 + VNET_HDR_LEN
MAX_SEGMENTS = 128
SO_MARK = getattr(socket, "SO_MARK", 36)
FWMARK = 0x220
ROUTE_TABLE = 220
RULE_PRIORITY = 220
BYPASS_RULE_PRIORITY = 219  # looked up before table 220: BYPASS traffic never reaches the TUN device
BATCH = 64
SOL_UDP, UDP_SEGMENT = 17, 103
MAX_GSO_SEGMENTS = 64
KEEPALIVE = b"\xff"  # RFC 3948 §2.3
ROUTE_GRACE = 1.0  # seconds a route into the TUN device outlives the last user (CHILD_SA or shunt)


class DataPlaneError(RuntimeError):
    """The data plane could not be set up; the message says what to do."""


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise DataPlaneError(f"'ip {' '.join(args)}' failed: {result.stderr.strip()}")


def _selector(local, remote) -> Selector:
    def ports(ts):
        return ANY_PORTS if (ts.start_port, ts.end_port) == (0, 65535) else (ts.start_port, ts.end_port)

    return Selector(AddressRange(local.start_addr.packed, local.end_addr.packed),
                    AddressRange(remote.start_addr.packed, remote.end_addr.packed),
                    local.ip_protocol or remote.ip_protocol or None, ports(local), ports(remote))


def child_sa_pair(event: ev.ChildSaUp, now: float, lifetime: Lifetime | None = None,
                  random: Callable[[int], bytes] = os.urandom, checksum_fixup: bool = True
                  ) -> tuple[InboundSA, OutboundSA]:
    """The inbound and outbound lab.esp SAs of a CHILD_SA the IKE core negotiated (EspConfigError
    when lab.esp cannot carry it out); `random` gives CBC IVs, IPv4 IDs and dummies (the
    daemon passes its IKE endpoint's source, so one seed replays both). In transport mode across
    a NAT the inbound SA fixes up TCP/UDP checksums (RFC 3948 §3.1.2) with the selectors'
    original addresses (RFC 7296 §2.23.1)."""
    selectors = [_selector(l, r) for l in event.local_ts for r in event.remote_ts]
    ah = event.protocol == ProtocolId.AH  # IKE's protocol numbering (RFC 7296 §3.3.1), not IP's
    encap = UdpEncap(event.local[1], event.remote[1]) if event.encap and not ah else None
    mode = Mode.TRANSPORT if event.mode == "transport" else Mode.TUNNEL
    common = dict(protocol=IpsecProto.AH if ah else IpsecProto.ESP, mode=mode, encr_id=event.encr_id,
                  integ_id=event.integ_id, esn=event.esn, now=now, name=event.name,
                  lifetime=lifetime if lifetime is not None else Lifetime())
    fixup = checksum_fixup and mode is Mode.TRANSPORT and encap is not None
    inbound = InboundSA(int.from_bytes(event.spi_in, "big"), encr_key=event.keys_in.encr,
                        integ_key=event.keys_in.integ, local=event.local[0], remote=event.remote[0],
                        encap=encap, replay_window=event.replay_window, selectors=selectors,
                        real_src=event.original_remote if fixup else None,
                        real_dst=event.original_local if fixup else None, **common)
    outbound = OutboundSA(int.from_bytes(event.spi_out, "big"), encr_key=event.keys_out.encr,
                          integ_key=event.keys_out.integ, local=event.local[0], remote=event.remote[0],
                          encap=encap, selectors=selectors, random=random, **common)
    return inbound, outbound


def _shunt_selectors(selectors) -> list:
    """A shunt's selectors; `dynamic` is any address, as strongSwan resolves it for shunts."""
    out = []
    for ts in selectors:
        if isinstance(ts, DynamicTrafficSelector):
            out.append(TrafficSelector(ipaddress.IPv4Address(0), ipaddress.IPv4Address(2 ** 32 - 1), ts.ip_protocol,
                                       ts.start_port, ts.end_port))
        else:
            out.append(ts)
    return out


def _networks(ts) -> list[ipaddress.IPv4Network]:
    return list(ipaddress.summarize_address_range(ts.start_addr, ts.end_addr))


def _bypass_rule(local, remote, local_net, remote_net) -> list[str]:
    """`ip rule` selectors for one BYPASS selector pair, as seen by a packet leaving (local = source)."""
    rule = []
    if local_net.prefixlen:
        rule += ["from", str(local_net)]
    rule += ["to", str(remote_net)]
    protocol = local.ip_protocol or remote.ip_protocol
    if protocol:
        rule += ["ipproto", str(protocol)]
        if protocol in (6, 17, 132):
            for option, ts in (("sport", local), ("dport", remote)):
                if (ts.start_port, ts.end_port) != (0, 65535):
                    rule += [option, str(ts.start_port) if ts.start_port == ts.end_port
                             else f"{ts.start_port}-{ts.end_port}"]
    return rule


def attach_route(outbound: OutboundSA, peer: tuple[str, int], udp: bool, ah: bool) -> None:
    """What the send path needs on an outbound SA: where to (`peer`), how (`udp`: ESP in UDP
    4500, else a raw socket) and `seal`, the protect call whose output that socket takes."""
    outbound.peer = peer  # type: ignore[attr-defined]
    outbound.udp = udp  # type: ignore[attr-defined]
    outbound.ah = ah  # type: ignore[attr-defined]
    # AH's ICV covers the outer IP header (RFC 4302 §3.3.3): AH goes out as a whole datagram
    outbound.seal = outbound.protect if ah else outbound.protect_payload  # type: ignore[attr-defined]


@dataclass
class Pair:
    """The two SAs of one CHILD_SA as the data plane holds them."""

    event: ev.ChildSaUp
    inbound: InboundSA
    outbound: OutboundSA
    key: tuple
    peer: tuple[str, int]
    encap: bool


@dataclass
class Binding:
    """One SPD entry (a child's selectors) and the pairs that serve it, newest last. When pairs
    of several IKE SAs serve it (transport-mode clients behind one NAT have the same selectors
    once substituted), `flows` sends each reply out through the pair its flow came in on."""

    policy: Policy
    routes: list[str]
    pairs: list[Pair] = field(default_factory=list)
    flows: ReturnFlows | None = None


@dataclass
class Shunt:
    """A `mode = pass` or `mode = drop` child: a BYPASS or DISCARD policy, and how the kernel is
    told (BYPASS: `ip rule`s ahead of table 220; DISCARD: routes into the TUN device)."""

    policy: Policy
    rules: list[list[str]] = field(default_factory=list)
    routes: list[str] = field(default_factory=list)


class DataPlane:
    def __init__(self, gateway: "Gateway", tun_name: str = "ipsec0", mtu: int = 1400,
                 keepalive_interval: float = 20.0, offload: bool = True,
                 random: Callable[[int], bytes] = os.urandom, checksum_fixup: bool = True) -> None:
        self.gateway = gateway
        self.random = random  # CBC IVs, IPv4 IDs, dummies: the gateway gives its IKE endpoint's source
        self.tun_name = tun_name
        self.mtu = mtu
        self.keepalive_interval = keepalive_interval
        self.sad = SADatabase()
        self.spd = SPD(counters=self.sad.drops)
        self.bindings: dict[tuple, Binding] = {}
        self.by_spi_in: dict[bytes, Pair] = {}
        self.stats: Counter[str] = Counter()
        self.tun_fd: int | None = None
        self.raw: socket.socket | None = None
        self.raw_ah: socket.socket | None = None
        self.keepalive_peers: dict[int, tuple[str, int]] = {}
        self._keepalive_timer = None
        self._rule_added = False
        self.gso = True
        self.checksum_fixup = checksum_fixup
        # without the fix-up the kernel must judge the checksums itself, as a stack without
        # RFC 3948 §3.1.2 would: no DATA_VALID on what we write, no coalescing
        self.want_offload = offload and checksum_fixup
        self.shunts: list[Shunt] = []
        self.route_refs: Counter[str] = Counter()
        # a route no one uses goes after ROUTE_GRACE seconds: a CHILD_SA coming up meanwhile
        # (many short-lived SAs) takes it over, never a del and an add
        self._route_drops: dict[str, Any] = {}
        # the local selectors each route was set for (its source came from them); a virtual IP
        # coming or going forgets those of the routes in their grace, which are set again
        self._route_set: dict[str, Any] = {}
        self.shared: dict[int, Binding] = {}
        self.offload = False
        self._rx: list[bytes] = []
        self.virtual_ips: dict[int, str] = {}  # IKE SA -> the virtual IP it gave us (remote access client)

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

    def start(self) -> None:
        fd, refused = self._open_tun_offload() if self.want_offload else (None, "")
        self.offload = fd is not None
        if fd is None:
            fd = self._open_tun(0)
            if refused:
                self.gateway.say(f"[ESP] the kernel refused TUN offloads ({refused}): running without them")
        self.tun_fd = fd
        # the tunnel carries IPv4 selectors; no IPv6 router solicitations into it
        subprocess.run(["sysctl", "-qw", f"net.ipv6.conf.{self.tun_name}.disable_ipv6=1"], capture_output=True)
        _ip("link", "set", "dev", self.tun_name, "mtu", str(self.mtu), "up")
        subprocess.run(["ip", "rule", "del", "priority", str(RULE_PRIORITY)], capture_output=True)
        _ip("rule", "add", "priority", str(RULE_PRIORITY), "not", "fwmark", hex(FWMARK), "lookup", str(ROUTE_TABLE))
        self._rule_added = True
        for sock in self.gateway.sockets.values():
            sock.setsockopt(socket.SOL_SOCKET, SO_MARK, FWMARK)
        self.raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ESP)
        self.raw.setsockopt(socket.SOL_SOCKET, SO_MARK, FWMARK)
        self.raw.setblocking(False)
        # AH's ICV covers the outer IP header (RFC 4302 §3.3.3), so AH datagrams are sent whole
        self.raw_ah = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_AH)
        self.raw_ah.setsockopt(socket.SOL_SOCKET, SO_MARK, FWMARK)
        self.raw_ah.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
        self.raw_ah.setblocking(False)
        loop = self.gateway.loop
        assert loop is not None
        loop.add_reader(self.tun_fd, self._tun_readable)
        loop.add_reader(self.raw, self._raw_readable)
        loop.add_reader(self.raw_ah, self._raw_ah_readable)
        self.gateway.esp_handler = self.on_udp_esp
        if self.offload:
            self.gateway.esp_flush = self.flush
        self.gateway.event_handlers.append(self.on_event)
        if not self.checksum_fixup:
            self.gateway.say("[ESP] transport-mode checksum fix-up (RFC 3948 §3.1.2) is off, and so are TUN "
                             "offloads: the kernel checks every TCP/UDP checksum as it arrives")
        self._install_shunts()

    def stop(self) -> None:
        loop = self.gateway.loop
        self.gateway.esp_flush = None
        self._rx = []
        if self._keepalive_timer is not None:
            self._keepalive_timer.cancel()
        for binding in list(self.bindings.values()):
            self._drop_routes(binding, at_once=True)
        for shunt in self.shunts:
            self._uninstall_shunt(shunt)
        self.shunts = []
        for network in list(self._route_drops):
            self._route_drops.pop(network).cancel()
            self._route_gone(network)
        for ike_sa in list(self.virtual_ips):
            self._drop_virtual_ip(ike_sa)
        if self.tun_fd is not None:
            if loop is not None:
                loop.remove_reader(self.tun_fd)
            os.close(self.tun_fd)
            self.tun_fd = None
        for attribute in ("raw", "raw_ah"):
            sock = getattr(self, attribute)
            if sock is not None:
                if loop is not None:
                    loop.remove_reader(sock)
                sock.close()
                setattr(self, attribute, None)
        if self._rule_added:
            subprocess.run(["ip", "rule", "del", "priority", str(RULE_PRIORITY)], capture_output=True)
            self._rule_added = False

    # ------------------------------------------------------------ SAs from IKE events

    def on_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.ChildSaUp):
            self._child_up(event)
        elif isinstance(event, ev.ChildSaDeleted):
            self._child_deleted(event.spi_in)
        elif isinstance(event, ev.ChildSaRekeyed):
            pair = self.by_spi_in.get(event.new_spi_in)
            if pair is not None and pair.event.initiator:
                self._bind(pair)
        elif isinstance(event, ev.IkeSaUp):
            if event.local_behind_nat:
                self.keepalive_peers[event.ike_sa] = event.remote
                self._arm_keepalive()
            if event.virtual_ip:
                self._add_virtual_ip(event.ike_sa, event.virtual_ip)
        elif isinstance(event, ev.IkeSaRekeyed):
            peer = self.keepalive_peers.pop(event.ike_sa, None)
            if peer is not None:
                self.keepalive_peers[event.new_ike_sa] = peer
            vip = self.virtual_ips.pop(event.ike_sa, None)
            if vip is not None:
                self.virtual_ips[event.new_ike_sa] = vip
        elif isinstance(event, ev.IkeSaDeleted):
            self.keepalive_peers.pop(event.ike_sa, None)
            self._drop_virtual_ip(event.ike_sa)
        elif isinstance(event, ev.PeerAddressChanged):
            self._follow_peer(event.old, event.new)
        elif isinstance(event, ev.AddressesUpdated):
            self._move(event)

    def _move(self, event: ev.AddressesUpdated) -> None:
        """MOBIKE (RFC 4555 §3.5): the CHILD SAs of an IKE SA now run between new addresses, in
        UDP or not as NAT detection on the new path said; NAT keepalives if we are behind one."""
        moved = 0
        for spi in event.spis_in:
            pair = self.by_spi_in.get(spi)
            if pair is None:
                continue
            ah = bool(pair.outbound.ah)  # type: ignore[attr-defined]
            udp = event.encap and not ah
            pair.peer, pair.encap = event.remote, udp
            if ah:
                pair.outbound.move(event.local[0], event.remote[0])
            attach_route(pair.outbound, event.remote, udp, ah)
            moved += 1
        if event.local_behind_nat:
            self.keepalive_peers[event.ike_sa] = event.remote
            self._arm_keepalive()
        else:
            self.keepalive_peers.pop(event.ike_sa, None)
        self.stats["mobike_moves"] += 1
        self.gateway.say(f"[ESP] {moved} CHILD_SA(s) moved to {event.local[0]} - {event.remote[0]}:{event.remote[1]}"
                         f" ({'ESP in UDP' if event.encap else 'plain ESP'})")

    def _follow_peer(self, old: tuple[str, int], new: tuple[str, int]) -> None:
        """RFC 7296 §2.23: the peer's NAT mapping changed; ESP for it goes to the new address
        and port from now on (IKE already follows it)."""
        moved = 0
        for pair in self.by_spi_in.values():
            if pair.peer == old:
                pair.peer = new
                attach_route(pair.outbound, new, pair.outbound.udp, pair.outbound.ah)  # type: ignore[attr-defined]
                moved += 1
        if moved:
            self.stats["peer_moved"] += moved
            self.gateway.say(f"[ESP] {moved} CHILD_SA(s) follow the peer from {old[0]}:{old[1]} to {new[0]}:{new[1]}")

    def _add_virtual_ip(self, ike_sa: int, address: str) -> None:
        """A remote-access client's address from the gateway's pool (RFC 7296 §3.15.1): on the
        TUN device, so that our own packets to the remote selectors leave with it as source."""
        if address not in self.virtual_ips.values():
            try:
                _ip("addr", "replace", f"{address}/32", "dev", self.tun_name)
            except DataPlaneError as err:
                self.gateway.say(f"[ESP] cannot install virtual IP {address}: {err}")
                return
            self.gateway.say(f"[IKE] installed virtual IP {address} on {self.tun_name}")
            self._forget_idle_routes()
        self.virtual_ips[ike_sa] = address

    def _drop_virtual_ip(self, ike_sa: int) -> None:
        address = self.virtual_ips.pop(ike_sa, None)
        if address is not None and address not in self.virtual_ips.values():
            subprocess.run(["ip", "addr", "del", f"{address}/32", "dev", self.tun_name], capture_output=True)
            self.gateway.say(f"[IKE] removed virtual IP {address}")
            self._forget_idle_routes()

    def _forget_idle_routes(self) -> None:
        """Each route may have lost its source, or have a better one now: the next CHILD_SA to
        take one over in its grace sets it again."""
        self._route_set.clear()

    def _child_up(self, event: ev.ChildSaUp) -> None:
        now = self.gateway.now()
        try:
            inbound, outbound = child_sa_pair(event, now, self._volume_lifetime(event), random=self.random,
                                              checksum_fixup=self.checksum_fixup)
        except EspConfigError as err:
            self.gateway.say(f"[ESP] cannot install CHILD_SA {event.name}: {err}")
            return
        selectors = list(outbound.selectors)
        ah = inbound.protocol is IpsecProto.AH
        encap = inbound.encap
        attach_route(outbound, event.remote, encap is not None, ah)
        self.sad.add(inbound)
        self.sad.add(outbound)
        key = (event.ike_sa, event.name, event.local_ts, event.remote_ts)
        pair = Pair(event, inbound, outbound, key, event.remote, event.encap)
        self.by_spi_in[event.spi_in] = pair
        binding = self._find_binding(event)
        if binding is None:
            policy = Policy(Action.PROTECT, tuple(selectors), child=event.name, name=f"{event.name}-{event.spi_in.hex()}")
            # strongSwan's order: pass shunts first, then the SAs' policies, drop shunts last (fallback)
            self.spd.add(policy, len(self.spd.policies) - sum(1 for sh in self.shunts
                                                              if sh.policy.action is Action.DISCARD))
            binding = Binding(policy, [str(self._network(ts)) for ts in event.remote_ts])
            self.bindings[id(policy)] = binding
            self._add_routes(binding, event)
        old = self.by_spi_in.get(event.rekeyed_from) if event.rekeyed_from else None
        if binding.flows is not None and old is not None:
            binding.flows.replace(old, pair)
        elif binding.flows is None and any(p.event.ike_sa != event.ike_sa for p in binding.pairs):
            # a second peer with the same selectors (RFC 4301 §4.4.1 cannot tell them apart)
            binding.flows = ReturnFlows()
            self.shared[id(binding.policy)] = binding
            self.gateway.say(f"[ESP] {event.name}: {len({p.event.ike_sa for p in binding.pairs}) + 1} IKE SAs share "
                             f"the selectors {event.local_ts[0].start_addr} <-> {event.remote_ts[0].start_addr}; "
                             f"replies follow the SA their flow came in on")
        binding.pairs.append(pair)
        # RFC 7296 §2.8: the rekey initiator switches at once; a rekey responder keeps sending
        # on the old SA until it is deleted (the initiator may not have the new inbound SA yet)
        if event.rekeyed_from is None or event.initiator or binding.policy.sa is None:
            self._bind(pair)

    def _volume_lifetime(self, event: ev.ChildSaUp) -> Lifetime:
        """rekey_bytes/life_bytes and rekey_packets/life_packets of the child's config (swanctl.conf);
        time lifetimes are the IKE side's (rekey_time, life_time)."""
        ike = self.gateway.endpoint.by_id.get(event.ike_sa)
        config = ike.config.children.get(event.name) if ike is not None else None
        if config is None:
            return Lifetime()
        return Lifetime(soft_bytes=config.rekey_bytes or None, hard_bytes=config.life_bytes or None,
                        soft_packets=config.rekey_packets or None, hard_packets=config.life_packets or None)

    def handle_sa_events(self) -> None:
        """RFC 4301 §4.4.2.1: a soft limit (or a sequence number close to its end, RFC 4303
        §3.3.3) rekeys the CHILD_SA, a hard one deletes it."""
        events, self.sad.events[:] = list(self.sad.events), []
        now = self.gateway.now()
        endpoint = self.gateway.endpoint
        for event in events:
            spi = event.spi.to_bytes(4, "big")
            pair = self.by_spi_in.get(spi) or next((p for p in self.by_spi_in.values()
                                                   if p.outbound.spi == event.spi), None)
            if pair is None:
                continue
            spi_in = pair.event.spi_in
            self.stats[f"sa_{event.kind}"] += 1
            self.gateway.say(f"[ESP] CHILD_SA {pair.event.name} {spi_in.hex()}_i: {event.kind} by {event.trigger}")
            if event.kind in (SaEventKind.SOFT_EXPIRED, SaEventKind.SEQ_REKEY):
                endpoint.rekey_child(now, spi_in=spi_in)
            else:
                endpoint.terminate_child(now, spi_in=spi_in)
        self.gateway._pump()

    def _find_binding(self, event: ev.ChildSaUp) -> Binding | None:
        for binding in self.bindings.values():
            if binding.pairs and (binding.pairs[0].event.name, binding.pairs[0].event.local_ts,
                                  binding.pairs[0].event.remote_ts) == (event.name, event.local_ts, event.remote_ts):
                return binding
        return None

    def _bind(self, pair: Pair) -> None:
        for binding in self.bindings.values():
            if pair in binding.pairs:
                binding.policy.sa = pair.outbound

    def _child_deleted(self, spi_in: bytes) -> None:
        pair = self.by_spi_in.pop(spi_in, None)
        if pair is None:
            return
        self.sad.remove(pair.inbound)
        self.sad.remove(pair.outbound)
        for key, binding in list(self.bindings.items()):
            if pair not in binding.pairs:
                continue
            binding.pairs.remove(pair)
            if binding.flows is not None:
                binding.flows.forget(pair)
            if binding.policy.sa is pair.outbound:
                binding.policy.sa = None
                if binding.pairs:
                    self._bind(binding.pairs[-1])
            if not binding.pairs:
                self.spd.policies.remove(binding.policy)
                self._drop_routes(binding)
                del self.bindings[key]
                self.shared.pop(key, None)

    @staticmethod
    def _network(ts) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        nets = list(ipaddress.summarize_address_range(ts.start_addr, ts.end_addr))
        return nets[0] if len(nets) == 1 else ipaddress.ip_network(f"{ts.start_addr}/{ts.start_addr.max_prefixlen}")

    def _local_source(self, event: ev.ChildSaUp) -> str | None:
        """An address of this host inside local_ts, used as source for its own packets."""
        out = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True).stdout
        for line in out.split("\n"):
            parts = line.split()
            if "inet" not in parts:
                continue
            address = ipaddress.ip_address(parts[parts.index("inet") + 1].split("/")[0])
            if any(ts.start_addr <= address <= ts.end_addr for ts in event.local_ts if ts.start_addr.version == 4):
                return str(address)
        return None

    def _add_routes(self, binding: Binding, event: ev.ChildSaUp) -> None:
        source: str | None = None
        looked_up = False
        for network in binding.routes:
            if self.route_refs[network] or (network in self._route_drops
                                            and self._route_set.get(network) == event.local_ts):
                self._route_add(network, set_again=False)  # live, or in its grace as these selectors set it
                continue
            if not looked_up:
                source, looked_up = self._local_source(event), True
            self._route_add(network, source, event.local_ts)

    def _drop_routes(self, binding: Binding, at_once: bool = False) -> None:
        for network in binding.routes:
            self._route_del(network, at_once)
        binding.routes = []

    def _route_add(self, network: str, source: str | None = None, local_ts: Any = None,
                   set_again: bool = True) -> None:
        """A route into the TUN device in table 220, counted: a CHILD_SA and a drop shunt may share it.
        A route in its grace is set again unless it was set for the same local selectors and no
        virtual IP came or went since: the kernel drops a route with its source when that
        address goes, as a virtual IP does when its IKE SA is deleted, and the new IKE SA brings
        the same address back."""
        pending = self._route_drops.pop(network, None)
        if pending is not None:
            pending.cancel()
        self.route_refs[network] += 1
        if self.route_refs[network] > 1 or not set_again:
            return
        self._route_set.pop(network, None)
        args = ["route", "replace", network, "dev", self.tun_name, "table", str(ROUTE_TABLE)]
        if source:
            args += ["src", source]
        try:
            _ip(*args)
        except DataPlaneError as err:
            self.gateway.say(f"[ESP] {err}")
        else:
            self._route_set[network] = local_ts

    def _route_del(self, network: str, at_once: bool = False) -> None:
        self.route_refs[network] -= 1
        if self.route_refs[network] > 0:
            return
        del self.route_refs[network]
        loop = self.gateway.loop
        if at_once or loop is None:
            self._route_gone(network)
        elif network not in self._route_drops:
            self._route_drops[network] = loop.call_later(ROUTE_GRACE, self._route_expired, network)

    def _route_expired(self, network: str) -> None:
        self._route_drops.pop(network, None)
        if not self.route_refs[network]:
            self._route_gone(network)

    def _route_gone(self, network: str) -> None:
        self.route_refs.pop(network, None)
        self._route_set.pop(network, None)
        subprocess.run(["ip", "route", "del", network, "table", str(ROUTE_TABLE)], capture_output=True)

    # ------------------------------------------------------------ shunts (mode = pass / drop)

    def _install_shunts(self) -> None:
        """Every `mode = pass|drop` child with `start_action = trap`, as strongSwan installs
        them when the config is loaded: BYPASS policies ahead of all others, DISCARD policies
        behind all others (RFC 4301 §4.4.1; strongSwan's pass and fallback priorities)."""
        for conn in self.gateway.config.connections.values():
            for child in conn.children.values():
                if not child.mode.is_shunt:
                    continue
                name = f"{conn.name}/{child.name}"
                if child.start_action != StartAction.TRAP:
                    self.gateway.say(f"[ESP] shunt {name} (mode = {child.mode}) not installed: start_action = trap "
                                     f"installs it, as in strongSwan")
                    continue
                pairs = [(l, r) for l in _shunt_selectors(child.local_ts) for r in _shunt_selectors(child.remote_ts)
                         if l.start_addr.version == r.start_addr.version == 4
                         and not (l.ip_protocol and r.ip_protocol and l.ip_protocol != r.ip_protocol)]
                if not pairs:
                    self.gateway.say(f"[ESP] shunt {name}: no IPv4 selector pair to install")
                    continue
                bypass = child.mode == ChildMode.PASS
                policy = Policy(Action.BYPASS if bypass else Action.DISCARD, tuple(_selector(l, r) for l, r in pairs),
                                child=child.name, name=name)
                shunt = Shunt(policy)
                if bypass:
                    self.spd.add(policy, sum(1 for sh in self.shunts if sh.policy.action is Action.BYPASS))
                    shunt.rules = [_bypass_rule(l, r, lnet, rnet) for l, r in pairs
                                   for lnet in _networks(l) for rnet in _networks(r)]
                    for rule in shunt.rules:
                        try:
                            _ip("rule", "add", "priority", str(BYPASS_RULE_PRIORITY), *rule, "lookup", "main")
                        except DataPlaneError as err:
                            self.gateway.say(f"[ESP] shunt {name}: {err}")
                else:
                    self.spd.add(policy)
                    shunt.routes = sorted({str(net) for _, r in pairs for net in _networks(r)})
                    for network in shunt.routes:
                        self._route_add(network)
                self.shunts.append(shunt)
                what = ", ".join(f"{s.describe()['local']} <-> {s.describe()['remote']}" for s in policy.selectors)
                self.gateway.say(f"[ESP] installed shunt {name}: {policy.action.value.upper()} {what}")

    def _uninstall_shunt(self, shunt: Shunt) -> None:
        for rule in shunt.rules:
            subprocess.run(["ip", "rule", "del", "priority", str(BYPASS_RULE_PRIORITY), *rule, "lookup", "main"],
                           capture_output=True)
        for network in shunt.routes:
            self._route_del(network)
        if shunt.policy in self.spd.policies:
            self.spd.policies.remove(shunt.policy)

    # ------------------------------------------------------------ packets

    def _tun_readable(self) -> None:
        """Read a batch from the TUN device, protect it, and send it: ESP-in-UDP datagrams of
        equal size to one peer go out in one sendmsg with UDP GSO (UDP_SEGMENT)."""
        if self.offload:
            self._tun_readable_offload()
            return
        fd = self.tun_fd
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
            self.handle_sa_events()

    def _tun_readable_offload(self) -> None:
        """As `_tun_readable`, for reads that start with a virtio_net_hdr: a TCP super-packet
        is cut into segments (lab.daemon.offload.split), all of them under one SPD lookup."""
        fd = self.tun_fd
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
            self.handle_sa_events()

    def _sa_for(self, policy: Policy, packet: bytes) -> OutboundSA | None:
        """The outbound SA for a packet of a policy that several peers' SAs serve: the one its
        flow came in on, else the policy's latest."""
        binding = self.shared.get(id(policy))
        if binding is not None:
            pair = binding.flows.lookup(packet)
            if pair is not None:
                self.stats["flow_returns"] += 1
                return pair.outbound
        if policy.action is Action.BYPASS:
            self.stats["bypass_in_tun"] += 1
        return policy.sa

    def _send_batch(self, batch: list[tuple[OutboundSA, bytes]]) -> None:
        udp, raw, stats = self.gateway.sockets.get(4500), self.raw, self.stats
        i, n = 0, len(batch)
        while i < n:
            sa, payload = batch[i]
            if not sa.udp or not self.gso:
                try:
                    if sa.udp:
                        udp.sendto(payload, sa.peer)
                    elif sa.ah:
                        self.raw_ah.sendto(payload, (sa.peer[0], 0))
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

    def on_udp_esp(self, data: bytes, src: tuple[str, int], dst: tuple[str, int]) -> None:
        self._inbound(data)

    def _raw_readable(self) -> None:
        for _ in range(BATCH):
            try:
                packet = self.raw.recv(65535)
            except (BlockingIOError, OSError):
                break
            ihl = (packet[0] & 0x0F) * 4
            self._inbound(packet[ihl:])
        if self._rx:
            self.flush()

    def _raw_ah_readable(self) -> None:
        for _ in range(BATCH):
            try:
                packet = self.raw_ah.recv(65535)
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
        try:
            os.write(self.tun_fd, inner)
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
                    if pair in binding.pairs:
                        binding.flows.learn(inner, pair)
                        break
        self._deliver(inner)
        if self.sad.events:
            self.handle_sa_events()

    # ------------------------------------------------------------ NAT keepalives

    def _arm_keepalive(self) -> None:
        loop = self.gateway.loop
        if self._keepalive_timer is None and loop is not None and self.keepalive_interval > 0:
            self._keepalive_timer = loop.call_later(self.keepalive_interval, self._send_keepalives)

    def _send_keepalives(self) -> None:
        # RFC 3948 §2.3: only the side behind the NAT keeps its mapping alive
        self._keepalive_timer = None
        udp = self.gateway.sockets.get(4500)
        for ike_id, peer in list(self.keepalive_peers.items()):
            ike = self.gateway.endpoint.by_id.get(ike_id)
            target = ike.remote if ike is not None else peer
            try:
                udp.sendto(KEEPALIVE, target)
                self.stats["keepalives_sent"] += 1
            except OSError:
                self.stats["send_errors"] += 1
        if self.keepalive_peers:
            self._arm_keepalive()

    # ------------------------------------------------------------ reporting

    def describe_child(self, spi_in: bytes) -> dict[str, Any] | None:
        pair = self.by_spi_in.get(spi_in)
        if pair is None:
            return None
        i, o = pair.inbound, pair.outbound
        return {"bytes_in": i.bytes, "packets_in": i.packets, "bytes_out": o.bytes, "packets_out": o.packets,
                "drops_in": {str(k): v for k, v in i.drops.items() if v}, "outbound_active": any(
                    b.policy.sa is o for b in self.bindings.values())}

    def totals(self) -> dict[str, Any]:
        return {"tun": self.tun_name, "mtu": self.mtu, "offload": self.offload, "checksum_fixup": self.checksum_fixup,
                **dict(self.stats),
                "drops": {str(k): v for k, v in self.sad.drops.items() if v}, "policies": self.spd.describe()}
