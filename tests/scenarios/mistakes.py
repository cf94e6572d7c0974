"""Mistakes trainers make when they write their own scenario from scenarios/README.md: each
copies a library scenario and makes one such mistake (a PSK off by one character, identities
swapped or of another type, proposals that differ only in the DH group, selectors that are a
subset on one side, a child name the configuration lacks, a wrong remote_addrs, a certificate
for another name, transport mode on one side, encap or MOBIKE on one side, a ping outside the
selectors). Those that are also trainees' exercises (`Variant.of`) take their definition
from lab.net.exercises, the one list. `cause` is what `ipsec-lab diagnose` must name, `words` what its paragraph must
say, `never` what it must not say (a cause its own evidence contradicts).

tests/scenarios/test_diagnose.py runs them (root); tests/data/make_runs.py keeps their run
folders in tests/data/runs/ for tests/unit/test_diagnose_mistakes.py."""
from __future__ import annotations

from pathlib import Path

import yaml

from lab.net.exercises import (
    exercise,
    init_only,
    init_ping,
    install_certificates,
    plain,
    replace,
    set_steps,
)
from lab.net.scenario import read_yaml

from .variants import Variant

GWA, GWB = "hosts/gwa/swanctl.conf", "hosts/gwb/swanctl.conf"


def _psk_one_char(folder: Path) -> None:
    replace(folder / GWA, '"a-lab-only-psk"', '"a-lab-only-psK"')
    init_only(folder)


def _psk_one_char_ours(folder: Path) -> None:
    # mixed-strongswan: strongSwan (gwa) initiates, ours (gwb) checks the AUTH and refuses
    replace(folder / GWB, '"a-lab-only-psk"', '"a-lab-only-psk "')
    init_only(folder)


def _id_ip(folder: Path) -> None:
    # gwa names gwb by its address; gwb calls itself gwb.lab (an FQDN)
    text = (folder / GWA).read_text()
    (folder / GWA).write_text(text.replace("      id = gwb.lab", "      id = 198.51.100.2")
                              .replace("id-b = gwb.lab", "id-b = 198.51.100.2"))
    init_only(folder)


def _id_email(folder: Path) -> None:
    # gwa calls itself admin@gwa.lab (an email address); gwb expects the FQDN gwa.lab
    text = (folder / GWA).read_text()
    (folder / GWA).write_text(text.replace("      id = gwa.lab", "      id = admin@gwa.lab")
                              .replace("id-a = gwa.lab", "id-a = admin@gwa.lab"))
    init_only(folder)


def _esp_pfs(folder: Path) -> None:
    # PFS groups differ: the first CHILD_SA (in IKE_AUTH, no KE) comes up, its rekey cannot
    replace(folder / GWA, "esp_proposals = aes128gcm16", "esp_proposals = aes128gcm16-ecp256")
    replace(folder / GWB, "esp_proposals = aes128gcm16", "esp_proposals = aes128gcm16-x25519")
    set_steps(folder, [{"start": "all"}, {"initiate": {"node": "gwa", "child": "net", "timeout": 10}},
                       {"ping": {"from": "hosta", "to": "10.2.0.10", "count": 2}},
                       {"rekey": {"node": "gwa", "child": "net", "timeout": 8}}])


def _ts_proto(folder: Path) -> None:
    # the addresses overlap but the protocols do not: TS_UNACCEPTABLE although the subnets match
    replace(folder / GWA, "remote_ts = 10.2.0.0/24", "remote_ts = 10.2.0.0/24[tcp]")
    replace(folder / GWB, "local_ts = 10.2.0.0/24", "local_ts = 10.2.0.0/24[udp]")
    init_only(folder)


def _child_name(folder: Path) -> None:
    init_only(folder, child="lan")


def _child_name_strongswan(folder: Path) -> None:
    init_only(folder, child="lan")


def _cert_wrong_id_ours(folder: Path) -> None:
    # gwa's (ours) certificate says gwa.lab; both configurations call gwa gwa.example
    install_certificates(folder, ["gwa", "gwb"], bits=2048)
    replace(folder / GWA, "id = gwa.lab", "id = gwa.example")
    replace(folder / GWB, "id = gwa.lab", "id = gwa.example")
    init_only(folder)


def _encap_one_side(folder: Path) -> None:
    # net2net expects plain ESP (protocol 50) on the internet; gwa forces UDP encapsulation
    replace(folder / GWA, "mobike = no", "mobike = no\n    encap = yes")


