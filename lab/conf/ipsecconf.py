"""strongSwan's legacy ipsec.conf(5) and ipsec.secrets(5), read for auditing (never run).

    conf = load_ipsec_conf("/etc/ipsec.conf")
    conf.conns["site"].get("ike")       # a Setting: value, file and line

ipsec.conf: sections start in the first column (`config setup`, `conn NAME`, `ca NAME`),
their parameters are indented `key=value` lines; `#` starts a comment; values may be quoted;
`include FILE` (relative to the including file, wildcards allowed) reads another file;
`also=NAME` pulls in another conn's parameters and `conn %default` gives every conn its
defaults (a conn's own lines win, then its `also`s, then %default). ipsec.secrets: `[ids] :
PSK "secret"` (and RSA, EAP, XAUTH, ... entries) per line. Every error is a `ConfigError`
naming file, line and key.
"""
from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field

from .swanctl import ConfigError, Setting

__all__ = ["IpsecConf", "IpsecConn", "IpsecSecret", "load_ipsec_conf", "load_ipsec_secrets", "parse_ipsec_conf",
           "parse_ipsec_secrets"]

MAX_INCLUDE_DEPTH = 10
MAX_ALSO_DEPTH = 32


@dataclass
class IpsecConn:
    """One `conn NAME` with its parameters after `also=` and `%default` are applied."""

    name: str
    file: str
    line: int
    settings: dict[str, Setting] = field(default_factory=dict)

    def get(self, key: str) -> Setting | None:
        return self.settings.get(key)

    def value(self, key: str, default: str | None = None) -> str | None:
        setting = self.settings.get(key)
        return default if setting is None or setting.value is None else setting.value


@dataclass
class IpsecConf:
    files: list[str]
    setup: dict[str, Setting] = field(default_factory=dict)
    conns: dict[str, IpsecConn] = field(default_factory=dict)


@dataclass
class IpsecSecret:
    """One ipsec.secrets entry: `ids : KIND secret`."""

    ids: list[str]
    kind: str
    secret: str
    file: str
    line: int


_SECTION = re.compile(r"^(config|conn|ca)\s+(\S+)\s*(?:#.*)?$")
_PARAM = re.compile(r"^[ \t]+([A-Za-z0-9_.%-]+)\s*=\s*(.*)$")


def _strip_value(raw: str, file: str, line: int, key: str) -> str | None:
    raw = raw.strip()
    if raw.startswith('"'):
        end = raw.find('"', 1)
        if end < 0:
            raise ConfigError("unterminated string: the '\"' opened here is never closed", file=file, line=line,
                              key=key)
        return raw[1:end]
    value = raw.split("#", 1)[0].strip()
    return value or None


def _read(path: str, file: str, line: int | None) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError as exc:
        raise ConfigError(f"cannot read '{path}': {exc.strerror or exc}", file=file, line=line) from None
    except UnicodeDecodeError:
        raise ConfigError(f"'{path}' is not a text file (UTF-8 expected)", file=file, line=line) from None


def _include_paths(pattern: str, file: str, line: int) -> list[str]:
    # ipsec.conf(5) INCLUDE: relative to the including file, shell wildcards allowed
    full = pattern if os.path.isabs(pattern) else os.path.join(os.path.dirname(file), pattern)
    if re.search(r"[*?\[]", pattern):
        return sorted(p for p in glob.glob(full) if os.path.isfile(p))
    if not os.path.isfile(full):
        raise ConfigError(f"include: file '{pattern}' not found (looked for {full})", file=file, line=line)
    return [full]


