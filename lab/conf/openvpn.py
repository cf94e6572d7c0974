"""OpenVPN's configuration file (openvpn(8), "--config"): one directive a line, its name without
the leading `--`, its arguments after it; `#` or `;` starts a comment; a file named by a directive
is a path relative to the configuration's folder (the lab starts OpenVPN with `--cd` there).

    dev tun
    proto udp
    remote 198.51.100.4 1194
    tls-client
    ca x509ca/ca.pem
    cert x509/gwe.pem
    key private/gwe.key

`read(text, file, folder)` gives an OvpnConfig or raises ConfigError naming file, line and
directive. It checks what the lab relies on (the directives it sets itself are refused, `proto`,
`remote`, the files named exist in `folder`), not all of OpenVPN's hundreds of options: OpenVPN
reads the file itself and its own errors are in its log.
"""
from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from .swanctl import ConfigError

PROTOCOLS = {"udp": "udp", "udp4": "udp", "tcp-server": "tcp", "tcp-client": "tcp", "tcp4-server": "tcp",
             "tcp4-client": "tcp"}
# directives the lab sets itself (the process stays in the foreground, its log and management
# socket in the lab's files), or that reach beyond the node (scripts run on the machine)
REFUSED = {
    "daemon": "the lab keeps OpenVPN in the foreground", "log": "the lab keeps OpenVPN's log",
    "log-append": "the lab keeps OpenVPN's log", "syslog": "the lab keeps OpenVPN's log",
    "management": "the lab opens the management socket itself", "cd": "the lab starts OpenVPN in this folder",
    "writepid": "the lab knows the process", "up": "scripts would run on the lab's machine",
    "down": "scripts would run on the lab's machine", "route-up": "scripts would run on the lab's machine",
    "ipchange": "scripts would run on the lab's machine", "client-connect": "scripts would run on the lab's machine",
    "client-disconnect": "scripts would run on the lab's machine",
    "auth-user-pass-verify": "scripts would run on the lab's machine",
    "tls-verify": "scripts would run on the lab's machine", "learn-address": "scripts would run on the lab's machine",
    "user": "the lab runs OpenVPN as root in its node", "group": "the lab runs OpenVPN as root in its node",
    "chroot": "the lab runs OpenVPN in its node's folder", "config": "one file per gateway",
}
FILES = ("ca", "cert", "key", "dh", "tls-auth", "tls-crypt", "tls-crypt-v2", "crl-verify", "pkcs12", "secret",
         "auth-user-pass", "askpass")
INLINE = {"ca", "cert", "key", "dh", "tls-auth", "tls-crypt", "tls-crypt-v2", "crl-verify", "pkcs12", "secret",
          "extra-certs", "connection", "auth-user-pass", "http-proxy-user-pass"}


@dataclass
class Directive:
    name: str
    args: list[str]
    line: int


@dataclass
class OvpnConfig:
    file: str
    directives: list[Directive] = field(default_factory=list)

    def get(self, name: str) -> Directive | None:
        """The directive's last occurrence (OpenVPN takes the last)."""
        found = [d for d in self.directives if d.name == name]
        return found[-1] if found else None

    def has(self, name: str) -> bool:
        return self.get(name) is not None

    @property
    def transport(self) -> str:
        proto = self.get("proto")
        return PROTOCOLS[proto.args[0]] if proto else "udp"

    @property
    def remote(self) -> tuple[str, int] | None:
        remote = self.get("remote")
        if remote is None:
            return None
        port = self.get("port") or self.get("rport")
        return remote.args[0], int(remote.args[1]) if len(remote.args) > 1 else int(port.args[0]) if port else 1194

    @property
    def local_port(self) -> int:
        for name in ("lport", "port"):
            d = self.get(name)
            if d:
                return int(d.args[0])
        return 0 if self.has("nobind") else 1194

    @property
    def device(self) -> str:
        dev = self.get("dev")
        return dev.args[0] if dev else ""


def read(text: str, file: str = "openvpn.conf", folder: Path | None = None) -> OvpnConfig:
    config = OvpnConfig(file=file)
    inline: str | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if inline is not None:
            if line == f"</{inline}>":
                inline = None
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("<") and line.endswith(">") and not line.startswith("</"):
            name = line[1:-1]
            if name not in INLINE:
                raise ConfigError(f"<{name}> is not a file OpenVPN takes inline ({', '.join(sorted(INLINE))})",
                                  file=file, line=number, key=name)
            inline = name
            config.directives.append(Directive(name, ["[inline]"], number))
            continue
        try:
            words = shlex.split(line, comments=True)
        except ValueError as err:
            raise ConfigError(f"cannot split the line into words: {err}", file=file, line=number) from None
        if not words:
            continue
        name, args = words[0].removeprefix("--"), words[1:]
        if name in REFUSED:
            raise ConfigError(f"the lab does not take {name}: {REFUSED[name]}; leave it out", file=file,
                              line=number, key=name)
        config.directives.append(Directive(name, args, number))
    if inline is not None:
        raise ConfigError(f"<{inline}> is never closed (</{inline}>)", file=file, line=None, key=inline)
    _check(config, file, folder)
    return config


def _check(config: OvpnConfig, file: str, folder: Path | None) -> None:
    def error(d: Directive, message: str) -> ConfigError:
        return ConfigError(message, file=file, line=d.line, key=d.name)

    dev = config.get("dev")
    if dev is None:
        raise ConfigError("no `dev` line: name the tunnel device (e.g. `dev tun`)", file=file, line=None, key="dev")
    if not dev.args or not dev.args[0].startswith("tun"):
        raise error(dev, "the lab runs OpenVPN with a tun device (`dev tun` or `dev tunNAME`)")
    proto = config.get("proto")
    if proto is not None and (len(proto.args) != 1 or proto.args[0] not in PROTOCOLS):
        raise error(proto, f"must be one of {', '.join(PROTOCOLS)} (IPv4 only in the lab), not "
                           f"{' '.join(proto.args) or 'nothing'}")
    for d in config.directives:
        if d.name == "remote":
            if not d.args:
                raise error(d, "needs an address (and a port)")
            try:
                ipaddress.ip_address(d.args[0])
            except ValueError:
                raise error(d, f"must be an address (the lab resolves no names), not {d.args[0]!r}") from None
        if d.name in ("port", "lport", "rport") or (d.name == "remote" and len(d.args) > 1):
            value = d.args[1] if d.name == "remote" else (d.args[0] if d.args else "")
            if not value.isdigit() or not 0 < int(value) < 65536:
                raise error(d, f"must be a port number 1-65535, not {value!r}")
        if d.name in FILES and d.args != ["[inline]"] and d.args != ["none"]:
            if not d.args:
                raise error(d, "needs a file name")
            if folder is not None and not (folder / d.args[0]).is_file():
                raise error(d, f"{d.args[0]} is not in {folder} (a path relative to the configuration's folder)")
    if config.has("tls-client") or config.has("tls-server") or config.has("client") or config.has("server"):
        for needed in ("ca", "cert", "key"):
            if not config.has(needed):
                raise ConfigError(f"TLS needs `{needed}` (a file from the lab's CA)", file=file, line=None,
                                  key=needed)


def config_lines(text: str) -> int:
    """Lines that say something (not blank, not only a comment)."""
    return sum(1 for line in text.splitlines() if line.strip() and line.strip()[0] not in "#;")
