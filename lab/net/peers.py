"""One interface for every kind of gateway software in the lab (the kinds: lab.net.software):
our daemon (`ipsec-lab daemon`, lab.net.gateway.OurGateway), strongSwan's charon
(lab.net.strongswan.StrongSwan, driven through VICI), WireGuard (lab.net.wireguard.WireGuard:
wireguard-go and wg), OpenVPN (lab.net.openvpn) and OpenConnect (lab.net.openconnect: ocserv and
openconnect).

Each is a `Peer`: `start()`, `stop()`, `kill()`, `load(folder)` (a hosts/<node>/ folder: its
configuration file and its x509/, x509ca/, private/ ...), `initiate()`, `terminate()`,
`rekey()`, `list_sas()` as the same typed records (IkeSaInfo with its ChildSaInfo),
`list_tunnels()` as TunnelInfo records (every kind: for the IKE daemons one per IKE SA; for
software without IKE SAs, `initiate()` and `terminate()` bring its tunnel up and down),
`counters()`, `wait_for(condition, timeout)` instead of sleeps; and what the run folder takes
from it: `run_logs()`, `key_tables()`, `trace_file()`, `shell_exports()`.
"""
from __future__ import annotations

import shutil
import subprocess
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Self


class PeerError(RuntimeError):
    """A peer command failed or a wait timed out; the message says what was seen."""


@dataclass(frozen=True)
class ChildSaInfo:
    name: str
    unique_id: int
    state: str                  # INSTALLED, REKEYING, REKEYED, DELETING, ...
    protocol: str               # ESP or AH
    mode: str                   # TUNNEL or TRANSPORT
    encap: bool                 # ESP in UDP (RFC 3948)
    spi_in: str                 # 8 hex digits
    spi_out: str
    algorithms: str             # proposal keywords, e.g. aes128gcm16 or aes128-sha256-modp2048
    local_ts: tuple[str, ...]
    remote_ts: tuple[str, ...]
    bytes_in: int = 0
    bytes_out: int = 0
    packets_in: int = 0
    packets_out: int = 0


@dataclass(frozen=True)
class IkeSaInfo:
    name: str
    unique_id: int
    state: str                  # CONNECTING, ESTABLISHED, REKEYING, REKEYED, DELETING, ...
    initiator: bool
    spi_i: str                  # 16 hex digits
    spi_r: str
    local_host: str
    local_port: int
    remote_host: str
    remote_port: int
    local_id: str
    remote_id: str
    nat_local: bool             # we are behind a NAT
    nat_remote: bool            # the peer is behind a NAT
    algorithms: str             # e.g. aes128gcm16-prfsha256-x25519
    local_vips: tuple[str, ...] = ()   # virtual IPs we were given
    remote_vips: tuple[str, ...] = ()  # virtual IPs we handed to the peer
    children: tuple[ChildSaInfo, ...] = field(default_factory=tuple)

    def child(self, name: str) -> ChildSaInfo | None:
        return next((c for c in self.children if c.name == name and c.state == "INSTALLED"), None)


@dataclass(frozen=True)
class TunnelInfo:
    """One tunnel as any kind of gateway software reports it: for an IKE daemon an IKE SA with
    its CHILD_SAs' counters summed, for WireGuard a peer of the interface."""

    name: str                   # the IKE SA's name, or WireGuard's interface:peer
    state: str                  # UP, CONNECTING or DOWN
    local_host: str = ""        # this side's outer address and port ("" and 0: not known)
    local_port: int = 0
    remote_host: str = ""       # the other side's outer address and port, as this side sees it
    remote_port: int = 0
    handshake_age: float | None = None   # seconds since the last handshake; None: none yet
    transport: str = "udp"      # the outer packets: udp, tcp, or esp (ESP as IP protocol 50)
    inner: tuple[str, ...] = () # networks inside the tunnel (remote selectors and virtual IPs, allowed IPs)
    bytes_in: int = 0
    bytes_out: int = 0
    packets_in: int = 0
    packets_out: int = 0

    @property
    def remote(self) -> str:
        return f"{self.remote_host}:{self.remote_port}" if self.remote_host else "(no endpoint)"


def describe_tunnels(tunnels: list[TunnelInfo]) -> str:
    """One line per tunnel, for messages and reports."""
    if not tunnels:
        return "no tunnel"
    parts = []
    for t in tunnels:
        age = "no handshake" if t.handshake_age is None else f"handshake {t.handshake_age:.0f} s ago"
        parts.append(f"{t.name} {t.state} {t.transport} {t.local_host or '*'}:{t.local_port} -> {t.remote}, {age}, "
                     f"{t.packets_in}/{t.packets_out} packets in/out")
    return "; ".join(parts)


