"""Scenario files are checked completely before anything starts: every mistake is one line
naming file, line and field (no root needed)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lab.net import scenario as sc
from lab.net.software import SOFTWARE

LIBRARY = Path(__file__).resolve().parents[2] / "scenarios"


@pytest.mark.parametrize("name", [p.name for p in sc.library()])
def test_every_library_scenario_loads(name):
    loaded = sc.load(name)
    assert loaded.steps and loaded.title
    assert (LIBRARY / name / "README.md").exists(), f"scenarios/{name} has no README.md"
    for node, software in loaded.gateways.items():
        assert any(loaded.host_folder(node).joinpath(c).exists() for c in SOFTWARE[software].configs)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A copy of net2net-nat to break."""
    target = tmp_path / "broken"
    shutil.copytree(LIBRARY / "net2net-nat", target)
    return target


def _write(folder: Path, text: str) -> Path:
    path = folder / "scenario.yaml"
    path.write_text(text)
    return path


def _error(folder: Path) -> sc.ScenarioError:
    with pytest.raises(sc.ScenarioError) as info:
        sc.load(folder)
    return info.value


BASE = """\
title: t
topology: site-to-site
params:
  nat: one
gateways:
  gwa: ours
  gwb: strongswan
steps:
  - start: [gwb, gwa]
  - initiate: {node: gwa, child: net}
  - ping: {from: hosta, to: 10.2.0.10, count: 3}
checks:
  - tap: {on: nat-outside, filter: "udp port 500", min: 2}
"""


def test_the_base_text_is_valid(folder):
    _write(folder, BASE)
    loaded = sc.load(folder)
    assert [s.kind for s in loaded.steps] == ["start", "initiate", "ping"]
    assert loaded.steps[2].args["count"] == 3
    assert [t.name for t in loaded.taps] == ["nat-inside", "nat-outside"]


@pytest.mark.parametrize("change, line, field, words", [
    (("  nat: one", "  nat: two"), 4, "params.nat", "must be one of none, one, both"),
    (("  nat: one", "  natt: one"), 4, "params.natt", "no parameter 'natt'"),
    (("topology: site-to-site", "topology: site-to-moon"), 2, "topology", "unknown topology"),
    (("  gwb: strongswan", "  gwb: racoon"), 7, "gateways.gwb", "must be one of ours, strongswan"),
    (("  gwb: strongswan", "  hostb: ours"), 7, "gateways.hostb", "is a host, not a gateway"),
    (("  gwb: strongswan", "  gwc: ours"), 7, "gateways.gwc", "no such node"),
    (("count: 3}", "count: five}"), 11, "steps[3].ping.count", "must be a whole number"),
    (("{from: hosta,", "{from: hostz,"), 11, "steps[3].ping.from", "no node 'hostz'"),
    (("  - ping:", "  - pong:"), 11, "steps[3]", "each step is one of"),
    (("{node: gwa, child: net}", "{node: hosta, child: net}"), 10, "steps[2].initiate.node", "runs no IKE daemon"),
    (("{node: gwa, child: net}", "{node: gwa, kid: net}"), 10, "steps[2].initiate.kid", "unknown field"),
    (("{on: nat-outside,", "{on: nat-middle,"), 13, "checks[1].tap.on", "no tap 'nat-middle'"),
    (('min: 2}', 'between: 2}'), 13, "checks[1].tap.between", "unknown field"),
    (("title: t", "title: t\ncolour: red"), 2, "colour", "unknown field"),
    (("count: 3}", "count: 3}\n  - join: [gwb]"), 12, "steps[4].join.step", "must be text"),
])
def test_mistakes_name_file_line_and_field(folder, change, line, field, words):
    old, new = change
    assert old in BASE
    path = _write(folder, BASE.replace(old, new, 1))
    err = _error(folder)
    assert str(err).startswith(f"{path}:{line}: {field}: "), str(err)
    assert words in str(err)
    assert "\n" not in str(err)


def test_yaml_syntax_error_has_its_line(folder):
    path = _write(folder, BASE.replace("  - start: [gwb, gwa]", "  - start: [gwb, gwa"))
    err = _error(folder)
    assert str(err).startswith(f"{path}:"), str(err)
    assert err.line is not None and 9 <= err.line <= 11
    assert "not valid YAML" in str(err)


