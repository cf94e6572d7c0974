"""Ctrl-C (SIGINT) and SIGTERM for the commands that need root: the daemon (running with an IKE
SA, and while it starts), `clean` and `up` answer with one line, exit 130 or 143, and leave
nothing: no TUN device, routing rule, control socket or bound port, no namespace or process.
(`run` and `demo`, one command underneath: tests/lab/test_runner.py; the rest: tests/unit.)"""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.daemon.control import ControlClient

from .test_dataplane import conf
from .test_runner import ipsec_lab, machine  # noqa: F401

pytestmark = pytest.mark.root
REPO = Path(__file__).resolve().parents[2]
PAUSE = str(REPO / "tests" / "pause_at.py")
SIGNALS = [(signal.SIGINT, 130), (signal.SIGTERM, 143)]


def daemon(lab, side: str, workdir: Path, pause: str | None = None) -> subprocess.Popen:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "swanctl.conf").write_text(conf(lab, side))
    argv = [sys.executable] + ([PAUSE, pause] if pause else ["-m", "lab.cli"]) + [
        "daemon", "--config", str(workdir / "swanctl.conf"), "--control", str(workdir / "gw.ctl")]
    return lab.node(f"gw{side}").popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, cwd=str(REPO))


def answering(control: Path, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with ControlClient(str(control), timeout=5) as client:
                if client.request(cmd="stats")["ok"]:
                    return
        except (ConnectionError, OSError):
            time.sleep(0.05)
    raise AssertionError(f"no daemon answers on {control}")


def traces_in(node) -> dict[str, str]:
    """What a daemon of ours leaves in its node when it does not clean up."""
    return {"TUN device": node.cmd("ip -o link show ipsec0 2>/dev/null"),
            "routing rule": node.cmd("ip rule show priority 220"),
            "route table 220": node.cmd("ip route show table 220 2>/dev/null"),
            "IKE ports": node.cmd("ss -Hlun 'sport = :500 or sport = :4500'")}


def stopped(proc: subprocess.Popen, signum: int, code: int) -> tuple[str, list[str]]:
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == code, stdout + stderr
    assert "Traceback" not in stdout + stderr, stdout + stderr
    lines = [line for line in stderr.splitlines() if line != "PAUSED"]
    assert len(lines) == 1 and lines[0].startswith(f"ipsec-lab daemon: interrupted ({signal.Signals(signum).name})"), \
        stderr
    return stdout, lines


@pytest.mark.parametrize("signum, code", SIGNALS)
def test_a_running_daemon_deletes_its_sas_and_undoes_everything(site_to_site, tmp_path, signum, code):
    lab = site_to_site
    gwb, gwa = daemon(lab, "b", tmp_path / "gwb"), daemon(lab, "a", tmp_path / "gwa")
    try:
        answering(tmp_path / "gwb" / "gw.ctl")
        answering(tmp_path / "gwa" / "gw.ctl")
        with ControlClient(str(tmp_path / "gwa" / "gw.ctl"), timeout=30) as client:
            assert client.request(cmd="initiate", ike="s2s", child="net", timeout=20)["ok"]
        assert any(traces_in(lab.node("gwb")).values())
        stdout, _ = stopped(gwb, signum, code)
        assert stdout.splitlines()[-1].endswith("ipsec-lab gateway stopped")
        assert not (tmp_path / "gwb" / "gw.ctl").exists()
        assert not any(traces_in(lab.node("gwb")).values()), traces_in(lab.node("gwb"))
        with ControlClient(str(tmp_path / "gwa" / "gw.ctl"), timeout=10) as client:
            assert client.request(cmd="list-sas")["sas"] == []  # gwb told gwa its IKE SA is gone
    finally:
        for proc in (gwa, gwb):
            if proc.poll() is None:
                proc.terminate()
                proc.communicate(timeout=30)


@pytest.mark.parametrize("signum, code", SIGNALS)
def test_a_daemon_interrupted_while_it_starts_undoes_what_it_made(site_to_site, tmp_path, signum, code):
    lab = site_to_site
    # paused after the TUN device, its rule and the sockets are made, before the control socket
    proc = daemon(lab, "b", tmp_path / "gwb", pause="lab.daemon.control:serve_control")
    try:
        assert proc.stderr.readline().strip() == "PAUSED"
        assert traces_in(lab.node("gwb"))["TUN device"] and traces_in(lab.node("gwb"))["routing rule"]
        stopped(proc, signum, code)
        assert not any(traces_in(lab.node("gwb")).values()), traces_in(lab.node("gwb"))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)


@pytest.mark.parametrize("signum, code", SIGNALS)
def test_clean(machine, signum, code):  # noqa: F811
    proc = subprocess.Popen([sys.executable, PAUSE, "lab.net.cleanup:clean", "clean"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr.readline().strip() == "PAUSED"
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == code, stdout + stderr
    assert stderr.splitlines() == [f"ipsec-lab clean: interrupted ({signal.Signals(signum).name})"]
    again = subprocess.run([sys.executable, "-m", "lab.cli", "clean"], cwd=REPO, capture_output=True, text=True,
                           timeout=60)
    assert again.returncode == 0, again.stdout + again.stderr  # the lock went with the interrupted run


@pytest.mark.parametrize("signum, code, until", [(signal.SIGINT, 130, "== net2net-nat"),
                                                 (signal.SIGTERM, 143, "the lab is up")])
def test_up(machine, tmp_path, signum, code, until):  # noqa: F811
    # in the Mininet CLI Ctrl-C stops the command running in a node (`hosta ping ...`), as in a
    # shell, and `exit` ends the lab; SIGTERM ends it from outside, Ctrl-C while it is built
    proc = ipsec_lab("up", "net2net-nat", "--out", str(tmp_path / "up"), stdin=subprocess.PIPE)
    seen = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        seen.append(line)
        if until in line or not line:
            break
    assert until in seen[-1], "".join(seen)
    time.sleep(0.3)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=90)
    assert proc.returncode == code, stdout + stderr
    assert "Traceback" not in stderr
    down = [line for line in stdout.splitlines() if "is down" in line]  # after the CLI's prompt, if it was up
    assert len(down) == 1 and down[0].endswith(f"lab net2net-nat is down; captures, keys and logs are in "
                                               f"{tmp_path / 'up'}"), stdout
    assert machine.leftovers() == []
