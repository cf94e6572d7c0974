"""swanctl.conf parsing: the strongSwan settings syntax, the reference configs, includes,
certificates and keys, and one clear `file:line: key: message` error per mistake."""
from __future__ import annotations

import datetime
import ipaddress
import shutil
import textwrap
from pathlib import Path

import pytest
from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lab.conf.settings import parse_settings
from lab.conf.swanctl import ConfigError, load_swanctl, parse_swanctl
from lab.ike.config import DYNAMIC, SaAction, AuthClass, ChildMode, Fragmentation, SendCert, Unique
from lab.ike.identity import Identity
from lab.ike.payloads import TrafficSelector
from lab.ike.proposals import parse_esp_proposals, parse_ike_proposal, parse_ike_proposals

DATA = Path(__file__).resolve().parent.parent / "data" / "swanctl"
P = Identity.parse
ip = ipaddress.ip_address


def net(cidr: str) -> TrafficSelector:
    n = ipaddress.ip_network(cidr)
    return TrafficSelector(n.network_address, n.broadcast_address)


def conf(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


# ---------------------------------------------------------------- the reference configs

def test_reference_responder():
    config = load_swanctl(DATA / "responder.conf")
    assert list(config.connections) == ["s2s"]
    conn = config.connections["s2s"]
    assert conn.version == 2
    assert [str(h) for h in conn.local_addrs] == ["203.0.113.2"]
    assert [str(h) for h in conn.remote_addrs] == ["%any"]
    assert conn.proposals == [parse_ike_proposal("aes128gcm16-prfsha256-x25519", 1),
                              parse_ike_proposal("aes128-sha256-modp2048", 2)]
    assert (conn.local.method, conn.local.id) == (AuthClass.PSK, P("gwb.lab"))
    assert (conn.remote.method, conn.remote.id) == (AuthClass.PSK, P("gwa.lab"))
    assert conn.mobike is True  # strongSwan's default: mobike = yes
    assert list(conn.children) == ["net"]
    child = conn.children["net"]
    assert child.local_ts == [net("10.2.0.0/24")] and child.remote_ts == [net("10.1.0.0/24")]
    assert child.esp_proposals == parse_esp_proposals("aes128gcm16, aes128-sha256")
    assert child.mode == ChildMode.TUNNEL
    assert (child.rekey_time, child.life_time, child.rand_time) == (3600, 3960, 360)
    [key] = config.secrets.ike
    assert (key.name, key.secret, key.ids) == ("ike-s2s", b"a-lab-only-psk", [P("gwa.lab"), P("gwb.lab")])
    assert config.pools == {} and config.files == [str(DATA / "responder.conf")]


def test_reference_responder_lookups():
    config = load_swanctl(DATA / "responder.conf")
    assert config.find_connection_for("203.0.113.2", "203.0.113.1").name == "s2s"
    assert config.find_connection_for("203.0.113.2", "203.0.113.1", remote_id=P("gwa.lab")).name == "s2s"
    assert config.find_connection_for("203.0.113.9", "203.0.113.1") is None
    assert config.find_connection_for("203.0.113.2", "203.0.113.1", remote_id=P("gwc.lab")) is None
    assert config.find_psk(P("gwb.lab"), P("gwa.lab")) == b"a-lab-only-psk"


def test_reference_initiator():
    config = load_swanctl(DATA / "initiator.conf")
    conn = config.connections["s2s"]
    assert conn.initiator_local_address() == ip("203.0.113.1")
    assert conn.initiator_remote_address() == ip("203.0.113.2")
    assert conn.local_identity(ip("203.0.113.1")) == P("gwa.lab")
    assert conn.remote_identity == P("gwb.lab")
    child = conn.children["net"]
    assert child.local_ts == [net("10.1.0.0/24")] and child.remote_ts == [net("10.2.0.0/24")]
    assert config.find_psk(P("gwa.lab"), P("gwb.lab")) == b"a-lab-only-psk"


def test_generated_config_of_the_interop_helper_parses():
    from lab.conf.writer import render_s2s_conf

    text = render_s2s_conf(local_addrs="203.0.113.1", remote_addrs="203.0.113.2", local_id="gwa.lab",
                           remote_id="gwb.lab", psk="lab-psk", local_ts="10.1.0.0/24", remote_ts="10.2.0.0/24",
                           proposals="aes128gcm16-prfsha256-x25519", esp_proposals="aes128gcm16")
    config = parse_swanctl(text)
    assert config.connections["s2s"].children["net"].remote_ts == [net("10.2.0.0/24")]
    assert config.find_psk(P("gwa.lab"), P("gwb.lab")) == b"lab-psk"


# ---------------------------------------------------------------- many keys at once

def test_features_conf():
    config = load_swanctl(DATA / "features.conf")
    assert list(config.connections) == ["roadwarriors", "site-b"]
    rw = config.connections["roadwarriors"]
    assert [str(h) for h in rw.local_addrs] == ["192.0.2.1"]
    assert rw.proposals == parse_ike_proposals("aes256gcm16-prfsha384-ecp384")
    assert rw.dpd_delay == 30
    assert (rw.local.method, rw.local.id) == (AuthClass.PSK, P("gw.lab"))
    assert rw.match_remote("198.51.100.200") and rw.match_remote("203.0.113.15")
    assert not rw.match_remote("203.0.113.21")
    assert (rw.rekey_time, rw.reauth_time, rw.over_time, rw.rand_time) == (7200, 86400, 600, 600)
    assert rw.pools == ["rw-v4"] and rw.fragmentation == Fragmentation.ACCEPT and rw.unique == Unique.REPLACE
    assert (rw.send_cert, rw.send_certreq, rw.encap, rw.keyingtries) == (SendCert.ALWAYS, False, True, 0)
    assert rw.remote.id == P("*@users.lab")
    lan = rw.children["lan"]
    assert lan.local_ts == [net("10.0.0.0/16"), TrafficSelector(ip("192.0.2.1"), ip("192.0.2.1"), 17, 53, 53)]
    assert lan.remote_ts == [DYNAMIC]
    assert lan.esp_proposals == parse_esp_proposals("aes256gcm16-esn-noesn, default")
    assert lan.mode == ChildMode.TRANSPORT
    assert (lan.rekey_time, lan.life_time, lan.rand_time) == (1200, 1800, 600)
    assert (lan.start_action, lan.close_action, lan.dpd_action) == (SaAction.TRAP, SaAction.START, SaAction.START)
    assert (lan.replay_window, lan.copy_df, lan.rekey_bytes, lan.life_bytes) == (128, False, 1000000, 1100000)

    site = config.connections["site-b"]
    assert site.local.method == AuthClass.PSK
    assert str(site.local.id) == "C=CH, O=Lab, CN=gw.lab"
    assert str(site.remote.id) == "C=CH, O=Lab, CN=*"
    assert site.children["net"].local_ts == [net("10.0.1.0/24")]

    secrets = {k.name: k for k in config.secrets.ike}
    assert secrets["ike-users"].secret == b"lab-only" == secrets["ike-site-b"].secret
    assert secrets["ike-quoted"].secret == b'a "quoted" secret # not a comment'
    assert config.find_psk(P("gw.lab"), P("alice@users.lab")) == b"lab-only"
    assert config.pools["rw-v4"].dns == [ip("10.0.0.53"), ip("10.0.0.54")]
    assert (config.pools["rw-range"].first, config.pools["rw-range"].last) == (ip("10.4.0.10"), ip("10.4.0.20"))
    assert config.find_connection_for("192.0.2.1", "203.0.113.2").name == "site-b"
    assert config.find_connection_for("192.0.2.1", "198.51.100.5", remote_id=P("bob@users.lab")).name == "roadwarriors"
    assert config.find_connection_for("192.0.2.1", "203.0.113.2",
                                      remote_id=P("C=CH, O=Lab, CN=site-b.lab")).name == "site-b"


def test_ipv6_virtual_ips_and_pools():
    """vips = 0.0.0.0, :: asks for one of each family; pools take IPv6 subnets and ranges, a subnet
    without its network and last address as strongSwan's mem_pool.c."""
    config = parse_swanctl(conf("""
        connections {
          rw {
            vips = 0.0.0.0, ::
            pools = v4, v6, v6range
            local { auth = psk }
            remote { auth = psk }
          }
        }
        secrets { ike { secret = s } }
        pools {
          v4 { addrs = 10.3.0.0/24 }
          v6 {
            addrs = fd00:10::/120
            dns = fd00:2::53
          }
          v6range { addrs = fd00:11::10-fd00:11::1f }
        }"""))
    assert config.connections["rw"].vips == ["0.0.0.0", "::"]
    v6, v6range = config.pools["v6"], config.pools["v6range"]
    assert (v6.first, v6.last, v6.size, v6.dns) == (ip("fd00:10::1"), ip("fd00:10::fe"), 254, [ip("fd00:2::53")])
    assert (v6range.first, v6range.last, v6range.size) == (ip("fd00:11::10"), ip("fd00:11::1f"), 16)


# ---------------------------------------------------------------- settings syntax

def test_settings_syntax_details():
    root, files = parse_settings(conf('''
        a = b   c    # values keep single spaces between words
        quoted = "x  y\\t\\"z\\" # in a string"
        multi = "one
        two"
        cont = "joined \\
        line"
        empty =
        s1 { k = v }
        s2
        {
          k = 1
          k = 2
        }
        s1 { other = w }
        include = not an include
    '''))
    assert files == ["swanctl.conf"]
    values = {k: s.value for k, s in root.settings.items()}
    assert values == {"a": "b c", "quoted": 'x  y\t"z" # in a string', "multi": "one\ntwo",
                      "cont": "joined line", "empty": None, "include": "not an include"}
    assert root.settings["cont"].line == 5 and root.settings["empty"].line == 7
    assert {k: s.value for k, s in root.sections["s1"].settings.items()} == {"k": "v", "other": "w"}
    assert root.sections["s2"].settings["k"].value == "2" and root.sections["s2"].settings["k"].line == 12
    assert root.sections["s2"].line == 9


def test_empty_assignment_means_default():
    config = parse_swanctl(conf('''
        connections {
          c {
            rekey_time =
            children { x { mode = } }
            local { auth = psk }
            remote { auth = psk }
          }
        }
        secrets { ike { secret = s } }
    '''))
    assert config.connections["c"].rekey_time == 14400
    assert config.connections["c"].children["x"].mode == ChildMode.TUNNEL


def test_includes_relative_glob_and_inside_sections():
    config = load_swanctl(DATA / "include" / "swanctl.conf")
    base = DATA / "include"
    assert config.files == [str(base / "swanctl.conf"), str(base / "conf.d" / "10-s2s.conf"),
                            str(base / "conf.d" / "20-override.conf"), str(base / "extra" / "auth.conf"),
                            str(base / "secrets.conf")]
    assert list(config.connections) == ["s2s", "extra"]
    assert [str(h) for h in config.connections["s2s"].remote_addrs] == ["203.0.113.3"]
    extra = config.connections["extra"]
    assert (extra.local.method, extra.local.id, extra.remote.id) == (AuthClass.PSK, P("gwa.lab"), None)
    assert config.find_psk(P("gwa.lab"), P("anyone.example")) == b"shared-by-everyone"


def test_errors_in_included_files_name_that_file(tmp_path):
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "bad.conf").write_text("connections {\n  c {\n    rekey_time = soon\n  }\n}\n")
    (tmp_path / "swanctl.conf").write_text("# main\ninclude conf.d/*.conf\n")
    with pytest.raises(ConfigError) as info:
        load_swanctl(tmp_path / "swanctl.conf")
    assert str(info.value).startswith(f"{tmp_path}/conf.d/bad.conf:3: connections.c.rekey_time: 'soon' is not a time")
    assert (info.value.file, info.value.line, info.value.key) == (str(tmp_path / "conf.d" / "bad.conf"), 3,
                                                                  "connections.c.rekey_time")