def test_a_key_given_twice_is_refused(folder):
    path = _write(folder, BASE.replace("  gwb: strongswan", "  gwb: strongswan\n  gwb: ours"))
    err = _error(folder)
    assert str(err).startswith(f"{path}:8: "), str(err)
    assert "given twice" in str(err)


def test_missing_host_config(folder):
    (folder / "hosts" / "gwb" / "swanctl.conf").unlink()
    path = _write(folder, BASE)
    err = _error(folder)
    assert str(err).startswith(f"{path}:7: gateways.gwb: "), str(err)
    assert "hosts/gwb/swanctl.conf" in str(err)


def test_broken_host_config_is_reported_at_its_own_line(folder):
    _write(folder, BASE)
    conf = folder / "hosts" / "gwa" / "swanctl.conf"
    lines = conf.read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if "proposals = " in line)
    lines[index] = "    proposals = aes129gcm16-prfsha256-x25519"
    conf.write_text("\n".join(lines) + "\n")
    err = _error(folder)
    assert str(err).startswith(f"{conf}:{index + 1}: connections.s2s.proposals: "), str(err)
    assert "aes129" in str(err)


def test_broken_strongswan_config_syntax(folder):
    _write(folder, BASE)
    conf = folder / "hosts" / "gwb" / "swanctl.conf"
    conf.write_text(conf.read_text().replace("connections {", "connections {{", 1))
    err = _error(folder)
    assert str(err).startswith(f"{conf}:"), str(err)


def test_evaltest_one_line_checks(folder):
    text = BASE + '  - "gwb::swanctl --list-sas::ESTABLISHED::YES"\n  - "gwb::swanctl --list-sas::nat-remote"\n'
    path = _write(folder, text)
    err = _error(folder)
    assert str(err).startswith(f"{path}:15: checks[3]: "), str(err)
    _write(folder, BASE + '  - "gwb::swanctl --list-sas::ESTABLISHED::YES"\n')
    check = sc.load(folder).checks[1]
    assert (check.kind, check.args["node"], check.args["expect"]) == ("cmd", "gwb", "YES")


def test_yes_no_and_on_stay_words(folder):
    """YAML 1.1 would read `on:` and `expect: NO` as booleans; scenario files use YAML 1.2's."""
    _write(folder, BASE + "  - cmd: {node: gwb, cmd: ip link, match: ipsec0, expect: NO}\n")
    check = sc.load(folder).checks[1]
    assert check.args["expect"] == "NO"


def test_spi_changed_since_needs_a_named_step(folder):
    path = _write(folder, BASE + "  - sa: {node: gwa, child: net, spi_changed_since: before}\n")
    err = _error(folder)
    assert str(err).startswith(f"{path}:14: checks[2].sa.spi_changed_since: "), str(err)
    _write(folder, BASE.replace("count: 3}", "count: 3}\n    name: before")
           + "  - sa: {node: gwa, child: net, spi_changed_since: before}\n")
    assert sc.load(folder).steps[2].name == "before"


def test_spi_kept_since_needs_a_named_step_and_an_sa(folder):
    path = _write(folder, BASE + "  - sa: {node: gwa, ike: s2s, spi_kept_since: before}\n")
    err = _error(folder)
    assert str(err).startswith(f"{path}:14: checks[2].sa.spi_kept_since: "), str(err)
    named = BASE.replace("count: 3}", "count: 3}\n    name: before")
    path = _write(folder, named + "  - sa: {node: gwa, spi_kept_since: before}\n")
    assert "spi_kept_since needs child: NAME or ike: NAME" in str(_error(folder))
    _write(folder, named + "  - sa: {node: gwa, ike: s2s, spi_kept_since: before}\n")
    assert sc.load(folder).checks[1].args["spi_kept_since"] == "before"


def test_bad_regex_in_a_check(folder):
    path = _write(folder, BASE + "  - log: {node: gwa, match: '([unclosed'}\n")
    err = _error(folder)
    assert str(err).startswith(f"{path}:14: checks[2].log.match: not a valid regular expression"), str(err)


