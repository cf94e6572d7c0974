"""The gateway's ESP data plane: CHILD SAs from IKE events into lab.esp, over a TUN device.

Like strongSwan's kernel-libipsec (this kernel has no ESP), in three parts: this module turns
the IKE core's events into SAs and policies (make-before-break on rekeys, MOBIKE moves, NAT
keepalives, lifetimes reached); lab.daemon.packets moves the packets between the TUN device
and the wire; lab.daemon.routes tells the kernel, through ip(8), which traffic goes into the
TUN device (routes, virtual IPs, shunts).
"""
from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lab.esp import (
    SPD,
    Action,
    EspConfigError,
    InboundSA,
    IpsecProto,
    Lifetime,
    Mode,
    OutboundSA,
    Policy,
    SADatabase,
    SaEventKind,
    UdpEncap,
)
from lab.esp.flows import ReturnFlows
from lab.iana import ProtocolId
from lab.ike import events as ev

from .packets import PacketPath, attach_route
from .routes import DataPlaneError, Routes, esp_selector, route_network

if TYPE_CHECKING:
    from collections import Counter

    from .gateway import Gateway

__all__ = ["Binding", "DataPlane", "DataPlaneError", "Pair", "child_sa_pair"]

KEEPALIVE = b"\xff"  # RFC 3948 §2.3


def child_sa_pair(event: ev.ChildSaUp, now: float, lifetime: Lifetime | None = None,
                  random: Callable[[int], bytes] = os.urandom, checksum_fixup: bool = True
                  ) -> tuple[InboundSA, OutboundSA]:
    """The inbound and outbound lab.esp SAs of a CHILD_SA the IKE core negotiated (EspConfigError
    when lab.esp cannot carry it out); `random` gives CBC IVs, IPv4 IDs and dummies (the
    daemon passes its IKE endpoint's source, so one seed replays both). In transport mode across
    a NAT the inbound SA fixes up TCP/UDP checksums (RFC 3948 §3.1.2) with the selectors'
    original addresses (RFC 7296 §2.23.1)."""
    selectors = [esp_selector(l, r) for l in event.local_ts for r in event.remote_ts]
    ah = event.protocol == ProtocolId.AH  # IKE's protocol numbering (RFC 7296 §3.3.1), not IP's
    encap = UdpEncap(event.local[1], event.remote[1]) if event.encap and not ah else None
    mode = Mode.TRANSPORT if event.mode == "transport" else Mode.TUNNEL
    common: dict[str, Any] = dict(protocol=IpsecProto.AH if ah else IpsecProto.ESP, mode=mode, encr_id=event.encr_id,
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


class DataPlane:
    def __init__(self, gateway: Gateway, tun_name: str = "ipsec0", mtu: int = 1400,
                 keepalive_interval: float = 20.0, offload: bool = True,
                 random: Callable[[int], bytes] = os.urandom, checksum_fixup: bool = True) -> None:
        self.gateway = gateway
        self.random = random  # CBC IVs, IPv4 IDs, dummies: the gateway gives its IKE endpoint's source
        self.tun_name = tun_name
        self.mtu = mtu
        self.keepalive_interval = keepalive_interval
        self.bindings: dict[int, Binding] = {}  # by id(policy)
        self.by_spi_in: dict[bytes, Pair] = {}
        self.shared: dict[int, Binding] = {}
        self.keepalive_peers: dict[int, tuple[str, int]] = {}
        self._keepalive_timer: asyncio.TimerHandle | None = None
        self.checksum_fixup = checksum_fixup
        # without the fix-up the kernel must judge the checksums itself, as a stack without
        # RFC 3948 §3.1.2 would: no DATA_VALID on what we write, no coalescing
        self.packets = PacketPath(gateway, tun_name, offload=offload and checksum_fixup, shared=self.shared,
                                  by_spi_in=self.by_spi_in, on_sa_events=self.handle_sa_events)
        self.routes = Routes(gateway, self.packets.spd, tun_name)

    @property
    def sad(self) -> SADatabase:
        return self.packets.sad

    @property
    def spd(self) -> SPD:
        return self.packets.spd

    @property
    def stats(self) -> Counter[str]:
        return self.packets.stats

    # ------------------------------------------------------------ setup and teardown

    def start(self) -> None:
        self.packets.open_tun()
        self.routes.start(self.mtu)
        self.packets.open_sockets()
        self.gateway.event_handlers.append(self.on_event)
        if not self.checksum_fixup:
            self.gateway.say("[ESP] transport-mode checksum fix-up (RFC 3948 §3.1.2) is off, and so are TUN "
                             "offloads: the kernel checks every TCP/UDP checksum as it arrives")
        self.routes.install_shunts()

    def stop(self) -> None:
        self.packets.stop_delivery()
        if self._keepalive_timer is not None:
            self._keepalive_timer.cancel()
        for binding in list(self.bindings.values()):
            self._drop_routes(binding, at_once=True)
        self.routes.stop()
        self.packets.close()
        self.routes.remove_rule()

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
            for vip in event.virtual_ips or ((event.virtual_ip,) if event.virtual_ip else ()):
                self.routes.add_virtual_ip(event.ike_sa, vip)
        elif isinstance(event, ev.IkeSaRekeyed):
            peer = self.keepalive_peers.pop(event.ike_sa, None)
            if peer is not None:
                self.keepalive_peers[event.new_ike_sa] = peer
            self.routes.move_virtual_ip(event.ike_sa, event.new_ike_sa)
        elif isinstance(event, ev.IkeSaDeleted):
            self.keepalive_peers.pop(event.ike_sa, None)
            self.routes.drop_virtual_ip(event.ike_sa)
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
            self.spd.add(policy, len(self.spd.policies) - self.routes.discard_shunts())
            binding = Binding(policy, [str(route_network(ts)) for ts in event.remote_ts])
            self.bindings[id(policy)] = binding
            self.routes.add(binding.routes, event.local_ts)
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

    def _drop_routes(self, binding: Binding, at_once: bool = False) -> None:
        self.routes.drop(binding.routes, at_once)
        binding.routes = []

    # ------------------------------------------------------------ NAT keepalives

    def _arm_keepalive(self) -> None:
        loop = self.gateway.loop
        if self._keepalive_timer is None and loop is not None and self.keepalive_interval > 0:
            self._keepalive_timer = loop.call_later(self.keepalive_interval, self._send_keepalives)

    def _send_keepalives(self) -> None:
        # RFC 3948 §2.3: only the side behind the NAT keeps its mapping alive
        self._keepalive_timer = None
        if self.gateway.sockets.get(4500) is None:  # closed
            return
        tcp = self.gateway.tcp
        for ike_id, peer in list(self.keepalive_peers.items()):
            ike = self.gateway.endpoint.by_id.get(ike_id)
            target = ike.remote if ike is not None else peer
            if tcp is not None and tcp.carries(target[0]):
                continue  # RFC 9329 §6.6: no NAT keepalives over TCP (TCP mappings last)
            udp = self.gateway.udp_socket(4500, target[0])
            if udp is None:
                continue
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
        return {"tun": self.tun_name, "mtu": self.mtu, "offload": self.packets.offload,
                "checksum_fixup": self.checksum_fixup, **dict(self.stats),
                "drops": {str(k): v for k, v in self.sad.drops.items() if v}, "policies": self.spd.describe()}
