"""auth = eap-radius and the eap-radius plugin's settings (strongSwan's names, here in the
ipsec-lab section of swanctl.conf): read into Config.radius, each mistake a file:line error."""
from __future__ import annotations

import pytest

from lab.conf.swanctl import ConfigError, parse_swanctl

CONN = """connections {
  rw {
    local {
      auth = psk
      id = gw.lab
    }
    remote {
      auth = %s
    }
  }
}
secrets {
  ike-gw {
    secret = lab-only-psk
  }
}
"""

RADIUS = """ipsec-lab {
  eap-radius {
    secret = testing123
    retransmit_tries = 3
    retransmit_timeout = 1.5
    retransmit_base = 2
    servers {
      primary {
        address = 10.9.0.2
      }
      backup {
        address = 10.9.0.3
        secret = other
        auth_port = 11812
        preference = 10
      }
    }
  }
}
"""


def test_servers_and_retransmission_are_read():
    config = parse_swanctl(CONN % "eap-radius" + RADIUS)
    assert config.connections["rw"].remote.method == "eap-radius"
    radius = config.radius
    assert radius is not None
    assert (radius.retransmit_tries, radius.retransmit_timeout, radius.retransmit_base) == (3, 1.5, 2.0)
    primary, backup = radius.servers
    assert (primary.name, primary.address, primary.secret, primary.auth_port) == ("primary", "10.9.0.2",
                                                                                  b"testing123", 1812)
    assert (backup.secret, backup.auth_port, backup.preference) == (b"other", 11812, 10)
    assert radius.accounting is False
    assert parse_swanctl(CONN % "eap-radius" + RADIUS.replace("retransmit_base = 2", "accounting = yes")
                         ).radius.accounting is True


def test_defaults_are_strongswans():
    config = parse_swanctl(CONN % "eap-radius" + RADIUS.replace("    retransmit_tries = 3\n", "")
                           .replace("    retransmit_timeout = 1.5\n", "").replace("    retransmit_base = 2\n", ""))
    assert (config.radius.retransmit_tries, config.radius.retransmit_timeout, config.radius.retransmit_base) == \
        (4, 2.0, 1.4)


@pytest.mark.parametrize("text, line, message", [
    (CONN % "eap-radius", 8, "needs a RADIUS server"),
    (CONN % "eap-radius" + RADIUS.replace("address = 10.9.0.2", "address = radius.lab"), 25,
     "expected an IP address"),
    (CONN % "eap-radius" + RADIUS.replace("    secret = testing123\n", ""), 23, "has no secret"),
    (CONN % "eap-radius" + RADIUS.replace("retransmit_timeout = 1.5", "retransmit_timeout = soon"), 21,
     "expected a number"),
    (CONN % "eap-radius" + RADIUS.replace("auth_port = 11812", "auth_port = 70000"), 30, "1-65535"),
    (CONN % "eap-radius" + RADIUS.replace("preference = 10", "nas_port = 10"), 31, "unknown key 'nas_port'"),
    (CONN % "eap-radius" + RADIUS.replace("retransmit_base = 2", "accounting = maybe"), 22,
     "expected yes or no"),
    (CONN % "eap-radius" + RADIUS.replace("retransmit_base = 2", "dae = yes"), 22,
     "Dynamic Authorization Extensions (RFC 5176) is not supported"),
    (CONN % "eap-radius" + RADIUS.replace("      primary {\n        address = 10.9.0.2\n      }\n", "")
     .replace("      backup {\n        address = 10.9.0.3\n        secret = other\n        auth_port = 11812\n"
              "        preference = 10\n      }\n", ""), 18, "needs a server"),
])
def test_mistakes_name_file_and_line(text, line, message):
    with pytest.raises(ConfigError) as caught:
        parse_swanctl(text, "gw/swanctl.conf")
    assert f"gw/swanctl.conf:{line}:" in str(caught.value) and message in str(caught.value)


def test_eap_radius_is_no_client_round():
    text = CONN.replace("auth = psk\n      id = gw.lab", "auth = eap-radius").replace("auth = %s", "auth = psk")
    with pytest.raises(ConfigError, match=r":4: .*remote round of a gateway"):
        parse_swanctl(text + RADIUS, "gw/swanctl.conf")
