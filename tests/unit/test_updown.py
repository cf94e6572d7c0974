"""updown scripts: swanctl.conf reads them, the daemon runs them with strongSwan's PLUTO_* environment
on CHILD_SA up and down (not on rekeys), and a failing script is logged and does not stop anything."""
from __future__ import annotations

import ipaddress
import os
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

from lab.conf.swanctl import ConfigError, parse_swanctl
from lab.daemon.updown import Updown, _port, _subnet
from lab.ike import events as ev
from lab.ike.config import ChildConfig
from lab.ike.identity import Identity
from lab.ike.payloads import TrafficSelector

CONF = """connections {
  s2s {
    remote_addrs = 192.0.2.2
    local { auth = psk }
    remote { auth = psk }
    children {
      net {
        local_ts = 10.1.0.0/24
        remote_ts = 10.2.0.0/24
        updown = /usr/lib/ipsec/_updown iptables
        hostaccess = yes
      }
    }
  }
}
secrets { ike { secret = x-lab-only } }
"""


def test_swanctl_reads_updown_and_hostaccess() -> None:
    child = parse_swanctl(CONF).connections["s2s"].children["net"]
    assert child.updown == "/usr/lib/ipsec/_updown iptables"
    assert child.hostaccess is True


def test_empty_updown_names_file_line_and_key() -> None:
    with pytest.raises(ConfigError) as err:
        parse_swanctl(CONF.replace("/usr/lib/ipsec/_updown iptables", '""'), filename="gw.conf")
    assert "gw.conf:10" in str(err.value) and "updown" in str(err.value)


def _ts(net: str, proto: int = 0, ports: tuple[int, int] = (0, 65535)) -> TrafficSelector:
    network = ipaddress.ip_network(net)
    return TrafficSelector(network.network_address, network.broadcast_address, proto, *ports)


def test_client_and_port_formats() -> None:
    assert _subnet(_ts("10.1.0.0/24")) == "10.1.0.0/24"
    assert _subnet(_ts("192.0.2.1/32")) == "192.0.2.1/32"
    # a range that is no subnet: the next larger subnet, as strongSwan's to_subnet
    assert _subnet(TrafficSelector(ipaddress.ip_address("10.0.0.1"), ipaddress.ip_address("10.0.0.6"))) == "10.0.0.0/29"
    assert _port(_ts("10.1.0.0/24", 6, (80, 80)), _ts("10.2.0.0/24", 6), True) == "80"
    assert _port(_ts("10.1.0.0/24", 6, (80, 80)), _ts("10.2.0.0/24", 6), False) == "0"
    assert _port(_ts("10.1.0.0/24", 6, (1000, 2000)), _ts("10.2.0.0/24"), True) == "1000:2000"
    # ICMP type 8 code 0 packed in the port as RFC 7296 §3.13.1 says
    assert _port(_ts("10.1.0.0/24", 1, (0x0800, 0x0800)), _ts("10.2.0.0/24", 1), True) == "8"


class _Gateway:
    def __init__(self, command: str) -> None:
        config = SimpleNamespace(children={"net": ChildConfig("net", updown=command, hostaccess=True)})
        ike = SimpleNamespace(config=config, local_id=Identity.parse("gwa.lab"), remote_id=Identity.parse("gwb.lab"),
                              remote_eap_id=None, virtual_ips=[], assigned_ips=["10.3.0.1", "fd00:10::1"])
        self.endpoint = SimpleNamespace(by_id={7: ike})
        self.lines: list[str] = []

    def say(self, line: str) -> None:
        self.lines.append(line)


def _up(spi: bytes, rekeyed_from: bytes | None = None) -> ev.ChildSaUp:
    keys = ev.ChildKeys(b"", b"")
    return ev.ChildSaUp(7, "net", 1, 3, spi, b"\0\0\0\1", 12, 128, 0, False, keys, keys, "tunnel",
                        (_ts("10.1.0.0/24"),), (_ts("10.2.0.0/24"),), ("127.0.0.1", 4500), ("192.0.2.2", 4500),
                        True, 32, "aes128gcm16", rekeyed_from)


def _script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "updown.sh"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_up_and_down_with_strongswan_environment_not_on_rekey(tmp_path: Path) -> None:
    log = tmp_path / "calls"
    script = _script(tmp_path, f'env | grep ^PLUTO_ | sort > "{tmp_path}/env.$PLUTO_VERB"\n'
                               f'echo "$PLUTO_VERB" >> "{log}"\n')
    gateway = _Gateway(script)
    updown = Updown(gateway)  # type: ignore[arg-type]
    updown.on_event(_up(b"\0\0\0\2"))
    updown.on_event(_up(b"\0\0\0\3", rekeyed_from=b"\0\0\0\2"))  # a rekey: no script
    updown.on_event(ev.ChildSaDeleted(7, "net", b"\0\0\0\2", b"\0\0\0\1", "rekeyed"))  # the old SA: no script
    assert log.read_text().split() == ["up-client"]
    updown.on_event(ev.ChildSaDeleted(7, "net", b"\0\0\0\3", b"\0\0\0\1", "deleted"))
    assert log.read_text().split() == ["up-client", "down-client"]
    env = dict(line.split("=", 1) for line in (tmp_path / "env.up-client").read_text().splitlines())
    assert env == {
        "PLUTO_VERSION": "1.1", "PLUTO_VERB": "up-client", "PLUTO_CONNECTION": "net", "PLUTO_INTERFACE": "lo",
        "PLUTO_REQID": "1", "PLUTO_PROTO": "esp", "PLUTO_UNIQUEID": "7", "PLUTO_ME": "127.0.0.1",
        "PLUTO_MY_ID": "gwa.lab", "PLUTO_MY_CLIENT": "10.1.0.0/24", "PLUTO_MY_PORT": "0", "PLUTO_MY_PROTOCOL": "0",
        "PLUTO_PEER": "192.0.2.2", "PLUTO_PEER_ID": "gwb.lab", "PLUTO_PEER_CLIENT": "10.2.0.0/24",
        "PLUTO_PEER_PORT": "0", "PLUTO_PEER_PROTOCOL": "0", "PLUTO_PEER_SOURCEIP": "10.3.0.1",
        "PLUTO_PEER_SOURCEIP4_1": "10.3.0.1", "PLUTO_PEER_SOURCEIP6_1": "fd00:10::1", "PLUTO_UDP_ENC": "4500",
        "PLUTO_HOST_ACCESS": "1",
    }
    down = (tmp_path / "env.down-client").read_text().replace("down-client", "up-client")
    assert down == (tmp_path / "env.up-client").read_text()