def tunnels_of(sas: Iterable[IkeSaInfo]) -> list[TunnelInfo]:
    """An IKE daemon's SAs as tunnels: one per IKE SA, its CHILD_SAs' counters summed."""
    out = []
    for sa in sas:
        children = [c for c in sa.children if c.state == "INSTALLED"]
        state = "UP" if sa.state == "ESTABLISHED" and children else "CONNECTING" if sa.state != "DELETING" else "DOWN"
        out.append(TunnelInfo(
            name=sa.name, state=state, local_host=sa.local_host, local_port=sa.local_port,
            remote_host=sa.remote_host, remote_port=sa.remote_port,
            transport="udp" if sa.remote_port in (500, 4500) or any(c.encap for c in children) else "esp",
            inner=tuple(ts for c in children for ts in c.remote_ts) + sa.local_vips,
            bytes_in=sum(c.bytes_in for c in children), bytes_out=sum(c.bytes_out for c in children),
            packets_in=sum(c.packets_in for c in children), packets_out=sum(c.packets_out for c in children)))
    return out


def established(sas: Iterable[IkeSaInfo], ike: str | None = None, child: str | None = None) -> bool:
    """An ESTABLISHED IKE SA (named `ike`, if given) with an INSTALLED CHILD_SA `child` (if given)."""
    return any(sa.state == "ESTABLISHED" and (ike is None or sa.name == ike)
               and (child is None or sa.child(child) is not None) for sa in sas)


def installed_children(sas: Iterable[IkeSaInfo], child: str | None = None) -> list[ChildSaInfo]:
    return [c for sa in sas for c in sa.children if c.state == "INSTALLED" and (child is None or c.name == child)]


class PeerNode(Protocol):
    """What a peer (or a service) uses of the node it runs in: lab.net.nodes.LabNode, a Mininet
    node (Mininet has no types), or a stand-in in tests. Its `start_process` and `fork_process`
    (LabNode's), `name` and `privateDirs` are used where the node has them (getattr)."""

    def popen(self, argv: list[str], /, **options: Any) -> subprocess.Popen[bytes]: ...


class DaemonProcess(Protocol):
    """What a peer uses of its daemon's process: a subprocess.Popen, or a gateway forked by the
    lab's fork server (lab.net.forkserver.ForkedProcess, which offers the same)."""

    @property
    def pid(self) -> int: ...
    @property
    def returncode(self) -> int | None: ...
    def poll(self) -> int | None: ...
    def wait(self, timeout: float | None = None) -> int: ...
    def send_signal(self, sig: int) -> None: ...
    def terminate(self) -> None: ...
    def kill(self) -> None: ...


class Peer(ABC):
    """What every kind of gateway software offers; each subclass implements the abstract
    commands (a kind that misses one cannot be made: TypeError naming it)."""

    software = ""
    node: PeerNode
    name: str
    workdir: Path
    swanctl_dir: Path
    log_path: Path
    process: DaemonProcess | None = None

    def load(self, folder: str | Path) -> None:
        """Copy a host folder (swanctl.conf and its certificate folders) into place; a running
        strongSwan reloads it, our daemon reads it when it starts."""
        folder = Path(folder)
        conf = folder / "swanctl.conf"
        if not conf.exists():
            raise PeerError(f"{folder} has no swanctl.conf")
        self.swanctl_dir.mkdir(parents=True, exist_ok=True)  # a loose file (another .conf) may come first
        for item in folder.iterdir():
            target = self.swanctl_dir / item.name
            if item.is_dir():
                shutil.copytree(item, target, dirs_exist_ok=True)
            elif item.name != "swanctl.conf":
                shutil.copy2(item, target)
        self.write_config(conf.read_text())
        if self.running:
            self.reload()

    # each kind of software implements these
    @abstractmethod
    def write_config(self, text: str) -> object: ...
    @abstractmethod
    def reload(self) -> None: ...
    @property
    @abstractmethod
    def running(self) -> bool: ...
    @abstractmethod
    def start(self) -> Self: ...
    @abstractmethod
    def stop(self) -> None: ...
    @abstractmethod
    def initiate(self, child: str | None = None, ike: str | None = None, timeout: float = 20) -> object: ...
    @abstractmethod
    def terminate(self, ike: str | None = None, child: str | None = None) -> object: ...
    @abstractmethod
    def rekey(self, child: str | None = None, ike: str | None = None) -> object: ...
    @abstractmethod
    def list_sas(self) -> list[IkeSaInfo]: ...

    def list_tunnels(self) -> list[TunnelInfo]:
        """The tunnels as TunnelInfo records; an IKE daemon's are its IKE SAs (tunnels_of)."""
        return tunnels_of(self.list_sas())

    @abstractmethod
    def counters(self) -> dict[str, int]: ...
    @abstractmethod
    def log_tail(self, lines: int = 25) -> str: ...

    def kill(self) -> None:
        """End the process at once, with no goodbye to its peers (a crash)."""
        process = self.process
        if process is None or process.poll() is not None:
            raise PeerError(f"{self.name} is not running")
        process.kill()
        process.wait(5)
        self.process = None

    def set_options(self, options: tuple[str, ...]) -> None:
        """Daemon options for the next start."""
        raise PeerError(f"{self.name} runs {self.software}: daemon options are for our daemon only")

    def observe(self) -> None:  # noqa: B027  (a hook: most kinds have nothing to remember)
        """Called after every step and before teardown: remember what the run folder will need
        later and cannot read afterwards (strongSwan: its SAs' SPIs)."""

    def run_logs(self) -> dict[str, Path]:
        """The files for the run folder's logs/: name there -> file here."""
        return {f"{self.name}.log": self.log_path}

    def key_tables(self) -> dict[str, list[str]]:
        """Wireshark's ikev2_decryption_table and esp_sa lines for this peer's SAs so far."""
        return {}

    def trace_file(self) -> Path | None:
        """Its trace.jsonl, for software that writes one."""
        return None

    def shell_exports(self) -> dict[str, str]:
        """Environment for the node's shell, so that its own tools work in `ipsec-lab up`."""
        return {}

    def wait_for(self, condition: Callable[[list[IkeSaInfo]], bool], timeout: float = 20.0,
                 what: str = "the SAs to reach the expected state", interval: float = 0.2) -> list[IkeSaInfo]:
        """Poll list_sas() until `condition(sas)` holds; PeerError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            sas = self.list_sas()
            if condition(sas):
                return sas
            if not self.running:
                raise PeerError(f"{self.software} on {self.name} stopped while waiting for {what}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise PeerError(f"{self.name}: timed out after {timeout:g} s waiting for {what}; SAs now: "
                                f"{describe(sas)}")
            time.sleep(interval)


    def wait_for_tunnel(self, condition: Callable[[list[TunnelInfo]], bool], timeout: float = 20.0,
                        what: str = "the tunnel to come up", interval: float = 0.1) -> list[TunnelInfo]:
        """Poll list_tunnels() until `condition(tunnels)` holds; PeerError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            tunnels = self.list_tunnels()
            if condition(tunnels):
                return tunnels
            if not self.running:
                raise PeerError(f"{self.software} on {self.name} stopped while waiting for {what}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise PeerError(f"{self.name}: timed out after {timeout:g} s waiting for {what}; now: "
                                f"{describe_tunnels(tunnels)}\n{self.log_tail(8)}")
            time.sleep(interval)


