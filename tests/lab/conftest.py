"""Fixtures for tests that build the site-to-site topology (root, network namespaces)."""
from __future__ import annotations

import os
import shutil

import pytest


def require_lab() -> None:
    if os.geteuid() != 0:
        pytest.skip("lab tests need root (network namespaces): run them as root")
    for tool, package in (("mnexec", "mininet"), ("iperf3", "iperf3"), ("tcpdump", "tcpdump"), ("tshark", "tshark"),
                          ("/usr/lib/ipsec/charon", "strongswan-charon")):
        if shutil.which(tool) is None and not os.path.exists(tool):
            pytest.fail(f"{tool} is missing: apt-get install {package} (scripts/setup.sh does)", pytrace=False)


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
