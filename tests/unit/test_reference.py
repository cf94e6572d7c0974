"""The registries of step kinds, check kinds and gateway software are the one place each kind is
described: scenarios/README.md's reference is generated from them, and a kind added to a registry
is known to the scenario reader, the report's words and the reference with nothing else changed."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from lab.net import reference
from lab.net.checks import CHECKS, CheckKind
from lab.net.fields import Field
from lab.net.scenario import ScenarioError, load
from lab.net.software import SOFTWARE
from lab.net.steps import STEPS, StepKind

LIBRARY = Path(__file__).resolve().parents[2] / "scenarios"


def test_the_readme_reference_is_generated_from_the_registries():
    text = reference.README.read_text()
    assert reference.current(text) == reference.block(), (
        "scenarios/README.md's reference is stale: run `python -m lab.net.reference --write`")


def test_every_kind_is_in_the_reference_with_its_fields():
    text = reference.render()
    for name, kind in [*STEPS.items(), *CHECKS.items()]:
        assert f"| `{name}` |" in text
        assert kind.does, f"{name} has no words for the reference"
        for f in kind.fields:
            assert f"`{f.name}`" in text
    for name in SOFTWARE:
        assert f"| `{name}` |" in text


def test_every_step_kind_used_by_the_library_is_registered_and_described():
    seen = set()
    for folder in sorted(p.parent for p in LIBRARY.glob("*/scenario.yaml")):
        scenario = load(folder)
        for step in scenario.steps:
            seen.add(step.kind)
            assert step.text.strip()
        for check in scenario.checks:
            assert check.text.strip()
    assert seen <= set(STEPS)


@pytest.fixture
def toy_kinds():
    """A new step kind and a new check kind, each one entry in its registry, as a contributor adds them."""

    @STEPS.add
    class Shout(StepKind):
        name = "shout"
        does = "says a word on a node"
        fields = (Field("node", "any node", required=True), Field("word", required=True))

        def validate(self, f, ctx, out):
            if f.args["node"] not in ctx.nodes:
                raise f.error("node", f"no node {f.args['node']!r}")
            f.text("word")

        def describe(self, a):
            return f"{a['node']} shouts {a['word']}"

        def run(self, run, a):
            return run.node(a["node"]).cmd(f"echo {a['word']}")

    @CHECKS.add
    class Quiet(CheckKind):
        name = "quiet"
        does = "a node's shell says nothing"
        fields = (Field("node", required=True),)
        node_pool = "nodes"

        def describe(self, a):
            return f"{a['node']} is quiet"

        def evaluate(self, run, a):
            out = run.node(a["node"]).cmd("true")
            return not out.strip(), repr(out)

    try:
        yield
    finally:
        STEPS._kinds.pop("shout")
        CHECKS._kinds.pop("quiet")


def _scenario(tmp_path, steps: str, checks: str = "") -> Path:
    folder = tmp_path / "toy"
    (folder / "hosts" / "gwa").mkdir(parents=True, exist_ok=True)
    (folder / "hosts" / "gwa" / "swanctl.conf").write_text((LIBRARY / "net2net" / "hosts" / "gwa" / "swanctl.conf")
                                                          .read_text())
    (folder / "scenario.yaml").write_text(textwrap.dedent(f"""\
        topology: site-to-site
        gateways: {{gwa: ours}}
        steps:
        {textwrap.indent(textwrap.dedent(steps), '  ')}
        checks:
        {textwrap.indent(textwrap.dedent(checks), '  ') if checks else '  []'}
        """))
    return folder


def test_a_new_step_and_check_kind_is_one_registry_entry(toy_kinds, tmp_path):
    folder = _scenario(tmp_path, "- shout: {node: hosta, word: hello}\n", "- quiet: {node: hosta}\n")
    scenario = load(folder)
    assert scenario.steps[0].text == "hosta shouts hello"
    assert scenario.checks[0].text == "hosta is quiet"
    assert "| `shout` |" in reference.render() and "| `quiet` |" in reference.render()
    with pytest.raises(ScenarioError, match=r"scenario.yaml:4: steps\[1\].shout.node: no node 'nobody'"):
        load(_scenario(tmp_path, "- shout: {node: nobody, word: hello}\n"))
    with pytest.raises(ScenarioError, match=r"steps\[1\].shout.word: unknown field|'word' is missing"):
        load(_scenario(tmp_path, "- shout: {node: hosta}\n"))


def test_unknown_kinds_are_refused_with_the_registries_lists(tmp_path):
    with pytest.raises(ScenarioError) as err:
        load(_scenario(tmp_path, "- shout: {node: hosta, word: hello}\n"))
    assert "each step is one of start, stop" in str(err.value) and "shout" not in str(err.value).split("found")[0]
    with pytest.raises(ScenarioError, match="each check is one of cmd, tap, sa, tunnel, trace, counter, log"):
        load(_scenario(tmp_path, "- start: all\n", "- quiet: {node: hosta}\n"))
