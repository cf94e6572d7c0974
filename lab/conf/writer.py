"""swanctl.conf text from a tree of dicts, in the strongswan.conf(5) settings syntax that
`lab.conf.swanctl` reads back (and charon's swanctl reads).

    render({"connections": {"s2s": {"proposals": ["aes128gcm16-prfsha256-x25519"], "mobike": False,
                                     "children": {"net": {"local_ts": "10.1.0.0/24"}}}},
            "secrets": {"ike-s2s": {"id-a": "gwa.lab", "secret": "a-lab-only-psk"}}})

A dict is a section, anything else a `key = value` line: one key per line (a value runs to the
end of its line), lists joined with ", ", True/False as yes/no, None as the empty assignment
`key =` ("the default"). Values that would not read back as written are quoted, with `\\"`,
`\\\\`, `\\n`, `\\r`, `\\t` escapes; secrets are always quoted, and bytes become 0x-hex.
Names that the syntax cannot carry, and list items holding a comma, are a ValueError naming
the dotted key.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["SECRET_KEYS", "render", "render_s2s_conf", "render_value"]

# swanctl.conf(5) secrets: the keys that hold a PSK or a passphrase
SECRET_KEYS = frozenset({"secret"})

_NAME = re.compile(r'[^#{}="\s,:]+')
# one or more runs of characters the reader takes literally, separated by single spaces
_BARE = re.compile(r'[^\s#{}"\\]+(?: [^\s#{}"\\]+)*')
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}

# The proposals of a site-to-site connection that strongSwan 5.9.8 with the lab's plugins accepts:
# AES-GCM with X25519 first, then AES-CBC, HMAC-SHA-256 and MODP-2048
S2S_PROPOSALS = ("aes128gcm16-prfsha256-x25519", "aes128-sha256-modp2048")
S2S_ESP_PROPOSALS = ("aes128gcm16", "aes128-sha256")


def _quote(text: str) -> str:
    return '"' + "".join(_ESCAPES.get(c, c) for c in text) + '"'


def _scalar(value: Any, path: str) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, str):
        return value
    raise ValueError(f"{path}: a value is a string, number, yes/no, bytes or a list of them, "
                     f"not {type(value).__name__}")


def render_value(key: str, value: Any, path: str | None = None) -> str | None:
    """The text after `key = ` for `value` (None for the empty assignment)."""
    path = path or key
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        items = [_scalar(item, path) for item in value]
        for item in items:
            if "," in item or not item.strip():
                raise ValueError(f"{path}: list item {item!r} cannot be written: the reader splits lists at commas")
        text = ", ".join(item.strip() for item in items)
    else:
        text = _scalar(value, path)
    if key in SECRET_KEYS or not _BARE.fullmatch(text):
        return _quote(text)
    return text


def _check_name(name: Any, path: str, section: bool) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"{path or '(top)'}: {name!r} cannot be a key or section name (letters, digits and "
                         f"-_.%@/ and the like; no spaces, #, {{, }}, =, \", ',' or ':')")
    if section and name == "include":
        # strongswan.conf(5) INCLUDING FILES: 'include' before anything but '=' is the include statement
        raise ValueError(f"{path}: a section cannot be named 'include'")


def _section(tree: Mapping[str, Any], depth: int, path: str, out: list[str], indent: str) -> None:
    pad = indent * depth
    for name, value in tree.items():
        dotted = f"{path}.{name}" if path else str(name)
        is_section = isinstance(value, Mapping)
        _check_name(name, path, is_section)
        if is_section:
            out.append(f"{pad}{name} {{\n")
            _section(value, depth + 1, dotted, out, indent)
            out.append(f"{pad}}}\n")
            continue
        text = render_value(name, value, dotted)
        out.append(f"{pad}{name} =\n" if text is None else f"{pad}{name} = {text}\n")


def render(tree: Mapping[str, Any], indent: str = "  ") -> str:
    """swanctl.conf text for a tree of sections (dicts) and values."""
    if not isinstance(tree, Mapping):
        raise ValueError(f"a configuration tree is a dict of sections and keys, not {type(tree).__name__}")
    out: list[str] = []
    _section(tree, 0, "", out, indent)
    return "".join(out)


def render_s2s_conf(
    *,
    local_addrs: str,
    remote_addrs: str,
    local_id: str,
    remote_id: str,
    psk: str,
    local_ts: str | Sequence[str],
    remote_ts: str | Sequence[str],
    name: str = "s2s",
    child: str = "net",
    proposals: str | Sequence[str] | None = None,
    esp_proposals: str | Sequence[str] | None = None,
    mobike: bool = False,
    mode: str = "tunnel",
    rekey_time: str | None = None,
    child_rekey_time: str | None = None,
    start_action: str | None = None,
    extra_connection: Mapping[str, Any] | None = None,
    usable: Callable[[Sequence[str]], Sequence[str]] | None = None,
) -> str:
    """swanctl.conf text for one site-to-site connection authenticated by a PSK, in the
    recipe's shape: `connections { <name> { ... children { <child> { ... } } } }` plus
    `secrets`. For the responder pass `remote_addrs="%any"`. Without `proposals` /
    `esp_proposals` the recipe's lists are used, filtered through `usable` when given (e.g.
    what the installed charon plugins provide).

    With kernel-libipsec the gateway needs an address inside its own `local_ts` (a LAN
    interface or a loopback alias), or the CHILD_SA fails to install its route."""
    if proposals is None:
        proposals = list(usable(S2S_PROPOSALS) if usable else S2S_PROPOSALS)
    if esp_proposals is None:
        esp_proposals = list(usable(S2S_ESP_PROPOSALS) if usable else S2S_ESP_PROPOSALS)
    if not proposals or not esp_proposals:
        raise ValueError("no usable proposal for the site-to-site connection")
    connection: dict[str, Any] = {
        "version": 2,
        "local_addrs": local_addrs,
        "remote_addrs": remote_addrs,
        "proposals": proposals,
        "mobike": mobike,
    }
    if rekey_time is not None:
        connection["rekey_time"] = rekey_time
    connection.update(extra_connection or {})
    children: dict[str, Any] = {"local_ts": local_ts, "remote_ts": remote_ts, "esp_proposals": esp_proposals,
                                "mode": mode}
    if child_rekey_time is not None:
        children["rekey_time"] = child_rekey_time
    if start_action is not None:
        children["start_action"] = start_action
    connection["local"] = {"auth": "psk", "id": local_id}
    connection["remote"] = {"auth": "psk", "id": remote_id}
    connection["children"] = {child: children}
    return render({
        "connections": {name: connection},
        "secrets": {f"ike-{name}": {"id-local": local_id, "id-remote": remote_id, "secret": psk}},
    })
