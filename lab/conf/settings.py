"""The strongSwan "settings" syntax of swanctl.conf and strongswan.conf(5), as a tree.

    root, files = parse_settings(text, "swanctl.conf")
    resolve_settings(root).sections["connections"].sections["s2s"].settings["remote_addrs"].value

`parse_settings` reads the syntax into a tree of `Section`s and `Setting`s, each remembering its
file and line: `name { ... }` sections, `key = value` lines whose value runs to the end of the
line (or to `#` or `}`), `"quoted strings"` with `\\n \\t \\"` escapes, `#` comments, `include`
of files relative to the including file (with glob patterns), and section references
`name : other, connections.x { ... }`, which `resolve_settings` applies. Nothing here knows what
a key means (lab.conf.swanctl does); every error, a `ConfigError`, reads
`file:line: dotted.key: what is wrong`.
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ConfigError",
    "Section",
    "Setting",
    "all_refs",
    "parse_settings",
    "read_text",
    "resolve_settings",
]

MAX_INCLUDE_DEPTH = 10
MAX_SECTION_DEPTH = 32         # sections within sections (swanctl.conf needs 5)
MAX_REFERENCE_STEPS = 10_000   # sections resolved when applying `name : other` references


class ConfigError(ValueError):
    """A problem in a swanctl.conf. `file` and `line` say where (line None: the file as a
    whole), `key` the dotted name of the key or section concerned (None: syntax)."""

    def __init__(self, message: str, *, file: str, line: int | None, key: str | None = None) -> None:
        message = message.replace("\n", "\\n")
        where = file if line is None else f"{file}:{line}"
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")
        self.file = file
        self.line = line
        self.key = key
        self.reason = message


# ---------------------------------------------------------------- the settings tree


@dataclass
class Setting:
    """`key = value`; `value` None for an empty assignment, which means "use the default"."""

    key: str
    value: str | None
    file: str
    line: int


@dataclass
class Section:
    """`name { ... }`, with its settings and subsections in the order first written."""

    name: str
    file: str
    line: int
    path: str = ""
    settings: dict[str, Setting] = field(default_factory=dict)
    sections: dict[str, Section] = field(default_factory=dict)
    refs: list[tuple[str, str, int]] = field(default_factory=list)

    def as_tree(self) -> dict[str, Any]:
        """The section as nested dicts of values (None: empty assignment), settings before
        subsections, in the shape `lab.conf.writer.render` writes; references are not applied."""
        tree: dict[str, Any] = {key: setting.value for key, setting in self.settings.items()}
        for name, sub in self.sections.items():
            if name in tree:
                raise ValueError(f"{sub.path}: a key and a section share the name '{name}'")
            tree[name] = sub.as_tree()
        return tree

    def child(self, name: str, file: str, line: int) -> Section:
        existing = self.sections.get(name)
        if existing is None:
            existing = Section(name, file, line, f"{self.path}.{name}" if self.path else name)
            self.sections[name] = existing
        return existing


_NAME_STOP = frozenset('#{}="\r\n\t ,:')
_VALUE_STOP = frozenset(' \t\r\n#}"')
_INCLUDE_STOP = frozenset(' \t\r\n#}')
_GLOB = re.compile(r"[*?\[]")


class _SettingsParser:
    # strongswan.conf(5) SYNTAX, INCLUDING FILES, REFERENCING OTHER SECTIONS

    def __init__(self, read: Callable[[str], str]) -> None:
        self.read = read
        self.files: list[str] = []

    def parse(self, text: str, file: str, root: Section, depth: int = 0) -> None:
        self.files.append(file)
        stack = [root]
        n = len(text)
        i, line = 0, 1

        def error(message: str, at: int, key: str | None = None) -> ConfigError:
            return ConfigError(message, file=file, line=at, key=key)

        while True:
            while i < n and text[i] in " \t\r":
                i += 1
            if i >= n:
                break
            c = text[i]
            if c == "#":
                while i < n and text[i] != "\n":
                    i += 1
                continue
            if c == "\n":
                line += 1
                i += 1
                continue
            current = stack[-1]
            if c == "}":
                if len(stack) == 1:
                    raise error("unexpected '}': no section is open here (one '}' too many?)", line,
                                current.path or None)
                stack.pop()
                i += 1
                continue
            if c in '{=",:':
                raise error(f"unexpected '{c}': expected 'key = value', 'name {{' or '}}'", line,
                            current.path or None)
            start = i
            while i < n and text[i] not in _NAME_STOP:
                i += 1
            name, name_line = text[start:i], line
            path = f"{current.path}.{name}" if current.path else name
            k = i
            while k < n and text[k] in " \t\r":
                k += 1
            if name == "include" and k > i and k < n and text[k] != "=":
                i, line = self._include(text, k, line, file, current, depth)
                continue
            if k < n and text[k] == "=":
                i, line, value = self._value(text, k + 1, line, file)
                current.settings[name] = Setting(name, value, file, name_line)
                continue
            refs: list[str] = []
            if k < n and text[k] == ":":
                k, refs = self._refs(text, k + 1, file, line, path)
            k, after = _skip_blank_lines(text, k, line)
            if k < n and text[k] == "{":
                if len(stack) > MAX_SECTION_DEPTH:
                    raise error(f"sections nested deeper than {MAX_SECTION_DEPTH} levels", name_line, path)
                section = current.child(name, file, name_line)
                section.refs.extend((ref, file, name_line) for ref in refs)
                stack.append(section)
                i, line = k + 1, after
                continue
            raise error(f"'{name}' is neither a key ('{name} = value') nor a section ('{name} {{ ... }}')",
                        name_line, path)
        if len(stack) > 1:
            open_section = stack[-1]
            raise ConfigError(f"section '{open_section.name}' opened here is never closed: a '}}' is missing "
                              f"before the end of the file", file=file, line=open_section.line,
                              key=open_section.path)

    def _string(self, text: str, i: int, line: int, file: str) -> tuple[int, int, str]:
        start_line, n, out = line, len(text), list[str]()
        while i < n:
            c = text[i]
            if c == '"':
                return i + 1, line, "".join(out)
            if c == "\\" and i + 1 < n:
                nxt = text[i + 1]
                if nxt == "\n" or (nxt == "\r" and text[i + 2:i + 3] == "\n"):
                    line += 1
                    i += 2 if nxt == "\n" else 3
                    continue
                out.append({"n": "\n", "r": "\r", "t": "\t"}.get(nxt, nxt))
                i += 2
                continue
            if c == "\n":
                line += 1
            if c != "\r":
                out.append(c)
            i += 1
        raise ConfigError("unterminated string: the '\"' opened here is never closed", file=file, line=start_line)

    def _value(self, text: str, i: int, line: int, file: str) -> tuple[int, int, str | None]:
        n, parts = len(text), []
        while i < n:
            c = text[i]
            if c in " \t\r":
                i += 1
            elif c in "\n#}":
                break
            elif c == '"':
                i, line, string = self._string(text, i + 1, line, file)
                parts.append(string)
            else:
                start = i
                while i < n and text[i] not in _VALUE_STOP:
                    i += 1
                parts.append(text[start:i])
        # strongSwan settings_parser.y value: parts are joined by a single space
        return i, line, (" ".join(parts) if parts else None)

    def _refs(self, text: str, i: int, file: str, line: int, path: str) -> tuple[int, list[str]]:
        n, refs = len(text), []
        while True:
            while i < n and text[i] in " \t\r":
                i += 1
            start = i
            while i < n and text[i] not in _NAME_STOP:
                i += 1
            if start == i:
                raise ConfigError("expected the name of a section to reference after ':' or ','",
                                  file=file, line=line, key=path)
            refs.append(text[start:i])
            while i < n and text[i] in " \t\r":
                i += 1
            if i < n and text[i] == ",":
                i += 1
                continue
            return i, refs

    def _include(self, text: str, i: int, line: int, file: str, section: Section, depth: int) -> tuple[int, int]:
        n = len(text)
        if text[i] == '"':
            i, line, pattern = self._string(text, i + 1, line, file)
        else:
            out = []
            while i < n and text[i] not in _INCLUDE_STOP:
                if text[i] == "\\" and i + 1 < n and text[i + 1] in '"#} ':
                    out.append(text[i + 1])
                    i += 2
                else:
                    out.append(text[i])
                    i += 1
            pattern = "".join(out)
        if not pattern:
            raise ConfigError("include needs a file name or pattern", file=file, line=line)
        if "\0" in pattern:
            raise ConfigError("include: the file name holds a NUL character", file=file, line=line)
        if depth + 1 > MAX_INCLUDE_DEPTH:
            raise ConfigError(f"includes nested deeper than {MAX_INCLUDE_DEPTH} levels (does a file include itself?)",
                              file=file, line=line)
        # strongswan.conf(5) INCLUDING FILES: relative to the including file, shell wildcards allowed
        full = pattern if os.path.isabs(pattern) else os.path.join(os.path.dirname(file), pattern)
        if _GLOB.search(pattern):
            import glob

            paths = sorted(p for p in glob.glob(full) if os.path.isfile(p))
        elif not os.path.isfile(full):
            raise ConfigError(f"include: file '{pattern}' not found (looked for {full})", file=file, line=line)
        else:
            paths = [full]
        for path in paths:
            try:
                content = self.read(path)
            except OSError as exc:
                raise ConfigError(f"include: cannot read '{path}': {exc.strerror or exc}", file=file, line=line) from None
            except UnicodeDecodeError:
                raise ConfigError(f"include: '{path}' is not a text file (UTF-8 expected)", file=file,
                                  line=line) from None
            self.parse(content, path, section, depth + 1)
        return i, line


def _skip_blank_lines(text: str, i: int, line: int) -> tuple[int, int]:
    n = len(text)
    while i < n:
        if text[i] in " \t\r":
            i += 1
        elif text[i] == "\n":
            line += 1
            i += 1
        elif text[i] == "#":
            while i < n and text[i] != "\n":
                i += 1
        else:
            break
    return i, line


def read_text(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def parse_settings(text: str, filename: str = "swanctl.conf",
                   read: Callable[[str], str] = read_text) -> tuple[Section, list[str]]:
    """The raw settings tree of `text` (section references not yet applied) and the files read."""
    parser = _SettingsParser(read)
    root = Section("", filename, 0)
    parser.parse(text, filename, root)
    return root, parser.files


def resolve_settings(root: Section) -> Section:
    """The tree with section references (`name : other { ... }`) applied, as the reader sees it."""
    return _resolve(root, root, (), [MAX_REFERENCE_STEPS])


def _lookup(root: Section, absname: str) -> Section | None:
    section: Section | None = root
    for part in absname.split("."):
        section = section.sections.get(part) if section is not None else None
    return section


def _resolve(root: Section, section: Section, chain: tuple[str, ...], budget: list[int]) -> Section:
    # strongswan.conf(5) REFERENCING OTHER SECTIONS: own settings first, then inherited ones
    budget[0] -= 1
    if budget[0] < 0 or len(chain) > MAX_SECTION_DEPTH:
        raise ConfigError(f"section references reach too far (more than {MAX_SECTION_DEPTH} in a row or "
                          f"{MAX_REFERENCE_STEPS} sections resolved)", file=section.file, line=section.line,
                          key=section.path or None)
    out = Section(section.name, section.file, section.line, section.path, dict(section.settings))
    for name, sub in section.sections.items():
        out.sections[name] = _resolve(root, sub, chain, budget)
    for ref, file, line in section.refs:
        target = _lookup(root, ref)
        if target is None:
            raise ConfigError(f"section reference '{ref}' names no section (write its full name, e.g. "
                              f"connections.base)", file=file, line=line, key=section.path)
        if target.path in chain + (section.path,):
            raise ConfigError(f"section reference '{ref}' makes a loop", file=file, line=line, key=section.path)
        inherited = _resolve(root, target, chain + (section.path,), budget)
        _merge_missing(out, inherited)
    return out


def _merge_missing(into: Section, inherited: Section) -> None:
    for key, setting in inherited.settings.items():
        into.settings.setdefault(key, setting)
    for name, sub in inherited.sections.items():
        if name in into.sections:
            _merge_missing(into.sections[name], sub)
        else:
            into.sections[name] = _rebase(sub, f"{into.path}.{name}")


def _rebase(section: Section, path: str) -> Section:
    out = Section(section.name, section.file, section.line, path, dict(section.settings))
    for name, sub in section.sections.items():
        out.sections[name] = _rebase(sub, f"{path}.{name}")
    return out


def all_refs(section: Section) -> list[str]:
    """Every section reference (`name : other`) written in the tree, as written."""
    refs = [ref for ref, _, _ in section.refs]
    for sub in section.sections.values():
        refs.extend(all_refs(sub))
    return refs
