"""swanctl.conf into `lab.ike.config` objects: connections, children, secrets, pools, proposals.

    config = load_swanctl("scenarios/s2s/hosts/gwa/swanctl.conf")
    config.connections["s2s"].children["net"].remote_ts

Two stages. `lab.conf.settings` reads the syntax of strongswan.conf(5) into a tree of sections
and settings, each remembering its file and line (includes and section references resolved).
Then, here, the tree is converted: every key is checked against what ipsec-lab supports, and
every error, a `ConfigError`, reads `file:line: dotted.key: what is wrong and how to fix it`.

Stricter than swanctl on purpose (this is a teaching lab): unknown keys are errors that list
the supported keys; keys strongSwan has but ipsec-lab does not implement are errors saying so,
unless they carry the value that means "off". Certificates are read from the swanctl
directory's x509/ and x509ca/ folders (or absolute paths), certificate revocation lists from
x509crl/, raw public keys from pubkey/, private keys from private/, rsa/, ecdsa/ and pkcs8/, like
`swanctl --load-all`.
"""
from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from lab.ike.config import (
    AuthClass,
    AuthConfig,
    ChildConfig,
    ChildMode,
    Config,
    Fragmentation,
    IkeConfig,
    Pool,
    PrivateKey,
    RadiusServer,
    RadiusSettings,
    SaAction,
    Secrets,
    SendCert,
    SharedKey,
    TcpEncap,
    TtlsSettings,
    Unique,
    decode_secret,
    parse_addrs,
    parse_pool_addrs,
    parse_time,
    parse_traffic_selectors,
)
from lab.ike.eap.gtc import check_base32
from lab.ike.identity import Identity
from lab.ike.payloads import Proposal
from lab.ike.profiles import client_profile, windows_error
from lab.ike.proposals import check_implemented, parse_ah_proposals, parse_esp_proposals, parse_ike_proposals

from .settings import ConfigError, Section, Setting, all_refs, parse_settings, read_text, resolve_settings

__all__ = ["Authority", "ConfigError", "SwanctlConfig", "load_swanctl", "parse_swanctl"]


# ---------------------------------------------------------------- value converters


def _bool(value: str) -> bool:
    # strongSwan settings.c settings_value_as_bool
    lowered = value.lower()
    if lowered in ("yes", "true", "enabled", "1"):
        return True
    if lowered in ("no", "false", "disabled", "0"):
        return False
    raise ValueError(f"expected yes or no, not '{value}'")


def _uint(value: str) -> int:
    try:
        number = int(value, 16) if value.lower().startswith("0x") else int(value, 10)
    except ValueError:
        raise ValueError(f"expected a whole number, not '{value}'") from None
    if number < 0:
        raise ValueError(f"expected a number of 0 or more, not '{value}'")
    return number


def _port(value: str) -> int:
    port = _uint(value)
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} must be 1-65535")
    return port


def _choice(enum: type[Enum], **aliases: Any) -> Callable[[str], Any]:
    def convert(value: str) -> Any:
        lowered = value.lower()
        if lowered in aliases:
            return aliases[lowered]
        try:
            return enum(lowered)
        except ValueError:
            known = [m.value for m in enum] + sorted(aliases)
            raise ValueError(f"expected one of {', '.join(known)}, not '{value}'") from None
    return convert


def _version(value: str) -> int:
    number = _uint(value)
    if number == 1:
        raise ValueError("IKEv1 (version = 1) is not supported by ipsec-lab; use version = 2")
    if number not in (0, 2):
        raise ValueError(f"expected 2 (or 0, meaning any), not '{value}'")
    return 2


def _names(value: str) -> list[str]:
    names = [item.strip() for item in value.split(",")]
    if any(not item for item in names):
        raise ValueError("empty name in list: remove the extra comma")
    return names


_AUTH_CLASSES = ", ".join(m.value for m in AuthClass)


def _auth(value: str) -> AuthClass:
    lowered = value.lower()
    if lowered in {m.value for m in AuthClass}:
        return AuthClass(lowered)
    if lowered.startswith("eap"):
        raise ValueError(f"EAP method '{value[4:] or value}' (auth = {value}) is not implemented by ipsec-lab; "
                         f"it implements {_AUTH_CLASSES}")
    if lowered.startswith("xauth"):
        raise ValueError(f"XAuth (auth = {value}) is IKEv1 and not supported by ipsec-lab; use psk or pubkey")
    if lowered == "null":
        raise ValueError("NULL authentication (RFC 7619) is not supported by ipsec-lab; use psk or pubkey")
    if re.match(r"(ike:)?(pubkey|rsa|ecdsa|ed25519|ed448|bliss)", lowered):
        raise ValueError(f"signature constraints (auth = {value}) are not supported by ipsec-lab; "
                         f"write auth = pubkey")
    raise ValueError(f"expected one of {_AUTH_CLASSES}, not '{value}'")


_ACTION = _choice(SaAction, clear="none", route="trap", hold="trap", restart="start")


def _action(value: str) -> SaAction:
    if value.replace(" ", "").lower() in ("trap|start", "start|trap"):
        raise ValueError("start_action = trap|start is not supported by ipsec-lab; choose trap or start")
    return SaAction(_ACTION(value))


def _mode(value: str) -> ChildMode:
    lowered = value.lower()
    if lowered in ("transport_proxy", "beet"):
        raise ValueError(f"mode = {value} is not supported by ipsec-lab; use tunnel or transport")
    return _choice(ChildMode)(value)


def _copy_dscp(value: str) -> str:
    lowered = value.lower()
    if lowered not in ("out", "in", "yes", "no"):
        raise ValueError(f"expected one of out, in, yes, no, not '{value}'")
    return lowered


def _addresses(value: str) -> list[Any]:
    out = []
    for item in _names(value):
        try:
            out.append(ipaddress.ip_address(item))
        except ValueError:
            raise ValueError(f"'{item}' is not an IP address") from None
    return out


def _vips(value: str) -> list[str]:
    """0.0.0.0 and :: ask for any address of that family, an address for that one (RFC 7296
    §3.15.1: INTERNAL_IP4_ADDRESS, INTERNAL_IP6_ADDRESS); one per family, as a CP request holds."""
    addresses = _addresses(value)
    seen: dict[int, Any] = {}
    for address in addresses:
        if address.version in seen:
            raise ValueError(f"'{seen[address.version]}' and '{address}' are both IPv{address.version}: ipsec-lab "
                             f"asks for one virtual IP per family (0.0.0.0 for IPv4, :: for IPv6)")
        seen[address.version] = address
    return [str(a) for a in addresses]


def _nonempty_secret(value: str) -> bytes:
    secret = decode_secret(value)
    if not secret:
        raise ValueError("the secret is empty")
    return secret


