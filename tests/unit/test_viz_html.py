"""report.html from the kept run folders (tests/data/runs), without a lab or a browser: what the
page carries against the captures, the byte ranges against the lab's own crypto, that the page
loads nothing from elsewhere, and `ipsec-lab pack`."""
from __future__ import annotations

import base64
import json
import re
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest

from lab.cli import main
from lab.ike.errors import IntegrityError
from lab.ike.message import Message
from lab.viz.decode import decode_pcap
from lab.viz.html import page_data, render_html, write_report_html
from lab.viz.keys import load_keys

RUNS = Path(__file__).resolve().parent.parent / "data" / "runs"
ALL_RUNS = sorted(p.name for p in RUNS.iterdir() if (p / "result.json").is_file())


@pytest.fixture(scope="module")
def pages():
    return {name: page_data(RUNS / name) for name in ALL_RUNS}


def embedded(page: str) -> dict:
    """The data a written page carries, read back as the browser reads it."""
    match = re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S)
    assert match, "the page carries its data"
    return json.loads(match.group(1))


def embedded_text(page: str) -> str:
    return re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S).group(1)


def ike_arrows(ladder: dict) -> list[dict]:
    return [r for r in ladder["rows"] if r["type"] == "arrow" and r["kind"] == "ike"]


@pytest.mark.parametrize("name", ALL_RUNS)
def test_every_kept_run_gets_a_page_with_its_steps_checks_and_one_arrow_per_ike_message(name, pages, tmp_path):
    run = shutil.copytree(RUNS / name, tmp_path / name)
    path = write_report_html(run)
    assert path == run / "report.html"
    data = embedded(path.read_text())
    result = json.loads((run / "result.json").read_text())
    assert [s["index"] for s in data["steps"]] == [s["index"] for s in result["steps"]]
    assert [c["text"] for c in data["checks"]] == [c["text"] for c in result["checks"]]
    captured = any(decode_pcap(p) for p in (run / "captures").glob("*.pcap"))
    if not captured:  # the run failed before any IKE crossed the wire: no arrow for it
        assert not [a for ladder in data["ladders"] for a in ike_arrows(ladder)]
        return
    assert data["ladders"], "a ladder where IKE was captured"
    # the ladder of both sides of a NAT box has one arrow per message that crossed it; a ladder of
    # one capture one per message in it (counted by lab.viz.decode, which the page does not use)
    for ladder in data["ladders"]:
        captures = {side["capture"] for row in ike_arrows(ladder) for side in row["sides"]}
        counts = [len(decode_pcap(run / "captures" / f"{c}.pcap")) for c in sorted(captures)]
        if len(captures) == 2 and "both sides of the NAT box" in ladder["title"]:
            assert len(ike_arrows(ladder)) >= max(counts)
            crossed = [r for r in ike_arrows(ladder) if len(r["sides"]) == 2]
            assert len(crossed) == min(counts)
        else:
            assert len(ike_arrows(ladder)) == sum(counts)


def test_the_page_shows_the_payloads_inside_sk_decrypted_with_the_runs_keys(pages):
    ladder = pages["net2net-nat"]["ladders"][0]
    auth = next(r for r in ike_arrows(ladder) if r["label"] == "IKE_AUTH request 1")
    sk = auth["payloads"][-1]
    assert sk["name"] == "SK" and "ICV verified" in sk["opened"]
    assert [p["name"] for p in sk["inner"]][:3] == ["IDi", "IDr", "AUTH"]
    assert any(p["text"].startswith("TSi: 10.1.0.0/24") for p in sk["inner"])
    # the same message on both sides of the NAT box, with the rewrite
    inside, outside = auth["sides"]
    assert (inside["side"], outside["side"]) == ("inside the NAT box", "outside the NAT box")
    assert inside["src"].startswith("172.16.0.2:") and outside["src"].startswith("198.51.100.1:")
    assert "src 172.16.0.2:4500 -> 198.51.100.1:4500" in inside["rewrite"]


