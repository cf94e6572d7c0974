"""MOBIKE (RFC 4555) between our daemon and strongSwan's charon: the initiator's address
changes under it (a second address on its interface, then the first one deleted) and the
same IKE SA and CHILD_SA carry on from the new address, in both roles. Without MOBIKE our
initiator reauthenticates. Every capture must dissect cleanly in tshark and agree with our decoder.

Our daemon runs on swgwa (203.0.113.1), charon on swgwb (203.0.113.2), as in test_ike_strongswan.py.
"""
from __future__ import annotations

import pytest

from .conftest import GATEWAYS
from .test_ike_strongswan import OURS, ROLES, SWAN, ExchangeType, installed_pairs, make_pair, wait_until

pytestmark = [pytest.mark.interop, pytest.mark.root]

NEW = {OURS: "203.0.113.11", SWAN: "203.0.113.12"}


def move(pair, gateway: str) -> None:
    """`gateway` gets a second address on its link, then loses its first one (which, with
    promote_secondaries, leaves the second and the routes in place; without it the kernel deletes
    the secondary address with the primary)."""
    node, intf = pair.lab.nodes[gateway], f"{gateway}-eth0"
    node.cmd(f"sysctl -qw net.ipv4.conf.{intf}.promote_secondaries=1")
    node.cmd(f"ip addr add {NEW[gateway]}/24 dev {intf}")
    node.cmd(f"ip addr del {GATEWAYS[gateway]['wan']}/24 dev {intf}")


def hosts(pair) -> tuple[tuple[str, str], tuple[str, str]] | None:
    """((our local, our remote), (strongSwan's local, its remote)) addresses of the one IKE SA each."""
    agreed = pair.agreement()
    if agreed is None:
        return None
    ours, theirs = agreed
    return ((ours["local"].rsplit(":", 1)[0], ours["remote"].rsplit(":", 1)[0]),
            (theirs["local-host"], theirs["remote-host"]))


@pytest.mark.parametrize("role", ROLES)
def test_mobike_address_change(interop_lab, role):
    pair = make_pair(interop_lab, role, ours_conf={"mobike": "yes"}, swan_conf={"mobike": "yes"})
    pair.up()
    ours, theirs = pair.settled()
    assert ours["mobike"] is True
    assert pair.lab.ping(OURS) == 3
    mover = OURS if pair.ours_initiates else SWAN
    other = SWAN if mover == OURS else OURS
    move(pair, mover)
    new, fixed = NEW[mover], GATEWAYS[other]["wan"]
    want = ((new, fixed), (fixed, new)) if mover == OURS else ((fixed, new), (new, fixed))
    wait_until(lambda: hosts(pair) == want, 10, f"both sides to run the IKE SA from {new}")
    after_ours, after_theirs = pair.settled()
    # the same IKE SA, moved (RFC 4555 §3.5), not rebuilt
    assert (after_ours["spi_i"], after_ours["spi_r"]) == (ours["spi_i"], ours["spi_r"])
    wait_until(lambda: pair.lab.ping(OURS, 2) == 2, 10, "the tunnel to carry traffic again")
    assert pair.lab.ping(SWAN) == 3
    log = pair.swan.log_text()
    if [c["spi_in"] for c in after_ours["children"]] != [c["spi_in"] for c in ours["children"]]:
        # kernel-libipsec cannot change an installed SA's addresses: charon rekeys the CHILD_SA instead
        changed = log.index("endpoint changed from", log.index("peer supports MOBIKE"))
        assert "queueing CHILD_REKEY task" in log[changed:], pair.swan.log_tail(60)
        assert pair.events("ChildSaRekeyed"), "the CHILD_SA was rekeyed, not rebuilt"
    updates = [m for m in pair.messages(exchange="INFORMATIONAL", response=False)
               if "N(UPDATE_SA_ADDRESSES)" in m["payloads"]]
    assert updates and updates[-1]["src"].startswith(new), updates
    assert "N(COOKIE2)" in updates[-1]["payloads"] and "N(NAT_DETECTION_DESTINATION_IP)" in updates[-1]["payloads"]
    if mover == OURS:
        assert f"remote endpoint changed from {GATEWAYS[OURS]['wan']}[4500] to {new}[4500]" in log, \
            pair.swan.log_tail(60)
    else:
        assert "requesting address change using MOBIKE" in log, pair.swan.log_tail(60)
        checks = [r for r in pair.trace() if r["kind"] == "note" and r["what"] == "return_routability_ok"]
        assert checks, "our responder checked return routability before moving its ESP"
    moved = pair.events("AddressesUpdated")
    assert moved and moved[-1]["remote" if mover == SWAN else "local"][0] == new
    messages = pair.finish()
    sources = {m["src"] for m in messages if m["exchange"] == ExchangeType.INFORMATIONAL and not m["is_response"]}
    assert new in sources, sources


def test_without_mobike_our_initiator_reauthenticates(interop_lab):
    pair = make_pair(interop_lab, "ours-initiator", ours_conf={"mobike": "no", "local_addrs": "%any"},
                     swan_conf={"mobike": "yes"})
    pair.up()
    ours, _ = pair.settled()
    assert ours["mobike"] is False
    move(pair, OURS)
    new = NEW[OURS]
    wait_until(lambda: hosts(pair) is not None and hosts(pair)[0][0] == new, 15,
               f"a new IKE SA from {new}")
    after, theirs = pair.settled()
    assert (after["spi_i"], after["spi_r"]) != (ours["spi_i"], ours["spi_r"])  # rebuilt, not moved
    assert theirs["remote-host"] == new
    wait_until(lambda: pair.lab.ping(OURS, 2) == 2, 10, "the new tunnel to carry traffic")
    assert [r for r in pair.trace() if r["kind"] == "note" and r["what"] == "reauthenticate"]
    pair.finish()


def test_without_mobike_strongswan_initiator_reauthenticates(interop_lab):
    pair = make_pair(interop_lab, "ours-responder", ours_conf={"mobike": "no"},
                     swan_conf={"mobike": "no", "local_addrs": "%any"})
    pair.up()
    ours, theirs = pair.settled()
    assert ours["mobike"] is False
    old_children = installed_pairs(ours)
    move(pair, SWAN)
    new = NEW[SWAN]
    wait_until(lambda: hosts(pair) is not None and hosts(pair)[0][1] == new, 15, f"a new IKE SA from {new}")
    after, after_theirs = pair.settled()
    assert (after["spi_i"], after["spi_r"]) != (ours["spi_i"], ours["spi_r"])  # rebuilt, not moved
    assert not installed_pairs(after) & old_children
    assert after_theirs["local-host"] == new
    wait_until(lambda: pair.lab.ping(OURS, 2) == 2, 10, "the new tunnel to carry traffic")
    log = pair.swan.log_text()
    assert "reauthenticating IKE_SA due to address change" in log, pair.swan.log_tail(60)
    assert not [m for m in pair.messages(exchange="INFORMATIONAL")
                if "N(UPDATE_SA_ADDRESSES)" in m["payloads"]]
    pair.finish()
