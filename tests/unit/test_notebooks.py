"""Every notebook runs top to bottom unattended (no root) and produces its figures."""
from __future__ import annotations

import os
import struct
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"


def run_notebook(path: Path, out: Path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(str(path), as_version=4)
    env_before = os.environ.get("IPSEC_LAB_NOTEBOOK_OUT")
    os.environ["IPSEC_LAB_NOTEBOOK_OUT"] = str(out)
    try:
        started = time.monotonic()
        # a cell that takes longer than 2 minutes fails the test
        nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                                resources={"metadata": {"path": str(ROOT)}}).execute()
        print(f"{path.name}: {time.monotonic() - started:.1f} s")
    finally:
        if env_before is None:
            os.environ.pop("IPSEC_LAB_NOTEBOOK_OUT", None)
        else:
            os.environ["IPSEC_LAB_NOTEBOOK_OUT"] = env_before
    return notebook


def text_of(notebook) -> str:
    return "\n".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.outputs)


def test_01_handshake_in_memory(tmp_path):
    notebook = run_notebook(NOTEBOOKS / "01-handshake-in-memory.ipynb", tmp_path)
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    text = text_of(notebook)
    assert "gives the same seven keys: True" in text and "same packet: True" in text
    assert "decrypted with SK_ei/SK_ai, the ICV verified" in text and "N(REKEY_SA)" in text
    # the hybrid X25519 + ML-KEM-768 section (RFC 9370): the table, the ML-KEM payloads, the key update, IntAuth
    assert "7 datagrams, 3638 octets of IP" in text and "round trips until the tunnel is up: classical 2 | hybrid 3" in text
    assert "IKE_SA_INIT request 258 octets here, 274 in the hybrid one" in text
    assert "unfragmented (fragment_size 1500), the IKE_INTERMEDIATE request is 1281 octets of IP" in text
    assert " 3 IKE_INTERMEDIATE request  gwa -> gwb  1280  1248     0  SKF{ ... } (part of the message)" in text
    assert " 5 IKE_INTERMEDIATE response gwb -> gwa  1185  1153     0  SK{ KE }" in text
    assert " 6 IKE_AUTH         request  gwa -> gwb   275   243     1  SK{ IDi IDr AUTH" in text
    assert "KE group MLKEM_768 (36), 1184 octets, the ML-KEM encapsulation key (initiator)" in text
    assert "KE group MLKEM_768 (36), 1088 octets, the ML-KEM ciphertext (responder)" in text
    assert text.count("(36 octets)  same on gwb: True") == 2 and "(48 octets), same on gwb: True" in text
    assert "sk_d   changed: True" in text and "sk_ei  changed: True" in text
    assert "the CHILD SA keys come from SK_d of key set 0: False" in text
    assert "the CHILD SA keys come from SK_d of key set 1: True" in text
    assert "AUTH covers 100 octets of IntAuth" in text
    images = sum(1 for c in notebook.cells if c.cell_type == "code" for o in c.outputs
                 if o.output_type == "display_data" and "image/png" in o.get("data", {}))
    assert images == 3
    for name in ("ladder", "rekey", "headers"):
        png = tmp_path / f"{name}.png"
        assert png.exists() and (tmp_path / f"{name}.svg").exists()
        assert struct.unpack(">I", png.read_bytes()[16:20])[0] == 1920
    assert (tmp_path / "handshake.pcap").exists() and (tmp_path / "keys" / "esp_sa").exists()


def test_table_columns_line_up():
    """lab.net.notebook.table: every column as wide as its widest cell (a long row name does not
    push its row out of line), numbers right-aligned, text left-aligned."""
    from lab.net.notebook import table

    text = table(["form", "octets added", "largest inner packet"],
                 [["ESP tunnel, AES-GCM-128", "54-57", 1446], ["OpenConnect over TLS, AES-256-GCM", "82", 1418]])
    header, rule, *rows = text.splitlines()
    assert rule == "-" * 33 + "  " + "-" * 12 + "  " + "-" * 20
    assert header.index("octets added") == 35 and header.index("largest") == 49
    assert rows == ["ESP tunnel, AES-GCM-128                   54-57                  1446",
                    "OpenConnect over TLS, AES-256-GCM            82                  1418"]
    assert table(["vpn", "file"], [["IPsec", "swanctl.conf"], ["WireGuard", "wg.conf"]]).splitlines()[2:] == [
        "IPsec      swanctl.conf", "WireGuard  wg.conf"]


def test_run_without_figures(monkeypatch, tmp_path):
    """`ipsec-lab run --no-figures` and run_scenario(figures=False): the run folder without its
    figures (notebook 09 reads only the results of two of its three runs)."""
    from types import SimpleNamespace

    from lab import cli
    from lab.net import notebook, runner, scenario, world

    drawn: list = []
    monkeypatch.setattr(cli, "_draw_figures", drawn.append)
    monkeypatch.setattr(cli, "_audit_run", lambda out: None)
    monkeypatch.setattr(scenario, "load", lambda name: name)
    monkeypatch.setattr(runner, "run", lambda s, out, progress, **kw: SimpleNamespace(out=out, interrupted=None))
    monkeypatch.setattr(world, "own", lambda out: None)
    assert cli.build_parser().parse_args(["run", "net2net", "--no-figures"]).no_figures
    assert not cli.build_parser().parse_args(["run", "net2net"]).no_figures
    cli._run_one("net2net", tmp_path, figures=False)
    assert drawn == []
    cli._run_one("net2net", tmp_path)
    assert drawn == [tmp_path]

    options: list = []
    monkeypatch.delenv(world.HOST, raising=False)
    monkeypatch.delenv("IPSEC_LAB_NOTEBOOK_REUSE", raising=False)
    monkeypatch.setattr(world, "inside", lambda: False)
    monkeypatch.setattr(world, "unavailable", lambda: None)
    monkeypatch.setattr(notebook, "_run_in_world", lambda folder, label, target, quiet, opts: options.append(opts))
    notebook.run_scenario("net2net", out=tmp_path / "a", figures=False)
    notebook.run_scenario("net2net", out=tmp_path / "b")
    assert options == [["--no-figures"], []]
