"""WireGuard as a lab peer (lab.net.wireguard, root): wireguard-go and wg between two gateways
behind and beyond a NAT box; up, a handshake, traffic, the endpoint each side sees; and nothing
left behind (no wireguard-go, no TUN device, no UAPI socket) after a stop, after a crash and
after a start that fails half-way."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from .conftest import compare_lab

ROOT = Path(__file__).resolve().parents[2]
HOSTS = ROOT / "scenarios" / "compare-site-to-site" / "hosts"


@pytest.fixture
def lab(tmp_path):
    yield from compare_lab(tmp_path / "lab", 2, "test-wireguard", ('wireguard-go', 'wg'))


def peers(lab, tmp_path):
    from lab.net.wireguard import WireGuard

    out = []
    for node in ("gwc", "gwd"):
        peer = WireGuard(lab.node(node), tmp_path / node, node)
        peer.load(HOSTS / node)
        out.append(peer)
    return out


def left_behind(peer, pid: int) -> list[str]:
    """What of a WireGuard peer is still there: its process `pid`, its TUN device, its UAPI socket."""
    found = []
    node = peer.node
    if Path(f"/proc/{pid}").exists():
        found.append("wireguard-go")
    if node.cmd(f"ip -o link show dev {peer.interface} 2>/dev/null").strip():
        found.append(f"interface {peer.interface}")
    if node.cmd(f"test -e {peer.socket_path} && echo yes").strip() == "yes":
        found.append(peer.socket_path)
    return found


def test_handshake_traffic_endpoint_and_a_clean_stop(lab, tmp_path):
    gwc, gwd = peers(lab, tmp_path)
    gwd.start()
    gwc.start()
    assert gwc.initiate(timeout=10)
    [seen] = gwd.list_tunnels()
    assert (seen.state, seen.remote_host, seen.remote_port) == ("UP", "198.51.100.1", 51820)
    out = lab.node("hosta").cmd("ping -n -c 3 -i 0.2 -W 2 10.2.1.10")
    assert "3 received" in out, out
    assert gwc.counters()["packets_out"] >= 3
    assert gwc.initiate(timeout=10).startswith("the session is up")
    for peer in (gwc, gwd):
        pid = peer.process.pid
        assert left_behind(peer, pid) == ["wireguard-go", f"interface {peer.interface}", peer.socket_path]
        peer.stop()
        assert left_behind(peer, pid) == []
    assert gwc.list_tunnels() == [] and not gwc.running


def test_a_crash_leaves_a_socket_that_the_next_start_removes(lab, tmp_path):
    gwc, gwd = peers(lab, tmp_path)
    gwd.start()
    gwc.start()
    crashed = gwc.process.pid
    gwc.kill()
    time.sleep(0.2)
    # SIGKILL: the TUN device went with the process, the socket stays
    assert left_behind(gwc, crashed) == [gwc.socket_path]
    gwc.start()
    gwc.initiate(timeout=10)
    pids = gwc.process.pid, gwd.process.pid
    gwc.stop()
    gwd.stop()
    assert left_behind(gwc, pids[0]) == [] and left_behind(gwd, pids[1]) == []


def test_a_start_that_fails_half_way_stops_what_it_started(lab, tmp_path):
    from lab.net.peers import PeerError

    gwc, _gwd = peers(lab, tmp_path)
    # something else holds gwc's ListenPort: `wg setconf` fails after wireguard-go is running
    holder = lab.node("gwc").popen(["python3", "-c", "import socket, time; s = socket.socket(socket.AF_INET, "
                                    "socket.SOCK_DGRAM); s.bind(('0.0.0.0', 51820)); print('bound', flush=True); "
                                    "time.sleep(60)"], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"bound"
        started = []
        spawn = gwc.spawn
        gwc.spawn = lambda *a, **k: started.append(spawn(*a, **k)) or started[-1]
        with pytest.raises(PeerError, match="wg setconf"):
            gwc.start()
        assert not gwc.running and len(started) == 1
        assert left_behind(gwc, started[0].pid) == []
    finally:
        holder.kill()
        holder.wait()
