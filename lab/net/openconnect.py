"""OpenConnect as a peer inside a Mininet node: the AnyConnect-compatible TLS VPN ("SSL VPN"), with
Debian's ocserv as the gateway (hosts/<node>/ocserv.conf) and Debian's openconnect as the client
(hosts/<node>/openconnect.conf, the password in hosts/<node>/password); lab.conf.ocserv reads both.

The client logs in over HTTPS (TLS on TCP, ocserv's tcp-port, 443), keeps that TLS connection as
the tunnel's control and fallback channel (CSTP) and tries DTLS on ocserv's udp-port for the data;
if no DTLS answer comes, the data stays in the TLS connection.

ocserv runs in the foreground (`--foreground`) with its sockets (the worker socket prefix and
occtl's socket) and pid file in the node's /var/run/ocserv-<node>, removed when it stops and
before it starts (a killed ocserv leaves them); the lab reads
the sessions with `occtl --json show users`. openconnect runs in the foreground with the lab's
own vpnc-style script (tun-script.sh: the tun device's address, MTU and the routes the gateway
pushes, nothing else on the node) and the password on its standard input. Its tun device, and
ocserv's per-client ones, go with their processes.
"""
from __future__ import annotations

import json
import os
import re
from typing import Any

from lab.conf.ocserv import OCSERV_FILES, OcConfig, read_ocserv, read_openconnect

from .peers import PeerError, PeerNode, TunnelInfo
from .vpnpeer import VpnPeer

# the vpnc-script interface (vpnc-script(8), openconnect's "VPNC script"): openconnect calls the
# script with $reason and the settings the gateway sent; this one only sets up the tun device
TUN_SCRIPT = """#!/bin/sh
# written by ipsec-lab: openconnect's tun device and the gateway's split routes, nothing else
case "$reason" in
connect)
    ip link set dev "$TUNDEV" up mtu "${INTERNAL_IP4_MTU:-1400}"
    ip addr add "$INTERNAL_IP4_ADDRESS/32" peer "$INTERNAL_IP4_ADDRESS" dev "$TUNDEV"
    i=0
    while [ "$i" -lt "${CISCO_SPLIT_INC:-0}" ]; do
        eval net="\\$CISCO_SPLIT_INC_${i}_ADDR" len="\\$CISCO_SPLIT_INC_${i}_MASKLEN"
        ip route replace "$net/$len" dev "$TUNDEV"
        i=$((i + 1))
    done
    ;;
disconnect)
    ip link set dev "$TUNDEV" down 2>/dev/null
    ;;
esac
exit 0
"""
# ocserv.conf keys naming a file or folder, made absolute in the copy the lab runs
PATH_KEYS = set(OCSERV_FILES) | {"config-per-user", "config-per-group", "default-user-config",
                                 "default-group-config"}


