"""lab.net.forkserver without a lab: a child forked into this process's own namespaces runs
`python -m lab.cli ...` with its output in the log, its exit status reported as a Popen's, and
the reasons a fork is refused (setns needs root; the lab tests fork into real nodes)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from lab import __version__
from lab.net import forkserver


@pytest.fixture(scope="module")
def server():
    if os.geteuid() != 0:
        pytest.skip("setns needs root")
    server = forkserver.ForkServer()
    started = server.start()
    assert started is not None, server.reason
    yield started
    started.stop()
    assert started.process.poll() is not None


def spawn(server, tmp_path, *args, node=None):
    log = open(tmp_path / "log", "ab")
    with log:
        return server.spawn(os.getpid() if node is None else node, [sys.executable, "-m", "lab.cli", *args],
                            dict(os.environ), str(tmp_path), log.fileno())


def test_a_child_runs_the_module_with_its_log_and_status(server, tmp_path):
    proc = spawn(server, tmp_path, "--version")
    assert proc.wait(30) == 0 and proc.poll() == 0
    assert (tmp_path / "log").read_text().strip() == f"ipsec-lab {__version__}"
    proc = spawn(server, tmp_path, "daemon", "--config", str(tmp_path / "missing.conf"))
    assert proc.wait(30) == 2
    assert "cannot read" in (tmp_path / "log").read_text()


def test_a_daemon_in_another_namespace_ends_on_sigterm_as_a_fresh_one_does(server, tmp_path):
    node = subprocess.Popen(["unshare", "--net", "sleep", "60"])  # a node: a namespace of its own
    try:
        deadline = time.monotonic() + 5
        while os.readlink(f"/proc/{node.pid}/ns/net") == os.readlink("/proc/self/ns/net"):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        (tmp_path / "swanctl.conf").write_text(
            'connections { any { remote_addrs = %any\n local { auth = psk\n id = a.lab }\n'
            ' remote { auth = psk }\n children { net { local_ts = 10.1.0.0/24 } } } }\n'
            'secrets { ike-a { id = a.lab\n secret = "a-lab-only-psk" } }\n')
        proc = spawn(server, tmp_path, "daemon", "--config", str(tmp_path / "swanctl.conf"), "--control",
                     str(tmp_path / "gw.ctl"), node=node.pid)
        deadline = time.monotonic() + 30
        while not (tmp_path / "gw.ctl").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, (tmp_path / "log").read_text()
        assert os.readlink(f"/proc/{proc.pid}/ns/net") == os.readlink(f"/proc/{node.pid}/ns/net")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 143
        assert "ipsec-lab daemon: interrupted (SIGTERM)" in (tmp_path / "log").read_text()
        proc.kill()  # ended already: nothing happens (the pidfd is closed, no PID is hit)
    finally:
        node.kill()
        node.wait(5)


def test_what_is_refused(server, tmp_path):
    with pytest.raises(forkserver.ForkServerError, match="only `python -m lab.cli"):
        server.spawn(os.getpid(), [sys.executable, "-m", "json.tool"], {}, str(tmp_path), 1)
    gone = subprocess.Popen(["true"])
    gone.wait()
    with pytest.raises(forkserver.ForkServerError, match="setns|No such file"):
        spawn(server, tmp_path, "--version", node=gone.pid)


def _netns_of_threads(pid):
    return {os.readlink(f"/proc/{pid}/task/{tid}/ns/net") for tid in os.listdir(f"/proc/{pid}/task")}


def _wait_for_namespaces(nodes: list[subprocess.Popen]) -> None:
    """Until each `unshare --net` node is in a network namespace of its own (5 s at most)."""
    deadline = time.monotonic() + 5
    while any(os.readlink(f"/proc/{n.pid}/ns/net") == os.readlink("/proc/self/ns/net") for n in nodes):
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_a_gateway_host_runs_daemons_as_threads_each_in_its_namespace(tmp_path):
    """ForkServer(threads=True): two daemons in two namespaces are threads of one process (the same
    PID, each thread in its node's namespace, the host itself not); each has its own log and exit
    status; SIGTERM and SIGKILL reach one alone; stopping the server ends the host."""
    if os.geteuid() != 0:
        pytest.skip("setns needs root")
    tracked = []
    server = forkserver.ForkServer(threads=True, track=lambda proc, argv: tracked.append(proc)).start()
    assert server is not None, server.reason
    nodes = [subprocess.Popen(["unshare", "--net", "sleep", "60"]) for _ in range(2)]
    try:
        _wait_for_namespaces(nodes)
        procs = []
        for i, node in enumerate(nodes):
            folder = tmp_path / f"gw{i}"
            folder.mkdir()
            (folder / "swanctl.conf").write_text(
                'connections { any { remote_addrs = %any\n local { auth = psk\n id = a.lab }\n'
                ' remote { auth = psk }\n children { net { local_ts = 10.1.0.0/24 } } } }\n'
                'secrets { ike-a { id = a.lab\n secret = "a-lab-only-psk" } }\n')
            procs.append(spawn(server, folder, "daemon", "--config", str(folder / "swanctl.conf"), "--control",
                               str(folder / "gw.ctl"), node=node.pid))
        assert all(isinstance(p, forkserver.HostedGateway) for p in procs)
        host = server.host_process
        assert tracked == [host] and procs[0].pid == procs[1].pid == host.pid != server.process.pid
        deadline = time.monotonic() + 30
        while not all((tmp_path / f"gw{i}" / "gw.ctl").exists() for i in range(2)):
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
            time.sleep(0.05)
        assert os.readlink(f"/proc/{host.pid}/ns/net") == os.readlink("/proc/self/ns/net")
        assert {os.readlink(f"/proc/{n.pid}/ns/net") for n in nodes} <= _netns_of_threads(host.pid)
        procs[0].send_signal(signal.SIGTERM)
        assert procs[0].wait(30) == 143 and procs[1].poll() is None
        procs[1].kill()  # no goodbye, as a crash
        assert procs[1].wait(30) == 137
        logs = [(tmp_path / f"gw{i}" / "log").read_text() for i in range(2)]
        assert "interrupted (SIGTERM)" in logs[0] and "killed" not in logs[0], logs[0]
        assert "killed (SIGKILL" in logs[1] and "interrupted" not in logs[1], logs[1]
        assert all(log.count("ipsec-lab gateway up") == 1 for log in logs)  # each log its own gateway's
        assert host.poll() is None
        # the host ends its gateways itself when the lab goes
        last = spawn(server, tmp_path / "gw0", "daemon", "--config", str(tmp_path / "gw0" / "swanctl.conf"),
                     node=nodes[0].pid)
        time.sleep(1)
        server.stop()
        assert host.poll() is not None and server.process.poll() is not None
        assert last.wait(5) == 143
    finally:
        server.stop()
        for node in nodes:
            node.kill()
            node.wait(5)


# a fork server whose daemons raise a planted exception once up when their control socket is crash.ctl
_PLANTED_BUG = """
import asyncio, os, sys
import lab.daemon.gateway as gateway
original = gateway.Gateway.run
async def run(self, *args, **kwargs):
    if not str(self.control_path).endswith("crash.ctl"):
        return await original(self, *args, **kwargs)
    task = asyncio.ensure_future(original(self, *args, **kwargs))
    while not os.path.exists(self.control_path):
        await asyncio.sleep(0.05)
    raise RuntimeError("a bug planted by the test")
gateway.Gateway.run = run
from lab.net.forkserver import main
sys.exit(main())
"""


def test_a_crash_in_one_gateway_thread_is_its_own_and_a_crash_of_the_host_is_said_in_every_log(tmp_path, monkeypatch):
    """An exception nobody catches in one hosted gateway ends that gateway alone: its log has the
    traceback and says the others run on, its status is 1, the other gateway answers on. A crash of
    the host process (SIGSEGV) ends the rest, and each one's log and status say so."""
    if os.geteuid() != 0:
        pytest.skip("setns needs root")
    monkeypatch.setattr(forkserver.ForkServer, "argv", property(lambda self: [sys.executable, "-c", _PLANTED_BUG]))
    server = forkserver.ForkServer(threads=True).start()
    assert server is not None, server.reason
    nodes = [subprocess.Popen(["unshare", "--net", "sleep", "60"]) for _ in range(3)]
    try:
        _wait_for_namespaces(nodes)
        procs = []
        for i, (node, ctl) in enumerate(zip(nodes, ("crash.ctl", "gw.ctl", "gw.ctl"))):
            folder = tmp_path / f"gw{i}"
            folder.mkdir()
            (folder / "swanctl.conf").write_text(
                'connections { any { remote_addrs = %any\n local { auth = psk\n id = a.lab }\n'
                ' remote { auth = psk }\n children { net { local_ts = 10.1.0.0/24 } } } }\n'
                'secrets { ike-a { id = a.lab\n secret = "a-lab-only-psk" } }\n')
            procs.append(spawn(server, folder, "daemon", "--config", str(folder / "swanctl.conf"), "--control",
                               str(folder / ctl), node=node.pid))
        assert all(isinstance(p, forkserver.HostedGateway) for p in procs)
        assert procs[0].wait(30) == 1
        crashed = (tmp_path / "gw0" / "log").read_text()
        assert "RuntimeError: a bug planted by the test" in crashed, crashed
        assert "whose other gateways run on" in crashed, crashed
        for i in (1, 2):
            deadline = time.monotonic() + 30
            while not (tmp_path / f"gw{i}" / "gw.ctl").exists():
                assert time.monotonic() < deadline and procs[i].poll() is None
                time.sleep(0.05)
        from lab.daemon.control import ControlClient

        with ControlClient(str(tmp_path / "gw1" / "gw.ctl"), timeout=10) as client:
            assert client.request(cmd="stats")["ok"]
        assert procs[1].poll() is None and procs[2].poll() is None
        assert all("planted" not in (tmp_path / f"gw{i}" / "log").read_text() for i in (1, 2))
        # a fault of the process: every gateway still in it ends, and says how
        host = server.host_process
        os.kill(host.pid, signal.SIGSEGV)
        assert procs[1].wait(30) == procs[2].wait(30) == -signal.SIGSEGV
        for i in (1, 2):
            log = (tmp_path / f"gw{i}" / "log").read_text()
            assert f"the gateway host (pid {host.pid}) that ran this gateway as a thread ended (killed by SIGSEGV)" \
                in log, log
        assert "gateway host" not in crashed.split("whose other gateways run on")[1]
    finally:
        server.stop()
        for node in nodes:
            node.kill()
            node.wait(5)


def test_a_lab_runs_its_gateways_as_threads_above_a_number_unless_told(monkeypatch):
    """IPSEC_LAB_GATEWAY_THREADS=1 or 0 decides; unset, a lab with more than THREADS_ABOVE of our
    gateways (the runner's count, else the topology's gateway nodes) runs them as threads, and says so."""
    from lab.net.lab import Lab
    from lab.net.topology import load

    def lab(spokes: int, expected: int | None = None) -> Lab:
        made = Lab(load("hub-and-spoke")(spokes=spokes), say=said.append)
        made.gateways_expected = expected
        return made

    said: list[str] = []
    above = forkserver.THREADS_ABOVE
    monkeypatch.delenv("IPSEC_LAB_GATEWAY_THREADS", raising=False)
    assert not lab(above - 1).threads() and not said  # hub and spokes: THREADS_ABOVE gateways
    assert lab(above).threads()
    assert said == [f"our {above + 1} gateways run as threads of one gateway host, to save memory (more than "
                    f"{above}; IPSEC_LAB_GATEWAY_THREADS=0: a process each)"]
    assert not lab(100, expected=2).threads()  # the runner counts only ours
    assert lab(1, expected=above + 1).threads()
    monkeypatch.setenv("IPSEC_LAB_GATEWAY_THREADS", "0")
    assert not lab(100).threads()
    monkeypatch.setenv("IPSEC_LAB_GATEWAY_THREADS", "1")
    assert lab(1).threads()
    assert not Lab(load("hub-and-spoke")(spokes=100), gateway_threads=False).threads()


def test_asking_a_gateway_that_has_ended_says_how_it_ended(tmp_path):
    """A control request to our gateway once its daemon has ended (a crash of its gateway host, of
    itself) names the gateway, how it ended and its log's last line, not only the socket."""
    from lab.net.gateway import OurGateway

    gateway = OurGateway(None, tmp_path, "spoke7")
    with pytest.raises(ConnectionError, match="no control socket"):  # never started: as before
        gateway.ctl("stats")
    gateway.process = subprocess.Popen([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"])
    gateway.process.wait(30)
    gateway.log_path.write_text("20:00:00 ipsec-lab gateway up\nipsec-lab: the gateway host (pid 1) ... ended\n")
    with pytest.raises(ConnectionError) as err:
        gateway.ctl("stats")
    assert str(err.value) == ("the ipsec-lab daemon on spoke7 has ended (killed by SIGSEGV); its log ends: "
                              "ipsec-lab: the gateway host (pid 1) ... ended")
    with pytest.raises(ConnectionError, match=r"spoke7 has ended \(killed by SIGSEGV\)"):
        gateway.terminate()
