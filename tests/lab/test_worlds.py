"""Labs side by side (lab.net.world): six at once, the same scenario twice among them and an
`up` held open, as the user trainee where the machine allows (Debian's uidmap, subordinate IDs):
all pass, each capture holds only its own lab's IKE SAs, `ipsec-lab clean` meanwhile leaves them
running, and nothing is left afterwards. Then the limit of labs at once, and `run --step`."""
from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from lab.net import cleanup, world

REPO = Path(__file__).resolve().parents[2]
TRAINEE = "trainee"


def require_worlds() -> None:
    if os.geteuid() != 0:
        pytest.skip("these tests start labs as root and as another user: run them as root")
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is missing: no worlds here")
    if shutil.which("mnexec") is None:
        pytest.fail("mnexec is missing: apt-get install mininet (scripts/setup.sh does)", pytrace=False)


def trainee_usable() -> str | None:
    """Why labs cannot run as the user trainee here (None: they can)."""
    try:
        pwd.getpwnam(TRAINEE)
    except KeyError:
        return f"no user {TRAINEE}"
    if shutil.which("newuidmap") is None:
        return "Debian's uidmap is not installed"
    probe = subprocess.run([sys.executable, "-c", "import lab.net.world as w; print(w.unavailable() or 'ok')"],
                           cwd=REPO, env=world_env(), user=TRAINEE, group=TRAINEE, extra_groups=[],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return f"{TRAINEE} cannot run this repository's Python: {probe.stderr.strip()[-200:]}"
    return None if probe.stdout.strip() == "ok" else probe.stdout.strip()


def world_env(**extra: str) -> dict[str, str]:
    """The environment of a command that makes its own world (not IPSEC_LAB_HOST, not inside ours)."""
    env = {k: v for k, v in os.environ.items() if k not in (world.HOST, world.MARKER, world.USERNS)}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


_made: list[Path] = []


def shared_dir(owner: str | None) -> Path:
    """A folder every user can reach (pytest's own are root's alone), owned by `owner`; removed
    after the test."""
    path = Path(tempfile.mkdtemp(prefix="ipsec-lab-worlds-", dir="/tmp"))
    _made.append(path)
    path.chmod(0o755)
    if owner:
        shutil.chown(path, owner, owner)
    return path


@pytest.fixture(autouse=True)
def _remove_shared_dirs():
    yield
    while _made:
        shutil.rmtree(_made.pop(), ignore_errors=True)


def ipsec_lab(args: list[str], env: dict[str, str], user: str | None, **popen) -> subprocess.Popen:
    who = {"user": user, "group": user, "extra_groups": []} if user else {}
    if user:
        env = dict(env, HOME=pwd.getpwnam(user).pw_dir, USER=user, LOGNAME=user)
    streams = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE} | popen
    return subprocess.Popen([sys.executable, "-m", "lab.cli", *args], cwd=REPO, env=env, text=True, **who,
                            **streams)


def _host_state() -> dict[str, set]:
    """Network namespaces, links and lab records on this host (or in the world this test runs
    in), leaving out those of a lab running on it itself (another session's)."""
    live = [r for r in cleanup.records() if cleanup.owner_alive(r)]
    theirs = set().union(*(set(r.netns.values()) for r in live)) if live else set()
    netns = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            inode = cleanup.netns_inode(int(entry))
            if inode and inode not in theirs:
                netns.add(inode)
    links = cleanup._root_links() - {name for r in live for name in r.links}
    return {"netns": netns, "links": links, "records": {r.path.name for r in cleanup.records()} - {
        r.path.name for r in live}}


def _processes_with(text: str) -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if text.encode() in Path(f"/proc/{entry}/environ").read_bytes():
                    found.append(cleanup.describe_pid(int(entry)))
            except OSError:
                pass
    return found


def _ike_spis_of_table(out: Path) -> set[str]:
    lines = (out / "keys" / "ikev2_decryption_table").read_text().splitlines()
    return {line.split(",")[0] for line in lines if line.strip()}


def _ike_spis_of_captures(out: Path) -> tuple[set[str], int]:
    from lab.viz.decode import decode_capture

    spis, messages = set(), 0
    for pcap in sorted((out / "captures").glob("*.pcap")):
        summary = decode_capture(pcap)
        messages += len(summary.messages)
        spis |= {m.spi_i for m in summary.messages}
    return spis, messages


