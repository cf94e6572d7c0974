"""Raw public keys (swanctl.conf pubkeys) between our daemon and charon 5.9.8, both roles: each side
signs with the key behind its raw public key, the other trusts that key for the peer's id; no
certificate travels."""
from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from lab.conf.writer import render

from .conftest import GATEWAYS, PEER, S2SLab
from .test_ike_strongswan import OURS, ROLES, SWAN, Pair, exchanges


def _conf(gateway: str, initiator: bool) -> str:
    me, peer = GATEWAYS[gateway], GATEWAYS[PEER[gateway]]
    conn = {"version": 2, "local_addrs": me["wan"], "remote_addrs": peer["wan"] if initiator else "%any",
            "proposals": "aes128gcm16-prfsha256-x25519", "mobike": False,
            "local": {"auth": "pubkey", "id": me["id"], "pubkeys": f"{me['id']}.pub"},
            "remote": {"auth": "pubkey", "id": peer["id"], "pubkeys": f"{peer['id']}.pub"},
            "children": {"net": {"local_ts": me["local_ts"], "remote_ts": peer["local_ts"],
                                 "esp_proposals": "aes128gcm16", "mode": "tunnel"}}}
    return render({"connections": {"s2s": conn}})


def _install_keys(lab: S2SLab) -> None:
    keys = {gw["id"]: ec.generate_private_key(ec.SECP256R1()) for gw in GATEWAYS.values()}
    for gateway in (OURS, SWAN):
        folder = lab.swanctl_dir(gateway)
        for identity, key in keys.items():
            (folder / "pubkey").mkdir(parents=True, exist_ok=True)
            (folder / "pubkey" / f"{identity}.pub").write_bytes(key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        me = GATEWAYS[gateway]["id"]
        (folder / "private").mkdir(parents=True, exist_ok=True)
        path = folder / "private" / "gw.key"
        path.write_bytes(keys[me].private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))
        os.chmod(path, 0o600)


@pytest.mark.parametrize("role", ROLES)
def test_raw_public_keys(interop_lab, role):
    ours_initiates = role == "ours-initiator"
    ours = interop_lab.use_ours(OURS, _conf(OURS, ours_initiates))
    swan = interop_lab.use_strongswan(SWAN, _conf(SWAN, not ours_initiates))
    _install_keys(interop_lab)
    pair = Pair(interop_lab, ours, swan, ours_initiates, interop_lab.capture(OURS, "ike.pcap"))
    pair.up()
    pair.settled()
    log = swan.log_text()
    assert "authentication of 'gwa.lab' with ECDSA_WITH_SHA256_DER successful" in log, swan.log_tail()
    messages = pair.finish()
    assert exchanges(messages) == ["IKE_SA_INIT"] * 2 + ["IKE_AUTH"] * 2
