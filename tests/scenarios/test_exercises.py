"""`ipsec-lab exercises run N` (root): a few exercises run broken through the command as a trainee
runs them, fail as intended, point at their report, captures, scenario, diagnose and answer, and
`ipsec-lab diagnose` names the cause their answer gives. tests/unit/test_exercises.py checks every
answer against the kept run folders without root."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab.net.exercises import exercise
from lab.viz.diagnose import diagnose

pytestmark = pytest.mark.root
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _root():
    if os.geteuid() != 0:
        pytest.skip("exercises need root (network namespaces)")
    for tool in ("mnexec", "tcpdump", "conntrack"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: run scripts/setup.sh", pytrace=False)


@pytest.mark.parametrize("name", ["wrong-psk", "udp4500-blocked", "ts-narrowed"])
def test_an_exercise_fails_as_intended_and_diagnose_names_its_cause(name, tmp_path):
    e = exercise(name)
    out = tmp_path / f"ex{e.number}"
    said = subprocess.run([sys.executable, "-m", "lab.cli", "exercises", "run", str(e.number), "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=3600, check=False)  # waits for the lab lock
    print(said.stdout, said.stderr)
    assert said.returncode == 0, said.stdout + said.stderr
    assert f"Exercise {e.number}: {e.title}" in said.stdout and "FAILED, as intended" in said.stdout
    run = out / "run"
    for shown in (run / "report.md", run / "captures", out / "scenario", f"ipsec-lab diagnose {run}",
                  e.answer.relative_to(REPO)):
        assert str(shown) in said.stdout, f"{shown} not pointed at: {said.stdout}"
    assert (run / "report.md").is_file() and list((run / "captures").glob("*.pcap"))
    assert f"Exercise {e.number}: {e.title}" in (run / "report.md").read_text()
    found = diagnose(run)
    assert found.cause == e.cause, found.text()
    answered = re.search(r"\*\*What `ipsec-lab diagnose` names:\*\* (.+), cause", e.answer.read_text()).group(1)
    assert answered == found.title, f"the answer says {answered!r}, diagnose {found.title!r}"
