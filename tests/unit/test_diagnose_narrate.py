"""diagnose, narration and the live reader on kept run folders (tests/data/runs, made by
tests/data/make_runs.py from real runs): no root."""
from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab.viz.analysis import analyze_capture, match_nat
from lab.viz.diagnose import DiagnoseError, diagnose
from lab.viz.keys import load_keys
from lab.viz.live import LiveKeys, LiveTap, NatMatcher, PcapStream, PcapTail
from lab.viz.narrate import narrate_run

ROOT = Path(__file__).resolve().parents[2]
RUNS = ROOT / "tests" / "data" / "runs"
sys.path.insert(0, str(ROOT))
from tests.scenarios.mistakes import MISTAKES  # noqa: E402
from tests.scenarios.variants import VARIANTS  # noqa: E402

KEPT = sorted(p.name for p in RUNS.iterdir() if p.is_dir() and p.name != "net2net-nat")


@pytest.mark.parametrize("name", KEPT)
def test_diagnose_kept_failed_runs(name):
    variant = next(v for v in [*VARIANTS, *MISTAKES] if v.name == name)
    found = diagnose(RUNS / name)
    assert found.cause == variant.cause, found.text()
    for words in variant.words:
        assert words in found.paragraph, f"{words!r} not in {found.paragraph}"
    said = " ".join([found.title, found.paragraph, *found.evidence])
    for words in variant.never:
        assert words not in said, f"{words!r} said in {found.text()}"
    result = json.loads((RUNS / name / "result.json").read_text())
    first = next(s for s in result["steps"] if not s["ok"] and not s["skipped"])
    assert found.step == first["index"]


def test_diagnose_reads_what_each_side_offered():
    text = diagnose(RUNS / "ike-proposal").paragraph
    assert "gwa offered IKE aes256-sha384-ecp384 (proposals in hosts/gwa/swanctl.conf:6)" in text
    assert "gwb accepts only aes128gcm16-prfsha256-x25519 (proposals in hosts/gwb/swanctl.conf:6)" in text
    assert "gwb (strongSwan) refused gwa's IKE_SA_INIT request with NO_PROPOSAL_CHOSEN" in text
    assert "logged why: “received proposals unacceptable”" in text


