"""Every scenario of the library runs and passes (root): each is one `ipsec-lab run`, and its
run folder holds what report.md promises. Scenarios whose point is a failure check that the
failure happened (their expect: fail steps) before they apply the fix."""
from __future__ import annotations

import json
import os
import shutil

import pytest

from lab.net import scenario as sc
from lab.net.runner import Progress, run

pytestmark = pytest.mark.root


@pytest.fixture(autouse=True)
def _root():
    if os.geteuid() != 0:
        pytest.skip("scenarios need root (network namespaces)")
    for tool in ("mnexec", "tcpdump", "conntrack", "iperf3"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: run scripts/setup.sh", pytrace=False)


@pytest.mark.parametrize("name", [p.name for p in sc.library()])
def test_scenario_passes(name, tmp_path):
    scenario = sc.load(name)
    result = run(scenario, tmp_path / name, Progress(live=False))
    failed = [f"step {s.index} ({s.text}): {s.detail}" for s in result.steps if not s.ok]
    failed += [f"check {c.index} ({c.text}): {c.saw}" for c in result.checks if not c.ok]
    assert result.passed, f"{name} failed: {result.error or ''} {failed} {result.teardown}"
    expected_failures = [s for s in scenario.steps if s.expect == "fail"]
    for step in expected_failures:
        detail = result.steps[step.index - 1].detail
        assert detail.startswith("failed as expected"), detail
    saved = json.loads((tmp_path / name / "result.json").read_text())
    assert saved["passed"] and saved["scenario"] == name
    assert (tmp_path / name / "report.md").read_text().startswith(f"# {name}: ")


DATA = __import__("pathlib").Path(__file__).resolve().parent / "data"


def test_remote_access_against_a_strongswan_gateway(tmp_path):
    """Our road-warrior client gets a virtual IP from strongSwan's pool and reaches the LAN
    behind it, next to a strongSwan client; the run also merges its captures into one pcapng."""
    scenario = sc.load(DATA / "rw-strongswan-gateway")
    result = run(scenario, tmp_path / "run", Progress(live=False))
    failed = [f"{s.index} {s.text}: {s.detail}" for s in result.steps if not s.ok]
    failed += [f"check {c.index}: {c.saw}" for c in result.checks if not c.ok]
    assert result.passed, failed
    merged = tmp_path / "run" / "captures" / "all.pcapng"
    assert merged.exists() and merged.stat().st_size > sum(
        p.stat().st_size for p in (tmp_path / "run" / "captures").glob("nat1-*.pcap")) // 2
