"""WireGuard as a peer inside a Mininet node: Debian's wireguard-go (the userspace
implementation: this kernel has no WireGuard module) with `wg` from wireguard-tools, configured
from hosts/<node>/wireguard.conf in wg-quick's format (lab.conf.wgquick).

The interface is wg-<node>: wireguard-go's UAPI socket is /var/run/wireguard/<interface>.sock,
and a node without a private /var/run shares that folder with the machine, so the names must
differ per node. Starting is what wg-quick up does: wireguard-go, `wg setconf`, the addresses,
the MTU, the link up, a route per allowed network. `initiate()` sends a handshake initiation now
(WireGuard sends one by itself only with the first packet to a peer) and waits for it;
`terminate()` takes the link down (the keys go with it).
"""
from __future__ import annotations

import ipaddress
import os
import time
from typing import Any

from lab.conf.wgquick import WgConfig
from lab.conf.wgquick import read as read_wg

from .peers import PeerError, PeerNode, TunnelInfo
from .vpnpeer import VpnPeer

UAPI_DIR = "/var/run/wireguard"
# WireGuard paper §6.1 (Reject-After-Time): a session older than 180 s takes no more data
REJECT_AFTER_TIME = 180
# WireGuard paper §6.1 (Rekey-After-Time): a sender starts a new handshake after 120 s
REKEY_AFTER_TIME = 120


def interface_name(node: str) -> str:
    return f"wg-{node}"[:15]


