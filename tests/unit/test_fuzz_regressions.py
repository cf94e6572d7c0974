"""Inputs bench/fuzz.py found that raised something other than the clear error, each kept as a
regression test (the error now names file and line, or the packet is a counted drop)."""
from __future__ import annotations

import signal
from pathlib import Path

import pytest

from lab.conf.swanctl import ConfigError, parse_swanctl


def _refused(text: str, tmp_path) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        parse_swanctl(text, str(tmp_path / "swanctl.conf"))
    return err.value


def test_swanctl_include_with_a_nul_character(tmp_path):
    err = _refused("connections {}\ninclude conf.d/*\x00secrets.conf\n", tmp_path)
    assert err.line == 2 and "NUL" in str(err)


def test_swanctl_include_of_a_binary_file(tmp_path):
    (tmp_path / "blob.conf").write_bytes(b"\xff\xfe\x00binary")
    err = _refused("include blob.conf\n", tmp_path)
    assert err.line == 1 and "not a text file" in str(err)


def test_swanctl_sections_nested_without_end(tmp_path):
    err = _refused("a {\n" * 2000 + "}\n" * 2000, tmp_path)
    assert err.line == 33 and "nested deeper than 32" in str(err)


def test_swanctl_references_in_a_long_row(tmp_path):
    text = "s0 { x = 1 }\n" + "".join(f"s{i} : s{i - 1} {{ }}\n" for i in range(1, 1500))
    err = _refused(text, tmp_path)
    assert "references reach too far" in str(err) and err.line is not None


def test_swanctl_references_that_double_at_every_level(tmp_path):
    # x_i and y_i both inherit x_(i-1) and y_(i-1): 2^30 resolutions without a budget
    text = "x0 { a = 1 }\ny0 { b = 2 }\n" + "".join(
        f"x{i} : x{i - 1}, y{i - 1} {{ }}\ny{i} : x{i - 1}, y{i - 1} {{ }}\n" for i in range(1, 30))

    def hang(*_):
        raise AssertionError("resolving the references did not end within 30 s")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(30)
    try:
        err = _refused(text, tmp_path)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert "references reach too far" in str(err)


def test_scenario_file_that_is_not_utf8(tmp_path):
    from lab.net.scenario import ScenarioError, load

    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "scenario.yaml").write_bytes(b"title: x\ntopology: site-to-site\nsteps: []\n# \xa2\xff\n")
    with pytest.raises(ScenarioError) as err:
        load(folder)
    assert err.value.line == 4 and "not a text file" in str(err.value)


@pytest.mark.parametrize("step, field, reason", [
    ("- start: [gwa, {x: 1}]", "steps[1].start.nodes", "must be a gateway name"),
    ("- initiate: {node: {x: 1}, child: net}", "steps[1].initiate.node", "runs no IKE daemon"),
    ("- rekey: {node: [gwa, [gwb]], child: net}", "steps[1].rekey.node", "runs no IKE daemon")])
def test_scenario_node_that_is_not_a_name(tmp_path, step, field, reason):
    # bench/fuzz.py --target scenario (1,000,000 inputs): a mapping among a step's nodes raised TypeError
    import shutil

    from lab.net.scenario import ScenarioError, load

    folder = tmp_path / "s"
    shutil.copytree(Path(__file__).resolve().parents[2] / "scenarios" / "net2net-nat", folder)
    text = (folder / "scenario.yaml").read_text()
    head = text[:text.index("\nsteps:")]
    (folder / "scenario.yaml").write_text(head + "\nsteps:\n  " + step + "\n")
    with pytest.raises(ScenarioError) as err:
        load(folder)
    assert f"{field}: " in str(err.value) and reason in str(err.value), str(err.value)
