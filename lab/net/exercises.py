"""Exercises: a library scenario broken in one place, run by a trainee who finds what is wrong
from the run's report, its captures and `ipsec-lab diagnose`; exercises/answers/ says what was
wrong, how to see it and the fix. This list is the one source: `ipsec-lab exercises` lists and
runs it, and the tests' failing variants (tests/scenarios/variants.py, mistakes.py) are built
from the same definitions.

    ipsec-lab exercises              # the list
    ipsec-lab exercises run 3        # run exercise 3 broken (root), into out/exercises/03
"""
from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .scenario import LIBRARY, read_yaml

ANSWERS = Path(__file__).resolve().parents[2] / "exercises" / "answers"
GWA, GWB = "hosts/gwa/swanctl.conf", "hosts/gwb/swanctl.conf"


class ExerciseError(ValueError):
    """An exercise that cannot be made (its scenario changed under it); says which and why."""


# ------------------------------------------------------------------ editing a copied scenario


def plain(value: Any) -> Any:
    """A scenario.yaml as read by lab.net.scenario.read_yaml, as plain dicts and lists (to dump again)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def replace(path: Path, old: str, new: str) -> None:
    """Replace the first `old` in the file by `new`; an error if `old` is not there."""
    text = path.read_text()
    if old not in text:
        raise ExerciseError(f"{path} has no {old!r}")
    path.write_text(text.replace(old, new, 1))


def set_steps(folder: Path, steps: list, nat: dict | None = None, params: dict | None = None,
              gateways: dict | None = None) -> None:
    """Replace the scenario's steps (and knobs); its checks go, the steps are what fails."""
    data = plain(read_yaml(folder / "scenario.yaml"))
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
    from .notebook import install_lab_certificates

    install_lab_certificates(folder, nodes, bits)


def init_only(folder: Path, node: str = "gwa", child: str = "net", timeout: int = 10) -> None:
    """Steps: start everything, `node` initiates `child` - nothing else."""
    set_steps(folder, [{"start": "all"}, {"initiate": {"node": node, "child": child, "timeout": timeout}}])


def init_ping(folder: Path, ping: dict | None = None) -> None:
    """Steps: start, gwa initiates net, hosta pings hostb (or `ping`)."""
    set_steps(folder, [{"start": "all"}, {"initiate": {"node": "gwa", "child": "net", "timeout": 10}},
                       {"ping": ping or {"from": "hosta", "to": "10.2.0.10", "count": 3}}])


# ------------------------------------------------------------------ the breaks


def _wrong_psk(folder: Path) -> None:
    replace(folder / GWA, "a-lab-only-psk", "not-the-lab-psk")
    init_only(folder)


def _ike_proposal(folder: Path) -> None:
    replace(folder / GWA, "proposals = aes128gcm16-prfsha256-x25519", "proposals = aes256-sha384-ecp384")
    init_only(folder)


def _esp_no_overlap(folder: Path) -> None:
    replace(folder / GWA, "esp_proposals = aes128gcm16", "esp_proposals = aes256-sha512")
    init_only(folder)


def _ike_dh(folder: Path) -> None:
    replace(folder / GWA, "proposals = aes128gcm16-prfsha256-x25519", "proposals = aes128gcm16-prfsha256-ecp256")
    init_only(folder)


def _selector(folder: Path) -> None:
    replace(folder / GWA, "remote_ts = 10.2.0.0/24", "remote_ts = 10.9.0.0/24")
    init_only(folder)


def _ids_swapped(folder: Path) -> None:
    text = (folder / GWA).read_text()
    text = text.replace("id = gwa.lab", "id = @@A@@").replace("id = gwb.lab", "id = gwa.lab")
    (folder / GWA).write_text(text.replace("id = @@A@@", "id = gwb.lab"))
    init_only(folder)


