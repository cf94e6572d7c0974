"""Raw public keys (swanctl.conf pubkeys, RFC 7670): each gateway signs with the key behind its
raw public key and checks the peer's signature against the one configured for it; no
certificate, no CA. swanctl.conf reads them from pubkey/ and names mistakes by file:line."""
from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from lab.conf.swanctl import ConfigError, load_swanctl
from lab.ike import events as ev
from lab.ike.config import AuthConfig, PrivateKey, Secrets
from lab.ike.identity import Identity

from .ike_net import make_net, pair_configs
from .test_ike_exchanges import assert_consistent, connect


def _raw_configs(wrong_key_for_a: bool = False):
    keys = {me: ec.generate_private_key(ec.SECP256R1()) for me in ("gwa.lab", "gwb.lab")}
    a, b = pair_configs()
    for config, me, peer in ((a, "gwa.lab", "gwb.lab"), (b, "gwb.lab", "gwa.lab")):
        conn = config.connections["s2s"]
        trusted = keys[peer].public_key()
        if wrong_key_for_a and peer == "gwa.lab":
            trusted = ec.generate_private_key(ec.SECP256R1()).public_key()
        conn.local = AuthConfig("pubkey", Identity.parse(me), pubkeys=[keys[me].public_key()])
        conn.remote = AuthConfig("pubkey", Identity.parse(peer), pubkeys=[trusted])
        config.secrets = Secrets(private_keys=[PrivateKey(f"{me}.key", keys[me])])
    return a, b


def test_raw_public_keys_authenticate_both_ways_without_certificates():
    net = make_net(*_raw_configs())
    connect(net)
    assert_consistent(net)
    auth = [r for r in net.endpoints["a"].pop_trace() if r["kind"] == "message" and r["exchange"] == "IKE_AUTH"]
    assert auth and all("CERT" not in r["payloads"] for r in auth)


def test_a_key_other_than_the_trusted_one_is_refused():
    net = make_net(*_raw_configs(wrong_key_for_a=True))
    connect(net)
    failed = [e for e in net.events("b") if isinstance(e, ev.AuthFailed)]
    assert failed and "raw public key in remote.pubkeys" in failed[0].reason


CONF = """connections {
  s2s {
    remote_addrs = 192.0.2.2
    local {
      auth = pubkey
      id = gwa.lab
      pubkeys = gwa.pub
    }
    remote {
      auth = pubkey
      id = gwb.lab
      pubkeys = gwb.pub
    }
    children { net { local_ts = 10.1.0.0/24
                     remote_ts = 10.2.0.0/24 } }
  }
}
"""


def _folder(tmp_path: Path, conf: str) -> Path:
    for sub in ("pubkey", "private"):
        (tmp_path / sub).mkdir()
    keys = {name: ec.generate_private_key(ec.SECP256R1()) for name in ("gwa", "gwb")}
    for name, key in keys.items():
        (tmp_path / "pubkey" / f"{name}.pub").write_bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    (tmp_path / "private" / "gwa.key").write_bytes(keys["gwa"].private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    path = tmp_path / "swanctl.conf"
    path.write_text(conf)
    return path


def test_swanctl_reads_pubkeys_from_the_pubkey_folder(tmp_path):
    config = load_swanctl(_folder(tmp_path, CONF))
    conn = config.connections["s2s"]
    assert len(conn.local.pubkeys) == 1 and len(conn.remote.pubkeys) == 1
    assert config.secrets.private_key_for(conn.local.pubkeys[0]) is not None


@pytest.mark.parametrize("change, line, says", [
    ("      id = gwb.lab\n", 11, "pubkeys needs id"),
    ("      pubkeys = gwb.pub\n", 12, "cannot read public key"),
])
def test_pubkeys_mistakes_name_file_and_line(tmp_path, change, line, says):
    conf = CONF.replace(change, "") if "id" in change else CONF.replace("gwb.pub", "missing.pub")
    with pytest.raises(ConfigError) as err:
        load_swanctl(_folder(tmp_path, conf))
    assert f"swanctl.conf:{line}: connections.s2s.remote.pubkeys: " in str(err.value) and says in str(err.value)
