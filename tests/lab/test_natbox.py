"""The NAT box's knobs, each watched doing what it says with real packets (root): port mapping
preserve/random, SNAT port range, DNAT, UDP mapping timeout, rebind, reboot, ESP dropped,
ICMP fragmentation-needed blocked, loss, delay, duplication and reordering by NFQUEUE."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time

import pytest

from lab.net.lab import Lab
from lab.net.topology import load

from .conftest import require_lab

pytestmark = pytest.mark.root
SEND = """
import socket, sys, time
dst, dport, sport, count, gap = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", sport))
for i in range(count):
    s.sendto(str(i).encode(), (dst, dport))
    time.sleep(gap)
"""
RECEIVE = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.settimeout(float(sys.argv[2]))
print("ready", flush=True)
try:
    while True:
        data, peer = s.recvfrom(2048)
        print(peer[0], peer[1], data.decode(), flush=True)
except socket.timeout:
    pass
"""


def python(node, code: str, *args: object) -> str:
    return node.cmd(" ".join([shlex.quote(sys.executable), "-c", shlex.quote(code), *map(str, args)]))


class Receiver:
    def __init__(self, node, port: int, timeout: float = 2.0) -> None:
        self.proc = node.popen([sys.executable, "-c", RECEIVE, str(port), str(timeout)], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
        assert self.proc.stdout.readline().strip() == "ready"

    def lines(self) -> list[tuple[str, int, int]]:
        out, _ = self.proc.communicate(timeout=60)
        return [(a, int(p), int(n)) for a, p, n in (line.split() for line in out.splitlines() if line.strip())]


@pytest.fixture
def lab():
    require_lab()
    running = []

    def build(nat: str = "one", **knobs) -> Lab:
        topo = load("site-to-site")(nat=nat, mtu=knobs.pop("mtu", 1500))
        for box in topo.nodes_of("nat"):
            topo.nodeInfo(box)["nat"].update(knobs)
        running.append(Lab(topo).start())
        return running[-1]

    yield build
    for each in running:
        assert each.stop() == []


def send(lab: Lab, count: int = 3, sport: int = 4500, gap: float = 0.01, dst: str = "198.51.100.2",
         dport: int = 4500) -> list[tuple[str, int, int]]:
    receiver = Receiver(lab.node("gwb"), dport)
    python(lab.node("gwa"), SEND, dst, dport, sport, count, gap)
    return receiver.lines()


def test_preserve_keeps_the_source_port(lab):
    got = send(lab())
    assert {(a, p) for a, p, _ in got} == {("198.51.100.1", 4500)} and len(got) == 3


def test_random_gives_a_new_port_per_flow(lab):
    net = lab(mapping="random")
    first = {p for _, p, _ in send(net, sport=4500)}
    second = {p for _, p, _ in send(net, sport=4501, dport=4501)}
    assert len(first) == 1 and len(second) == 1
    assert first != {4500} or second != {4501}  # chance 1 in 4 billion


def test_snat_port_range(lab):
    got = send(lab(snat_ports="30000-30009"))
    assert all(30000 <= p <= 30009 for _, p, _ in got) and got


def test_dnat_reaches_the_gateway_behind_the_second_nat(lab):
    net = lab(nat="both")
    receiver = Receiver(net.node("gwb"), 500)
    python(net.node("gwa"), SEND, "198.51.100.2", 500, 500, 2, 0.01)
    got = receiver.lines()
    assert [(a, p) for a, p, _ in got] == [("198.51.100.1", 500)] * 2  # natb forwarded 198.51.100.2:500 to gwb


def _udp_mappings(net: Lab, box: str = "nat") -> list[str]:
    out = net.node(box).cmd("conntrack -L -p udp 2>/dev/null")
    return [line for line in out.splitlines() if "udp" in line]


def test_udp_mapping_timeout(lab):
    net = lab(udp_timeout=2)
    python(net.node("gwa"), SEND, "198.51.100.2", 4500, 4500, 1, 0)
    assert _udp_mappings(net), "a mapping while the flow is fresh"
    deadline = time.monotonic() + 15
    while _udp_mappings(net) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _udp_mappings(net), "the mapping should expire after 2 s without traffic"


def test_rebind_moves_existing_flows_to_new_ports(lab):
    net = lab()
    receiver = Receiver(net.node("gwb"), 4500, timeout=3)
    sender = net.node("gwa").popen([sys.executable, "-c", SEND, "198.51.100.2", "4500", "4500", "40", "0.05"])
    time.sleep(0.8)
    net.node("nat").rebind()
    sender.wait(30)
    ports = [p for _, p, _ in receiver.lines()]
    assert ports[0] == 4500 and 20000 <= ports[-1] <= 20999, ports
    assert ports.index(ports[-1]) > 0


def test_reboot_forgets_every_mapping(lab):
    net = lab()
    send(net, count=1)
    assert _udp_mappings(net)
    net.node("nat").reboot()
    assert not _udp_mappings(net)


def test_drop_esp(lab):
    code = ("import socket; s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 50); "
            "[s.sendto(b'\\x00\\x00\\x10\\x00' + bytes(60), ('198.51.100.2', 0)) for _ in range(5)]")
    for drop, expected in ((False, 5), (True, 0)):
        net = lab(drop_esp=drop)
        dump = subprocess.Popen(["mnexec", "-a", str(net.node("gwb").pid), "tcpdump", "-n", "-i", "gwb-wan", "-c",
                                 "5", "ip proto 50"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(0.8)
        python(net.node("gwa"), code)
        time.sleep(0.5)
        dump.terminate()
        out = dump.communicate(timeout=10)[0]
        assert len(re.findall(r"ESP\(spi=0x00001000", out)) == expected, out
        assert net.stop() == []


def test_block_icmp_frag_makes_a_black_hole(lab):
    for block in (False, True):
        net = lab(mtu=1300, block_icmp_frag=block)
        out = net.node("gwa").cmd("ping -n -c 2 -W 1 -M do -s 1372 198.51.100.2")
        if block:
            assert "Frag needed" not in out and "mtu = 1300" not in out and " 0 received" in out, out
        else:
            assert "mtu = 1300" in out or "Frag needed" in out or "message too long" in out, out
        assert net.stop() == []


def _ping(net: Lab, count: int, interval: float = 0.01) -> str:
    return net.node("gwa").cmd(f"ping -n -q -c {count} -i {interval} -W 1 198.51.100.2")


def test_loss(lab):
    out = _ping(lab(loss=0.5), 200)
    received = int(re.search(r"(\d+) received", out).group(1))
    assert 20 < received < 180, out  # each way loses half: about 50 of 200 come back


def test_loss_every_nth(lab):
    out = _ping(lab(loss_every=4), 40, 0.02)
    received = int(re.search(r"(\d+) received", out).group(1))
    assert 15 <= received <= 30, out  # 1 in 4 packets each way: 3/4 * 3/4 of 40 is about 22


def test_delay(lab):
    out = _ping(lab(delay_ms=100), 5, 0.2)
    rtt_min = float(re.search(r"= ([\d.]+)/", out).group(1))
    assert rtt_min >= 180, out  # 100 ms out and 100 ms back, at least


def test_duplicate(lab):
    out = lab(duplicate=1.0).node("gwa").cmd("ping -n -c 3 -i 0.2 -W 1 198.51.100.2")
    assert "DUP!" in out, out


def test_reorder(lab):
    got = send(lab(delay_ms=5, reorder=0.5), count=60, gap=0.002)
    numbers = [n for _, _, n in got]
    assert sorted(numbers) == list(range(60)), numbers
    assert numbers != sorted(numbers), "with reordering some datagrams overtake others"
