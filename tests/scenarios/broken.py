"""Break-checks of the library's scenarios: run a copy of one with one thing broken and see it
fail (tests/scenarios/test_alternatives.py, test_ipv6.py; root)."""
from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from lab.net import scenario as sc
from lab.net.exercises import replace
from lab.net.runner import Progress, run
from lab.runfolder import RunResult, StepResult


def run_edited(tmp_path: Path, scenario: str, edit: Callable[[Path], None]) -> tuple[RunResult, list[StepResult]]:
    """Run a copy of scenarios/<scenario> (in tmp_path) after `edit` on its folder; the run must
    fail and its teardown must not. The run's result and its failed steps (not the skipped ones),
    in order; the run folder is tmp_path / "run"."""
    folder = tmp_path / scenario
    shutil.copytree(sc.LIBRARY / scenario, folder)
    edit(folder)
    result = run(sc.load(folder), tmp_path / "run", Progress(live=False))
    assert not result.passed and not result.teardown
    return result, [s for s in result.steps if not s.ok and not s.skipped]


def run_broken(tmp_path: Path, scenario: str, file: str, old: str, new: str) -> tuple[RunResult, list[StepResult]]:
    """run_edited with the first `old` in the scenario's `file` (a path in its folder) made `new`;
    an error if `old` is not there."""
    return run_edited(tmp_path, scenario, lambda folder: replace(folder / file, old, new))
