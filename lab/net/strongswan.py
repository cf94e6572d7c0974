"""strongSwan's charon as a peer inside a Mininet host.

`StrongSwan(node, workdir)` runs /usr/lib/ipsec/charon with kernel-libipsec (userspace
ESP through a TUN device, since this kernel has no XFRM ESP) in the node's network
namespace, with its own strongswan.conf, swanctl directory and vici socket, and drives
it with swanctl. The node must have a private /var/run (Mininet `privateDirs=['/var/run']`)
because charon always writes /var/run/charon.pid.

`render_s2s_conf(...)` writes a swanctl.conf for one site-to-site connection.
"""
from __future__ import annotations

import atexit
import os
import re
import signal
import socket
import subprocess
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.conf.settings import ConfigError, parse_settings
from lab.conf.writer import render, render_s2s_conf  # noqa: F401  (render_s2s_conf moved to lab.conf; re-exported)

from . import charon_keys
from .peers import ChildSaInfo, IkeSaInfo, Peer, PeerError, PeerNode, abort_on_interrupt, uninterrupted

if TYPE_CHECKING:
    import vici

CHARON = "/usr/lib/ipsec/charon"
SWANCTL = "/usr/sbin/swanctl"
PLUGIN_DIR = "/usr/lib/ipsec/plugins"

# The plugins charon loads here: kernel-libipsec (strongSwan's userspace data plane: this kernel
# has no XFRM) with kernel-netlink and socket-default, the crypto of the lab's proposals and
# certificates and their revocation (the CRLs of x509crl/), VICI, and the EAP methods; a plugin
# whose file is missing is left out and reported in `StrongSwan.missing_plugins`.
CHARON_PLUGINS = (
    "random nonce openssl aes sha1 sha2 hmac xcbc cmac gcm kdf curve25519 gmp pem pkcs1 x509 revocation pubkey "
    "kernel-libipsec kernel-netlink socket-default vici "
    "eap-identity eap-md5 eap-mschapv2 eap-gtc eap-tls eap-ttls attr updown"
).split()
# Sections of a swanctl.conf's `ipsec-lab { ... }` (which swanctl ignores) that are strongSwan's
# own plugin settings under the same names: copied into strongswan.conf's charon.plugins.
PLUGIN_SECTIONS = ("eap-ttls", "eap-radius")  # of swanctl.conf's ipsec-lab section, for strongswan.conf
REQUIRED_PLUGINS = ("random", "nonce", "kernel-libipsec", "kernel-netlink", "socket-default", "vici")
SWANCTL_PLUGINS = "random nonce openssl aes sha1 sha2 hmac gmp pem pkcs1 pkcs8 x509 pubkey".split()

# Debian package that ships each plugin file, for the error message when one is missing.
PLUGIN_PACKAGES = {
    "kernel-libipsec": "libcharon-extra-plugins",
    "openssl": "libstrongswan-standard-plugins",
    "gcm": "libstrongswan-standard-plugins",
    "curve25519": "libstrongswan-standard-plugins",
    "eap-mschapv2": "libcharon-extauth-plugins",
    "eap-gtc": "libcharon-extra-plugins",
    "eap-radius": "libcharon-extra-plugins",
    "eap-identity": "libcharon-extra-plugins",
    "eap-md5": "libcharon-extra-plugins",
    "eap-tls": "libcharon-extra-plugins",
    "eap-ttls": "libcharon-extra-plugins",
}

# charon's log subsystems (strongswan.conf(5), charon.filelog.<name>.<subsystem>).
LOG_SUBSYSTEMS = (
    "dmn mgr ike chd job cfg knl net asn enc tnc imc imv pts tls esp lib".split()
)
DEFAULT_LOG_LEVELS = {"default": 1, "ike": 2, "cfg": 1, "net": 1, "enc": 1, "knl": 1, "chd": 1}
# ike = 4 prints SK_d, SK_ai/ar, SK_ei/er and chd = 4 the ESP keys (Debian has no save-keys).
KEY_EXPORT_LOG_LEVELS = {"ike": 4, "chd": 4}

