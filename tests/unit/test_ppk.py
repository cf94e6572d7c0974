"""Postquantum preshared keys (RFC 8784, lab.ike.ppk) between two endpoints in memory: the PPK
mixed into SK_d, SK_pi and SK_pr when both have it, the fallback through NO_PPK_AUTH when the
responder has none, and the failures ppk_required asks for; swanctl.conf's ppk_id, ppk_required
and ppk secrets read as strongSwan writes them."""
from __future__ import annotations

import textwrap

import pytest

from lab.conf.swanctl import ConfigError, load_swanctl
from lab.ike import events as ev
from lab.ike import ppk
from lab.ike.config import SharedKey
from lab.ike.crypto.prf import prf_plus
from lab.ike.identity import Identity
from lab.ike.sa import IkeState

from .ike_net import make_net, pair_configs

PPK = bytes.fromhex("7a8c1f0e5d3b2a4968778695a4b3c2d1e0f1021324354657687988a9bacbdced")
PPK_ID = "ppk-lab"


def configs(a_ppk: bytes | None = PPK, b_ppk: bytes | None = PPK, a_id: str | None = PPK_ID, **options):
    a, b = pair_configs(a_ppk_id=Identity.parse(a_id) if a_id else None, **options)
    for config, secret in ((a, a_ppk), (b, b_ppk)):
        if secret is not None:
            config.secrets.ppk.append(SharedKey("ppk-1", secret, [Identity.parse(PPK_ID)]))
    return a, b


def run(a, b):
    net = make_net(a, b)
    net.endpoints["a"].initiate("s2s", net.now)
    net.settle()
    return net


def sas(net, name: str):
    return list(net.endpoints[name].by_id.values())


def established(net) -> tuple:
    (ike_a,) = [s for s in sas(net, "a") if s.state == IkeState.ESTABLISHED]
    (ike_b,) = [s for s in sas(net, "b") if s.state == IkeState.ESTABLISHED]
    assert (ike_a.spi_i, ike_a.spi_r) == (ike_b.spi_i, ike_b.spi_r)
    assert ike_a.keys == ike_b.keys
    return ike_a, ike_b


def failures(net) -> dict[str, list[str]]:
    return {name: [e.reason for e in net.events(name) if isinstance(e, ev.AuthFailed)] for name in ("a", "b")}


def test_both_have_the_ppk_it_is_mixed_into_sk_d_sk_pi_and_sk_pr():
    net = run(*configs())
    ike_a, ike_b = established(net)
    assert ppk.used(ike_a) and ppk.used(ike_b)
    plain, mixed = ike_a.ppk_state.plain_keys, ike_a.keys
    prf = ike_a.algorithms.prf
    # RFC 8784 §3: SK_d = prf+(PPK, SK_d'), the same for SK_pi and SK_pr; SK_e and SK_a unchanged
    for name in ("sk_d", "sk_pi", "sk_pr"):
        old = getattr(plain, name)
        assert getattr(mixed, name) == prf_plus(prf, PPK, old, len(old)) != old
    for name in ("sk_ei", "sk_er", "sk_ai", "sk_ar"):
        assert getattr(mixed, name) == getattr(plain, name)
    assert ike_a.children and ike_b.children  # the CHILD_SA's keys come from the new SK_d


def test_a_responder_without_ppks_does_not_answer_use_ppk_and_none_is_used():
    net = run(*configs(b_ppk=None))
    ike_a, ike_b = established(net)
    assert not ppk.used(ike_a) and not ppk.used(ike_b)
    assert (ike_a.ppk_state.peer_supports, ike_a.ppk_state.plain_keys) == (False, None)


def without_this_ppk(**options):
    """The responder has a PPK (it answers USE_PPK), but under another PPK_ID."""
    a, b = configs(**options)
    b.secrets.ppk[0] = SharedKey("ppk-1", PPK, [Identity.parse("another-ppk")])
    return a, b


def test_a_responder_without_the_ppk_falls_back_to_no_ppk_auth():
    ike_a, ike_b = established(run(*without_this_ppk()))
    assert ike_a.ppk_state.peer_supports and ike_b.ppk_state.we_offered
    assert not ppk.used(ike_a) and not ppk.used(ike_b)
    assert ike_a.keys == ike_a.ppk_state.plain_keys  # the initiator took its plain keys back


def test_an_initiator_that_requires_the_ppk_gets_no_fallback():
    # without NO_PPK_AUTH the responder that lacks the PPK cannot check the AUTH (RFC 8784 §3)
    net = run(*without_this_ppk(a_ppk_required=True))
    assert not [s for s in sas(net, "a") + sas(net, "b") if s.state == IkeState.ESTABLISHED]
    assert any("no NO_PPK_AUTH" in r for r in failures(net)["b"]), failures(net)


def test_a_responder_that_requires_a_ppk_refuses_a_peer_without_one():
    net = run(*configs(a_id=None, b_ppk_required=True))
    assert not [s for s in sas(net, "a") + sas(net, "b") if s.state == IkeState.ESTABLISHED]
    reasons = failures(net)
    assert any("requires a PPK" in r for r in reasons["b"]), reasons
    assert any("AUTHENTICATION_FAILED" in r or "peer" in r for r in reasons["a"]), reasons


def test_an_initiator_that_requires_a_ppk_stops_when_the_responder_has_none_at_all():
    # the responder has no PPK secrets: no USE_PPK in its IKE_SA_INIT answer
    net = run(*configs(b_ppk=None, a_ppk_required=True))
    assert not [s for s in sas(net, "a") + sas(net, "b") if s.state == IkeState.ESTABLISHED]
    deleted = [e.reason for e in net.events("a") if isinstance(e, ev.IkeSaDeleted)]
    assert any("did not answer USE_PPK" in r for r in deleted), deleted


def test_different_ppks_under_one_id_fail_authentication():
    net = run(*configs(b_ppk=bytes(32)))
    assert not [s for s in sas(net, "a") + sas(net, "b") if s.state == IkeState.ESTABLISHED]
    assert failures(net)["b"], failures(net)


def test_swanctl_conf_as_strongswan_writes_it(tmp_path):
    conf = tmp_path / "swanctl.conf"
    conf.write_text(textwrap.dedent("""\
        connections {
          s2s {
            remote_addrs = 203.0.113.2
            ppk_id = ppk-lab
            ppk_required = yes
            local {
              auth = psk
              id = gwa.lab
            }
            remote {
              auth = psk
              id = gwb.lab
            }
          }
        }
        secrets {
          ike-1 {
            id-a = gwa.lab
            secret = "a-lab-only-psk"
          }
          ppk-1 {
            id = ppk-lab
            secret = 0x7a8c1f0e5d3b2a4968778695a4b3c2d1e0f1021324354657687988a9bacbdced
          }
        }
        """))
    config = load_swanctl(str(conf))
    s2s = config.connections["s2s"]
    assert (str(s2s.ppk_id), s2s.ppk_required) == ("ppk-lab", True)
    assert config.secrets.find_ppk(b"ppk-lab") == PPK
    assert config.secrets.find_ppk(b"other") is None


def test_a_ppk_secret_without_id_is_an_error_with_its_line(tmp_path):
    conf = tmp_path / "swanctl.conf"
    conf.write_text("secrets {\n  ppk-1 {\n    secret = 0x0102\n  }\n}\n")
    with pytest.raises(ConfigError) as err:
        load_swanctl(str(conf))
    assert err.value.line == 2 and "has no id" in str(err.value), str(err.value)