def test_diagnose_passing_run_and_not_a_run(tmp_path):
    assert diagnose(RUNS / "net2net-nat").cause == "passed"
    with pytest.raises(DiagnoseError, match="not a run folder"):
        diagnose(tmp_path)
    (tmp_path / "result.json").write_text('{"running": true}\n')
    with pytest.raises(DiagnoseError, match="has not finished"):
        diagnose(tmp_path)
    said = subprocess.run([sys.executable, "-m", "lab.cli", "diagnose", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True)
    assert said.returncode == 2 and "Traceback" not in said.stderr and "has not finished" in said.stderr


def test_diagnose_without_captures_still_reads_the_logs(tmp_path):
    run = tmp_path / "selector"
    shutil.copytree(RUNS / "selector", run)
    shutil.rmtree(run / "captures")
    found = diagnose(run)
    assert found.cause == "ts-mismatch" and "10.9.0.0/24" in found.paragraph


def test_diagnose_json(tmp_path):
    said = subprocess.run([sys.executable, "-m", "lab.cli", "diagnose", "--json", str(RUNS / "nat-expiry")],
                          cwd=ROOT, capture_output=True, text=True)
    data = json.loads(said.stdout)
    assert data["cause"] == "nat-mapping-expired" and data["step"] == 5 and data["evidence"]


def test_narrate_run_tells_the_default_scenario():
    told = {step.index: " ".join(lines) for step, lines in narrate_run(RUNS / "net2net-nat")}
    assert "gwa starts IKE_SA_INIT from 172.16.0.2:500 to 198.51.100.2:500, offering IKE " \
           "aes128gcm16-prfsha256-x25519" in told[2]
    assert "gwb (strongSwan) chose IKE AES_GCM_16_128/PRF_HMAC_SHA2_256/CURVE_25519" in told[2]
    assert "NAT detection at gwa: gwa is behind a NAT" in told[2]
    assert "The NAT box rewrote IKE on its way out: src 172.16.0.2:4500 -> 198.51.100.1:4500" in told[2]
    assert re.search(r"prf\+ gives SK_d 32, SK_ei/SK_er 20, no SK_ai/SK_ar", told[2])
    spi_out = re.search(r"gwa receives on SPI (\w+) and sends on SPI (\w+)", told[2]).group(2)
    assert f"ESP in UDP SPI {spi_out} (net) towards gwb: 5 on nat-inside, 5 on nat-outside" in told[5]
    new_out = re.search(r"from now on gwa sends on SPI (\w+)", told[6]).group(1)
    assert new_out != spi_out and f"SPI {new_out} (net) towards gwb: 3 on nat-inside" in told[9]
    assert "rekeying the IKE SA" in told[7]
    assert not told.get(3) and not told.get(4)  # checks: nothing happened on the wire


def test_narrate_failed_run_says_why():
    told = " ".join(" ".join(lines) for _step, lines in narrate_run(RUNS / "wrong-psk"))
    assert "the peer refused its authentication - peer answered AUTHENTICATION_FAILED" in told
    assert "does not match its pre-shared key" in told


def _chunks(data: bytes, seed: int):
    rng = random.Random(seed)
    i = 0
    while i < len(data):
        n = rng.randint(1, 700)
        yield data[i:i + n]
        i += n


def test_pcap_stream_in_pieces_reads_what_the_file_reader_reads():
    path = RUNS / "net2net-nat" / "captures" / "nat-outside.pcap"
    keys = load_keys(RUNS / "net2net-nat" / "keys")
    whole = analyze_capture(path, keys)
    stream, live = PcapStream(), LiveTap("nat-outside")
    live.analyser.keys = keys
    lines = []
    for piece in _chunks(path.read_bytes(), 7):
        for _frame, stamp, ip in stream.feed(piece):
            lines.append(live.add(stamp, ip).line())
    assert lines == [p.line() for p in whole.packets]
    assert any("tunnel: ICMP echo request 10.1.0.10 > 10.2.0.10" in line for line in lines)


def test_pcap_tail_follows_a_growing_file_and_keys_that_appear_later(tmp_path):
    source = (RUNS / "net2net-nat" / "captures" / "nat-inside.pcap").read_bytes()
    growing = tmp_path / "tap.pcap"
    keys_dir = tmp_path / "nodes" / "gwa" / "keys"
    live_keys = LiveKeys([], [(tmp_path, "nodes/*/keys")])
    tap = LiveTap("nat-inside", live_keys)
    tail = PcapTail(growing)
    lines = []
    half = len(source) // 3
    growing.write_bytes(source[:half])
    lines += [tap.add(stamp, ip).line() for _f, stamp, ip in tail.read()]
    assert not any("SK{" in line for line in lines)  # no keys yet
    keys_dir.mkdir(parents=True)
    for table in ("ikev2_decryption_table", "esp_sa"):
        shutil.copy2(RUNS / "net2net-nat" / "keys" / table, keys_dir / table)
    with open(growing, "ab") as handle:
        handle.write(source[half:])
    lines += [tap.add(stamp, ip).line() for _f, stamp, ip in tail.read()]
    assert len(lines) == len(analyze_capture(RUNS / "net2net-nat" / "captures" / "nat-inside.pcap").packets)
    assert any("CREATE_CHILD_SA request" in line and "SK{ N(REKEY_SA)" in line for line in lines)
    assert any("ESP in UDP" in line and "ICMP echo reply" in line for line in lines)


def test_nat_matcher_finds_the_rewrites_match_nat_finds():
    keys = load_keys(RUNS / "net2net-nat" / "keys")
    inside = analyze_capture(RUNS / "net2net-nat" / "captures" / "nat-inside.pcap", keys)
    outside = analyze_capture(RUNS / "net2net-nat" / "captures" / "nat-outside.pcap", keys)
    pairs = match_nat(inside, outside)
    matcher = NatMatcher()
    found = []
    for tap, packet in sorted([("in", p) for p in inside.packets if p.src] + [("out", p) for p in outside.packets
                                                                              if p.src], key=lambda x: x[1].time):
        rewrite = matcher.add(tap, packet)
        if rewrite:
            found.append(rewrite)
    assert len(found) == len(pairs) > 20
    assert any(r.startswith("src 172.16.0.2:4500 -> 198.51.100.1:4500") for r in found)
    assert any(r.startswith("dst 198.51.100.1:4500 -> 172.16.0.2:4500") for r in found)
