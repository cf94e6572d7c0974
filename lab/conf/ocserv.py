"""The two files of an OpenConnect VPN (the AnyConnect-compatible TLS + DTLS VPN):

- the server's, ocserv.conf (ocserv(8), "Configuration file"): `key = value` lines, `#` comments,
  some keys repeated (`route`), paths relative to the configuration's folder (the lab starts ocserv
  there);

      auth = "plain[passwd=ocpasswd]"
      tcp-port = 443
      udp-port = 443
      server-cert = x509/gwf.pem
      server-key = private/gwf.key
      ipv4-network = 10.98.2.0/24
      route = 10.2.2.0/24

- the client's, openconnect.conf (openconnect(8), `--config`): one long option a line without
  its leading `--`, its value after `=` or a space.

      server = https://198.51.100.4/
      user = carol
      cafile = x509ca/ca.pem

`read_ocserv(text, file, folder)` and `read_openconnect(text, file, folder)` give the keys in order
or raise ConfigError naming file, line and key. They check what the lab relies on (the keys it sets
itself are refused, the files named exist in `folder`), not every option: ocserv and openconnect
read the files themselves and their own errors are in their logs.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .swanctl import ConfigError

_SCRIPTS = "scripts would run on the lab's machine"
# ocserv keys the lab sets itself (its sockets and pid file in the run's files, ocserv in the
# foreground) or that reach beyond the node
OCSERV_REFUSED = {
    "socket-file": "the lab puts ocserv's sockets where it cleans them up",
    "occtl-socket-file": "the lab puts ocserv's sockets where it cleans them up",
    "pid-file": "the lab knows the process", "use-occtl": "the lab turns occtl on to read the sessions",
    "chroot-dir": "the lab runs ocserv in its node's folder", "connect-script": _SCRIPTS,
    "disconnect-script": _SCRIPTS, "host-update-script": _SCRIPTS, "listen-host": "ocserv listens on the node",
}
OCSERV_FILES = ("server-cert", "server-key", "ca-cert", "crl", "dh-params")
# openconnect options the lab sets itself (in the foreground, its tun device, its own vpnc-style
# script that only sets the tun device's address and routes, the password from a file)
OPENCONNECT_REFUSED = {
    "background": "the lab keeps openconnect in the foreground", "pid-file": "the lab knows the process",
    "syslog": "the lab keeps openconnect's log", "interface": "the lab names the tun device",
    "script": "the lab sets the tun device's address and routes itself", "script-tun": "the lab uses a tun device",
    "passwd-on-stdin": "the lab gives the password from the file `password`",
    "non-inter": "the lab runs openconnect without questions", "csd-wrapper": _SCRIPTS, "setuid": "the lab runs "
    "openconnect as root in its node", "cookieonly": "the lab wants the tunnel", "authenticate": "the lab wants the "
    "tunnel", "config": "one file per gateway",
}
OPENCONNECT_FILES = ("cafile", "certificate", "sslkey")


@dataclass
class Option:
    name: str
    value: str
    line: int


@dataclass
class OcConfig:
    file: str
    options: list[Option] = field(default_factory=list)

    def get(self, name: str) -> Option | None:
        found = [o for o in self.options if o.name == name]
        return found[-1] if found else None

    def all(self, name: str) -> list[str]:
        return [o.value for o in self.options if o.name == name]

    def value(self, name: str, default: str = "") -> str:
        option = self.get(name)
        return option.value if option else default

    # the server's
    @property
    def tcp_port(self) -> int:
        return int(self.value("tcp-port", "0") or 0)

    @property
    def udp_port(self) -> int:
        return int(self.value("udp-port", "0") or 0)

    @property
    def passwd_file(self) -> str:
        found = re.search(r"passwd=([^\],]+)", self.value("auth"))
        return found.group(1) if found else ""

    # the client's
    @property
    def server(self) -> tuple[str, int]:
        url = urlsplit(self.value("server") if "//" in self.value("server") else "https://" + self.value("server"))
        return url.hostname or "", url.port or 443


def _lines(text: str, file: str, split: str):
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if split == "=":
            name, eq, value = line.partition("=")
            if not eq:
                raise ConfigError("expected `key = value`", file=file, line=number, key=line.split()[0])
        else:   # openconnect: `name`, `name=value` or `name value`
            found = re.match(r"([A-Za-z0-9-]+)\s*(?:=\s*|\s+)?(.*)$", line)
            if not found:
                raise ConfigError("expected an option name (openconnect's long options without --)", file=file,
                                  line=number, key=line.split()[0])
            name, value = found.group(1), found.group(2)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        yield number, name.strip().removeprefix("--"), value


def _exists(config: OcConfig, option: Option, path: str, folder: Path | None) -> None:
    if folder is not None and not (folder / path).exists():
        raise ConfigError(f"names {path}, which is not in {folder}", file=config.file, line=option.line,
                          key=option.name)


def _options(text: str, file: str, split: str, refused: dict[str, str]) -> OcConfig:
    """The file's options in order; an error for one the lab sets itself (`refused`)."""
    config = OcConfig(file)
    for number, name, value in _lines(text, file, split):
        if name in refused:
            raise ConfigError(f"the lab does not take {name}: {refused[name]}; leave it out", file=file,
                              line=number, key=name)
        config.options.append(Option(name, value, number))
    return config


