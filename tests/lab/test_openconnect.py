"""OpenConnect as a lab peer (lab.net.openconnect, root): Debian's ocserv on gwf and openconnect on
gwe behind a NAT box, with the certificate of the scenario's lab CA and a user with a password;
up over TLS then DTLS, traffic between the sites, the sessions each side sees, the fallback to TLS
when the NAT box drops UDP, and nothing left behind (no ocserv or openconnect, no tun device, no
socket in /run/ipsec-lab/files) after a stop and after a crash."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import compare_lab, require_lab

ROOT = Path(__file__).resolve().parents[2]
HOSTS = ROOT / "scenarios" / "compare-roaming" / "hosts"


@pytest.fixture
def lab(tmp_path):
    yield from compare_lab(tmp_path / "lab", 3, "test-openconnect", ('ocserv', 'openconnect'))


def peer(lab, tmp_path, node):
    from lab.net.openconnect import OpenConnect

    p = OpenConnect(lab.node(node), tmp_path / node, node)
    p.load(HOSTS / node)
    return p


def left_behind(p) -> list[str]:
    """What of an OpenConnect side is still there in its node: its processes (ocserv renames
    itself ocserv-main, ocserv-sm and ocserv-worker), its tun devices, ocserv's sockets."""
    from lab.net import cleanup

    found = []
    for pid in cleanup.processes_in({cleanup.netns_inode(p.node.pid)}):
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        if comm.startswith(("ocserv", "openconnect")) and not cleanup._zombie(pid):
            found.append(comm)
    found.sort()
    tuns = [line.split(":")[1].strip() for line in p.node.cmd("ip -o link show type tun").splitlines()
            if ":" in line]
    found += [f"tun {name}" for name in tuns]
    if p.node.cmd(f"ls -A {p.files} 2>/dev/null").split():
        found.append(p.files)
    return found


def dissected(pcap: Path) -> dict[str, list[int]]:
    """tshark's reading of a capture on gwf's uplink: no "Malformed" anywhere (-V), and the IP
    lengths of the TLS and the DTLS records that carry application data."""
    verbose = subprocess.run(["tshark", "-r", str(pcap), "-V"], capture_output=True, text=True, check=True).stdout
    assert "Malformed" not in verbose and "Exception" not in verbose
    out: dict[str, list[int]] = {"tls": [], "dtls": []}
    for proto in out:
        fields = subprocess.run(["tshark", "-r", str(pcap), "-Y", f"{proto}.app_data", "-T", "fields", "-e", "ip.len"],
                                capture_output=True, text=True, check=True).stdout
        out[proto] = [int(n) for n in fields.split()]
    return out


# the 84-octet ping (20 IP + 8 ICMP + 56) in each channel, from the formats:
# DTLS 1.2 with AES-GCM: 20 IP + 8 UDP + 13 record header (RFC 6347 §4.1) + 8 explicit nonce
# (RFC 5288 §3) + 1 AnyConnect packet type + 16 tag
DTLS_PING = 20 + 8 + 13 + 8 + 1 + 84 + 16
# TLS 1.3: 20 IP + 32 TCP with timestamps + 5 record header + 8 CSTP header + the inner content
# type 1 + 16 tag (RFC 8446 §5.2)
TLS_PING = 20 + 32 + 5 + 8 + 84 + 1 + 16


def test_up_over_dtls_traffic_sessions_and_a_clean_stop(lab, tmp_path):
    s, c = peer(lab, tmp_path, "gwf"), peer(lab, tmp_path, "gwe")
    tap = lab.tap("gwf-wan", "gwf", "gwf-wan", tmp_path / "gwf-wan.pcap")
    s.start()
    assert c.initiate(timeout=20).startswith("connected")
    [seen] = s.wait_for_tunnel(lambda ts: any(t.transport == "udp" for t in ts), 10)
    assert (seen.state, seen.remote_host) == ("UP", "198.51.100.1"), seen
    assert seen.inner and seen.inner[0].startswith("10.98.2."), seen
    c.wait_for_tunnel(lambda ts: ts and ts[0].transport == "udp", 10, "DTLS")
    out = lab.node("hosta").cmd("ping -n -c 3 -i 0.2 -W 2 10.2.2.10")
    assert "3 received" in out, out
    assert c.counters()["packets_out"] >= 3 and s.counters()["bytes_in"] > 0
    tap.stop()
    seen = dissected(tmp_path / "gwf-wan.pcap")
    assert seen["dtls"].count(DTLS_PING) == 6, seen     # 3 requests, 3 replies, in DTLS
    assert TLS_PING not in seen["tls"] and seen["tls"], seen  # the login and CSTP only
    assert left_behind(c) == ["openconnect", f"tun {c.interface}"]
    assert left_behind(s) == ["ocserv-main", "ocserv-sm", "ocserv-worker", "tun vpns0", s.files]
    c.stop()
    s.wait_for_tunnel(lambda ts: ts == [], 10, "the session to go")   # openconnect logged off
    s.stop()
    assert left_behind(c) == [] and left_behind(s) == []