DEFAULT_PROPOSALS = ("aes128gcm16-prfsha256-x25519", "aes128-sha256-modp2048")
DEFAULT_ESP_PROPOSALS = ("aes128gcm16", "aes128-sha256")

# Which plugins can provide an algorithm keyword of a proposal string (any one suffices).
_ALGORITHM_PLUGINS = (
    (re.compile(r"gcm"), ("gcm", "openssl")),
    (re.compile(r"ccm"), ("ccm", "openssl")),
    (re.compile(r"chacha20poly1305"), ("chapoly", "openssl")),
    (re.compile(r"^(x25519|curve25519)$"), ("curve25519", "openssl")),
    (re.compile(r"^(x448|curve448)$"), ("openssl",)),
    (re.compile(r"^(ecp|prime)\d+"), ("openssl",)),
    (re.compile(r"^modp\d+"), ("gmp", "openssl")),
    (re.compile(r"^aes\d+$"), ("aes", "openssl")),
    (re.compile(r"^(prf)?aesxcbc$"), ("xcbc",)),
    (re.compile(r"^(prf)?aescmac$"), ("cmac",)),
)

MAX_UNIX_PATH = 107
# The directories `swanctl --load-all` reads below SWANCTL_DIR (swanctl(8), FILES).
SWANCTL_SUBDIRS = "x509 x509ca x509ocsp x509aa x509ac x509crl pubkey private rsa ecdsa bliss pkcs8 pkcs12".split()
# charon log lines that have a known cause, and what to do about it.
LOG_HINTS = (
    ("charon already running", "only one charon can run per node (it owns the node's /var/run/charon.pid)"),
    ("unable to install IPsec policies", "the gateway needs an address inside its own local_ts (LAN or loopback alias)"),
    ("unable to install source route", "the gateway needs an address inside its own local_ts (LAN or loopback alias)"),
    ("could not create any sockets", "UDP 500/4500 are taken in this node (another IKE daemon?)"),
    ("NO_PROPOSAL_CHOSEN", "the peer had no matching connection or proposal (was its config loaded first?)"),
    ("AUTHENTICATION_FAILED", "the peers' ids or PSK do not match"),
)


class StrongSwanError(PeerError):
    """Something about running charon or swanctl went wrong; the message says what to do."""


_RUNNING: weakref.WeakSet[StrongSwan] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for instance in list(_RUNNING):
        instance.stop()


def available_plugins(plugin_dir: str = PLUGIN_DIR) -> set[str]:
    """Names of the charon plugins whose shared objects are installed."""
    try:
        names = os.listdir(plugin_dir)
    except FileNotFoundError:
        return set()
    return {
        n[len("libstrongswan-") : -len(".so")]
        for n in names
        if n.startswith("libstrongswan-") and n.endswith(".so")
    }


def check_installed(charon: str = CHARON, swanctl: str = SWANCTL, plugin_dir: str = PLUGIN_DIR) -> None:
    """Raise StrongSwanError with the apt-get line to run if charon, swanctl or a required
    plugin is missing, or if we are not root."""
    if not os.path.exists(charon):
        raise StrongSwanError(
            f"strongSwan's charon is not installed ({charon} missing): "
            "apt-get install strongswan-charon libcharon-extra-plugins"
        )
    if not os.path.exists(swanctl):
        raise StrongSwanError(
            f"strongSwan's swanctl is not installed ({swanctl} missing): apt-get install strongswan-swanctl"
        )
    have = available_plugins(plugin_dir)
    missing = [p for p in REQUIRED_PLUGINS if p not in have]
    if missing:
        packages = sorted({PLUGIN_PACKAGES.get(p, "strongswan-libcharon") for p in missing})
        raise StrongSwanError(
            f"strongSwan plugin(s) {', '.join(missing)} missing in {plugin_dir}: "
            f"apt-get install {' '.join(packages)}"
        )
    if os.geteuid() != 0:
        raise StrongSwanError("running strongSwan in a network namespace needs root: run this as root (e.g. with sudo).")