def read_ocserv(text: str, file: str = "ocserv.conf", folder: Path | None = None) -> OcConfig:
    config = _options(text, file, "=", OCSERV_REFUSED)

    def need(name: str, why: str) -> Option:
        option = config.get(name)
        if option is None or not option.value:
            raise ConfigError(f"no `{name} = ...` line: {why}", file=file, line=None, key=name)
        return option

    auth = need("auth", 'how users log in, e.g. auth = "plain[passwd=ocpasswd]" (a file made with ocpasswd)')
    if auth.value.startswith("plain") and not config.passwd_file:
        raise ConfigError('plain needs its password file: auth = "plain[passwd=ocpasswd]"', file=file,
                          line=auth.line, key="auth")
    if config.passwd_file:
        _exists(config, auth, config.passwd_file, folder)
    for name in ("tcp-port", "udp-port"):
        option = need("tcp-port", "the TCP port ocserv listens on (443 for HTTPS)") if name == "tcp-port" \
            else config.get(name)
        if option is not None and not (option.value.isdigit() and 0 < int(option.value) < 65536):
            raise ConfigError(f"must be a port number, not {option.value!r}", file=file, line=option.line, key=name)
    need("server-cert", "the gateway's certificate (x509/<gateway>.pem of the scenario's lab CA)")
    need("server-key", "the gateway's private key")
    network = need("ipv4-network", "the pool the clients' tunnel addresses come from, e.g. 10.98.2.0/24")
    try:
        ipaddress.ip_network(network.value if "/" in network.value
                             else f"{network.value}/{config.value('ipv4-netmask', '255.255.255.0')}")
    except ValueError as err:
        raise ConfigError(f"not a network: {err}", file=file, line=network.line, key="ipv4-network") from None
    for option in config.options:
        if option.name in OCSERV_FILES:
            _exists(config, option, option.value, folder)
        if option.name == "route" and option.value != "default":
            try:
                ipaddress.ip_network(option.value, strict=False)
            except ValueError as err:
                raise ConfigError(f"not a network: {err}", file=file, line=option.line, key="route") from None
    return config


def read_openconnect(text: str, file: str = "openconnect.conf", folder: Path | None = None) -> OcConfig:
    config = _options(text, file, " ", OPENCONNECT_REFUSED)
    server = config.get("server")
    if server is None or not server.value:
        raise ConfigError("no `server = https://ADDRESS/` line: the ocserv gateway to dial", file=file, line=None,
                          key="server")
    try:
        ipaddress.ip_address(config.server[0])
    except ValueError:
        raise ConfigError(f"the lab has no DNS: give the gateway's address, not {server.value!r}", file=file,
                          line=server.line, key="server") from None
    if config.get("user") is None:
        raise ConfigError("no `user = NAME` line: the user name to log in with (its password is in the file "
                          "`password` beside this one)", file=file, line=None, key="user")
    for option in config.options:
        if option.name in OPENCONNECT_FILES:
            _exists(config, option, option.value, folder)
    return config
