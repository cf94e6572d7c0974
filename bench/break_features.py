"""Make each feature of the IKE state machine a no-op, one at a time, and check that the
exchange tests notice: a test that still passes with its feature gone cannot fail.

Each break is a text edit (`old` must occur exactly once in `path`) applied to a copy of
the tree in a temporary folder; the worktree is never touched. Not run in CI (a minute or two).

    .venv/bin/python bench/break_features.py            # every break
    .venv/bin/python bench/break_features.py -k rekey   # the breaks whose name has "rekey"

Prints, per break, how many tests failed; exits 1 if a break failed no test, or a pattern
is gone (the code moved: update the list).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ["tests/unit/test_ike_exchanges.py"]


@dataclass(frozen=True)
class Break:
    name: str
    path: str
    old: str
    new: str


BREAKS = [
    # rekeying: the commands, the lifetimes, the retries
    Break("rekey_child command", "lab/ike/endpoint.py",
          "        for ike, child in found:\n            ike.queue(ChildCreate(child.config, child), now)",
          "        for ike, child in found:\n            pass"),
    Break("rekey_ike command", "lab/ike/endpoint.py",
          "                ike.queue(IkeRekey(), now)\n                count += 1",
          "                count += 1"),
    Break("child rekey by lifetime", "lab/ike/sa.py",
          "                child.rekey_at = None\n                self.tm.queue(ChildCreate(child.config, child), now)",
          "                child.rekey_at = None"),
    Break("IKE rekey by lifetime", "lab/ike/sa.py",
          "            self.rekey_at = None\n            self.tm.queue(IkeRekey(), now)",
          "            self.rekey_at = None"),
    Break("old CHILD SA deleted after its rekey", "lab/ike/sa.py",
          '            self.tm.queue(ChildDelete([old], "rekeyed"), now)', "            pass"),
    Break("old IKE SA deleted after its rekey", "lab/ike/sa.py",
          '            self.tm.queue(IkeDelete("rekeyed"), now)', "            pass"),
    Break("children move to the new IKE SA", "lab/ike/sa.py",
          "        for child in self.children:\n            new.children.append(child)\n",
          "        for child in self.children:\n            pass\n"),
    Break("queued child work moves to the new IKE SA", "lab/ike/task_manager.py",
          "            self.tasks.remove(task)\n            new.queue(task, now)",
          "            pass"),
    Break("delayed child work moves to the new IKE SA", "lab/ike/task_manager.py",
          "        new.delayed += [entry for entry in self.delayed if isinstance(entry[1], child_tasks)]",
          "        pass"),
    Break("random wait after TEMPORARY_FAILURE", "lab/ike/task_manager.py",
          "settings.temporary_failure_retry - self.ike.endpoint.random.uniform(0, settings.temporary_failure_jitter)",
          "settings.temporary_failure_retry"),
    # deletes
    Break("terminate_child command", "lab/ike/endpoint.py",
          '            ike.queue(ChildDelete([child], "terminated by command"), now)', "            pass"),
    Break("terminate command", "lab/ike/endpoint.py",
          '                ike.queue(IkeDelete("terminated by command"), now)', "                pass"),
    Break("responder ignores Delete payloads", "lab/ike/tasks/__init__.py",
          "    deletes = [p for p in inner if isinstance(p, pl.Delete)]", "    deletes = []"),
    Break("responder keeps its half of a deleted CHILD SA", "lab/ike/tasks/child_delete.py",
          '            ike.remove_child(child, "deleted by peer", now)', "            pass"),
    Break("responder does not delete its inbound half in the answer", "lab/ike/tasks/child_delete.py",
          "                ours.setdefault(child.protocol, []).append(child.spi_in)", "                pass"),
    Break("responder keeps a deleted IKE SA", "lab/ike/tasks/ike_delete.py",
          '        ike.destroy("deleted by peer", now)', "        pass"),
    Break("initiator keeps the CHILD SA it deleted", "lab/ike/tasks/child_delete.py",
          "    def process_i(self, ike: \"IkeSA\", payloads: list[pl.Payload], now: float) -> None:\n"
          "        for child in self.children:\n            ike.remove_child(child, self.reason, now)",
          "    def process_i(self, ike: \"IkeSA\", payloads: list[pl.Payload], now: float) -> None:\n"
          "        for child in self.children:\n            pass"),
    Break("initiator keeps the IKE SA it deleted", "lab/ike/tasks/ike_delete.py",
          "    def process_i(self, ike: \"IkeSA\", payloads: list[pl.Payload], now: float) -> None:\n"
          "        ike.destroy(self.reason, now)",
          "    def process_i(self, ike: \"IkeSA\", payloads: list[pl.Payload], now: float) -> None:\n"
          "        pass"),
    # liveness and retransmission
    Break("DPD never sent", "lab/ike/sa.py",
          "            self.last_heard = now\n            self.tm.queue(Dpd(), now)", "            self.last_heard = now"),
    Break("DPD request not answered", "lab/ike/tasks/__init__.py",
          "        return Dpd()\n    return None", "        return None\n    return None"),
    Break("dead peer never given up", "lab/ike/task_manager.py",
          "            if pending.tries >= settings.retransmit_tries:", "            if False:"),
    Break("no retransmission", "lab/ike/task_manager.py",
          '            self.ike.endpoint.send(self.ike, pending.datagrams, "retransmits")', "            pass"),
    Break("retransmitted request not answered again", "lab/ike/task_manager.py",
          '                ike.endpoint.send(ike, self.last_response, "responses_resent", dst, src)', "                pass"),
    # collisions (RFC 7296 §2.8.1, §2.8.2, §2.25)
    Break("redundant CHILD SA of a collision kept", "lab/ike/sa.py",
          '                self.tm.queue(ChildDelete([loser], "redundant after a rekey collision"), now)',
          "                pass"),
    Break("CHILD collision loser by the highest nonce", "lab/ike/sa.py",
          "            loser = min(done, key=lambda c: min(c.nonces))",
          "            loser = max(done, key=lambda c: min(c.nonces))"),
    Break("redundant IKE SA of a collision kept", "lab/ike/sa.py",
          '                loser[0].tm.queue(IkeDelete("redundant after an IKE rekey collision"), now)',
          "                pass"),
    Break("IKE collision loser by the highest nonce", "lab/ike/sa.py",
          "            loser = min(done, key=lambda entry: min(entry[1]))",
          "            loser = max(done, key=lambda entry: min(entry[1]))"),
    Break("redundant IKE SA the peer never deletes is kept", "lab/ike/sa.py",
          "                loser[0].tm.delayed.append((now + self.endpoint.settings.half_open_timeout,",
          "                [].append((now + self.endpoint.settings.half_open_timeout,"),
    Break("no waiting for our own CHILD rekey in flight", "lab/ike/sa.py",
          "            return  # our own rekey of it is in flight: wait for it to decide", "            pass"),
    Break("no waiting for our own IKE rekey in flight", "lab/ike/sa.py",
          "            return  # our own IKE rekey is in flight: wait for it to decide", "            pass"),
    Break("CHILD_SA request accepted during an IKE rekey", "lab/ike/tasks/child_create.py",
          "    if ike.state != IkeState.ESTABLISHED or ike.rekeying_ike is not None:",
          "    if ike.state != IkeState.ESTABLISHED:"),
    Break("IKE rekey accepted during CHILD_SA work", "lab/ike/tasks/ike_rekey.py",
          "        if isinstance(ike.tm.pending_task, (ChildCreate, ChildDelete)):", "        if False:"),
    Break("rekey of a CHILD SA being closed accepted", "lab/ike/tasks/child_create.py",
          "        if old.state in (ChildState.DELETING, ChildState.REKEYED):", "        if False:"),
    # INVALID_KE_PAYLOAD (RFC 7296 §1.3)
    Break("IKE_SA_INIT responder never asks for another group", "lab/ike/endpoint.py",
          "        wanted = invalid_ke_group(selected, ke.dh_group)", "        wanted = None"),
    Break("IKE_SA_INIT initiator does not retry in the group asked for", "lab/ike/tasks/ike_init.py",
          "            ike.proposals_to_offer = promote_dh_group(ike.config.proposals, group)", "            pass"),
    Break("CREATE_CHILD_SA responder never asks for another group", "lab/ike/tasks/child_create.py",
          "        if ke is None or ke.dh_group != chosen.dh:\n            # RFC 7296 §1.3: name the group we want",
          "        if ke is None:\n            # RFC 7296 §1.3: name the group we want"),
    Break("CHILD_SA initiator does not retry in the group asked for", "lab/ike/tasks/child_create.py",
          "            self.proposals = promote_dh_group(self.proposals, self.group)", "            pass"),
    Break("IKE rekey responder never asks for another group", "lab/ike/tasks/ike_rekey.py",
          "        if not isinstance(ke, pl.KE) or ke.dh_group != chosen.dh:", "        if not isinstance(ke, pl.KE):"),
    Break("IKE rekey initiator does not retry in the group asked for", "lab/ike/tasks/ike_rekey.py",
          "            proposals = promote_dh_group(proposals, self.group)", "            pass"),
    # cookies (RFC 7296 §2.6)
    Break("responder never asks for a cookie", "lab/ike/endpoint.py",
          "        if half_open >= self.settings.cookie_threshold:", "        if False:"),
    Break("responder takes any cookie", "lab/ike/endpoint.py",
          "            if offered is None or not hmac.compare_digest(offered.data, expected):",
          "            if offered is None:"),
    Break("cookie not bound to the initiator's address and SPI", "lab/ike/endpoint.py",
          "nonce + ipaddress.ip_address(src[0]).packed + message.spi_i", "nonce"),
    Break("initiator does not send the cookie back", "lab/ike/tasks/ike_init.py",
          "            out.append(pl.Notify(notify_type=NotifyType.COOKIE, data=self.cookie))", "            pass"),
]


def run(tree: Path, tests: list[str]) -> tuple[int, int, str]:
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                           *tests], cwd=tree, env=env, capture_output=True, text=True)
    tail = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr.strip()[-200:]
    failed = int(m.group(1)) if (m := re.search(r"(\d+) failed", tail)) else 0
    errors = int(m.group(1)) if (m := re.search(r"(\d+) error", tail)) else 0
    passed = int(m.group(1)) if (m := re.search(r"(\d+) passed", tail)) else 0
    return failed + errors, passed, tail


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", default="", help="only breaks whose name contains this")
    parser.add_argument("tests", nargs="*", default=TESTS)
    args = parser.parse_args()
    breaks = [b for b in BREAKS if args.k in b.name]
    bad = 0
    with tempfile.TemporaryDirectory(prefix="break-features-") as tmp:
        tree = Path(tmp) / "tree"
        shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(".git", ".venv", "__pycache__", "out", "*.pcap"))
        failed, passed, tail = run(tree, args.tests)
        if failed:
            print(f"the tests fail before any break: {tail}")
            return 1
        print(f"unbroken: {passed} passed")
        for brk in breaks:
            target = tree / brk.path
            original = target.read_text()
            if original.count(brk.old) != 1:
                print(f"PATTERN GONE  {brk.name} ({brk.path}: found {original.count(brk.old)} times)")
                bad += 1
                continue
            target.write_text(original.replace(brk.old, brk.new))
            try:
                failed, passed, tail = run(tree, args.tests)
            finally:
                target.write_text(original)
            verdict = "caught" if failed else "MISSED"
            bad += not failed
            print(f"{verdict:8} {failed:3} failed  {brk.name}")
    print(f"{len(breaks) - bad} of {len(breaks)} breaks caught")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
