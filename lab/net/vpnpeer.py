"""What the peers of gateway software without IKE SAs share (WireGuard so far):
their files in a working folder, one daemon process in the node (started with the lab's
tracking, stopped by SIGTERM then SIGKILL), its log, commands run in the node, and the
tunnel view (lab.net.peers.TunnelInfo) instead of SAs.

For these, `initiate()` brings the tunnel up and waits for its handshake, `terminate()` takes it
down; `list_sas()` is empty and `rekey()` is refused (each rekeys by itself).
"""
from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, Self

from .peers import IkeSaInfo, Peer, PeerError, PeerNode, TunnelInfo

_RUNNING: weakref.WeakSet[VpnPeer] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for peer in list(_RUNNING):
        peer.stop()


class VpnPeer(Peer):
    """A daemon of one of the non-IKE kinds in `node`, its files under `workdir`: conf/ (the
    host folder as given), the daemon's log, its sockets."""

    software = ""
    config_names: tuple[str, ...] = ()      # the configuration files it reads from hosts/<node>/
    binary = ""                             # for the error when it is missing
    package = ""

    def __init__(self, node: PeerNode, workdir: str | os.PathLike, name: str | None = None, *,
                 start_timeout: float = 15.0) -> None:
        self.node = node
        self.name = name or str(node)
        self.workdir = Path(workdir).absolute()
        self.start_timeout = start_timeout
        self.process: subprocess.Popen | None = None
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.confdir = self.workdir / "conf"
        self.confdir.mkdir(exist_ok=True)
        self.config_name = self.config_names[0] if self.config_names else ""

    swanctl_dir = property(lambda self: self.confdir)
    log_path = property(lambda self: self.workdir / f"{self.software}.log")

    # ------------------------------------------------------------ files

    def load(self, folder: str | Path) -> None:
        """Copy the host folder into conf/ (certificates, keys, password files) and read its
        configuration file; a running daemon is restarted with it."""
        folder = Path(folder)
        found = [name for name in self.config_names if (folder / name).exists()]
        if not found:
            raise PeerError(f"{folder} has none of {', '.join(self.config_names)}")
        for item in folder.iterdir():
            target = self.confdir / item.name
            if item.is_dir():
                shutil.copytree(item, target, dirs_exist_ok=True)
            else:
                shutil.copy2(item, target)
        self.config_name = found[0]
        self.write_config((folder / found[0]).read_text())
        if self.running:
            self.reload()

    @property
    def config_path(self) -> Path:
        return self.confdir / self.config_name

    def write_config(self, text: str) -> None:
        self.config_path.write_text(text)
        os.chmod(self.config_path, 0o600)
        self.parse(text)

    def parse(self, text: str) -> Any:
        """Read the configuration (a ConfigError names file and line)."""
        raise NotImplementedError

    def reload(self) -> None:
        self.stop()
        self.start()

    # ------------------------------------------------------------ the process

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check_installed(self) -> None:
        if shutil.which(self.binary) is None:
            raise PeerError(f"{self.binary} is not installed: apt-get install --no-install-recommends {self.package} "
                            "(scripts/setup.sh does)")
        if os.geteuid() != 0:
            raise PeerError(f"running {self.binary} in a network namespace needs root: run this as root")

    def spawn(self, argv: list[str], env: dict[str, str] | None = None, cwd: str | None = None,
              stdin: Any = subprocess.DEVNULL) -> subprocess.Popen:
        """The daemon, in the node, known to the lab; its output appended to its log."""
        self.check_installed()
        start = getattr(self.node, "start_process", None) or self.node.popen
        with open(self.log_path, "ab") as log:
            self.process = start(argv, stdin=stdin, stdout=log, stderr=subprocess.STDOUT,
                                 env=dict(os.environ, **(env or {})), cwd=cwd or str(self.workdir))
        _RUNNING.add(self)
        return self.process

    def wait_until(self, ready: Callable[[], object], what: str, timeout: float | None = None) -> None:
        """Poll `ready()` until it is true; PeerError (with the log's end) if the daemon exits or
        `timeout` passes (then the daemon is stopped)."""
        deadline = time.monotonic() + (self.start_timeout if timeout is None else timeout)
        while True:
            if self.process is not None and self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                self.cleanup()
                raise PeerError(f"{self.binary} on {self.name} exited with status {code} while {what}:\n"
                                f"{self.log_tail()}")
            if ready():
                return
            if time.monotonic() > deadline:
                self.stop()
                raise PeerError(f"{self.binary} on {self.name}: timed out while {what}:\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the daemon, wait, SIGKILL if it must; then remove what it leaves (cleanup)."""
        proc, self.process = self.process, None
        _RUNNING.discard(self)
        if proc is not None and proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc is not None:
            self.cleanup()

    def kill(self) -> None:
        super().kill()
        _RUNNING.discard(self)

    def cleanup(self) -> None:
        """Remove what the daemon may leave behind when it dies (sockets, interfaces)."""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ commands in the node

    def command(self, argv: list[str], input: str | None = None, timeout: float = 15.0,
                check: bool = True) -> subprocess.CompletedProcess:
        """A command in the node (its network and mount namespaces); PeerError if it fails."""
        proc = self.node.popen(argv, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = proc.communicate(input.encode() if input is not None else None, timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise PeerError(f"{' '.join(argv)} on {self.name} did not finish within {timeout:g} s") from None
        result = subprocess.CompletedProcess(argv, proc.returncode, out.decode(errors="replace"),
                                             err.decode(errors="replace"))
        if check and result.returncode != 0:
            raise PeerError(f"{' '.join(argv)} on {self.name} failed ({result.returncode}): "
                            f"{(result.stderr or result.stdout).strip()}")
        return result

    def link_stats(self, interface: str) -> dict[str, int]:
        """The interface's counters (rx/tx bytes and packets), or {} if it does not exist."""
        import json

        result = self.command(["ip", "-s", "-j", "link", "show", "dev", interface], check=False)
        if result.returncode != 0:
            return {}
        try:
            stats = json.loads(result.stdout)[0]["stats64"]
        except (ValueError, IndexError, KeyError):
            return {}
        return {"rx_bytes": stats["rx"]["bytes"], "rx_packets": stats["rx"]["packets"],
                "tx_bytes": stats["tx"]["bytes"], "tx_packets": stats["tx"]["packets"]}

    def link_up(self, interface: str) -> bool:
        result = self.command(["ip", "-o", "link", "show", "dev", interface], check=False)
        return result.returncode == 0 and ",UP" in result.stdout

    # ------------------------------------------------------------ the Peer interface

    def list_sas(self) -> list[IkeSaInfo]:
        return []

    def rekey(self, child: str | None = None, ike: str | None = None) -> NoReturn:
        raise PeerError(f"{self.name} runs {self.software}, which has no IKE or CHILD_SAs to rekey "
                        "(it rekeys by itself)")

    def list_tunnels(self) -> list[TunnelInfo]:
        raise NotImplementedError

    def counters(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for tunnel in self.list_tunnels() if self.running else []:
            for key in ("bytes_in", "bytes_out", "packets_in", "packets_out"):
                total[key] = total.get(key, 0) + getattr(tunnel, key)
        return total

    def log_tail(self, lines: int = 25) -> str:
        try:
            tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return f"({self.binary} wrote no log)"
        return "\n".join(tail) or f"({self.binary} wrote no log)"

    def run_logs(self) -> dict[str, Path]:
        return {f"{self.name}-{self.software}.log": self.log_path}
