"""What each gateway of a run was configured with, read back from its swanctl.conf as run
(DIR/nodes/<node>/swanctl/swanctl.conf): per connection the IKE proposals, the identities
and the authentication, per child the ESP/AH proposals, traffic selectors and mode, and
which identities have a pre-shared key. Tolerant: strongSwan's and our configurations
alike, anything unreadable is left out and noted."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from lab.conf.settings import ConfigError, Section, parse_settings


@dataclass
class ChildConf:
    name: str
    esp_proposals: list[str] = field(default_factory=list)   # empty: the default
    ah_proposals: list[str] = field(default_factory=list)
    local_ts: list[str] = field(default_factory=list)        # empty: dynamic (the own address)
    remote_ts: list[str] = field(default_factory=list)
    mode: str = "tunnel"
    line: str = ""                                          # file:line of the child section

    @property
    def protocol(self) -> str:
        return "AH" if self.ah_proposals else "ESP"

    @property
    def proposals(self) -> list[str]:
        return self.ah_proposals or self.esp_proposals


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
    encap: bool = False
    fragmentation: str = "yes"
    children: dict[str, ChildConf] = field(default_factory=dict)
    line: str = ""


@dataclass
class GatewayConf:
    node: str
    path: Path | None
    connections: dict[str, ConnConf] = field(default_factory=dict)
    psk_ids: list[tuple[frozenset[str], str]] = field(default_factory=list)  # (ids, digest of the secret)
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

    def secret_for(self, *ids: str) -> str | None:
        """A digest of the PSK this gateway holds for the identities `ids` (None: no PSK)."""
        wanted = {i for i in ids if i}
        best = None
        for owners, digest in self.psk_ids:
            if wanted <= owners:
                return digest
            if owners & wanted and best is None:
                best = digest
        return best


def _words(section: Section, key: str) -> list[str]:
    setting = section.settings.get(key)
    if setting is None or not setting.value:
        return []
    return [w.strip() for w in setting.value.replace(",", " ").split() if w.strip()]


def _value(section: Section, key: str, default: str = "") -> str:
    setting = section.settings.get(key)
    return setting.value if setting is not None and setting.value is not None else default


def _side(conn: Section, prefix: str) -> Section | None:
    for name, section in conn.sections.items():
        if name == prefix or name.startswith(prefix + "-"):
            return section
    return None


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
                        remote_addrs=_words(section, "remote_addrs"),
                        encap=_value(section, "encap", "no").lower() in ("yes", "true", "1"),
                        fragmentation=_value(section, "fragmentation", "yes").lower(),
                        line=f"{section.file}:{section.line}")
        local, remote = _side(section, "local"), _side(section, "remote")
        if local is not None:
            conn.local_id, conn.local_auth = _value(local, "id"), _value(local, "auth")
        if remote is not None:
            conn.remote_id, conn.remote_auth = _value(remote, "id"), _value(remote, "auth")
        children = section.sections.get("children")
        for child_name, child in (children.sections.items() if children else []):
            conn.children[child_name] = ChildConf(
                child_name, esp_proposals=_words(child, "esp_proposals"), ah_proposals=_words(child, "ah_proposals"),
                local_ts=_words(child, "local_ts"), remote_ts=_words(child, "remote_ts"),
                mode=_value(child, "mode", "tunnel").lower(), line=f"{child.file}:{child.line}")
        conf.connections[name] = conn
    secrets = root.sections.get("secrets")
    for name, section in (secrets.sections.items() if secrets else []):
        if not name.startswith("ike"):
            continue
        ids = frozenset(s.value for key, s in section.settings.items() if key.startswith("id") and s.value)
        secret = _value(section, "secret")
        if secret:
            conf.psk_ids.append((ids, hashlib.sha256(secret.strip().strip('"').encode()).hexdigest()[:12]))
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


__all__ = ["ChildConf", "ConnConf", "GatewayConf", "proposal_text", "read_config", "run_configs"]
