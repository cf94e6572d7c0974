"""The configuration the IKE state machine consumes: connections, children, secrets, pools.

Plain dataclasses with strongSwan's defaults (swanctl.conf(5) of strongSwan 5.9.8), filled in
by `lab.conf.swanctl` from a swanctl.conf or built by hand in a notebook:

    conn = IkeConfig("s2s", remote_addrs=parse_addrs("198.51.100.2"),
                     proposals=parse_ike_proposals("aes128gcm16-prfsha256-x25519"),
                     local=AuthConfig("psk", Identity.parse("gwa.lab")),
                     remote=AuthConfig("psk", Identity.parse("gwb.lab")),
                     children={"net": ChildConfig("net", parse_traffic_selectors("10.1.0.0/24"),
                                                  parse_traffic_selectors("10.2.0.0/24"))})

Where ipsec-lab differs from strongSwan it says so. Pure: no file I/O, no clock. Key material
never shows in `repr`.
"""
from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cryptography import x509

from .identity import Identity, IdMatch, best_match, certificate_matches
from .payloads import Proposal, TrafficSelector
from .profiles import ClientProfile, client_profile
from .proposals import ProposalError, check_implemented, parse_esp_proposals, parse_ike_proposals

__all__ = [
    "SaAction",
    "AuthClass",
    "AuthConfig",
    "ChildConfig",
    "ChildMode",
    "Config",
    "ConfigValueError",
    "DYNAMIC",
    "DynamicTrafficSelector",
    "Fragmentation",
    "HostSpec",
    "IkeConfig",
    "Pool",
    "PrivateKey",
    "Secrets",
    "SendCert",
    "SharedKey",
    "TtlsSettings",
    "Unique",
    "decode_secret",
    "parse_addrs",
    "parse_pool_addrs",
    "parse_time",
    "parse_traffic_selectors",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class ConfigValueError(ValueError):
    """A configuration value that cannot be used; the message says what is wrong and how to write it."""


# ---------------------------------------------------------------- enumerated options


class AuthClass(StrEnum):
    """swanctl.conf `local.auth` / `remote.auth` (strongSwan default: pubkey). The `eap-*`
    classes authenticate with EAP inside IKE_AUTH (RFC 7296 §2.16); plain `eap` (a client
    only) takes whichever of our methods the server asks for."""

    PSK = "psk"
    PUBKEY = "pubkey"
    EAP = "eap"
    EAP_MD5 = "eap-md5"
    EAP_MSCHAPV2 = "eap-mschapv2"
    EAP_TLS = "eap-tls"
    EAP_TTLS = "eap-ttls"
    EAP_GTC = "eap-gtc"  # a client only: password (and one-time code) to a gateway that relays to RADIUS
    EAP_RADIUS = "eap-radius"  # a remote round only: the EAP conversation relayed to RADIUS (RFC 3579)

    @property
    def is_eap(self) -> bool:
        return self.value.startswith("eap")

    @property
    def eap_method(self) -> str | None:
        """The EAP method name (`md5`, `mschapv2`, `tls`), None for psk, pubkey and plain eap."""
        return self.value[4:] if self.value.startswith("eap-") and self != AuthClass.EAP_RADIUS else None


class ChildMode(StrEnum):
    """swanctl.conf `children.<child>.mode` (default tunnel); RFC 4301 §3.2. `pass` and `drop`
    are strongSwan's shunts: no SA, a BYPASS or DISCARD policy (RFC 4301 §4.4.1) installed
    with `start_action = trap`."""

    TUNNEL = "tunnel"
    TRANSPORT = "transport"
    PASS = "pass"
    DROP = "drop"

    @property
    def is_shunt(self) -> bool:
        return self in (ChildMode.PASS, ChildMode.DROP)


class SaAction(StrEnum):
    """What to do with a CHILD_SA: strongSwan's action_t. swanctl's `clear` means NONE and
    `restart` means START (strongSwan vici_config.c parse_action)."""

    NONE = "none"
    TRAP = "trap"
    START = "start"


class Fragmentation(StrEnum):
    """swanctl.conf `fragmentation` (default yes); RFC 7383."""

    YES = "yes"
    ACCEPT = "accept"
    FORCE = "force"
    NO = "no"


class TcpEncap(StrEnum):
    """ipsec-lab's swanctl.conf `tcp` (default no; strongSwan has no such key): IKE and ESP in a
    TCP stream (RFC 9329), as libreswan's `enable-tcp`. `fallback`: UDP first, TCP when UDP gets
    no answer within `tcp_fallback_time` (RFC 9329 §5.1); `yes`: TCP from the start."""

    NO = "no"
    FALLBACK = "fallback"
    YES = "yes"


class Unique(StrEnum):
    """swanctl.conf `unique` (default no)."""

    NO = "no"
    NEVER = "never"
    REPLACE = "replace"
    KEEP = "keep"


class SendCert(StrEnum):
    """swanctl.conf `send_cert` (default ifasked)."""

    IFASKED = "ifasked"
    NEVER = "never"
    ALWAYS = "always"


def _enum(enum: type[StrEnum], value: Any, what: str) -> Any:
    try:
        return enum(value)
    except ValueError:
        raise ConfigValueError(f"{what} must be one of {', '.join(m.value for m in enum)}, not {value!r}") from None


# ---------------------------------------------------------------- value syntax

_TIME_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str | int) -> int:
    """Seconds for a strongSwan time value: `3600`, `60s`, `10m`, `4h`, `1d` (swanctl.conf(5) TIME FORMATS)."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise ConfigValueError(f"time {text} is negative")
        return text
    match = re.fullmatch(r"(\d+)([smhd]?)", str(text).strip())
    if not match:
        raise ConfigValueError(f"'{text}' is not a time: write seconds or a number with s, m, h or d, e.g. 3600, 60m, 4h, 1d")
    return int(match.group(1)) * _TIME_UNITS[match.group(2)]


def decode_secret(text: str) -> bytes:
    """A secret as swanctl.conf writes it: `0x` hex, `0s` base64, anything else its UTF-8 octets
    (swanctl.conf(5) secrets.ike<suffix>.secret)."""
    if text.startswith("0x"):
        try:
            return bytes.fromhex(text[2:])
        except ValueError:
            raise ConfigValueError("secret starts with 0x but is not hex (0x followed by pairs of 0-9a-f)") from None
    if text.startswith("0s"):
        try:
            return base64.b64decode(text[2:], validate=True)
        except (binascii.Error, ValueError):
            raise ConfigValueError("secret starts with 0s but is not valid base64") from None
    return text.encode("utf-8")


def _split_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",")]


@dataclass(frozen=True)
class HostSpec:
    """One entry of `local_addrs` / `remote_addrs`: `%any`, `%any4`, `%any6`, an address, a
    CIDR subnet or a range `first-last`."""

    text: str
    first: IPAddress | None = None
    last: IPAddress | None = None
    prefixlen: int | None = None
    version: int | None = None

    @classmethod
    def parse(cls, text: str) -> HostSpec:
        text = text.strip()
        if text in ("%any", "%any4", "%any6"):
            return cls(text, version={"%any": None, "%any4": 4, "%any6": 6}[text])
        if "/" in text:
            try:
                net = ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise ConfigValueError(f"'{text}' is not a CIDR subnet such as 192.0.2.0/24") from None
            return cls(text, net.network_address, net.broadcast_address, net.prefixlen, net.version)
        if "-" in text:
            start, _, end = text.partition("-")
            try:
                first, last = ipaddress.ip_address(start.strip()), ipaddress.ip_address(end.strip())
            except ValueError:
                raise ConfigValueError(f"'{text}' is not an address range such as 192.0.2.10-192.0.2.20") from None
            if first.version != last.version or int(first) > int(last):
                raise ConfigValueError(f"range '{text}' must go from a lower to a higher address of one family")
            return cls(text, first, last, None, first.version)
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            if not text:
                raise ConfigValueError("empty address: remove the extra comma") from None
            raise ConfigValueError(f"'{text}' is not an IP address; DNS names are not supported by ipsec-lab "
                                   f"(the lab has no resolver), write the address") from None
        return cls(text, address, address, address.max_prefixlen, address.version)

    @property
    def is_any(self) -> bool:
        return self.first is None

    @property
    def is_host(self) -> bool:
        """A single address (as initiator, the first one is where IKE is sent to or from)."""
        return self.first is not None and self.first == self.last and self.prefixlen == self.first.max_prefixlen \
            and "/" not in self.text

    def match(self, address: str | IPAddress) -> int:
        """0 if `address` is not covered, else a quality: exact address > longer prefix > range/any
        (strongSwan ike_cfg.c match)."""
        ip = ipaddress.ip_address(address)
        if self.first is None:
            return 1 if self.version in (None, ip.version) else 0
        assert self.last is not None  # parse sets both ends or neither
        if ip.version != self.first.version or not int(self.first) <= int(ip) <= int(self.last):
            return 0
        if self.is_host:
            return ip.max_prefixlen + 1
        return (self.prefixlen + 1) if self.prefixlen is not None else 1

    def __str__(self) -> str:
        return self.text


def parse_addrs(text: str) -> list[HostSpec]:
    """`local_addrs` / `remote_addrs`: comma-separated HostSpecs."""
    return [HostSpec.parse(item) for item in _split_list(text)]


def _any_hosts() -> list[HostSpec]:
    return [HostSpec.parse("%any")]


# ---------------------------------------------------------------- traffic selectors

# IANA protocol numbers for the names swanctl.conf users write in [proto/port]
_PROTOCOLS = {"icmp": 1, "tcp": 6, "udp": 17, "gre": 47, "esp": 50, "ah": 51, "icmpv6": 58, "ipv6-icmp": 58,
              "sctp": 132, "udplite": 136}


@dataclass(frozen=True)
class DynamicTrafficSelector:
    """swanctl.conf `dynamic`: the SA's own (outer or virtual) address, narrowed to a protocol
    and ports if given, e.g. `dynamic[udp/500]`."""

    ip_protocol: int = 0
    start_port: int = 0
    end_port: int = 65535

    def resolve(self, address: str | IPAddress) -> TrafficSelector:
        ip = ipaddress.ip_address(address)
        return TrafficSelector(ip, ip, self.ip_protocol, self.start_port, self.end_port)

    def __str__(self) -> str:
        return "dynamic" + _proto_port_text(self.ip_protocol, self.start_port, self.end_port)


DYNAMIC = DynamicTrafficSelector()

Selector = TrafficSelector | DynamicTrafficSelector


def _proto_port_text(protocol: int, start: int, end: int) -> str:
    if not protocol and (start, end) == (0, 65535):
        return ""
    ports = "" if (start, end) == (0, 65535) else ("/opaque" if (start, end) == (65535, 0) else
                                                    f"/{start}" if start == end else f"/{start}-{end}")
    return f"[{protocol}{ports}]"


def _parse_proto_port(spec: str, whole: str) -> tuple[int, int, int]:
    proto_text, slash, port_text = spec.partition("/")
    proto_text = proto_text.strip().lower()
    if proto_text in ("", "%any", "any"):
        protocol = 0
    elif proto_text.isdigit() and int(proto_text) <= 255:
        protocol = int(proto_text)
    elif proto_text in _PROTOCOLS:
        protocol = _PROTOCOLS[proto_text]
    else:
        raise ConfigValueError(f"traffic selector '{whole}': unknown protocol '{proto_text}' "
                               f"(write a number 0-255 or one of {', '.join(_PROTOCOLS)})")
    start, end = 0, 65535
    port_text = port_text.strip().lower()
    if slash and port_text not in ("", "%any"):
        if protocol in (1, 58):
            raise ConfigValueError(f"traffic selector '{whole}': ICMP type/code selectors are not supported "
                                   f"by ipsec-lab; leave out the port")
        if port_text == "opaque":
            # RFC 4301 §4.4.1.3 OPAQUE ports
            start, end = 65535, 0
        else:
            match = re.fullmatch(r"(\d+)(?:-(\d+))?", port_text)
            if not match:
                raise ConfigValueError(f"traffic selector '{whole}': port '{port_text}' must be a number, a range "
                                       f"like 1024-2047 or opaque (service names are not supported)")
            start = int(match.group(1))
            end = int(match.group(2)) if match.group(2) else start
            if end > 65535 or start > end:
                raise ConfigValueError(f"traffic selector '{whole}': ports must be 0-65535, low to high")
    return protocol, start, end


def _parse_selector(item: str) -> list[Selector]:
    whole = item
    protocol, start_port, end_port = 0, 0, 65535
    if "[" in item:
        base, _, rest = item.partition("[")
        if not rest.endswith("]"):
            raise ConfigValueError(f"traffic selector '{whole}': the [protocol/port] part must end with ']'")
        protocol, start_port, end_port = _parse_proto_port(rest[:-1], whole)
        item = base.strip()
    if item == "dynamic":
        return [DynamicTrafficSelector(protocol, start_port, end_port)]
    if not item:
        raise ConfigValueError("empty traffic selector: remove the extra comma")
    if item in ("%any", "%any4", "%any6"):
        nets = {"%any4": ["0.0.0.0/0"], "%any6": ["::/0"]}.get(item, ["0.0.0.0/0", "::/0"])
        item_nets = [ipaddress.ip_network(n) for n in nets]
        return [TrafficSelector(n.network_address, n.broadcast_address, protocol, start_port, end_port)
                for n in item_nets]
    if "-" in item and "/" not in item:
        first_text, _, last_text = item.partition("-")
        try:
            first, last = ipaddress.ip_address(first_text.strip()), ipaddress.ip_address(last_text.strip())
        except ValueError:
            raise ConfigValueError(f"traffic selector '{whole}': '{item}' is not an address range") from None
        if first.version != last.version or int(first) > int(last):
            raise ConfigValueError(f"traffic selector '{whole}': range must go from low to high in one family")
        return [TrafficSelector(first, last, protocol, start_port, end_port)]
    try:
        net = ipaddress.ip_network(item, strict=False)
    except ValueError:
        raise ConfigValueError(f"traffic selector '{whole}' is not a subnet (10.1.0.0/24), address, range, "
                               f"%any or dynamic") from None
    return [TrafficSelector(net.network_address, net.broadcast_address, protocol, start_port, end_port)]


def parse_traffic_selectors(text: str) -> list[Selector]:
    """`local_ts` / `remote_ts` (swanctl.conf(5)): comma-separated subnets, addresses, ranges,
    `%any`, `%any4`, `%any6` or `dynamic`, each optionally followed by `[protocol/port]`."""
    out: list[Selector] = []
    for item in _split_list(text):
        out.extend(_parse_selector(item))
    return out


Addresses = str | IPAddress | Sequence[str | IPAddress] | None


def _resolve_selectors(selectors: Iterable[Selector], address: Addresses) -> list[TrafficSelector]:
    """`selectors` with `dynamic` replaced by `address`, or by each of several (a client's IPv4
    and IPv6 virtual IPs: one selector each, as strongSwan resolves `dynamic`)."""
    addresses = [address] if isinstance(address, (str, ipaddress.IPv4Address, ipaddress.IPv6Address)) \
        else list(address or [])
    out = []
    for selector in selectors:
        if isinstance(selector, DynamicTrafficSelector):
            if not addresses:
                raise ConfigValueError("a 'dynamic' traffic selector needs the SA's address")
            out += [selector.resolve(a) for a in addresses]
        else:
            out.append(selector)
    return out


def transport_nat_selectors(selectors: Iterable[Any], address: str | IPAddress) -> list[TrafficSelector]:
    """RFC 7296 §2.23.1 (transport mode with a NAT on that side): `selectors` with their IP
    address replaced by `address`, the IKE SA's address of that side; protocol and ports kept."""
    ip = ipaddress.ip_address(address)
    return [TrafficSelector(ip, ip, ts.ip_protocol, ts.start_port, ts.end_port) for ts in selectors
            if isinstance(ts, TrafficSelector) and ts.start_addr.version == ip.version]


