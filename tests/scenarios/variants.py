"""Failing variants of the library's scenarios: each copies a scenario folder and breaks one
thing (the PSK, a proposal, a selector, an identity, a NAT box knob, the path), with the cause
`ipsec-lab diagnose` must name and words its paragraph must hold. Those that are also trainees'
exercises (`Variant.of`) take their definition from lab.net.exercises, the one list. tests/scenarios/test_diagnose.py
runs them (root); tests/data/make_runs.py keeps a few run folders for the unit tests."""
from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lab.net.exercises import (
    exercise,
    init_only,
    install_certificates,
    plain,
    replace,
    set_steps,
)
from lab.net.scenario import LIBRARY, read_yaml

_plain = plain


@dataclass
class Variant:
    name: str
    scenario: str
    breaks: str                         # what was broken, in words
    cause: str                          # what diagnose must name
    words: list[str] = field(default_factory=list)  # what its paragraph must say
    edit: Callable[[Path], None] = lambda folder: None
    never: list[str] = field(default_factory=list)  # what it must not say (a cause its evidence contradicts)

    @classmethod
    def of(cls, name: str, words: list[str], never: list[str] | None = None) -> Variant:
        """The exercise `name` of lab.net.exercises (one definition for the trainee and the tests)."""
        e = exercise(name)
        return cls(e.name, e.scenario, e.breaks, e.cause, words, e.edit, never or [])

    def make(self, where: Path) -> Path:
        folder = where / self.name
        shutil.copytree(LIBRARY / self.scenario, folder)
        self.edit(folder)
        return folder


def _psk(folder: Path) -> None:
    replace(folder / "hosts/gwa/swanctl.conf", "a-lab-only-psk", "not-the-lab-psk")
    init_only(folder)


def _esp_proposal(folder: Path) -> None:
    replace(folder / "hosts/gwa/swanctl.conf", "esp_proposals = aes128gcm16", "esp_proposals = aes256-sha512")
    init_only(folder)


def _identity(folder: Path) -> None:
    replace(folder / "hosts/gwa/swanctl.conf", "id = gwb.lab", "id = gwc.lab")
    init_only(folder)


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


def _crl_from_start(folder: Path, gw: str = "ours") -> None:
    """certificate-revoked with the CRL in gw's x509crl/ from the start; client1 (revoked) logs in."""
    (folder / "hosts/gw/x509crl").mkdir(exist_ok=True)
    shutil.copy2(folder / "hosts/gw/crl/ca.crl", folder / "hosts/gw/x509crl/ca.crl")
    set_steps(folder, [{"start": "all"}, {"initiate": {"node": "client1", "child": "lan", "timeout": 5}}],
              gateways={"gw": gw, "client1": "ours", "client2": "strongswan"})