def test_nat_knobs_are_checked(folder):
    path = _write(folder, BASE + "nat:\n  nat:\n    loss: 1.5\n")
    err = _error(folder)
    assert str(err).startswith(f"{path}:16: nat.nat.loss: "), str(err)
    assert "probability" in str(err)
    path = _write(folder, BASE + "nat:\n  gwa:\n    loss: 0.1\n")
    assert str(_error(folder)).startswith(f"{path}:15: nat.gwa: no NAT box 'gwa'")


def test_transfer_sizes():
    assert sc.parse_size("10M") == 10 << 20
    assert sc.parse_size("512k") == 512 << 10
    assert sc.parse_size(1000) == 1000
    assert sc.parse_size("lots") is None
    assert sc.parse_size(0) is None


def test_unknown_scenario_name_lists_the_library():
    with pytest.raises(sc.ScenarioError) as info:
        sc.find("no-such-scenario")
    assert "net2net-nat" in str(info.value)


def test_run_steps_know_their_scenario_folder(folder):
    """A `run` step's shell gets $SCENARIO_DIR, the scenario's folder (for a script that lives there)."""
    from lab.net.steps import STEPS
    step_line = '  - run: {node: hosta, cmd: "cat \\"$SCENARIO_DIR/scenario.yaml\\""}\n'
    _write(folder, BASE.replace("  - ping:", step_line + "  - ping:"))
    step = next(s for s in sc.load(folder).steps if s.kind == "run")
    assert step.args["folder"] == str(folder.resolve())
    sent = []

    class Node:
        def cmd(self, text):
            sent.append(text)
            return "title: t\n__rc=0\n"

    class Run:
        peers: dict = {}

        def node(self, name):
            return Node()

    assert STEPS["run"].run(Run(), step.args) == "title: t"
    assert sent[0].startswith(f"SCENARIO_DIR={folder.resolve()} SWANCTL_DIR='' timeout 30 sh -c "), sent[0]
    # on a gateway, $SWANCTL_DIR is its swanctl folder (x509crl/ and x509ca/ for a fix applied mid-run)
    Run.peers = {"hosta": type("Peer", (), {"swanctl_dir": folder / "nodes" / "hosta" / "swanctl"})()}
    STEPS["run"].run(Run(), step.args)
    assert f"SWANCTL_DIR={folder / 'nodes' / 'hosta' / 'swanctl'} timeout 30" in sent[1], sent[1]


@pytest.mark.parametrize("old, new, field, words", [
    ("initiate: {node: gwc}", "initiate: {node: gwc, child: net}", "initiate.child", "has no IKE or CHILD_SAs"),
    ("initiate: {node: gwa, child: net}", "initiate: {node: gwa}", "initiate", "name what to initiate"),
    ("tunnel: {node: gwd, state: UP, count: 1}", "tunnel: {node: gwd, state: up, count: 1}", "tunnel.state",
     "must be UP, CONNECTING or DOWN"),
    ("remote_host: 198.51.100.3", "remote_host: gwd", "tunnel.remote_host", "must be an IP address"),
])
def test_steps_and_checks_for_software_without_sas(tmp_path, old, new, field, words):
    """WireGuard has tunnels, not SAs: initiate and terminate take no child or ike for it, and
    the tunnel check's fields are checked like any other."""
    target = tmp_path / "compare"
    shutil.copytree(LIBRARY / "compare-site-to-site", target)
    text = (target / "scenario.yaml").read_text()
    assert old in text
    (target / "scenario.yaml").write_text(text.replace(old, new, 1))
    err = _error(target)
    assert field in err.field and words in err.message, str(err)


@pytest.mark.parametrize("value, ok", [("[tcp/80, tcp/443, udp/53]", True), ("[]", True), ("[icmp]", False),
                                       ("[tcp/70000]", False), ("tcp/443", False)])
