"""Plain TCP listeners as a service of a lab node (`services: {server: listeners}`): the
company LAN's applications as a port scanner sees them. `hosts/<node>/ports` lists one TCP
port a line (`# comments` allowed); one Python process in the node listens on each, accepts
and closes, and the lab stops it at teardown."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# accepts on every listed port and closes at once: enough for a scanner's connect
SERVER = r"""
import selectors, socket, sys
sel = selectors.DefaultSelector()
for port in sys.argv[1:]:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(port)))
    s.listen(16)
    sel.register(s, selectors.EVENT_READ)
print("listening on", " ".join(sys.argv[1:]), flush=True)
while True:
    for key, _ in sel.select():
        try:
            key.fileobj.accept()[0].close()
        except OSError:
            pass
"""


class ListenersError(RuntimeError):
    pass


def parse_ports(text: str, where: str) -> list[int]:
    ports = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if not line.isdigit() or not 1 <= int(line) <= 65535:
            raise ListenersError(f"{where}:{number}: must be a TCP port from 1 to 65535, not {line!r}")
        ports.append(int(line))
    if not ports:
        raise ListenersError(f"{where}: lists no port")
    return ports


class Listeners:
    software = "listeners"

    def __init__(self, node: Any, workdir: str | Path, name: str | None = None) -> None:
        self.node = node
        self.name = name or getattr(node, "name", "listeners")
        self.workdir = Path(workdir).absolute()
        self.log_path = self.workdir / "listeners.log"
        self.ports: list[int] = []
        self.process: subprocess.Popen | None = None

    def load(self, folder: str | Path) -> None:
        path = Path(folder) / "ports"
        self.ports = parse_ports(path.read_text(), str(path))

    def start(self, timeout: float = 10.0) -> Listeners:
        self.workdir.mkdir(parents=True, exist_ok=True)
        out = open(self.log_path, "ab")
        try:
            start = getattr(self.node, "start_process", None) or self.node.popen
            self.process = start([sys.executable, "-c", SERVER, *map(str, self.ports)],
                                 stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        finally:
            out.close()
        deadline = time.monotonic() + timeout
        while "listening on" not in self._log():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise ListenersError(f"the listeners on {self.name} did not start:\n{self._log()[-2000:]}")
            time.sleep(0.05)
        return self

    def _log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def kill(self) -> None:
        self.stop()

    def stop(self, timeout: float = 5.0) -> None:
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