def selector_address(selectors: Iterable[Any]) -> str | None:
    """The one IP address all of `selectors` name (RFC 7296 §2.23.1: transport mode selectors
    have exactly one), or None."""
    addresses = {(ts.start_addr, ts.end_addr) for ts in selectors if isinstance(ts, TrafficSelector)}
    if len(addresses) != 1:
        return None
    start, end = addresses.pop()
    return str(start) if start == end else None


# ---------------------------------------------------------------- auth, child, IKE


@dataclass
class AuthConfig:
    """One authentication round of one side (swanctl.conf `local` / `remote` section).

    `id` None means not configured: locally strongSwan then uses the certificate's subject or the
    IP address (`identity_for`), remotely any identity is accepted. Local `certs` are our own
    certificates (the first is sent); remote `certs` pin the peer's certificate and `cacerts`
    are the trust anchors for it.
    """

    method: AuthClass = AuthClass.PUBKEY
    id: Identity | None = None
    certs: list[x509.Certificate] = field(default_factory=list)
    cacerts: list[x509.Certificate] = field(default_factory=list)
    eap_id: Identity | None = None  # EAP identity: ours (local), or whom to ask for one (remote; %any: anyone)
    # local: the identity the EAP-(T)TLS server's certificate must name, if not the IKE peer's (an AAA server)
    aaa_id: Identity | None = None
    # raw public keys (swanctl.conf pubkeys, RFC 7670): ours to sign with (local), or the keys the
    # peer's signature must verify with, no certificate needed (remote); public key objects
    pubkeys: list[Any] = field(default_factory=list)
    # remote: what a certificate without a CRL at hand gets (swanctl.conf(5) revocation):
    # relaxed passes it, ifuri refuses it when a CRL URI is known, strict always refuses it
    revocation: str = "relaxed"

    def __post_init__(self) -> None:
        self.method = _enum(AuthClass, self.method, "auth")

    def identity_for(self, address: str | IPAddress | None = None) -> Identity:
        """The identity this side uses: `id`, else the first certificate's subject DN, else the
        IP address, else `%any` (strongSwan vici_config.c / ike_auth.c defaults)."""
        if self.id is not None:
            return self.id
        if self.certs:
            return Identity.from_dn(self.certs[0].subject)
        if address is not None:
            return Identity.from_address(address)
        return Identity.any()

    def match_identity(self, identity: Identity | None) -> IdMatch:
        """How well a received identity fits this round: against `id` if configured, else against
        the pinned certificates, else ANY (strongSwan backend_manager.c get_peer_match)."""
        if identity is None:
            return IdMatch.ANY
        if self.id is not None:
            return identity.matches(self.id)
        if self.certs:
            return max(certificate_matches(cert, identity) for cert in self.certs)
        return IdMatch.ANY