class _Reader:
    def __init__(self) -> None:
        self.files: list[str] = []
        self.setup: dict[str, Setting] = {}
        self.raw: dict[str, tuple[str, int, dict[str, Setting]]] = {}
        self.cas: dict[str, dict[str, Setting]] = {}

    def parse(self, text: str, file: str, depth: int = 0) -> None:
        self.files.append(file)
        current: dict[str, Setting] | None = None
        section = ""
        for number, line in enumerate(text.splitlines(), start=1):
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            if line[0] not in " \t":
                words = stripped.split("#", 1)[0].split()
                if words[0] == "version":
                    current = None
                    continue
                if words[0] == "include":
                    if len(words) != 2:
                        raise ConfigError("include needs one file name or pattern", file=file, line=number)
                    if depth + 1 > MAX_INCLUDE_DEPTH:
                        raise ConfigError(f"includes nested deeper than {MAX_INCLUDE_DEPTH} levels", file=file,
                                          line=number)
                    for path in _include_paths(words[1], file, number):
                        self.parse(_read(path, file, number), path, depth + 1)
                    current = None
                    continue
                match = _SECTION.match(stripped)
                if match is None:
                    raise ConfigError(f"'{stripped}' is not a section: sections start with 'config setup', "
                                      f"'conn NAME' or 'ca NAME' in the first column; parameters are indented",
                                      file=file, line=number)
                kind, name = match.groups()
                section = f"{kind} {name}"
                if kind == "config":
                    if name != "setup":
                        raise ConfigError(f"unknown section 'config {name}' (only 'config setup' exists)",
                                          file=file, line=number)
                    current = self.setup
                elif kind == "conn":
                    if name in self.raw:
                        other = self.raw[name]
                        raise ConfigError(f"conn '{name}' is defined twice (first at {other[0]}:{other[1]})",
                                          file=file, line=number, key=section)
                    current = {}
                    self.raw[name] = (file, number, current)
                else:
                    current = self.cas.setdefault(name, {})
                continue
            match = _PARAM.match(line)
            if current is None:
                raise ConfigError("an indented parameter outside any section: put it under 'conn NAME'",
                                  file=file, line=number)
            if match is None:
                raise ConfigError(f"'{stripped}' is not a parameter: write key=value", file=file, line=number,
                                  key=section)
            key, raw = match.groups()
            current[key] = Setting(key, _strip_value(raw, file, number, f"{section} {key}"), file, number)

    def conns(self) -> dict[str, IpsecConn]:
        defaults = self.raw.get("%default", ("", 0, {}))[2]
        out = {}
        for name, (file, line, own) in self.raw.items():
            if name == "%default":
                continue
            merged: dict[str, Setting] = {}
            self._also(name, own, merged, (name,))
            for key, setting in defaults.items():
                merged.setdefault(key, setting)
            merged.pop("also", None)
            out[name] = IpsecConn(name, file, line, merged)
        return out

    def _also(self, name: str, own: dict[str, Setting], merged: dict[str, Setting], chain: tuple[str, ...]) -> None:
        # ipsec.conf(5) also: the conn's own parameters first, then those of each `also` in order
        for key, setting in own.items():
            merged.setdefault(key, setting)
        also = own.get("also")
        if also is None or also.value is None:
            return
        for target in also.value.split():
            if target not in self.raw:
                raise ConfigError(f"also={target}: no conn '{target}' is defined", file=also.file, line=also.line,
                                  key=f"conn {name} also")
            if target in chain or len(chain) > MAX_ALSO_DEPTH:
                raise ConfigError(f"also={target} makes a loop", file=also.file, line=also.line,
                                  key=f"conn {name} also")
            self._also(target, self.raw[target][2], merged, chain + (target,))


def parse_ipsec_conf(text: str, filename: str = "ipsec.conf") -> IpsecConf:
    """The conns of an ipsec.conf text (includes relative to `filename`). Raises ConfigError."""
    reader = _Reader()
    reader.parse(text, filename)
    return IpsecConf(reader.files, reader.setup, reader.conns())


def load_ipsec_conf(path: str | os.PathLike[str]) -> IpsecConf:
    path = os.fspath(path)
    return parse_ipsec_conf(_read(path, path, None), path)


_SECRET = re.compile(r"^(?P<ids>[^:\"]*?)\s*:\s*(?P<kind>[A-Za-z0-9]+)\s+(?P<rest>.+?)\s*$")


def parse_ipsec_secrets(text: str, filename: str = "ipsec.secrets", depth: int = 0) -> list[IpsecSecret]:
    """The entries of an ipsec.secrets text (`include` followed). Raises ConfigError."""
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("include "):
            if depth + 1 > MAX_INCLUDE_DEPTH:
                raise ConfigError(f"includes nested deeper than {MAX_INCLUDE_DEPTH} levels", file=filename,
                                  line=number)
            for path in _include_paths(stripped.split(None, 1)[1].strip(), filename, number):
                out.extend(parse_ipsec_secrets(_read(path, filename, number), path, depth + 1))
            continue
        match = _SECRET.match(stripped)
        if match is None:
            raise ConfigError("not a secret: write [ids] : PSK \"secret\" (or RSA, EAP, XAUTH ...)", file=filename,
                              line=number)
        rest = match["rest"]
        secret = rest[1:rest.find('"', 1)] if rest.startswith('"') and rest.find('"', 1) > 0 else rest.split()[0]
        out.append(IpsecSecret(match["ids"].split(), match["kind"].upper(), secret, filename, number))
    return out


def load_ipsec_secrets(path: str | os.PathLike[str]) -> list[IpsecSecret]:
    path = os.fspath(path)
    return parse_ipsec_secrets(_read(path, path, None), path)
