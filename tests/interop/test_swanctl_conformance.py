"""Every key of swanctl.conf(5) loaded by ipsec-lab's reader and by charon (root): ipsec-lab takes
nothing charon refuses, every refusal of ours names file:line:key, and docs/swanctl-conformance.md
says what this run found (tests/interop/swanctl_conformance.py writes it)."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from . import swanctl_conformance as sc


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("needs root (charon in a namespace of its own)")
    if shutil.which("swanctl") is None:
        pytest.fail("swanctl is missing: apt-get install strongswan-swanctl", pytrace=False)
    return sc.run_all(tmp_path_factory.mktemp("conformance"))


def test_ipsec_lab_takes_nothing_charon_refuses(results):
    lenient = [(case.key, why) for case, (ok, _), (their_ok, why) in results if ok and not their_ok]
    assert lenient == []


def test_each_refusal_of_ours_names_file_line_and_key(results):
    assert [case.key for case, (ok, why), _ in results if not ok and why.startswith("NO FILE:LINE")] == []


def test_the_page_says_what_this_run_found(results):
    version = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "strongswan-swanctl"], capture_output=True,
                             text=True).stdout
    if not version.startswith("5.9.8"):
        pytest.skip(f"docs/swanctl-conformance.md is written with Debian 12's strongSwan 5.9.8, not {version}")
    assert sc.render(results, sc.manual_keys()) == sc.DOC.read_text(), (
        "docs/swanctl-conformance.md is not what this run found: python -m tests.interop.swanctl_conformance --write")
    covered = {case.key for case, *_ in results}
    assert [key for key in sc.manual_keys() if key not in covered] == []
