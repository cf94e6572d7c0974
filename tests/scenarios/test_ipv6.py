"""Break-checks of the IPv6 lessons (root): ipv6-leak must notice a leak that its fix does not
stop, and dual-stack must notice a tunnel without IPv6."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from lab.net import scenario as sc
from lab.net.runner import Progress, run

pytestmark = pytest.mark.root
LIBRARY = Path(__file__).resolve().parents[2] / "scenarios"


@pytest.fixture(autouse=True)
def _root():
    if os.geteuid() != 0:
        pytest.skip("scenarios need root (network namespaces)")


def test_ipv6_leak_fails_when_the_fix_drops_nothing(tmp_path):
    """fixed.conf without its DISCARD shunt: hosta's IPv6 pings leak again after the fix."""
    folder = tmp_path / "no-drop"
    shutil.copytree(LIBRARY / "ipv6-leak", folder)
    conf = folder / "hosts" / "gwa" / "fixed.conf"
    text = conf.read_text()
    start, end = text.index("      site-b-v6 {"), text.index("    }\n  }\n}")
    conf.write_text(text[:start] + text[end:])
    result = run(sc.load(folder), tmp_path / "run", Progress(live=False))
    assert not result.passed and not result.teardown
    failed = next(s for s in result.steps if not s.ok and not s.skipped)
    assert "fail closed" in failed.text and "should have failed but worked" in failed.detail, failed.detail
    leaked = next(c for c in result.checks if "leaked IPv6 pings" in c.text)
    assert not leaked.ok and "6 packets" in leaked.saw, leaked.saw


def test_dual_stack_fails_when_its_child_has_no_ipv6_selectors(tmp_path):
    """gwa asks for IPv4 only: strongSwan narrows the CHILD_SA to it (RFC 7296 §2.9), and the
    scenario stops at its first check of the IPv6 ranges."""
    folder = tmp_path / "v4-only"
    shutil.copytree(LIBRARY / "dual-stack", folder)
    conf = folder / "hosts" / "gwa" / "swanctl.conf"
    text = conf.read_text()
    assert text.count("        local_ts = 10.1.0.0/24, 2001:db8:1::/64\n        remote_ts = 10.2.0.0/24, 2001:db8:2::/64") == 2
    conf.write_text(text.replace("local_ts = 10.1.0.0/24, 2001:db8:1::/64\n        remote_ts = 10.2.0.0/24, 2001:db8:2::/64",
                                 "local_ts = 10.1.0.0/24\n        remote_ts = 10.2.0.0/24", 1))
    result = run(sc.load(folder), tmp_path / "run", Progress(live=False))
    assert not result.passed and not result.teardown
    failed = next(s for s in result.steps if not s.ok and not s.skipped)
    assert "lists the IPv6 ranges" in failed.text and "0 match" in failed.detail, (failed.text, failed.detail)
