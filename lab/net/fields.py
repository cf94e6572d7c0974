"""What every scenario entry is made of: YAML with line numbers, a reader that checks fields and
names file, line and field in every error, and the shape of a registry entry (a step kind, a
check kind) with its fields described for the generated reference.

    scenarios/net2net/scenario.yaml:14: steps[2].ping.count: must be a whole number, at least 1, not 'five'

A kind is one class with `name`, `does` (one line for the reference), `fields` (each with its
words and default), `validate` (fields in, normalised arguments out, or a ScenarioError),
`describe` (arguments to words for the report and the narration) and its execution
(`run` for a step, `evaluate` for a check). Registries: lab.net.steps.STEPS and
lab.net.checks.CHECKS; scenarios/README.md's reference is generated from them
(lab.net.reference).
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import yaml


class ScenarioError(ValueError):
    """One mistake in a scenario: `file:line: field: message`."""

    def __init__(self, file: Path | str, line: int | None, field: str, message: str) -> None:
        self.file, self.line, self.field, self.message = str(file), line, field, message
        where = f"{self.file}:{line}" if line else self.file
        super().__init__(f"{where}: {field}: {message}" if field else f"{where}: {message}")


# ------------------------------------------------------------------ YAML with line numbers


class Map(dict):
    """A YAML mapping that remembers its line and the line of each key."""

    line: int = 0
    key_lines: dict


class Seq(list):
    """A YAML sequence that remembers its line and the line of each item."""

    line: int = 0
    item_lines: list


class _Loader(yaml.SafeLoader):
    """YAML with YAML 1.2's booleans (true/false only): `on:`, `expect: YES`, `no` stay text."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))


def _map(loader: _Loader, node: yaml.MappingNode) -> Map:
    out = Map()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, (str, int, float, bool)) or key is None:
            raise yaml.constructor.ConstructorError(None, None, f"a key must be a name, not {key!r}",
                                                    key_node.start_mark)
        if key in out:
            raise yaml.constructor.ConstructorError(None, None, f"'{key}' is given twice", key_node.start_mark)
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = key_node.start_mark.line + 1
    return out


def _seq(loader: _Loader, node: yaml.SequenceNode) -> Seq:
    out = Seq(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    out.item_lines = [child.start_mark.line + 1 for child in node.value]
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _map)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _seq)


def text_line(path: Path, offset: int) -> int:
    """The line of `path` the octet at `offset` is on."""
    return path.read_bytes()[:offset].count(b"\n") + 1


