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

from .test_dataplane import conf, ping

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


def delta(after: dict, before: dict, key: str) -> int:
    return after.get(key, 0) - before.get(key, 0)


def test_hostile_traffic_is_dropped_and_counted_while_the_tunnel_carries_pings(site_to_site, tmp_path):
    lab = site_to_site
    gwb = OurGateway(lab.node("gwb"), tmp_path / "gwb",
                     extra_args=("--half-open-timeout", str(HALF_OPEN_TIMEOUT), "--reassembly-buffers", str(REASSEMBLY_BUFFERS)))
    gwb.write_config(conf(lab, "b"))
    gwa = StrongSwan(lab.node("gwa"), tmp_path / "gwa")
    gwa.write_config(conf(lab, "a"))
    gwb.start()
    gwa.start()
    gwa.load_all()
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
