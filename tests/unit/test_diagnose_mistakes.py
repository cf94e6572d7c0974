"""`ipsec-lab diagnose` never names a cause its own evidence contradicts (no root).

The run folders are real runs of the mistakes trainers make (tests/scenarios/mistakes.py, kept in
tests/data/runs/ by tests/data/make_runs.py); tests/unit/test_diagnose_narrate.py checks that each
is named right. Here each run is copied and its evidence changed so that it contradicts the cause
(the configuration as run now agrees where the run disagreed, the traffic is inside the selectors,
...): the detector must then not name that cause, and must say what it saw instead. Plus the
pieces the detectors stand on: the refusal lines of charon and of our trace, the proposal and
secret comparisons."""
from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from lab.viz.diagnose import diagnose
from lab.viz.negotiation import compare_proposals, secret_difference
from lab.viz.refusals import from_charon, from_trace
from lab.viz.timeline import TimelineEntry

ROOT = Path(__file__).resolve().parents[2]
RUNS = ROOT / "tests" / "data" / "runs"
sys.path.insert(0, str(ROOT))
from tests.scenarios.mistakes import MISTAKES, SECRET  # noqa: E402


def _copy(tmp_path: Path, name: str) -> Path:
    shutil.copytree(RUNS / name, tmp_path / name)
    return tmp_path / name


def _edit(run: Path, node: str, old: str, new: str) -> None:
    path = run / "nodes" / node / "swanctl" / "swanctl.conf"
    text = path.read_text()
    assert old in text, f"{path} has no {old!r}"
    path.write_text(text.replace(old, new, 1))


def _said(found) -> str:
    return " ".join([found.title, found.paragraph, *found.evidence])


@pytest.mark.parametrize("mistake", MISTAKES, ids=[m.name for m in MISTAKES])
def test_each_mistake_is_kept_and_never_shows_the_secret(mistake):
    assert (RUNS / mistake.name / "result.json").is_file(), "run tests/data/make_runs.py " + mistake.name
    found = diagnose(RUNS / mistake.name)
    assert SECRET not in _said(found)
    assert found.step is not None and found.paragraph.count("hosts/") + found.paragraph.count("scenario.yaml") >= 1, \
        f"advice names no file: {found.paragraph}"


# ------------------------------------------------------------------ each guard, contradicted


# a run and the cause diagnose names for it, one line of one node's swanctl.conf as run set right
# (old -> new), then: the cause diagnose must name now, what its paragraph must say, what it must
# not say (paragraph, title and evidence)
CONTRADICTED = [
    pytest.param("ike-dh", "proposal-mismatch", "gwa", "proposals = aes128gcm16-prfsha256-ecp256",
                 "proposals = aes128gcm16-prfsha256-x25519",
                 "proposal-refused", ["share a proposal", "received proposals unacceptable"],
                 ["accepts only", "mismatch"], id="proposals-that-agree-are-no-mismatch"),
    pytest.param("responder-remote-addrs", "no-ike-config", "gwb", "remote_addrs = 172.16.0.2", "remote_addrs = %any",
                 "proposal-refused", ["admits 198.51.100.1"], ["does not include"],
                 id="a-connection-for-the-address-is-no-proposal-mismatch"),
    pytest.param("ts-proto", "ts-mismatch", "gwa", "remote_ts = 10.2.0.0/24[tcp]", "remote_ts = 10.2.0.0/24[udp]",
                 "ts-refused", ["they overlap"], ["do not overlap"], id="selectors-that-overlap-are-no-mismatch"),
    pytest.param("own-address", "install-failed", "gwb", "local_ts = 10.2.0.10/32", "local_ts = 10.2.0.0/24",
                 "install-failed", ["holds its address 10.2.0.1"], ["holds none of"],
                 id="a-local-ts-with-its-own-address-is-not-blamed"),
    pytest.param("psk-one-char", "psk-mismatch", "gwa", 'secret = "a-lab-only-psK"', 'secret = "a-lab-only-psk"',
                 "auth-refused", ["are the same"], ["indeed different", SECRET], id="equal-secrets-are-not-different"),
    pytest.param("psk-ids", "psk-missing", "gwb", "id-a = gwa.example", "id-a = gwa.lab",
                 "auth-refused", ["has a secret for them"], ["no pre-shared key for"],
                 id="a-secret-that-is-there-is-not-missing"),
    pytest.param("id-ip", "identity-mismatch", "gwb", "      id = gwb.lab", "      id = 198.51.100.2",
                 "auth-refused", ["identities as configured agree"], ["do not match"],
                 id="identities-that-agree-are-no-mismatch"),
]