def _default_esp_proposals() -> list[Proposal]:
    # swanctl.conf(5) esp_proposals [default]; expansion from lab.ike.proposals (strongSwan vici_config.c)
    return parse_esp_proposals("default")


def _default_ike_proposals() -> list[Proposal]:
    # swanctl.conf(5) proposals [default]; expansion from lab.ike.proposals (strongSwan proposal.c)
    return parse_ike_proposals("default")


def _check_implemented(key: str, proposals: list[Proposal]) -> None:
    try:
        check_implemented(proposals)
    except ProposalError as exc:
        raise ConfigValueError(f"{key} {exc}") from None


def _percent_more(value: int) -> int:
    # strongSwan vici_config.c check_lifetimes: hard lifetime defaults to soft + 10%
    return value * 110 // 100


@dataclass
class ChildConfig:
    """A CHILD_SA configuration (swanctl.conf `children.<child>`). Times in seconds.

    `life_time` defaults to `rekey_time` + 10%, `rand_time` to `life_time - rekey_time`; the
    same rules apply to bytes and packets (0 = no volume limit). Defaults are computed when
    the object is created.
    """

    name: str
    local_ts: list[Selector] = field(default_factory=lambda: [DYNAMIC])
    remote_ts: list[Selector] = field(default_factory=lambda: [DYNAMIC])
    esp_proposals: list[Proposal] = field(default_factory=_default_esp_proposals)
    ah_proposals: list[Proposal] = field(default_factory=list)
    mode: ChildMode = ChildMode.TUNNEL
    rekey_time: int = 3600
    life_time: int | None = None
    rand_time: int | None = None
    rekey_bytes: int = 0
    life_bytes: int | None = None
    rand_bytes: int | None = None
    rekey_packets: int = 0
    life_packets: int | None = None
    rand_packets: int | None = None
    start_action: SaAction = SaAction.NONE
    close_action: SaAction = SaAction.NONE
    dpd_action: SaAction = SaAction.NONE
    replay_window: int = 32
    copy_df: bool = True
    copy_ecn: bool = True
    copy_dscp: str = "out"
    # swanctl.conf(5) updown: a shell command line the daemon runs on every CHILD_SA up and
    # down with strongSwan's PLUTO_* environment (lab.daemon.updown); hostaccess sets
    # PLUTO_HOST_ACCESS=1 for it
    updown: str | None = None
    hostaccess: bool = False

    def __post_init__(self) -> None:
        self.mode = _enum(ChildMode, self.mode, "mode")
        self.start_action = _enum(SaAction, self.start_action, "start_action")
        self.close_action = _enum(SaAction, self.close_action, "close_action")
        self.dpd_action = _enum(SaAction, self.dpd_action, "dpd_action")
        if self.mode.is_shunt and self.start_action == SaAction.START:
            raise ConfigValueError(f"mode = {self.mode} makes a shunt policy, not an SA: start_action = trap installs "
                                   f"it, start has nothing to negotiate")
        if self.copy_dscp not in ("out", "in", "yes", "no"):
            raise ConfigValueError(f"copy_dscp must be one of out, in, yes, no, not {self.copy_dscp!r}")
        for key in ("esp_proposals", "ah_proposals"):
            _check_implemented(key, getattr(self, key))
        if not 0 <= self.replay_window <= 2 ** 32 - 1:
            raise ConfigValueError(f"replay_window {self.replay_window} must be 0 (off) or a positive window size")
        for kind in ("time", "bytes", "packets"):
            rekey = getattr(self, f"rekey_{kind}")
            life = getattr(self, f"life_{kind}")
            if life is None:
                life = _percent_more(rekey)
                setattr(self, f"life_{kind}", life)
            if rekey and life and life < rekey:
                raise ConfigValueError(f"life_{kind} ({life}) is below rekey_{kind} ({rekey}): the CHILD_SA would "
                                       f"expire before it is rekeyed; raise life_{kind} or lower rekey_{kind}")
            if getattr(self, f"rand_{kind}") is None:
                # strongSwan vici_config.c check_lifetimes: jitter defaults to hard - soft
                setattr(self, f"rand_{kind}", life - min(life, rekey))

    @property
    def ipsec_proposals(self) -> list[Proposal]:
        """What the CHILD_SA negotiates: AH when `ah_proposals` is set (swanctl.conf(5)), else ESP."""
        return self.ah_proposals or self.esp_proposals

    def local_selectors(self, address: Addresses = None) -> list[TrafficSelector]:
        """`local_ts` with `dynamic` replaced by `address` (our outer or virtual IPs)."""
        return _resolve_selectors(self.local_ts, address)

    def remote_selectors(self, address: Addresses = None) -> list[TrafficSelector]:
        """`remote_ts` with `dynamic` replaced by `address` (the peer's outer or virtual IPs)."""
        return _resolve_selectors(self.remote_ts, address)