VARIANTS = [
    Variant.of("wrong-psk", ["pre-shared keys", "not the same", "hosts/gwa/swanctl.conf", "hosts/gwb/swanctl.conf"]),
    Variant("wrong-psk-strongswan-initiates", "mixed-strongswan", "the initiator's (strongSwan's) PSK changed",
            "psk-mismatch", ["pre-shared keys", "gwb"], _psk),
    Variant.of("ike-proposal", ["NO_PROPOSAL_CHOSEN", "IKE_SA_INIT", "aes256-sha384-ecp384",
                                "aes128gcm16-prfsha256-x25519"]),
    Variant("esp-proposal", "net2net", "gwa proposes aes256-sha512 for ESP", "proposal-mismatch",
            ["NO_PROPOSAL_CHOSEN", "ESP aes256-sha512", "aes128gcm16", "esp_proposals"], _esp_proposal),
    Variant.of("selector", ["TS_UNACCEPTABLE", "10.9.0.0/24", "10.2.0.0/24", "remote_ts"]),
    Variant("identity", "net2net", "gwa expects gwb to be gwc.lab", "identity-mismatch",
            ["gwc.lab", "gwb.lab", "remote"], _identity),
    Variant.of("udp-lost", ["IKE_SA_INIT", "nat-inside", "never on nat-outside", "UDP 500",
                            "loss: 1.0 (impair: ike) on nat"], never=["check that the peer's daemon runs"]),
    Variant.of("udp4500-blocked", ["IKE_AUTH", "UDP 4500",
                                   "`iptables -A FORWARD -p udp --dport 4500 -j DROP` on nat (step 2)"]),
    Variant.of("esp-blocked", ["IP protocol 50", "gwa-wan", "internet", "encap = yes",
                               "`iptables -A FORWARD -p esp -j DROP` on router (step 2)"]),
    Variant.of("ike-fragments", ["IKE_AUTH", "1000", "fragment", "RFC 7383"]),
    Variant.of("nat-expiry", ["udp_timeout: 3", "20 s", "keepalive", "198.51.100.1:4500"]),
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
    Variant.of("pmtud", ["1200", "fragmentation needed", "MSS"]),
    Variant("certificate-expired-unfixed", "certificate-expired",
            "the library's certificate-expired without its fix: client1 (ipsec-lab) meets gw's expired certificate",
            "certificate-expired", ["the VPN certificate has expired", "hosts/gw/x509/gw.pem", "01 December 2025",
                                    "13801", "renew", "hosts/gw/swanctl.conf:13"],
            lambda f: _unfixed(f, 2), never=["x509ca", "revoked"]),
    Variant("certificate-expired-strongswan", "certificate-expired",
            "the library's certificate-expired without its fix: client2 (strongSwan) meets gw's expired certificate",
            "certificate-expired", ["the VPN certificate has expired", "subject certificate invalid",
                                    "hosts/gw/x509/gw.pem", "01 December 2025", "13801"],
            lambda f: _unfixed(f, 3, drop=(2,)), never=["x509ca", "revoked"]),
    Variant("certificate-revoked-ours", "certificate-revoked",
            "certificate-revoked with the CRL applied from the start: gw (ipsec-lab) refuses client1",
            "certificate-revoked", ["has been revoked", "hosts/gw/x509crl/", "key compromise", "client1",
                                    "hosts/client1/x509/client1.pem", "(serial 0x"],
            _crl_from_start, never=["expired", "13801"]),
    Variant("certificate-revoked-strongswan", "certificate-revoked",
            "certificate-revoked with strongSwan as gw and the CRL from the start: charon refuses client1",
            "certificate-revoked", ["has been revoked", "certificate was revoked on", "key compromise",
                                    "hosts/client1/x509/client1.pem"],
            lambda f: _crl_from_start(f, "strongswan"), never=["expired", "13801"]),
    Variant("missing-intermediate-unfixed", "missing-intermediate",
            "the library's missing-intermediate without its fix: client1 (ipsec-lab) meets gw's lone certificate",
            "missing-intermediate", ["intermediate certificate is missing", "'CN=ipsec-lab servers CA,O=ipsec-lab'",
                                     "hosts/client1/x509ca/root.pem", "hosts/gw/x509ca/", "13801",
                                     "gw does not have it"],
            lambda f: _unfixed(f, 2), never=["expired", "revoked"]),
    Variant("missing-intermediate-strongswan", "missing-intermediate",
            "the library's missing-intermediate without its fix: client2 (strongSwan) meets gw's lone certificate",
            "missing-intermediate", ["intermediate certificate is missing", "no issuer certificate found",
                                     "O=ipsec-lab, CN=ipsec-lab servers CA", "hosts/gw/x509ca/", "13801"],
            lambda f: _unfixed(f, 3, drop=(2,)), never=["expired", "revoked"]),
    Variant("missing-intermediate-charon-gw", "missing-intermediate",
            "missing-intermediate with strongSwan as gw: charon, too, sends its certificate alone",
            "missing-intermediate", ["intermediate certificate is missing", "'CN=ipsec-lab servers CA,O=ipsec-lab'",
                                     "hosts/gw/x509ca/", "13801"],
            lambda f: set_steps(f, [{"start": "all"}, {"initiate": {"node": "client1", "child": "lan", "timeout": 5}}],
                                gateways={"gw": "strongswan", "client1": "ours", "client2": "strongswan"}),
            never=["expired", "revoked"]),
    Variant("road-warrior-ttls-unfixed", "road-warrior-ttls",
            "the library's road-warrior-ttls without its fix: client1 expects the TLS server to be gw.lab",
            "eap-server-certificate", ["names radius.lab", "'gw.lab'", "aaa_id = radius.lab",
                                       "hosts/client1/swanctl.conf:", "eap-radius", "before EAP-TTLS"],
            lambda f: _unfixed(f, 2), never=["hosts/gw/x509/gw.pem as run holds"]),
    Variant("overlapping-subnets-unfixed", "overlapping-subnets",
            "the library's overlapping-subnets without its fix: 192.168.1.0/24 on both sides of the tunnel",
            "overlapping-subnets", ["both offices use the same addresses", "192.168.1.0/24", "NETMAP",
                                    "hosts/gwa/swanctl.conf:", "192.168.1.20"],
            lambda f: _unfixed(f, 3), never=["selectors do not overlap"]),
    Variant("dpd-flapping-unfixed", "dpd-flapping",
            "the library's dpd-flapping without its fix: the tunnel must stay up on the lossy link",
            "dpd-flapping", ["keeps dropping and reconnecting", "loss_every: 5 on router", "dpd_delay = 1s",
                             "hosts/gwa/swanctl.conf:10", "--retransmit-tries 0", "dpd_delay = 30s"],
            lambda f: set_steps(f, [{"start": "all"}, {"initiate": {"node": "gwa", "child": "net"}, "name": "up"},
                                    {"set": {"node": "router", "loss_every": 5}}, {"wait": 6},
                                    {"check": {"sa": {"node": "gwa", "child": "net", "spi_kept_since": "up"}}}]),
            never=["UDP 500", "blocked"]),
]

