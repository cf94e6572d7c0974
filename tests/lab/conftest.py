"""Fixtures for tests that build the site-to-site topology (root, network namespaces)."""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def require_lab() -> None:
    if os.geteuid() != 0:
        pytest.skip("lab tests need root (network namespaces): run them as root")
    for tool, package in (("mnexec", "mininet"), ("iperf3", "iperf3"), ("tcpdump", "tcpdump"), ("tshark", "tshark"),
                          ("/usr/lib/ipsec/charon", "strongswan-charon")):
        if shutil.which(tool) is None and not os.path.exists(tool):
            pytest.fail(f"{tool} is missing: apt-get install {package} (scripts/setup.sh does)", pytrace=False)


def compare_lab(path: Path, vpns: int, name: str, tools: tuple[str, ...]) -> Iterator[Any]:
    """The `compare` topology (lab.net.topology) with `vpns` gateway pairs behind one NAT box,
    for the tests of one kind of VPN software whose `tools` must be installed; stopped afterwards,
    and anything left behind fails the test."""
    require_lab()
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{' and '.join(missing)} missing: scripts/setup.sh installs {'them' if len(missing) > 1 else 'it'}",
                    pytrace=False)
    from lab.net.lab import Lab
    from lab.net.topology import load

    lab = Lab(load("compare")(vpns=vpns), path, name).start()
    try:
        yield lab
    finally:
        problems = lab.stop()
    assert not problems, f"teardown was not clean: {problems}"


@pytest.fixture
def site_to_site():
    """hosta - gwa - NAT box - gwb - hostb, removed afterwards; a leftover fails the test."""
    require_lab()
    from lab.net.sites import SiteLab

    lab = SiteLab(nat="one").start()
    try:
        yield lab
    finally:
        problems = lab.stop()
    assert not problems, f"teardown was not clean: {problems}"