@dataclass
class IkeConfig:
    """An IKE connection (swanctl.conf `connections.<conn>`). Times in seconds.

    `rekey_time` defaults to 4 h, or to 0 (no rekeying) when `reauth_time` is set; `over_time`
    to 10% of the longer of the two, `rand_time` to `over_time`. Only IKEv2 (`version` 2; 0,
    strongSwan's "any", is taken as 2); `local`/`remote` are the first authentication round,
    `extra_local`/`extra_remote` the ones after it (RFC 4739). `mobike` (RFC 4555) is on by
    default, as in strongSwan.
    """

    name: str
    version: int = 2
    local_addrs: list[HostSpec] = field(default_factory=_any_hosts)
    remote_addrs: list[HostSpec] = field(default_factory=_any_hosts)
    local_port: int = 500
    remote_port: int = 500
    proposals: list[Proposal] = field(default_factory=_default_ike_proposals)
    local: AuthConfig = field(default_factory=AuthConfig)
    remote: AuthConfig = field(default_factory=AuthConfig)
    children: dict[str, ChildConfig] = field(default_factory=dict)
    # RFC 4739: the rounds after the first (swanctl.conf local-2, remote-2, ...)
    extra_local: list[AuthConfig] = field(default_factory=list)
    extra_remote: list[AuthConfig] = field(default_factory=list)
    encap: bool = False
    mobike: bool = True
    dpd_delay: int = 0
    dpd_timeout: int = 0
    rekey_time: int | None = None
    over_time: int | None = None
    rand_time: int | None = None
    reauth_time: int = 0
    pools: list[str] = field(default_factory=list)
    vips: list[str] = field(default_factory=list)
    fragmentation: Fragmentation = Fragmentation.YES
    keyingtries: int = 1
    send_certreq: bool = True
    send_cert: SendCert = SendCert.IFASKED
    unique: Unique = Unique.NO
    # RFC 9329 (not strongSwan's: swanctl has no TCP encapsulation keys)
    tcp: TcpEncap = TcpEncap.NO
    tcp_port: int = 4500
    tcp_fallback_time: int = 3
    profile: str = ""  # ipsec-lab's own: a client profile of lab.ike.profiles ("windows", "windows-dh2048")
    # RFC 8784 postquantum preshared key (lab.ike.ppk): its PPK_ID, and whether the SA may do without
    ppk_id: Identity | None = None
    ppk_required: bool = False

    def __post_init__(self) -> None:
        try:
            client_profile(self.profile)
        except ValueError as err:
            raise ConfigValueError(str(err)) from None
        if self.version == 0:
            self.version = 2
        if self.version == 1:
            raise ConfigValueError("IKEv1 (version = 1) is not supported by ipsec-lab; use version = 2")
        if self.version != 2:
            raise ConfigValueError(f"version must be 2 (or 0, meaning any), not {self.version}")
        for port_name in ("local_port", "remote_port", "tcp_port"):
            port = getattr(self, port_name)
            if not 1 <= port <= 65535:
                raise ConfigValueError(f"{port_name} {port} must be 1-65535")
        self.fragmentation = _enum(Fragmentation, self.fragmentation, "fragmentation")
        self.send_cert = _enum(SendCert, self.send_cert, "send_cert")
        self.unique = _enum(Unique, self.unique, "unique")
        self.tcp = _enum(TcpEncap, self.tcp, "tcp")
        if self.keyingtries < 0:
            raise ConfigValueError("keyingtries must be 0 (forever) or more")
        if self.rekey_time is None:
            # swanctl.conf(5) rekey_time [4h]: zero when reauth_time is configured
            self.rekey_time = 0 if self.reauth_time else 4 * 3600
        if self.over_time is None:
            # swanctl.conf(5) over_time [10% of rekey_time/reauth_time]
            self.over_time = max(self.rekey_time, self.reauth_time) // 10
        if self.rand_time is None:
            # swanctl.conf(5) rand_time [over_time]
            self.rand_time = self.over_time
        if not self.proposals:
            raise ConfigValueError("an IKE connection needs at least one proposal")
        _check_implemented("proposals", self.proposals)

    def match_local(self, address: str | IPAddress) -> int:
        """0 if `address` is not one of `local_addrs`, else the quality of the best match."""
        return max(spec.match(address) for spec in self.local_addrs)

    def match_remote(self, address: str | IPAddress) -> int:
        """0 if `address` is not one of `remote_addrs`, else the quality of the best match."""
        return max(spec.match(address) for spec in self.remote_addrs)

    def initiator_remote_address(self) -> IPAddress | None:
        """The address to initiate to: the first single address in `remote_addrs` (swanctl.conf(5))."""
        return next((spec.first for spec in self.remote_addrs if spec.is_host), None)

    def initiator_local_address(self) -> IPAddress | None:
        """The address to initiate from, or None to let routing choose."""
        return next((spec.first for spec in self.local_addrs if spec.is_host), None)

    def local_identity(self, address: str | IPAddress | None = None) -> Identity:
        """The IDi/IDr we send (see `AuthConfig.identity_for`)."""
        return self.local.identity_for(address)

    @property
    def local_rounds(self) -> list[AuthConfig]:
        """Our authentication rounds in order (RFC 4739 §3: more than one needs the peer's
        MULTIPLE_AUTH_SUPPORTED)."""
        return [self.local, *self.extra_local]

    @property
    def remote_rounds(self) -> list[AuthConfig]:
        return [self.remote, *self.extra_remote]

    @property
    def client_profile(self) -> ClientProfile | None:
        """The client profile this connection initiates as, None for ours."""
        return client_profile(self.profile)

    @property
    def remote_identity(self) -> Identity:
        """The identity we expect from the peer (`%any` when not configured)."""
        return self.remote.id if self.remote.id is not None else Identity.any()


