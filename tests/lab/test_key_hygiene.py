"""No key material leaves a gateway that was not asked to export keys: a tunnel through the NAT
box (ping, CHILD and IKE rekeys, ctl commands, terminate) with gwa's export off and gwb's on;
every key gwb exported (SK_e*, SK_a*, ESP keys, as hex, raw or a bytes repr) is absent from every log,
trace, ctl output and file gwa's run left."""
from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

import pytest

from lab.net.gateway import OurGateway
from lab.net.sites import HOSTA, HOSTB

from .test_dataplane import children, conf, ping

pytestmark = pytest.mark.root
ROOT = Path(__file__).resolve().parents[2]


def exported_keys(keys_dir: Path) -> set[bytes]:
    keys = set()
    with open(keys_dir / "ikev2_decryption_table") as table:
        for row in csv.reader(table):
            # SPIi, SPIr, SK_ei, SK_er, "encr", SK_ai, SK_ar, "integ"
            keys.update(bytes.fromhex(row[i]) for i in (2, 3, 5, 6) if row[i])
    with open(keys_dir / "esp_sa") as table:
        for row in csv.reader(table):
            # family, src, dst, SPI, encr, 0xkey, integ, 0xkey
            keys.update(bytes.fromhex(row[i][2:]) for i in (5, 7) if row[i].startswith("0x") and len(row[i]) > 2)
    return keys


def ctl_cli(lab, daemon: OurGateway, *args: str) -> str:
    out = lab.node("gwa").cmd(f"cd {ROOT} && {sys.executable} -m lab.cli ctl --control {daemon.control_path} "
                              + " ".join(args))
    return out


def test_no_key_material_anywhere_with_export_off(site_to_site, tmp_path):
    lab = site_to_site
    gwb = OurGateway(lab.node("gwb"), tmp_path / "gwb", export_keys=True)
    gwb.write_config(conf(lab, "b", "cbc"))
    gwa = OurGateway(lab.node("gwa"), tmp_path / "gwa", export_keys=False)
    gwa.write_config(conf(lab, "a", "cbc"))
    outputs = tmp_path / "gwa" / "ctl-outputs.txt"
    gwb.start()
    gwa.start()
    try:
        assert gwa.ctl("initiate", ike="s2s", child="net", timeout=20)["ok"]
        assert ping(lab, "hosta", HOSTB, count=3) == 3
        assert gwa.ctl("rekey", child="net")["ok"]
        time.sleep(1)
        assert gwa.ctl("rekey", ike="s2s")["ok"]
        time.sleep(1)
        assert ping(lab, "hostb", HOSTA, count=3) == 3
        assert children(gwa)
        with open(outputs, "w") as out:
            for args in (("list-sas",), ("list-sas", "--json"), ("list-conns", "--json"), ("stats", "--json")):
                out.write(ctl_cli(lab, gwa, *args))
            out.write(repr(gwa.ctl("list-sas")) + repr(gwa.ctl("stats")))
        assert gwa.ctl("terminate", ike="s2s")["ok"]
        time.sleep(1)
    finally:
        gwa.stop()
        gwb.stop()
    assert not (tmp_path / "gwa" / "keys").exists()
    keys = exported_keys(gwb.keys_dir)
    # two IKE SAs (4 keys each) and two CHILD SAs (2 directions, encryption and integrity)
    assert len(keys) >= 4 * 2 + 4 * 2, keys
    files = [p for p in (tmp_path / "gwa").rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"gateway.log", "trace.jsonl", "ctl-outputs.txt"} <= names, names
    assert "ESTABLISHED" in outputs.read_text()  # the ctl outputs are there to search
    found = []
    for path in files:
        data = path.read_bytes()
        text = data.decode("latin-1").lower()
        for key in keys:
            # raw, hex, or as Python prints bytes (b'\x12...'), also inside JSON
            printed = repr(key)[2:-1]
            if key in data or key.hex() in text or any(form.encode() in data
                                                      for form in (printed, json.dumps(printed)[1:-1])):
                found.append(f"{path.relative_to(tmp_path)}: {key.hex()[:16]}...")
    assert not found, found
    # the search finds keys where they are: gwb exported them
    gwb_table = (gwb.keys_dir / "esp_sa").read_bytes().decode().lower()
    assert all(key.hex() in gwb_table or key.hex() in (gwb.keys_dir / "ikev2_decryption_table").read_text()
               for key in keys)