class OpenConnect(VpnPeer):
    software = "openconnect"
    config_names = ("ocserv.conf", "openconnect.conf")
    binary = "ocserv"
    package = "ocserv openconnect"

    def __init__(self, node: PeerNode, workdir: str | os.PathLike[str], name: str | None = None, **options: Any) -> None:
        super().__init__(node, workdir, name, **options)
        self.config: OcConfig | None = None

    @property
    def server(self) -> bool:
        """ocserv (the gateway) or openconnect (the client)?"""
        return self.config_name == "ocserv.conf"

    @property
    def interface(self) -> str:
        """The client's tun device (the gateway has one per client, vpns0, vpns1, ...)."""
        return f"oc-{self.name}"[:15]

    @property
    def files(self) -> str:
        """Where ocserv's sockets and pid file go: in the node's /var/run (a gateway node's own, which
        goes with the node; the node's name in it for a node that shares the machine's)."""
        return f"/var/run/ocserv-{self.name}"

    @property
    def occtl_socket(self) -> str:
        return f"{self.files}/occtl.socket"

    def parse(self, text: str) -> OcConfig:
        read = read_ocserv if self.server else read_openconnect
        self.config = read(text, str(self.config_path), self.confdir)
        if self.server:
            self.binary, self.package = "ocserv", "ocserv"
        else:
            self.binary, self.package = "openconnect", "openconnect"
        return self.config

    # ------------------------------------------------------------ up and down

    def start(self) -> OpenConnect:
        """ocserv listens; openconnect dials, logs in and brings its tun device up."""
        if self.running:
            return self
        if self.config is None:
            raise PeerError(f"{self.name}: no ocserv.conf or openconnect.conf loaded")
        self.cleanup()
        if self.server:
            self._start_ocserv()
        else:
            self._start_openconnect()
        return self

    def _start_ocserv(self) -> None:
        assert self.config is not None
        lines = [f"# {self.config_path.name} as the lab runs it: its paths absolute, the lab's sockets added"]
        for option in self.config.options:
            value = option.value
            if option.name in PATH_KEYS and not value.startswith("/"):
                value = str(self.confdir / value)
            if option.name == "auth" and self.config.passwd_file and not self.config.passwd_file.startswith("/"):
                value = value.replace(f"passwd={self.config.passwd_file}",
                                      f"passwd={self.confdir / self.config.passwd_file}")
            lines.append(f"{option.name} = {value}")
        lines += [f"socket-file = {self.files}/ocserv.sock", f"occtl-socket-file = {self.occtl_socket}",
                  f"pid-file = {self.files}/ocserv.pid", "use-occtl = true"]
        running = self.workdir / "ocserv-running.conf"
        running.write_text("\n".join(lines) + "\n")
        running.chmod(0o600)
        self.command(["mkdir", "-p", "-m", "0700", self.files])
        self.spawn(["ocserv", "--foreground", "--config", str(running), "--debug", "2"])
        self.wait_until(lambda: self.occtl("show", "status") is not None,
                        f"opening occtl's socket {self.occtl_socket}")

    def _start_openconnect(self) -> None:
        password = self.confdir / "password"
        if not password.exists():
            raise PeerError(f"{self.name}: openconnect.conf needs the file `password` beside it (the user's "
                            "password, one line)")
        script = self.workdir / "tun-script.sh"
        script.write_text(TUN_SCRIPT)
        script.chmod(0o700)
        self.check_installed()
        with open(password, "rb") as stdin:
            self.spawn(["openconnect", f"--config={self.config_path}", "--non-inter", "--passwd-on-stdin",
                        f"--interface={self.interface}", f"--script={script}", "--timestamp"],
                       stdin=stdin, cwd=str(self.confdir))

    def initiate(self, child: str | None = None, ike: str | None = None, timeout: float = 20) -> str:
        """The client: start openconnect if need be and wait until its tunnel is up (logged in,
        the tun device set); the gateway only answers."""
        if self.server:
            raise PeerError(f"{self.name} runs ocserv, which only answers: initiate from the openconnect side")
        if not self.running:
            self.start()
        tunnels = self.wait_for_tunnel(lambda ts: any(t.state == "UP" for t in ts), timeout,
                                       "openconnect's tunnel (logged in, the tun device up)")
        return f"connected over {'DTLS' if tunnels[0].transport == 'udp' else 'TLS'}"

    def terminate(self, ike: str | None = None, child: str | None = None) -> str:
        self.stop()
        return "logged off" if not self.server else "ocserv ended"

    def cleanup(self) -> None:
        """What an ocserv that died leaves: its sockets and pid file (the tun devices go with the
        processes that hold them)."""
        if self.server:
            self.command(["rm", "-rf", self.files], check=False)

    # ------------------------------------------------------------ state

    def occtl(self, *args: str) -> Any:
        """`occtl --json ARGS` on the gateway's socket, parsed; None if ocserv does not answer."""
        try:
            result = self.command(["occtl", "--json", "--socket-file", str(self.occtl_socket), *args],
                                  timeout=5, check=False)
        except PeerError:
            return None
        if result.returncode != 0:
            return None
        try:
            return json.loads(result.stdout or "null")
        except ValueError:
            return None

    def _client_state(self) -> tuple[str, str]:
        """From openconnect's log: the state (UP once the tunnel is set, CONNECTING before) and
        the data channel (udp once DTLS is established, tcp while the data go in TLS)."""
        try:
            log = self.log_path.read_text(errors="replace")
        except OSError:
            return "CONNECTING", "tcp"
        session = log.rfind("Got CONNECT response")     # the tunnel's start (or its restart)
        if session < 0 or max(log.rfind("Configured as "), log.rfind("Connected as ")) < session:
            return "CONNECTING", "tcp"
        after = log[session:]
        dtls = after.rfind("Established DTLS connection")
        lost = max(after.rfind("DTLS handshake failed"), after.rfind("DTLS Dead Peer Detection detected dead peer"),
                   after.rfind("Failed to reconnect to host"))
        state = "UP" if self.link_up(self.interface) else "CONNECTING"
        return state, "udp" if dtls > lost else "tcp"

    def list_tunnels(self) -> list[TunnelInfo]:
        if not self.running or self.config is None:
            return []
        if not self.server:
            state, transport = self._client_state()
            host, port = self.config.server
            link = self.link_stats(self.interface)
            address = self.command(["ip", "-o", "-4", "addr", "show", "dev", self.interface], check=False).stdout
            found = re.search(r"inet (\S+?)[/ ]", address)
            return [TunnelInfo(name=self.interface, state=state, remote_host=host, remote_port=port,
                               transport=transport, inner=(found.group(1),) if found else (),
                               bytes_in=link.get("rx_bytes", 0), bytes_out=link.get("tx_bytes", 0),
                               packets_in=link.get("rx_packets", 0), packets_out=link.get("tx_packets", 0))]
        out = []
        for user in self.occtl("show", "users") or []:
            device = user.get("Device", "")
            link = self.link_stats(device) if device else {}
            dtls = user.get("DTLS cipher", "(no-dtls)") not in ("", "(no-dtls)")
            out.append(TunnelInfo(
                name=f"{user.get('Username', '?')}@{device}", state="UP" if user.get("State") == "connected"
                else "CONNECTING", remote_host=user.get("Remote IP", ""), remote_port=0,
                local_port=self.config.udp_port if dtls else self.config.tcp_port,
                transport="udp" if dtls else "tcp", inner=(user.get("IPv4", ""),) if user.get("IPv4") else (),
                bytes_in=int(user.get("RX", 0) or 0), bytes_out=int(user.get("TX", 0) or 0),
                packets_in=link.get("tx_packets", 0), packets_out=link.get("rx_packets", 0)))
        return out

    def shell_exports(self) -> dict[str, str]:
        return {"OCCTL_SOCKET": str(self.occtl_socket)} if self.server else {"OPENCONNECT_TUN": self.interface}