def _mobike_one_side(folder: Path) -> None:
    replace(folder / "hosts/gw/swanctl.conf", "    mobike = yes", "    mobike = no")
    data = plain(read_yaml(folder / "scenario.yaml"))
    data["steps"], data["checks"] = data["steps"][:4], []
    (folder / "scenario.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def _responder_remote_addrs(folder: Path) -> None:
    # gwb only answers gwa's private address; behind the NAT box gwa comes from 198.51.100.1
    replace(folder / GWB, "remote_addrs = %any", "remote_addrs = 172.16.0.2")
    init_only(folder)


def _psk_ids(folder: Path) -> None:
    # gwb's secret is filed under other ids than its connection's (strongSwan takes a secret when one id matches)
    replace(folder / GWB, "id-a = gwa.lab", "id-a = gwa.example")
    replace(folder / GWB, "id-b = gwb.lab", "id-b = gwb.example")
    init_only(folder)


def _ping_outside(folder: Path) -> None:
    init_ping(folder, {"from": "hosta", "to": "10.2.1.10", "count": 3})


def _strongswan_encap(folder: Path) -> None:
    # net2net expects plain ESP (protocol 50) on the internet; gwb runs strongSwan instead of ipsec-lab
    data = plain(read_yaml(folder / "scenario.yaml"))
    data["gateways"]["gwb"] = "strongswan"
    (folder / "scenario.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def _own_address(folder: Path) -> None:
    # strongSwan (kernel-libipsec) needs an address of its own inside its local_ts
    replace(folder / GWB, "local_ts = 10.2.0.0/24", "local_ts = 10.2.0.10/32")
    replace(folder / GWA, "remote_ts = 10.2.0.0/24", "remote_ts = 10.2.0.10/32")
    init_ping(folder)


# what no paragraph may say: the lab's pre-shared key itself
SECRET = "a-lab-only-psk"

MISTAKES = [
    Variant("psk-one-char", "net2net-nat", "gwa's PSK differs from gwb's in its last character", "psk-mismatch",
            ["tried 1 shared key for 'gwb.lab' - 'gwa.lab', but MAC mismatched",
             "both are 14 characters long and differ in 1 of them (the first at character 14)",
             "hosts/gwa/swanctl.conf:29", "hosts/gwb/swanctl.conf:29"], _psk_one_char,
            never=[SECRET, "identities do not match"]),
    Variant("psk-one-char-ours", "mixed-strongswan", "gwb's (ours) PSK has a trailing space", "psk-mismatch",
            ["gwb (ipsec-lab) refused gwa's IKE_AUTH", "shared key MIC does not match", "gwb's has a space more at its end"],
            _psk_one_char_ours, never=[SECRET, "are the same"]),
    Variant("psk-ids", "net2net-nat", "gwb's secret is for gwa.example and gwb.example", "psk-missing",
            ["no shared key found for 'gwb.lab' - 'gwa.lab'", "ids gwa.example, gwb.example (hosts/gwb/swanctl.conf:26)",
             "id-a = gwa.lab and id-b = gwb.lab"], _psk_ids, never=[SECRET, "MAC mismatched", "differ in"]),
    Variant.of("ids-swapped", ["no matching peer config found", "swapped",
                               "id = gwa.lab in the local section (hosts/gwa/swanctl.conf:10)",
                               "id = gwb.lab in the remote section (hosts/gwa/swanctl.conf:14)"],
               never=["pre-shared keys", "MAC"]),
    Variant("id-ip", "net2net-nat", "gwa names gwb by its IP address, gwb calls itself gwb.lab", "identity-mismatch",
            ["'198.51.100.2', an IPv4 address (ID_IPV4_ADDR)", "'gwb.lab', an FQDN (ID_FQDN)",
             "id = gwb.lab in gwa's remote section (hosts/gwa/swanctl.conf:14)"], _id_ip, never=["swapped"]),
    Variant("id-email", "net2net-nat", "gwa calls itself admin@gwa.lab, gwb expects gwa.lab", "identity-mismatch",
            ["'admin@gwa.lab', an email address (ID_RFC822_ADDR)", "never matches an FQDN",
             "id = gwa.lab in gwa's local section (hosts/gwa/swanctl.conf:10"], _id_email, never=["swapped"]),
    Variant.of("ike-dh", ["received proposals unacceptable",
                          "differ only in the Diffie-Hellman group: gwa has ecp256 and gwb x25519",
                          "proposals in hosts/gwa/swanctl.conf:6"], never=["no encryption algorithm in common"]),
    Variant.of("esp-no-overlap", ["no acceptable proposal found",
                                  "ESP aes256-sha512 (esp_proposals in hosts/gwa/swanctl.conf:20)",
                                  "aes128gcm16 (esp_proposals in hosts/gwb/swanctl.conf:20)",
                                  "no encryption algorithm in common"],
               never=["Diffie-Hellman", "Not even the IKE SA"]),
    Variant("esp-pfs", "net2net-nat", "esp_proposals differ only in the PFS group; the rekey fails", "proposal-mismatch",
            ["CREATE_CHILD_SA", "differ only in the Diffie-Hellman group: gwa has ecp256 and gwb x25519", "RFC 7296 §1.2"],
            _esp_pfs, never=["Not even the IKE SA"]),
    Variant.of("ts-narrowed", ["10.1.0.128/25", "narrowed", "remote_ts = 10.1.0.128/25 (hosts/gwb/swanctl.conf:19)",
                               "10.1.0.10 is outside", "remote_ts = 10.1.0.0/24 in hosts/gwb/swanctl.conf:19"],
               never=["TS_UNACCEPTABLE", "do not overlap", "ESP"]),
    Variant("ts-proto", "net2net-nat", "same subnets, remote_ts [tcp] vs local_ts [udp]", "ts-mismatch",
            ["traffic selectors 10.2.0.0/24[tcp] === 10.1.0.0/24 unacceptable", "the addresses overlap, but the protocols",
             "remote_ts = 10.2.0.0/24[udp] in hosts/gwa/swanctl.conf:19"], _ts_proto, never=["no address in common"]),
    Variant("child-name", "net2net-nat", "initiate names child lan, the config has net", "missing-name",
            ["no connection has a child named 'lan'", "child: net in scenario.yaml:18", "(hosts/gwa/swanctl.conf:17)"],
            _child_name),
    Variant("child-name-strongswan", "mixed-strongswan", "strongSwan initiates child lan, the config has net",
            "missing-name", ["CHILD_SA config 'lan' not found", "child: net in scenario.yaml"], _child_name_strongswan),
    Variant.of("remote-addrs", ["198.51.100.20 is an address no node of this lab has",
                                "gwb, the gateway gwa should reach, is at 198.51.100.2",
                                "remote_addrs = 198.51.100.2 in hosts/gwa/swanctl.conf:5"],
               never=["check that the peer's daemon runs"]),
    Variant("responder-remote-addrs", "net2net-nat", "gwb's remote_addrs is gwa's private address", "no-ike-config",
            ["no IKE config found for 198.51.100.2...198.51.100.1, sending NO_PROPOSAL_CHOSEN",
             "172.16.0.2 is gwa's own address inside the NAT box nat", "both take aes128gcm16-prfsha256-x25519",
             "remote_addrs = 198.51.100.1 (or %any) in hosts/gwb/swanctl.conf:5"], _responder_remote_addrs,
            never=["accepts only", "in common", "mismatch"]),
    Variant("responder-remote-addrs-ours", "net2net", "gwb's (ours) remote_addrs is not gwa's address", "no-ike-config",
            ["no connection for these addresses", "remote_addrs = 198.51.100.9 (hosts/gwb/swanctl.conf:5)",
             "remote_addrs = 192.0.2.2 (or %any)"],
            lambda f: (replace(f / GWB, "remote_addrs = %any", "remote_addrs = 198.51.100.9"), init_only(f)),
            never=["accepts only", "in common", "mismatch"]),
    Variant.of("cert-wrong-id", ["identity gwb.example is not in the peer's certificate", "gwb.lab (subjectAltName)",
                                 "hosts/gwb/x509/gw.pem", "subjectAltName gwb.example"], never=["x509ca"]),
    Variant("cert-wrong-id-ours", "net2net-nat", "gwa's certificate is for gwa.lab, the configs say gwa.example",
            "certificate-identity",
            ["no trusted RSA public key found for 'gwa.example'", "gwa.lab (subjectAltName)", "hosts/gwa/x509/gw.pem"],
            _cert_wrong_id_ours, never=["x509ca"]),
    Variant.of("transport-one-side", ["responder refused transport mode",
                                      "mode = transport in hosts/gwa/swanctl.conf:21", "RFC 7296 §1.3.1"],
               never=["do not overlap"]),
    Variant("transport-strongswan", "net2net-nat", "gwa mode = transport against strongSwan", "mode-mismatch",
            ["no acceptable traffic selectors found", "The selectors themselves agree", "kernel-libipsec",
             "tunnel mode only", "remove mode = transport from hosts/gwa/swanctl.conf:21"],
            exercise("transport-one-side").edit,
            never=["do not overlap", "no address in common"]),
    Variant("own-address", "net2net-nat", "gwb's local_ts 10.2.0.10/32 has no address of gwb", "install-failed",
            ["error installing route with policy", "kernel-libipsec", "local_ts = 10.2.0.10/32 (hosts/gwb/swanctl.conf:18)",
             "10.2.0.1"], _own_address, never=["do not overlap", "no address in common"]),
    Variant("encap-one-side", "net2net", "gwa encap = yes where the scenario expects plain ESP", "encap-differs",
            ["encap = yes (hosts/gwa/swanctl.conf:8)", "IP protocol 50", "gwb has no encap"], _encap_one_side),
    Variant("strongswan-encap", "net2net", "gwb runs strongSwan where the scenario expects plain ESP",
            "strongswan-encap", ["gwb runs strongSwan", "kernel-libipsec", "UDP 4500"], _strongswan_encap,
            never=["encap = yes ("]),
    Variant("mobike-one-side", "mobike-roam", "gw mobike = no, the clients yes", "mobike-differs",
            ["gw: mobike = no (hosts/gw/swanctl.conf:10)", "RFC 4555 §3.1"], _mobike_one_side),
    Variant("ping-outside", "net2net-nat", "a ping to 10.2.1.10, outside the selectors", "outside-selectors",
            ["10.2.1.10 is outside its remote_ts (remote_ts in hosts/gwa/swanctl.conf:19)", "in clear",
             "no node of this lab has the address 10.2.1.10", "e.g. hostb, 10.2.0.10"], _ping_outside,
            never=["narrowed", "ESP blocked", "TS_UNACCEPTABLE"]),
]

__all__ = ["MISTAKES", "SECRET"]
