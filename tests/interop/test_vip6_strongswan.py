"""IPv6 virtual IPs between our stack and strongSwan 5.9.8, in both roles: the client asks with
`vips = 0.0.0.0, ::` (an empty INTERNAL_IP4_ADDRESS and INTERNAL_IP6_ADDRESS, 0.0.0.0/0 and ::/0
in TSi), the gateway answers from an IPv4 and an IPv6 pool (`addrs = fd00:10::/120`), and
ping and ping -6 then cross the tunnel from the client's virtual IPs to the gateway's LAN.

Both gateways' CFG_REPLY is read on the wire (tshark, with the keys our daemon exports): the
INTERNAL_IP6_ADDRESS attribute is 17 octets, the address and a prefix length (RFC 7296 §3.15.1),
and ours has charon's prefix length.

Our daemon runs on swgwa (203.0.113.1, LAN 10.1.0.1 and fd00:1::1), charon on swgwb
(203.0.113.2, LAN 10.2.0.1 and fd00:2::1)."""
from __future__ import annotations

import re
from typing import Any

import pytest

from lab.conf.writer import render

from .conftest import GATEWAYS, LAN6, PSK
from .test_ike_strongswan import OURS, SWAN, Pair, tshark_with_keys

pytestmark = [pytest.mark.interop, pytest.mark.root]

POOLS = {"v4": {"addrs": "10.3.0.0/24"}, "v6": {"addrs": "fd00:10::/120"}}
VIPS = ["10.3.0.1", "fd00:10::1"]  # the first address of each pool
CHARON_PREFIX = "64"  # what charon 5.9.8 sends with an INTERNAL_IP6_ADDRESS (its ike_config.c)


def lan(gateway: str) -> str:
    return f"{GATEWAYS[gateway]['local_ts']}, {LAN6[gateway].rsplit(':', 1)[0]}:/64"


def gateway_conf(gateway: str) -> str:
    """The gateway on `gateway`: PSK, both pools, its IPv4 and IPv6 LAN to the client's virtual IPs."""
    me, peer = GATEWAYS[gateway], GATEWAYS["swgwb" if gateway == "swgwa" else "swgwa"]
    conn: dict[str, Any] = {"version": 2, "local_addrs": me["wan"], "remote_addrs": "%any",
                            "proposals": "aes128gcm16-prfsha256-x25519", "mobike": False, "pools": "v4, v6",
                            "local": {"auth": "psk", "id": me["id"]}, "remote": {"auth": "psk", "id": peer["id"]},
                            "children": {"net": {"local_ts": lan(gateway), "esp_proposals": "aes128gcm16",
                                                 "mode": "tunnel"}}}
    return render({"connections": {"s2s": conn}, "pools": POOLS,
                   "secrets": {"ike-rw": {"id-local": me["id"], "id-remote": peer["id"], "secret": PSK}}})


def client_conf(gateway: str) -> str:
    """The road warrior on `gateway`: a virtual IP of each family, the gateway's two LANs."""
    me, peer_name = GATEWAYS[gateway], "swgwb" if gateway == "swgwa" else "swgwa"
    peer = GATEWAYS[peer_name]
    conn: dict[str, Any] = {"version": 2, "local_addrs": me["wan"], "remote_addrs": peer["wan"],
                            "proposals": "aes128gcm16-prfsha256-x25519", "mobike": False, "vips": "0.0.0.0, ::",
                            "local": {"auth": "psk", "id": me["id"]}, "remote": {"auth": "psk", "id": peer["id"]},
                            "children": {"net": {"remote_ts": lan(peer_name), "esp_proposals": "aes128gcm16",
                                                 "mode": "tunnel"}}}
    return render({"connections": {"s2s": conn},
                   "secrets": {"ike-rw": {"id-local": me["id"], "id-remote": peer["id"], "secret": PSK}}})


def ping(node: Any, destination: str, count: int = 3) -> int:
    """Replies to `count` pings (ping -6 for an IPv6 destination) from `node`, source chosen by routing."""
    six = "-6 " if ":" in destination else ""
    out = node.cmd(f"ping {six}-n -c {count} -i 0.2 -W 2 {destination}")
    found = re.search(r"(\d+) received", out)
    return int(found.group(1)) if found else 0


def cfg_reply(pair: Pair) -> list[tuple[str, str, str]]:
    """(attribute type, length, IPv6 prefix length) of every attribute of the CFG_REPLY, as tshark
    decodes it with our exported keys."""
    out = tshark_with_keys(pair.dump.path, pair.ours.keys_dir, "-Y", "isakmp.cfg.type == 2", "-T", "fields",
                           "-E", "occurrence=a", "-E", "separator=|", "-e", "isakmp.cfg.attr.type",
                           "-e", "isakmp.cfg.attr.length", "-e", "isakmp.cfg.attr.internal_ip6_address",
                           "-e", "isakmp.cfg.attr.internal_ip6_address.prefix")
    assert out.returncode == 0, out.stderr
    rows = [line.split("|") for line in out.stdout.splitlines() if line.strip()]
    assert len(rows) == 1, f"one CFG_REPLY: {out.stdout}"
    types, lengths, addresses, prefixes = (column.split(",") for column in rows[0])
    assert VIPS[1] in addresses, rows[0]
    attrs = [(t, n, "") for t, n in zip(types, lengths)]
    six = [i for i, (t, _, _) in enumerate(attrs) if t == "8"]  # INTERNAL_IP6_ADDRESS
    for i, prefix in zip(six, prefixes):
        attrs[i] = (attrs[i][0], attrs[i][1], prefix)
    return attrs


