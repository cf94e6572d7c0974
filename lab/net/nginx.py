"""Debian's nginx as a service of a lab node (`services: {proxy: nginx}`): a TLS reverse proxy
in front of one application, the per-application access of lateral-movement.

`hosts/<node>/nginx.conf` holds nginx's own `server { ... }` blocks, as a file of Debian's
/etc/nginx/sites-enabled/ would; the lab puts them inside an `http { }` block of its own that
keeps every file nginx writes (pid, error and access logs, temporary files) under the run's
folder. Files the blocks name by a relative path (`ssl_certificate x509/proxy.pem;`) are
looked up in hosts/<node>/. `nginx -t` checks the whole before anything starts, its complaint
given as hosts/<node>/nginx.conf:LINE. One master and one worker process run in the node,
started through its start_process (the lab's cleanup knows them); `stop()` ends them (SIGTERM,
then SIGKILL) and removes the copy of the files, keeping the logs.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from .peers import PeerNode

NGINX = "/usr/sbin/nginx"
CONFIG = "nginx.conf"
MAIN = "ipsec-lab-main.conf"   # the lab's own main file, written beside the copy of hosts/<node>/


class NginxError(RuntimeError):
    """nginx is missing, its configuration is wrong, or it would not start; the message says what
    was seen. A mistake in the configuration has its `file` and `line` (hosts/<node>/...)."""

    def __init__(self, message: str, file: str | None = None, line: int | None = None) -> None:
        self.message, self.file, self.line = message, file, line
        where = f"{file}:{line}: " if file and line else f"{file}: " if file else ""
        super().__init__(where + message)


def check_installed(binary: str = NGINX) -> None:
    if not os.access(binary, os.X_OK):
        raise NginxError(f"nginx is missing ({binary}): apt-get install nginx (scripts/setup.sh installs it "
                         "without starting it on the host)")


def main_config(workdir: Path) -> str:
    """nginx's main file: everything it writes under `workdir`, the node's server blocks inside http."""
    return (f"daemon off;\n"
            f"worker_processes 1;\n"
            f"pid {workdir / 'nginx.pid'};\n"
            f"error_log {workdir / 'error.log'} info;\n"
            f"events {{\n    worker_connections 64;\n}}\n"
            f"http {{\n"
            f"    access_log {workdir / 'access.log'};\n"
            f"    client_body_temp_path {workdir / 'tmp' / 'body'};\n"
            f"    proxy_temp_path {workdir / 'tmp' / 'proxy'};\n"
            f"    fastcgi_temp_path {workdir / 'tmp' / 'fastcgi'};\n"
            f"    uwsgi_temp_path {workdir / 'tmp' / 'uwsgi'};\n"
            f"    scgi_temp_path {workdir / 'tmp' / 'scgi'};\n"
            f"    include {workdir / 'conf' / CONFIG};\n"
            f"}}\n")


def _copy(folder: Path, workdir: Path) -> None:
    conf = workdir / "conf"
    if conf.exists():
        shutil.rmtree(conf)
    shutil.copytree(folder, conf)
    (workdir / "tmp").mkdir(parents=True, exist_ok=True)
    (conf / MAIN).write_text(main_config(workdir))


def explain(output: str, copy: Path, folder: Path) -> NginxError:
    """nginx's complaint with the copy's paths turned back into hosts/<node>/'s, its file and line apart."""
    lines = [line for line in output.splitlines() if "[emerg]" in line or "[crit]" in line] or output.splitlines()
    text = (lines[-1] if lines else output).strip()
    text = re.sub(r"^nginx: \[\w+\] ", "", text).replace(str(copy), str(folder))
    where = re.search(r" in (\S+):(\d+)$", text)
    if where:
        return NginxError(text[:where.start()], where.group(1), int(where.group(2)))
    named = re.search(r'"([^"]+)"', text)
    if named and named.group(1).startswith(str(folder) + "/"):
        # a file it could not open (a certificate, a key): nginx gives no line, the line naming it is ours
        text = text.split(" (", 1)[0]
        relative = named.group(1)[len(str(folder)) + 1:]
        conf = folder / CONFIG
        for number, line in enumerate(conf.read_text().splitlines(), 1):
            if relative in line.split("#", 1)[0]:
                return NginxError(text, str(conf), number)
    return NginxError(text, str(folder / CONFIG))