# ---------------------------------------------------------------- secrets and pools


@dataclass
class SharedKey:
    """An IKE pre-shared key (swanctl.conf `secrets.ike<suffix>`). No ids: it matches anyone.
    An EAP secret may carry `totp`, the base32 secret of the user's authenticator app (RFC 6238),
    whose current code EAP-GTC sends after the password."""

    name: str
    secret: bytes = field(repr=False)
    ids: list[Identity] = field(default_factory=list)
    totp: str | None = field(default=None, repr=False)

    def match(self, local_id: Identity | None, remote_id: Identity | None) -> tuple[int, int]:
        """(match of local_id, match of remote_id) against the owners, strongSwan mem_cred.c has_owner."""
        owners = self.ids or [Identity.any()]
        mine = best_match(local_id, owners) if local_id is not None else IdMatch.NONE
        other = best_match(remote_id, owners) if remote_id is not None else IdMatch.NONE
        return int(mine), int(other)


@dataclass
class PrivateKey:
    """A loaded private key (swanctl's private/, rsa/, ecdsa/, pkcs8/ folders) and its file."""

    file: str
    key: Any = field(repr=False)

    def public_key_der(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        der: bytes = self.key.public_key().public_bytes(serialization.Encoding.DER,
                                                        serialization.PublicFormat.SubjectPublicKeyInfo)
        return der


@dataclass
class Secrets:
    """swanctl.conf `secrets`: IKE pre-shared keys and loaded private keys."""

    ike: list[SharedKey] = field(default_factory=list)
    private_keys: list[PrivateKey] = field(default_factory=list)
    eap: list[SharedKey] = field(default_factory=list)  # swanctl.conf secrets.eap<suffix>
    ppk: list[SharedKey] = field(default_factory=list)  # swanctl.conf secrets.ppk<suffix> (RFC 8784)

    def find_ppk(self, ppk_id: bytes) -> bytes | None:
        """The postquantum preshared key whose id is `ppk_id` (the PPK_ID octets: an id's encoding,
        as strongSwan sends it); None if there is none."""
        for key in reversed(self.ppk):
            if any(owner.to_payload().data == ppk_id for owner in key.ids):
                return key.secret
        return None

    def find_eap(self, local_id: Identity | None, remote_id: Identity | None) -> bytes | None:
        """The EAP secret (password) between `local_id` and `remote_id`, chosen like `find_psk`."""
        key = self.find_eap_key(local_id, remote_id)
        return None if key is None else key.secret

    def find_eap_key(self, local_id: Identity | None, remote_id: Identity | None) -> SharedKey | None:
        """The EAP secret entry (password and TOTP secret) chosen like `find_psk`."""
        return Secrets(ike=self.eap).find_shared_key(local_id, remote_id)

    def find_shared_key(self, local_id: Identity | None, remote_id: Identity | None) -> SharedKey | None:
        """The PSK for an IKE SA between `local_id` and `remote_id`, chosen like strongSwan's
        credential_manager.c get_shared: a key qualifies if either id matches one of its owners;
        the best match of the remote id wins, then the best match of the local id; on a tie the
        key defined last wins (vici inserts newer keys first)."""
        found, best = None, (int(IdMatch.NONE), int(IdMatch.NONE))
        for key in reversed(self.ike):
            mine, other = key.match(local_id, remote_id)
            if (local_id is not None or remote_id is not None) and not mine and not other:
                continue
            if other > best[1] or (other == best[1] and mine > best[0]):
                found, best = key, (mine, other)
            if best == (IdMatch.PERFECT, IdMatch.PERFECT):
                break
        return found

    def find_psk(self, local_id: Identity | None, remote_id: Identity | None) -> bytes | None:
        """The pre-shared key octets for `find_shared_key`, or None."""
        key = self.find_shared_key(local_id, remote_id)
        return None if key is None else key.secret

    def private_key_for(self, certificate: x509.Certificate | Any) -> PrivateKey | None:
        """The loaded private key whose public key is the certificate's (or is the public key given)."""
        from cryptography.hazmat.primitives import serialization

        public = certificate.public_key() if isinstance(certificate, x509.Certificate) else certificate
        wanted = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return next((k for k in self.private_keys if k.public_key_der() == wanted), None)


def parse_pool_addrs(text: str) -> tuple[IPAddress, IPAddress, ipaddress.IPv4Network | ipaddress.IPv6Network | None]:
    """(first, last, network) of a pool's `addrs`: a CIDR subnet or a range `first-last`.
    A subnet skips its network address (when given as the base) and its last address, as
    strongSwan's mem_pool.c does for subnets of more than two addresses."""
    text = text.strip()
    if "-" in text and "/" not in text:
        spec = HostSpec.parse(text)
        assert spec.first is not None and spec.last is not None  # a range names both ends
        return spec.first, spec.last, None
    try:
        base = ipaddress.ip_interface(text if "/" in text else text + ("/32" if ":" not in text else "/128"))
    except ValueError:
        raise ConfigValueError(f"'{text}' is neither a CIDR subnet (10.3.0.0/24, fd00:10::/120) nor a range "
                               f"(10.3.0.1-10.3.0.50, fd00:10::1-fd00:10::ff)") from None
    net = base.network
    first, last = base.ip, net.broadcast_address
    if net.num_addresses > 2:
        if first == net.network_address:
            first = first + 1
        last = last - 1
    return first, last, net


@dataclass
class Pool:
    """A virtual IP pool (swanctl.conf `pools.<name>`): addresses first..last and DNS servers."""

    name: str
    first: IPAddress
    last: IPAddress
    dns: list[IPAddress] = field(default_factory=list)
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None

    @classmethod
    def parse(cls, name: str, addrs: str, dns: Iterable[str] = ()) -> Pool:
        first, last, network = parse_pool_addrs(addrs)
        servers = []
        for item in dns:
            try:
                servers.append(ipaddress.ip_address(item.strip()))
            except ValueError:
                raise ConfigValueError(f"DNS server '{item.strip()}' is not an IP address") from None
        return cls(name, first, last, servers, network)

    @property
    def size(self) -> int:
        return int(self.last) - int(self.first) + 1

    def __contains__(self, address: object) -> bool:
        try:
            ip = ipaddress.ip_address(address)  # type: ignore[arg-type]
        except ValueError:
            return False
        return ip.version == self.first.version and int(self.first) <= int(ip) <= int(self.last)


# ---------------------------------------------------------------- the whole configuration


@dataclass
class RadiusServer:
    """One server of the eap-radius plugin's `servers` section (strongSwan's names)."""
    name: str
    address: str
    secret: bytes = field(repr=False)
    auth_port: int = 1812
    acct_port: int = 1813
    preference: int = 0


@dataclass
class RadiusSettings:
    """strongSwan's eap-radius plugin settings (charon.plugins.eap-radius): its servers and its
    retransmission, timeout * base^try for `retransmit_tries` tries (strongSwan's defaults)."""
    servers: list[RadiusServer] = field(default_factory=list)
    retransmit_tries: int = 4
    retransmit_timeout: float = 2.0
    retransmit_base: float = 1.4
    nas_identifier: str = "strongSwan"
    accounting: bool = False  # Accounting-Request Start and Stop per IKE SA (RFC 2866)


@dataclass
class TtlsSettings:
    """strongSwan's eap-ttls plugin settings (charon.plugins.eap-ttls) ipsec-lab implements, and
    one of its own: `phase2_method` the inner EAP method our TTLS server asks for (md5 or
    mschapv2, strongSwan's default md5); `phase2_client` what our client sends in the tunnel:
    `eap` (inner EAP, as strongSwan's client), `pap` or `mschapv2` (RFC 5281 §11.2.5, §11.2.4 AVPs)."""
    phase2_method: str = "md5"
    phase2_client: str = "eap"


@dataclass
class Config:
    """Everything a gateway is configured with. `cacerts` are trust anchors for every
    connection (swanctl's x509ca/ folder), on top of each remote round's own `cacerts`; `crls`
    the certificate revocation lists a peer's certificate is checked against (x509crl/)."""

    connections: dict[str, IkeConfig] = field(default_factory=dict)
    secrets: Secrets = field(default_factory=Secrets)
    pools: dict[str, Pool] = field(default_factory=dict)
    cacerts: list[x509.Certificate] = field(default_factory=list)
    crls: list[x509.CertificateRevocationList] = field(default_factory=list)
    crl_uri_issuers: list[x509.Name] = field(default_factory=list)  # CAs with crl_uris (revocation = ifuri)
    radius: RadiusSettings | None = None  # for remote rounds with auth = eap-radius
    ttls: TtlsSettings = field(default_factory=TtlsSettings)  # for rounds with auth = eap-ttls

    def connections_for(self, local_addr: str | IPAddress | None = None, remote_addr: str | IPAddress | None = None,
                        *, remote_id: Identity | None = None, local_id: Identity | None = None) -> list[IkeConfig]:
        """Connections that fit, best first. Addresses must be in `local_addrs` / `remote_addrs`;
        ids, when given (the IDi and the optional IDr of IKE_AUTH), must match the remote and
        local rounds. Ranked by identity match, then address match, then definition order
        (strongSwan backend_manager.c weighs identities over addresses likewise)."""
        ranked = []
        for index, conn in enumerate(self.connections.values()):
            local_q = conn.match_local(local_addr) if local_addr is not None else 1
            remote_q = conn.match_remote(remote_addr) if remote_addr is not None else 1
            if not local_q or not remote_q:
                continue
            peer_other = conn.remote.match_identity(remote_id)
            peer_me = conn.local.match_identity(local_id)
            if not peer_other or not peer_me:
                continue
            ranked.append((-(int(peer_me) + int(peer_other)), -(local_q + remote_q), index, conn))
        ranked.sort(key=lambda entry: entry[:3])
        return [entry[3] for entry in ranked]

    def find_connection_for(self, local_addr: str | IPAddress | None = None,
                            remote_addr: str | IPAddress | None = None, *, remote_id: Identity | None = None,
                            local_id: Identity | None = None) -> IkeConfig | None:
        """The best of `connections_for`, or None. A responder calls it with the addresses of
        IKE_SA_INIT, and again in IKE_AUTH with the peer's IDi (and IDr, if sent) to narrow."""
        found = self.connections_for(local_addr, remote_addr, remote_id=remote_id, local_id=local_id)
        return found[0] if found else None

    def find_psk(self, local_id: Identity | None, remote_id: Identity | None) -> bytes | None:
        """`Secrets.find_psk`."""
        return self.secrets.find_psk(local_id, remote_id)

    def find_eap(self, local_id: Identity | None, remote_id: Identity | None) -> bytes | None:
        """`Secrets.find_eap`."""
        return self.secrets.find_eap(local_id, remote_id)

    def trust_anchors(self, conn: IkeConfig) -> list[x509.Certificate]:
        """The CA certificates a peer's certificate may chain to for `conn`: the remote round's
        `cacerts` if any (strongSwan then trusts only those), else all of `cacerts`."""
        return list(conn.remote.cacerts) if conn.remote.cacerts else list(self.cacerts)