def _cert_wrong_id(folder: Path) -> None:
    # gwb's certificate says gwb.lab; both configurations call gwb gwb.example
    install_certificates(folder, ["gwa", "gwb"], bits=2048)
    replace(folder / GWB, "id = gwb.lab", "id = gwb.example")
    replace(folder / GWA, "id = gwb.lab", "id = gwb.example")
    init_only(folder)


def _transport_one_side(folder: Path) -> None:
    replace(folder / GWA, "esp_proposals = aes128gcm16", "esp_proposals = aes128gcm16\n        mode = transport")
    init_ping(folder)


def _remote_addrs(folder: Path) -> None:
    replace(folder / GWA, "remote_addrs = 198.51.100.2", "remote_addrs = 198.51.100.20")
    init_only(folder)


def _ts_narrowed(folder: Path) -> None:
    # gwb protects only the upper half of site A's LAN: strongSwan narrows, the SA comes up, hosta is left out
    replace(folder / GWB, "remote_ts = 10.1.0.0/24", "remote_ts = 10.1.0.128/25")
    init_ping(folder)


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


# ------------------------------------------------------------------ the exercises


@dataclass(frozen=True)
class Exercise:
    number: int
    name: str
    scenario: str          # the library scenario it breaks
    title: str             # what the exercise is about, without giving the answer away
    sees: str              # what the trainee sees when it runs
    breaks: str            # what was broken, in words (for the trainer; the answer says more)
    cause: str             # the cause `ipsec-lab diagnose` names (lab/viz/diagnose.py)
    edit: Callable[[Path], None]

    def make(self, folder: str | Path) -> Path:
        """The broken scenario: a copy of the library's `scenario` in `folder`, edited. A scenario
        folder already there (an earlier run of an exercise) is replaced; anything else is kept and refused."""
        folder = Path(folder)
        if folder.exists():
            if not folder.is_dir() or any(folder.iterdir()) and not (folder / "scenario.yaml").exists():
                raise ExerciseError(f"{folder} exists and holds no scenario: choose another --out, or empty it")
            shutil.rmtree(folder)
        shutil.copytree(LIBRARY / self.scenario, folder)
        self.edit(folder)
        return folder

    def make_for_trainee(self, folder: str | Path) -> Path:
        """The broken scenario as a trainee gets it: its title says which exercise, its description
        (at the top of report.md) that the steps stop where the break shows."""
        folder = self.make(folder)
        data = plain(read_yaml(folder / "scenario.yaml"))
        data["title"] = f"Exercise {self.number}: {self.title} ({self.scenario}, broken in one place)"
        data["description"] = (f"The library's {self.scenario} with one thing broken, and steps only up to where it "
                               f"shows. When it works: {' '.join(str(data.get('description', '')).split())}")
        (folder / "scenario.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
        return folder

    @property
    def answer(self) -> Path:
        return ANSWERS / f"{self.number:02}-{self.name}.md"


EXERCISES = [
    Exercise(1, "wrong-psk", "net2net-nat", "The tunnel will not come up",
             "gwa's initiate step fails: the peer answered AUTHENTICATION_FAILED",
             "gwa's PSK changed", "psk-mismatch", _wrong_psk),
    Exercise(2, "ike-proposal", "net2net-nat", "Not even the first exchange",
             "gwa's initiate step fails: the peer answered NO_PROPOSAL_CHOSEN",
             "gwa proposes aes256-sha384-ecp384 for IKE", "proposal-mismatch", _ike_proposal),
    Exercise(3, "esp-no-overlap", "net2net-nat", "An IKE SA without a tunnel",
             "gwa's initiate step fails: CHILD_SA net not created, the peer answered NO_PROPOSAL_CHOSEN",
             "gwa's esp_proposals aes256-sha512, gwb's aes128gcm16", "proposal-mismatch", _esp_no_overlap),
    Exercise(4, "ike-dh", "net2net-nat", "Nearly the same proposal",
             "gwa's initiate step fails: the peer answered NO_PROPOSAL_CHOSEN",
             "IKE proposals differ only in the DH group", "proposal-mismatch", _ike_dh),
    Exercise(5, "selector", "net2net-nat", "Which traffic goes in the tunnel",
             "gwa's initiate step fails: CHILD_SA net not created, the peer answered TS_UNACCEPTABLE",
             "gwa's remote_ts is 10.9.0.0/24", "ts-mismatch", _selector),
    Exercise(6, "ids-swapped", "net2net-nat", "Who is who",
             "gwa's initiate step fails: the peer answered AUTHENTICATION_FAILED",
             "gwa's local and remote id swapped", "identity-mismatch", _ids_swapped),
    Exercise(7, "cert-wrong-id", "net2net-nat", "Certificates instead of a pre-shared key",
             "gwa's initiate step fails with an authentication error about gwb's certificate",
             "gwb's certificate is for gwb.lab, the configs say gwb.example", "certificate-identity", _cert_wrong_id),
    Exercise(8, "transport-one-side", "net2net", "Tunnel or transport",
             "gwa's initiate step fails (NegotiationFailed); the ping after it is skipped",
             "gwa mode = transport, gwb tunnel", "mode-mismatch", _transport_one_side),
    Exercise(9, "remote-addrs", "net2net-nat", "Nobody answers",
             "gwa's initiate step gets no result within 10 s",
             "gwa's remote_addrs is 198.51.100.20, gwb is .2", "remote-addrs", _remote_addrs),
    Exercise(10, "udp-lost", "net2net-nat", "Nobody answers, again",
             "gwa's initiate step gets no result within 9 s",
             "the NAT box drops every IKE packet (loss: 1.0, impair: ike)", "no-answer", _udp_lost),
    Exercise(11, "udp4500-blocked", "net2net-nat", "Half a handshake",
             "gwa's initiate step gets no result within 9 s",
             "the NAT box drops UDP 4500", "no-answer", _udp4500_blocked),
    Exercise(12, "esp-blocked", "net2net", "Up, but nothing passes",
             "the tunnel comes up; hosta's ping through it gets no answer",
             "the router drops IP protocol 50", "esp-blocked", _esp_blocked),
    Exercise(13, "ike-fragments", "net2net", "Certificates over a small path",
             "gwa's initiate step gets no result within 8 s",
             "certificates, gwa's uplink MTU 1000, the router drops IP fragments", "ike-fragments-lost",
             _ike_fragments),
    Exercise(14, "nat-expiry", "net2net-nat", "It worked a moment ago",
             "the tunnel is up and hosta's ping passes; 6 s later hostb's ping gets no answer",
             "the NAT box forgets idle UDP mappings after 3 s (udp_timeout: 3)", "nat-mapping-expired", _nat_expiry),
    Exercise(15, "pmtud", "net2net-nat", "Pings pass, files do not",
             "the tunnel is up and the ping passes; the 1 MiB transfer times out",
             "MTU 1200 on gwb's LAN, gwb drops its ICMP fragmentation-needed",
             "pmtud-black-hole", _pmtud),
    Exercise(16, "ts-narrowed", "net2net-nat", "Up, but not for everyone",
             "the tunnel comes up; hosta's ping through it gets no answer",
             "gwb's remote_ts is half of gwa's local_ts; hosta is outside", "outside-selectors", _ts_narrowed),
]


def exercise(key: str | int) -> Exercise:
    """An exercise by number ("3", 3) or name ("wrong-psk"); an ExerciseError naming the choices."""
    for e in EXERCISES:
        if str(key) in (str(e.number), f"{e.number:02}", e.name):
            return e
    raise ExerciseError(f"no exercise {key!r}: `ipsec-lab exercises` lists them (1-{len(EXERCISES)})")


__all__ = ["ANSWERS", "EXERCISES", "Exercise", "ExerciseError", "exercise", "init_only", "init_ping",
           "install_certificates", "plain", "replace", "set_steps"]