def test_without_keys_the_page_says_sk_stayed_closed(pages):
    ladder = pages["ike-proposal"]["ladders"][0]   # this run folder kept no keys/
    assert "keys/ (SK payloads and ESP stay encrypted)" in " ".join(pages["ike-proposal"]["missing"])
    assert not ladder["decrypted"]
    for row in ike_arrows(ladder):
        for side in row["sides"]:
            assert side["bytes"]["encrypted"] is None


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


def test_the_coloured_ranges_are_what_the_icv_covers_and_what_is_encrypted(pages):
    """Flip one octet: inside the authenticated range the lab's own SK code refuses the message,
    outside it (the UDP header) it still opens. The encrypted range ends where the ICV begins."""
    keys = load_keys(RUNS / "net2net-nat" / "keys")
    checked = 0
    for row in ike_arrows(pages["net2net-nat"]["ladders"][0]):
        for side in row["sides"]:
            b = side["bytes"]
            if b["encrypted"] is None:
                continue
            data = base64.b64decode(b["b64"])
            (auth_start, auth_end), (enc_start, enc_end) = b["authenticated"], b["encrypted"]
            ike_header = next(s for s in b["segments"] if s[2] == "IKE header")
            icv = next(s for s in b["segments"] if s[2] == "ICV")
            assert auth_start == ike_header[0] and enc_end == auth_end == icv[0] and icv[1] == len(data)
            # the run chose aes128gcm16: an 8-octet IV after the SK header, a 16-octet ICV (RFC 5282 §3.1)
            sk_header = next(s for s in b["segments"] if s[2] == "SK header")
            assert enc_start - sk_header[1] == 8 and icv[1] - icv[0] == 16

            def opens(octets: bytes) -> bool:
                message = Message.parse(octets[auth_start:])
                sa = keys.ike_sa(message.spi_i, message.spi_r)
                from lab.ike.protect import decrypt
                try:
                    decrypt(octets[auth_start:], message, sa.cipher(), sa.direction(message.is_initiator))
                except IntegrityError:
                    return False
                return True

            assert opens(data)
            assert not opens(_flip(data, enc_start)) and not opens(_flip(data, enc_end - 1))
            assert not opens(_flip(data, auth_start + 20))      # in the IKE header: authenticated
            assert opens(_flip(data, auth_start - 1 - (4 if row["port4500"] else 0)))  # UDP checksum: not
            checked += 1
    assert checked >= 8


def test_esp_bands_open_to_their_packets_with_the_esp_layout(pages):
    ladder = pages["net2net-nat"]["ladders"][0]
    bands = [r for r in ladder["rows"] if r["type"] == "band" and r["protocol"] == "ESP"]
    assert bands and sum(b["count"] for b in bands) == sum(len(b["packets"]) + b["more"] for b in bands)
    first = bands[0]["packets"][0]
    labels = [s[2] for s in first["bytes"]["segments"]]
    assert labels[:4] == ["IP header", "UDP", "SPI", "Seq"] and "ICV" in labels
    assert first["bytes"]["encrypted"] and first["bytes"]["authenticated"]


def test_each_step_carries_its_narration_and_each_message_its_step(pages):
    data = pages["net2net-nat"]
    assert any("NAT" in line for s in data["steps"] for line in s["narration"])
    steps = {s["index"] for s in data["steps"]}
    rows = data["ladders"][0]["rows"]
    assert all(r["step"] in steps for r in rows)
    # IKE_SA_INIT happens in step 2 (gwa initiates), the IKE rekey in step 7
    assert next(r for r in rows if r.get("label") == "IKE_SA_INIT request 0")["step"] == 2
    assert [r["step"] for r in rows if r["type"] == "arrow" and r["label"].startswith("CREATE_CHILD_SA request 0")] == [7]


def test_the_page_loads_nothing_from_elsewhere_and_its_data_cannot_close_the_script(tmp_path):
    run = shutil.copytree(RUNS / "net2net-nat", tmp_path / "run")
    result = json.loads((run / "result.json").read_text())
    result["steps"][0]["text"] = "</script><script>alert(1)</script><!--"
    (run / "result.json").write_text(json.dumps(result))
    page = write_report_html(run).read_text()
    assert page.lower().count("</script") == 2          # the data's and the code's, nothing from the step's text
    assert "<!--" not in embedded_text(page)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert not re.search(r"@import|url\(\s*['\"]?https?:|fetch\(|XMLHttpRequest|import\(", page)
    assert embedded(page)["steps"][0]["text"] == result["steps"][0]["text"]