def _is_default(default: str) -> Callable[[str], bool]:
    def check(value: str) -> bool:
        try:
            if default in ("yes", "no"):
                return _bool(value) == (default == "yes")
            if re.fullmatch(r"\d+s?", default):
                return parse_time(value) == parse_time(default)
        except ValueError:
            return False
        return value.lower() == default.lower()
    return check


def _address(value: str) -> Any:
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        raise ValueError(f"expected an IP address, not '{value}' (ipsec-lab does not resolve names)") from None


def _positive_float(value: str) -> float:
    try:
        number = float(value.strip().rstrip("s"))
    except ValueError:
        raise ValueError(f"expected a number, not '{value}'") from None
    if number <= 0:
        raise ValueError(f"expected a number above 0, not '{value}'")
    return number


# strongSwan's eap-radius.opt, the keys ipsec-lab implements
_RADIUS_KEYS: dict[str, Callable[[str], Any]] = {
    "secret": _nonempty_secret, "retransmit_tries": _uint, "retransmit_timeout": _positive_float,
    "retransmit_base": _positive_float, "nas_identifier": str, "accounting": _bool,
}
_RADIUS_SERVER_KEYS: dict[str, Callable[[str], Any]] = {
    "address": _address, "secret": _nonempty_secret, "auth_port": _port, "acct_port": _port, "preference": _uint,
}


def _ike_proposals(value: str) -> list[Proposal]:
    return check_implemented(parse_ike_proposals(value))


def _esp_proposals(value: str) -> list[Proposal]:
    return check_implemented(parse_esp_proposals(value))


def _ah_proposals(value: str) -> list[Proposal]:
    return check_implemented(parse_ah_proposals(value))


def _profile(value: str) -> str:
    client_profile(value)  # ValueError naming the profiles there are
    return value


def _updown(value: str) -> str:
    # swanctl.conf(5) children.<child>.updown: a command line run by /bin/sh, arguments allowed
    command = value.strip()
    if not command:
        raise ValueError("updown needs a command line, e.g. updown = /usr/lib/ipsec/_updown iptables")
    return command


def _never(_: str) -> bool:
    return False


# Unsupported strongSwan keys: (accepted if the value means "off", what the feature is)
_Unsupported = dict[str, tuple[Callable[[str], bool], str]]

_CONN_KEYS: dict[str, Callable[[str], Any]] = {
    "version": _version,
    "local_addrs": parse_addrs,
    "remote_addrs": parse_addrs,
    "local_port": _port,
    "remote_port": _port,
    "proposals": _ike_proposals,
    "encap": _bool,
    "mobike": _bool,
    "dpd_delay": parse_time,
    "dpd_timeout": parse_time,
    "rekey_time": parse_time,
    "over_time": parse_time,
    "rand_time": parse_time,
    "reauth_time": parse_time,
    "pools": _names,
    "vips": _vips,
    "fragmentation": _choice(Fragmentation),
    "keyingtries": _uint,
    "send_certreq": _bool,
    "send_cert": _choice(SendCert),
    "unique": _choice(Unique),
    # ipsec-lab's own (RFC 9329; strongSwan's swanctl.conf has none): like libreswan's enable-tcp
    "tcp": _choice(TcpEncap),
    "tcp_port": _port,
    "tcp_fallback_time": parse_time,
    "profile": _profile,  # ipsec-lab's own (README, lab/ike/profiles.py): initiate as a known client does
    "ppk_id": Identity.parse,  # RFC 8784 (lab/ike/ppk.py)
    "ppk_required": _bool,
}
_CONN_UNSUPPORTED: _Unsupported = {
    "aggressive": (_is_default("no"), "IKEv1 Aggressive Mode"),
    "pull": (_is_default("yes"), "Mode Config push mode"),
    "dscp": (_is_default("000000"), "DSCP marking of IKE packets"),
    "childless": (_never, "childless IKE_SA initiation (RFC 6023)"),
    "if_id_in": (_is_default("0"), "XFRM interface ids"),
    "if_id_out": (_is_default("0"), "XFRM interface ids"),
    "mediation": (_is_default("no"), "the IKEv2 Mediation Extension"),
    "mediated_by": (_never, "the IKEv2 Mediation Extension"),
    "mediation_peer": (_never, "the IKEv2 Mediation Extension"),
}

_LOCAL_KEYS: dict[str, Callable[[str], Any]] = {
    "auth": _auth, "id": Identity.parse, "certs": _names, "pubkeys": _names, "round": _uint, "eap_id": Identity.parse,
    "aaa_id": Identity.parse,
}
_AUTHORITY_KEYS: dict[str, Callable[[str], Any]] = {
    "cacert": str.strip, "file": str.strip, "crl_uris": _names, "ocsp_uris": _names, "cert_uri_base": str.strip,
}
_AUTHORITY_UNSUPPORTED: _Unsupported = {
    "handle": (_never, "CA certificates on a PKCS#11 token"),
    "slot": (_never, "CA certificates on a PKCS#11 token"),
    "module": (_never, "CA certificates on a PKCS#11 token"),
}
_TOKEN_UNSUPPORTED: _Unsupported = {
    "handle": (_never, "certificates on a PKCS#11 token"),
    "slot": (_never, "certificates on a PKCS#11 token"),
    "module": (_never, "certificates on a PKCS#11 token"),
}
_LOCAL_UNSUPPORTED: _Unsupported = {
    "xauth_id": (_never, "IKEv1 XAuth"),
}
def _revocation(value: str) -> str:
    value = value.strip().lower()
    if value not in ("strict", "ifuri", "relaxed"):
        raise ValueError(f"revocation = {value}: write strict, ifuri or relaxed (swanctl.conf(5))")
    return value


_REMOTE_KEYS: dict[str, Callable[[str], Any]] = {
    "auth": _auth, "id": Identity.parse, "certs": _names, "cacerts": _names, "pubkeys": _names, "round": _uint,
    "eap_id": Identity.parse, "revocation": _revocation,
}
_REMOTE_UNSUPPORTED: _Unsupported = {
    "groups": (_never, "authorization groups"),
    "cert_policy": (_never, "certificate policy constraints"),
    "ca_id": (_never, "CA identity constraints"),
}

