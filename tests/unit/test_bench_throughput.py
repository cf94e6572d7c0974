"""bench/throughput.py's WireGuard and OpenVPN cases: compare-site-to-site's gateway files,
rewritten for the site topology, read cleanly and point at gwb and at the site LANs (the run
itself needs root and is not a test: a benchmark asserts no time)."""
from __future__ import annotations

import sys
from pathlib import Path

from lab.conf.openvpn import read as read_ovpn
from lab.conf.wgquick import read as read_wg
from lab.net.sites import GWB_PUBLIC, SITE_A_LAN, SITE_B_LAN

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import throughput


def test_wireguard_files_point_at_gwb_and_the_lans(tmp_path):
    gwa, gwb = throughput.vpn_folders("wireguard", tmp_path)
    a = read_wg((gwa / "wireguard.conf").read_text())
    b = read_wg((gwb / "wireguard.conf").read_text())
    assert a.peers[0].endpoint == (GWB_PUBLIC, 51820)
    assert SITE_B_LAN in a.peers[0].allowed_ips and SITE_A_LAN in b.peers[0].allowed_ips


def test_openvpn_files_point_at_gwb_and_the_lans(tmp_path):
    gwa, gwb = throughput.vpn_folders("openvpn", tmp_path)
    a = read_ovpn((gwa / "openvpn.conf").read_text(), folder=gwa)
    read_ovpn((gwb / "openvpn.conf").read_text(), folder=gwb)
    assert a.remote == (GWB_PUBLIC, 1194)
    assert "route 10.2.0.0 255.255.255.0" in (gwa / "openvpn.conf").read_text()
    assert "route 10.1.0.0 255.255.255.0" in (gwb / "openvpn.conf").read_text()


def test_ratios_are_ours_over_each():
    ratios = dict(throughput.ratios({"ours-ours": 100.0, "wireguard": 200.0, "openvpn": 50.0,
                                     "strongswan-strongswan": 100.0}))
    assert ratios == {"ours-ours / wireguard": 0.5, "ours-ours / openvpn": 2.0,
                      "ours-ours / strongswan-strongswan": 1.0}
