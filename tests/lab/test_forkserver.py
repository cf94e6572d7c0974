"""Our gateways forked from the lab's fork server (lab.net.forkserver), root: each runs in its
node's network and mount namespaces with the daemon's command line, log and control socket; a
tunnel between two of them carries traffic; nothing is left when the lab stops; after a run
killed with SIGKILL the fork server ends by itself and `ipsec-lab clean` finds the gateways; a
fork server that cannot start gives fresh processes, said in the gateway's log. The same for
gateways as threads of one gateway host, on the host and in a world of their own (a run that
passes, and one killed with SIGKILL, leave nothing). No test here measures time (bench/scale.py
does)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.net import cleanup, forkserver
from lab.net.gateway import OurGateway

from .conftest import require_lab
from .test_dataplane import conf, initiate, ping
from .test_runner import REPO, _pgrep, ipsec_lab, read_until

pytestmark = pytest.mark.root


def _ns(pid: int, kind: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{kind}")


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _gone(pids, timeout: float = 15.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


def _start_gateways(lab, tmp_path: Path) -> dict[str, OurGateway]:
    """Our gateways on gwb, then gwa, each with its folder under tmp_path, stopped with the lab."""
    gateways = {}
    for side in ("b", "a"):
        gateway = OurGateway(lab.node(f"gw{side}"), tmp_path / f"gw{side}")
        gateway.write_config(conf(lab, side))
        gateways[side] = gateway.start()
        lab.on_stop(gateway.stop)
    return gateways


def _tunnel_then_stop_b(lab, gateways: dict[str, OurGateway], tmp_path: Path) -> None:
    """gwa sets up the tunnel, it carries hosta's pings, the keys are exported (--export-keys, as
    before); then gwb is stopped with SIGTERM: the daemon deletes its SAs and says so, as before."""
    initiate(gateways["a"])
    assert ping(lab, "hosta", "10.2.0.10") == 5
    assert gateways["a"].key_tables()["esp_sa"]
    gateways["b"].stop()
    assert "interrupted (SIGTERM)" in (tmp_path / "gwb" / "gateway.log").read_text()


def test_forked_gateways_carry_a_tunnel_in_their_nodes_and_leave_nothing(site_to_site, tmp_path):
    lab = site_to_site
    gateways = _start_gateways(lab, tmp_path)
    server = lab.fork_server
    assert server is not None and server.running, lab.fork_unavailable
    for side, gateway in gateways.items():
        node, pid = lab.node(f"gw{side}"), gateway.process.pid
        assert isinstance(gateway.process, forkserver.ForkedProcess)
        assert _ns(pid, "net") == _ns(node.pid, "net") != _ns(server.process.pid, "net")
        assert _ns(pid, "mnt") == _ns(node.pid, "mnt") != _ns(server.process.pid, "mnt")
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        assert [a.decode() for a in cmdline] == gateway.process.args  # ps and pgrep -f see the daemon
        assert (tmp_path / f"gw{side}" / "gateway.ctl").exists()
    pids = [g.process.pid for g in gateways.values()] + [server.process.pid]
    _tunnel_then_stop_b(lab, gateways, tmp_path)
    log = (tmp_path / "gwa" / "gateway.log").read_text()
    assert "IKE_AUTH" in log and "fresh process" not in log
    problems = lab.stop()
    assert not problems, problems
    assert _gone(pids) == []


def test_a_fork_server_that_cannot_start_gives_fresh_processes(tmp_path, monkeypatch):
    require_lab()
    from lab.net.sites import SiteLab

    monkeypatch.setattr(forkserver.ForkServer, "argv", property(lambda self: [sys.executable, "-c", "exit(3)"]))
    said = []
    lab = SiteLab(nat="none")
    lab.say = said.append
    lab.start()
    try:
        gateway = OurGateway(lab.node("gwa"), tmp_path / "gwa")
        gateway.write_config(conf(lab, "a"))
        gateway.start()
        lab.on_stop(gateway.stop)
        assert isinstance(gateway.process, subprocess.Popen)
        assert "the fork server could not start" in (tmp_path / "gwa" / "gateway.log").read_text()
        assert any("fresh processes" in line for line in said), said
    finally:
        assert lab.stop() == []


def test_forked_gateways_in_a_world_of_their_own(tmp_path):
    """`ipsec-lab run hub-and-spoke` in a world (user, mount, network and PID namespaces: as the
    user trainee where the machine allows, else as root), IPSEC_LAB_GATEWAY_THREADS=0: the
    gateways are forked (no fresh process is mentioned), the scenario passes, and nothing of the
    world is left."""
    from . import test_worlds as worlds

    worlds.require_worlds()
    why_not = worlds.trainee_usable()
    user = None if why_not else worlds.TRAINEE
    folder = worlds.shared_dir(user)
    slots = worlds.shared_dir(None)
    slots.chmod(0o1777)
    env = worlds.world_env(IPSEC_LAB_SLOTS=str(slots), IPSEC_LAB_GATEWAY_THREADS="0")
    try:
        proc = worlds.ipsec_lab(["run", "hub-and-spoke", "--out", str(folder / "run")], env, user)
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stdout + stderr
        assert "PASSED hub-and-spoke" in stdout
        assert "fresh process" not in stdout + stderr, stdout + stderr
        for name in ("hub", "spoke1", "spoke2"):
            log = (folder / "run" / "logs" / f"{name}.log").read_text()
            assert "IKE_AUTH" in log and "fresh process" not in log, log[-500:]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(slots, ignore_errors=True)
    assert _gone([int(p.split()[1]) for p in worlds._processes_with(f"IPSEC_LAB_SLOTS={slots}")]) == []


def _threads_netns(pid: int) -> set[str]:
    return {os.readlink(f"/proc/{pid}/task/{tid}/ns/net") for tid in os.listdir(f"/proc/{pid}/task")}


def test_hosted_gateways_carry_a_tunnel_and_leave_nothing(tmp_path):
    """Lab(gateway_threads=True): both gateways are threads of one gateway host (in the lab's record), each
    in its node's network namespace; the tunnel carries traffic; a stopped gateway's TUN device
    goes from its node while the other runs on; nothing is left when the lab stops."""
    require_lab()
    from lab.net.sites import SiteLab

    lab = SiteLab(nat="one")
    lab.gateway_threads = True
    lab.start()
    try:
        gateways = _start_gateways(lab, tmp_path)
        server = lab.fork_server
        assert server is not None and server.host_process is not None, lab.fork_unavailable
        host = server.host_process.pid
        assert all(isinstance(g.process, forkserver.HostedGateway) and g.process.pid == host
                   for g in gateways.values())
        assert _ns(host, "net") != _ns(lab.node("gwa").pid, "net")
        assert {_ns(lab.node(f"gw{side}").pid, "net") for side in "ab"} <= _threads_netns(host)
        assert str(host) in lab.record.processes
        _tunnel_then_stop_b(lab, gateways, tmp_path)
        assert "ipsec0" not in lab.node("gwb").cmd("ip -o link show")
        assert "ipsec0" in lab.node("gwa").cmd("ip -o link show") and gateways["a"].running
        pids = [host, server.process.pid]
    finally:
        problems = lab.stop()
    assert not problems, problems
    assert _gone(pids) == []


@pytest.mark.parametrize("threads", [False, True], ids=["forked", "gateway-threads"])
def test_after_a_killed_run_the_gateways_parent_ends_and_clean_leaves_nothing(tmp_path, threads):
    """`ipsec-lab run hub-and-spoke` killed with SIGKILL. Forked gateways: the fork server sees its
    lab gone and ends, the gateways are left (as fresh ones were) and `ipsec-lab clean` finds them.
    Gateway threads (IPSEC_LAB_GATEWAY_THREADS=1, hub-and-spoke's default): the host sees its lab gone, stops its gateways
    and ends. Either way `ipsec-lab clean` leaves nothing of the run."""
    require_lab()
    out = tmp_path / "run"
    env = dict(os.environ, IPSEC_LAB_GATEWAY_THREADS="1" if threads else "0")  # forked: not its default (3 gateways)
    proc = ipsec_lab("run", "--host", "hub-and-spoke", "--out", str(out), env=env)
    seen = read_until(proc, "[3/", timeout=120)
    daemons = _pgrep("-f", "lab.cli daemon --config " + str(out))
    record = cleanup.LabRecord.load(cleanup.RECORDS / f"{proc.pid}.json")
    assert record is not None and record.netns
    if threads:
        assert not daemons, "the gateways are not threads"
        parents = [int(pid) for pid in record.processes
                   if _alive(int(pid)) and b"--gateway-host" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    else:
        assert daemons, "".join(seen)
        parents = sorted({int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) for pid in daemons})
        assert b"lab.net.forkserver" in Path(f"/proc/{parents[0]}/cmdline").read_bytes()
    assert len(parents) == 1 and _alive(parents[0]), "".join(seen)
    os.killpg(proc.pid, signal.SIGKILL)  # a crash of the run: no teardown at all
    proc.wait(10)
    # the fork server or gateway host sees its lab gone and ends; forked gateways are left
    assert _gone(parents, timeout=20) == []
    assert all(_alive(int(p)) for p in daemons)
    clean = subprocess.run([sys.executable, "-m", "lab.cli", "clean"], cwd=REPO, capture_output=True, text=True,
                           timeout=60)
    assert clean.returncode == 0, clean.stderr
    # (other labs may be running on this machine: only this run's things are looked for)
    assert all(f"process pid {p} (" in clean.stdout for p in daemons), clean.stdout
    assert cleanup.leftovers(record) == []
    assert _gone([int(p) for p in daemons], timeout=1) == []
    assert _gone([*record.shells.values(), *map(int, record.processes)], timeout=1) == []


def _world_processes(marker: str) -> dict[int, bytes]:
    """The processes of the worlds whose environment holds `marker`, each with its command line."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if marker.encode() in Path(f"/proc/{entry}/environ").read_bytes() and _alive(int(entry)):
                    found[int(entry)] = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                pass
    return found


def _in_netns(inodes: set[int]) -> list[str]:
    """Processes (any thread of them) in one of the network namespaces `inodes`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                tasks = os.listdir(f"/proc/{entry}/task")
            except OSError:
                continue
            for tid in tasks:
                try:
                    if os.stat(f"/proc/{entry}/task/{tid}/ns/net").st_ino in inodes:
                        found.append(cleanup.describe_pid(int(entry)))
                        break
                except OSError:
                    pass
    return found


def _threaded_run_in_a_world(folder: Path, slots: Path, user: str | None) -> tuple[subprocess.Popen, dict]:
    """`ipsec-lab run hub-and-spoke` in a world, as by default (IPSEC_LAB_GATEWAY_THREADS unset: its
    three gateways of ours are more than forkserver.THREADS_ABOVE), seen at its third step: the
    run said so, and the world's gateways are threads of one gateway host, each in its node's
    network namespace; returns the run and what the world holds then (its processes, its network
    namespaces, the host's PID)."""
    from . import test_worlds as worlds

    assert forkserver.THREADS_ABOVE < 3
    env = worlds.world_env(IPSEC_LAB_SLOTS=str(slots), IPSEC_LAB_GATEWAY_THREADS="")
    proc = worlds.ipsec_lab(["run", "hub-and-spoke", "--out", str(folder / "run")], env, user,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    seen = read_until(proc, "[3/", timeout=240)
    assert "[3/" in seen[-1], "".join(seen)
    assert any("our 3 gateways run as threads of one gateway host" in line for line in seen), "".join(seen)
    marker = f"IPSEC_LAB_SLOTS={slots}"
    processes = _world_processes(marker)
    hosts = [pid for pid, cmdline in processes.items() if b"--gateway-host" in cmdline]
    assert len(hosts) == 1, processes
    assert not [pid for pid, cmdline in processes.items() if b"lab.cli\0daemon" in cmdline], processes
    shells = {pid for pid, cmdline in processes.items() if cmdline.startswith(b"bash") or b"mininet:" in cmdline}
    own = os.stat(f"/proc/{hosts[0]}/ns/net").st_ino
    inodes = {os.stat(f"/proc/{hosts[0]}/task/{tid}/ns/net").st_ino for tid in os.listdir(f"/proc/{hosts[0]}/task")}
    assert len(inodes - {own}) >= 3, "hub, spoke1 and spoke2 are not each in a namespace of their own"
    netns = inodes | {inode for inode in (cleanup.netns_inode(pid) for pid in shells | set(processes)) if inode}
    # the command that made the world, and unshare, are on the host: the host's namespace is not the world's
    world = {"processes": set(processes), "hosts": hosts, "netns": netns - {cleanup.netns_inode(os.getpid())}}
    return proc, world


def _threaded_run_from_the_start() -> tuple[Path, Path, set, subprocess.Popen, dict]:
    """_threaded_run_in_a_world as the user trainee where the machine allows (else root), in
    fresh shared folders: (its folder, the slots folder, the host's links before it, the run,
    what its world holds)."""
    from . import test_worlds as worlds

    worlds.require_worlds()
    user = None if worlds.trainee_usable() else worlds.TRAINEE
    folder = worlds.shared_dir(user)
    slots = worlds.shared_dir(None)
    slots.chmod(0o1777)
    links = worlds._host_state()["links"]
    proc, world = _threaded_run_in_a_world(folder, slots, user)
    return folder, slots, links, proc, world


def _nothing_left(slots: Path, world: dict) -> None:
    marker = f"IPSEC_LAB_SLOTS={slots}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (_world_processes(marker) or _in_netns(world["netns"])):
        time.sleep(0.2)
    assert _world_processes(marker) == {}, "a process of the world is left"
    assert _gone(world["processes"], timeout=1) == []
    assert _in_netns(world["netns"]) == [], "a process is left in one of the world's network namespaces"
    assert [p.name for p in slots.glob("slot-*") if cleanup._lock_holders(p)] == []


def test_gateway_threads_in_a_world_of_their_own():
    """`ipsec-lab run hub-and-spoke` in a world (user, mount, network and PID namespaces: as the
    user trainee where the machine allows, else as root), as by default: the gateways are threads
    of one gateway host, each in its node's namespace; the scenario passes;
    each gateway's log is its own; nothing of the world is left (no process, no namespace: its
    TUN devices went with them, and no new link on the host)."""
    from . import test_worlds as worlds

    folder, slots, links, proc, world = _threaded_run_from_the_start()
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stdout + stderr
    assert "PASSED hub-and-spoke" in stdout
    assert "fresh process" not in stdout + stderr and "Traceback" not in stderr, stdout + stderr
    for name in ("hub", "spoke1", "spoke2"):
        log = (folder / "run" / "logs" / f"{name}.log").read_text()
        ups = [line for line in log.splitlines() if "ipsec-lab gateway up" in line]
        assert len(ups) == 1 and f"/nodes/{name}/gateway.ctl" in ups[0], log[-800:]
        assert "IKE_AUTH" in log and "gateway stopped" in log, log[-800:]
    # the hub talks to both spokes; neither spoke's log holds a line of the other's
    spokes = {"spoke1": "198.51.100.11", "spoke2": "198.51.100.12"}
    hub = (folder / "run" / "logs" / "hub.log").read_text()
    assert all(address in hub for address in spokes.values())
    for name, other in (("spoke1", "spoke2"), ("spoke2", "spoke1")):
        assert spokes[other] not in (folder / "run" / "logs" / f"{name}.log").read_text(), name
    _nothing_left(slots, world)
    assert worlds._host_state()["links"] - links == set()


@pytest.mark.parametrize("what", ["group", "command"])
def test_a_killed_threaded_run_in_a_world_leaves_nothing(what):
    """The same run killed with SIGKILL at its third step: its whole process group (a crash: the
    world's PID 1 dies, and the kernel ends its gateway host and the rest), or the command alone
    (the world's PID 1 is told with SIGTERM and tears down). Nothing of the world is left."""
    from . import test_worlds as worlds

    folder, slots, links, proc, world = _threaded_run_from_the_start()
    if what == "group":
        os.killpg(proc.pid, signal.SIGKILL)
    else:
        proc.kill()
    try:
        proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the world did not end: end it, so the tests after have a clean machine
        proc.communicate(timeout=60)
        raise
    assert proc.returncode == -signal.SIGKILL
    _nothing_left(slots, world)
    assert worlds._host_state()["links"] - links == set()