def _indented(text: str, prefix: str) -> str:
    return "".join(prefix + line + "\n" if line.strip() else "\n" for line in text.splitlines())


def plugin_settings_of(swanctl_conf: str) -> dict[str, Any]:
    """The PLUGIN_SECTIONS of a swanctl.conf's ipsec-lab section, as settings trees."""
    try:
        root, _ = parse_settings(swanctl_conf, "swanctl.conf")
    except ConfigError:
        return {}  # swanctl --load-all names the mistake
    ours = root.sections.get("ipsec-lab")
    if ours is None:
        return {}
    return {name: sub.as_tree() for name, sub in ours.sections.items() if name in PLUGIN_SECTIONS}


def render_strongswan_conf(
    vici_socket: str | os.PathLike,
    log_file: str | os.PathLike,
    log_levels: Mapping[str, int] | None = None,
    plugins: Iterable[str] = CHARON_PLUGINS,
    swanctl_plugins: Iterable[str] = SWANCTL_PLUGINS,
    plugin_settings: Mapping[str, Any] | None = None,
) -> str:
    """A strongswan.conf for one charon: monolithic plugin list, its own vici socket, a
    file log with the given levels (`{"default": 1, "ike": 2, ...}`), and `plugin_settings`
    (plugin name -> its settings tree, e.g. {"eap-ttls": {"phase2_method": "mschapv2"}})."""
    levels = dict(DEFAULT_LOG_LEVELS if log_levels is None else log_levels)
    for key in levels:
        if key != "default" and key not in LOG_SUBSYSTEMS:
            raise ValueError(f"unknown charon log subsystem {key!r}; known: default, {', '.join(LOG_SUBSYSTEMS)}")
    level_lines = "".join(f"        {k} = {int(v)}\n" for k, v in levels.items())
    uri = f"unix://{os.fspath(vici_socket)}"
    # strongswan.conf(5): a value runs to the end of its line, so one key per line.
    # the eap-radius plugin is loaded where its settings are given (our scenarios' gateways)
    plugins = list(plugins) + (["eap-radius"] if plugin_settings and "eap-radius" in plugin_settings
                               and "eap-radius" not in plugins else [])
    return (
        "charon {\n"
        "  load_modular = no\n"
        f"  load = {' '.join(plugins)}\n"
        "  plugins {\n"
        "    vici {\n"
        f"      socket = {uri}\n"
        "    }\n"
        f"{_indented(render(dict(plugin_settings or {})), '    ')}"
        "  }\n"
        "  filelog {\n"
        "    charon-log {\n"
        f"      path = {os.fspath(log_file)}\n"
        "      time_format = %Y-%m-%d %H:%M:%S\n"
        "      time_add_ms = yes\n"
        "      ike_name = yes\n"
        "      append = yes\n"  # a restarted charon (kill, restart steps) keeps what it logged before
        "      flush_line = yes\n"
        f"{level_lines}"
        "    }\n"
        "  }\n"
        "}\n"
        "swanctl {\n"
        f"  load = {' '.join(swanctl_plugins)}\n"
        f"  socket = {uri}\n"
        "}\n"
    )


def usable_proposals(proposals: Iterable[str], plugins: set[str] | None = None) -> list[str]:
    """The proposal strings whose algorithms the installed plugins can provide (GCM and
    x25519 need libstrongswan-standard-plugins); the others are left out."""
    have = available_plugins() if plugins is None else plugins
    usable = []
    for proposal in proposals:
        ok = True
        for keyword in proposal.split("-"):
            for pattern, providers in _ALGORITHM_PLUGINS:
                if pattern.search(keyword) and not have.intersection(providers):
                    ok = False
        if ok:
            usable.append(proposal)
    return usable


def _join(value: str | Sequence[str]) -> str:
    return value if isinstance(value, str) else ", ".join(value)


