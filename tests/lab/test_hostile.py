"""Our responder (gwb) under hostile traffic from the internet side (the NAT box's namespace,
bench/attack.py, packets forged with scapy): malformed and truncated IKE, unauthenticated
INFORMATIONAL and CREATE_CHILD_SA on the real IKE SPIs, IKE requests and ESP packets replayed
from a capture, ESP with unknown SPIs and bad ICVs, oversized datagrams, unauthenticated IKE
fragments, and IKE_AUTH fragments from attackers who did IKE_SA_INIT for real but never finish
(RFC 7383 §5: reassembly is bounded). Every kind is dropped and counted in `ctl stats`, the
established SA (strongSwan at gwa, behind the NAT box) carries a ping loop meanwhile with nothing
lost, the attackers' half-open SAs expire, and the IKE SA is the one it was."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.net.capture import Capture
from lab.net.gateway import OurGateway
from lab.net.sites import GWB_PUBLIC, HOSTB
from lab.net.strongswan import StrongSwan

from .test_dataplane import children, conf, ping

pytestmark = pytest.mark.root
REPO = Path(__file__).resolve().parents[2]
ATTACK = str(REPO / "bench" / "attack.py")
ATTACKERS = [f"198.51.100.{i}" for i in range(50, 54)]
HALF_OPEN_TIMEOUT = 5
REASSEMBLY_BUFFERS = 4
ROUNDS = 20


def attack(node, *args: str, timeout: float = 120) -> dict:
    proc = node.popen([sys.executable, ATTACK, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                      cwd=str(REPO))
    stdout, stderr = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, stdout + stderr
    return json.loads(stdout.strip().splitlines()[-1])


def internet_side(lab) -> None:
    """The NAT box as the attackers' internet: four more addresses of its own, and its own
    packets neither tracked nor NATed (raw sockets send them as built)."""
    nat = lab.node("nat")
    for address in ATTACKERS:
        nat.cmd(f"ip addr add {address}/24 dev nat-out")
    nat.cmd("iptables -t raw -A OUTPUT -j CT --notrack")
    nat.cmd("iptables -t raw -A PREROUTING -d 198.51.100.48/28 -j CT --notrack")


def start_gateways(lab, tmp_path, *extra_args: str) -> tuple[OurGateway, StrongSwan]:
    """Our daemon on gwb (the one attacked, with `extra_args`), strongSwan on gwa, both started."""
    gwb = OurGateway(lab.node("gwb"), tmp_path / "gwb", extra_args=extra_args)
    gwb.write_config(conf(lab, "b"))
    gwa = StrongSwan(lab.node("gwa"), tmp_path / "gwa")
    gwa.write_config(conf(lab, "a"))
    gwb.start()
    gwa.start()
    gwa.load_all()
    return gwb, gwa


def delta(after: dict, before: dict, key: str) -> int:
    return after.get(key, 0) - before.get(key, 0)


def test_hostile_traffic_is_dropped_and_counted_while_the_tunnel_carries_pings(site_to_site, tmp_path):
    lab = site_to_site
    gwb, gwa = start_gateways(lab, tmp_path, "--half-open-timeout", str(HALF_OPEN_TIMEOUT),
                              "--reassembly-buffers", str(REASSEMBLY_BUFFERS))
    try:
        internet_side(lab)
        capture = Capture(lab.node("nat"), "nat-out", tmp_path / "legitimate.pcap").start()
        gwa.initiate(child="net", timeout=20)
        gwa.rekey(child="net")  # a CREATE_CHILD_SA request to replay later
        deadline = time.monotonic() + 20
        while len([c for sa in gwb.raw_sas() for c in sa["children"] if c["state"] == "INSTALLED"]) != 1:
            assert time.monotonic() < deadline, gwb.raw_sas()
            time.sleep(0.2)
        time.sleep(1.0)  # the old CHILD SA goes
        assert ping(lab, "hosta", HOSTB, count=5, interval=0.1) == 5
        capture.stop()
        (ike,) = gwb.raw_sas()
        (child,) = [c for c in ike["children"] if c["state"] == "INSTALLED"]
        before = gwb.counters()
        pinger = lab.node("hosta").popen(["ping", "-n", "-c", "400", "-i", "0.02", "-W", "2", HOSTB],
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        sent = attack(lab.node("nat"), "hostile", "--target", GWB_PUBLIC, "--source", "198.51.100.1",
                      "--ike-spis", f"{ike['spi_i']}:{ike['spi_r']}", "--esp-spi", child["spi_in"],
                      "--replay", str(tmp_path / "legitimate.pcap"), "--rounds", str(ROUNDS))
        fragments = attack(lab.node("nat"), "fragments", "--target", GWB_PUBLIC, "--sources", ",".join(ATTACKERS),
                           "--per-source", "3")
        stats = gwb.ctl("stats")["stats"]  # before the attackers' half-open SAs time out
        out, _ = pinger.communicate(timeout=60)
        after = gwb.counters()

        # the tunnel carried every ping while it all happened
        assert re.search(r"400 packets transmitted, 400 received", out), out

        # each kind of attack was dropped and counted, each by the number of its packets
        d = {key: delta(after, before, key) for key in set(after) | set(before)}
        print("sent", json.dumps({k: v for k, v in sent.items() if k != "forged_request_ids"}), json.dumps(fragments),
              "\ncounted",
              json.dumps({k: v for k, v in sorted(d.items()) if v}))
        assert sent["oversized"] == 2 * ROUNDS
        assert d.get("drop:oversized datagram") == sent["oversized"], d
        assert d.get("drop:malformed") == sent["ike_garbage"] + sent["ike_truncated"] + sent["ike_malformed"], d
        assert d.get("drop:unknown IKE SPI") == sent["ike_unknown_spis"], d
        assert d.get("drop:unexpected response with message ID N") == sent["ike_forged_response"], d
        # the IKE SA's next request from gwa: one past the last one captured (RFC 7296 §2.2)
        replayed = sent["replayed_requests"]
        expected_id = max(message_id for _exchange, message_id in replayed) + 1
        forged_ids = sent["forged_request_ids"]
        assert expected_id in forged_ids and expected_id - 1 in forged_ids and expected_id != sent["fragment_forged_id"]
        # forged requests at the expected ID and at the last one (a retransmission, answered only if
        # authentic) fail the ICV; the others and the forged fragments are outside the window
        assert d.get("drop:integrity check failed") == sum(1 for i in forged_ids if i in (expected_id, expected_id - 1))
        old_replayed = [m for exchange, m in replayed if exchange != 34 and m < expected_id - 1]
        assert d.get("drop:request with message ID N, expected N") == (
            sum(1 for i in forged_ids if i not in (expected_id, expected_id - 1)) + sent["ike_fragment_forged"]
            + len(old_replayed)), d
        assert d.get("drop:IKE_SA_INIT request of an SA past IKE_SA_INIT") == sum(
            1 for exchange, _m in replayed if exchange == 34), d
        # the replayed copies of the last request are authentic retransmissions: answered again
        assert d.get("responses_resent") == sum(1 for _e, m in replayed if m == expected_id - 1), d
        # the attackers' fragments (RFC 7383 §5): too many fragments, too large, and of the 12
        # messages never finished, those past the 4 reassembly buffers
        assert fragments["sas"] == 14 and fragments["init_refused"] == 0, fragments
        incomplete = fragments["incomplete_fragments"]
        assert len(incomplete) == 12 and fragments["too_large_fitting"] > 0
        assert d.get("drop:fragment reassembly") == (
            fragments["too_many_fragments"] + fragments["too_large_fragments"] - fragments["too_large_fitting"]
            + sum(incomplete[REASSEMBLY_BUFFERS:])), d
        assert stats["reassemblies"] == REASSEMBLY_BUFFERS and stats["half_open"] == 14, stats
        # ESP: every forged packet dropped, by its kind; nothing came in but the 400 pings
        assert d.get("esp-drop:unknown_spi") == sent["esp_unknown_spi"], d
        assert d.get("esp-drop:auth_failed") == sent["esp_bad_icv"], d
        assert d.get("esp-drop:malformed") == sent["esp_truncated"], d
        # the replayed ESP packets, and the oversized ESP (sequence number 7, long behind the window)
        assert d.get("esp-drop:replay", 0) + d.get("esp-drop:too_old", 0) == sent["esp_replayed"] + sent[
            "oversized_esp"], d
        assert d.get("esp:dropped_in") == sum(sent[k] for k in ("esp_unknown_spi", "esp_bad_icv", "esp_truncated",
                                                                "esp_replayed", "oversized_esp")), d
        assert d.get("esp:packets_in") == 400 and d.get("esp:packets_out") == 400, d

        text = lab.node("gwb").cmd(f"cd {REPO} && {sys.executable} -m lab.cli ctl --control {gwb.control_path} stats")
        for line in ("dropped, oversized datagram: ", "dropped, integrity check failed: ", "dropped, malformed: ",
                     "ESP dropped, unknown_spi: ", "ESP dropped, auth_failed: ", "dropped, fragment reassembly: "):
            assert line in text, text

        # the attackers' half-open SAs and their buffers go; the SA is the one it was
        time.sleep(HALF_OPEN_TIMEOUT + 1.5)
        stats = gwb.ctl("stats")["stats"]
        assert stats["half_open"] == 0 and stats["reassemblies"] == 0 and stats["ike_sas"] == 1
        (still,) = gwb.raw_sas()
        assert (still["spi_i"], still["spi_r"], still["state"]) == (ike["spi_i"], ike["spi_r"], "ESTABLISHED")
        assert [c["spi_in"] for c in still["children"] if c["state"] == "INSTALLED"] == [child["spi_in"]]
        assert ping(lab, "hosta", HOSTB, count=3, interval=0.1) == 3
        log = gwb.log_path.read_text()
        assert "Traceback" not in log
        assert "more like this in the last" in log  # the flood of drops was summarised
    finally:
        gwa.stop()
        gwb.stop()


COOKIE_THRESHOLD = 10
FLOOD_SECONDS = 5
FLOOD_HALF_OPEN_TIMEOUT = 3


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, in KiB: its resident memory now and at its peak."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def udp_receive_errors(node) -> int:
    """Datagrams the node's kernel dropped for a full socket receive buffer (/proc/net/snmp Udp)."""
    lines = [line.split() for line in node.cmd("cat /proc/net/snmp").splitlines() if line.startswith("Udp:")]
    return int(dict(zip(lines[0][1:], lines[1][1:]))["RcvbufErrors"])