LABS = [  # (label, user, args): the same scenario twice, an `up` held open, three others
    ("net2net-nat-1", TRAINEE, ["run", "net2net-nat"]),
    ("net2net-nat-2", TRAINEE, ["run", "net2net-nat"]),
    ("up", TRAINEE, ["up", "net2net-nat"]),
    ("net2net", TRAINEE, ["run", "net2net"]),
    ("nat-rebind", None, ["run", "nat-rebind"]),
    ("road-warriors", None, ["run", "road-warriors"]),
]


def test_six_labs_at_once_side_by_side(tmp_path):
    require_worlds()
    why_not = trainee_usable()
    user = None if why_not else TRAINEE
    if why_not:
        print(f"(as root only: {why_not})")
    before = _host_state()
    slots = shared_dir(None)
    slots.chmod(0o1777)
    folders = {owner: shared_dir(owner) for owner in {user, None}}
    env = world_env(IPSEC_LAB_SLOTS=str(slots), IPSEC_LAB_MAX_LABS=str(len(LABS)))
    procs: dict[str, subprocess.Popen] = {}
    outs: dict[str, Path] = {}
    try:
        for label, who, args in LABS:
            who = user if who else None
            outs[label] = folders[who] / label
            stdin = {"stdin": subprocess.PIPE} if args[0] == "up" else {"stdin": subprocess.DEVNULL}
            procs[label] = ipsec_lab(args + ["--out", str(outs[label])], env, who, **stdin)
        # the `up` is held open while the runs go on: wait until its lab is up
        up = procs["up"]
        seen = []
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            line = up.stderr.readline()
            seen.append(line)
            if "the lab is up" in line or not line:
                break
        assert "the lab is up" in seen[-1], "".join(seen)
        # `ipsec-lab clean` on the host meanwhile: nothing of theirs is its to remove
        clean = subprocess.run([sys.executable, "-m", "lab.cli", "clean"], cwd=REPO, env=world_env(),
                               capture_output=True, text=True, timeout=120)
        assert clean.returncode == 0, clean.stdout + clean.stderr
        # (a lab on this host itself, of another session, may be running: left alone too)
        assert clean.stdout.splitlines()[-1].startswith("nothing to clean"), clean.stdout
        running = [label for label, proc in procs.items() if proc.poll() is None]
        assert "up" in running, "the held `up` should still be running after clean"
        # a command in the held lab, then leave it
        stdout, stderr = up.communicate("hosta ping -c 2 -W 2 10.2.0.10\nexit\n", timeout=240)
        assert up.returncode == 0, stdout + "".join(seen) + stderr
        assert "2 received" in stdout + stderr, stdout + stderr  # the Mininet CLI prints on stderr
        results = {"up": (stdout, stderr)}
        for label, proc in procs.items():
            if label != "up":
                results[label] = proc.communicate(timeout=600)
                assert proc.returncode == 0, f"{label}: " + results[label][0] + results[label][1]
                assert f"PASSED {LABS[[l for l, *_ in LABS].index(label)][2][1]}" in results[label][0]
        for label, (_out, err) in results.items():
            assert "Traceback" not in err, f"{label}: {err}"
        # each capture holds its own lab's IKE SAs, and none of another's
        tables = {label: _ike_spis_of_table(outs[label]) for label in outs}
        for label in outs:
            spis, messages = _ike_spis_of_captures(outs[label])
            assert messages > 0 and spis, f"{label}: no IKE in its captures"
            assert spis <= tables[label], f"{label}: IKE SAs in its captures not in its keys: {spis - tables[label]}"
            others = set().union(*(tables[other] for other in outs if other != label))
            assert not spis & others, f"{label}: its captures hold another lab's IKE SAs: {spis & others}"
        # a trainee's run folders are the trainee's, all of them
        if user:
            uid = pwd.getpwnam(user).pw_uid
            for label, who, _args in LABS:
                if who:
                    strays = [str(p) for p in outs[label].rglob("*") if p.lstat().st_uid != uid]
                    assert not strays, f"{label}: not {user}'s: {strays[:5]}"
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
    # nothing left: no slot held, no process of those worlds, the host's namespaces, links and
    # lab records as they were
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (_processes_with(f"IPSEC_LAB_SLOTS={slots}")
                                          or any(cleanup._lock_holders(p) for p in slots.glob("slot-*"))):
        time.sleep(0.2)
    assert _processes_with(f"IPSEC_LAB_SLOTS={slots}") == []
    assert [p.name for p in slots.glob("slot-*") if cleanup._lock_holders(p)] == []
    after = _host_state()
    assert after["netns"] <= before["netns"] | {cleanup.netns_inode(os.getpid())}, "a network namespace is left"
    assert after["links"] - before["links"] == set()
    assert after["records"] - before["records"] == set()


