"""The live views (root): `ipsec-lab watch` on a lab that `ipsec-lab up` keeps open, and
`ipsec-lab run --explain` telling each step as it ends."""
from __future__ import annotations

import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from .conftest import require_lab
from .test_runner import Machine

pytestmark = pytest.mark.root
REPO = Path(__file__).resolve().parents[2]


def _lines(stream, into: queue.Queue) -> None:
    for line in iter(stream.readline, ""):
        into.put(line)
    into.put(None)


def _wait_for(lines: queue.Queue, pattern: str, timeout: float, seen: list[str]) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            continue
        if line is None:
            return False
        seen.append(line)
        if re.search(pattern, line):
            return True
    return False


def test_watch_annotates_the_packets_of_a_running_lab(tmp_path):
    require_lab()
    machine = Machine()
    up = subprocess.Popen([sys.executable, "-m", "lab.cli", "up", "net2net-nat", "--out", str(tmp_path / "up")],
                          cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    up_err: queue.Queue = queue.Queue()
    threading.Thread(target=_lines, args=(up.stderr, up_err), daemon=True).start()
    up_said: list[str] = []
    watch = None
    try:
        assert _wait_for(up_err, r"the lab is up", 90, up_said), "".join(up_said)
        watch = subprocess.Popen([sys.executable, "-m", "lab.cli", "watch", "nat:nat-in", "nat:nat-out"], cwd=REPO,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        watched: queue.Queue = queue.Queue()
        threading.Thread(target=_lines, args=(watch.stdout, watched), daemon=True).start()
        seen: list[str] = []
        assert _wait_for(watched, r"^watching nat:nat-in, nat:nat-out", 20, seen), "".join(seen) + watch.stderr.read()
        up.stdin.write("hosta ping -c 3 -i 0.2 10.2.0.10\n")
        up.stdin.write("gwa ipsec-lab ctl rekey --child net\n")
        up.stdin.write("sh sleep 2\n")
        up.stdin.flush()
        assert _wait_for(watched, r"INFORMATIONAL", 30, seen), "".join(seen)
        up.stdin.write("exit\n")
        up.stdin.flush()
        stdout, _ = up.communicate(timeout=60)
        watch.wait(timeout=20)  # it ends with the lab
        while True:
            line = watched.get(timeout=5)
            if line is None:
                break
            seen.append(line)
    finally:
        for proc in (watch, up):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    text = "".join(seen)
    print(text)
    assert up.returncode == 0, "".join(up_said) + stdout
    assert watch.returncode == 0
    # the pings, decrypted with the keys gwa wrote, on both sides of the NAT box, with the rewrite
    inside = re.findall(r"nat:nat-in .*172\.16\.0\.2:4500 -> 198\.51\.100\.2:4500 .*ESP in UDP SPI (\w+) seq \d+ "
                        r"tunnel: ICMP echo request 10\.1\.0\.10 > 10\.2\.0\.10", text)
    outside = re.findall(r"nat:nat-out .*198\.51\.100\.1:4500 -> 198\.51\.100\.2:4500 .*ESP in UDP SPI (\w+) seq \d+ "
                         r"tunnel: ICMP echo request 10\.1\.0\.10 > 10\.2\.0\.10 .*NAT: src 172\.16\.0\.2:4500 -> "
                         r"198\.51\.100\.1:4500", text)
    assert len(inside) >= 3 and len(outside) >= 3, text
    assert re.search(r"ICMP echo reply 10\.2\.0\.10 > 10\.1\.0\.10", text)
    # the rekey inside SK, decrypted with the IKE SA's keys
    assert re.search(r"CREATE_CHILD_SA request \d+ \(initiator\) \[ SK\{ N\(REKEY_SA\) SA Ni TSi TSr \} \]", text), text
    assert "the lab is down" in text
    assert machine.leftovers() == []


def test_run_explain_tells_each_step(tmp_path):
    require_lab()
    proc = subprocess.run([sys.executable, "-m", "lab.cli", "run", "net2net-nat", "--explain", "--out",
                           str(tmp_path / "run")], cwd=REPO, capture_output=True, text=True, timeout=180)
    said = " ".join(proc.stderr.split())
    print(proc.stderr)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # what was proposed and chosen
    assert "gwa starts IKE_SA_INIT from 172.16.0.2:500 to 198.51.100.2:500, offering IKE " \
           "aes128gcm16-prfsha256-x25519" in said
    assert "gwb (strongSwan) chose IKE AES_GCM_16_128/PRF_HMAC_SHA2_256/CURVE_25519" in said
    # who is behind NAT, why the port changed, and the NAT box's rewrite seen in the captures
    assert "NAT detection at gwa: gwa is behind a NAT" in said
    assert "IKE moved from UDP 500 to 4500" in said
    assert "The NAT box rewrote IKE on its way out: src 172.16.0.2:4500 -> 198.51.100.1:4500" in said
    # which keys were derived
    assert re.search(r"prf\+ gives SK_d 32, SK_ei/SK_er 20, no SK_ai/SK_ar .*SK_pi/SK_pr 32 bytes", said)
    # which SPI carries the traffic, before and after the rekey
    first = re.search(r"gwa receives on SPI (\w+) and sends on SPI (\w+)", said)
    assert first, said
    assert re.search(r"On the wire: ESP in UDP SPI %s \(net\) towards gwb: 5 on nat-inside, 5 on nat-outside"
                     % first.group(2), said), said
    rekeyed = re.search(r"from now on gwa sends on SPI (\w+)", said)
    assert rekeyed and rekeyed.group(1) != first.group(2)
    assert re.search(r"On the wire: ESP in UDP SPI %s \(net\) towards gwb: 3 on nat-inside" % rekeyed.group(1), said)
    # the sentences come after their step's line
    assert said.index("[2/11]") < said.index("NAT detection at gwa") < said.index("[3/11]")


def test_explain_says_why_packets_were_dropped(tmp_path):
    """The NAT box sends every ESP packet twice: gwa's anti-replay window drops the copies."""
    require_lab()
    sys.path.insert(0, str(REPO))
    from tests.scenarios.variants import set_steps

    import shutil

    folder = tmp_path / "dup"
    shutil.copytree(REPO / "scenarios" / "net2net-nat", folder)
    set_steps(folder, [{"start": "all"}, {"initiate": {"node": "gwa", "child": "net"}},
                       {"ping": {"from": "hosta", "to": "10.2.0.10", "count": 3}}],
              nat={"nat": {"duplicate": 1.0}})
    proc = subprocess.run([sys.executable, "-m", "lab.cli", "run", str(folder), "--explain", "--out",
                           str(tmp_path / "run")], cwd=REPO, capture_output=True, text=True, timeout=180)
    said = " ".join(proc.stderr.split())
    print(proc.stderr)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    dropped = re.search(r"gwa dropped (\d+) packet\(s\): a sequence number it had seen already \(anti-replay", said)
    assert dropped and int(dropped.group(1)) >= 3, said
