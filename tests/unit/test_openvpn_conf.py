"""OpenVPN's configuration file as the lab reads it (lab.conf.openvpn): directives and their
lines, what the peer takes from them (transport, remote, port, device), the directives the lab
refuses, and the file:line errors a person gets; the library's OpenVPN files all read."""
from __future__ import annotations

from pathlib import Path

import pytest

from lab.conf.openvpn import config_lines, read
from lab.conf.swanctl import ConfigError
from lab.net import scenario as sc
from lab.net.fields import ScenarioError
from lab.net.software import SOFTWARE

ROOT = Path(__file__).resolve().parents[2]
GWE = ROOT / "scenarios" / "compare-site-to-site" / "hosts" / "gwe"


def text() -> str:
    return (GWE / "openvpn.conf").read_text()


def test_reads_what_the_peer_needs():
    config = read(text(), "gwe/openvpn.conf", GWE)
    assert (config.transport, config.remote, config.local_port, config.device) == (
        "udp", ("198.51.100.4", 1194), 1194, "tun")
    assert config.get("data-ciphers").args == ["AES-256-GCM"] and config.get("ca").line == 10
    assert config_lines(text()) == 15
    tcp = read(text().replace("proto udp", "proto tcp-client").replace("port 1194\n", "nobind\n"), "x", GWE)
    assert (tcp.transport, tcp.local_port) == ("tcp", 0)


@pytest.mark.parametrize("old, new, line, key, words", [
    ("proto udp", "proto udp6", 4, "proto", "must be one of udp"),
    ("remote 198.51.100.4 1194", "remote vpn.example.com 1194", 6, "remote", "resolves no names"),
    ("remote 198.51.100.4 1194", "remote 198.51.100.4 99999", 6, "remote", "port number"),
    ("key private/gwe.key", "key private/missing.key", 12, "key", "is not in"),
    ("keepalive 10 60", "daemon", 16, "daemon", "foreground"),
    ("keepalive 10 60", "up /etc/openvpn/up.sh", 16, "up", "scripts would run"),
    ("keepalive 10 60", "management 127.0.0.1 7505", 16, "management", "management socket"),
    ("dev tun", "dev tap", 3, "dev", "tun device"),
    ("remote 198.51.100.4 1194", "remote 198.51.100.4 '1194", 6, None, "cannot split"),
])
def test_mistakes_name_file_line_and_directive(old, new, line, key, words):
    with pytest.raises(ConfigError) as err:
        read(text().replace(old, new), "gwe/openvpn.conf", GWE)
    assert (err.value.file, err.value.line, err.value.key) == ("gwe/openvpn.conf", line, key)
    assert words in str(err.value)


def test_tls_needs_its_files_and_a_device_is_needed():
    with pytest.raises(ConfigError, match="TLS needs `cert`"):
        read(text().replace("cert x509/gwe.pem\n", ""), "x", GWE)
    with pytest.raises(ConfigError, match="no `dev` line"):
        read(text().replace("dev tun\n", ""), "x", GWE)
    with pytest.raises(ConfigError, match="never closed"):
        read(text() + "<ca>\nMIIB\n", "x", GWE)
    assert read(text().replace("ca x509ca/ca.pem", "<ca>\nMIIB...\n</ca>"), "x", GWE).get("ca").args == ["[inline]"]


def test_the_scenario_reader_reports_a_bad_file_with_its_line(tmp_path):
    for item in GWE.iterdir():
        target = tmp_path / item.name
        if item.is_dir():
            target.mkdir()
            for f in item.iterdir():
                (target / f.name).write_bytes(f.read_bytes())
    (tmp_path / "openvpn.conf").write_text(text().replace("proto udp", "proto icmp"))
    with pytest.raises(ScenarioError) as err:
        SOFTWARE["openvpn"].check_config(tmp_path / "openvpn.conf")
    assert (err.value.line, err.value.field) == (4, "proto")


def test_every_library_openvpn_file_reads():
    found = 0
    for folder in sc.library():
        for node, software in sc.load(folder.name).gateways.items():
            if software == "openvpn":
                read((folder / "hosts" / node / "openvpn.conf").read_text(), node, folder / "hosts" / node)
                found += 1
    assert found >= 4
