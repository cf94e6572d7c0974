"""The ping step's pinger (lab/net/pinger.py) against iputils' ping, in a namespace of its own (root):
a reply held back by NFQUEUE (lab.net.impair) is counted when it comes within the timeout, also
where iputils' ping, which waits only twice the longest round trip after its last request, gives
it up; a reply later than the timeout is lost; an echo request too big for the path with DF set
is answered by the router's "Frag needed" and by a local "message too long", as ping says them."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.root
REPO = Path(__file__).resolve().parents[2]
PINGER = REPO / "lab" / "net" / "pinger.py"


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=60)


@pytest.fixture
def netns():
    if os.geteuid() != 0:
        pytest.skip("needs root (a network namespace)")
    names = [f"pingt{os.getpid()}{x}" for x in "arb"]
    for name in names:
        sh("ip", "netns", "add", name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
    try:
        yield names
    finally:
        for name in names:
            sh("ip", "netns", "del", name, check=False)
        left = sh("ip", "netns", "list").stdout
        assert not any(name in left for name in names), left


def run_in(ns: str, *argv: str) -> str:
    proc = subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, timeout=60)
    return proc.stdout + proc.stderr


def received(out: str) -> int:
    match = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert match, out
    return int(match.group(2))


def delay_third_reply(ns: str, delay_ms: int):
    """Every third echo reply on the namespace's loopback goes through NFQUEUE, held `delay_ms`."""
    sh("ip", "netns", "exec", ns, "iptables", "-A", "OUTPUT", "-p", "icmp", "--icmp-type", "echo-reply",
       "-m", "statistic", "--mode", "nth", "--every", "3", "--packet", "2", "-j", "NFQUEUE", "--queue-num", "3")
    impair = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", "lab.net.impair", "--queue", "3",
                               "--delay-ms", str(delay_ms)], cwd=REPO, stderr=subprocess.PIPE, text=True)
    assert "ready" in impair.stderr.readline()
    return impair


def test_a_late_reply_within_the_timeout_counts_where_iputils_gives_it_up(netns):
    ns = netns[0]
    impair = delay_third_reply(ns, 600)
    try:
        ours = run_in(ns, sys.executable, "-I", str(PINGER), "127.0.0.1", "-c", "3", "-i", "0.2", "-W", "2")
        theirs = run_in(ns, "ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", "127.0.0.1")
        started = time.monotonic()
        too_late = run_in(ns, sys.executable, "-I", str(PINGER), "127.0.0.1", "-c", "3", "-i", "0.2", "-W", "0.3")
        took = time.monotonic() - started
    finally:
        impair.terminate()
        impair.wait(timeout=10)
    assert received(ours) == 3 and "icmp_seq=3" in ours, ours
    assert "3 packets transmitted" in ours, ours
    # the reason for the pinger: iputils stops 2 x the longest round trip after its last request
    assert received(theirs) == 2, theirs
    # a reply later than -W is lost, and the pinger does not wait for it longer than -W
    assert received(too_late) == 2 and "icmp_seq=3" not in too_late, too_late
    assert took < 0.4 + 0.3 + 3, took  # generous: not a timing test, a "did not hang" test


def test_df_too_big_for_the_path_says_frag_needed_then_message_too_long(netns):
    a, r, b = netns
    sh("ip", "link", "add", "pa0", "netns", a, "type", "veth", "peer", "name", "pr0", "netns", r)
    sh("ip", "link", "add", "pr1", "netns", r, "type", "veth", "peer", "name", "pb0", "netns", b)
    for ns, dev, addr, mtu in ((a, "pa0", "10.9.9.1/24", "1500"), (r, "pr0", "10.9.9.254/24", "1500"),
                               (r, "pr1", "10.8.8.254/24", "1300"), (b, "pb0", "10.8.8.1/24", "1300")):
        sh("ip", "-n", ns, "addr", "add", addr, "dev", dev)
        sh("ip", "-n", ns, "link", "set", dev, "up", "mtu", mtu)
    sh("ip", "-n", a, "route", "add", "default", "via", "10.9.9.254")
    sh("ip", "-n", b, "route", "add", "default", "via", "10.8.8.254")
    sh("ip", "netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    ours = run_in(a, sys.executable, "-I", str(PINGER), "10.8.8.1", "-c", "3", "-s", "1400", "-M", "do", "-W", "1")
    assert "From 10.9.9.254 icmp_seq=1 Frag needed and DF set (mtu = 1300)" in ours, ours
    assert "ping: local error: message too long, mtu=1300" in ours, ours
    assert received(ours) == 0 and "+3 errors" in ours, ours
    fits = run_in(a, sys.executable, "-I", str(PINGER), "10.8.8.1", "-c", "2", "-s", "1200", "-M", "do", "-I", "10.9.9.1")
    assert received(fits) == 2 and "ttl=63" in fits, fits
    wrong_source = run_in(a, sys.executable, "-I", str(PINGER), "10.8.8.1", "-c", "1", "-I", "10.9.9.7")
    assert "ping: bind to 10.9.9.7: Cannot assign requested address" in wrong_source, wrong_source


def test_ipv6_echo_and_a_packet_too_big_as_ping_says_them(netns):
    a, r, b = netns
    sh("ip", "link", "add", "pa0", "netns", a, "type", "veth", "peer", "name", "pr0", "netns", r)
    sh("ip", "link", "add", "pr1", "netns", r, "type", "veth", "peer", "name", "pb0", "netns", b)
    for ns in netns:
        sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0",
           "net.ipv6.conf.default.disable_ipv6=0", "net.ipv6.conf.all.accept_dad=0")
    for ns, dev, addr, mtu in ((a, "pa0", "2001:db8:9::1/64", "1500"), (r, "pr0", "2001:db8:9::fe/64", "1500"),
                               (r, "pr1", "2001:db8:8::fe/64", "1300"), (b, "pb0", "2001:db8:8::1/64", "1300")):
        sh("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=0",
           f"net.ipv6.conf.{dev}.accept_dad=0")
        sh("ip", "-n", ns, "addr", "add", addr, "dev", dev, "nodad")
        sh("ip", "-n", ns, "link", "set", dev, "up", "mtu", mtu)
    sh("ip", "-n", a, "-6", "route", "add", "default", "via", "2001:db8:9::fe")
    sh("ip", "-n", b, "-6", "route", "add", "default", "via", "2001:db8:8::fe")
    sh("ip", "netns", "exec", r, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
    fits = run_in(a, sys.executable, "-I", str(PINGER), "2001:db8:8::1", "-c", "2", "-s", "1200", "-M", "do")
    assert received(fits) == 2 and "ttl=63" in fits and "bytes from 2001:db8:8::1" in fits, fits
    ours = run_in(a, sys.executable, "-I", str(PINGER), "2001:db8:8::1", "-c", "3", "-s", "1400", "-M", "do", "-W", "1")
    # RFC 4443 §3.2: the router says the next hop's MTU; the sender remembers it (RFC 8201 §4)
    assert "From 2001:db8:9::fe icmp_seq=1 Packet too big: mtu=1300" in ours, ours
    assert "ping: local error: message too long, mtu=1300" in ours, ours
    assert received(ours) == 0 and "+3 errors" in ours, ours