def test_allow_only_knob(tmp_path, value, ok):
    """The hotel firewall's knob: a list of PROTOCOL/PORT; anything else is a line-numbered error."""
    target = tmp_path / "hotel"
    shutil.copytree(LIBRARY / "restrictive-network", target)
    text = (target / "scenario.yaml").read_text()
    (target / "scenario.yaml").write_text(text.replace("[tcp/80, tcp/443, udp/53]", value, 1))
    if ok:
        assert sc.load(target).knobs["nat"]["allow_only"] == ([] if value == "[]" else ["tcp/80", "tcp/443", "udp/53"])
    else:
        err = _error(target)
        line = next(n for n, row in enumerate(text.splitlines(), 1) if "allow_only" in row)
        assert err.line == line and "allow_only" in str(err) and "PROTOCOL/PORT" in str(err), str(err)


def test_a_service_on_a_host_node(folder):
    hosts = folder / "hosts" / "hostb"
    hosts.mkdir()
    (hosts / "clients.conf").write_text("client gwb {\n\tipaddr = 10.2.0.1\n\tsecret = s\n}\n")
    (hosts / "users").write_text('carol Cleartext-Password := "p"\n')
    loaded = sc.load(_write(folder, BASE.replace("steps:", "services:\n  hostb: freeradius\nsteps:")))
    assert loaded.services == {"hostb": "freeradius"}
    assert sc.load(_write(folder, BASE)).services == {}


@pytest.mark.parametrize("services, words", [
    ("  hostb: radiator", "must be one of freeradius, listeners, nginx, not 'radiator'"),
    ("  gwb: freeradius", "gwb is a gateway: a service runs on a host"),
    ("  nat: freeradius", "nat is a nat: a service runs on a host"),
    ("  hostz: freeradius", "no such node in topology"),
    ("  hosta: freeradius", "hosts/hosta/clients.conf is missing (freeradius reads clients.conf, users"),
])
def test_service_mistakes_name_file_line_and_field(folder, services, words):
    hosts = folder / "hosts" / "hostb"
    hosts.mkdir()
    (hosts / "clients.conf").write_text("")
    (hosts / "users").write_text("")
    error = _error_of(folder, BASE.replace("steps:", f"services:\n{services}\nsteps:"))
    assert error.line == 9 and error.field.startswith("services.") and words in str(error)


def _error_of(folder: Path, text: str) -> sc.ScenarioError:
    _write(folder, text)
    return _error(folder)


def test_kill_takes_a_service_node_or_a_gateway(folder):
    """radius-failover's `kill: [server]`: a service's server dies like a daemon; a plain host
    (no service) is still refused."""
    hosts = folder / "hosts" / "hostb"
    hosts.mkdir()
    (hosts / "clients.conf").write_text("")
    (hosts / "users").write_text("")
    with_service = BASE.replace("steps:", "services:\n  hostb: freeradius\nsteps:")
    loaded = sc.load(_write(folder, with_service.replace("steps:\n", "steps:\n  - kill: [hostb]\n", 1)))
    kill = next(s for s in loaded.steps if s.kind == "kill")
    assert kill.args["nodes"] == ["hostb"]
    error = _error_of(folder, BASE.replace("steps:\n", "steps:\n  - kill: [hostb]\n", 1))
    assert "'hostb' runs no IKE daemon" in str(error)


def test_remote_access_with_two_servers():
    from lab.net.topology import load

    topo = load("remote-access")(clients=1, nats=0, servers=2)
    assert {"server", "server2", "corp"} <= set(topo.hosts())
    assert topo.nodeInfo("server2")["intfs"]["server2-lan"]["addrs"] == ["10.2.0.11/24"]
    assert topo.nodeInfo("server")["intfs"]["server-lan"]["addrs"] == ["10.2.0.10/24"]
    assert "server2" not in load("remote-access")(clients=1, nats=0).hosts()


def test_a_bad_ports_file_is_named_by_file_and_line_when_the_scenario_is_read(folder):
    hosts = folder / "hosts" / "hostb"
    hosts.mkdir()
    (hosts / "ports").write_text("# the application\n443\nssh\n")
    error = _error_of(folder, BASE.replace("steps:", "services:\n  hostb: listeners\nsteps:"))
    assert (error.file, error.line) == (str(hosts / "ports"), 3) and "not 'ssh'" in str(error)