def test_a_lab_past_the_limit_waits_and_says_so(tmp_path):
    require_worlds()
    slots = shared_dir(None)
    env = world_env(IPSEC_LAB_SLOTS=str(slots), IPSEC_LAB_MAX_LABS="1")
    first = subprocess.Popen([sys.executable, "-m", "lab.net.world", "--", "sleep", "3"], cwd=REPO, env=env,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while not cleanup._lock_holders(slots / "slot-0") and time.monotonic() < deadline:
        time.sleep(0.05)
    second = subprocess.run([sys.executable, "-m", "lab.net.world", "--", "sh", "-c", "echo in its world $$"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=30)
    first.communicate(timeout=30)
    assert first.returncode == 0 and second.returncode == 0, second.stderr
    assert "in its world 1" in second.stdout  # PID 1 of a PID namespace of its own
    lines = second.stderr.splitlines()
    assert len(lines) == 2, second.stderr
    assert lines[0].startswith("ipsec-lab: 1 labs are running on this machine, as many as it allows at once "
                               "(IPSEC_LAB_MAX_LABS=1): waiting for one of them to end (pid ")
    waited = float(lines[1].split(" after ")[1].split(" s ")[0])
    assert lines[1].endswith(" s of waiting; starting") and 1.0 < waited < 10, lines[1]


def test_run_step_pauses_after_each_step_and_takes_node_commands(tmp_path):
    require_worlds()
    slots = shared_dir(None)
    out = tmp_path / "step"
    proc = ipsec_lab(["run", "net2net-nat", "--step", "--out", str(out)], world_env(IPSEC_LAB_SLOTS=str(slots)),
                     None, stdin=subprocess.PIPE, stderr=subprocess.STDOUT)
    # Enter after step 1; after step 2 (the tunnel is up) a ping through it, then Enter for the rest
    stdout, _ = proc.communicate("\nhosta ping -c 1 -W 2 10.2.0.10\n" + "\n" * 10, timeout=300)
    assert proc.returncode == 0, stdout
    prompts = [n for n in range(1, 12) if f"step {n} done: Enter for the next step" in stdout]
    assert prompts == list(range(1, 12)), stdout
    assert "1 received" in stdout[stdout.index("step 2 done"):stdout.index("step 3 done")], stdout
    assert "1 received" not in stdout[:stdout.index("step 2 done")], stdout
    assert "PASSED net2net-nat" in stdout


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_to_the_command_reaches_its_world(tmp_path, signum, code):
    # the command that made the world passes SIGINT and SIGTERM on to it (unshare would not):
    # the run stops as it does on the host, with its run folder, and its world is gone
    require_worlds()
    slots = shared_dir(None)
    out = tmp_path / "run"
    proc = ipsec_lab(["run", "net2net-nat", "--out", str(out)], world_env(IPSEC_LAB_SLOTS=str(slots)), None,
                     stdin=subprocess.DEVNULL, start_new_session=True)
    seen = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        seen.append(line)
        if "[3/11]" in line or not line:
            break
    assert "[3/11]" in seen[-1], "".join(seen)
    proc.send_signal(signum)  # to the command alone, not to its group
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stdout + "".join(seen) + stderr
    assert "Traceback" not in stderr
    assert [line for line in stderr.splitlines() if line.startswith("ipsec-lab run: interrupted")], stderr
    assert '"interrupted": "%s"' % signal.Signals(signum).name in (out / "result.json").read_text()
    assert _processes_with(f"IPSEC_LAB_SLOTS={slots}") == []
