"""diagnose names what a Windows client shows (profile = windows), on kept runs of the first parts
of windows-defaults and windows-certificate (tests/data/make_runs.py windows-modp1024 windows-no-eku)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lab.viz.diagnose import diagnose
from tests.scenarios.variants import VARIANTS

RUNS = Path(__file__).resolve().parents[1] / "data" / "runs"
WINDOWS = [v for v in VARIANTS if v.name.startswith("windows-")]


@pytest.mark.parametrize("variant", WINDOWS, ids=lambda v: v.name)
def test_each_windows_failure_is_named_with_its_error_number(variant):
    found = diagnose(RUNS / variant.name)
    assert found.cause == variant.cause
    for words in variant.words:
        assert words in found.paragraph, words
    assert found.step == 2


def test_the_gateways_reason_is_quoted_only_when_it_gave_one(tmp_path):
    # the RFC 8247 sentence comes from gw's note; without it diagnose must not put it in gw's mouth
    run = tmp_path / "run"
    shutil.copytree(RUNS / "windows-modp1024", run)
    lines = [json.loads(line) for line in (run / "trace.jsonl").read_text().splitlines()]
    for record in lines:
        record.pop("reason", None) if record.get("what") == "no_proposal_chosen" else None
    (run / "trace.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    found = diagnose(run)
    assert found.cause == "windows-13868"
    assert "says why" not in found.paragraph and "§2.4 deprecates" not in found.paragraph


def test_a_run_without_a_windows_client_is_left_to_the_other_detectors():
    assert not diagnose(RUNS / "ike-proposal").cause.startswith("windows")