def read_yaml(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as err:
        raise ScenarioError(path, None, "", f"cannot read it: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise ScenarioError(path, text_line(path, err.start), "", "not a text file (UTF-8 expected)") from None
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else None
        raise ScenarioError(path, line, "", f"not valid YAML: {err.problem or err.context}") from None
    except yaml.YAMLError as err:
        raise ScenarioError(path, None, "", f"not valid YAML: {err}") from None


# ------------------------------------------------------------------ checking fields


class ScenarioReader:
    """Validation of one scenario file, every error with its line and field path."""

    def __init__(self, file: Path) -> None:
        self.file = file

    def error(self, line: int | None, field: str, message: str) -> ScenarioError:
        return ScenarioError(self.file, line, field, message)

    def mapping(self, value: Any, line: int, field: str) -> Map:
        if not isinstance(value, dict):
            raise self.error(line, field, f"must be a mapping (key: value lines), not {shown(value)}")
        return value if isinstance(value, Map) else as_map(value, line)

    def keys(self, value: Map, allowed: set[str], field: str, required: set[str] | frozenset[str] = frozenset()
             ) -> None:
        for key in value:
            if key not in allowed:
                known = ", ".join(sorted(allowed)) or "none"
                raise self.error(value.key_lines.get(key, value.line), f"{field}.{key}" if field else str(key),
                                 f"unknown field (known: {known})")
        for key in sorted(required):
            if key not in value:
                raise self.error(value.line, field, f"'{key}' is missing")

    def text(self, value: Any, line: int, field: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.error(line, field, f"must be text, not {shown(value)}")
        return value

    def number(self, value: Any, line: int, field: str, minimum: float = 0, whole: bool = False) -> float:
        ok = isinstance(value, int) if whole else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok or value < minimum:
            what = "a whole number" if whole else "a number"
            raise self.error(line, field, f"must be {what}, at least {minimum:g}, not {shown(value)}")
        return value

    def line(self, container: Map, key: str) -> int:
        return container.key_lines.get(key, container.line)


def as_map(value: dict, line: int) -> Map:
    out = Map(value)
    out.line, out.key_lines = line, {}
    return out


def shown(value: Any) -> str:
    """A value as an error message shows it."""
    if isinstance(value, str):
        return repr(value)
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


SIZE = re.compile(r"^(\d+)\s*([kKmMgG]?)[bB]?$")


def parse_size(text: Any) -> int | None:
    """10M, 512k, 1000000 -> bytes (binary multiples: k = 1024)."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text if text > 0 else None
    match = SIZE.match(str(text).strip())
    if not match:
        return None
    return int(match.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[match.group(2).lower()]


def size_words(n: int) -> str:
    """10485760 -> '10 MiB'."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"


class Fields:
    """One entry's arguments while it validates them: the reader, the mapping, where it is."""

    def __init__(self, r: ScenarioReader, args: Map, line: int, where: str) -> None:
        self.r, self.args, self.line, self.where = r, args, line, where

    def at(self, key: str) -> int:
        """The line of `key` (the entry's line when it is not given)."""
        return self.args.key_lines.get(key, self.line)

    def error(self, key: str | None, message: str) -> ScenarioError:
        """An error about field `key` (None: about the entry as a whole)."""
        if key is None:
            return self.r.error(self.line, self.where, message)
        return self.r.error(self.at(key), f"{self.where}.{key}", message)

    def number(self, key: str, default: Any = None, minimum: float = 0, whole: bool = False) -> float:
        return self.r.number(self.args.get(key, default), self.at(key), f"{self.where}.{key}", minimum, whole)

    def text(self, key: str) -> str:
        return self.r.text(self.args.get(key), self.at(key), f"{self.where}.{key}")


# ------------------------------------------------------------------ registry entries


@dataclass(frozen=True)
class Field:
    """A field of a step or check kind, as the reference describes it."""

    name: str
    words: str = ""             # what it means, for the reference
    default: str = ""           # the default as the reference shows it ("3", "= count"); "" = none
    required: bool = False


class Kind:
    """One kind of step or check: its name, fields, words and execution (see the subclasses
    in lab.net.steps and lab.net.checks)."""

    name: ClassVar[str] = ""
    does: ClassVar[str] = ""                    # one line for the reference
    fields: ClassVar[tuple[Field, ...]] = ()

    @classmethod
    def allowed(cls) -> set[str]:
        return {f.name for f in cls.fields}

    @classmethod
    def required(cls) -> set[str]:
        return {f.name for f in cls.fields if f.required}

    @classmethod
    def fields_words(cls) -> str:
        """**`from`**, **`to`**, `count` (3), ... for the reference (required fields in bold)."""
        parts = []
        for f in cls.fields:
            text = f"**`{f.name}`**" if f.required else f"`{f.name}`"
            if f.default:
                text += f" ({f.default})"
            if f.words:
                text += f": {f.words}"
            parts.append(text)
        return ", ".join(parts) or "none"


K = TypeVar("K", bound=Kind)


class Registry(Generic[K]):
    """Kinds by name, in the order they were added (the reference lists them so)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._kinds: dict[str, K] = {}

    def add(self, cls: type[K]) -> type[K]:
        """Class decorator: one entry per kind."""
        if not cls.name or cls.name in self._kinds:
            raise ValueError(f"{self.what} kind {cls.name!r} is unnamed or added twice")
        self._kinds[cls.name] = cls()
        return cls

    def __getitem__(self, name: str) -> K:
        return self._kinds[name]

    def __contains__(self, name: object) -> bool:
        return name in self._kinds

    def __iter__(self) -> Iterator[str]:
        return iter(self._kinds)

    def items(self) -> list[tuple[str, K]]:
        return list(self._kinds.items())

    def names(self) -> str:
        return ", ".join(self._kinds)