def _endpoint(host: str, port: Any) -> str:
    """address:port, with an IPv6 address in brackets (RFC 3986 §3.2.2)."""
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def describe(sas: list[IkeSaInfo]) -> str:
    """One line per SA, for messages and reports."""
    if not sas:
        return "no IKE SA"
    parts = []
    for sa in sas:
        children = ", ".join(f"{c.name} {c.state} {c.spi_in}_i/{c.spi_out}_o" for c in sa.children) or "no CHILD_SA"
        nat = " behind NAT" if sa.nat_local else ""
        vips = "".join(f" vip {v}" for v in sa.local_vips) + "".join(f" gave {v}" for v in sa.remote_vips)
        parts.append(f"{sa.name} #{sa.unique_id} {sa.state} {_endpoint(sa.local_host, sa.local_port)}{nat} -> "
                     f"{_endpoint(sa.remote_host, sa.remote_port)}{vips} [{children}]")
    return "; ".join(parts)


def make_peer(software: str, node: PeerNode, workdir: Path, name: str, **options: Any) -> Peer:
    """A peer of `software` (a name of lab.net.software.SOFTWARE) on `node`, its files under `workdir`."""
    from .software import SOFTWARE

    if software not in SOFTWARE:
        raise PeerError(f"unknown gateway software {software!r} (known: {', '.join(SOFTWARE)})")
    return SOFTWARE[software].make(node, workdir, name, **options)


# A short request to a daemon (charon's VICI list-sas) must not be cut in the middle: vici's
# generator, unwound mid-message, waits for an answer that never comes. A Ctrl-C or SIGTERM that
# arrives meanwhile (lab.net.runner's handler asks `defer_interrupt`) is raised when it ends.
_deferred: list[BaseException] = []
_depth = 0


# A long request (charon's initiate or terminate, waiting up to its own timeout) is cut by a
# Ctrl-C or SIGTERM instead: its `abort` (shutting its socket) runs in the handler before the
# interrupt is raised, so that what the library does as it unwinds (vici unregisters its event
# stream and waits for the answer, or reads on to the command's end) fails at once instead of
# waiting on a stream cut in the middle of a message (a run that never ended, once in CI).
_aborts: list[Callable[[], None]] = []


def defer_interrupt(exc: BaseException) -> bool:
    """For a signal handler: True if `exc` waits until the short request under way ends; else the
    long requests under way are aborted (and the handler raises `exc`)."""
    if _depth:
        _deferred.append(exc)
        return True
    for abort in list(_aborts):
        try:
            abort()
        except OSError:
            pass
    return False


@contextmanager
def abort_on_interrupt(abort: Callable[[], None]) -> Iterator[None]:
    """Around a long request in the main thread: `abort` runs if a Ctrl-C or SIGTERM comes."""
    main = threading.current_thread() is threading.main_thread()
    if main:
        _aborts.append(abort)
    try:
        yield
    finally:
        if main:
            _aborts.remove(abort)


@contextmanager
def uninterrupted() -> Iterator[None]:
    global _depth
    main = threading.current_thread() is threading.main_thread()
    if main:
        _depth += 1
    try:
        yield
    finally:
        if main:
            _depth -= 1
            if not _depth and _deferred:
                exc = _deferred[0]
                _deferred.clear()
                raise exc
