"""bench/fuzz.py in the suite: 10,000 coverage-guided inputs (atheris) per target, none of
which may raise anything but the target's clear error (each target in its own process, two
at a time; bench/fuzz.py --inputs 1000000 is the long run)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

atheris = pytest.importorskip("atheris", reason="atheris is not installed (pip install atheris)")
from fuzz import TARGETS  # noqa: E402

INPUTS = 10_000
# IPSEC_LAB_FUZZ=esp,decode runs only those (to see a planted bug found without waiting for all)
SELECTED = [t for t in TARGETS if t in os.environ.get("IPSEC_LAB_FUZZ", ",".join(TARGETS)).split(",")]


def fuzz(target: str, out: Path) -> dict:
    proc = subprocess.run([sys.executable, str(REPO / "bench/fuzz.py"), "--inputs", str(INPUTS), "--target", target,
                           "--json", "--out", str(out)], capture_output=True, text=True, cwd=REPO, timeout=600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, proc.stdout + proc.stderr
    return json.loads(lines[-1])


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("fuzz")
    with ThreadPoolExecutor(2) as pool:
        return {r["target"]: r for r in pool.map(lambda t: fuzz(t, out), SELECTED)}


@pytest.mark.parametrize("target", SELECTED)
def test_ten_thousand_inputs_and_no_crash(results, target):
    result = results[target]
    assert result["crashes"] == 0, "\n".join(result["details"])
    assert result["inputs"] >= INPUTS
    assert result["cov"] > 100  # the seeds reach well into the code under test
