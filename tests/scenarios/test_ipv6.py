"""Break-checks of the IPv6 lessons (root): ipv6-leak must notice a leak that its fix does not
stop, and dual-stack must notice a tunnel without IPv6."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from lab.net.scenario import LIBRARY

from .broken import run_broken, run_edited

pytestmark = pytest.mark.root


@pytest.fixture(autouse=True)
def _root():
    if os.geteuid() != 0:
        pytest.skip("scenarios need root (network namespaces)")


def _no_discard(folder: Path) -> None:
    conf = folder / "hosts" / "gwa" / "fixed.conf"
    text = conf.read_text()
    start, end = text.index("      site-b-v6 {"), text.index("    }\n  }\n}")
    conf.write_text(text[:start] + text[end:])


def test_ipv6_leak_fails_when_the_fix_drops_nothing(tmp_path):
    """fixed.conf without its DISCARD shunt: hosta's IPv6 pings leak again after the fix."""
    result, failed = run_edited(tmp_path, "ipv6-leak", _no_discard)
    assert "fail closed" in failed[0].text and "should have failed but worked" in failed[0].detail, failed[0].detail
    leaked = next(c for c in result.checks if "leaked IPv6 pings" in c.text)
    assert not leaked.ok and "6 packets" in leaked.saw, leaked.saw


def test_dual_stack_fails_when_its_child_has_no_ipv6_selectors(tmp_path):
    """gwa asks for IPv4 only: strongSwan narrows the CHILD_SA to it (RFC 7296 §2.9), and the
    scenario stops at its first check of the IPv6 ranges."""
    both = "local_ts = 10.1.0.0/24, 2001:db8:1::/64\n        remote_ts = 10.2.0.0/24, 2001:db8:2::/64"
    assert (LIBRARY / "dual-stack" / "hosts" / "gwa" / "swanctl.conf").read_text().count(f"        {both}") == 2
    _, failed = run_broken(tmp_path, "dual-stack", "hosts/gwa/swanctl.conf", both,
                           "local_ts = 10.1.0.0/24\n        remote_ts = 10.2.0.0/24")
    assert "lists the IPv6 ranges" in failed[0].text and "0 match" in failed[0].detail, (failed[0].text, failed[0].detail)