_CHILD_KEYS: dict[str, Callable[[str], Any]] = {
    "local_ts": parse_traffic_selectors,
    "remote_ts": parse_traffic_selectors,
    "esp_proposals": _esp_proposals,
    "ah_proposals": _ah_proposals,
    "mode": _mode,
    "rekey_time": parse_time,
    "life_time": parse_time,
    "rand_time": parse_time,
    "rekey_bytes": _uint,
    "life_bytes": _uint,
    "rand_bytes": _uint,
    "rekey_packets": _uint,
    "life_packets": _uint,
    "rand_packets": _uint,
    "start_action": _action,
    "close_action": _action,
    "dpd_action": _action,
    "replay_window": _uint,
    "copy_df": _bool,
    "copy_ecn": _bool,
    "copy_dscp": _copy_dscp,
    "updown": _updown,
    "hostaccess": _bool,
}
_CHILD_UNSUPPORTED: _Unsupported = {
    "sha256_96": (_is_default("no"), "96-bit truncated HMAC-SHA-256"),
    "policies": (_is_default("yes"), "CHILD_SAs without policies"),
    "policies_fwd_out": (_is_default("no"), "outbound FWD policies"),
    "ipcomp": (_is_default("no"), "IPComp"),
    "inactivity": (_is_default("0"), "inactivity timeouts"),
    "reqid": (_is_default("0"), "fixed reqids"),
    "priority": (_is_default("0"), "fixed policy priorities"),
    "interface": (_never, "interface-bound policies"),
    "mark_in": (_is_default("0/0x00000000"), "marks"),
    "mark_in_sa": (_is_default("no"), "marks"),
    "mark_out": (_is_default("0/0x00000000"), "marks"),
    "set_mark_in": (_is_default("0/0x00000000"), "marks"),
    "set_mark_out": (_is_default("0/0x00000000"), "marks"),
    "if_id_in": (_is_default("0"), "XFRM interface ids"),
    "if_id_out": (_is_default("0"), "XFRM interface ids"),
    "label": (_never, "security labels"),
    "label_mode": (_is_default("system"), "security labels"),
    "tfc_padding": (_is_default("0"), "TFC padding"),
    "hw_offload": (_is_default("no"), "hardware offload"),
    "per_cpu_sas": (_is_default("no"), "per-CPU SAs (RFC 9611)"),
}

_RADIUS_UNSUPPORTED: _Unsupported = {
    "eap_start": (_is_default("no"), "an EAP-Start instead of the IKE identity"),
    "class_group": (_is_default("no"), "the Class attribute as a group"),
    "dae": (_never, "Dynamic Authorization Extensions (RFC 5176)"),
    "forward": (_never, "attribute forwarding"),
    "xauth": (_never, "XAuth over RADIUS (IKEv1)"),
}


