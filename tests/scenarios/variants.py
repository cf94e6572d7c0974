"""Failing variants of the library's scenarios: each copies a scenario folder and breaks one
thing (the PSK, a proposal, a selector, an identity, a NAT box knob, the path), with the cause
`ipsec-lab diagnose` must name and words its paragraph must hold. tests/scenarios/test_diagnose.py
runs them (root); tests/data/make_runs.py keeps a few run folders for the unit tests."""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from lab.net.notebook import install_lab_certificates
from lab.net.scenario import LIBRARY, read_yaml


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{path} has no {old!r}"
    path.write_text(text.replace(old, new, 1))


def set_steps(folder: Path, steps: list, nat: dict | None = None, params: dict | None = None,
              gateways: dict | None = None) -> None:
    """Replace the scenario's steps (and knobs); its checks go, the steps are what fails."""
    data = _plain(read_yaml(folder / "scenario.yaml"))
    data["steps"], data["checks"] = steps, []
    if nat is not None:
        data["nat"] = nat
    if params is not None:
        data["params"] = params
    if gateways is not None:
        data["gateways"] = gateways
    (folder / "scenario.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def install_certificates(folder: Path, nodes: list[str], bits: int = 3072) -> None:
    """Certificates and pubkey auth: IKE_AUTH then carries a certificate and a signature, over 1000 bytes."""
    install_lab_certificates(folder, nodes, bits)


@dataclass
class Variant:
    name: str
    scenario: str
    breaks: str                         # what was broken, in words
    cause: str                          # what diagnose must name
    words: list[str] = field(default_factory=list)  # what its paragraph must say
    edit: Callable[[Path], None] = lambda folder: None
    never: list[str] = field(default_factory=list)  # what it must not say (a cause its evidence contradicts)

    def make(self, where: Path) -> Path:
        folder = where / self.name
        shutil.copytree(LIBRARY / self.scenario, folder)
        self.edit(folder)
        return folder


def _psk(folder: Path) -> None:
    replace(folder / "hosts/gwa/swanctl.conf", "a-lab-only-psk", "not-the-lab-psk")


def _init_only(folder: Path, initiator: str = "gwa", timeout: int = 10) -> None:
    set_steps(folder, [{"start": "all"}, {"initiate": {"node": initiator, "child": "net", "timeout": timeout}}])


def _ike_proposal(folder: Path) -> None:
    replace(folder / "hosts/gwa/swanctl.conf", "proposals = aes128gcm16-prfsha256-x25519",
            "proposals = aes256-sha384-ecp384")
    _init_only(folder)


def _esp_proposal(folder: Path) -> None:
    replace(folder / "hosts/gwa/swanctl.conf", "esp_proposals = aes128gcm16", "esp_proposals = aes256-sha512")
    _init_only(folder)


def _selector(folder: Path) -> None:
    replace(folder / "hosts/gwa/swanctl.conf", "remote_ts = 10.2.0.0/24", "remote_ts = 10.9.0.0/24")
    _init_only(folder)


def _identity(folder: Path) -> None:
    replace(folder / "hosts/gwa/swanctl.conf", "id = gwb.lab", "id = gwc.lab")
    _init_only(folder)


def _udp_lost(folder: Path) -> None:
    set_steps(folder, [{"start": "all"}, {"initiate": {"node": "gwa", "child": "net", "timeout": 9}}],
              nat={"nat": {"loss": 1.0, "impair": "ike"}})


def _udp4500_blocked(folder: Path) -> None:
    set_steps(folder, [{"start": "all"},
                       {"run": {"node": "nat", "cmd": "iptables -A FORWARD -p udp --dport 4500 -j DROP"}},
                       {"initiate": {"node": "gwa", "child": "net", "timeout": 9}}])


def _esp_blocked(folder: Path) -> None:
    set_steps(folder, [{"start": "all"}, {"run": {"node": "router", "cmd": "iptables -A FORWARD -p esp -j DROP"}},
                       {"initiate": {"node": "gwa", "child": "net"}},
                       {"ping": {"from": "hosta", "to": "10.2.0.10", "count": 3}}])


def _ike_fragments(folder: Path) -> None:
    install_certificates(folder, ["gwa", "gwb"])
    set_steps(folder, [{"start": "all"}, {"mtu": {"node": "gwa", "intf": "gwa-wan", "mtu": 1000}},
                       {"run": {"node": "router", "cmd": "iptables -A FORWARD -f -j DROP"}},
                       {"initiate": {"node": "gwa", "child": "net", "timeout": 8}}])


def _nat_expiry(folder: Path) -> None:
    set_steps(folder, [{"start": "all"}, {"initiate": {"node": "gwa", "child": "net"}},
                       {"ping": {"from": "hosta", "to": "10.2.0.10", "count": 2}},
                       {"wait": {"seconds": 6}},
                       {"ping": {"from": "hostb", "to": "10.1.0.10", "count": 3}}],
              nat={"nat": {"udp_timeout": 3}})


def _pmtud(folder: Path) -> None:
    # the data planes send their outer packets without DF, so the hole is behind gwb: its LAN
    # link has a smaller MTU and gwb's ICMP fragmentation-needed never leaves it
    set_steps(folder, [{"start": "all"}, {"initiate": {"node": "gwa", "child": "net"}},
                       {"mtu": {"node": "gwb", "intf": "gwb-lan", "mtu": 1200}},
                       {"run": {"node": "gwb", "cmd": "iptables -A OUTPUT -p icmp --icmp-type fragmentation-needed "
                                                      "-j DROP"}},
                       {"ping": {"from": "hosta", "to": "10.2.0.10", "count": 2}},
                       {"transfer": {"from": "hosta", "to": "10.2.0.10", "bytes": "1M", "timeout": 6}}])


def _unfixed(folder: Path, upto: int, drop: tuple[int, ...] = ()) -> None:
    """The library scenario's own failure without its fix: its steps up to `upto` (1-based),
    `expect: fail` removed (so the failure fails the run), steps in `drop` left out."""
    data = _plain(read_yaml(folder / "scenario.yaml"))
    steps = []
    for index, step in enumerate(data["steps"][:upto], start=1):
        if index in drop:
            continue
        step = dict(step)
        step.pop("expect", None)
        steps.append(step)
    data["steps"], data["checks"] = steps, []
    (folder / "scenario.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


VARIANTS = [
    Variant("wrong-psk", "net2net-nat", "gwa's PSK changed", "psk-mismatch",
            ["pre-shared keys", "not the same", "hosts/gwa/swanctl.conf", "hosts/gwb/swanctl.conf"],
            lambda f: (_psk(f), _init_only(f))),
    Variant("wrong-psk-strongswan-initiates", "mixed-strongswan", "the initiator's (strongSwan's) PSK changed",
            "psk-mismatch", ["pre-shared keys", "gwb"], lambda f: (_psk(f), _init_only(f))),
    Variant("ike-proposal", "net2net-nat", "gwa proposes aes256-sha384-ecp384 for IKE", "proposal-mismatch",
            ["NO_PROPOSAL_CHOSEN", "IKE_SA_INIT", "aes256-sha384-ecp384", "aes128gcm16-prfsha256-x25519"],
            _ike_proposal),
    Variant("esp-proposal", "net2net", "gwa proposes aes256-sha512 for ESP", "proposal-mismatch",
            ["NO_PROPOSAL_CHOSEN", "ESP aes256-sha512", "aes128gcm16", "esp_proposals"], _esp_proposal),
    Variant("selector", "net2net-nat", "gwa's remote_ts is 10.9.0.0/24", "ts-mismatch",
            ["TS_UNACCEPTABLE", "10.9.0.0/24", "10.2.0.0/24", "remote_ts"], _selector),
    Variant("identity", "net2net", "gwa expects gwb to be gwc.lab", "identity-mismatch",
            ["gwc.lab", "gwb.lab", "remote"], _identity),
    Variant("udp-lost", "net2net-nat", "the NAT box drops every IKE packet (loss: 1.0, impair: ike)", "no-answer",
            ["IKE_SA_INIT", "nat-inside", "never on nat-outside", "UDP 500"], _udp_lost),
    Variant("udp4500-blocked", "net2net-nat", "the NAT box drops UDP 4500", "no-answer",
            ["IKE_AUTH", "UDP 4500"], _udp4500_blocked),
    Variant("esp-blocked", "net2net", "the router drops IP protocol 50", "esp-blocked",
            ["IP protocol 50", "gwa-wan", "internet", "encap = yes"], _esp_blocked),
    Variant("ike-fragments", "net2net", "certificates, gwa's uplink MTU 1000, the router drops IP fragments",
            "ike-fragments-lost", ["IKE_AUTH", "1000", "fragment", "RFC 7383"], _ike_fragments),
    Variant("nat-expiry", "net2net-nat", "the NAT box forgets idle UDP mappings after 3 s (udp_timeout: 3)",
            "nat-mapping-expired", ["udp_timeout: 3", "20 s", "keepalive", "198.51.100.1:4500"], _nat_expiry),
    Variant("esp-blocked-unfixed", "esp-blocked", "the library's esp-blocked without its fix (encap = yes)",
            "esp-blocked", ["IP protocol 50", "drop_esp", "encap = yes"], lambda f: _unfixed(f, 4, drop=(3,))),
    Variant("mtu-blackhole-unfixed", "mtu-blackhole", "the library's mtu-blackhole without its fixes",
            "pmtud-black-hole", ["1400", "block_icmp_frag on router", "fragmentation needed", "MSS"],
            lambda f: _unfixed(f, 5, drop=(4,))),
    Variant("nat-keepalive-timeout-unfixed", "nat-keepalive-timeout",
            "the library's nat-keepalive-timeout without its fix (keepalives every 3 s)", "nat-mapping-expired",
            ["udp_timeout: 8", "every 20 s", "keepalive"], lambda f: _unfixed(f, 6, drop=(5,))),
    Variant("ike-fragmentation-unfixed", "ike-fragmentation",
            "the library's ike-fragmentation without its fix (fragmentation = yes)", "ike-fragments-lost",
            ["IKE_AUTH", "drop_fragments on router", "fragmentation = no", "RFC 7383"],
            lambda f: _unfixed(f, 2)),
    Variant("pmtud", "net2net-nat", "MTU 1200 on gwb's LAN, gwb drops its ICMP fragmentation-needed",
            "pmtud-black-hole", ["1200", "fragmentation needed", "MSS"], _pmtud),
]

__all__ = ["VARIANTS", "Variant", "install_certificates", "replace", "set_steps"]