class StrongSwan(Peer):
    """One charon (kernel-libipsec) in a Mininet node, with its own files in `workdir`:
    strongswan.conf, swanctl/swanctl.conf, charon.vici, charon.log, charon.out.
    Commands go through VICI (the `vici` package); configs are loaded with swanctl --load-all."""

    software = "strongswan"

    def __init__(
        self,
        node: PeerNode,
        workdir: str | os.PathLike,
        name: str | None = None,
        *,
        log_levels: Mapping[str, int] | None = None,
        export_keys: bool = False,
        charon: str = CHARON,
        swanctl: str = SWANCTL,
        start_timeout: float = 15.0,
    ) -> None:
        self.node = node
        self.name = name or str(getattr(node, "name", "charon"))
        self.workdir = Path(workdir).absolute()
        self.charon = charon
        self.swanctl_bin = swanctl
        self.start_timeout = start_timeout
        levels = dict(DEFAULT_LOG_LEVELS)
        levels.update(log_levels or {})
        if export_keys:
            levels.update(KEY_EXPORT_LOG_LEVELS)
        self.log_levels = levels
        self.export_keys = export_keys
        self.conf_path = self.workdir / "strongswan.conf"
        self.swanctl_dir = self.workdir / "swanctl"
        self.vici_socket = self.workdir / "charon.vici"
        self.log_path = self.workdir / "charon.log"
        self.out_path = self.workdir / "charon.out"
        self.process: subprocess.Popen | None = None
        self.missing_plugins: list[str] = []
        self.plugin_settings: dict[str, Any] = {}  # PLUGIN_SECTIONS of the swanctl.conf written last
        self.seen_sas: dict[int, dict[str, str]] = {}  # IKE SA unique id -> VICI fields (SPIs, algorithms)

    # -- files ---------------------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["STRONGSWAN_CONF"] = self._inside(self.conf_path)
        env["SWANCTL_DIR"] = self._inside(self.swanctl_dir)
        return env

    # What a charon elsewhere (lab.net.strongswan6: in a root file system of its own) changes.
    @property
    def needs_private_run(self) -> bool:
        return True   # charon writes /var/run/charon.pid in the node's file system

    def _inside(self, path: Path) -> str:
        """`path` (below workdir) as charon and swanctl see it."""
        return str(path)

    def _plugin_dir(self) -> str:
        return os.path.join(os.path.dirname(self.charon), "plugins")

    def _check_installed(self) -> None:
        check_installed(self.charon, self.swanctl_bin, self._plugin_dir())

    def _charon_argv(self) -> list[str]:
        return [self.charon]

    def _swanctl_argv(self, args: Sequence[str]) -> list[str]:
        return [self.swanctl_bin, *args]

    def write_config(self, swanctl_conf: str, secrets: str | None = None) -> Path:
        """Write swanctl/swanctl.conf (and, if given, swanctl/conf.d/secrets.conf, which
        swanctl.conf includes); returns the swanctl.conf path. strongSwan's plugin settings in
        its ipsec-lab section (PLUGIN_SECTIONS) go into strongswan.conf: set before start."""
        self.plugin_settings = plugin_settings_of(swanctl_conf)
        self._write_strongswan_conf()
        text = swanctl_conf
        if secrets is not None:
            (self.swanctl_dir / "conf.d").mkdir(parents=True, exist_ok=True)
            (self.swanctl_dir / "conf.d" / "secrets.conf").write_text(secrets)
            text = text.rstrip("\n") + "\ninclude conf.d/*.conf\n"
        path = self.swanctl_dir / "swanctl.conf"
        path.write_text(text)
        os.chmod(path, 0o600)
        return path

    def _write_strongswan_conf(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for sub in ("", "conf.d", *SWANCTL_SUBDIRS):
            (self.swanctl_dir / sub).mkdir(parents=True, exist_ok=True)
        if len(str(self.vici_socket)) > MAX_UNIX_PATH:
            raise StrongSwanError(
                f"the vici socket path {self.vici_socket} is longer than {MAX_UNIX_PATH} bytes: use a shorter workdir"
            )
        have = available_plugins(self._plugin_dir())
        plugins = [p for p in CHARON_PLUGINS if p in have]
        self.missing_plugins = [p for p in CHARON_PLUGINS if p not in have]
        self.conf_path.write_text(
            render_strongswan_conf(
                self._inside(self.vici_socket),
                self._inside(self.log_path),
                self.log_levels,
                plugins,
                [p for p in SWANCTL_PLUGINS if p in have],
                self.plugin_settings,
            )
        )
        if "eap-radius" in self.plugin_settings and "eap-radius" not in have:
            self.missing_plugins.append("eap-radius")

    # -- process -------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> StrongSwan:
        """Start charon in the node and wait (bounded) until its vici socket answers."""
        if self.running:
            return self
        self._check_installed()
        private = [d if isinstance(d, str) else d[0] for d in getattr(self.node, "privateDirs", ["/var/run"])]
        if self.needs_private_run and not {"/var/run", "/run"} & set(private):
            raise StrongSwanError(
                f"node {self.name} needs a private /var/run for charon.pid: create it with privateDirs=['/var/run']"
            )
        if not self.conf_path.exists():
            self._write_strongswan_conf()
        if self.vici_socket.exists():
            self.vici_socket.unlink()
        out = open(self.out_path, "wb")
        try:
            start = getattr(self.node, "start_process", None) or self.node.popen
            self.process = start(self._charon_argv(), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                 env=self.env)
        finally:
            out.close()
        _RUNNING.add(self)
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                raise StrongSwanError(f"charon on {self.name} exited with status {code} while starting:\n{self.log_tail()}")
            if self._vici_answers():
                break
            if time.monotonic() > deadline:
                self.stop()
                raise StrongSwanError(
                    f"charon on {self.name} did not open {self.vici_socket} within {self.start_timeout:g} s:\n{self.log_tail()}"
                )
            time.sleep(0.05)
        self.swanctl("--stats")
        if (self.swanctl_dir / "swanctl.conf").exists():
            self.load_all()  # as the Peer interface promises: started means configured
        return self

    def _vici_answers(self) -> bool:
        if not self.vici_socket.exists():
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1.0)
            try:
                s.connect(str(self.vici_socket))
            except OSError:
                return False
        return True

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM charon by its PID, wait up to `timeout` seconds, then SIGKILL and wait."""
        proc = self.process
        if proc is None:
            return
        try:
            if proc.poll() is None:
                try:
                    os.kill(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    try:
                        os.kill(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    proc.wait(5)
        finally:
            self.process = None
            _RUNNING.discard(self)

    def log_tail(self, lines: int = 25) -> str:
        """The last lines of charon's log file and of its stdout/stderr, after a hint if
        the log shows a known cause."""
        log = self.log_text()
        parts = [f"hint: {hint}" for needle, hint in LOG_HINTS if needle in log]
        for path in (self.log_path, self.out_path):
            try:
                tail = path.read_text(errors="replace").splitlines()[-lines:]
            except FileNotFoundError:
                continue
            if tail:
                parts.append(f"--- {path} ---\n" + "\n".join(tail))
        return "\n".join(parts) or "(charon wrote no log)"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> StrongSwan:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- swanctl -------------------------------------------------------------------

    def swanctl(self, *args: str, timeout: float = 30.0, check: bool = True) -> subprocess.CompletedProcess:
        """Run swanctl in the node against this charon; raise StrongSwanError on failure."""
        cmd = self._swanctl_argv(args)
        proc = self.node.popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=self.env)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise StrongSwanError(
                f"swanctl {' '.join(args)} on {self.name} did not finish within {timeout:g} s:\n{self.log_tail()}"
            ) from None
        result = subprocess.CompletedProcess(cmd, proc.returncode, out.decode(errors="replace"),
                                             err.decode(errors="replace"))
        if check and result.returncode != 0:
            raise StrongSwanError(
                f"swanctl {' '.join(args)} on {self.name} failed with status {result.returncode}:\n"
                f"{result.stdout}{result.stderr}\n{self.log_tail()}"
            )
        return result

    def load_all(self) -> str:
        """swanctl --load-all: connections, secrets and pools from workdir/swanctl."""
        result = self.swanctl("--load-all", "--noprompt")
        for line in result.stderr.splitlines():
            # swanctl reports a config file it cannot parse on stderr and still exits 0
            if "syntax error" in line or "invalid config file" in line:
                raise StrongSwanError(f"swanctl on {self.name} cannot read its config: {line}")
        return result.stdout

    # -- VICI (strongSwan's own Python binding) ------------------------------------

    def vici(self, timeout: float = 30.0) -> vici.Session:
        """A vici.Session on this charon's socket (a new connection each time)."""
        import vici

        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(str(self.vici_socket))
        except OSError as err:
            sock.close()
            raise StrongSwanError(f"cannot reach charon on {self.name} at {self.vici_socket}: {err}") from None
        return vici.Session(sock)

    def _streamed(self, command: str, message: dict[str, Any], timeout: float) -> list[str]:
        """Run a VICI command that streams log lines; StrongSwanError with them if it fails."""
        from vici.exception import CommandException

        lines: list[str] = []
        session = self.vici(timeout + 10)
        sock = session.transport.socket
        try:
            with abort_on_interrupt(lambda: sock.shutdown(socket.SHUT_RDWR)):
                for log in getattr(session, command)(message):
                    text = _text(log.get("msg", b""))
                    if text:
                        lines.append(text)
        except CommandException as err:
            raise StrongSwanError(f"charon on {self.name}: {command} {_describe(message)} failed: {err}\n"
                                  + "\n".join(lines[-8:])) from None
        except OSError as err:
            _interrupt_first(err)  # the socket an interrupt shut (lab.net.peers.abort_on_interrupt)
            raise StrongSwanError(f"charon on {self.name}: {command} {_describe(message)}: {err}") from None
        except Exception as err:
            _interrupt_first(err)
            raise
        finally:
            session.transport.socket.close()
        return lines

    def initiate(self, child: str | None = None, ike: str | None = None, timeout: float = 20) -> list[str]:
        """Initiate a CHILD_SA (and its IKE SA); returns once it is up (charon's log lines)."""
        if not child and not ike:
            raise ValueError("initiate needs a child or an ike name")
        message = {k: v for k, v in (("child", child), ("ike", ike)) if v}
        message["timeout"] = str(int(timeout * 1000))
        return self._streamed("initiate", message, timeout)

    def terminate(self, ike: str | None = None, child: str | None = None, *, ike_id: int | None = None,
                  child_id: int | None = None, force: bool = False, timeout: float = 10) -> list[str]:
        """Delete an IKE SA (with its children) or a CHILD_SA, by name or unique id."""
        message = self._selectors(ike, child, ike_id, child_id)
        message["timeout"] = str(int(timeout * 1000))
        if force:
            message["force"] = "yes"
        return self._streamed("terminate", message, timeout)

    def rekey(self, child: str | None = None, ike: str | None = None, *, ike_id: int | None = None,
              child_id: int | None = None, reauth: bool = False) -> None:
        """Start a rekeying of a CHILD_SA or an IKE SA (returns when it is queued; use
        wait_for() to see it done)."""
        from vici.exception import CommandException

        message = self._selectors(ike, child, ike_id, child_id)
        if reauth:
            message["reauth"] = "yes"
        session = self.vici()
        try:
            session.rekey(message)
        except CommandException as err:
            raise StrongSwanError(f"charon on {self.name}: rekey {_describe(message)} failed: {err}") from None
        finally:
            session.transport.socket.close()

    @staticmethod
    def _selectors(ike: str | None, child: str | None, ike_id: int | None, child_id: int | None) -> dict[str, str]:
        message = {k: str(v) for k, v in (("child", child), ("ike", ike), ("child-id", child_id),
                                          ("ike-id", ike_id)) if v is not None}
        if not message:
            raise ValueError("name an IKE SA or a CHILD_SA (ike=, child=, ike_id= or child_id=)")
        return message

    def raw_sas(self, ike: str | None = None) -> list[dict[str, Any]]:
        """The IKE SAs as charon's VICI list-sas reports them: one dict per IKE SA with its
        keys ("state", "spi-i", "local-host", ...) plus "name", and "child-sas" as
        {unique name: dict with "name", "state", "spi-in", ...}; values as text."""
        with uninterrupted():
            session = self.vici()
            try:
                events = list(session.list_sas({"ike": ike} if ike else None))
            except Exception as err:
                _interrupt_first(err)
                raise
            finally:
                session.transport.socket.close()
        sas = []
        for event in events:
            for name, sa in _text(event).items():
                sa["name"] = name
                sa.setdefault("child-sas", {})
                sas.append(sa)
        return sas

    def list_sas(self) -> list[IkeSaInfo]:
        return [_ike_info(sa) for sa in self.raw_sas()]

    def counters(self) -> dict[str, int]:
        """charon's global IKE event counters (VICI get-counters)."""
        with uninterrupted():
            session = self.vici()
            try:
                reply = _text(session.get_counters())
            except Exception as err:
                _interrupt_first(err)
                raise
            finally:
                session.transport.socket.close()
        return {k: int(v) for k, v in reply.get("counters", {}).items() if str(v).isdigit()}

    def reload(self) -> None:
        self.load_all()

    def version(self) -> str:
        """charon's version as it says itself over VICI (5.9.8, 6.0.1)."""
        session = self.vici()
        try:
            return _text(session.version()).get("version", "")
        finally:
            session.transport.socket.close()

    # -- what a run folder takes from charon ---------------------------------------

    def observe(self) -> None:
        """Remember the IKE SPIs and algorithms of charon's SAs so far (its log has their keys,
        not their SPIs); the runner calls this after every step and before teardown."""
        if not self.running:
            return
        try:
            sas = self.raw_sas()
        except (PeerError, OSError):
            return
        for sa in sas:
            if sa.get("uniqueid", "").isdigit() and sa.get("responder-spi", "0" * 16) != "0" * 16:
                self.seen_sas[int(sa["uniqueid"])] = {k: sa.get(k, "") for k in (
                    "initiator-spi", "responder-spi", "encr-alg", "encr-keysize", "integ-alg")}

    def run_logs(self) -> dict[str, Path]:
        return {f"{self.name}-charon.log": self.log_path, f"{self.name}-charon.out": self.out_path}

    def key_tables(self) -> dict[str, list[str]]:
        """Wireshark's tables from the keys charon logged (lab.net.charon_keys) and the SPIs seen."""
        if not self.log_path.exists():
            return {}
        found = charon_keys.parse(self.log_path.read_text(errors="replace"))
        return {"ikev2_decryption_table": charon_keys.ike_lines(found, self.seen_sas),
                "esp_sa": charon_keys.esp_lines(found)}

    def shell_exports(self) -> dict[str, str]:
        return {"STRONGSWAN_CONF": str(self.conf_path), "SWANCTL_DIR": str(self.swanctl_dir)}