def test_include_of_a_missing_file_and_include_loops(tmp_path):
    (tmp_path / "swanctl.conf").write_text("\n\ninclude missing.conf\n")
    with pytest.raises(ConfigError, match=r"swanctl.conf:3: include: file 'missing.conf' not found"):
        load_swanctl(tmp_path / "swanctl.conf")
    (tmp_path / "loop.conf").write_text("include loop.conf\n")
    with pytest.raises(ConfigError, match=r"loop.conf:1: includes nested deeper than 10 levels"):
        load_swanctl(tmp_path / "loop.conf")


def test_section_references_loop_and_missing_target():
    with pytest.raises(ConfigError, match=r"swanctl.conf:2: connections.a: section reference 'nowhere' names no"):
        parse_swanctl("connections {\n  a : nowhere {\n  }\n}\n")
    with pytest.raises(ConfigError, match=r"section reference 'connections.a' makes a loop"):
        parse_swanctl("connections {\n  a : connections.b {\n  }\n  b : connections.a {\n  }\n}\n")


# ---------------------------------------------------------------- errors: file:line: key: message

ERRORS = [
    ('''
        connections {
          s2s {
            remote_addrs = 203.0.113.2
            colour = blue
          }
        }''', 4, "connections.s2s.colour",
     ["unknown key 'colour'", "supported: version, local_addrs, remote_addrs", "proposals"]),
    ('''
        connections {
          s2s {
            encap = maybe
          }
        }''', 3, "connections.s2s.encap", ["expected yes or no, not 'maybe'"]),
    ('''
        connections {
          s2s {
            version = 2

            proposals = aes128gcm16-prfsha256-x25519, aes129-sha256-modp2048
          }
        }''', 5, "connections.s2s.proposals", ["unknown algorithm 'aes129'", "Known keywords are", "aes128"]),
    ('''
        connections {
          s2s {
            proposals = aes256gcm16-prfsha384-x25519-ke1_mlkemm768-ke2_ecp384
          }
        }''', 3, "connections.s2s.proposals", ["unknown algorithm 'ke1_mlkemm768'", "did you mean 'ke1_mlkem768'"]),
    ('''
        connections {
          s2s {
            children {
              net {
                esp_proposals = aes256gcm16-x25519-ke1_mlkem512
              }
            }
          }
        }''', 5, "connections.s2s.children.net.esp_proposals", ["ke1_mlkem512 is not implemented"]),
    # RFC 9370 §2.2.4: additional key exchanges follow the KE of CREATE_CHILD_SA, so one must be there
    ('''
        connections {
          s2s {
            children {
              net {
                esp_proposals = aes256gcm16-ke1_mlkem768
              }
            }
          }
        }''', 5, "connections.s2s.children.net.esp_proposals",
     ["ke1_mlkem768 needs a key exchange method", "'aes256gcm16-x25519-ke1_mlkem768'", "RFC 9370 §2.2.4"]),
    ('''
        connections {
          s2s {
            mobike = perhaps
          }
        }''', 3, "connections.s2s.mobike", ["expected yes or no", "perhaps"]),
    ('''
        connections {
          s2s {
            version = 1
          }
        }''', 3, "connections.s2s.version", ["IKEv1", "not supported by ipsec-lab", "version = 2"]),
    ('''
        connections {
          s2s {
            aggressive = yes
          }
        }''', 3, "connections.s2s.aggressive", ["IKEv1 Aggressive Mode is not supported by ipsec-lab"]),
    ('''
        connections {
          s2s {
            local {
              auth = eap-mschapv2
            }
          }
        }''', 4, "connections.s2s.local.auth", ["auth = eap-mschapv2 needs a password", "secrets { eap-"]),
    ('''
        connections {
          s2s {
            local {
              auth = eap-peap
            }
          }
        }''', 4, "connections.s2s.local.auth", ["EAP method 'peap'", "not implemented by ipsec-lab",
                                                "eap-mschapv2"]),
    ('''
        connections {
          s2s {
            remote {
              auth = eap
            }
          }
        }''', 4, "connections.s2s.remote.auth", ["auth = eap on the remote side", "eap-mschapv2"]),
    ('''
        connections {
          s2s {
            local {
              auth = pubkey
              eap_id = carol
            }
          }
        }''', 5, "connections.s2s.local.eap_id", ["eap_id only applies to EAP"]),
    ('''
        connections {
          s2s {
            local {
              auth = psk
              cacerts = ca.pem
            }
          }
        }''', 5, "connections.s2s.local.cacerts", ["cacerts belongs in the remote section"]),
    ('''
        connections {
          s2s {
            local {
              auth = psk
            }
            local-2 {
              auth = eap-sim
            }
          }
        }''', 7, "connections.s2s.local-2.auth", ["EAP method 'sim'", "not implemented by ipsec-lab"]),
    ('''
        connections {
          s2s {
            children {
              net {
                esp_proposals = aes128gcm16
                ah_proposals = sha257
              }
            }
          }
        }''', 6, "connections.s2s.children.net.ah_proposals", ["unknown algorithm 'sha257'", "did you mean 'sha256'"]),
    ('''
        connections {
          s2s {
            children {
              net {
                local_ts = 10.1.0.0/24[tcp/http]
              }
            }
          }
        }''', 5, "connections.s2s.children.net.local_ts", ["service names are not supported"]),
    ('''
        connections {
          s2s {
            children {
              net {
                rekey_time = 1h
                life_time = 30m
              }
            }
          }
        }''', 6, "connections.s2s.children.net.life_time",
     ["life_time (1800) is below rekey_time (3600)"]),
    ('''
        connections {
          s2s {
            local {
              id = CNN=gwa.lab
            }
          }
        }''', 4, "connections.s2s.local.id", ["unknown RDN key 'CNN'"]),
    ('''
        secrets {
          ike-s2s {
            id = gwa.lab
          }
        }''', 2, "secrets.ike-s2s", ["has no secret", "secret = "]),
    ('''
        secrets {
          ike-s2s {
            secret = 0xnothex
          }
        }''', 3, "secrets.ike-s2s.secret", ["not hex"]),
    ('''
        secrets {
          eap-alice {
            id = alice
          }
        }''', 2, "secrets.eap-alice", ["EAP secret 'eap-alice' has no secret"]),
    ('''
        connections {
          s2s {
            local { auth = psk }
            remote { auth = psk }
          }
        }''', 3, "connections.s2s.local.auth", ["auth = psk needs a pre-shared key", "secrets"]),
    ('''
        connections {
          s2s {
            pools = rw
            local { auth = psk }
            remote { auth = psk }
          }
        }
        secrets { ike { secret = s } }
        pools {
          other { addrs = 10.3.0.0/24 }
        }''', 3, "connections.s2s.pools", ["pool 'rw' is not defined", "other"]),
    ('''
        pools {
          rw {
            dns = 10.0.0.53
          }
        }''', 2, "pools.rw", ["has no addrs"]),
    ('''
        pools {
          rw6 {
            addrs = fd00:10::20-fd00:10::1
          }
        }''', 3, "pools.rw6.addrs", ["range 'fd00:10::20-fd00:10::1' must go from a lower to a higher address"]),
    ('''
        pools {
          rw6 {
            addrs = 10.3.0.1-fd00:10::ff
          }
        }''', 3, "pools.rw6.addrs", ["of one family"]),
    ('''
        pools {
          rw6 {
            addrs = fd00:10::/129
          }
        }''', 3, "pools.rw6.addrs", ["neither a CIDR subnet", "fd00:10::/120"]),
    ('''
        connections {
          rw {
            vips = ::, fd00:10::5
          }
        }''', 3, "connections.rw.vips", ["both IPv6", "one virtual IP per family"]),
    ('''
        pools {
          rw {
            addrs = 10.3.0.0/24
            split_include = 10.0.0.0/8
          }
        }''', 4, "pools.rw.split_include", ["not supported by ipsec-lab"]),
    ('''
        connections {
          s2s {
            local {
              id = gwa.lab
            }
            remote { auth = psk }
          }
        }
        secrets { ike { secret = s } }''', 3, "connections.s2s.local.auth",
     ["auth = pubkey needs our certificate", "strongSwan's default is auth = pubkey"]),
    ('''
        connection {
          s2s {
          }
        }''', 1, "connection", ["unknown section 'connection'", "connections, secrets, pools and authorities"]),
    ('''
        connections {
          s2s {
            children {
              net {
                mode = tunnel
            }
          }
        }''', 1, "connections", ["section 'connections' opened here is never closed", "'}' is missing"]),
    ('''
        connections {
          s2s {
          }
        }
        }''', 5, None, ["unexpected '}'", "one '}' too many"]),
    ('''
        connections {
          s2s {
            remote_addrs 203.0.113.2
          }
        }''', 3, "connections.s2s.remote_addrs", ["neither a key", "remote_addrs = value"]),
    ('''
        connections {
          s2s {
            proposals = "aes128-sha256-modp2048
          }
        }''', 3, None, ["unterminated string"]),
]


