"""The exercises (lab/net/exercises.py, `ipsec-lab exercises`): each has an answer file that names
the cause `ipsec-lab diagnose` gives, checked on the kept run folder of the same break where one
exists (tests/data/runs, made by tests/data/make_runs.py); each broken scenario loads; the tests'
variants use the same definitions. No root: tests/scenarios/test_exercises.py runs some."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from lab.cli import main
from lab.net import scenario as sc
from lab.net.exercises import ANSWERS, EXERCISES, ExerciseError, exercise
from lab.viz.diagnose import diagnose

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from tests.scenarios.mistakes import MISTAKES  # noqa: E402
from tests.scenarios.variants import VARIANTS  # noqa: E402

RUNS = REPO / "tests" / "data" / "runs"
IDS = [f"{e.number:02}-{e.name}" for e in EXERCISES]


def test_numbers_and_names_are_unique_and_every_answer_file_belongs_to_an_exercise():
    assert [e.number for e in EXERCISES] == list(range(1, len(EXERCISES) + 1))
    assert len({e.name for e in EXERCISES}) == len(EXERCISES)
    assert sorted(p.name for p in ANSWERS.glob("*.md")) == sorted(e.answer.name for e in EXERCISES)


@pytest.mark.parametrize("e", EXERCISES, ids=IDS)
def test_the_answer_names_the_cause_diagnose_gives(e):
    assert e.answer.is_file(), f"exercise {e.number} has no answer: {e.answer}"
    text = e.answer.read_text()
    assert text.startswith(f"# Exercise {e.number}: {e.title} - answer\n"), text.splitlines()[0]
    for part in ("**What was wrong.**", "## How to see it", "## The fix", "ipsec-lab diagnose"):
        assert part in text, f"{e.answer.name} lacks {part!r}"
    said = re.search(r"\*\*What `ipsec-lab diagnose` names:\*\* (.+), cause `([a-z-]+)`\.", text)
    assert said, f"{e.answer.name}: no line 'What `ipsec-lab diagnose` names: TITLE, cause `CAUSE`.'"
    assert said.group(2) == e.cause, f"{e.answer.name} names {said.group(2)}, the exercise's cause is {e.cause}"
    if (RUNS / e.name).is_dir():
        found = diagnose(RUNS / e.name)
        assert found.cause == e.cause, f"diagnose on tests/data/runs/{e.name}: {found.text()}"
        assert said.group(1) == found.title, f"{e.answer.name} says {said.group(1)!r}, diagnose {found.title!r}"


def test_most_exercises_are_checked_on_a_kept_run():
    kept = [e.name for e in EXERCISES if (RUNS / e.name).is_dir()]
    assert len(kept) >= len(EXERCISES) - 3, f"only {kept} have a kept run folder"


@pytest.mark.parametrize("e", EXERCISES, ids=IDS)
def test_each_broken_scenario_loads(e, tmp_path):
    folder = e.make(tmp_path / "scenario")
    scenario = sc.load(folder)
    assert scenario.steps and not scenario.checks
    again = e.make_for_trainee(tmp_path / "scenario")  # an earlier exercise's folder is replaced
    assert again == folder
    assert sc.load(folder).title == f"Exercise {e.number}: {e.title} ({e.scenario}, broken in one place)"


def test_a_folder_that_holds_no_scenario_is_kept(tmp_path):
    (tmp_path / "scenario").mkdir()
    (tmp_path / "scenario" / "notes.txt").write_text("mine")
    with pytest.raises(ExerciseError, match="holds no scenario"):
        EXERCISES[0].make(tmp_path / "scenario")
    assert (tmp_path / "scenario" / "notes.txt").read_text() == "mine"


def test_the_tests_variants_use_the_exercises_definitions():
    tests = {v.name: v for v in [*VARIANTS, *MISTAKES]}
    for e in EXERCISES:
        assert e.name in tests, f"exercise {e.name} is in no test (tests/scenarios/variants.py or mistakes.py)"
        v = tests[e.name]
        assert (v.scenario, v.cause, v.edit) == (e.scenario, e.cause, e.edit), f"{e.name} is a copy, not the definition"


def test_exercise_by_number_or_name():
    assert exercise(3) is exercise("3") is exercise("03") is EXERCISES[2]
    assert exercise("wrong-psk").number == 1
    with pytest.raises(ExerciseError, match="ipsec-lab exercises"):
        exercise(len(EXERCISES) + 1)


def test_the_command_lists_them_and_refuses_an_unknown_one(capsys):
    assert main(["exercises"]) == 0
    out = capsys.readouterr().out
    for e in EXERCISES:
        assert re.search(rf"^ *{e.number}  {re.escape(e.title)} +{e.scenario} +{re.escape(e.sees)}$", out, re.M), out
    assert "exercises/answers/" in out
    assert main(["exercises", "run", "99"]) == 2
    err = capsys.readouterr().err
    assert "no exercise '99'" in err and "Traceback" not in err
    assert main(["exercises", "run"]) == 2


def test_the_readme_counts_them():
    readme = (REPO / "README.md").read_text()
    assert f"`ipsec-lab exercises` lists {len(EXERCISES)} exercises" in readme
