"""WireGuard's configuration in wg-quick's format (lab.conf.wgquick): what it reads, what it
hands to `wg setconf`, the file:line errors a person gets, and the library's WireGuard files
agreeing with each other (each peer's PublicKey is the key of a gateway of the scenario)."""
from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from lab.conf.swanctl import ConfigError
from lab.conf.wgquick import config_lines, read
from lab.net import scenario as sc
from lab.net.fields import ScenarioError
from lab.net.software import SOFTWARE

ROOT = Path(__file__).resolve().parents[2]
KEY_A = "ICeCKzNU78AdDE/Z7lxh16dCrob+PFc9BKF6aOKqx0g="
PUB_B = "O2dXBgEU7MmcOLUR6oulZQ+6q/Sjz5sGDzBHh7zZ6ks="

GOOD = f"""# a comment
[Interface]
PrivateKey = {KEY_A}
ListenPort = 51820
Address = 10.99.1.1/24
MTU = 1420

[Peer]
PublicKey = {PUB_B}   # gwd
Endpoint = 198.51.100.3:51820
AllowedIPs = 10.99.1.2/32
AllowedIPs = 10.2.1.0/24
PersistentKeepalive = 25
"""


def public_key(private: str) -> str:
    key = X25519PrivateKey.from_private_bytes(base64.b64decode(private))
    return base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def test_reads_interface_and_peer():
    config = read(GOOD, "gwc/wireguard.conf")
    assert (config.private_key, config.listen_port, config.addresses, config.mtu) == (
        KEY_A, 51820, ["10.99.1.1/24"], 1420)
    [peer] = config.peers
    assert peer.public_key == PUB_B and peer.endpoint == ("198.51.100.3", 51820)
    assert peer.allowed_ips == ["10.99.1.2/32", "10.2.1.0/24"] and peer.persistent_keepalive == 25
    assert config_lines(GOOD) == 11


def test_wg_setconf_leaves_out_what_wg_quick_applies_itself():
    text = read(GOOD).wg_setconf()
    assert "Address" not in text and "MTU" not in text
    assert f"PrivateKey = {KEY_A}" in text and "AllowedIPs = 10.99.1.2/32, 10.2.1.0/24" in text
    assert "Endpoint = 198.51.100.3:51820" in text and "PersistentKeepalive = 25" in text


@pytest.mark.parametrize("change, line, key, words", [
    (("ListenPort = 51820", "ListenPort = 70000"), 4, "ListenPort", "port number"),
    (("ListenPort = 51820", "PostUp = iptables -F"), 4, "PostUp", "does not apply PostUp"),
    (("ListenPort = 51820", "DNS = 10.0.0.1"), 4, "DNS", "does not apply DNS"),
    ((f"PublicKey = {PUB_B}", "PublicKey = short"), 9, "PublicKey", "32 octets in base64"),
    (("Endpoint = 198.51.100.3:51820", "Endpoint = vpn.example.com:51820"), 10, "Endpoint", "ADDRESS:PORT"),
    (("AllowedIPs = 10.2.1.0/24", "AllowedIPs = 0.0.0.0/0"), 12, "AllowedIPs", "default route"),
    (("AllowedIPs = 10.2.1.0/24", "AllowedIPs = 10.2.1.0/33"), 12, "AllowedIPs", "not an address"),
    (("PersistentKeepalive = 25", "PersistentKeepalive = soon"), 13, "PersistentKeepalive", "seconds"),
    (("PersistentKeepalive = 25", "Keepalive = 25"), 13, "Keepalive", "unknown key in [Peer]"),
    (("[Peer]", "[Peers]"), 8, None, "unknown section"),
    (("MTU = 1420", "MTU = 1420\nMTU = 1400"), 7, "MTU", "given twice"),
])
def test_mistakes_name_file_line_and_key(change, line, key, words):
    with pytest.raises(ConfigError) as err:
        read(GOOD.replace(*change), "gwc/wireguard.conf")
    assert (err.value.file, err.value.line, err.value.key) == ("gwc/wireguard.conf", line, key)
    assert words in str(err.value)


def test_missing_private_key_and_public_key():
    with pytest.raises(ConfigError, match="needs PrivateKey"):
        read(GOOD.replace(f"PrivateKey = {KEY_A}\n", ""))
    with pytest.raises(ConfigError, match="needs PublicKey") as err:
        read(GOOD.replace(f"PublicKey = {PUB_B}   # gwd\n", ""))
    assert err.value.line == 8


def test_the_scenario_reader_reports_a_bad_file_with_its_line(tmp_path):
    conf = tmp_path / "wireguard.conf"
    conf.write_text(GOOD.replace("ListenPort = 51820", "ListenPort = zero"))
    with pytest.raises(ScenarioError) as err:
        SOFTWARE["wireguard"].check_config(conf)
    assert (err.value.line, err.value.field) == (4, "ListenPort")


def test_library_wireguard_keys_pair_up():
    """Every [Peer]'s PublicKey is the public half of another WireGuard gateway's PrivateKey in
    the same scenario (a mismatch shows in a run only as "invalid mac1" in the responder's log)."""
    found = 0
    for folder in sc.library():
        scenario = sc.load(folder.name)
        configs = {node: read((folder / "hosts" / node / "wireguard.conf").read_text())
                   for node, software in scenario.gateways.items() if software == "wireguard"}
        publics = {public_key(c.private_key): node for node, c in configs.items()}
        for node, config in configs.items():
            for peer in config.peers:
                other = publics.get(peer.public_key)
                assert other is not None and other != node, (
                    f"{folder.name}/hosts/{node}/wireguard.conf line {peer.line}: no other gateway has that key")
                found += 1
    assert found >= 2
