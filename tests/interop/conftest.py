"""A two-gateway Mininet network for strongSwan interop tests, torn down completely.

    swgwa (203.0.113.1, LAN 10.1.0.1 on lo) ---- swgwb (203.0.113.2, LAN 10.2.0.1 on lo)

Each gateway has a private /var/run (charon.pid). In `s2s_lab` each has a StrongSwan object
whose swanctl.conf describes the site-to-site connection `s2s` with child `net`. In
`interop_lab` the gateways start empty: a test puts charon (`lab.use_strongswan`) or our
daemon (`lab.use_ours`) on each, with the swanctl.conf that `render_conf` writes.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lab.conf.writer import render, render_s2s_conf
from lab.net.capture import Capture
from lab.net.gateway import OurGateway
from lab.net.lab import Lab
from lab.net.radius import FreeRadius, FreeRadiusError
from lab.net.radius import check_installed as check_radius_installed
from lab.net.strongswan import StrongSwan, StrongSwanError, check_installed, usable_proposals
from lab.net.topology import LabTopo, Param

MARKER = "ipsec-lab-interop"


class TwoGateways(LabTopo):
    """swgwa and swgwb on one link, each LAN address on its loopback; with ipv6, IPv6 on both
    nodes and an IPv6 LAN address on each loopback too (LAN6: fd00:1::1, fd00:2::1)."""

    name = "interop"
    params = {"ipv6": Param(False, "IPv6 on the nodes, an IPv6 LAN address on each loopback")}

    def build(self, ipv6: bool = False) -> None:
        for name, gw in GATEWAYS.items():
            self.node(name, "gateway", lo_addrs=[f"{gw['lan']}/32"] + ([f"{LAN6[name]}/128"] if ipv6 else []))
        self.link("swgwa", "swgwa-eth0", f"{GATEWAYS['swgwa']['wan']}/24",
                  "swgwb", "swgwb-eth0", f"{GATEWAYS['swgwb']['wan']}/24")
PSK = "a-lab-only-psk"
GATEWAYS = {
    "swgwa": {"wan": "203.0.113.1", "lan": "10.1.0.1", "local_ts": "10.1.0.0/24", "id": "gwa.lab"},
    "swgwb": {"wan": "203.0.113.2", "lan": "10.2.0.1", "local_ts": "10.2.0.0/24", "id": "gwb.lab"},
}
PEER = {"swgwa": "swgwb", "swgwb": "swgwa"}
LAN6 = {"swgwa": "fd00:1::1", "swgwb": "fd00:2::1"}  # with TwoGateways(ipv6=True)


def _require_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("interop tests need root (network namespaces): run them as root")
    try:
        check_installed()
    except StrongSwanError as err:
        pytest.fail(str(err), pytrace=False)
    for tool, package in (("tshark", "tshark"), ("tcpdump", "tcpdump"), ("mnexec", "mininet"), ("ip", "iproute2"),
                          ("ping", "iputils-ping"), ("ifconfig", "net-tools")):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: apt-get install {package}", pytrace=False)


# ------------------------------------------------------------------ capture


Tcpdump = Capture  # tcpdump in a node, complete pcap on stop (lab.net.capture)


# ------------------------------------------------------------------ the lab


@dataclass
class S2SLab:
    net: Any
    workdir: Path
    nodes: dict[str, Any]
    swans: dict[str, StrongSwan]
    captures: list[Tcpdump] = field(default_factory=list)
    ours: dict[str, OurGateway] = field(default_factory=dict)

    def capture(self, gateway: str, filename: str, bpf: str = "udp port 500 or udp port 4500") -> Tcpdump:
        dump = Tcpdump(self.nodes[gateway], f"{gateway}-eth0", self.workdir / filename, bpf)
        self.captures.append(dump)
        return dump.start()

    def use_strongswan(self, gateway: str, swanctl_conf: str, **options: Any) -> StrongSwan:
        """charon (not started yet) for `gateway`, its files in workdir/<gateway>/."""
        if gateway in self.ours:
            raise ValueError(f"{gateway} already runs our daemon")
        swan = StrongSwan(self.nodes[gateway], self.workdir / gateway, gateway, **options)
        swan.write_config(swanctl_conf)
        self.swans[gateway] = swan
        return swan

    def use_ours(self, gateway: str, swanctl_conf: str, **options: Any) -> OurGateway:
        """Our `ipsec-lab daemon` (not started yet) for `gateway`, its files in workdir/<gateway>/."""
        if gateway in self.swans:
            raise ValueError(f"{gateway} already runs charon")
        ours = OurGateway(self.nodes[gateway], self.workdir / gateway, gateway, **options)
        ours.write_config(swanctl_conf)
        self.ours[gateway] = ours
        return ours

    def swanctl_dir(self, gateway: str) -> Path:
        """The swanctl directory (x509/, x509ca/, private/ below it) of whatever runs on `gateway`."""
        if gateway in self.ours:
            return self.ours[gateway].swanctl_dir
        return self.swans[gateway].swanctl_dir

    def ping(self, gateway: str, count: int = 3) -> int:
        """Ping the peer gateway's LAN address from this one's; returns replies received."""
        src, dst = GATEWAYS[gateway]["lan"], GATEWAYS[PEER[gateway]]["lan"]
        out = self.nodes[gateway].cmd(f"ping -n -c {count} -i 0.2 -W 2 -I {src} {dst}")
        for line in out.splitlines():
            if " received" in line:
                return int(line.split(",")[1].split()[0])
        return 0


def _s2s_conf(gateway: str, initiator: bool) -> str:
    me, peer = GATEWAYS[gateway], GATEWAYS[PEER[gateway]]
    return render_s2s_conf(
        local_addrs=me["wan"], remote_addrs=peer["wan"] if initiator else "%any",
        local_id=me["id"], remote_id=peer["id"], psk=PSK,
        local_ts=me["local_ts"], remote_ts=peer["local_ts"], usable=usable_proposals)


def render_conf(gateway: str, *, initiator: bool, auth: str = "psk", proposals: str = "aes128gcm16-prfsha256-x25519",
                esp_proposals: str = "aes128gcm16", dpd_delay: str | None = None, cert: str = "gw.pem",
                connection: dict[str, str] | None = None, child: dict[str, str] | None = None) -> str:
    """swanctl.conf of `gateway` for connection `s2s` with child `net`, in the subset both charon
    and our daemon read. `auth` is psk or pubkey (our certificate x509/<cert>, the CA in x509ca/,
    the key in private/). The responder accepts any remote address."""
    me, peer = GATEWAYS[gateway], GATEWAYS[PEER[gateway]]
    conn: dict[str, Any] = {"version": 2, "local_addrs": me["wan"],
                            "remote_addrs": peer["wan"] if initiator else "%any", "proposals": proposals,
                            "mobike": False}
    if dpd_delay is not None:
        conn["dpd_delay"] = dpd_delay
    conn.update(connection or {})
    children = {"local_ts": me["local_ts"], "remote_ts": peer["local_ts"], "esp_proposals": esp_proposals,
                "mode": "tunnel"}
    children.update(child or {})
    conn["local"] = {"auth": auth, "id": me["id"]} | ({"certs": cert} if auth == "pubkey" else {})
    conn["remote"] = {"auth": auth, "id": peer["id"]}
    conn["children"] = {"net": children}
    tree: dict[str, Any] = {"connections": {"s2s": conn}}
    if auth == "psk":
        tree["secrets"] = {"ike-s2s": {"id-local": me["id"], "id-remote": peer["id"], "secret": PSK}}
    return render(tree)


def _build_lab(tmp_path_factory: pytest.TempPathFactory, with_strongswan: bool, ipv6: bool = False):
    _require_tools()
    workdir = tmp_path_factory.mktemp(MARKER)
    net = Lab(TwoGateways(ipv6=ipv6), workdir, "interop").start()
    lab = S2SLab(net=net, workdir=workdir, nodes=dict(net.nodes), swans={})
    problems = []
    try:
        if with_strongswan:
            for name in GATEWAYS:
                lab.use_strongswan(name, _s2s_conf(name, initiator=(name == "swgwa")))
        yield lab
    finally:
        for dump in lab.captures:
            try:
                dump.stop()
            except Exception as err:  # keep tearing down
                problems.append(f"stopping tcpdump: {err}")
        for ours in lab.ours.values():
            try:
                ours.stop()
            except Exception as err:
                problems.append(f"stopping our daemon on {ours.name}: {err}")
        for swan in lab.swans.values():
            try:
                swan.stop()
            except Exception as err:
                problems.append(f"stopping charon on {swan.name}: {err}")
        problems += net.stop()
        if problems:
            pytest.fail("interop teardown was not clean: " + "; ".join(problems), pytrace=False)


@pytest.fixture
def s2s_lab(tmp_path_factory: pytest.TempPathFactory):
    """swgwa (initiator config) and swgwb (responder config) joined by one link; charon not
    started. Everything is removed afterwards, and a leftover fails the test."""
    yield from _build_lab(tmp_path_factory, with_strongswan=True)


@pytest.fixture
def interop_lab(tmp_path_factory: pytest.TempPathFactory):
    """swgwa and swgwb joined by one link, nothing running on them: put charon or our daemon on
    each with `use_strongswan` / `use_ours`. Everything is removed afterwards (our daemons too),
    and a leftover fails the test."""
    yield from _build_lab(tmp_path_factory, with_strongswan=False)


@pytest.fixture
def interop_lab_v6(tmp_path_factory: pytest.TempPathFactory):
    """interop_lab with IPv6 on both gateways and IPv6 LAN addresses (LAN6) on their loopbacks."""
    yield from _build_lab(tmp_path_factory, with_strongswan=False, ipv6=True)


# FreeRADIUS for the RADIUS interop tests: one set-up for all of them (radiusd on swgwb)
RADIUS_SECRET = "a-lab-radius-secret"
RADIUS_MFA = Path(__file__).resolve().parents[2] / "scenarios" / "radius-mfa" / "hosts" / "server"
ALICE_TOTP = "6GGNSNVD7SM7TUGXLQXSCS2ZE4PL7HRY"  # her TOTP-Secret in radius-mfa's users file


def freeradius(lab: S2SLab, client: str, *, name: str = "radius", port: int = 1812,
               load: Path | None = None, client_name: str = "gateway") -> FreeRadius:
    """FreeRADIUS 3.2 on swgwb answering the gateway `client` with RADIUS_SECRET, from `load` (a
    scenario's hosts/<node>/ folder) if given; the test fails with the reason when it is not installed."""
    try:
        check_radius_installed()
    except FreeRadiusError as err:
        pytest.fail(str(err), pytrace=False)
    server = FreeRadius(lab.nodes["swgwb"], lab.workdir / name, name, port=port)
    if load is not None:
        server.load(load)
    server.add_client(client_name, GATEWAYS[client]["wan"], RADIUS_SECRET)
    return server
