"""lab.conf.writer: a tree written as swanctl.conf reads back as the same tree (our reader's
syntax tree), and a configuration read, written and read again is the same configuration."""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.conf.settings import parse_settings, resolve_settings
from lab.conf.swanctl import load_swanctl, parse_swanctl
from lab.conf.writer import render, render_s2s_conf, render_value

DATA = Path(__file__).resolve().parent.parent / "data" / "swanctl"
TOP_LEVEL = ("connections", "secrets", "pools", "ipsec-lab")


def _read_tree(text: str) -> dict:
    root, _ = parse_settings(text)
    return root.as_tree()


def test_value_rules():
    assert render_value("mobike", False) == "no" and render_value("encap", True) == "yes"
    assert render_value("replay_window", 128) == "128"
    assert render_value("proposals", ["aes128gcm16-prfsha256-x25519", "aes128-sha256-modp2048"]) == \
        "aes128gcm16-prfsha256-x25519, aes128-sha256-modp2048"
    assert render_value("local_ts", "10.1.0.0/24") == "10.1.0.0/24"
    assert render_value("secret", "plain") == '"plain"'
    assert render_value("secret", b"\x00\xff") == '"0x00ff"'
    assert render_value("id", 'a "quoted" #not-a-comment') == '"a \\"quoted\\" #not-a-comment"'
    assert render_value("id", "  padded") == '"  padded"'
    assert render_value("id", "") == '""'
    assert render_value("rekey_time", None) is None


def test_one_key_per_line_and_sections():
    text = render({"connections": {"a": {"version": 2, "rekey_time": None, "children": {"c": {"mode": "tunnel"}}}},
                   "secrets": {"ike-a": {"secret": "two\nlines"}}})
    assert text == ("connections {\n  a {\n    version = 2\n    rekey_time =\n    children {\n      c {\n"
                    "        mode = tunnel\n      }\n    }\n  }\n}\nsecrets {\n  ike-a {\n"
                    "    secret = \"two\\nlines\"\n  }\n}\n")
    assert _read_tree(text)["secrets"]["ike-a"]["secret"] == "two\nlines"
    assert _read_tree(text)["connections"]["a"]["rekey_time"] is None


@pytest.mark.parametrize("tree, where", [
    ({"connections": {"a b": {}}}, "connections"),
    ({"connections": {"a": {"x=y": "1"}}}, "connections.a"),
    ({"include": {}}, "include"),
    ({"connections": {"a": {"pools": ["p1", "p,2"]}}}, "connections.a.pools"),
    ({"connections": {"a": {"version": 2.5}}}, "connections.a.version"),
])
def test_what_cannot_be_written_is_a_value_error_naming_the_key(tree, where):
    with pytest.raises(ValueError, match=where.replace(".", r"\.")):
        render(tree)


_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=8).filter(
    lambda n: n != "include")
_values = st.one_of(st.none(), st.text(max_size=20), st.sampled_from(['"', "\\", "#", "}", "{", " a  b ", "x\\n"]))
_trees = st.recursive(st.dictionaries(_names, _values, max_size=4),
                      lambda inner: st.dictionaries(_names, st.one_of(_values, inner), max_size=4), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(_trees)
def test_any_tree_reads_back_the_same(tree):
    assert _read_tree(render(tree)) == tree


def _config_round_trip(path: Path):
    first = load_swanctl(path)
    root, _ = parse_settings(path.read_text(), str(path))
    tree = {name: value for name, value in resolve_settings(root).as_tree().items() if name in TOP_LEVEL}
    text = render(tree)
    second = parse_swanctl(text, str(path.parent / "written.conf"), swanctl_dir=str(path.parent))
    return first, second, text


@pytest.mark.parametrize("name", ["initiator.conf", "responder.conf", "features.conf"])
def test_read_write_read_gives_the_same_configuration(name):
    first, second, text = _config_round_trip(DATA / name)
    assert second.connections == first.connections, text
    assert second.secrets.ike == first.secrets.ike and second.pools == first.pools
    assert _read_tree(render(_read_tree(text))) == _read_tree(text)


def test_included_files_write_as_one():
    first, second, _ = _config_round_trip(DATA / "include" / "swanctl.conf")
    assert second.connections == first.connections and second.secrets.ike == first.secrets.ike


def test_s2s_recipe_reads_back():
    text = render_s2s_conf(local_addrs="203.0.113.1", remote_addrs="%any", local_id="gwa.lab", remote_id="gwb.lab",
                           psk='with "quote" and # hash', local_ts=["10.1.0.0/24", "10.3.0.0/24"],
                           remote_ts="10.2.0.0/24", rekey_time="1h", start_action="trap")
    config = parse_swanctl(text)
    conn = config.connections["s2s"]
    assert config.find_psk(conn.local_identity(), conn.remote_identity) == b'with "quote" and # hash'
    assert len(conn.children["net"].local_ts) == 2 and conn.rekey_time == 3600
    assert [p.number for p in conn.proposals] == [1, 2]
