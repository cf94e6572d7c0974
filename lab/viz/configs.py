"""What each gateway of a run was configured with, read back from its swanctl.conf as run
(DIR/nodes/<node>/swanctl/swanctl.conf): per connection the IKE proposals, addresses, the
identities and the authentication, per child the ESP/AH proposals, traffic selectors and
mode, the pre-shared keys with the identities they are for, and the identities of the
certificates in x509/. Every value keeps the line it was written on (`where`), so advice can
name it. Tolerant: strongSwan's and our configurations alike, anything unreadable is left out
and noted."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from lab.conf.settings import ConfigError, Section, parse_settings
from lab.ike.config import ConfigValueError, decode_secret
from lab.ike.identity import Identity, IdentityError, certificate_identities


@dataclass
class ChildConf:
    name: str
    esp_proposals: list[str] = field(default_factory=list)   # empty: the default
    ah_proposals: list[str] = field(default_factory=list)
    local_ts: list[str] = field(default_factory=list)        # empty: dynamic (the own address)
    remote_ts: list[str] = field(default_factory=list)
    mode: str = "tunnel"
    line: str = ""                                          # file:line of the child section
    lines: dict[str, str] = field(default_factory=dict)     # key -> file:line where it is set

    @property
    def protocol(self) -> str:
        return "AH" if self.ah_proposals else "ESP"

    @property
    def proposals(self) -> list[str]:
        return self.ah_proposals or self.esp_proposals

    @property
    def proposals_key(self) -> str:
        return "ah_proposals" if self.ah_proposals else "esp_proposals"

    def where(self, key: str) -> str:
        """file:line of `key` in this child, else of the child section."""
        return self.lines.get(key, self.line)


@dataclass
class ConnConf:
    name: str
    proposals: list[str] = field(default_factory=list)       # empty: the default
    local_addrs: list[str] = field(default_factory=list)
    remote_addrs: list[str] = field(default_factory=list)
    local_id: str = ""
    remote_id: str = ""
    local_auth: str = ""
    remote_auth: str = ""
    local_certs: list[str] = field(default_factory=list)
    encap: bool = False
    mobike: bool = True                                      # swanctl.conf(5): yes by default
    fragmentation: str = "yes"
    profile: str = ""                                        # ipsec-lab's own: a client profile (windows, ...)
    children: dict[str, ChildConf] = field(default_factory=dict)
    line: str = ""
    lines: dict[str, str] = field(default_factory=dict)      # "proposals", "local.id", ... -> file:line

    def where(self, key: str) -> str:
        """file:line of `key` ("proposals", "remote_addrs", "local.id", "remote.auth", ...), else of the
        section it belongs in."""
        if key in self.lines:
            return self.lines[key]
        side = key.split(".")[0]
        return self.lines.get(side, self.line) if "." in key else self.line


@dataclass
class PskConf:
    """A pre-shared key: the identities it is for and where; the secret is compared, never shown."""
    ids: list[str]
    line: str                     # file:line of its secret
    section: str = ""             # file:line of its section (ike-...)
    secret: bytes = field(repr=False, default=b"")


@dataclass
class CertConf:
    """A certificate of x509/ (or x509ca/): its file, the identities it vouches for (subject,
    subjectAltNames), its issuer and its validity."""
    file: str
    identities: list[Identity]
    subject: str = ""             # RFC 4514, as cryptography writes it
    issuer: str = ""
    not_before: float = 0.0       # seconds since the epoch
    not_after: float = 0.0

    @property
    def self_signed(self) -> bool:
        return bool(self.subject) and dn_key(self.subject) == dn_key(self.issuer)

    def names(self) -> list[str]:
        return [str(i) for i in self.identities]


@dataclass
class GatewayConf:
    node: str
    path: Path | None
    connections: dict[str, ConnConf] = field(default_factory=dict)
    psks: list[PskConf] = field(default_factory=list)
    certs: list[CertConf] = field(default_factory=list)
    cas: list[CertConf] = field(default_factory=list)        # x509ca/
    secrets_line: str = ""
    problems: list[str] = field(default_factory=list)

    def connection(self, name: str | None = None) -> ConnConf | None:
        if name and name in self.connections:
            return self.connections[name]
        return next(iter(self.connections.values()), None)

    def child(self, name: str) -> tuple[ConnConf, ChildConf] | None:
        for conn in self.connections.values():
            if name in conn.children:
                return conn, conn.children[name]
        return None

    def children(self) -> list[str]:
        return [name for conn in self.connections.values() for name in conn.children]

    def psk_for(self, local_id: str, remote_id: str) -> PskConf | None:
        """The key this gateway uses between `local_id` and `remote_id`, chosen as strongSwan's
        credential manager does (lab.ike.config.Secrets.find_shared_key): None if none qualifies."""
        from lab.ike.config import Secrets, SharedKey

        keys = []
        for psk in self.psks:
            try:
                keys.append(SharedKey("", psk.secret, [Identity.parse(i) for i in psk.ids]))
            except IdentityError:
                keys.append(SharedKey("", psk.secret, []))
        found = Secrets(ike=keys).find_shared_key(parse_id(local_id), parse_id(remote_id))
        return None if found is None else self.psks[keys.index(found)]

    def cert(self, name: str = "") -> CertConf | None:
        """The certificate `name` (a file of x509/), or the first one."""
        return next((c for c in self.certs if not name or c.file == name or Path(c.file).name == name),
                    self.certs[0] if self.certs and not name else None)


def parse_id(text: str) -> Identity | None:
    """An identity as swanctl.conf writes it, None if empty or unreadable."""
    if not text:
        return None
    try:
        return Identity.parse(text)
    except IdentityError:
        return None


def id_kind(text: str) -> str:
    """The ID type of an identity in words a trainee knows: 'an FQDN', 'an IPv4 address', ..."""
    identity = parse_id(text)
    if identity is None:
        return "an identity"
    return {"ID_FQDN": "an FQDN (ID_FQDN)", "ID_IPV4_ADDR": "an IPv4 address (ID_IPV4_ADDR)",
            "ID_IPV6_ADDR": "an IPv6 address (ID_IPV6_ADDR)", "ID_RFC822_ADDR": "an email address (ID_RFC822_ADDR)",
            "ID_DER_ASN1_DN": "a distinguished name (ID_DER_ASN1_DN)", "ID_KEY_ID": "a key id (ID_KEY_ID)",
            "ID_ANY": "%any"}.get(identity.type_name, identity.type_name)


def _words(section: Section, key: str) -> list[str]:
    setting = section.settings.get(key)
    if setting is None or not setting.value:
        return []
    return [w.strip() for w in setting.value.replace(",", " ").split() if w.strip()]


def _value(section: Section, key: str, default: str = "") -> str:
    setting = section.settings.get(key)
    return setting.value if setting is not None and setting.value is not None else default


def _yes(section: Section, key: str, default: str) -> bool:
    return _value(section, key, default).lower() in ("yes", "true", "1")


def _lines(section: Section, prefix: str = "") -> dict[str, str]:
    return {prefix + key: f"{s.file}:{s.line}" for key, s in section.settings.items()}


def _side(conn: Section, prefix: str) -> Section | None:
    for name, section in conn.sections.items():
        if name == prefix or name.startswith(prefix + "-"):
            return section
    return None


def dn_key(text: str) -> frozenset[str]:
    """A distinguished name compared without its order and spacing: strongSwan writes
    "O=ipsec-lab, CN=gw.lab", cryptography "CN=gw.lab,O=ipsec-lab"."""
    return frozenset(part.strip() for part in re.split(r"(?<!\\),", text) if part.strip())


def _certificates(folder: Path, conf: GatewayConf) -> None:
    from cryptography import x509

    for sub, into in (("x509", conf.certs), ("x509ca", conf.cas)):
        for path in sorted((folder / sub).glob("*")) if (folder / sub).is_dir() else []:
            try:
                data = path.read_bytes()
                cert = (x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data
                        else x509.load_der_x509_certificate(data))
            except (OSError, ValueError) as err:
                conf.problems.append(f"{path}: {err}")
                continue
            into.append(CertConf(path.name, certificate_identities(cert), cert.subject.rfc4514_string(),
                                 cert.issuer.rfc4514_string(), cert.not_valid_before_utc.timestamp(),
                                 cert.not_valid_after_utc.timestamp()))


def read_config(node: str, path: str | Path) -> GatewayConf:
    path = Path(path)
    conf = GatewayConf(node, path)
    try:
        root, _files = parse_settings(path.read_text(errors="replace"), str(path),
                                      read=lambda p: Path(path.parent, p).read_text(errors="replace"))
    except (OSError, ConfigError, ValueError) as err:
        conf.problems.append(f"{path}: {err}")
        return conf
    connections = root.sections.get("connections")
    for name, section in (connections.sections.items() if connections else []):
        conn = ConnConf(name, proposals=_words(section, "proposals"), local_addrs=_words(section, "local_addrs"),
                        remote_addrs=_words(section, "remote_addrs"), encap=_yes(section, "encap", "no"),
                        mobike=_yes(section, "mobike", "yes"),
                        fragmentation=_value(section, "fragmentation", "yes").lower(),
                        profile=_value(section, "profile", ""),
                        line=f"{section.file}:{section.line}", lines=_lines(section))
        local, remote = _side(section, "local"), _side(section, "remote")
        if local is not None:
            conn.local_id, conn.local_auth = _value(local, "id"), _value(local, "auth")
            conn.local_certs = _words(local, "certs")
            conn.lines.update(_lines(local, "local."))
            conn.lines["local"] = f"{local.file}:{local.line}"
        if remote is not None:
            conn.remote_id, conn.remote_auth = _value(remote, "id"), _value(remote, "auth")
            conn.lines.update(_lines(remote, "remote."))
            conn.lines["remote"] = f"{remote.file}:{remote.line}"
        children = section.sections.get("children")
        for child_name, child in (children.sections.items() if children else []):
            conn.children[child_name] = ChildConf(
                child_name, esp_proposals=_words(child, "esp_proposals"), ah_proposals=_words(child, "ah_proposals"),
                local_ts=_words(child, "local_ts"), remote_ts=_words(child, "remote_ts"),
                mode=_value(child, "mode", "tunnel").lower(), line=f"{child.file}:{child.line}",
                lines=_lines(child))
        conf.connections[name] = conn
    secrets = root.sections.get("secrets")
    if secrets is not None:
        conf.secrets_line = f"{secrets.file}:{secrets.line}"
    for name, section in (secrets.sections.items() if secrets else []):
        if not name.startswith("ike"):
            continue
        ids = [s.value for key, s in section.settings.items() if key.startswith("id") and s.value]
        setting = section.settings.get("secret")
        if setting is None or not setting.value:
            continue
        try:
            secret = decode_secret(setting.value)
        except ConfigValueError:
            secret = setting.value.encode()
        conf.psks.append(PskConf(ids, f"{setting.file}:{setting.line}", f"{section.file}:{section.line}", secret))
    _certificates(path.parent, conf)
    return conf


def run_configs(root: str | Path) -> dict[str, GatewayConf]:
    """Every gateway's configuration in a run folder (DIR/nodes/<node>/swanctl/swanctl.conf)."""
    out = {}
    for path in sorted(Path(root).glob("nodes/*/swanctl/swanctl.conf")):
        node = path.parents[1].name
        out[node] = read_config(node, path)
    return out


def proposal_text(proposals: list[str], what: str = "IKE") -> str:
    return ", ".join(proposals) if proposals else f"the default {what} proposals (none configured)"


__all__ = ["CertConf", "ChildConf", "ConnConf", "GatewayConf", "PskConf", "id_kind", "parse_id", "proposal_text",
           "read_config", "run_configs"]