def internal_ip6_address(attrs: list[tuple[str, str, str]]) -> tuple[str, str]:
    (found,) = [(length, prefix) for t, length, prefix in attrs if t == "8"]
    return found


def test_our_client_gets_an_ipv6_virtual_ip_from_charon(interop_lab_v6):
    lab = interop_lab_v6
    ours = lab.use_ours(OURS, client_conf(OURS))
    swan = lab.use_strongswan(SWAN, gateway_conf(SWAN))
    pair = Pair(lab, ours, swan, True, lab.capture(OURS, "ike.pcap"))
    pair.up()
    ours_sa, theirs = pair.settled()
    assert ours_sa["virtual_ips"] == VIPS, ours_sa
    assert sorted(theirs.get("remote-vips", [])) == sorted(VIPS), theirs
    child = ours_sa["children"][0]
    assert child["local_ts"] == VIPS and sorted(child["remote_ts"]) == sorted(["10.2.0.0/24", "fd00:2::/64"]), child
    node = lab.nodes[OURS]
    assert f"inet6 {VIPS[1]}/128" in node.cmd("ip -6 addr show dev ipsec0"), node.cmd("ip addr show dev ipsec0")
    assert ping(node, LAN6[SWAN]) == 3, (ours.log_tail(), swan.log_tail())
    assert ping(node, GATEWAYS[SWAN]["lan"]) == 3
    pair.finish()
    # charon's CFG_REPLY: the IPv6 address in 17 octets, prefix length 64
    assert internal_ip6_address(cfg_reply(pair)) == ("17", CHARON_PREFIX)


def test_charon_client_gets_an_ipv6_virtual_ip_from_our_gateway(interop_lab_v6):
    lab = interop_lab_v6
    ours = lab.use_ours(OURS, gateway_conf(OURS))
    swan = lab.use_strongswan(SWAN, client_conf(SWAN))
    pair = Pair(lab, ours, swan, False, lab.capture(OURS, "ike.pcap"))
    pair.up()
    ours_sa, theirs = pair.settled()
    assert ours_sa["assigned_ips"] == VIPS, ours_sa
    assert sorted(theirs.get("local-vips", [])) == sorted(VIPS), theirs
    assert sorted(ours_sa["children"][0]["remote_ts"]) == sorted(VIPS), ours_sa
    node = lab.nodes[SWAN]
    assert ping(node, LAN6[OURS]) == 3, (ours.log_tail(), swan.log_tail(), node.cmd("ip -6 route show table all"))
    assert ping(node, GATEWAYS[OURS]["lan"]) == 3
    pair.finish()
    # our CFG_REPLY on the wire: the same attribute as charon's (RFC 7296 §3.15.1: 17 octets)
    assert internal_ip6_address(cfg_reply(pair)) == ("17", CHARON_PREFIX)


def _client_updown_run(lab, run: str, ours: bool) -> dict[str, dict[str, str]]:
    """charon as the gateway on swgwb, a client on swgwa (ours or charon) with the dumping updown
    script; the client's environments of up-client and up-client-v6."""
    from .test_updown_strongswan import _script, _wait_file

    script, folder = _script(lab, run, OURS)
    conf = client_conf(OURS).replace("esp_proposals = aes128gcm16", f"esp_proposals = aes128gcm16\n        "
                                                                   f"updown = {script}", 1)
    assert script in conf
    gateway = lab.use_strongswan(SWAN, gateway_conf(SWAN))
    gateway.start()
    gateway.load_all()
    client = lab.use_ours(OURS, conf) if ours else lab.use_strongswan(OURS, conf)
    client.start()
    if not ours:
        client.load_all()
    client.initiate(child="net")
    dumps = {verb: _wait_file(folder / verb) for verb in ("up-client", "up-client-v6")}
    for name, peer in ((OURS, client), (SWAN, gateway)):
        peer.stop()
        lab.swans.pop(name, None)
        lab.ours.pop(name, None)
    return dumps


def test_updown_environment_of_a_dual_stack_client_equals_charons(interop_lab_v6):
    """The PLUTO_* variables our client gives its updown script, both virtual IPs among them
    (PLUTO_MY_SOURCEIP, PLUTO_MY_SOURCEIP4_1, PLUTO_MY_SOURCEIP6_1), are charon's."""
    charon = _client_updown_run(interop_lab_v6, "charon", ours=False)
    ours = _client_updown_run(interop_lab_v6, "ours", ours=True)
    assert charon["up-client-v6"]["PLUTO_MY_SOURCEIP6_1"] == VIPS[1], charon
    assert charon["up-client"]["PLUTO_MY_SOURCEIP4_1"] == VIPS[0], charon
    for verb in ("up-client", "up-client-v6"):
        assert ours[verb] == charon[verb], verb
