"""WireGuard's configuration in wg-quick's format (wg-quick(8), wg(8) CONFIGURATION FILE FORMAT):
an [Interface] section and one [Peer] section per peer, `Key = value` lines, `#` comments.

    [Interface]
    PrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=
    ListenPort = 51820
    Address = 10.99.0.1/24

    [Peer]
    PublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=
    Endpoint = 198.51.100.2:51820
    AllowedIPs = 10.2.0.0/24, 10.99.0.2/32

`read(text, file)` gives a WgConfig or raises ConfigError naming file, line and key.
`WgConfig.wg_setconf()` is what `wg setconf` takes (wg-quick's `strip`: without Address, MTU,
DNS, Table and the hooks, which wg-quick itself applies).
"""
from __future__ import annotations

import base64
import ipaddress
from dataclasses import dataclass, field

from .swanctl import ConfigError

# wg(8): the keys `wg setconf` reads
WG_INTERFACE = {"privatekey": "PrivateKey", "listenport": "ListenPort", "fwmark": "FwMark"}
WG_PEER = {"publickey": "PublicKey", "presharedkey": "PresharedKey", "allowedips": "AllowedIPs",
           "endpoint": "Endpoint", "persistentkeepalive": "PersistentKeepalive"}
# wg-quick(8): what wg-quick applies itself; the lab applies Address and MTU the same way
QUICK_INTERFACE = {"address": "Address", "mtu": "MTU"}
# wg-quick keys that change the machine beyond the tunnel: not in a lab node
REFUSED = {"dns": "DNS", "table": "Table", "preup": "PreUp", "postup": "PostUp", "predown": "PreDown",
           "postdown": "PostDown", "saveconfig": "SaveConfig"}


@dataclass
class WgPeer:
    public_key: str
    line: int
    endpoint: tuple[str, int] | None = None
    allowed_ips: list[str] = field(default_factory=list)
    persistent_keepalive: int = 0
    preshared_key: str | None = None


@dataclass
class WgConfig:
    file: str
    private_key: str
    listen_port: int | None = None
    fwmark: int | None = None
    addresses: list[str] = field(default_factory=list)
    mtu: int | None = None
    peers: list[WgPeer] = field(default_factory=list)

    def wg_setconf(self) -> str:
        """The file `wg setconf` reads: the wg(8) keys only."""
        lines = ["[Interface]", f"PrivateKey = {self.private_key}"]
        if self.listen_port is not None:
            lines.append(f"ListenPort = {self.listen_port}")
        if self.fwmark is not None:
            lines.append(f"FwMark = {self.fwmark}")
        for peer in self.peers:
            lines += ["", "[Peer]", f"PublicKey = {peer.public_key}"]
            if peer.preshared_key:
                lines.append(f"PresharedKey = {peer.preshared_key}")
            if peer.endpoint:
                lines.append(f"Endpoint = {peer.endpoint[0]}:{peer.endpoint[1]}")
            if peer.allowed_ips:
                lines.append(f"AllowedIPs = {', '.join(peer.allowed_ips)}")
            if peer.persistent_keepalive:
                lines.append(f"PersistentKeepalive = {peer.persistent_keepalive}")
        return "\n".join(lines) + "\n"


def _key(value: str, file: str, line: int, key: str) -> str:
    """A Curve25519 key: 32 octets in base64 (wg(8))."""
    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ConfigError(f"must be a key of 32 octets in base64 (`wg genkey` makes one), not {value!r}",
                          file=file, line=line, key=key)
    return value


def _port(value: str, file: str, line: int, key: str) -> int:
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ConfigError(f"must be a port number 1-65535, not {value!r}", file=file, line=line, key=key)
    return int(value)


def _networks(value: str, file: str, line: int, key: str, host_bits: bool) -> list[str]:
    out = []
    for item in (v.strip() for v in value.split(",")):
        try:
            if host_bits:
                ipaddress.ip_interface(item)
            else:
                ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ConfigError(f"{item!r} is not an address with a prefix length (e.g. 10.99.0.1/24)",
                              file=file, line=line, key=key) from None
        out.append(item if "/" in item else f"{item}/{32 if ':' not in item else 128}")
    return out


def _endpoint(value: str, file: str, line: int, key: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"must be ADDRESS:PORT (the lab resolves no names), not {value!r}",
                          file=file, line=line, key=key) from None
    return host, _port(port, file, line, key)


