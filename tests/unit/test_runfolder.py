"""lab.runfolder: the typed result.json also reads as the JSON object it is written as, the way
the notebooks and a trainer's scripts read it (`result["steps"]`, `step["kind"]`)."""
from __future__ import annotations

import pytest

from lab import runfolder


def test_a_result_reads_as_its_json():
    result = runfolder.RunResult.from_json({"scenario": "x", "passed": True,
                                            "steps": [{"index": 1, "kind": "ping", "text": "hosta pings", "ok": True}]})
    assert result["scenario"] == "x" and result["passed"] is True
    step = result["steps"][0]
    assert step["kind"] == "ping" and step["index"] == 1 and step["text"] == step.text
    assert step.get("no-such-field", "default") == "default"
    with pytest.raises(KeyError):
        step["no-such-field"]
