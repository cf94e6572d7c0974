"""FreeRADIUS 3.2 (Debian's `freeradius`) as a service of a lab node: the RADIUS server that
EAP-RADIUS gateways ask (RFC 2865, RFC 3579).

`FreeRadius(node, workdir, name)` copies Debian's /etc/freeradius/3.0 to workdir/raddb, puts
its log, run and accounting directories under workdir (nothing is written outside it), runs as
root inside the node's namespace (the copied files keep their owner), and adds from a
hosts/<node>/ folder or from arguments: `clients.conf` (the gateways and their shared secrets)
and `users` (FreeRADIUS's files-module syntax: `carol Cleartext-Password := "..."` and reply
attributes such as Framed-IP-Address and Class), and files under mods-enabled/, sites-enabled/
and policy.d/ that replace Debian's of the same name (radius-mfa: EAP-GTC and the TOTP check).
`start()` waits for "Ready to process requests"; `stop()` ends radiusd (SIGTERM, then SIGKILL)
and removes raddb/, keeping the log; the process is started through the node's start_process,
so the lab's cleanup knows it too.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Self

from .peers import PeerNode

FREERADIUS = "/usr/sbin/freeradius"
DEBIAN_RADDB = Path("/etc/freeradius/3.0")
OVERRIDES = ("mods-enabled", "sites-enabled", "policy.d")  # hosts/<node>/ folders copied over raddb/


class FreeRadiusError(RuntimeError):
    """FreeRADIUS is missing, would not start, or a wait timed out; the message says what was seen."""


def check_installed(binary: str = FREERADIUS, raddb: Path = DEBIAN_RADDB) -> None:
    if not os.access(binary, os.X_OK) or not raddb.is_dir():
        raise FreeRadiusError(f"FreeRADIUS is missing ({binary}, {raddb}): apt-get install freeradius "
                              "(scripts/setup.sh installs it without starting it on the host)")


def client_block(name: str, address: str, secret: str) -> str:
    """A clients.conf entry: who may ask (an address or prefix) and the shared secret
    (RFC 2865 §3: the secret keys the authenticators)."""
    return f'client {name} {{\n\tipaddr = {address}\n\tsecret = "{secret}"\n\trequire_message_authenticator = yes\n}}\n'


class FreeRadius:
    """One radiusd in `node`, its files under `workdir`; `port` its authentication port
    (accounting listens on port + 1, RFC 2866 §3)."""

    software = "freeradius"

    def __init__(self, node: PeerNode, workdir: str | os.PathLike, name: str | None = None, *, port: int = 1812,
                 binary: str = FREERADIUS, start_timeout: float = 20.0) -> None:
        self.node = node
        self.name = name or getattr(node, "name", "radius")
        self.workdir = Path(workdir).absolute()
        self.raddb = self.workdir / "raddb"
        self.log_path = self.workdir / "radiusd.log"
        self.port = port
        self.binary = binary
        self.start_timeout = start_timeout
        self.process: subprocess.Popen | None = None

    # -- files ---------------------------------------------------------------------

    def prepare(self) -> None:
        """raddb/ as Debian ships it, with our directories and without the switch to the
        freerad user (the copies belong to root)."""
        check_installed(self.binary)
        if self.raddb.exists():
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        shutil.copytree(DEBIAN_RADDB, self.raddb, symlinks=True)
        for sub in ("log", "run"):
            (self.workdir / sub).mkdir(exist_ok=True)
        conf = self.raddb / "radiusd.conf"
        lines = []
        for line in conf.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith(("user = ", "group = ")):
                line = "#" + line
            elif stripped.startswith("logdir = "):
                line = f"logdir = {self.workdir / 'log'}"
            elif stripped.startswith("run_dir = "):
                line = f"run_dir = {self.workdir / 'run'}"
            lines.append(line)
        conf.write_text("\n".join(lines) + "\n")
        if self.port != 1812:
            self._move_ports()
        # only the gateways we name may ask: Debian's localhost client stays for radtest
        (self.raddb / "clients.conf").write_text(client_block("localhost", "127.0.0.1", "testing123"))

    def _move_ports(self) -> None:
        """Another port than 1812 (a second server in the same node): the default site's
        listen sections on `port` (auth) and port + 1 (acct), the inner tunnel's 127.0.0.1
        listener off 18120. (radiusd -i/-p would listen outside the default site, which
        then answers nothing but Access-Reject.)"""
        site = self.raddb / "sites-enabled" / "default"
        blocks = site.read_text().split("\nlisten {")
        for i, block in enumerate(blocks[1:], 1):
            kind = "acct" if "\ttype = acct" in block.split("\n}")[0] else "auth"
            port = self.port + 1 if kind == "acct" else self.port
            blocks[i] = block.replace("\tport = 0", f"\tport = {port}", 1)
        site.write_text("\nlisten {".join(blocks))
        inner = self.raddb / "sites-enabled" / "inner-tunnel"
        inner.write_text(inner.read_text().replace("port = 18120", f"port = {20000 + self.port % 10000}"))

    def add_clients(self, text: str) -> None:
        self.prepare()
        with open(self.raddb / "clients.conf", "a") as f:
            f.write(text)

    def add_client(self, name: str, address: str, secret: str) -> None:
        self.add_clients(client_block(name, address, secret))

    def set_users(self, text: str) -> None:
        """The files module's users (mods-config/files/authorize), ours before Debian's examples."""
        self.prepare()
        users = self.raddb / "mods-config" / "files" / "authorize"
        users.write_text(text.rstrip() + "\n\n" + users.read_text())

    def set_tls(self, certificate: bytes, key: bytes, ca: bytes) -> None:
        """The certificate (PEM, with any intermediates after it), key and CA the eap module's
        TLS methods (EAP-TLS, EAP-TTLS, PEAP) use, instead of Debian's snakeoil certificate: a
        client checks the server's certificate against the lab CA (RFC 5281 §7.2)."""
        self.prepare()
        folder = self.raddb / "certs" / "lab"
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in (("server.pem", certificate), ("server.key", key), ("ca.pem", ca)):
            (folder / name).write_bytes(data)
            os.chmod(folder / name, 0o600)
        eap = self.raddb / "mods-available" / "eap"
        lines, in_tls = [], False
        for line in eap.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith("tls-config tls-common {"):
                in_tls = True
            elif in_tls and stripped == "}" and line.startswith("\t}"):
                in_tls = False
            if in_tls:
                key_name = stripped.split("=", 1)[0].strip()
                values = {"certificate_file": folder / "server.pem", "private_key_file": folder / "server.key",
                          "ca_file": folder / "ca.pem"}
                if key_name in values:
                    line = f"\t\t{key_name} = {values[key_name]}"
                elif key_name == "private_key_password":
                    line = "#" + line  # our key has none
            lines.append(line)
        eap.write_text("\n".join(lines) + "\n")

    def load(self, folder: str | Path) -> None:
        """A hosts/<node>/ folder: its clients.conf and users, certs/ with server.pem, server.key
        and ca.pem for the TLS-based EAP methods (any of them may be missing), and the files under
        its mods-enabled/, sites-enabled/ and policy.d/, each in place of Debian's file of that
        name (e.g. radius-mfa's eap module, TOTP and virtual server)."""
        folder = Path(folder)
        if (folder / "clients.conf").exists():
            self.add_clients((folder / "clients.conf").read_text())
        if (folder / "users").exists():
            self.set_users((folder / "users").read_text())
        certs = folder / "certs"
        if (certs / "server.pem").exists():
            self.set_tls(*((certs / name).read_bytes() for name in ("server.pem", "server.key", "ca.pem")))
        for sub in OVERRIDES:
            for path in sorted((folder / sub).glob("*")) if (folder / sub).is_dir() else ():
                if path.is_file():
                    self.put(f"{sub}/{path.name}", path.read_text())

    def put(self, name: str, text: str) -> None:
        """raddb/<name> (e.g. mods-enabled/eap) with `text`, in place of Debian's file or link."""
        self.prepare()
        target = self.raddb / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.exists():
            target.unlink()
        target.write_text(text)

    # -- process -------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> FreeRadius:
        """radiusd -X in the node; returns once it is ready, FreeRadiusError otherwise."""
        if self.running:
            return self
        self.prepare()
        argv = [self.binary, "-X", "-d", str(self.raddb)]
        out = open(self.log_path, "ab")
        try:
            start = getattr(self.node, "start_process", None) or self.node.popen
            self.process = start(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        finally:
            out.close()
        deadline = time.monotonic() + self.start_timeout
        while "Ready to process requests" not in self.log_text():
            if self.process.poll() is not None:
                code, self.process = self.process.returncode, None
                raise FreeRadiusError(f"FreeRADIUS on {self.name} exited with status {code} while starting:\n"
                                      f"{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise FreeRadiusError(f"FreeRADIUS on {self.name} not ready within {self.start_timeout:g} s:\n"
                                      f"{self.log_tail()}")
            time.sleep(0.05)
        return self

    def radiusd_pids(self) -> list[int]:
        """The radiusd processes of this raddb/. Not only `process`: the node's launcher (mnexec
        -d) may fork before it runs radiusd, and then `process` is the launcher, long gone."""
        wanted = [self.binary, "-X", "-d", str(self.raddb)]
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
                except OSError:
                    continue
                if argv == wanted:
                    pids.append(int(entry.name))
        return pids

    def _signal(self, signum: int) -> None:
        for pid in self.radiusd_pids():
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        """End radiusd at once (the server that died in radius-failover)."""
        self._signal(signal.SIGKILL)
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        self.process = None

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, wait, SIGKILL; then raddb/ goes (the log stays for the run folder)."""
        proc = self.process
        try:
            self._signal(signal.SIGTERM)
            if proc is not None and proc.poll() is None:
                try:
                    os.kill(proc.pid, signal.SIGTERM)
                    proc.wait(timeout)
                except ProcessLookupError:
                    pass
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
            deadline = time.monotonic() + timeout
            while self.radiusd_pids() and time.monotonic() < deadline:
                time.sleep(0.05)
            self._signal(signal.SIGKILL)
        finally:
            self.process = None
            shutil.rmtree(self.raddb, ignore_errors=True)
            for sub in ("run",):
                shutil.rmtree(self.workdir / sub, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 25) -> str:
        tail = self.log_text().splitlines()[-lines:]
        return "\n".join(tail) or "(FreeRADIUS wrote no log)"