def test_render_fills_every_placeholder(pages):
    page = render_html(pages["wrong-psk"])
    assert "/*CSS*/" not in page and "/*JS*/" not in page and "{{DATA}}" not in page and "{{TITLE}}" not in page
    assert "@media print" in page and "presenter" in page


def test_figures_run_folder_writes_report_html(tmp_path, capsys):
    run = shutil.copytree(RUNS / "selector", tmp_path / "selector")
    assert main(["figures", str(run)]) == 0
    assert (run / "report.html").is_file() and "report.html" in capsys.readouterr().out
    data = embedded((run / "report.html").read_text())
    assert data["figures"] and not any(f["file"].startswith("figures/ladder") for f in data["figures"])
    assert all(f["src"].startswith("data:image/png;base64,") for f in data["figures"])


def test_pack_makes_one_archive_with_the_runs_their_pages_and_a_readme(tmp_path, capsys):
    runs = [shutil.copytree(RUNS / name, tmp_path / name) for name in ("net2net-nat", "wrong-psk")]
    out = tmp_path / "home" / "course.tar.gz"
    assert main(["pack", *map(str, runs), "-o", str(out)]) == 0
    with tarfile.open(out) as archive:
        names = archive.getnames()
        readme = archive.extractfile("course/README.txt").read().decode()
        page = archive.extractfile("course/wrong-psk/report.html").read().decode()
    for run in runs:
        files = {f"course/{run.name}/{p.relative_to(run).as_posix()}" for p in run.rglob("*") if p.is_file()}
        assert files <= set(names)
        assert f"course/{run.name}/report.html" in names
        assert f"{run.name}/report.html" in readme
    assert "wrong-psk" in readme and "FAILED" in readme and "PASSED" in readme
    assert embedded(page)["scenario"] == "wrong-psk"
    assert not (runs[1] / "report.html").exists(), "pack leaves the run folders as they were"
    zipped = tmp_path / "course.zip"
    assert main(["pack", str(runs[0]), "-o", str(zipped)]) == 0
    assert "course/net2net-nat/report.html" in zipfile.ZipFile(zipped).namelist()


def test_pack_names_what_it_cannot_pack(tmp_path, capsys):
    assert main(["pack", str(tmp_path / "nope"), "-o", str(tmp_path / "x.tar.gz")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["pack", str(RUNS / "net2net-nat" / "captures"), "-o", str(tmp_path / "x.tar.gz")]) == 2
    assert "not a run folder" in capsys.readouterr().err
    assert main(["pack", str(RUNS / "net2net-nat"), "-o", str(tmp_path / "x.rar")]) == 2
    assert ".tar.gz, .tgz or .zip" in capsys.readouterr().err
    running = tmp_path / "running"
    running.mkdir()
    (running / "result.json").write_text('{"running": true}\n')
    assert main(["pack", str(running), "-o", str(tmp_path / "x.tar.gz")]) == 2
    assert "has not finished" in capsys.readouterr().err
    assert not list(tmp_path.glob("x.*"))


def test_the_ladder_says_which_tap_missed_packets(tmp_path):
    """A tap whose tcpdump says the kernel dropped packets (logs/tap-NAME.txt) is named above the
    ladders, with its counts; the kept runs, whose taps missed nothing, say nothing of it."""
    run = tmp_path / "net2net-nat"
    shutil.copytree(RUNS / "net2net-nat", run)
    assert page_data(run)["tap_losses"] == []
    (run / "logs" / "tap-nat-outside.txt").write_text(
        "tcpdump: listening on nat-eth1\n40 packets captured\n52 packets received by filter\n12 packets dropped by kernel\n")
    data = page_data(run)
    assert data["tap_losses"] == [{"tap": "nat-outside", "received": 52, "dropped": 12}]
    page = render_html(data)
    assert embedded(page)["tap_losses"] == data["tap_losses"]
    assert "DATA.tap_losses" in page and "dropped by kernel" in page
