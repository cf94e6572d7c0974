"""Every command answers Ctrl-C (SIGINT) and SIGTERM mid-work with one line, exit 130 or 143,
and nothing left behind: decode, figures, scenarios, ctl (the daemon, clean, run, up and demo,
which need root, in tests/lab). The signal is sent at a known point of the work
(tests/pause_at.py), or while ctl waits for a daemon that does not answer."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAUSE = str(REPO / "tests" / "pause_at.py")
SIGNALS = [(signal.SIGINT, 130), (signal.SIGTERM, 143)]


def paused(target: str, *args: str, cwd: Path = REPO) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, PAUSE, target, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=cwd)
    line = proc.stderr.readline()
    assert line.strip() == "PAUSED", line + proc.stderr.read()
    return proc


def ended(proc: subprocess.Popen, signum: int, code: int, command: str) -> str:
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stdout + stderr
    assert "Traceback" not in stderr, stderr
    assert stderr.splitlines() == [f"ipsec-lab {command}: interrupted ({signal.Signals(signum).name})"], stderr
    return stdout


@pytest.mark.parametrize("signum, code", SIGNALS)
def test_decode(signum, code):
    proc = paused("lab.viz.decode:decode_ike", "decode", str(REPO / "tests/data/demo/captures/nat-outside.pcap"))
    assert ended(proc, signum, code, "decode") == ""


@pytest.mark.parametrize("signum, code", SIGNALS)
def test_figures(signum, code, tmp_path):
    # paused between writing a figure and putting it in place: nothing half-written stays
    out = tmp_path / "figures"
    proc = paused("lab.viz.style:os.replace", "figures", str(REPO / "tests/data/demo/captures/nat-outside.pcap"),
                  "--keys", str(REPO / "tests/data/demo/keys"), "--out", str(out))
    assert list(out.iterdir())  # the first figure was being written
    ended(proc, signum, code, "figures")
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("signum, code", SIGNALS)
def test_scenarios(signum, code):
    proc = paused("lab.net.scenario:load", "scenarios")
    ended(proc, signum, code, "scenarios")


@pytest.mark.parametrize("signum, code", SIGNALS)
def test_ctl_waiting_for_the_daemon(signum, code, tmp_path):
    path = str(tmp_path / "gw.ctl")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    accepted = threading.Event()
    connections = []

    def serve():
        connection, _ = server.accept()  # takes the request, never answers
        connections.append(connection)
        connection.recv(1000)
        accepted.set()

    threading.Thread(target=serve, daemon=True).start()
    proc = subprocess.Popen([sys.executable, "-m", "lab.cli", "ctl", "--control", path, "initiate", "--ike", "s2s"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    assert accepted.wait(30)
    ended(proc, signum, code, "ctl")
    assert connections[0].recv(10) == b""  # ctl closed its connection
    server.close()
    os.unlink(path)