def check_config(folder: Path, binary: str = NGINX) -> None:
    """`nginx -t` on hosts/<node>/ as the lab will run it (no socket is opened); NginxError
    `FILE:LINE: what` if nginx refuses it."""
    check_installed(binary)
    folder = Path(folder).absolute()
    with tempfile.TemporaryDirectory(prefix="ipsec-lab-nginx-") as tmp:
        workdir = Path(tmp)
        _copy(folder, workdir)
        argv = [binary, "-t", "-q", "-p", str(workdir), "-e", str(workdir / "error.log"),
                "-c", str(workdir / "conf" / MAIN)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise explain(done.stderr + done.stdout, workdir / "conf", folder)


class Nginx:
    """One nginx (master and one worker) in `node`, its files under `workdir`."""

    software = "nginx"

    def __init__(self, node: PeerNode, workdir: str | Path, name: str | None = None, *, binary: str = NGINX,
                 start_timeout: float = 10.0) -> None:
        self.node = node
        self.name = name or getattr(node, "name", "nginx")
        self.workdir = Path(workdir).absolute()
        self.binary = binary
        self.start_timeout = start_timeout
        self.folder: Path | None = None
        self.log_path = self.workdir / "error.log"
        self.process: subprocess.Popen | None = None

    def load(self, folder: str | Path) -> None:
        """hosts/<node>/: its nginx.conf and the files it names, checked by `nginx -t`."""
        self.folder = Path(folder).absolute()
        check_config(self.folder, self.binary)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> Nginx:
        """nginx in the node; returns once its master has written its pid file, NginxError otherwise."""
        if self.folder is None:
            raise NginxError(f"nginx on {self.name}: no configuration loaded")
        check_installed(self.binary)
        self.workdir.mkdir(parents=True, exist_ok=True)
        _copy(self.folder, self.workdir)
        pid_file = self.workdir / "nginx.pid"
        pid_file.unlink(missing_ok=True)
        out = open(self.workdir / "nginx.out", "ab")
        try:
            start = getattr(self.node, "start_process", None) or self.node.popen
            argv = [self.binary, "-p", str(self.workdir), "-e", str(self.log_path),
                    "-c", str(self.workdir / "conf" / MAIN)]
            self.process = start(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        finally:
            out.close()
        deadline = time.monotonic() + self.start_timeout
        while not self._pids():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise NginxError(f"nginx on {self.name} did not start:\n{self.log_tail()}")
            time.sleep(0.05)
        return self

    def log_tail(self, chars: int = 2000) -> str:
        text = ""
        for name in ("nginx.out", "error.log"):
            try:
                text += (self.workdir / name).read_text(errors="replace")
            except FileNotFoundError:
                pass
        return text[-chars:]

    def _pids(self) -> list[int]:
        """The master (from its pid file) and its workers (its children)."""
        try:
            master = int((self.workdir / "nginx.pid").read_text().strip())
        except (FileNotFoundError, ValueError):
            return []
        pids = [master] if Path(f"/proc/{master}").exists() else []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == master:
                    pids.append(int(entry.name))
        return pids

    def _signal(self, pids: list[int], signum: int) -> None:
        for pid in pids:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        self.stop(timeout=0)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM to the master (nginx's fast shutdown), wait, SIGKILL to whatever is left; the
        copy of hosts/<node>/ goes (the key with it), the logs stay for the run folder."""
        proc, self.process = self.process, None
        try:
            pids = self._pids()
            self._signal(pids[:1], signal.SIGTERM)
            if proc is not None and proc.poll() is None:
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
            deadline = time.monotonic() + timeout
            while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
                time.sleep(0.05)
            self._signal(pids, signal.SIGKILL)
        finally:
            shutil.rmtree(self.workdir / "conf", ignore_errors=True)
            shutil.rmtree(self.workdir / "tmp", ignore_errors=True)