@pytest.mark.parametrize("text,line,key,words", ERRORS)
def test_every_error_names_file_line_and_key(text, line, key, words):
    source = conf(text)
    with pytest.raises(ConfigError) as info:
        parse_swanctl(source)
    error = info.value
    message = str(error)
    prefix = f"swanctl.conf:{line}: {key}: " if key else f"swanctl.conf:{line}: "
    assert message.startswith(prefix), message
    assert (error.file, error.line, error.key) == ("swanctl.conf", line, key)
    for word in words:
        assert word in message, message
    assert "\n" not in message


def test_unknown_key_in_a_child_lists_the_child_keys():
    with pytest.raises(ConfigError) as info:
        parse_swanctl("connections {\n c {\n  children {\n   net {\n    remote_tss = 10.0.0.0/8\n   }\n  }\n }\n}\n")
    assert str(info.value).startswith("swanctl.conf:5: connections.c.children.net.remote_tss: unknown key")
    assert "local_ts, remote_ts, esp_proposals, ah_proposals, mode" in str(info.value)


def test_off_values_of_unsupported_keys_are_accepted():
    config = parse_swanctl(conf('''
        connections {
          c {
            aggressive = no
            mediation = no
            if_id_in = 0
            local { auth = psk }
            remote {
              auth = psk
              revocation = relaxed
            }
            children {
              x {
                ipcomp = no
                hw_offload = no
                inactivity = 0s
                policies = yes
              }
            }
          }
        }
        secrets { ike { secret = s } }
    '''))
    assert "x" in config.connections["c"].children


