"""lab.net.world without making a world: the slots that limit labs at once, the unshare command,
names unique per world; and the test suite's --shard (tests/conftest.py)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lab.net import world

REPO = Path(__file__).resolve().parents[2]


def test_slots_are_taken_up_to_the_limit_and_freed(tmp_path):
    first, second, third = (world.Slot(tmp_path, 2) for _ in range(3))
    first.acquire()
    second.acquire()
    assert {first.index, second.index} == {0, 1}
    assert not any(third._try(i) for i in range(2))  # both held: a third must wait
    assert world._lock_holders(tmp_path / "slot-0")
    second.release()
    said = []
    third.acquire(said.append)
    assert third.index is not None and said == []  # free at once: nothing to say
    first.release()
    third.release()
    assert not world._lock_holders(tmp_path / "slot-0") and not world._lock_holders(tmp_path / "slot-1")


def test_no_limit_takes_no_slot(tmp_path):
    slot = world.Slot(tmp_path, 0).acquire()
    assert slot.fd is None and list(tmp_path.iterdir()) == []


def test_the_limit_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(world.LIMIT_ENV, "3")
    assert world.limit() == 3
    monkeypatch.setenv(world.LIMIT_ENV, "many")
    with pytest.raises(world.WorldError, match="IPSEC_LAB_MAX_LABS='many' is not a whole number"):
        world.limit()


def test_unshare_adds_a_user_namespace_without_root(monkeypatch):
    monkeypatch.setattr(world.os, "geteuid", lambda: 0)
    as_root = world.unshare_argv()
    assert "--map-root-user" not in as_root and {"--mount", "--net", "--pid", "--mount-proc"} <= set(as_root)
    monkeypatch.setattr(world.os, "geteuid", lambda: 1001)
    assert world.unshare_argv()[1:3] == ["--map-root-user", "--map-auto"]


def test_names_outside_run_are_unique_per_world(monkeypatch):
    monkeypatch.delenv(world.MARKER, raising=False)
    assert world.tag(7) == "7" and not world.inside()
    monkeypatch.setenv(world.MARKER, "4242")
    assert world.tag(7) == "4242-7" and world.inside()


def test_shards_split_the_tests_between_them():
    def collected(*args: str) -> set[str]:
        out = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q",
                              "tests/unit/test_world.py", *args], cwd=REPO, capture_output=True, text=True).stdout
        return {line for line in out.splitlines() if "::" in line}

    every = collected()
    shares = [collected("--shard", f"{i}/3") for i in range(3)]
    assert len(every) == 6 and all(shares)
    assert set().union(*shares) == every and sum(map(len, shares)) == len(every)
    bad = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q",
                          "tests/unit/test_world.py", "--shard", "3/3"], cwd=REPO, capture_output=True, text=True)
    assert bad.returncode != 0 and "--shard 3/3: give I/N with 0 <= I < N" in bad.stderr
