"""Plain TCP listeners as a service of a lab node (`services: {server: listeners}`): the
company LAN's applications as a port scanner sees them. `hosts/<node>/ports` lists one TCP
port a line (`# comments` allowed); one Python process in the node listens on each. A
connection that sends an HTTP request gets one line back naming the node, its address and the
port (`server 10.2.0.10:80`), so that a request through a proxy shows which service it
reached; any other connection (a scanner's connect) is closed. The lab stops it at teardown."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from .peers import PeerNode

# answers an HTTP request with "<node> <address>:<port>", closes anything else (a scanner's connect)
SERVER = r"""
import selectors, socket, sys, time
name, ports = sys.argv[1], sys.argv[2:]
sel = selectors.DefaultSelector()
for port in ports:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(port)))
    s.listen(16)
    sel.register(s, selectors.EVENT_READ, "listen")
print("listening on", " ".join(ports), flush=True)
while True:
    now = time.monotonic()
    for key in list(sel.get_map().values()):
        if key.data != "listen" and key.data[0] < now:  # a connection that said nothing for 5 s
            sel.unregister(key.fileobj)
            key.fileobj.close()
    for key, _ in sel.select(1.0):
        try:
            if key.data == "listen":
                conn = key.fileobj.accept()[0]
                conn.setblocking(False)
                sel.register(conn, selectors.EVENT_READ, (time.monotonic() + 5, b""))
                continue
            conn, (deadline, seen) = key.fileobj, key.data
            data = conn.recv(4096)
            seen += data
            if data and b"\r\n\r\n" not in seen and len(seen) < 8192:
                sel.modify(conn, selectors.EVENT_READ, (deadline, seen))
                continue
            sel.unregister(conn)
            if seen.split(b" ", 1)[0] in (b"GET", b"HEAD", b"POST") and b" HTTP/1." in seen.split(b"\r\n", 1)[0]:
                address, port = conn.getsockname()[:2]
                body = f"{name} {address}:{port}\n".encode()
                conn.setblocking(True)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                             + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            conn.close()
        except OSError:
            if key.data != "listen":
                sel.unregister(key.fileobj)
                key.fileobj.close()
"""


class ListenersError(RuntimeError):
    """The ports file is wrong (with its `file` and `line`) or the listeners would not start."""

    def __init__(self, message: str, file: str | None = None, line: int | None = None) -> None:
        self.message, self.file, self.line = message, file, line
        where = f"{file}:{line}: " if file and line else f"{file}: " if file else ""
        super().__init__(where + message)


def parse_ports(text: str, where: str) -> list[int]:
    ports = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if not line.isdigit() or not 1 <= int(line) <= 65535:
            raise ListenersError(f"must be a TCP port from 1 to 65535, not {line!r}", where, number)
        ports.append(int(line))
    if not ports:
        raise ListenersError("lists no port", where)
    return ports


class Listeners:
    software = "listeners"

    def __init__(self, node: PeerNode, workdir: str | Path, name: str | None = None) -> None:
        self.node = node
        self.name = name or str(getattr(node, "name", "listeners"))
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
            self.process = start([sys.executable, "-c", SERVER, self.name, *map(str, self.ports)],
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