def test_missing_main_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_swanctl(tmp_path / "nope.conf")
    assert str(info.value).startswith(f"{tmp_path}/nope.conf: cannot read the configuration")
    assert info.value.line is None


# ---------------------------------------------------------------- certificates and keys

def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CH"), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Lab"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _issue(subject: x509.Name, key, issuer: x509.Name, issuer_key, ca: bool, san: str | None = None):
    now = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now)
               .not_valid_after(now + datetime.timedelta(days=3650))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture
def pki_dir(tmp_path):
    """A swanctl directory laid out like /etc/swanctl with pubkey.conf and a fresh CA."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _issue(_name("Lab CA"), ca_key, _name("Lab CA"), ca_key, ca=True)
    gwa_key = ec.generate_private_key(ec.SECP256R1())
    gwa = _issue(_name("gwa.lab"), gwa_key, ca.subject, ca_key, ca=False, san="gwa.lab")
    for folder in ("x509", "x509ca", "private"):
        (tmp_path / folder).mkdir()
    (tmp_path / "x509ca" / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "x509" / "gwa.pem").write_bytes(gwa.public_bytes(serialization.Encoding.DER))
    (tmp_path / "private" / "gwa.key").write_bytes(gwa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    shutil.copy(DATA / "pubkey.conf", tmp_path / "swanctl.conf")
    return tmp_path, ca, gwa, gwa_key


def test_certificates_and_keys_from_the_swanctl_folders(pki_dir):
    directory, ca, gwa, gwa_key = pki_dir
    config = load_swanctl(directory / "swanctl.conf")
    conn = config.connections["pki"]
    assert conn.local.method == AuthClass.PUBKEY and conn.local.certs == [gwa]
    assert conn.remote.cacerts == [ca]
    assert config.cacerts == [ca]
    key = config.secrets.private_key_for(gwa)
    assert key is not None and key.file == str(directory / "private" / "gwa.key")
    assert key.key.private_numbers() == gwa_key.private_numbers()
    assert config.trust_anchors(conn) == [ca]
    assert conn.local_identity() == P("gwa.lab")


def test_local_id_defaults_to_the_certificate_subject(pki_dir):
    directory, _, gwa, _ = pki_dir
    text = (directory / "swanctl.conf").read_text().replace("      id = gwa.lab\n", "")
    config = parse_swanctl(text, str(directory / "swanctl.conf"))
    assert config.connections["pki"].local_identity(ip("203.0.113.1")) == Identity.from_dn(gwa.subject)


def test_certificate_file_not_found(pki_dir):
    directory = pki_dir[0]
    (directory / "x509" / "gwa.pem").unlink()
    with pytest.raises(ConfigError) as info:
        load_swanctl(directory / "swanctl.conf")
    assert str(info.value).startswith(
        f"{directory}/swanctl.conf:7: connections.pki.local.certs: certificate file 'gwa.pem' not found "
        f"(looked for {directory}/x509/gwa.pem)")


def test_cacert_that_is_not_a_certificate(pki_dir):
    directory = pki_dir[0]
    (directory / "x509ca" / "ca.pem").write_text("hello\n")
    with pytest.raises(ConfigError, match=r"swanctl.conf:12: connections.pki.remote.cacerts: .*ca.pem' is not an "
                                          r"X.509 certificate"):
        load_swanctl(directory / "swanctl.conf")


def test_missing_private_key(pki_dir):
    directory = pki_dir[0]
    (directory / "private" / "gwa.key").unlink()
    with pytest.raises(ConfigError, match=r"swanctl.conf:6: connections.pki.local.auth: no private key for our "
                                          r"certificate \(C=CH, O=Lab, CN=gwa.lab\)"):
        load_swanctl(directory / "swanctl.conf")


def test_encrypted_private_key_needs_its_passphrase(pki_dir):
    directory, _, gwa, gwa_key = pki_dir
    (directory / "private" / "gwa.key").write_bytes(gwa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"lab-passphrase")))
    with pytest.raises(ConfigError, match=r"swanctl.conf:6: connections.pki.local.auth: private key .*gwa.key' is "
                                          r"encrypted: add secrets"):
        load_swanctl(directory / "swanctl.conf")
    with open(directory / "swanctl.conf", "a") as handle:
        handle.write('secrets {\n  private-gwa {\n    file = gwa.key\n    secret = "lab-passphrase"\n  }\n}\n')
    config = load_swanctl(directory / "swanctl.conf")
    assert config.secrets.private_key_for(gwa).key.private_numbers() == gwa_key.private_numbers()
    assert "lab-passphrase" not in repr(config.secrets)


def test_remote_pubkey_without_any_ca(pki_dir):
    directory = pki_dir[0]
    (directory / "x509ca" / "ca.pem").unlink()
    text = (directory / "swanctl.conf").read_text().replace("      cacerts = ca.pem\n", "")
    with pytest.raises(ConfigError, match=r"swanctl.conf:11: connections.pki.remote.auth: auth = pubkey needs a CA"):
        parse_swanctl(text, str(directory / "swanctl.conf"))


def test_cacerts_default_to_the_x509ca_folder(pki_dir):
    directory, ca, _, _ = pki_dir
    text = (directory / "swanctl.conf").read_text().replace("      cacerts = ca.pem\n", "")
    config = parse_swanctl(text, str(directory / "swanctl.conf"))
    conn = config.connections["pki"]
    assert conn.remote.cacerts == [] and config.trust_anchors(conn) == [ca]


# ---------------------------------------------------------------- properties

_SYNTAX = st.lists(st.sampled_from(list('ab={}#"\\\n \t:,.*-') + ["include ", "connections", "local", "children",
                                                                      "secrets", "ike", "pools", "addrs"]),
                   max_size=60).map("".join)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_SYNTAX)
def test_any_text_parses_or_raises_config_error(text):
    try:
        parse_swanctl(text.replace("include ", "include /nonexistent/"))
    except ConfigError as error:
        assert str(error).startswith("swanctl.conf:") and "\n" not in str(error)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r"), max_size=40))
def test_quoted_strings_round_trip(value):
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\t", "\\t")
    root, _ = parse_settings(f'key = "{escaped}"\nnext = 1\n')
    assert root.settings["key"].value == value
    assert root.settings["next"].line == 2 + value.count("\n")


def test_error_messages_stay_on_one_line():
    with pytest.raises(ConfigError) as info:
        parse_swanctl('connections {\n  c {\n    encap = "yes\nplease"\n  }\n}\n')
    assert str(info.value) == "swanctl.conf:3: connections.c.encap: expected yes or no, not 'yes\\nplease'"


def test_ipsec_lab_section_switches_key_export_on(tmp_path):
    # swanctl ignores sections it does not know; ours holds the key-export switch
    config = parse_swanctl("ipsec-lab {\n  export_keys = keys\n}\n", swanctl_dir=str(tmp_path))
    assert config.export_keys == str(tmp_path / "keys")
    with pytest.raises(ConfigError, match=r"swanctl.conf:2: ipsec-lab.trace: unknown key 'trace'"):
        parse_swanctl("ipsec-lab {\n  trace = x\n}\n")


def test_eap_rounds_and_secrets():
    config = parse_swanctl(textwrap.dedent('''
        connections {
          rw {
            remote_addrs = 192.0.2.1
            local-second {
              round = 2
              auth = eap-mschapv2
              eap_id = carol
            }
            local-first {
              round = 1
              auth = psk
              id = carol.lab
            }
            remote {
              auth = psk
              id = gw.lab
            }
          }
          gw {
            local { auth = psk }
            remote-1 { auth = psk }
            remote-2 {
              auth = eap-md5
              eap_id = %any
            }
          }
        }
        secrets {
          ike-1 { secret = x }
          eap-carol {
            id = carol
            secret = "carol's password"
          }
        }'''))
    rw, gw = config.connections["rw"], config.connections["gw"]
    assert [str(r.method) for r in rw.local_rounds] == ["psk", "eap-mschapv2"]
    assert str(rw.extra_local[0].eap_id) == "carol" and str(rw.local.id) == "carol.lab"
    assert [str(r.method) for r in gw.remote_rounds] == ["psk", "eap-md5"] and gw.extra_remote[0].eap_id.is_any
    assert config.find_eap(None, Identity.parse("carol")) == b"carol's password"


def test_tcp_encapsulation_options():
    """ipsec-lab's own keys for RFC 9329 (strongSwan's swanctl.conf has none), like libreswan's
    enable-tcp; a wrong value names file, line and key."""
    from lab.ike.config import TcpEncap
    text = conf("""
        connections {
            a {
                remote_addrs = 192.0.2.1
                tcp = fallback
                tcp_port = 4501
                tcp_fallback_time = 5s
                local { auth = psk }
                remote { auth = psk }
            }
            b {
                remote_addrs = 192.0.2.2
                local { auth = psk }
                remote { auth = psk }
            }
        }
        secrets { ike-x { secret = a-lab-only-psk } }
    """)
    config = parse_swanctl(text, "swanctl.conf")
    a, b = config.connections["a"], config.connections["b"]
    assert (a.tcp, a.tcp_port, a.tcp_fallback_time) == (TcpEncap.FALLBACK, 4501, 5)
    assert (b.tcp, b.tcp_port, b.tcp_fallback_time) == (TcpEncap.NO, 4500, 3)
    with pytest.raises(ConfigError, match=r"swanctl.conf:4: .*tcp.*expected one of no, fallback, yes, not 'sometimes'"):
        parse_swanctl(text.replace("tcp = fallback", "tcp = sometimes"), "swanctl.conf")
    with pytest.raises(ConfigError, match=r"swanctl.conf:5: .*tcp_port.*1-65535"):
        parse_swanctl(text.replace("tcp_port = 4501", "tcp_port = 70000"), "swanctl.conf")
