"""The kinds of gateway software a scenario's `gateways:` may name, one entry each: its name in
scenario.yaml, its label in reports and figures, the configuration file it reads from
hosts/<node>/, how that file is checked before anything starts (file:line errors), and the
lab.net.peers.Peer that runs it.

Adding a kind of gateway software is one entry in SOFTWARE (and its Peer in a module of its
own): everything else (the scenario reader, the runner, the run folder, the reference) asks
this registry.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .fields import ScenarioError
from .peers import Peer, PeerNode


def _swanctl_ours(path: Path) -> None:
    """Our daemon's reader checks everything it will use."""
    from lab.conf.swanctl import ConfigError, load_swanctl

    try:
        load_swanctl(str(path))
    except ConfigError as err:
        raise ScenarioError(err.file, err.line, err.key or "", err.reason) from None


def _swanctl_syntax(path: Path) -> None:
    """strongSwan reads the file itself; the syntax is checked here, so that a typo is a
    file:line error before the lab starts."""
    from lab.conf.settings import ConfigError, parse_settings

    try:
        parse_settings(path.read_text(), str(path))
    except ConfigError as err:
        raise ScenarioError(err.file, err.line, err.key or "", err.reason) from None


def _wgquick(path: Path) -> None:
    """WireGuard's file in wg-quick's format, read as the lab will apply it."""
    from lab.conf.swanctl import ConfigError
    from lab.conf.wgquick import read

    try:
        read(path.read_text(), str(path))
    except ConfigError as err:
        raise ScenarioError(err.file, err.line, err.key or "", err.reason) from None


def _openvpn(path: Path) -> None:
    """OpenVPN's file, with the files it names looked for beside it."""
    from lab.conf.openvpn import read
    from lab.conf.swanctl import ConfigError

    try:
        read(path.read_text(), str(path), path.parent)
    except ConfigError as err:
        raise ScenarioError(err.file, err.line, err.key or "", err.reason) from None


def _ports(folder: Path) -> None:
    """The listeners' ports file, one TCP port a line."""
    from .listeners import ListenersError, parse_ports

    path = folder / "ports"
    try:
        parse_ports(path.read_text(), str(path))
    except ListenersError as err:
        raise ScenarioError(err.file or str(path), err.line, "", err.message) from None


def _nginx(folder: Path) -> None:
    """nginx's server blocks as the lab will run them (`nginx -t`), nginx's complaint with file and line.
    Without nginx installed nothing is checked here: the run then says what to install."""
    import os

    from .nginx import NGINX, NginxError, check_config

    if not os.access(NGINX, os.X_OK):
        return
    try:
        check_config(folder)
    except NginxError as err:
        raise ScenarioError(err.file or str(folder / "nginx.conf"), err.line, "", err.message) from None


def _openconnect(path: Path) -> None:
    """ocserv's file (the gateway) or openconnect's (the client), with the files they name."""
    from lab.conf.ocserv import read_ocserv, read_openconnect
    from lab.conf.swanctl import ConfigError

    read = read_ocserv if path.name == "ocserv.conf" else read_openconnect
    try:
        read(path.read_text(), str(path), path.parent)
        if path.name == "openconnect.conf" and not (path.parent / "password").exists():
            raise ConfigError("needs the file `password` beside it (the user's password, one line)", file=str(path),
                              line=None, key="user")
    except ConfigError as err:
        raise ScenarioError(err.file, err.line, err.key or "", err.reason) from None


@dataclass(frozen=True)
class Software:
    name: str                                   # in scenario.yaml's gateways:
    label: str                                  # in reports, narration and figures
    does: str                                   # one line for the reference
    peer: str                                   # "module:Class" of its lab.net.peers.Peer
    check_config: Callable[[Path], None]        # raises ScenarioError with file and line
    config: str = "swanctl.conf"                # its configuration file in hosts/<node>/
    options: bool = False                       # takes daemon options (gateways.<node>.options)
    trace: bool = False                         # writes trace.jsonl (trace checks, narration)
    ike: bool = True                            # has IKE and CHILD_SAs (initiate/terminate name them)
    run_options: dict[str, Any] = field(default_factory=dict)    # what a scenario run gives its Peer
    or_config: str = ""                         # another file it may read instead (a client's, beside a server's)

    @property
    def configs(self) -> tuple[str, ...]:
        """The files a gateway of this software may have in hosts/<node>/, the first that exists counts."""
        return (self.config, self.or_config) if self.or_config else (self.config,)

    def make(self, node: PeerNode, workdir: Path, name: str, **options: Any) -> Peer:
        """A Peer of this software on `node`, its files under `workdir`."""
        module, _, cls = self.peer.partition(":")
        peer_class = getattr(importlib.import_module(module, __package__), cls)
        return peer_class(node, workdir, name, **options)