def _text(value: Any) -> Any:
    """VICI answers with bytes: the same structure with text."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, dict):
        return {_text(k): _text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_text(v) for v in value]
    return value


def _describe(message: dict[str, str]) -> str:
    return " ".join(f"{k} {v}" for k, v in message.items() if k in ("child", "ike", "child-id", "ike-id"))


# charon's algorithm names (VICI list-sas) as proposal keywords
_ENCR_KEYWORDS = {"AES_CBC": "aes{}", "AES_GCM_16": "aes{}gcm16", "AES_GCM_12": "aes{}gcm12", "AES_GCM_8": "aes{}gcm8",
                  "CHACHA20_POLY1305": "chacha20poly1305", "AES_CTR": "aes{}ctr", "NULL": "null",
                  "AES_CCM_16": "aes{}ccm16", "NULL_AES_GMAC": "aes{}gmac"}
_INTEG_KEYWORDS = {"HMAC_SHA2_256_128": "sha256", "HMAC_SHA2_384_192": "sha384", "HMAC_SHA2_512_256": "sha512",
                   "HMAC_SHA1_96": "sha1", "AES_XCBC_96": "aesxcbc", "HMAC_MD5_96": "md5"}
_PRF_KEYWORDS = {"PRF_HMAC_SHA2_256": "prfsha256", "PRF_HMAC_SHA2_384": "prfsha384", "PRF_HMAC_SHA2_512": "prfsha512",
                 "PRF_HMAC_SHA1": "prfsha1", "PRF_AES128_XCBC": "prfaesxcbc"}
_DH_KEYWORDS = {"CURVE_25519": "x25519", "CURVE_448": "x448", "MODP_2048": "modp2048", "MODP_3072": "modp3072",
                "MODP_4096": "modp4096", "MODP_1024": "modp1024", "MODP_1536": "modp1536", "ECP_256": "ecp256",
                "ECP_384": "ecp384", "ECP_521": "ecp521"}


def proposal_keywords(sa: dict[str, Any]) -> str:
    """aes128gcm16-prfsha256-x25519 from charon's encr-alg, encr-keysize, integ-alg, prf-alg, dh-group
    (and ke1_... from strongSwan 6's ake1 ... ake7)."""
    words = []
    encr = sa.get("encr-alg")
    if encr:
        template = _ENCR_KEYWORDS.get(encr, encr.lower())
        words.append(template.format(sa.get("encr-keysize", "")))
    for key, table in (("integ-alg", _INTEG_KEYWORDS), ("prf-alg", _PRF_KEYWORDS), ("dh-group", _DH_KEYWORDS)):
        if sa.get(key):
            words.append(table.get(sa[key], sa[key].lower()))
    for n in range(1, 8):  # RFC 9370 additional key exchanges: strongSwan 6 reports ake1 ... ake7
        if sa.get(f"ake{n}"):
            words.append(f"ke{n}_" + _DH_KEYWORDS.get(sa[f"ake{n}"], sa[f"ake{n}"].lower()))
    return "-".join(words)


def _ike_info(sa: dict[str, Any]) -> IkeSaInfo:
    children = []
    for child in sa.get("child-sas", {}).values():
        children.append(ChildSaInfo(
            name=child.get("name", ""), unique_id=int(child.get("uniqueid", 0)), state=child.get("state", ""),
            protocol=child.get("protocol", "ESP"), mode=child.get("mode", "TUNNEL"), encap=child.get("encap") == "yes",
            spi_in=child.get("spi-in", ""), spi_out=child.get("spi-out", ""), algorithms=proposal_keywords(child),
            local_ts=tuple(child.get("local-ts", [])), remote_ts=tuple(child.get("remote-ts", [])),
            bytes_in=int(child.get("bytes-in", 0)), bytes_out=int(child.get("bytes-out", 0)),
            packets_in=int(child.get("packets-in", 0)), packets_out=int(child.get("packets-out", 0))))
    initiator = sa.get("initiator") == "yes"
    return IkeSaInfo(
        name=sa["name"], unique_id=int(sa.get("uniqueid", 0)), state=sa.get("state", ""), initiator=initiator,
        spi_i=sa.get("initiator-spi", ""), spi_r=sa.get("responder-spi", ""),
        local_host=sa.get("local-host", ""), local_port=int(sa.get("local-port", 0)),
        remote_host=sa.get("remote-host", ""), remote_port=int(sa.get("remote-port", 0)),
        local_id=sa.get("local-id", ""), remote_id=sa.get("remote-id", ""),
        nat_local=sa.get("nat-local") == "yes", nat_remote=sa.get("nat-remote") == "yes",
        algorithms=proposal_keywords(sa), local_vips=tuple(sa.get("local-vips", [])),
        remote_vips=tuple(sa.get("remote-vips", [])), children=tuple(children))



def _interrupt_first(err: Exception) -> None:
    """A Ctrl-C or SIGTERM (raised by a signal handler) that arrives while vici reads a streamed
    answer makes vici's generator complain as it unwinds (SessionException: unexpected response
    type); the interrupt is what happened, so it is what goes on."""
    cause = err.__context__
    if isinstance(cause, BaseException) and not isinstance(cause, Exception):
        raise cause from None
