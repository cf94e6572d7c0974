"""`ipsec-lab diagnose` on failing variants of the library's scenarios (root): each variant
breaks one thing (tests/scenarios/variants.py) or makes a mistake trainers make when they write
their own scenario (tests/scenarios/mistakes.py), runs, fails, and diagnose must name that cause,
say what to change and never say what its evidence contradicts. tests/data/make_runs.py keeps
the mistakes' run folders for the unit tests (tests/unit/test_diagnose_mistakes.py)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab.net import scenario as sc
from lab.net.runner import Progress, run
from lab.viz.diagnose import diagnose

from .mistakes import MISTAKES
from .variants import VARIANTS

pytestmark = pytest.mark.root
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _root():
    if os.geteuid() != 0:
        pytest.skip("scenarios need root (network namespaces)")
    for tool in ("mnexec", "tcpdump", "conntrack"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: run scripts/setup.sh", pytrace=False)


@pytest.mark.parametrize("variant", [*VARIANTS, *MISTAKES], ids=[v.name for v in [*VARIANTS, *MISTAKES]])
def test_diagnose_names_the_cause(variant, tmp_path):
    folder = variant.make(tmp_path / "scenarios")
    out = tmp_path / "run"
    result = run(sc.load(folder), out, Progress(live=False))
    assert not result.passed, f"{variant.name}: the broken scenario passed ({variant.breaks})"
    assert not result.teardown, result.teardown
    found = diagnose(out)
    print(f"{variant.name} ({variant.breaks}):\n{found.text()}")
    assert found.cause == variant.cause, found.text()
    for words in variant.words:
        assert words in found.paragraph, f"{words!r} missing from: {found.paragraph}"
    said = " ".join([found.title, found.paragraph, *found.evidence])
    for words in variant.never:
        assert words not in said, f"{words!r} said in: {found.text()}"
    failed = next(s for s in result.steps if not s.ok and not s.skipped)
    assert found.step == failed.index, f"diagnose points at step {found.step}, the run failed at {failed.index}"


def test_diagnose_command_on_a_passing_run_and_on_a_folder_that_is_no_run(tmp_path):
    out = tmp_path / "run"
    result = run(sc.load("net2net"), out, Progress(live=False))
    assert result.passed
    said = subprocess.run([sys.executable, "-m", "lab.cli", "diagnose", str(out)], cwd=REPO, capture_output=True,
                          text=True)
    assert said.returncode == 0 and "nothing went wrong" in said.stdout, said.stdout + said.stderr
    said = subprocess.run([sys.executable, "-m", "lab.cli", "diagnose", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True)
    assert said.returncode == 2 and "not a run folder" in said.stderr and "Traceback" not in said.stderr
