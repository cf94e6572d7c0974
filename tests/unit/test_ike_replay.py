"""The core replays from a seed: everything random in an exchange (SPIs, nonces, DH private
values, SK IVs and padding, cookie secret, rekey and retry jitter) and in the ESP SAs the
daemon installs (CBC IVs, IPv4 IDs) comes from the endpoint's one random source."""
from __future__ import annotations

import random

import pytest

from lab.esp import OutboundSA
from lab.ike import events as ev
from lab.ike.endpoint import IkeEndpoint, Settings

from .ike_net import GW_A, GW_B, Net, pair_configs
from .test_esp_sa import ipv4_udp


def run(seed: int) -> tuple[list[bytes], list[bytes]]:
    # AES-CBC for IKE and ESP (random IVs), MODP and ECP key exchanges, PFS, jittered lifetimes
    a, b = pair_configs(proposals="aes128-sha256-modp2048", esp="aes128-sha256-ecp256", a_rekey_time=200,
                        a_rand_time=50, a_child_rekey_time=90, a_child_rand_time=30)
    rng_a, rng_b = random.Random(seed), random.Random(seed + 1)
    net = Net({"a": IkeEndpoint(a, Settings(cookie_threshold=0), random=rng_a.randbytes),
               "b": IkeEndpoint(b, Settings(cookie_threshold=0), random=rng_b.randbytes)},
              addresses={GW_A: "a", GW_B: "b"})
    net.endpoints["a"].initiate("s2s", net.now)
    net.run(until=300)
    esp = []
    for name in "ab":
        for event in net.events(name):
            if isinstance(event, ev.ChildSaUp):
                sa = OutboundSA(int.from_bytes(event.spi_out, "big"), encr_id=event.encr_id,
                                encr_key=event.keys_out.encr, integ_id=event.integ_id, integ_key=event.keys_out.integ,
                                local=event.local[0], remote=event.remote[0], random=net.endpoints[name].random)
                esp.append(sa.protect(ipv4_udp()))
    return [d.data for _, _, d in net.log], esp


def test_same_seed_same_bytes():
    first, second = run(5), run(5)
    names = [len(first[0]), len(first[1])]
    # a cookie round, IKE_SA_INIT, IKE_AUTH, CHILD rekeys and an IKE rekey, each with its Delete
    assert names[0] >= 16 and names[1] >= 4
    assert first == second
    other = run(6)
    assert other[0][0] != first[0][0] and other[1][0] != first[1][0]


def test_nonce_size_is_the_setting():
    from .ike_net import make_net
    net = make_net(*pair_configs(esp="aes128gcm16-x25519"), settings=Settings(nonce_size=48))
    net.endpoints["a"].initiate("s2s", net.now)
    net.settle()
    ike, = net.endpoints["a"].find()
    assert len(ike.nonce_i) == len(ike.nonce_r) == 48
    seen = {}
    net.after_step = lambda: seen.update((c.spi_in, c.nonces) for c in ike.children)
    net.endpoints["a"].rekey_child(net.now, "net")
    net.settle()
    assert len(seen) == 2 and all(len(n) == 48 for nonces in seen.values() for n in nonces)
    with pytest.raises(ValueError, match="outside 16..256"):
        Settings(nonce_size=8)


def test_no_wall_clock_no_certificate():
    # the core reads no clock: without one given, a certificate cannot be judged and is refused
    from .ike_net import cert_configs, make_net
    net = make_net(*cert_configs())
    net.endpoints["a"].initiate("s2s", net.now)
    net.settle()
    failed = [e for e in net.events("b") if isinstance(e, ev.AuthFailed)]
    assert failed and "no wall clock" in failed[0].reason