__all__ = ["VARIANTS", "Variant", "init_only", "install_certificates", "plain", "replace", "set_steps"]


def _windows_defaults(folder: Path) -> None:
    # Windows' defaults against the hardened gateway, and nothing else: the first part of the scenario
    init_only(folder, node="client1", child="lan")


def _windows_no_eku(folder: Path) -> None:
    # the gateway certificate without serverAuth: the first part of windows-certificate
    init_only(folder, node="client1", child="lan")


VARIANTS += [
    Variant("windows-modp1024", "windows-defaults", "Windows' default proposals (MODP-1024) against a hardened gateway",
            "windows-13868", ["Windows error 13868", "policy match error", "MODP-1024", "RFC 8247",
                              "NegotiateDH2048_AES256 = 2", "aes256-sha256-modp1024"], _windows_defaults),
    Variant("windows-no-eku", "windows-certificate", "the gateway certificate lacks the serverAuth EKU",
            "windows-13801", ["Windows error 13801", "credentials are unacceptable", "serverAuth",
                              "--flag serverAuth"], _windows_no_eku),
]


def _mfa_wrong_code(folder: Path) -> None:
    # bob's phone enrolled with an old secret, and no re-enrolment: the first part of radius-mfa
    init_only(folder, node="client2", child="lan", timeout=5)


def _mfa_code_reused(folder: Path) -> None:
    # alice logs in, off, and in again with the same code (within one 30-second step)
    set_steps(folder, [{"start": "all"}, {"run": {"node": "client1", "cmd": "sleep $(( 31 - $(date +%s) % 30 ))",
                                                  "timeout": 40}},
                       {"initiate": {"node": "client1", "child": "lan"}}, {"terminate": {"node": "client1", "ike": "rw"}},
                       {"initiate": {"node": "client1", "child": "lan", "timeout": 5}}])


def _radius_down(folder: Path, one_server: bool = False) -> None:
    # the primary RADIUS server killed before bob logs in; with one_server gw knows no other
    if one_server:
        conf = folder / "hosts/gw/swanctl.conf"
        text = conf.read_text()
        start = text.index("      server2 {")
        conf.write_text(text[:start] + text[text.index("      }\n", start) + len("      }\n"):])
    set_steps(folder, [{"start": "all"}, {"kill": ["server"]},
                       {"initiate": {"node": "client2", "child": "lan", "timeout": 25}}])


VARIANTS += [
    Variant("radius-mfa-wrong-code", "radius-mfa", "bob's authenticator app holds another secret than FreeRADIUS",
            "mfa-code-wrong", ["the one-time code was wrong", "one-time code wrong (or the phone's clock is off)",
                               "set the phone's time to automatic", "enrol the app again",
                               "hosts/client2/swanctl.conf", "bob on client2"], _mfa_wrong_code,
            never=["password is wrong", "already used"]),
    Variant("radius-mfa-code-reused", "radius-mfa", "alice logs in again at once with the code she has just used",
            "mfa-code-reused", ["had been used before", "RFC 6238 §5.2", "wait until the app shows a new code",
                                "alice on client1"], _mfa_code_reused, never=["code was wrong", "clock"]),
    Variant("radius-failover-unfixed", "radius-failover",
            "the primary RADIUS server dies and bob's login is expected to work", "radius-timeout",
            ["bob on client2 waited", "s and then saw an authentication failure", "did not answer",
             "sent the Access-Request 3 times",
             "radiusd on server was killed at step 2", "sends the next logins to server2", "“try again” works"],
            _radius_down, never=["password", "one-time code"]),
    Variant("radius-failover-one-server", "radius-failover",
            "the primary RADIUS server dies and gw knows no second server", "radius-timeout",
            ["did not answer", "knows no other RADIUS server", "hosts/gw/swanctl.conf", "single point of failure"],
            lambda f: _radius_down(f, one_server=True), never=["server2"]),
]
