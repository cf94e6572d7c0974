"""IKE and ESP over TCP (RFC 9329), our gateway against our gateway through the NAT box: the
initiator opens a TCP stream to port 4500, IKE_SA_INIT and IKE_AUTH and then the ESP of a ping
travel in it; a stream of hostile framing is counted and closed while the tunnel keeps working."""
from __future__ import annotations

import struct
import sys
import time

import pytest

from lab.esp.tcpencap import PREFIX
from lab.net.capture import Capture
from lab.net.gateway import OurGateway
from lab.net.sites import GWB_PUBLIC, HOSTB

from .test_dataplane import conf, initiate, ping

pytestmark = pytest.mark.root

HOSTILE = """
import socket, time
for data in {streams}:
    with socket.create_connection(("{peer}", 4500), timeout=3) as sock:
        sock.sendall(bytes.fromhex(data))
        sock.settimeout(3)
        try:
            while sock.recv(100):  # until the gateway closes it
                pass
        except OSError:
            pass
"""


def start(lab, side: str, workdir, tcp: str) -> OurGateway:
    daemon = OurGateway(lab.node(f"gw{side}"), workdir / f"gw{side}")
    daemon.write_config(conf(lab, side, extra_connection={"tcp": tcp}))
    return daemon.start()


def test_ike_and_esp_in_one_tcp_stream(site_to_site, tmp_path):
    lab = site_to_site
    gwb = start(lab, "b", tmp_path, "fallback")  # the responder listens on TCP 4500 for either
    gwa = start(lab, "a", tmp_path, "yes")
    capture = Capture(lab.node(lab.middle), lab.internet_intf, tmp_path / "wire.pcap", "tcp or udp or esp").start()
    try:
        initiate(gwa)
        assert ping(lab, "hosta", HOSTB, count=5) >= 4, gwa.log_tail()
    finally:
        capture.stop()
    sa = gwa.raw_sas()[0]
    # NAT detection hashed the stream's ports (RFC 9329 §6.5): the NAT box between is seen
    assert sa["remote"].endswith(":4500") and sa["nat"] == {"local": True, "remote": False}, sa
    stats_a, stats_b = gwa.ctl("stats")["stats"], gwb.ctl("stats")["stats"]
    assert stats_a["tcp"]["esp_out"] >= 5 and stats_b["tcp"]["esp_out"] >= 4, (stats_a["tcp"], stats_b["tcp"])
    assert stats_b["tcp"]["accepted"] == 1
    from scapy.all import IP, TCP, UDP, rdpcap
    packets = rdpcap(str(tmp_path / "wire.pcap"))
    assert not [p for p in packets if UDP in p or p[IP].proto == 50], "nothing but TCP on the wire"
    stream = b"".join(bytes(p[TCP].payload) for p in packets if TCP in p and p[TCP].dport == 4500)
    assert stream.startswith(PREFIX)


def test_hostile_framing_is_counted_and_closed(site_to_site, tmp_path):
    lab = site_to_site
    gwb = start(lab, "b", tmp_path, "yes")
    gwa = start(lab, "a", tmp_path, "yes")
    initiate(gwa)
    hostile = [PREFIX + struct.pack("!H", 2),                         # short
               PREFIX + struct.pack("!H", 60000) + bytes(100),        # oversized
               PREFIX + struct.pack("!H", 12) + b"\x00\x00\x00\x07" + bytes(6),  # garbage: SPI 7
               b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"]                   # no prefix
    script = tmp_path / "hostile.py"
    script.write_text(HOSTILE.format(peer=GWB_PUBLIC, streams=[d.hex() for d in hostile]))
    lab.node(lab.middle).cmd(f"{sys.executable} {script}")
    time.sleep(0.5)
    tcp_b = gwb.ctl("stats")["stats"]
    assert tcp_b["tcp"]["bad_framing"] == len(hostile), tcp_b["tcp"]
    assert sum(v for k, v in tcp_b["drops"].items() if k.startswith("tcp framing")) == len(hostile)
    # and the gateway goes on serving: the tunnel's stream still carries a ping
    assert ping(lab, "hosta", HOSTB, count=3) >= 2, gwb.log_tail()


def test_fallback_when_udp_is_dropped_and_a_reset_keeps_the_sas(site_to_site, tmp_path):
    """The NAT box drops all UDP: IKE_SA_INIT on UDP 500 gets no answer, tcp = fallback tries
    TCP after tcp_fallback_time (RFC 9329 §5.1) and the tunnel comes up. Then gwb resets the
    stream: gwa re-opens it and the same IKE and CHILD SAs carry the next ping (§6.1)."""
    lab = site_to_site
    nat = lab.node(lab.middle)
    nat.cmd("iptables -I FORWARD -p udp -j DROP")  # a network that passes only TCP
    gwb = start(lab, "b", tmp_path, "fallback")
    gwa = start(lab, "a", tmp_path, "fallback")
    began = time.monotonic()
    initiate(gwa)
    took = time.monotonic() - began
    assert 3 <= took < 10, took  # tcp_fallback_time is 3 s by default
    assert "falling back to TCP port 4500" in gwa.log_tail(40)
    assert ping(lab, "hosta", HOSTB, count=3) >= 2, gwa.log_tail()
    counters = nat.cmd("iptables -L FORWARD -v -x -n")
    dropped = sum(int(line.split()[0]) for line in counters.splitlines() if " DROP " in line)
    assert dropped >= 1, counters  # the IKE_SA_INIT on UDP 500 died at the NAT box
    before = [(sa["spi_i"], sa["spi_r"], [c["spi_in"] for c in sa["children"]]) for sa in gwa.raw_sas()]
    assert len(before) == 1

    lab.node("gwb").cmd("ss -4 -K state established 'sport = :4500'")  # gwb's kernel resets the stream (RST to gwa)
    deadline = time.monotonic() + 10
    while gwa.ctl("stats")["stats"]["tcp"].get("reconnects", 0) < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ping(lab, "hosta", HOSTB, count=5) >= 3, gwa.log_tail(40)
    after = [(sa["spi_i"], sa["spi_r"], [c["spi_in"] for c in sa["children"]]) for sa in gwa.raw_sas()]
    assert after == before, (before, after)  # the same SAs, over a new stream
    stats = gwa.ctl("stats")["stats"]["tcp"]
    assert stats["reconnects"] == 1 and stats["connects"] == 2, stats
    assert gwb.ctl("stats")["stats"]["tcp"]["accepted"] == 2