def _within(net: ipaddress.IPv4Network | ipaddress.IPv6Network,
            outer: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    """`net` lies inside `outer` (never for two IP versions)."""
    if isinstance(net, ipaddress.IPv4Network) and isinstance(outer, ipaddress.IPv4Network):
        return net.subnet_of(outer)
    if isinstance(net, ipaddress.IPv6Network) and isinstance(outer, ipaddress.IPv6Network):
        return net.subnet_of(outer)
    return False


class WireGuard(VpnPeer):
    software = "wireguard"
    config_names = ("wireguard.conf",)
    binary = "wireguard-go"
    package = "wireguard-go wireguard-tools"

    def __init__(self, node: PeerNode, workdir: str | os.PathLike[str], name: str | None = None, **options: Any) -> None:
        super().__init__(node, workdir, name, **options)
        self.interface = interface_name(self.name)
        self.config: WgConfig | None = None

    @property
    def socket_path(self) -> str:
        return f"{UAPI_DIR}/{self.interface}.sock"

    def parse(self, text: str) -> WgConfig:
        self.config = read_wg(text, str(self.config_path))
        return self.config

    # ------------------------------------------------------------ up and down

    def start(self) -> WireGuard:
        if self.running:
            return self
        if self.config is None:
            raise PeerError(f"{self.name}: no wireguard.conf loaded")
        self.cleanup()  # a socket or interface a killed wireguard-go left
        self.spawn(["wireguard-go", "-f", self.interface], env={"WG_PROCESS_FOREGROUND": "1", "LOG_LEVEL": "verbose",
                                                                    "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD": "1"})
        self.wait_until(lambda: self.command(["wg", "show", self.interface], check=False).returncode == 0,
                        f"opening {self.socket_path}")
        try:
            setconf = self.workdir / f"{self.interface}.setconf"
            setconf.write_text(self.config.wg_setconf())
            setconf.chmod(0o600)
            self.command(["wg", "setconf", self.interface, str(setconf)])
            for address in self.config.addresses:
                self.command(["ip", "address", "replace", address, "dev", self.interface])
            if self.config.mtu:
                self.command(["ip", "link", "set", "dev", self.interface, "mtu", str(self.config.mtu)])
            self._up()
        except BaseException:
            self.stop()  # a half-configured interface is no use: no process, TUN or socket stays
            raise
        return self

    def _up(self) -> None:
        """The link up and a route for each allowed network (wg-quick's add_route), except those
        an address of the interface already routes."""
        assert self.config is not None
        self.command(["ip", "link", "set", "dev", self.interface, "up"])
        own = [ipaddress.ip_interface(a).network for a in self.config.addresses]
        for peer in self.config.peers:
            for network in peer.allowed_ips:
                net = ipaddress.ip_network(network, strict=False)
                if any(_within(net, o) for o in own):
                    continue
                self.command(["ip", "route", "replace", str(net), "dev", self.interface])

    def initiate(self, child: str | None = None, ike: str | None = None, timeout: float = 20) -> str:
        """The link up and a handshake with every peer that has an endpoint, now."""
        if not self.running:
            self.start()
        assert self.config is not None
        was_up = self.link_up(self.interface)
        if not was_up:
            self._up()
        peers = [p for p in self.config.peers if p.endpoint]
        if not peers:
            raise PeerError(f"{self.name}: no [Peer] has an Endpoint, so WireGuard here only answers "
                            "(initiate from the other side)")
        before = self.latest_handshakes()
        if was_up and all(time.time() - before.get(p.public_key, 0) < REKEY_AFTER_TIME for p in peers):
            return "the session is up (a handshake less than 120 s ago)"
        for peer in peers:
            # a keepalive now (wg(8): setting persistent-keepalive sends one at once), which needs a
            # session, so a handshake initiation goes first; then the configured interval again
            self.command(["wg", "set", self.interface, "peer", peer.public_key, "persistent-keepalive", "1"])
        try:
            def shook(_tunnels: list[TunnelInfo]) -> bool:
                now = self.latest_handshakes()
                return all(now.get(p.public_key, 0) > before.get(p.public_key, 0) for p in peers)
            self.wait_for_tunnel(shook, timeout, "a WireGuard handshake")
        finally:
            for peer in peers:
                keepalive = str(peer.persistent_keepalive or "off")
                self.command(["wg", "set", self.interface, "peer", peer.public_key, "persistent-keepalive",
                              keepalive], check=False)
        return "handshake done"

    def terminate(self, ike: str | None = None, child: str | None = None) -> str:
        """The link down: wireguard-go stops its peers and forgets their session keys."""
        if self.running:
            self.command(["ip", "link", "set", "dev", self.interface, "down"])
        return "link down"

    def cleanup(self) -> None:
        """What a wireguard-go that died leaves: its UAPI socket (the TUN device goes with the
        process)."""
        self.command(["sh", "-c", f"ip link del dev {self.interface} 2>/dev/null; rm -f {self.socket_path}"],
                     check=False)

    # ------------------------------------------------------------ state

    def dump(self) -> list[list[str]]:
        """`wg show IFACE dump`: the interface's line, then one per peer."""
        result = self.command(["wg", "show", self.interface, "dump"], check=False)
        if result.returncode != 0:
            return []
        return [line.split("\t") for line in result.stdout.splitlines() if line]

    def latest_handshakes(self) -> dict[str, int]:
        """Each peer's last handshake, in seconds since the epoch (0: none yet)."""
        return {row[0]: int(row[4]) for row in self.dump()[1:] if len(row) > 4 and row[4].isdigit()}

    def list_tunnels(self) -> list[TunnelInfo]:
        if not self.running:
            return []
        rows = self.dump()
        if not rows:
            return []
        listen_port = int(rows[0][2]) if rows[0][2].isdigit() else 0
        up = self.link_up(self.interface)
        stats = self.link_stats(self.interface) if len(rows) == 2 else {}
        now = time.time()
        out = []
        for row in rows[1:]:
            public, _psk, endpoint, allowed, latest, rx, tx = row[:7]
            host, _, port = endpoint.rpartition(":") if endpoint != "(none)" else ("", "", "0")
            age = now - int(latest) if latest.isdigit() and int(latest) else None
            state = "DOWN" if not up else ("UP" if age is not None and age < REJECT_AFTER_TIME else "CONNECTING")
            out.append(TunnelInfo(
                name=f"{self.interface}:{public[:8]}", state=state, local_port=listen_port,
                remote_host=host.strip("[]"), remote_port=int(port or 0), handshake_age=age, transport="udp",
                inner=tuple(a for a in allowed.split(",") if a and a != "(none)"),
                bytes_in=int(rx), bytes_out=int(tx), packets_in=stats.get("rx_packets", 0),
                packets_out=stats.get("tx_packets", 0)))
        return out

    def shell_exports(self) -> dict[str, str]:
        return {"WG_INTERFACE": self.interface}
