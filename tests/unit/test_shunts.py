"""Shunts: swanctl.conf children with mode = pass / drop (strongSwan's BYPASS and DISCARD
policies, RFC 4301 §4.4.1) as our reader takes them and the data plane turns them into
policies and kernel rules."""
from __future__ import annotations

import textwrap

import pytest

from lab.daemon.routes import _bypass_rule, _networks, _shunt_selectors, esp_selector
from lab.conf.swanctl import ConfigError, load_swanctl
from lab.esp import SPD, Action, EspDrop, Policy, Selector
from lab.esp.errors import DropReason
from lab.ike.config import ChildMode, parse_traffic_selectors

SHUNTS = """
connections {
  shunts {
    children {
      lan {
        remote_ts = 10.1.0.0/24
        mode = pass
        start_action = trap
      }
      ssh {
        local_ts = 0.0.0.0/0[tcp]
        remote_ts = 192.0.2.0/24[tcp/22]
        mode = pass
        start_action = trap
      }
      lab {
        local_ts = 10.1.0.0/24
        remote_ts = 10.2.2.0/24
        mode = drop
        start_action = trap
      }
    }
  }
}
"""


def load(tmp_path, text):
    path = tmp_path / "swanctl.conf"
    path.write_text(textwrap.dedent(text))
    return load_swanctl(str(path))


def test_pass_and_drop_children_load_without_auth(tmp_path):
    children = load(tmp_path, SHUNTS).connections["shunts"].children
    assert [c.mode for c in children.values()] == [ChildMode.PASS, ChildMode.PASS, ChildMode.DROP]
    assert all(c.mode.is_shunt for c in children.values())


def test_a_started_shunt_is_refused_with_its_line(tmp_path):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, SHUNTS.replace("mode = drop\n        start_action = trap", "mode = drop\n        "
                                      "start_action = start"))
    assert "swanctl.conf:" in str(err.value) and "start_action = trap" in str(err.value)


def test_other_modes_still_refused(tmp_path):
    with pytest.raises(ConfigError, match="beet"):
        load(tmp_path, SHUNTS.replace("mode = drop", "mode = beet"))


def test_dynamic_means_any_and_rules_name_what_a_leaving_packet_carries():
    (lan_local,) = _shunt_selectors(parse_traffic_selectors("dynamic"))
    assert (str(lan_local.start_addr), str(lan_local.end_addr)) == ("0.0.0.0", "255.255.255.255")
    (lan_remote,) = _shunt_selectors(parse_traffic_selectors("10.1.0.0/24"))
    (lnet,), (rnet,) = _networks(lan_local), _networks(lan_remote)
    assert _bypass_rule(lan_local, lan_remote, lnet, rnet) == ["to", "10.1.0.0/24"]
    (ssh_l,), (ssh_r,) = (_shunt_selectors(parse_traffic_selectors(t)) for t in ("10.1.0.0/24[tcp]", "192.0.2.0/24[tcp/22]"))
    assert _bypass_rule(ssh_l, ssh_r, *_networks(ssh_l), *_networks(ssh_r)) == [
        "from", "10.1.0.0/24", "to", "192.0.2.0/24", "ipproto", "6", "dport", "22"]
    (odd,) = _shunt_selectors(parse_traffic_selectors("10.0.0.1-10.0.0.6"))
    assert [str(n) for n in _networks(odd)] == ["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"]


def test_spd_order_pass_protect_drop():
    # the data plane's order (strongSwan's priorities): pass shunts, the SAs' policies, drop shunts
    lan = Policy(Action.BYPASS, (esp_selector(*_shunt_selectors(parse_traffic_selectors("dynamic")),
                                              *_shunt_selectors(parse_traffic_selectors("10.1.0.0/24"))),), name="lan")
    net = Policy.of(Action.PROTECT, local="10.1.0.0/24", remote="10.0.0.0/8", name="corp", sa=object())
    drop = Policy.of(Action.DISCARD, local="10.1.0.0/24", remote="10.2.2.0/24", name="lab")
    spd = SPD([lan, net, drop])
    from scapy.layers.inet import ICMP, IP
    assert spd.outbound(bytes(IP(src="10.1.0.1", dst="10.1.0.10") / ICMP())) is lan
    assert spd.outbound(bytes(IP(src="10.1.0.10", dst="10.2.2.10") / ICMP())) is net  # PROTECT wins over drop
    spd.policies.remove(net)
    with pytest.raises(EspDrop):
        spd.outbound(bytes(IP(src="10.1.0.10", dst="10.2.2.10") / ICMP()))
    assert drop.hits == 1 and spd.drops[DropReason.POLICY_DISCARD] == 1
    assert isinstance(lan.selectors[0], Selector)


def test_shunts_installed_in_order_with_their_rules_and_one_route_per_network(tmp_path, monkeypatch):
    """Routes.install_shunts as the daemon runs it at start, `ip` recorded: BYPASS policies first
    with an `ip rule` each ahead of table 220, DISCARD policies last sharing one route per network;
    a CHILD_SA's policy goes between them; stop takes all of it away."""
    from types import SimpleNamespace

    from lab.daemon import routes

    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(routes, "_ip", lambda *args: calls.append(args))
    monkeypatch.setattr(routes.subprocess, "run", lambda argv, **kw: calls.append(tuple(argv[1:])))
    more = textwrap.indent(textwrap.dedent("""
        lab2 {
          local_ts = 10.1.1.0/24
          remote_ts = 10.2.2.0/24
          mode = drop
          start_action = trap
        }
        dns {
          remote_ts = 198.51.100.53/32[udp/53]
          mode = pass
          start_action = trap
        }
    """), " " * 6)
    config = load(tmp_path, SHUNTS.rsplit("    }\n  }\n}\n", 1)[0] + more + "    }\n  }\n}\n")
    spd = SPD()
    plane = routes.Routes(SimpleNamespace(config=config, loop=None, say=lambda text: None), spd)
    plane.install_shunts()
    assert [(p.name, p.action) for p in spd.policies] == [
        ("shunts/lan", Action.BYPASS), ("shunts/ssh", Action.BYPASS), ("shunts/dns", Action.BYPASS),
        ("shunts/lab", Action.DISCARD), ("shunts/lab2", Action.DISCARD)]
    assert calls == [
        ("rule", "add", "priority", "219", "to", "10.1.0.0/24", "lookup", "main"),
        ("rule", "add", "priority", "219", "to", "192.0.2.0/24", "ipproto", "6", "dport", "22", "lookup", "main"),
        ("route", "replace", "10.2.2.0/24", "dev", "ipsec0", "table", "220"),
        ("rule", "add", "priority", "219", "to", "198.51.100.53/32", "ipproto", "17", "dport", "53", "lookup", "main")]
    sa_policy = Policy.of(Action.PROTECT, local="10.1.0.0/24", remote="10.0.0.0/8", name="corp")
    spd.add(sa_policy, len(spd.policies) - plane.discard_shunts())  # as DataPlane._child_up places it
    assert spd.policies.index(sa_policy) == 3
    del calls[:]
    plane.stop()
    assert sorted(c[:2] for c in calls) == [("route", "del")] + [("rule", "del")] * 3
    assert spd.policies == [sa_policy]