SOFTWARE: dict[str, Software] = {s.name: s for s in (
    Software("ours", "ipsec-lab", "ipsec-lab's own IKEv2/ESP daemon (`ipsec-lab daemon`)", ".gateway:OurGateway",
             _swanctl_ours, options=True, trace=True),
    Software("strongswan", "strongSwan", "strongSwan 5.9.8's charon with kernel-libipsec, driven through VICI",
             ".strongswan:StrongSwan", _swanctl_syntax, run_options={"export_keys": True}),
    Software("strongswan6", "strongSwan 6", "strongSwan 6.0's charon (Debian 13's packages, in a root file system "
             "of its own that scripts/setup.sh builds) with kernel-libipsec, driven through VICI; RFC 9370 "
             "additional key exchanges (`ke1_` ... `ke7_`) with the classical groups",
             ".strongswan6:StrongSwan6", _swanctl_syntax, run_options={"export_keys": True}),
    Software("wireguard", "WireGuard", "Debian's wireguard-go (userspace WireGuard) set up with `wg` as wg-quick would",
             ".wireguard:WireGuard", _wgquick, config="wireguard.conf", ike=False),
    Software("openvpn", "OpenVPN", "OpenVPN 2.6 (TLS with the scenario's certificates; over UDP or TCP)",
             ".openvpn:OpenVpn", _openvpn, config="openvpn.conf", ike=False),
    Software("openconnect", "OpenConnect", "the AnyConnect-compatible TLS + DTLS VPN: Debian's ocserv as the gateway "
             "(`ocserv.conf`), openconnect as the client (`openconnect.conf` and the user's `password`)",
             ".openconnect:OpenConnect", _openconnect, config="ocserv.conf", or_config="openconnect.conf", ike=False),
)}


class Server(Protocol):
    """What the runner uses of a service's server (a Service's `runner` class)."""

    def load(self, folder: str | Path) -> None: ...
    def start(self) -> object: ...
    def stop(self) -> None: ...
    def kill(self) -> None: ...


@dataclass(frozen=True)
class Service:
    """A server a scenario's `services:` puts on a host node (not a gateway): started before
    the gateways, its files from hosts/<node>/, stopped at teardown with nothing left."""
    name: str                                   # in scenario.yaml's services:
    label: str
    does: str                                   # one line for the reference
    runner: str                                 # "module:Class": (node, workdir, name), load(folder), start(), stop()
    files: tuple[str, ...]                      # what it reads from hosts/<node>/ (each required)
    check_config: Callable[[Path], None] | None = None   # hosts/<node>/ checked before anything starts

    def make(self, node: PeerNode, workdir: Path, name: str) -> Server:
        module, _, cls = self.runner.partition(":")
        return getattr(importlib.import_module(module, __package__), cls)(node, workdir, name)


SERVICES: dict[str, Service] = {s.name: s for s in (
    Service("freeradius", "FreeRADIUS", "FreeRADIUS 3.2 (Debian's `freeradius`), the RADIUS server of auth = "
            "eap-radius gateways: `clients.conf` (the gateways and their secrets) and `users` (files-module "
            "syntax, e.g. `carol Cleartext-Password := \"...\"` with Framed-IP-Address); optionally `certs/` "
            "(server.pem, server.key, ca.pem) for EAP-TTLS and EAP-TLS, instead of Debian's snakeoil certificate; files "
            "under `mods-enabled/`, `sites-enabled/` and `policy.d/` replace Debian's of that name (radius-mfa's "
            "EAP-GTC and TOTP check)",
            ".radius:FreeRadius", ("clients.conf", "users")),
    Service("listeners", "TCP listeners", "plain TCP listeners, one Python process listening on each port "
            "`ports` lists (one a line): the LAN's applications as a port scanner sees them (lateral-movement); "
            "an HTTP request gets one line back naming the node, its address and the port "
            "(`server 10.2.0.10:80`), any other connection is closed", ".listeners:Listeners", ("ports",), _ports),
    Service("nginx", "nginx", "Debian's nginx, e.g. a TLS reverse proxy in front of one application "
            "(lateral-movement): `nginx.conf` holds nginx's own `server { }` blocks, as a file of "
            "/etc/nginx/sites-enabled/ would, put by the lab inside an `http { }` that keeps nginx's pid, logs and "
            "temporary files in the run folder; relative paths in it (certificates, keys) are files of "
            "hosts/<node>/; checked with `nginx -t` before the lab starts", ".nginx:Nginx", ("nginx.conf",), _nginx),
)}


if TYPE_CHECKING:  # the servers SERVICES names (imported by name when a run needs one) are Servers
    from .listeners import Listeners
    from .nginx import Nginx
    from .radius import FreeRadius

    _servers: tuple[type[Server], ...] = (FreeRadius, Listeners, Nginx)


def known() -> str:
    return ", ".join(SOFTWARE)


def label(name: str) -> str:
    software = SOFTWARE.get(name)
    return software.label if software else name