def start_flood(lab, seconds: float, rate: float = 0):
    return lab.node("nat").popen([sys.executable, ATTACK, "flood", "--target", GWB_PUBLIC, "--sources",
                                  "203.0.113.0/24", "--seconds", str(seconds), "--rate", str(rate)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(REPO))


def flood_result(flooder) -> dict:
    stdout, stderr = flooder.communicate(timeout=30)
    assert flooder.returncode == 0, stdout + stderr
    return json.loads(stdout.strip().splitlines()[-1])


def test_half_open_flood_is_answered_with_cookies_and_strongswan_connects_meanwhile(site_to_site, tmp_path):
    """Well-formed IKE_SA_INIT from random spoofed sources: first as fast as one process sends
    them, then at the rate the daemon answered; past the threshold every request is answered with
    a COOKIE and no state (RFC 7296 §2.6), so the half-open SAs stay at the threshold; strongSwan
    (gwa, behind the NAT box) returns its cookie and connects during the flood; the daemon's
    memory stays bounded; the half-open SAs expire; the log holds summaries, not a line per
    request."""
    lab = site_to_site
    gwb, gwa = start_gateways(lab, tmp_path, "--half-open-timeout", str(FLOOD_HALF_OPEN_TIMEOUT),
                              "--cookie-threshold", str(COOKIE_THRESHOLD))
    flooder = None
    try:
        internet_side(lab)
        pid = gwb.process.pid
        rss_before, _ = rss_kib(pid)
        before = gwb.counters()
        receive_errors_before = udp_receive_errors(lab.node("gwb"))
        log_lines_before = len(gwb.log_path.read_text().splitlines())

        # 1. as fast as the generator sends: the kernel drops what the daemon cannot read
        flooder = start_flood(lab, FLOOD_SECONDS)
        half_open_seen = []
        while flooder.poll() is None:
            half_open_seen.append(gwb.ctl("stats")["stats"]["half_open"])
            time.sleep(0.5)
        full = flood_result(flooder)
        time.sleep(0.5)  # what the daemon still had queued
        middle = gwb.counters()
        answered = delta(middle, before, "messages_in")
        receive_errors = udp_receive_errors(lab.node("gwb")) - receive_errors_before
        d = {key: delta(middle, before, key) for key in set(middle) | set(before)}
        print("full-rate flood", json.dumps(full), f"answered {answered} ({answered / full['seconds']:.0f}/s),",
              f"receive buffer drops {receive_errors}, half-open seen {half_open_seen}",
              "\ncounted", json.dumps({k: v for k, v in sorted(d.items()) if v}))
        assert full["sent"] > 10000, full
        # RFC 7296 §2.6: past the threshold, no state; every later request was answered with a cookie
        assert max(half_open_seen) == COOKIE_THRESHOLD, half_open_seen
        assert d.get("cookies_sent") == answered - COOKIE_THRESHOLD and d["messages_out"] == COOKIE_THRESHOLD, d
        assert answered + receive_errors <= full["sent"], (answered, receive_errors)

        # 2. at the rate the daemon answered: strongSwan connects meanwhile, through the cookie
        rate = answered / full["seconds"]
        flooder = start_flood(lab, FLOOD_SECONDS * 2, rate=rate)
        # strongSwan starts once the flood is back at the threshold (the flooder's start takes
        # seconds on a loaded machine: a fixed sleep let strongSwan in before it, without a cookie)
        deadline = time.monotonic() + FLOOD_SECONDS
        while gwb.ctl("stats")["stats"]["half_open"] < COOKIE_THRESHOLD and time.monotonic() < deadline:
            time.sleep(0.05)
        gwa.initiate(child="net", timeout=FLOOD_SECONDS * 2)
        strongswan_up_during_flood = flooder.poll() is None
        while flooder.poll() is None:
            half_open_seen.append(gwb.ctl("stats")["stats"]["half_open"])
            time.sleep(0.5)
        paced = flood_result(flooder)
        time.sleep(0.5)
        after = gwb.counters()
        stats = gwb.ctl("stats")["stats"]
        rss_after, rss_peak = rss_kib(pid)
        log_lines = len(gwb.log_path.read_text().splitlines()) - log_lines_before
        d = {key: delta(after, middle, key) for key in set(after) | set(middle)}
        print("paced flood", json.dumps(paced), f"half-open seen {half_open_seen}",
              f"\nRSS {rss_before} KiB before, {rss_after} after, {rss_peak} peak; {log_lines} log lines",
              "\ncounted", json.dumps({k: v for k, v in sorted(d.items()) if v}))
        assert strongswan_up_during_flood, paced
        assert len(children(gwb)) == 1 and ping(lab, "hosta", HOSTB, count=3, interval=0.1) == 3
        assert "received COOKIE notify" in gwa.log_text()
        # one half-open SA more at most: strongSwan's, between its IKE_SA_INIT and IKE_AUTH
        assert max(half_open_seen) <= COOKIE_THRESHOLD + 1, half_open_seen
        assert stats["half_open"] <= COOKIE_THRESHOLD and stats["ike_sas"] <= COOKIE_THRESHOLD + 1, stats
        # every request that reached the daemon had one answer: a cookie, or (when an expired
        # half-open SA made room, and for strongSwan's) a response
        assert d["messages_in"] == d.get("cookies_sent", 0) + d["messages_out"] and d["cookies_sent"] > 0, d
        # memory: what the daemon holds does not grow with the requests
        assert rss_peak - rss_before < 40 * 1024 and rss_after - rss_before < 30 * 1024, (rss_before, rss_peak)
        # the log holds summaries ("... N more like this"), not a line per request
        requests = answered + d.get("messages_in")
        assert log_lines < 200 and requests > 50 * log_lines, (log_lines, requests)
        assert "more like this in the last" in gwb.log_path.read_text()
        # the flood's half-open SAs expire; strongSwan's SA stays
        time.sleep(FLOOD_HALF_OPEN_TIMEOUT + 1.5)
        stats = gwb.ctl("stats")["stats"]
        assert stats["half_open"] == 0 and stats["ike_sas"] == 1, stats
        assert "Traceback" not in gwb.log_path.read_text()
    finally:
        if flooder is not None and flooder.poll() is None:
            flooder.kill()
            flooder.wait()
        gwa.stop()
        gwb.stop()
