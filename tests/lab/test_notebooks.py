"""Notebooks 02-09 run top to bottom unattended (root: their first cells run scenarios), each
produces its figures and says what it teaches. 01 runs without root in tests/unit."""
from __future__ import annotations

import os
import re
import struct
import time
from pathlib import Path

import pytest

from .conftest import require_lab

pytestmark = pytest.mark.root
ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"

EXPECT = {
    "02-tunnel-vs-transport": (5, ["a tunnel-mode SA, so next header 4", "a transport-mode SA, so next header 1",
                                   "02-tunnel-vs-transport: passed", "02-net2net: passed", "192.0.2.10 === 192.0.2.20",
                                   "tunnel between gateways  on the wire: 192.0.2.2 -> 198.51.100.2"]),
    "03-nat-traversal": (2, ["over gwa's own 172.16.0.2:500:  ", "True", "over what gwb sees, 198.51.100.1:500:",
                             "False", "IKE on 4500: 00 00 00 00", "NAT mapping expired (keepalive interval",
                             "The NAT box rewrote IKE on its way out: src 172.16.0.2:4500 -> 198.51.100.1:4500",
                             "03-nat-keepalive-timeout-unfixed: FAILED", "keepalives from gwa"]),
    "04-rekeying": (1, ["all 60 pings came back: 'loop': 60/60 replies", "echo replies crossed the internet inside ESP", "rekeys SPI", "both installed for",
                        "new IKE SPI", "arrived intact"]),
    "05-mtu": (2, ["PMTUD black hole", "block_icmp_frag on router", "05-ike-fragmentation-unfixed: FAILED",
                   "05-ike-fragmentation: passed", "SKF{", "fragmentation = no in hosts/gwa/swanctl.conf"]),
    "06-policies": (1, ["DISCARD  (no policy matches)", "BYPASS   by 'own LAN'",
                        "gwa dropped 3 packet(s): a packet a DISCARD policy matched",
                        "in clear: ICMP echo request 10.1.0.10 > 10.2.1.10", "installed shunt",
                        "the library: {'must': 3", "internet.pcap frame", "weak-org: {'must': 7",
                        "this connection negotiates 3des-sha1-modp1024", "NO_PROPOSAL_CHOSEN"]),
    "07-site-to-site-vs-remote-access": (4, ["virtual IP 10.3.0.1", "CP SA TSi TSr",
                                             "carrying pings from 10.3.0.3", "07-mobike-roam: passed",
                                             "pings lost in the move", "N(UPDATE_SA_ADDRESSES)"]),
    "08-ah-vs-esp-null-vs-esp": (2, ["AH       after the NAT: dropped - auth_failed",
                                     "ESP-NULL after the NAT: accepted", "nothing encrypted"]),
    "09-ipsec-or-an-alternative": (4, ["09-compare-site-to-site: passed", "09-compare-roaming: passed",
                                       "09-restrictive-network: passed",
                                       "WireGuard: Handshake Initiation (176), then Handshake Response (120)",
                                       # its tables (lab.net.notebook.table): a row's cells, whatever the widths
                                       re.compile(r"IPsec \(IKEv2\) +4 +4 +995\n"),
                                       re.compile(r"ESP-in-UDP tunnel +148 +88 +64\n"),
                                       re.compile(r"WireGuard data +156 +96 +72\n"),
                                       re.compile(r"OpenVPN data +136 +84 +52\n"),
                                       re.compile(r"OpenVPN, AES-256-GCM +52 +1448\n"),
                                       re.compile(r"WireGuard +gwc +9 +gwd +7 +wireguard.conf\n"),
                                       re.compile(r"IPsec with MOBIKE +\d+ +250 "),
                                       re.compile(r"OpenVPN over TCP 443 +up after "),
                                       re.compile(r"WireGuard +2, 1 round trip +\+72 +\d+ +no\n")]),
}


def _run(path: Path, out: Path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(str(path), as_version=4)
    before = os.environ.get("IPSEC_LAB_NOTEBOOK_OUT")
    os.environ["IPSEC_LAB_NOTEBOOK_OUT"] = str(out)
    os.environ.pop("IPSEC_LAB_NOTEBOOK_REUSE", None)
    try:
        started = time.monotonic()
        nbclient.NotebookClient(notebook, timeout=900, kernel_name="python3",  # a cell runs whole scenarios: minutes on a loaded 2-core machine
                                resources={"metadata": {"path": str(ROOT)}}).execute()
        print(f"{path.name}: {time.monotonic() - started:.1f} s")
    finally:
        if before is None:
            os.environ.pop("IPSEC_LAB_NOTEBOOK_OUT", None)
        else:
            os.environ["IPSEC_LAB_NOTEBOOK_OUT"] = before
    return notebook


@pytest.mark.parametrize("name", sorted(EXPECT))
def test_notebook_runs_and_draws(name, tmp_path):
    require_lab()
    notebook = _run(NOTEBOOKS / f"{name}.ipynb", tmp_path)
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    images, words = EXPECT[name]
    for expected in words:
        found = expected.search(text) if isinstance(expected, re.Pattern) else expected in text
        assert found, f"{name}: {expected!r} not in its output:\n{text[-3000:]}"
    pngs = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.get("data", {})]
    assert len(pngs) >= images
    drawn = list(tmp_path.rglob("figures/*.png")) + [p for p in tmp_path.glob("*/*.png")]
    assert drawn and all(struct.unpack(">I", p.read_bytes()[16:20])[0] == 1920 for p in drawn)


def test_every_notebook_is_tested():
    assert {p.stem for p in NOTEBOOKS.glob("*.ipynb")} == set(EXPECT) | {"01-handshake-in-memory"}