def test_failing_script_is_logged_and_the_daemon_goes_on(tmp_path: Path) -> None:
    script = _script(tmp_path, 'echo "iptables: No chain/target/match by that name."\nexit 3\n')
    gateway = _Gateway(script)
    updown = Updown(gateway)  # type: ignore[arg-type]
    updown.on_event(_up(b"\0\0\0\2"))
    updown.on_event(ev.ChildSaDeleted(7, "net", b"\0\0\0\2", b"\0\0\0\1", "deleted"))
    assert "[CHD] updown: iptables: No chain/target/match by that name." in gateway.lines
    failed = [line for line in gateway.lines if "exit status 3" in line]
    assert len(failed) == 2 and "up-client" in failed[0] and "down-client" in failed[1]


def test_missing_script_is_logged(tmp_path: Path) -> None:
    gateway = _Gateway(str(tmp_path / "no-such-script"))
    Updown(gateway).on_event(_up(b"\0\0\0\2"))  # type: ignore[arg-type]
    assert any("exit status 127" in line for line in gateway.lines), gateway.lines
    assert os.path.exists(tmp_path)


@pytest.mark.parametrize("where, line, key", [
    ("child", "mark_in = 42", "mark_in"), ("child", "set_mark_out = 0x10", "set_mark_out"),
    ("child", "ipcomp = yes", "ipcomp"), ("conn", "mediation = yes", "mediation"),
    ("conn", "mediated_by = med", "mediated_by"), ("child", "per_cpu_sas = yes", "per_cpu_sas"),
    ("child", "priority = 1000", "priority"),
])
def test_out_of_scope_keys_are_refused_with_file_line_and_key(where, line, key):
    # the README says in one sentence each why a lab does not need them
    anchor = "hostaccess = yes" if where == "child" else "remote_addrs = 192.0.2.2"
    text = CONF.replace(anchor, f"{anchor}\n{line}")
    number = text.splitlines().index(line) + 1
    with pytest.raises(ConfigError) as err:
        parse_swanctl(text, filename="prod.conf")
    assert str(err.value).startswith(f"prod.conf:{number}: ") and f".{key}: " in str(err.value)
    assert "not supported by ipsec-lab" in str(err.value)
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert f"`{key}" in readme


def test_pkcs12_secrets_are_refused_with_file_line():
    text = CONF.replace("secrets { ike { secret = x-lab-only } }",
                        "secrets {\n  ike { secret = x-lab-only }\n  pkcs12-gw { file = gw.p12 }\n}")
    with pytest.raises(ConfigError) as err:
        parse_swanctl(text, filename="prod.conf")
    number = text.splitlines().index("  pkcs12-gw { file = gw.p12 }") + 1
    assert str(err.value).startswith(f"prod.conf:{number}: ") and "PKCS#12" in str(err.value)


def test_a_dual_stack_child_runs_the_script_once_per_family(tmp_path: Path) -> None:
    """strongSwan runs updown per policy, pairs of one family (child_sa.c policy_enumerate): a
    client with an IPv4 and an IPv6 virtual IP gets up-client and up-client-v6, no mixed pair."""
    log = tmp_path / "calls"
    script = _script(tmp_path, f'echo "$PLUTO_VERB $PLUTO_MY_CLIENT $PLUTO_PEER_CLIENT" >> "{log}"\n')
    gateway = _Gateway(script)
    keys = ev.ChildKeys(b"", b"")
    up = ev.ChildSaUp(7, "net", 1, 3, b"\0\0\0\2", b"\0\0\0\1", 12, 128, 0, False, keys, keys, "tunnel",
                      (_ts("10.3.0.1/32"), _ts("fd00:10::1/128")), (_ts("10.2.0.0/24"), _ts("fd00:2::/64")),
                      ("127.0.0.1", 4500), ("192.0.2.2", 4500), True, 32, "aes128gcm16", None)
    Updown(gateway).on_event(up)  # type: ignore[arg-type]
    assert log.read_text().splitlines() == ["up-client 10.3.0.1/32 10.2.0.0/24",
                                            "up-client-v6 fd00:10::1/128 fd00:2::/64"]
