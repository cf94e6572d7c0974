"""auth = eap-ttls in swanctl.conf: the client's round (a password, a CA for the server's
certificate, aaa_id for a server that is not the gateway) and the eap-ttls plugin's settings
(strongSwan's phase2_method, ipsec-lab's phase2_client) in the ipsec-lab section; each mistake a
file:line error."""
from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from lab.conf.swanctl import ConfigError, parse_swanctl
from lab.ike.memnet import make_pki

CLIENT = """connections {
  rw {
    remote_addrs = 192.0.2.1
    local {
      auth = eap-ttls
      id = anonymous
      eap_id = carol
      aaa_id = radius.lab
    }
    remote {
      auth = pubkey
      id = gw.lab
    }
  }
}
secrets {
  eap-carol {
    id = carol
    secret = "carol-lab-only-password"
  }
}
"""


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "x509ca").mkdir()
    (tmp_path / "x509ca" / "ca.pem").write_bytes(make_pki("ecdsa")["ca"].public_bytes(Encoding.PEM))
    return str(tmp_path)


def test_client_round_and_defaults(folder):
    config = parse_swanctl(CLIENT, swanctl_dir=folder)
    local = config.connections["rw"].local
    assert local.method == "eap-ttls" and local.method.eap_method == "ttls"
    assert str(local.aaa_id) == "radius.lab" and str(local.eap_id) == "carol" and str(local.id) == "anonymous"
    assert (config.ttls.phase2_method, config.ttls.phase2_client) == ("md5", "eap")  # strongSwan's defaults
    assert len(config.cacerts) == 1


def test_settings_are_read(folder):
    text = CLIENT + "ipsec-lab {\n  eap-ttls {\n    phase2_method = mschapv2\n    phase2_client = pap\n  }\n}\n"
    config = parse_swanctl(text, swanctl_dir=folder)
    assert (config.ttls.phase2_method, config.ttls.phase2_client) == ("mschapv2", "pap")


@pytest.mark.parametrize("extra,line,words", [
    ("ipsec-lab {\n  eap-ttls {\n    phase2_client = chap\n  }\n}\n", 3, ["expected one of eap, pap, mschapv2"]),
    ("ipsec-lab {\n  eap-ttls {\n    phase2_piggyback = yes\n  }\n}\n", 3, ["not supported by ipsec-lab"]),
    ("ipsec-lab {\n  eap-ttls {\n    colour = red\n  }\n}\n", 3, ["unknown key 'colour'", "phase2_method"]),
])
def test_mistakes_name_file_and_line(folder, extra, line, words):
    with pytest.raises(ConfigError) as info:
        parse_swanctl(CLIENT + extra, swanctl_dir=folder)
    assert info.value.line == CLIENT.count("\n") + line, str(info.value)
    for word in words:
        assert word in str(info.value)


def test_a_client_without_password_or_ca_is_told_what_to_add(folder, tmp_path):
    no_secret = CLIENT[:CLIENT.index("secrets {")]
    with pytest.raises(ConfigError, match="auth = eap-ttls needs a password"):
        parse_swanctl(no_secret, swanctl_dir=folder)
    with pytest.raises(ConfigError, match="needs a CA to check the EAP-TTLS server's certificate"):
        parse_swanctl(CLIENT, swanctl_dir=str(tmp_path / "empty"))


def test_aaa_id_only_with_a_certificate_checking_eap_method(folder):
    with pytest.raises(ConfigError, match="aaa_id names the identity in the EAP server's certificate"):
        parse_swanctl(CLIENT.replace("auth = eap-ttls", "auth = eap-mschapv2"), swanctl_dir=folder)


def test_a_strongswan_peer_gets_the_eap_ttls_section_in_its_strongswan_conf():
    from lab.net.strongswan import plugin_settings_of, render_strongswan_conf
    text = CLIENT + ("ipsec-lab {\n  export_keys = keys\n  eap-ttls {\n    phase2_method = mschapv2\n  }\n"
                     "  eap-radius {\n    servers {\n      a {\n        address = 10.9.0.2\n      }\n    }\n  }\n}\n")
    settings = plugin_settings_of(text)
    # strongSwan's names, both plugin sections (a charon gateway of radius-mfa relays to RADIUS)
    assert settings == {"eap-ttls": {"phase2_method": "mschapv2"}, "eap-radius": {"servers": {"a": {"address": "10.9.0.2"}}}}
    conf = render_strongswan_conf("/run/x.vici", "/tmp/x.log", plugin_settings=settings)
    plugins = conf[conf.index("  plugins {"):conf.index("  filelog {")]
    assert "    eap-ttls {\n      phase2_method = mschapv2\n    }\n" in plugins
    assert "eap-ttls" in conf.split("load = ", 1)[1].splitlines()[0]
    assert plugin_settings_of("connections {") == {}  # a broken file: swanctl --load-all will say why