def test_without_udp_the_data_stay_in_tls(lab, tmp_path):
    lab.node("nat").cmd("iptables -I FORWARD -p udp --dport 443 -j DROP")
    s, c = peer(lab, tmp_path, "gwf"), peer(lab, tmp_path, "gwe")
    tap = lab.tap("gwf-wan", "gwf", "gwf-wan", tmp_path / "gwf-wan.pcap")
    s.start()
    c.initiate(timeout=30)        # openconnect tries DTLS for a while before it sets the tun device
    [tunnel] = s.list_tunnels()
    assert tunnel.transport == "tcp", tunnel
    out = lab.node("hosta").cmd("ping -n -c 3 -i 0.2 -W 2 10.2.2.10")
    assert "3 received" in out, out
    tap.stop()
    seen = dissected(tmp_path / "gwf-wan.pcap")
    assert seen["dtls"] == [] and seen["tls"].count(TLS_PING) == 6, seen
    c.stop()
    s.stop()


def test_a_crash_leaves_nothing_the_next_start_or_the_lab_minds(lab, tmp_path):

    s, c = peer(lab, tmp_path, "gwf"), peer(lab, tmp_path, "gwe")
    s.start()
    c.initiate(timeout=20)
    main = s.process.pid
    s.node.cmd(f"kill -KILL {main}")     # ocserv-main dies; what it started must be found
    time.sleep(0.5)
    assert s.files in left_behind(s)      # its sockets stay
    c.kill()
    s.start()                             # removes the old sockets first
    c.initiate(timeout=20)
    c.stop()
    s.stop()
    assert left_behind(c) == [] and left_behind(s) == []


CHILD = """
import sys, time
from pathlib import Path
from lab.net.lab import Lab
from lab.net.openconnect import OpenConnect
from lab.net.topology import load

hosts, work = Path(sys.argv[1]), Path(sys.argv[2])
with Lab(load("compare")(vpns=3), work / "lab", "test-openconnect-crash") as lab:
    peers = []
    for node in ("gwf", "gwe"):
        peer = OpenConnect(lab.node(node), work / node, node)
        peer.load(hosts / node)
        lab.on_stop(peer.stop)
        peers.append(peer)
    peers[0].start()
    peers[1].initiate(timeout=20)
    print("UP", flush=True)
    time.sleep(120)
"""


def _zombie(pid: int) -> bool:
    from lab.net.cleanup import _zombie

    return _zombie(pid)    # a dead process its new parent has not reaped yet holds nothing


def ours_anywhere() -> list[str]:
    """ocserv's and openconnect's processes on the whole machine (by the names ps shows)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            comm = Path(f"/proc/{entry}/comm").read_text().strip() if entry.isdigit() else ""
        except OSError:
            continue
        if comm.startswith(("ocserv", "openconnect")) and not _zombie(int(entry)):
            found.append(comm)
    return sorted(found)


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGINT])
def test_a_lab_killed_or_interrupted_leaves_nothing_that_clean_does_not_find(tmp_path, signum):
    """A lab process with ocserv and openconnect up is killed (a crash: no stop runs) or
    interrupted (Ctrl-C: the lab stops them). After the crash `clean` finds each of their
    processes, by the name ps shows, and removes them; after Ctrl-C nothing is left to find."""
    require_lab()
    from lab.net import cleanup

    assert ours_anywhere() == [], "an ocserv or openconnect runs already: this test cannot tell its own"
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(HOSTS), str(tmp_path)], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(root)))
    try:
        line = proc.stdout.readline()
        assert line.strip() == "UP", line + proc.stderr.read() if proc.poll() is not None else line
        assert ours_anywhere() == ["ocserv-main", "ocserv-sm", "ocserv-worker", "openconnect"]
        proc.send_signal(signum)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    found = cleanup.clean(say=lambda line: None)
    # "process pid 7 (ocserv-main: ocserv) in a lab namespace", "process pid 9 (/usr/sbin/ocserv-worker ...)"
    named = sorted({os.path.basename(item.split("(", 1)[1].split()[0].rstrip(":")) for item in found
                    if item.startswith("process ")} & {"ocserv-main", "ocserv-sm", "ocserv-worker", "openconnect"})
    if signum == signal.SIGKILL:
        assert named == ["ocserv-main", "ocserv-sm", "ocserv-worker", "openconnect"], found
    else:
        assert found == [] and proc.returncode != 0
    assert ours_anywhere() == []