def _choice_of(*names: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value.strip() not in names:
            raise ValueError(f"expected one of {', '.join(names)}, not '{value.strip()}'")
        return value.strip()
    return check


# strongSwan's eap-ttls.opt, the keys ipsec-lab implements, and phase2_client, ipsec-lab's own
_TTLS_KEYS: dict[str, Callable[[str], Any]] = {
    "phase2_method": _choice_of("md5", "mschapv2"), "phase2_client": _choice_of("eap", "pap", "mschapv2"),
}
_TTLS_UNSUPPORTED: _Unsupported = {
    "phase2_piggyback": (_is_default("no"), "the EAP-Identity request piggybacked on the TLS Finished"),
    "phase2_tnc": (_is_default("no"), "Trusted Network Connect after phase 2"),
    "request_peer_auth": (_is_default("no"), "client certificates in EAP-TTLS"),
    "fragment_size": (_is_default("1024"), "another EAP-TTLS fragment size"),
    "include_length": (_is_default("yes"), "EAP-TTLS packets without the TLS Message Length"),
    "max_message_count": (_is_default("32"), "another limit of EAP-TTLS packets"),
}

_POOL_UNSUPPORTED = ("nbns", "dhcp", "netmask", "server", "subnet", "split_include", "split_exclude")

# swanctl.conf(5) secrets: private key passphrase sections and the folder their `file` is in
_KEY_FOLDERS = {"private": "private", "rsa": "rsa", "ecdsa": "ecdsa", "pkcs8": "pkcs8"}
_SECRET_UNSUPPORTED = {
    "xauth": "XAuth secrets", "ntlm": "NTLM secrets",
    "pkcs12": "PKCS#12 containers", "token": "smartcard tokens",
}
_SECRET_PREFIXES = ("ike", "eap", "ppk", *_KEY_FOLDERS, *_SECRET_UNSUPPORTED)


# ---------------------------------------------------------------- tree -> objects


@dataclass
class SwanctlConfig(Config):
    """A loaded swanctl.conf: `lab.ike.config.Config` plus the files read and the swanctl
    directory certificates and keys came from."""

    files: list[str] = field(default_factory=list)
    swanctl_dir: str = "."
    export_keys: str | None = None  # the `ipsec-lab { export_keys = DIR }` section
    authorities: list[Authority] = field(default_factory=list)


@dataclass
class Authority:
    """An `authorities { NAME { ... } }` section: a CA certificate (a trust anchor, as if it were
    in x509ca/) and where its certificate revocation lists are; the daemon fetches those (file://,
    http://) when it starts (lab.daemon.crls). OCSP responders and cert_uri_base (hash-and-URL,
    RFC 7296 §3.6) are kept but not used: ipsec-lab checks revocation with CRLs only."""

    name: str
    cacert: x509.Certificate
    crl_uris: list[str] = field(default_factory=list)
    ocsp_uris: list[str] = field(default_factory=list)
    cert_uri_base: str | None = None
    where: str = ""  # file:line of the section, for the daemon's log


@dataclass
class _Anchor:
    file: str
    line: int | None
    key: str
    implicit: bool = False

    @property
    def note(self) -> str:
        return " (no auth is given here: strongSwan's default is auth = pubkey)" if self.implicit else ""

    def error(self, message: str) -> ConfigError:
        return ConfigError(message, file=self.file, line=self.line, key=self.key)


def _at(setting: Setting, path: str) -> _Anchor:
    return _Anchor(setting.file, setting.line, f"{path}.{setting.key}")


def _at_section(section: Section) -> _Anchor:
    return _Anchor(section.file, section.line, section.path)


class _Builder:
    def __init__(self, root: Section, swanctl_dir: str, files: list[str]) -> None:
        self.root = resolve_settings(root)
        self.dir = swanctl_dir
        self.files = files
        self.referenced = {ref.split(".")[0] for ref in all_refs(root)}
        self.passphrases: dict[str, tuple[bytes | None, _Anchor]] = {}

    # -------------------------------------------------------- helpers

    def _convert(self, setting: Setting, path: str, convert: Callable[[str], Any]) -> Any:
        try:
            return convert(setting.value or "")
        except ValueError as exc:
            raise _at(setting, path).error(str(exc)) from None

    def _keys(self, section: Section, known: dict[str, Callable[[str], Any]], unsupported: _Unsupported,
              what: str, special: dict[str, str] | None = None) -> dict[str, tuple[Any, Setting]]:
        out: dict[str, tuple[Any, Setting]] = {}
        for key, setting in section.settings.items():
            if special and key in special:
                raise _at(setting, section.path).error(special[key])
            if key in known:
                if setting.value is not None:
                    out[key] = (self._convert(setting, section.path, known[key]), setting)
                continue
            if key in unsupported:
                is_off, feature = unsupported[key]
                if setting.value is None or is_off(setting.value):
                    continue
                raise _at(setting, section.path).error(
                    f"{key} = {setting.value}: {feature} is not supported by ipsec-lab; remove the line")
            raise _at(setting, section.path).error(
                f"unknown key '{key}' in {what} (supported: {', '.join(known)})")
        return out

    # -------------------------------------------------------- top level

    def build(self) -> SwanctlConfig:
        for key, setting in self.root.settings.items():
            raise _Anchor(setting.file, setting.line, key).error(
                f"unknown top-level key '{key}'; swanctl.conf holds the sections connections, secrets and pools")
        for name, section in self.root.sections.items():
            if name not in ("connections", "secrets", "pools", "authorities", "ipsec-lab") and name not in self.referenced:
                raise _at_section(section).error(
                    f"unknown section '{name}'; swanctl.conf holds connections, secrets, pools and authorities "
                    f"(other top-level sections are allowed only as targets of 'name : {name}' references)")
        config = SwanctlConfig(files=list(self.files), swanctl_dir=self.dir)
        authorities = self.root.sections.get("authorities")
        if authorities is not None:
            config.authorities = self._authorities(authorities)
        ours = self.root.sections.get("ipsec-lab")
        if ours is not None:
            config.export_keys, config.radius, config.ttls = self._ipsec_lab(ours)
        secrets_section = self.root.sections.get("secrets")
        if secrets_section is not None:
            config.secrets = self._secrets(secrets_section)
        pools_section = self.root.sections.get("pools")
        if pools_section is not None:
            config.pools = self._pools(pools_section)
        connections = self.root.sections.get("connections")
        anchors: dict[str, dict[str, _Anchor]] = {}
        if connections is not None:
            for key, setting in connections.settings.items():
                raise _at(setting, "connections").error(
                    f"'{key} = ...' cannot stand directly in connections; put it inside a connection "
                    f"section such as connections {{ {key}-conn {{ ... }} }}")
            for name, section in connections.sections.items():
                config.connections[name], anchors[name] = self._connection(section)
        self._finish(config, anchors)
        return config

    def _authorities(self, section: Section) -> list[Authority]:
        """swanctl.conf(5) authorities.<name>: cacert (a file in x509ca/) or file (a path), the
        CRL and OCSP URIs and cert_uri_base; a PKCS#11 token (handle, slot, module) is refused."""
        for key, setting in section.settings.items():
            raise _at(setting, "authorities").error(f"'{key} = ...' cannot stand directly in authorities; put it "
                                                    f"inside an authority section such as authorities {{ my-ca {{ ... }} }}")
        found = []
        for name, sub in section.sections.items():
            for inner in sub.sections.values():
                raise _at_section(inner).error(f"an authority holds no sections; {inner.path} is not one of "
                                               f"cacert, file, crl_uris, ocsp_uris, cert_uri_base")
            values = self._keys(sub, _AUTHORITY_KEYS, _AUTHORITY_UNSUPPORTED, f"authorities.{name}")
            if ("cacert" in values) == ("file" in values):
                raise _at_section(sub).error("an authority needs its CA certificate: either cacert = <file in x509ca/> "
                                             "or file = <path>, not both")
            key = "cacert" if "cacert" in values else "file"
            path, setting = values[key]
            if not os.path.isabs(path):
                path = os.path.join(self.dir, "x509ca" if key == "cacert" else "", path)
            anchor = _at(setting, sub.path)
            certs = _read_certs(path, anchor)
            uris = values["crl_uris"][0] if "crl_uris" in values else []
            for uri in uris:
                if not re.match(r"(?i)(file|https?|ldap)://", uri):
                    raise _at(values["crl_uris"][1], sub.path).error(
                        f"'{uri}' is not a URI strongSwan fetches CRLs from (file://, http://, https:// or ldap://)")
            cert_uri_base = values["cert_uri_base"][0] if "cert_uri_base" in values else None
            found.append(Authority(name, certs[0], list(uris), list(values["ocsp_uris"][0]) if "ocsp_uris" in values
                                   else [], cert_uri_base, f"{setting.file}:{setting.line}"))
        return found

    def _ipsec_lab(self, section: Section) -> tuple[str | None, RadiusSettings | None, TtlsSettings]:
        """Settings of ipsec-lab's own that swanctl (which ignores unknown sections) never sees:
        `export_keys = DIR` writes Wireshark's key tables there, like the daemon's --export-keys;
        `eap-radius { ... }` and `eap-ttls { ... }` hold what strongSwan reads from strongswan.conf's
        charon.plugins.eap-radius and charon.plugins.eap-ttls sections, under the same names."""
        radius = None
        ttls = TtlsSettings()
        for name, sub in section.sections.items():
            if name == "eap-ttls":
                for child in sub.sections.values():
                    raise _at_section(child).error(f"unknown section '{child.name}' in eap-ttls")
                values = self._keys(sub, _TTLS_KEYS, _TTLS_UNSUPPORTED, "ipsec-lab.eap-ttls")
                for key, (value, _) in values.items():
                    setattr(ttls, key, value)
                continue
            if name != "eap-radius":
                raise _at_section(sub).error(f"unknown section '{name}' in ipsec-lab; it holds export_keys, "
                                             f"an eap-radius and an eap-ttls section")
            radius = self._eap_radius(sub)
        export = None
        for key, setting in section.settings.items():
            if key != "export_keys":
                raise _at(setting, "ipsec-lab").error(f"unknown key '{key}'; the ipsec-lab section holds export_keys, "
                                                      f"an eap-radius and an eap-ttls section")
            value = (setting.value or "").strip()
            if not value:
                raise _at(setting, "ipsec-lab").error("export_keys needs a directory")
            export = value if os.path.isabs(value) else os.path.join(self.dir, value)
        return export, radius, ttls

    def _eap_radius(self, section: Section) -> RadiusSettings:
        """strongSwan's eap-radius plugin settings: a default `secret`, the retransmission
        (retransmit_tries, retransmit_timeout, retransmit_base), nas_identifier, and
        servers { name { address secret auth_port acct_port preference } }."""
        values = self._keys(section, _RADIUS_KEYS, _RADIUS_UNSUPPORTED, "ipsec-lab.eap-radius")
        settings = RadiusSettings()
        for key in ("retransmit_tries", "retransmit_timeout", "retransmit_base", "nas_identifier", "accounting"):
            if key in values:
                setattr(settings, key, values[key][0])
        if settings.retransmit_tries < 1:
            raise _at(values["retransmit_tries"][1], section.path).error("retransmit_tries must be 1 or more")
        default_secret = values["secret"][0] if "secret" in values else None
        servers = section.sections.get("servers")
        for name, sub in section.sections.items():
            if name != "servers":
                raise _at_section(sub).error(f"unknown section '{name}' in eap-radius; it holds a servers section")
        if servers is None or not servers.sections:
            raise _at_section(section).error("eap-radius needs a server: add servers { primary { address = ...  "
                                             "secret = ... } }")
        for key, setting in servers.settings.items():
            raise _at(setting, servers.path).error(f"'{key} = ...' cannot stand directly in servers; write "
                                                   f"servers {{ name {{ address = ...  secret = ... }} }}")
        for name, sub in servers.sections.items():
            for child in sub.sections.values():
                raise _at_section(child).error(f"unknown section '{child.name}' in RADIUS server '{name}'")
            got = self._keys(sub, _RADIUS_SERVER_KEYS, {}, f"RADIUS server '{name}'")
            if "address" not in got:
                raise _at_section(sub).error(f"RADIUS server '{name}' has no address: add address = <its IP>")
            secret = got["secret"][0] if "secret" in got else default_secret
            if secret is None:
                raise _at_section(sub).error(f"RADIUS server '{name}' has no secret: add secret = ... (the secret "
                                             f"of its clients.conf entry for this gateway)")
            settings.servers.append(RadiusServer(name, str(got["address"][0]), secret,
                                                 got.get("auth_port", (1812,))[0], got.get("acct_port", (1813,))[0],
                                                 got.get("preference", (0,))[0]))
        return settings

    # -------------------------------------------------------- connections

    def _connection(self, section: Section) -> tuple[IkeConfig, dict[str, _Anchor]]:
        values = self._keys(section, _CONN_KEYS, _CONN_UNSUPPORTED, f"connection '{section.name}'")
        kwargs = {key: value for key, (value, _) in values.items()}
        anchors = {key: _at(setting, section.path) for key, (_, setting) in values.items()}
        rounds: dict[str, list[Section]] = {"local": [], "remote": []}
        children: dict[str, ChildConfig] = {}
        for name, sub in section.sections.items():
            if name == "children":
                for key, setting in sub.settings.items():
                    raise _at(setting, sub.path).error(
                        f"'{key} = ...' cannot stand directly in children; put it inside a child section")
                for child_name, child in sub.sections.items():
                    children[child_name] = self._child(child)
            elif name.startswith("local") or name.startswith("remote"):
                rounds["local" if name.startswith("local") else "remote"].append(sub)
            else:
                raise _at_section(sub).error(
                    f"unknown section '{name}' in connection '{section.name}' (supported: local, remote, children)")
        auth: dict[str, list[AuthConfig]] = {}
        for side in ("local", "remote"):
            if rounds[side]:
                built = [(self._auth_round(sub, side), index, sub) for index, sub in enumerate(rounds[side])]
                # swanctl.conf(5) local<suffix>.round: rounds sorted by it, else in the order written
                built.sort(key=lambda entry: (entry[0][2] if entry[0][2] is not None else entry[1], entry[1]))
                auth[side] = [entry[0][0] for entry in built]
                anchors[side] = built[0][0][1]
                for number, entry in enumerate(built[1:], start=2):
                    anchors[f"{side}-{number}"] = entry[0][1]
            else:
                auth[side] = [AuthConfig()]
                anchors[side] = _Anchor(section.file, section.line, f"{section.path}.{side}.auth", implicit=True)
        profile = client_profile(kwargs.get("profile", ""))
        if profile is not None:
            # the client's own proposals unless written out, as Set-VpnConnectionIPsecConfiguration would
            kwargs.setdefault("proposals", profile.ike_proposals())
            for child_section in (section.sections["children"].sections if "children" in section.sections else {}):
                if "esp_proposals" not in section.sections["children"].sections[child_section].settings:
                    children[child_section].esp_proposals = profile.esp_proposals()
        try:
            conn = IkeConfig(section.name, local=auth["local"][0], remote=auth["remote"][0],
                             extra_local=auth["local"][1:], extra_remote=auth["remote"][1:], children=children,
                             **kwargs)
        except ValueError as exc:
            raise _at_section(section).error(str(exc)) from None
        return conn, anchors

    def _cert_sections(self, section: Section, side: str) -> dict[str, list[x509.Certificate]]:
        """swanctl.conf(5) cert<suffix> { file = PATH } (and cacert<suffix> in a remote round): a
        certificate by its path, as certs = / cacerts = name one; handle, slot and module (a
        PKCS#11 token) are refused."""
        found: dict[str, list[x509.Certificate]] = {"certs": [], "cacerts": []}
        for name, sub in section.sections.items():
            kind = "cacerts" if name.startswith("cacert") else "certs" if name.startswith("cert") else None
            if kind is None or (kind == "cacerts" and side == "local"):
                raise _at_section(sub).error(f"unknown section '{name}' in {section.path}; a {side} round holds "
                                             + ("cert<suffix> sections" if side == "local"
                                                else "cert<suffix> and cacert<suffix> sections"))
            for inner in sub.sections.values():
                raise _at_section(inner).error(f"{sub.path} holds no sections, only file = PATH")
            values = self._keys(sub, {"file": str.strip}, _TOKEN_UNSUPPORTED, sub.path)
            if "file" not in values:
                raise _at_section(sub).error(f"{name} needs file = PATH (the certificate to load)")
            path, setting = values["file"]
            folder = "x509ca" if kind == "cacerts" else "x509"
            found[kind] += self._load_certs(path, folder, _at(setting, sub.path))
        return found

    def _auth_round(self, section: Section, side: str) -> tuple[AuthConfig, _Anchor, int | None]:
        from_sections = self._cert_sections(section, side)
        if side == "local":
            values = self._keys(section, _LOCAL_KEYS, _LOCAL_UNSUPPORTED, f"{side} authentication round",
                                special={"cacerts": "cacerts belongs in the remote section: it names the CAs the "
                                                    "peer's certificate must chain to"})
        else:
            values = self._keys(section, _REMOTE_KEYS, _REMOTE_UNSUPPORTED, f"{side} authentication round")
        auth = AuthConfig()
        if "auth" in values:
            auth.method = values["auth"][0]
        if "id" in values:
            auth.id = values["id"][0]
        if "revocation" in values:
            auth.revocation = values["revocation"][0]
        if "eap_id" in values:
            auth.eap_id = values["eap_id"][0]
            if not auth.method.is_eap:
                raise _at(values["eap_id"][1], section.path).error(
                    f"eap_id only applies to EAP authentication (auth = eap-...), not auth = {auth.method}")
        if "aaa_id" in values:
            auth.aaa_id = values["aaa_id"][0]
            if auth.method not in (AuthClass.EAP_TLS, AuthClass.EAP_TTLS, AuthClass.EAP):
                raise _at(values["aaa_id"][1], section.path).error(
                    f"aaa_id names the identity in the EAP server's certificate (auth = eap-tls or eap-ttls), "
                    f"not for auth = {auth.method}")
        if side == "remote" and auth.method == AuthClass.EAP:
            raise _at(values["auth"][1], section.path).error(
                "auth = eap on the remote side leaves the method open; as a server ipsec-lab asks for one: "
                "write eap-md5, eap-mschapv2, eap-tls or eap-ttls")
        if side == "remote" and auth.method == AuthClass.EAP_GTC:
            raise _at(values["auth"][1], section.path).error(
                "auth = eap-gtc is a client's method in ipsec-lab: a gateway checks the password and code "
                "through its RADIUS server (auth = eap-radius)")
        order = values["round"][0] if "round" in values else None
        for key, folder in (("certs", "x509"), ("cacerts", "x509ca")):
            if key in values:
                names, setting = values[key]
                anchor = _at(setting, section.path)
                certs = [cert for name in names for cert in self._load_certs(name, folder, anchor)]
                setattr(auth, key, certs)
        for key, certs in from_sections.items():
            if certs:
                setattr(auth, key, getattr(auth, key) + certs)
        if "pubkeys" in values:
            # swanctl.conf(5) pubkeys: raw public keys in pubkey/ (RFC 7670); strongSwan names the
            # key by the round's id, so ipsec-lab asks for one
            names, setting = values["pubkeys"]
            anchor = _at(setting, section.path)
            if auth.id is None:
                raise anchor.error("pubkeys needs id = ... in the same section: the identity the raw public key "
                                   "stands for (there is no certificate to take it from)")
            if auth.method not in (AuthClass.PUBKEY,):
                raise anchor.error(f"pubkeys only applies to auth = pubkey, not auth = {auth.method}")
            auth.pubkeys = [_read_public_key(self._path(name, "pubkey"), anchor) for name in names]
        if "auth" in values:
            return auth, _at(values["auth"][1], section.path), order
        return auth, _Anchor(section.file, section.line, f"{section.path}.auth", implicit=True), order

    def _child(self, section: Section) -> ChildConfig:
        for name, sub in section.sections.items():
            raise _at_section(sub).error(f"unknown section '{name}' in child '{section.name}'")
        values = self._keys(section, _CHILD_KEYS, _CHILD_UNSUPPORTED, f"child '{section.name}'")
        kwargs = {key: value for key, (value, _) in values.items()}
        try:
            return ChildConfig(section.name, **kwargs)
        except ValueError as exc:
            blamed = next((setting for key, (_, setting) in values.items() if str(exc).startswith(f"{key} ")), None)
            anchor = _at(blamed, section.path) if blamed is not None else _at_section(section)
            raise anchor.error(str(exc)) from None

    # -------------------------------------------------------- secrets and pools

    def _secrets(self, section: Section) -> Secrets:
        secrets = Secrets()
        for key, setting in section.settings.items():
            raise _at(setting, "secrets").error(
                f"'{key} = ...' cannot stand directly in secrets; write secrets {{ ike-x {{ secret = ... }} }}")
        for name, sub in section.sections.items():
            prefix = next((p for p in sorted(_SECRET_PREFIXES, key=len, reverse=True) if name.startswith(p)), None)
            if prefix is None:
                raise _at_section(sub).error(
                    f"unknown secret type '{name}': secret sections are named by type with an optional suffix, "
                    f"e.g. ike-s2s (supported types: ike, eap, ppk, {', '.join(_KEY_FOLDERS)})")
            if prefix in _SECRET_UNSUPPORTED:
                raise _at_section(sub).error(f"{_SECRET_UNSUPPORTED[prefix]} ({prefix}<suffix>) are not supported "
                                             f"by ipsec-lab")
            for child in sub.sections.values():
                raise _at_section(child).error(f"unknown section '{child.name}' in secret '{name}'")
            if prefix == "ike":
                secrets.ike.append(self._shared_key(sub))
            elif prefix == "eap":
                secrets.eap.append(self._shared_key(sub, "EAP"))
            elif prefix == "ppk":
                ppk_key = self._shared_key(sub, "PPK")
                if not ppk_key.ids:
                    raise _at_section(sub).error(f"PPK secret '{name}' has no id: add id = <its PPK_ID>, the "
                                                 f"ppk_id a connection names (RFC 8784)")
                secrets.ppk.append(ppk_key)
            else:
                self._passphrase(sub, _KEY_FOLDERS[prefix])
        return secrets

    def _shared_key(self, section: Section, kind: str = "IKE") -> SharedKey:
        secret = None
        ids = []
        totp = None
        for key, setting in section.settings.items():
            if key == "secret":
                if setting.value is not None:
                    secret = self._convert(setting, section.path, _nonempty_secret)
            elif key.startswith("id"):
                if setting.value is not None:
                    ids.append(self._convert(setting, section.path, Identity.parse))
            elif key == "totp" and kind == "EAP":
                # ipsec-lab's own (strongSwan has none): the authenticator app's secret, RFC 6238
                if setting.value is not None:
                    totp = self._convert(setting, section.path, check_base32)
            else:
                supported = "secret, id<suffix>, totp" if kind == "EAP" else "secret, id<suffix>"
                raise _at(setting, section.path).error(
                    f"unknown key '{key}' in {kind} secret '{section.name}' (supported: {supported})")
        if secret is None:
            raise _at_section(section).error(f"{kind} secret '{section.name}' has no secret: add secret = \"...\"")
        return SharedKey(section.name, secret, ids, totp)

    def _passphrase(self, section: Section, folder: str) -> None:
        file_setting = section.settings.get("file")
        for key, setting in section.settings.items():
            if key not in ("file", "secret"):
                raise _at(setting, section.path).error(
                    f"unknown key '{key}' in private key secret '{section.name}' (supported: file, secret)")
        if file_setting is None or not file_setting.value:
            raise _at_section(section).error(f"private key secret '{section.name}' has no file: add file = "
                                             f"<name in {folder}/>")
        secret_setting = section.settings.get("secret")
        passphrase = None
        if secret_setting is not None and secret_setting.value is not None:
            passphrase = self._convert(secret_setting, section.path, decode_secret)
        path = self._path(file_setting.value, folder)
        anchor = _at(file_setting, section.path)
        if not os.path.isfile(path):
            raise anchor.error(f"private key file '{file_setting.value}' not found (looked for {path})")
        self.passphrases[os.path.realpath(path)] = (passphrase, anchor)

    def _pools(self, section: Section) -> dict[str, Pool]:
        pools = {}
        for key, setting in section.settings.items():
            raise _at(setting, "pools").error(f"'{key} = ...' cannot stand directly in pools; write pools "
                                              f"{{ name {{ addrs = ... }} }}")
        for name, sub in section.sections.items():
            for child in sub.sections.values():
                raise _at_section(child).error(f"unknown section '{child.name}' in pool '{name}'")
            addrs = sub.settings.get("addrs")
            dns: list[Any] = []
            for key, setting in sub.settings.items():
                if key == "dns" and setting.value is not None:
                    dns = self._convert(setting, sub.path, _addresses)
                elif key in _POOL_UNSUPPORTED or key.isdigit():
                    raise _at(setting, sub.path).error(f"pool attribute '{key}' is not supported by ipsec-lab "
                                                       f"(supported: addrs, dns)")
                elif key not in ("addrs", "dns"):
                    raise _at(setting, sub.path).error(f"unknown key '{key}' in pool '{name}' (supported: addrs, dns)")
            if addrs is None or addrs.value is None:
                raise _at_section(sub).error(f"pool '{name}' has no addrs: add addrs = 10.3.0.0/24 "
                                             f"(a subnet) or 10.3.0.1-10.3.0.50 (a range), or their IPv6 "
                                             f"forms (fd00:10::/120, fd00:10::1-fd00:10::ff)")
            first, last, network = self._convert(addrs, sub.path, parse_pool_addrs)
            pools[name] = Pool(name, first, last, dns, network)
        return pools

    # -------------------------------------------------------- files

    def _path(self, name: str, folder: str) -> str:
        return name if os.path.isabs(name) else os.path.join(self.dir, folder, name)

    def _load_certs(self, name: str, folder: str, anchor: _Anchor) -> list[x509.Certificate]:
        path = self._path(name, folder)
        if not os.path.isfile(path):
            raise anchor.error(f"certificate file '{name}' not found (looked for {path})")
        return _read_certs(path, anchor)

    def _load_private_keys(self, anchor: _Anchor) -> list[PrivateKey]:
        keys, seen = [], set()
        paths: list[str] = []
        for folder in _KEY_FOLDERS.values():
            directory = os.path.join(self.dir, folder)
            if os.path.isdir(directory):
                paths.extend(os.path.join(directory, f) for f in sorted(os.listdir(directory)))
        paths.extend(self.passphrases)
        for path in paths:
            real = os.path.realpath(path)
            if real in seen or not os.path.isfile(path):
                continue
            seen.add(real)
            passphrase, where = self.passphrases.get(real, (None, anchor))
            keys.append(PrivateKey(path, _read_private_key(path, passphrase, where)))
        return keys

    def _load_cacerts(self, anchor: _Anchor) -> list[x509.Certificate]:
        directory = os.path.join(self.dir, "x509ca")
        if not os.path.isdir(directory):
            return []
        certs = []
        for name in sorted(os.listdir(directory)):
            path = os.path.join(directory, name)
            if os.path.isfile(path):
                certs.extend(_read_certs(path, anchor))
        return certs

    def _load_crls(self, anchor: _Anchor) -> list[x509.CertificateRevocationList]:
        """The certificate revocation lists in x509crl/ (PEM or DER), as `swanctl --load-creds` loads
        them; a file that is not one is refused at the line of the round that checks certificates."""
        directory = os.path.join(self.dir, "x509crl")
        if not os.path.isdir(directory):
            return []
        crls = []
        for name in sorted(os.listdir(directory)):
            path = os.path.join(directory, name)
            if not os.path.isfile(path):
                continue
            try:
                with open(path, "rb") as handle:
                    data = handle.read()
            except OSError as exc:
                raise anchor.error(f"cannot read CRL '{path}': {exc.strerror or exc}") from None
            try:
                crls.append(x509.load_pem_x509_crl(data) if b"-----BEGIN" in data else x509.load_der_x509_crl(data))
            except ValueError:
                raise anchor.error(f"'{path}' in x509crl/ is not a certificate revocation list (PEM or DER)") from None
        return crls

    # -------------------------------------------------------- cross-checks

    def _finish(self, config: SwanctlConfig, anchors: dict[str, dict[str, _Anchor]]) -> None:
        # a connection of shunts only (mode = pass/drop children, strongSwan's usual "shunts")
        # never authenticates anyone: its auth defaults need nothing
        negotiating = {name: conn for name, conn in config.connections.items()
                       if not conn.children or any(not c.mode.is_shunt for c in conn.children.values())}
        with_key = (AuthClass.PUBKEY, AuthClass.EAP_TLS)

        def rounds(conn: IkeConfig, side: str) -> list[tuple[str, AuthConfig]]:
            found = getattr(conn, f"{side}_rounds")
            return [(side if number == 1 else f"{side}-{number}", auth) for number, auth in enumerate(found, start=1)]

        local_keyed = [(name, key) for name, conn in negotiating.items() for key, auth in rounds(conn, "local")
                       if auth.method in with_key]
        if local_keyed or self.passphrases:
            anchor = (anchors[local_keyed[0][0]][local_keyed[0][1]] if local_keyed
                      else next(iter(self.passphrases.values()))[1])
            config.secrets.private_keys = self._load_private_keys(anchor)
        checking = [(name, key) for name, conn in negotiating.items()
                    for key, auth in rounds(conn, "remote") if auth.method in with_key]
        checking += [(name, key) for name, conn in negotiating.items()
                     for key, auth in rounds(conn, "local") if auth.method in (AuthClass.EAP_TLS, AuthClass.EAP_TTLS)]
        if checking:
            config.cacerts = self._load_cacerts(anchors[checking[0][0]][checking[0][1]])
            config.crls = self._load_crls(anchors[checking[0][0]][checking[0][1]])
        # an authority's certificate is a trust anchor as if it were in x509ca/ (swanctl --load-authorities)
        config.cacerts += [a.cacert for a in config.authorities if a.cacert not in config.cacerts]
        config.crl_uri_issuers = [a.cacert.subject for a in config.authorities if a.crl_uris]
        for name, conn in config.connections.items():
            where = anchors[name]
            if name not in negotiating:
                continue
            if "pools" in where:
                for pool in conn.pools:
                    if pool not in config.pools:
                        known = ", ".join(config.pools) or "none defined"
                        raise where["pools"].error(f"pool '{pool}' is not defined in the pools section (pools: {known})")
            for side in ("local", "remote"):
                for key, auth in rounds(conn, side):
                    self._check_round(config, name, conn, side, key, auth, where[key])
            if conn.local.method.is_eap and conn.remote.method.is_eap:
                raise where["remote"].error("both sides use EAP: the EAP server (the responder) authenticates "
                                            "itself with auth = pubkey or psk (RFC 7296 §2.16)")
            if conn.remote.method.is_eap and conn.local.method not in (AuthClass.PUBKEY, AuthClass.PSK):
                raise where["local"].error("a gateway that asks for EAP authenticates itself with auth = pubkey "
                                           "(or psk): RFC 7296 §2.16")

    def _check_round(self, config: SwanctlConfig, name: str, conn: IkeConfig, side: str, key: str,
                     auth: AuthConfig, anchor: _Anchor) -> None:
        if auth.method == AuthClass.EAP_RADIUS:
            if side == "local":
                raise anchor.error("auth = eap-radius relays a peer's EAP to a RADIUS server: it is a remote round "
                                   "of a gateway; a client authenticates with auth = eap-mschapv2 (or eap-...)")
            if config.radius is None:
                raise anchor.error("auth = eap-radius needs a RADIUS server: add ipsec-lab { eap-radius { servers { "
                                   "primary { address = ...  secret = ... } } } } (strongSwan: "
                                   "charon.plugins.eap-radius in strongswan.conf)")
            if auth.eap_id is not None:
                raise anchor.error("eap_id with auth = eap-radius (an EAP-Identity asked first) is not supported by "
                                   "ipsec-lab: the peer's IKE identity is sent as its EAP identity; remove eap_id")
        if auth.method == AuthClass.PSK and not config.secrets.ike:
            raise anchor.error(f"auth = psk needs a pre-shared key: add secrets {{ ike-{name} {{ "
                               f"id = ...  secret = \"...\" }} }}")
        needs_password = auth.method in (AuthClass.EAP_MD5, AuthClass.EAP_MSCHAPV2, AuthClass.EAP_TTLS,
                                         AuthClass.EAP_GTC) or (
            auth.method == AuthClass.EAP and not auth.certs)
        if needs_password and not config.secrets.eap:
            raise anchor.error(f"auth = {auth.method} needs a password: add secrets {{ eap-user {{ "
                               f"id = <EAP identity>  secret = \"...\" }} }}")
        if side == "local" and auth.pubkeys and not auth.certs:
            if config.secrets.private_key_for(auth.pubkeys[0]) is None:
                raise anchor.error(f"no private key for our raw public key in {os.path.join(self.dir, 'private')} "
                                   f"(or rsa/, ecdsa/, pkcs8/)")
        elif side == "local" and auth.method in (AuthClass.PUBKEY, AuthClass.EAP_TLS):
            # a Windows client with machine-certificate authentication says so with its error 13806
            def windows(detail: str) -> str:
                return windows_error(13806, detail) if conn.profile.startswith("windows") else detail
            if not auth.certs:
                raise anchor.error(windows(f"auth = {auth.method} needs our certificate: add certs = <file in x509/> "
                                           f"(or pubkeys = <file in pubkey/> with an id) to the {key} section")
                                   + anchor.note)
            cert = auth.certs[0]
            if config.secrets.private_key_for(cert) is None:
                raise anchor.error(windows(
                    f"no private key for our certificate ({Identity.from_dn(cert.subject)}) in "
                    f"{os.path.join(self.dir, 'private')} (or rsa/, ecdsa/, pkcs8/)"))
        checks_certificate = (side == "remote" and auth.method in (AuthClass.PUBKEY, AuthClass.EAP_TLS)) or (
            side == "local" and auth.method in (AuthClass.EAP_TLS, AuthClass.EAP_TTLS))
        if checks_certificate and not (auth.cacerts or auth.certs or auth.pubkeys or conn.remote.cacerts
                                       or config.cacerts):
            whose = "the peer's certificate" if side == "remote" else f"the {auth.method.upper()} server's certificate"
            raise anchor.error(f"auth = {auth.method} needs a CA to check {whose}: add cacerts = <file in x509ca/> "
                               f"to the remote section or put the CA certificate in "
                               f"{os.path.join(self.dir, 'x509ca')}" + anchor.note)


def _read_certs(path: str, anchor: _Anchor) -> list[x509.Certificate]:
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise anchor.error(f"cannot read certificate '{path}': {exc.strerror or exc}") from None
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise anchor.error(f"'{path}' is not an X.509 certificate (PEM or DER)") from None


def _read_public_key(path: str, anchor: _Anchor) -> Any:
    """A raw public key file as swanctl reads pubkey/: PEM (PUBLIC KEY or RSA PUBLIC KEY) or DER."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise anchor.error(f"cannot read public key '{path}': {exc.strerror or exc}") from None
    try:
        if b"-----BEGIN" in data:
            return serialization.load_pem_public_key(data)
        return serialization.load_der_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise anchor.error(f"'{path}' is not a public key (PEM or DER SubjectPublicKeyInfo, or PKCS#1 RSA): "
                           f"{exc}") from None


def _read_private_key(path: str, passphrase: bytes | None, anchor: _Anchor) -> Any:
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise anchor.error(f"cannot read private key '{path}': {exc.strerror or exc}") from None
    load = serialization.load_pem_private_key if b"-----BEGIN" in data else serialization.load_der_private_key
    try:
        return load(data, password=passphrase)
    except TypeError:
        if passphrase is None:
            raise anchor.error(f"private key '{path}' is encrypted: add secrets {{ private-x {{ file = "
                               f"{os.path.basename(path)}  secret = <passphrase> }} }}") from None
        raise anchor.error(f"private key '{path}' is not encrypted: remove its passphrase secret") from None
    except ValueError:
        hint = " or the passphrase is wrong" if passphrase is not None else ""
        raise anchor.error(f"'{path}' is not a private key in PEM or DER{hint}") from None
    except UnsupportedAlgorithm as exc:
        raise anchor.error(f"cannot load private key '{path}': {exc}") from None


# ---------------------------------------------------------------- entry points


def parse_swanctl(text: str, filename: str = "swanctl.conf", swanctl_dir: str | None = None) -> SwanctlConfig:
    """The configuration in `text`, as if read from `filename` (errors name it; includes are
    relative to it). Certificates and keys come from `swanctl_dir` (default: the directory of
    `filename`). Raises ConfigError."""
    root, files = parse_settings(text, filename)
    directory = swanctl_dir if swanctl_dir is not None else (os.path.dirname(filename) or ".")
    return _Builder(root, directory, files).build()


def load_swanctl(path: str | os.PathLike[str], swanctl_dir: str | None = None) -> SwanctlConfig:
    """The configuration in the swanctl.conf at `path`; certificates and keys come from its
    directory (x509/, x509ca/, private/, ...) unless `swanctl_dir` says otherwise. Raises ConfigError."""
    path = os.fspath(path)
    try:
        text = read_text(path)
    except OSError as exc:
        raise ConfigError(f"cannot read the configuration: {exc.strerror or exc}", file=path, line=None) from None
    except UnicodeDecodeError:
        raise ConfigError("not a text file (UTF-8 expected)", file=path, line=None) from None
    return parse_swanctl(text, path, swanctl_dir)