@pytest.mark.parametrize("name, was, node, old, new, cause, says, never", CONTRADICTED)
def test_a_cause_the_configuration_contradicts_is_not_named(tmp_path, name, was, node, old, new, cause, says, never):
    assert diagnose(RUNS / name).cause == was
    run = _copy(tmp_path, name)
    _edit(run, node, old, new)
    found = diagnose(run)
    assert found.cause == cause, found.text()
    assert all(words in found.paragraph for words in says), found.paragraph
    assert not [words for words in never if words in _said(found)], found.text()


# a run, one line of one node's swanctl.conf as run set so that both sides agree (old -> new):
# the cause diagnose names for the run as it was must go (and words it must not say)
NOT_BLAMED = [
    pytest.param("transport-strongswan", "gwb", "esp_proposals = aes128gcm16",
                 "esp_proposals = aes128gcm16\n        mode = transport", "mode-mismatch", ["tunnel mode ("],
                 id="transport-on-both-sides-is-no-mode-mismatch"),
    pytest.param("child-name", "gwa", "      net {", "      lan {", "missing-name", [],
                 id="a-child-the-configuration-has-is-not-missing"),
    pytest.param("encap-one-side", "gwa", "    encap = yes\n", "", "encap-differs", [], id="encap-set-on-neither-side"),
    pytest.param("mobike-one-side", "gw", "mobike = no", "mobike = yes", "mobike-differs", [],
                 id="mobike-set-on-both-sides"),
]


@pytest.mark.parametrize("name, node, old, new, cause, never", NOT_BLAMED)
def test_a_setting_both_sides_agree_on_is_not_blamed(tmp_path, name, node, old, new, cause, never):
    assert diagnose(RUNS / name).cause == cause
    run = _copy(tmp_path, name)
    _edit(run, node, old, new)
    found = diagnose(run)
    assert found.cause != cause, found.text()
    assert not [words for words in never if words in _said(found)], found.text()


def test_swapped_ids_are_only_called_swapped_when_they_are(tmp_path):
    run = _copy(tmp_path, "id-email")
    found = diagnose(run)
    assert found.cause == "identity-mismatch" and "swapped" not in found.paragraph


