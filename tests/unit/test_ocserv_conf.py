"""OpenConnect's two files as the lab reads them (lab.conf.ocserv): ocserv.conf (the gateway's)
and openconnect.conf (the client's); what the peer takes from them, the keys the lab refuses,
the file:line errors a person gets, and the scenario reader's check of a gateway's folder."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lab.conf.ocserv import read_ocserv, read_openconnect
from lab.conf.swanctl import ConfigError
from lab.net.fields import ScenarioError
from lab.net.software import SOFTWARE

ROOT = Path(__file__).resolve().parents[2]
GWF = ROOT / "scenarios" / "compare-roaming" / "hosts" / "gwf"
GWE = ROOT / "scenarios" / "compare-roaming" / "hosts" / "gwe"


def server() -> str:
    return (GWF / "ocserv.conf").read_text()


def client() -> str:
    return (GWE / "openconnect.conf").read_text()


def test_reads_what_the_peers_need():
    s = read_ocserv(server(), "gwf/ocserv.conf", GWF)
    assert (s.tcp_port, s.udp_port, s.passwd_file) == (443, 443, "ocpasswd")
    assert s.all("route") == ["10.2.2.0/24"] and s.value("route-add-cmd") == "ip route replace %{R} dev %{D}"
    c = read_openconnect(client(), "gwe/openconnect.conf", GWE)
    assert c.server == ("198.51.100.4", 443) and c.value("user") == "carol" and c.get("cafile").line == 6
    assert read_openconnect("server 198.51.100.4:8443\nuser=carol\nno-dtls\n").server == ("198.51.100.4", 8443)


@pytest.mark.parametrize("old, new, key, words", [
    ('auth = "plain[passwd=ocpasswd]"', 'auth = "plain"', "auth", "password file"),
    ('auth = "plain[passwd=ocpasswd]"', 'auth = "plain[passwd=missing]"', "auth", "is not in"),
    ("tcp-port = 443", "tcp-port = https", "tcp-port", "port number"),
    ("server-key = private/gwf.key", "server-key = private/nope.key", "server-key", "is not in"),
    ("ipv4-network = 10.98.2.0/24", "ipv4-network = 10.98.2.0/33", "ipv4-network", "not a network"),
    ("route = 10.2.2.0/24", "route = 10.2.2/24", "route", "not a network"),
    ("dpd = 5", "socket-file = /run/ocserv.sock", "socket-file", "sockets"),
    ("dpd = 5", "connect-script = /etc/ocserv/up.sh", "connect-script", "scripts would run"),
    ("dpd = 5", "dpd 5", "dpd", "key = value"),
])
def test_ocserv_errors_name_the_line_and_the_key(old, new, key, words):
    assert old in server()
    text = server().replace(old, new)
    line = text.splitlines().index(new) + 1
    with pytest.raises(ConfigError) as err:
        read_ocserv(text, "gwf/ocserv.conf", GWF)
    assert (err.value.line, err.value.key) == (line, key) and words in err.value.reason, err.value


def test_ocserv_needs_its_keys():
    for key in ("auth", "tcp-port", "server-cert", "server-key", "ipv4-network"):
        text = "\n".join(line for line in server().splitlines() if not line.startswith(key))
        with pytest.raises(ConfigError) as err:
            read_ocserv(text, "gwf/ocserv.conf", GWF)
        assert err.value.key == key and err.value.line is None


@pytest.mark.parametrize("old, new, key, words", [
    ("server = https://198.51.100.4/", "server = https://gwf.lab/", "server", "no DNS"),
    ("cafile = x509ca/ca.pem", "cafile = x509ca/other.pem", "cafile", "is not in"),
    ("user = carol", "background", "background", "foreground"),
    ("user = carol", "script = /usr/share/vpnc-scripts/vpnc-script", "script", "tun device"),
    ("user = carol", "csd-wrapper = /tmp/x.sh", "csd-wrapper", "scripts would run"),
])
def test_openconnect_errors_name_the_line_and_the_key(old, new, key, words):
    text = client().replace(old, new)
    line = text.splitlines().index(new) + 1
    with pytest.raises(ConfigError) as err:
        read_openconnect(text, "gwe/openconnect.conf", GWE)
    assert (err.value.line, err.value.key) == (line, key) and words in err.value.reason, err.value


def test_the_registry_checks_either_file_and_the_password(tmp_path):
    software = SOFTWARE["openconnect"]
    assert software.configs == ("ocserv.conf", "openconnect.conf") and not software.ike
    software.check_config(GWF / "ocserv.conf")
    software.check_config(GWE / "openconnect.conf")
    folder = tmp_path / "gwe"
    shutil.copytree(GWE, folder)
    (folder / "password").unlink()
    with pytest.raises(ScenarioError) as err:
        software.check_config(folder / "openconnect.conf")
    assert "password" in str(err.value)
