"""lab.net.cleanup removes what a lab recorded and only that (root)."""
from __future__ import annotations

import os
import subprocess
import time

import pytest

from lab.net import cleanup

pytestmark = pytest.mark.root


@pytest.fixture(autouse=True)
def _root():
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")


def _in_new_netns() -> subprocess.Popen:
    """A sleeper in a network namespace of its own (like a lab node's shell)."""
    proc = subprocess.Popen(["unshare", "--net", "sleep", "60"])
    deadline = time.monotonic() + 5
    while cleanup.netns_inode(proc.pid) in (None, cleanup.ROOT_NETNS) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert cleanup.netns_inode(proc.pid) not in cleanup.protected_netns()
    return proc


def test_remove_kills_what_lives_in_recorded_namespaces_and_nothing_else(tmp_path, monkeypatch):
    monkeypatch.setattr(cleanup, "RECORDS", tmp_path)
    ours, foreign = _in_new_netns(), _in_new_netns()
    # a second process joins our namespace after the record was written (a command run in the CLI)
    joiner = subprocess.Popen(["nsenter", "-t", str(ours.pid), "-n", "sleep", "60"])
    bystander = subprocess.Popen(["sleep", "60"])  # in the root namespace
    try:
        record = cleanup.LabRecord(owner=999999, name="test")
        record.netns["node"] = cleanup.netns_inode(ours.pid)
        record.save()
        time.sleep(0.2)
        left = cleanup.leftovers(record)
        assert len(left) == 2 and all("in a lab namespace" in x for x in left), left
        removed = cleanup.remove(record)
        assert len(removed) == 2
        assert ours.wait(5) is not None and joiner.wait(5) is not None
        assert foreign.poll() is None and bystander.poll() is None
        assert not record.path.exists()
        assert cleanup.leftovers(record) == []
    finally:
        for proc in (ours, foreign, joiner, bystander):
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)


def test_clean_leaves_a_running_lab_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(cleanup, "RECORDS", tmp_path)
    node = _in_new_netns()
    owner = subprocess.Popen(["sleep", "60"])
    try:
        record = cleanup.LabRecord(owner=owner.pid, owner_start=cleanup._start_time(owner.pid), name="running")
        record.netns["node"] = cleanup.netns_inode(node.pid)
        record.save()
        said = []
        assert cleanup.clean(say=said.append) == []
        assert node.poll() is None and record.path.exists() and "left alone" in said[0]
        owner.kill()
        owner.wait(5)
        assert len(cleanup.clean(say=said.append)) == 1
        assert node.wait(5) is not None and not record.path.exists()
    finally:
        for proc in (node, owner):
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)


def test_our_own_namespace_is_never_emptied(tmp_path, monkeypatch):
    """A record that names the machine's own namespace (a bug, or a hand-edited file) must not
    make cleanup kill the machine's processes."""
    monkeypatch.setattr(cleanup, "RECORDS", tmp_path)
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        record = cleanup.LabRecord(owner=999999, name="bad")
        record.netns["node"] = cleanup.netns_inode(os.getpid())
        record.add_node("other", os.getpid())
        assert "other" not in record.netns
        assert cleanup.processes_in(set(record.netns.values())) == []
        cleanup.remove(record)
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait(5)


def test_a_reused_pid_does_not_pass_for_the_owner(tmp_path, monkeypatch):
    monkeypatch.setattr(cleanup, "RECORDS", tmp_path)
    record = cleanup.LabRecord(owner=os.getppid(), owner_start=12345, name="old")
    assert not cleanup.owner_alive(record)


def test_the_lock_is_taken_once_and_nested_under_an_ancestor(tmp_path):
    path = tmp_path / "lab.lock"
    # another lab, not an ancestor of ours (flock's child sleep holds the lock too: kill the group)
    holder = subprocess.Popen(["flock", str(path), "sleep", "30"], start_new_session=True)
    try:
        deadline = time.monotonic() + 5
        while not cleanup._lock_holders(path) and time.monotonic() < deadline:
            time.sleep(0.02)
        with pytest.raises(cleanup.LabBusy, match=r"another lab is running \(pid \d+ \(flock"):
            cleanup.LabLock(path).acquire(wait=False)
    finally:
        os.killpg(holder.pid, 9)
        holder.wait(5)
    deadline = time.monotonic() + 5
    while cleanup._lock_holders(path) and time.monotonic() < deadline:
        time.sleep(0.02)  # the lock goes when the last process holding it is gone
    mine = cleanup.LabLock(path).acquire(wait=False)
    try:
        assert not mine.nested
        assert subprocess.run(["flock", "-n", str(path), "true"]).returncode == 1  # the same lock as flock(1)'s
    finally:
        mine.release()
    repo = str(cleanup.Path(__file__).resolve().parents[2])
    outer = subprocess.run(
        ["flock", str(path), "python3", "-c",
         "import sys; sys.path.insert(0, sys.argv[1]); from pathlib import Path; from lab.net.cleanup import LabLock; "
         "lock = LabLock(Path(sys.argv[2])).acquire(wait=False); print('nested' if lock.nested else 'own')",
         repo, str(path)], capture_output=True, text=True, timeout=30)
    assert outer.stdout.strip() == "nested", outer.stdout + outer.stderr