def _certificate(path: Path, name: str) -> None:
    """A self-signed certificate for `name` (subject and subjectAltName) in place of `path`."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def test_a_certificate_that_holds_the_identity_is_not_blamed(tmp_path):
    run = _copy(tmp_path, "cert-wrong-id-ours")
    _certificate(run / "nodes/gwa/swanctl/x509/gw.pem", "gwa.example")
    found = diagnose(run)
    assert found.cause == "certificate-untrusted", found.text()
    assert "not 'gwa.example'" not in found.paragraph and "hosts/gwb/x509ca/" in found.paragraph
    run = _copy(tmp_path, "cert-wrong-id")
    _certificate(run / "nodes/gwb/swanctl/x509/gw.pem", "gwb.example")
    found = diagnose(run)
    assert found.cause == "auth-refused" and "holds 'gwb.example'" in found.paragraph, found.text()


def test_remote_addrs_of_a_gateway_are_not_blamed(tmp_path):
    run = _copy(tmp_path, "remote-addrs")
    topology = (run / "topology.json").read_text()
    (run / "topology.json").write_text(topology.replace('"198.51.100.2/24"', '"198.51.100.20/24"'))
    found = diagnose(run)
    assert found.cause == "no-answer", found.text()
    assert "no node of this lab" not in found.paragraph


def test_traffic_inside_the_narrowed_selectors_is_not_called_outside(tmp_path):
    run = _copy(tmp_path, "ts-narrowed")
    scenario = yaml.safe_load((run / "scenario.yaml").read_text())
    scenario["steps"][2]["ping"]["source"] = "10.1.0.200"
    (run / "scenario.yaml").write_text(yaml.safe_dump(scenario, sort_keys=False))
    assert diagnose(run).cause != "outside-selectors"


def test_a_destination_inside_the_selectors_is_not_called_outside(tmp_path):
    run = _copy(tmp_path, "ping-outside")
    for node, key in (("gwa", "remote_ts = 10.2.0.0/24"), ("gwb", "local_ts = 10.2.0.0/24")):
        _edit(run, node, key, key.replace("/24", "/16"))
    log = run / "trace.jsonl"
    log.write_text(log.read_text().replace('"remote_ts": ["10.2.0.0/24"]', '"remote_ts": ["10.2.0.0/16"]'))
    assert diagnose(run).cause != "outside-selectors"


# ------------------------------------------------------------------ what the detectors stand on


def _charon(*lines: str) -> list[TimelineEntry]:
    return [TimelineEntry(100.0 + i, "charon", "gwb", text) for i, text in enumerate(lines)]


@pytest.mark.parametrize("line, kind, parts", [
    ("12[IKE] <s2s|1> tried 1 shared key for 'gwb.lab' - 'gwa.lab', but MAC mismatched", "psk",
     {"local": "gwb.lab", "remote": "gwa.lab"}),
    ("12[IKE] <s2s|1> no shared key found for 'gwb.lab' - 'gwa.lab'", "psk-missing", {"remote": "gwa.lab"}),
    ("16[IKE] <1> no IKE config found for 198.51.100.2...198.51.100.1, sending NO_PROPOSAL_CHOSEN", "no-config",
     {"local": "198.51.100.2", "remote": "198.51.100.1"}),
    ("12[IKE] <1> received proposals unacceptable", "proposal", {}),
    ("10[IKE] <s2s|1> no acceptable proposal found", "proposal", {}),
    ("13[CFG] <1> no matching peer config found", "peer-config", {}),
    ("10[CFG] <s2s|1> constraint check failed: identity 'gwa.lab' required", "cert-id", {"id": "gwa.lab"}),
    ("10[IKE] <s2s|1> no trusted RSA public key found for 'gwa.example'", "cert-trust", {"id": "gwa.example"}),
    ("10[IKE] <s2s|1> no private key found for 'gwb.example'", "own-key", {"id": "gwb.example"}),
    ("08[IKE] <s2s|1> traffic selectors 10.2.0.0/24[tcp] === 10.1.0.0/24 unacceptable", "ts",
     {"ts": "10.2.0.0/24[tcp] === 10.1.0.0/24"}),
    ("10[IKE] <s2s|1> no acceptable traffic selectors found", "ts", {}),
    ("10[IKE] <s2s|1> unable to install IPsec policies (SPD) in kernel", "install", {}),
    ("10[ESP] <s2s|1> IPsec SA: unsupported mode", "install", {}),
    ("08[IKE] <s2s|1> received AUTHENTICATION_FAILED notify error", "auth", {}),
    ("09[IKE] <1> DH group ECP_256 unacceptable, requesting CURVE_25519", "invalid-ke", {"wanted": "CURVE_25519"}),
])
def test_charon_refusals(line, kind, parts):
    (found,) = from_charon("gwb", _charon(line))
    assert found.kind == kind and found.text == re.sub(r"^\d+\[\w+\] <[^>]*> ", "", line)
    assert all(found.parts.get(k) == v for k, v in parts.items())
    assert found.final == (kind != "invalid-ke")
    assert found.own == ("received" not in line or "unacceptable" in line)


def test_our_trace_refusals():
    records = [
        {"kind": "event", "event": "AuthFailed", "reason": "shared key MIC does not match (wrong pre-shared key or "
         "altered messages)", "by_peer": False, "wall": 1.0, "node": "gwb"},
        {"kind": "event", "event": "AuthFailed", "reason": "peer answered AUTHENTICATION_FAILED", "by_peer": True,
         "wall": 1.1, "node": "gwa"},
        {"kind": "event", "event": "NegotiationFailed", "exchange": "IKE_AUTH",
         "reason": "CHILD_SA net not created: peer answered TS_UNACCEPTABLE", "wall": 2.0, "node": "gwa"},
        {"kind": "event", "event": "NegotiationFailed", "exchange": "IKE_AUTH", "reason": "responder refused transport "
         "mode", "wall": 3.0, "node": "gwa"},
        {"kind": "drop", "reason": "no connection for these addresses", "wall": 4.0, "node": "gwb"},
        {"kind": "event", "event": "NegotiationFailed", "exchange": "IKE_SA_INIT", "reason": "something new",
         "wall": 5.0, "node": "gwa"},
    ]
    found = [(f.node, f.kind, f.own, f.exchange) for f in from_trace(records)]
    assert found == [("gwb", "psk", True, "IKE_AUTH"), ("gwa", "auth", False, "IKE_AUTH"),
                     ("gwa", "ts", False, "IKE_AUTH"), ("gwa", "transport", True, "IKE_AUTH"),
                     ("gwb", "no-config", True, "IKE_SA_INIT"), ("gwa", "other", True, "IKE_SA_INIT")]


def test_proposals_compared_as_negotiated():
    assert compare_proposals(["aes128gcm16-prfsha256-x25519"], ["aes128gcm128-prfsha256-curve25519, aes256-sha384-ecp384"],
                             "IKE")[0] == "aes128gcm16-prfsha256-x25519"
    common, differ, error = compare_proposals(["aes128gcm16-prfsha256-ecp256"], ["aes128gcm16-prfsha256-x25519"], "IKE")
    assert common is None and error is None and differ == [("Diffie-Hellman group", ["ecp256"], ["x25519"])]
    # the CHILD_SA of IKE_AUTH has no key exchange (RFC 7296 §1.2): its DH groups do not count
    assert compare_proposals(["aes128gcm16-ecp256"], ["aes128gcm16-x25519"], "ESP", skip_dh=True)[0] is not None
    assert compare_proposals(["aes128gcm16-ecp256"], ["aes128gcm16-x25519"], "ESP")[0] is None
    assert compare_proposals([], ["aes128gcm16-prfsha256-x25519"], "IKE")[0] is not None  # the default has it
    assert compare_proposals(["aes129gcm16"], ["aes128gcm16"], "ESP")[2]


def test_secrets_compared_without_showing_them():
    assert secret_difference(b"a-lab-only-psk", b"a-lab-only-psK", "gwa", "gwb") == \
        "both are 14 characters long and differ in 1 of them (the first at character 14)"
    assert secret_difference(b"a-lab-only-psk", b"a-lab-only-psk ", "gwa", "gwb") == \
        "gwb's has a space more at its end (15 characters against 14)"
    words = secret_difference(b"one-secret", b"another-one", "gwa", "gwb")
    assert "one-secret" not in words and "another" not in words and "10 and 11 characters" in words


def test_compare_proposals_names_a_missing_additional_key_exchange():
    # RFC 9370 §2.2.1: required on one side (no none), absent on the other: NO_PROPOSAL_CHOSEN, named
    assert compare_proposals(["aes256gcm16-prfsha384-x25519"], ["aes256gcm16-prfsha384-x25519-ke1_mlkem768"],
                             "IKE") == (None, [("additional key exchange 1 (ke1_)", ["(none offered)"],
                                                ["ke1_mlkem768"])], None)
    # optional on the side that has it: the proposal falls back to the classic one
    assert compare_proposals(["aes256gcm16-prfsha384-x25519"],
                             ["aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke1_none"], "IKE")[0] == \
        "aes256gcm16-prfsha384-x25519"


def test_an_address_range_across_families_is_not_read_as_admitting_or_refusing():
    from lab.viz.evidence import addr_allowed

    assert addr_allowed("10.0.0.5", ["10.0.0.1-10.0.0.9"]) is True
    assert addr_allowed("10.0.0.50", ["10.0.0.1-10.0.0.9"]) is False
    assert addr_allowed("2001:db8::5", ["10.0.0.1-10.0.0.9"]) is False
    # strongSwan takes no range from IPv4 to IPv6: cannot tell (it raised TypeError, ending the diagnosis)
    assert addr_allowed("10.0.0.5", ["10.0.0.1-2001:db8::1"]) is None