def read(text: str, file: str = "wireguard.conf") -> WgConfig:
    section = None
    config: WgConfig | None = None
    interface: dict[str, tuple[str, int]] = {}
    peers: list[tuple[int, dict[str, tuple[str, int]]]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            name = line.strip("[]").strip().lower()
            if not line.endswith("]") or name not in ("interface", "peer"):
                raise ConfigError(f"unknown section {line!r} (wg-quick knows [Interface] and [Peer])",
                                  file=file, line=number)
            if name == "interface" and section is not None:
                raise ConfigError("[Interface] must come first, and only once", file=file, line=number)
            section = name
            if name == "peer":
                peers.append((number, {}))
            continue
        key, eq, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not key:
            raise ConfigError(f"expected `Key = value`, not {line!r}", file=file, line=number)
        if section is None:
            raise ConfigError(f"{key} before any section: start with [Interface]", file=file, line=number)
        lower = key.lower()
        if lower in REFUSED:
            raise ConfigError(f"the lab does not apply {REFUSED[lower]} (it would change the machine beyond the "
                              "lab's node): leave it out", file=file, line=number, key=key)
        known = {**WG_INTERFACE, **QUICK_INTERFACE} if section == "interface" else WG_PEER
        if lower not in known:
            raise ConfigError(f"unknown key in [{section.capitalize()}] (known: {', '.join(known.values())})",
                              file=file, line=number, key=key)
        target = interface if section == "interface" else peers[-1][1]
        if lower in target and lower not in ("address", "allowedips"):
            raise ConfigError(f"{known[lower]} is given twice in this section", file=file, line=number, key=key)
        if lower in target:  # Address and AllowedIPs may be repeated: the lists add up
            value = f"{target[lower][0]}, {value}"
        target[lower] = (value, number)

    if section is None:
        raise ConfigError("no [Interface] section", file=file, line=None)
    if "privatekey" not in interface:
        raise ConfigError("[Interface] needs PrivateKey", file=file, line=None, key="PrivateKey")
    value, number = interface["privatekey"]
    config = WgConfig(file=file, private_key=_key(value, file, number, "PrivateKey"))
    if "listenport" in interface:
        config.listen_port = _port(interface["listenport"][0], file, interface["listenport"][1], "ListenPort")
    if "fwmark" in interface:
        value, number = interface["fwmark"]
        if not value.isdigit():
            raise ConfigError(f"must be a number, not {value!r}", file=file, line=number, key="FwMark")
        config.fwmark = int(value)
    if "address" in interface:
        config.addresses = _networks(interface["address"][0], file, interface["address"][1], "Address", True)
    if "mtu" in interface:
        value, number = interface["mtu"]
        if not value.isdigit() or not 576 <= int(value) <= 65535:
            raise ConfigError(f"must be an MTU of 576 or more, not {value!r}", file=file, line=number, key="MTU")
        config.mtu = int(value)
    seen = set()
    for start, keys in peers:
        if "publickey" not in keys:
            raise ConfigError("[Peer] needs PublicKey", file=file, line=start, key="PublicKey")
        value, number = keys["publickey"]
        peer = WgPeer(public_key=_key(value, file, number, "PublicKey"), line=start)
        if peer.public_key in seen:
            raise ConfigError("this peer's PublicKey is listed twice", file=file, line=number, key="PublicKey")
        seen.add(peer.public_key)
        if "presharedkey" in keys:
            peer.preshared_key = _key(keys["presharedkey"][0], file, keys["presharedkey"][1], "PresharedKey")
        if "endpoint" in keys:
            peer.endpoint = _endpoint(keys["endpoint"][0], file, keys["endpoint"][1], "Endpoint")
        if "allowedips" in keys:
            value, number = keys["allowedips"]
            peer.allowed_ips = _networks(value, file, number, "AllowedIPs", False)
            for network in peer.allowed_ips:
                if ipaddress.ip_network(network, strict=False).prefixlen == 0:
                    raise ConfigError(f"{network}: a default route through the tunnel needs wg-quick's policy "
                                      "routing, which the lab does not set up: list the networks behind the peer",
                                      file=file, line=number, key="AllowedIPs")
        if "persistentkeepalive" in keys:
            value, number = keys["persistentkeepalive"]
            if value == "off":
                value = "0"
            if not value.isdigit() or int(value) > 65535:
                raise ConfigError(f"must be seconds (0-65535) or off, not {value!r}", file=file, line=number,
                                  key="PersistentKeepalive")
            peer.persistent_keepalive = int(value)
        config.peers.append(peer)
    return config


def config_lines(text: str) -> int:
    """Lines that say something (not blank, not only a comment)."""
    return sum(1 for line in text.splitlines() if line.split("#", 1)[0].strip())
