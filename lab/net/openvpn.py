"""OpenVPN 2.6 as a peer inside a Mininet node, configured from hosts/<node>/openvpn.conf
(OpenVPN's own format, lab.conf.openvpn) with its certificates beside it (x509ca/, x509/,
private/ from the scenario's lab CA), over UDP or TCP.

OpenVPN runs in the foreground in the node (`--cd` the copied host folder, its output the log)
with a management socket (a Unix socket in the peer's folder; management-notes.txt) through which
the lab reads its state and counters and ends it. `start()` starts the daemon; a side with a
`remote` dials at once, so `initiate()` starts it if need be and waits for CONNECTED
("Initialization Sequence Completed"); `terminate()` ends the daemon (a UDP client with
`explicit-exit-notify` tells the other side).
"""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

from lab.conf.openvpn import OvpnConfig
from lab.conf.openvpn import read as read_ovpn

from .peers import PeerError, PeerNode, TunnelInfo
from .vpnpeer import VpnPeer


class OpenVpn(VpnPeer):
    software = "openvpn"
    config_names = ("openvpn.conf",)
    binary = "openvpn"
    package = "openvpn"

    def __init__(self, node: PeerNode, workdir: str | os.PathLike[str], name: str | None = None, **options: Any) -> None:
        super().__init__(node, workdir, name, **options)
        self.config: OvpnConfig | None = None

    @property
    def management_path(self) -> Path:
        return self.workdir / "management.sock"

    @property
    def interface(self) -> str:
        dev = self.config.device if self.config else "tun"
        return dev if dev != "tun" else f"tun-{self.name}"[:15]

    def parse(self, text: str) -> OvpnConfig:
        self.config = read_ovpn(text, str(self.config_path), self.confdir)
        return self.config

    # ------------------------------------------------------------ up and down

    def start(self) -> OpenVpn:
        if self.running:
            return self
        if self.config is None:
            raise PeerError(f"{self.name}: no openvpn.conf loaded")
        self.management_path.unlink(missing_ok=True)
        self.spawn(["openvpn", "--cd", str(self.confdir), "--config", self.config_path.name,
                    "--dev", self.interface, "--dev-type", "tun",
                    "--management", str(self.management_path), "unix"])
        self.wait_until(lambda: self.management_path.exists() and self._ask("state") is not None,
                        f"opening its management socket {self.management_path}")
        return self

    def initiate(self, child: str | None = None, ike: str | None = None, timeout: float = 20) -> str:
        """Start OpenVPN if need be and wait until its tunnel is up (TLS done, the tun device set)."""
        if not self.running:
            self.start()
        self.wait_for_tunnel(lambda tunnels: any(t.state == "UP" for t in tunnels), timeout,
                             "OpenVPN's tunnel (state CONNECTED)")
        return "connected"

    def terminate(self, ike: str | None = None, child: str | None = None) -> str:
        self.stop()
        return "OpenVPN ended"

    def stop(self, timeout: float = 10.0) -> None:
        """Ask OpenVPN to exit (`signal SIGTERM` by its management socket: a UDP client with
        explicit-exit-notify tells the other side), then what VpnPeer.stop does."""
        if self.running:
            self._ask("signal SIGTERM", timeout=2)
            if self.process is not None:
                try:
                    self.process.wait(3)
                except Exception:
                    pass
        super().stop(timeout)

    def cleanup(self) -> None:
        """What an OpenVPN that died leaves: its management socket (the tun device goes with the
        process, which holds it open)."""
        self.management_path.unlink(missing_ok=True)

    # ------------------------------------------------------------ the management socket

    def _ask(self, command: str, timeout: float = 2.0) -> list[str] | None:
        """One management command; its reply lines (up to END, or the one SUCCESS/ERROR line), or
        None if OpenVPN does not answer."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(timeout)
                s.connect(str(self.management_path))
                s.sendall(command.encode() + b"\n")
                data = b""
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                    lines = [l for l in data.decode(errors="replace").splitlines() if not l.startswith(">")]
                    if data.endswith(b"\n") and lines and (lines[-1] == "END" or lines[-1].startswith(("SUCCESS:",
                                                                                                         "ERROR:"))):
                        return lines[:-1] if lines[-1] == "END" else lines
        except OSError:
            return None
        return None

    def state(self) -> list[str]:
        """The `state` line's fields: time, state, description, tun address, remote address,
        remote port, local address, local port."""
        lines = self._ask("state") or []
        return lines[-1].split(",") if lines else []

    def statistics(self) -> dict[str, int]:
        """`status`'s counters (p2p mode: TUN/TAP and TCP/UDP read and write bytes)."""
        out = {}
        for line in self._ask("status") or []:
            key, _, value = line.rpartition(",")
            if value.isdigit():
                out[key] = int(value)
        return out

    # ------------------------------------------------------------ state

    def list_tunnels(self) -> list[TunnelInfo]:
        if not self.running or self.config is None:
            return []
        fields = self.state()
        if len(fields) < 2:
            return []
        fields += [""] * (8 - len(fields))
        name, state = fields[1], fields[1]
        stats = self.statistics()
        link = self.link_stats(self.interface)
        remote_host, remote_port = fields[4], int(fields[5]) if fields[5].isdigit() else 0
        return [TunnelInfo(
            name=f"{self.interface}", state="UP" if state == "CONNECTED" else "CONNECTING" if state != "EXITING"
            else "DOWN", local_host=fields[6], local_port=int(fields[7]) if fields[7].isdigit() else 0,
            remote_host=remote_host, remote_port=remote_port, transport=self.config.transport,
            handshake_age=time.time() - int(fields[0]) if state == "CONNECTED" and fields[0].isdigit() else None,
            inner=(fields[3],) if fields[3] else (),
            bytes_in=stats.get("TCP/UDP read bytes", 0), bytes_out=stats.get("TCP/UDP write bytes", 0),
            packets_in=link.get("rx_packets", 0), packets_out=link.get("tx_packets", 0))] if name else []

    def shell_exports(self) -> dict[str, str]:
        return {"OPENVPN_MANAGEMENT": str(self.management_path)}
