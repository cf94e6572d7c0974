"""Our gateway daemon (`ipsec-lab daemon`, lab.ike underneath) against strongSwan's charon, with
our side as IKE initiator and as responder: PSK and certificate (RSA, ECDSA) authentication,
proposal sets, INVALID_KE_PAYLOAD recovery, CHILD_SA and IKE SA rekeys and deletes started by
either side, dead peer detection both ways, and Wireshark decrypting our IKE SAs with the keys
our daemon exports. Every capture must dissect cleanly in tshark and our decoder must agree
with tshark on it.

Our daemon always runs on swgwa (203.0.113.1), charon on swgwb (203.0.113.2). No ESP flows:
only the control plane is checked here.
"""
from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import pytest

from lab.ike.const import ExchangeType
from lab.net.gateway import OurGateway
from lab.net.strongswan import StrongSwan, available_plugins

from .conftest import GATEWAYS, S2SLab, Tcpdump, render_conf
from .test_strongswan_capture import ours as decoded_facts
from .test_strongswan_capture import tshark, tshark_messages

pytestmark = [pytest.mark.interop, pytest.mark.root]

OURS, SWAN = "swgwa", "swgwb"
IKE, CHILD = "s2s", "net"
ROLES = ("ours-initiator", "ours-responder")
SIDES = ("ours", "strongswan")
# short retransmissions so that a dead peer is found within seconds (0.5 + 0.9 + 2.9 s)
FAST_RETRANSMIT = {"retransmit_timeout": 0.5, "retransmit_tries": 2}


def _chacha_available() -> bool:
    return "openssl" in available_plugins()


# (IKE proposal, ESP proposal, our list-sas name of the chosen IKE algorithms, what strongSwan's
# list-sas reports for the IKE SA and for the CHILD_SA)
PROPOSALS = [
    pytest.param("aes128gcm16-prfsha256-x25519", "aes128gcm16", "aes128gcm16-prfsha256-x25519",
                 {"encr-alg": "AES_GCM_16", "encr-keysize": "128", "prf-alg": "PRF_HMAC_SHA2_256",
                  "dh-group": "CURVE_25519"},
                 {"encr-alg": "AES_GCM_16", "encr-keysize": "128"}, id="aes128gcm16-x25519"),
    pytest.param("aes128-sha256-modp2048", "aes128-sha256", "aes128-sha256-prfsha256-modp2048",
                 {"encr-alg": "AES_CBC", "encr-keysize": "128", "integ-alg": "HMAC_SHA2_256_128",
                  "prf-alg": "PRF_HMAC_SHA2_256", "dh-group": "MODP_2048"},
                 {"encr-alg": "AES_CBC", "encr-keysize": "128", "integ-alg": "HMAC_SHA2_256_128"},
                 id="aes128-sha256-modp2048"),
    pytest.param("aes256-sha384-ecp384", "aes256-sha384", "aes256-sha384-prfsha384-ecp384",
                 {"encr-alg": "AES_CBC", "encr-keysize": "256", "integ-alg": "HMAC_SHA2_384_192",
                  "prf-alg": "PRF_HMAC_SHA2_384", "dh-group": "ECP_384"},
                 {"encr-alg": "AES_CBC", "encr-keysize": "256", "integ-alg": "HMAC_SHA2_384_192"},
                 id="aes256-sha384-ecp384"),
    pytest.param("aes256gcm16-prfsha384-ecp384", "aes256gcm16", "aes256gcm16-prfsha384-ecp384",
                 {"encr-alg": "AES_GCM_16", "encr-keysize": "256", "prf-alg": "PRF_HMAC_SHA2_384",
                  "dh-group": "ECP_384"},
                 {"encr-alg": "AES_GCM_16", "encr-keysize": "256"}, id="aes256gcm16-ecp384"),
    pytest.param("chacha20poly1305-prfsha256-x25519", "chacha20poly1305", "chacha20poly1305-prfsha256-x25519",
                 {"encr-alg": "CHACHA20_POLY1305", "prf-alg": "PRF_HMAC_SHA2_256", "dh-group": "CURVE_25519"},
                 {"encr-alg": "CHACHA20_POLY1305"}, id="chacha20poly1305-x25519",
                 marks=pytest.mark.skipif(not _chacha_available(),
                                          reason="strongSwan's openssl plugin is needed for ChaCha20-Poly1305")),
    # RFC 8247 §2.3 PRF_AES128_XCBC (SHOULD), §2.4 MODP-4096 (MAY)
    pytest.param("aes128-sha256-prfaesxcbc-modp4096", "aes128-sha256", "aes128-sha256-prfaesxcbc-modp4096",
                 {"encr-alg": "AES_CBC", "encr-keysize": "128", "integ-alg": "HMAC_SHA2_256_128",
                  "prf-alg": "PRF_AES128_XCBC", "dh-group": "MODP_4096"},
                 {"encr-alg": "AES_CBC", "encr-keysize": "128", "integ-alg": "HMAC_SHA2_256_128"},
                 id="prfaesxcbc-modp4096"),
    # RFC 6954 brainpoolP256r1
    pytest.param("aes256gcm16-prfsha512-ecp256bp", "aes256gcm16", "aes256gcm16-prfsha512-ecp256bp",
                 {"encr-alg": "AES_GCM_16", "encr-keysize": "256", "prf-alg": "PRF_HMAC_SHA2_512",
                  "dh-group": "ECP_256_BP"},
                 {"encr-alg": "AES_GCM_16", "encr-keysize": "256"}, id="ecp256bp"),
]


# ------------------------------------------------------------------ waiting


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll `check()` until it returns something true; fail after `timeout` seconds saying
    `what` was awaited and what `check` last returned."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


# ------------------------------------------------------------------ certificates


@dataclass(frozen=True)
class Pki:
    ca: bytes
    certs: dict[str, bytes]  # gateway id -> PEM certificate
    keys: dict[str, bytes]   # gateway id -> PEM PKCS#8 private key


@lru_cache(maxsize=None)
def make_pki(kind: str) -> Pki:
    """A CA and one certificate per gateway (subjectAltName = its FQDN id), all RSA-2048 or all
    ECDSA P-256, valid from yesterday for 30 days."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def new_key():
        return ec.generate_private_key(ec.SECP256R1()) if kind == "ecdsa" else rsa.generate_private_key(65537, 2048)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ipsec-lab"),
                          x509.NameAttribute(NameOID.COMMON_NAME, common)])

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = new_key()
    ca_name = name(f"ipsec-lab interop {kind.upper()} CA")
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    certs, keys = {}, {}
    for gateway in GATEWAYS.values():
        key = new_key()
        cert = (x509.CertificateBuilder().subject_name(name(gateway["id"])).issuer_name(ca_name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(gateway["id"])]), critical=False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))
        certs[gateway["id"]] = cert.public_bytes(serialization.Encoding.PEM)
        keys[gateway["id"]] = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption())
    return Pki(ca.public_bytes(serialization.Encoding.PEM), certs, keys)


def install_pki(lab: S2SLab, gateway: str, pki: Pki) -> None:
    """The CA into x509ca/, the gateway's certificate into x509/gw.pem and its key into
    private/gw.key of its swanctl directory, where both charon's swanctl and our daemon look."""
    folder = lab.swanctl_dir(gateway)
    me = GATEWAYS[gateway]["id"]
    for sub, filename, data in (("x509ca", "ca.pem", pki.ca), ("x509", "gw.pem", pki.certs[me]),
                                ("private", "gw.key", pki.keys[me])):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        path = folder / sub / filename
        path.write_bytes(data)
        os.chmod(path, 0o600)


# ------------------------------------------------------------------ one pair: our daemon and charon


@dataclass
class Pair:
    lab: S2SLab
    ours: OurGateway
    swan: StrongSwan
    ours_initiates: bool
    dump: Tcpdump

    # -- running

    def up(self, timeout: float = 20.0) -> None:
        """Start the responder, then the initiator, and set up IKE SA and CHILD_SA; wait until
        both sides list the same SAs."""
        if self.ours_initiates:
            self.swan.start()
            self.swan.load_all()
            self.ours.start()
            answer = self.ours.ctl("initiate", ike=IKE, child=CHILD, timeout=timeout)
            assert answer["ok"], f"our initiate failed: {answer}\n{self.ours.log_tail()}\n{self.swan.log_tail()}"
        else:
            self.ours.start()
            self.swan.start()
            self.swan.load_all()
            self.swan.initiate(child=CHILD, timeout=timeout)
        self.settled()

    def our_sas(self) -> list[dict[str, Any]]:
        return self.ours.raw_sas()

    def swan_sas(self) -> list[dict[str, Any]]:
        return self.swan.raw_sas()

    def trace(self) -> list[dict[str, Any]]:
        with open(self.ours.trace_path) as f:
            return [json.loads(line) for line in f if line.strip()]

    def events(self, name: str) -> list[dict[str, Any]]:
        return [r for r in self.trace() if r["kind"] == "event" and r["event"] == name]

    def messages(self, **match: Any) -> list[dict[str, Any]]:
        return [r for r in self.trace() if r["kind"] == "message" and all(r.get(k) == v for k, v in match.items())]

    # -- the SAs on both sides

    def views(self) -> tuple[list[dict], list[dict]]:
        return self.our_sas(), self.swan_sas()

    def agreement(self) -> tuple[dict, dict] | None:
        """(ours, strongSwan's) IKE SA when each side has exactly one, ESTABLISHED, with the same
        SPIs, and the same CHILD_SAs (our inbound SPI is their outbound one); otherwise None."""
        ours, theirs = self.views()
        if len(ours) != 1 or len(theirs) != 1:
            return None
        o, t = ours[0], theirs[0]
        if o["state"] != "ESTABLISHED" or t["state"] != "ESTABLISHED":
            return None
        if (o["spi_i"], o["spi_r"]) != (t["initiator-spi"], t["responder-spi"]):
            return None
        if installed_pairs(o) != swan_installed_pairs(t) or not installed_pairs(o):
            return None
        return o, t

    def settled(self, timeout: float = 10.0, what: str = "both sides to list the same IKE SA and CHILD_SA"
                ) -> tuple[dict, dict]:
        try:
            return wait_until(self.agreement, timeout, what)
        except pytest.fail.Exception:
            ours, theirs = self.views()
            pytest.fail(f"{what}: ours {ours}\nstrongSwan's {theirs}\n--- our log\n{self.ours.log_tail()}\n"
                        f"--- charon\n{self.swan.log_tail()}", pytrace=False)

    # -- the end

    def finish(self, answered: bool = True) -> list[dict]:
        """Stop the capture and check it (see check_capture); our daemon logged no traceback."""
        stats = self.dump.stop()
        assert re.search(r"^0 packets dropped by kernel$", stats, re.M), stats
        log = self.ours.log_path.read_text(errors="replace")
        assert "Traceback" not in log, log
        return check_capture(self.dump.path, answered=answered)


def installed_pairs(ike: dict) -> set[tuple[str, str]]:
    """Our INSTALLED CHILD_SAs as (inbound SPI, outbound SPI)."""
    return {(c["spi_in"], c["spi_out"]) for c in ike["children"] if c["state"] == "INSTALLED"}


def swan_installed_pairs(ike: dict) -> set[tuple[str, str]]:
    """strongSwan's INSTALLED CHILD_SAs seen from our side: (its outbound SPI, its inbound SPI)."""
    return {(c["spi-out"], c["spi-in"]) for c in ike["child-sas"].values() if c["state"] == "INSTALLED"}


def make_pair(lab: S2SLab, role: str, *, auth: str = "psk", pki: Pki | None = None,
              ours_proposals: str = "aes128gcm16-prfsha256-x25519", swan_proposals: str | None = None,
              esp: str = "aes128gcm16", swan_esp: str | None = None, ours_conf: dict | None = None,
              swan_conf: dict | None = None, ours_options: dict | None = None) -> Pair:
    """Our daemon on swgwa, charon on swgwb, configured (not started) for `role`; strongSwan's
    proposals are ours unless given. The capture on swgwa runs already."""
    ours_initiates = role == "ours-initiator"
    ours = lab.use_ours(OURS, render_conf(OURS, initiator=ours_initiates, auth=auth, proposals=ours_proposals,
                                          esp_proposals=esp, connection=ours_conf), **(ours_options or {}))
    swan = lab.use_strongswan(SWAN, render_conf(SWAN, initiator=not ours_initiates, auth=auth,
                                                proposals=swan_proposals or ours_proposals,
                                                esp_proposals=swan_esp or esp, connection=swan_conf))
    if pki is not None:
        for gateway in (OURS, SWAN):
            install_pki(lab, gateway, pki)
    dump = lab.capture(OURS, "ike.pcap")
    return Pair(lab, ours, swan, ours_initiates, dump)


# ------------------------------------------------------------------ captures


def check_capture(pcap: Path, answered: bool = True) -> list[dict]:
    """tshark finds nothing malformed and no error-level expert info; our decoder reports the
    same messages (header facts and payload chains) as tshark; with `answered`, every request
    has exactly one response. Returns tshark's messages."""
    assert pcap.stat().st_size > 24, f"{pcap} is empty"
    assert tshark("-r", str(pcap), "-Y", "_ws.malformed").strip() == "", "tshark finds malformed packets"
    expert = tshark("-r", str(pcap), "-q", "-z", "expert,error")
    assert "Errors (" not in expert, expert
    theirs = tshark_messages(pcap)
    assert theirs, "no IKE message captured"

    from lab.viz.decode import decode_pcap

    decoded = decode_pcap(pcap)
    assert [m.error for m in decoded] == [None] * len(decoded)
    assert [decoded_facts(m) for m in decoded] == theirs
    if answered:
        requests = sorted((m["spi_i"], m["message_id"], m["exchange"]) for m in whole(theirs) if not m["is_response"])
        responses = sorted((m["spi_i"], m["message_id"], m["exchange"]) for m in whole(theirs) if m["is_response"])
        assert requests == responses, f"unanswered requests or stray responses: {requests} vs {responses}"
    return theirs


SKF = 53  # RFC 7383 §2.5: Encrypted Fragment payload


def whole(messages: list[dict]) -> list[dict]:
    """The captured messages with the fragments of one message (RFC 7383) counted once."""
    out: list[dict] = []
    for m in messages:
        key = (m["spi_i"], m["spi_r"], m["message_id"], m["is_response"], m["exchange"])
        if out and m["payloads"] == [SKF] and out[-1]["payloads"] == [SKF] and out[-1]["key"] == key:
            continue
        out.append(dict(m, key=key))
    return out


def exchanges(messages: list[dict], *, requests_from: str | None = None) -> list[str]:
    """The exchange names of the captured messages, fragments counted once (requests only,
    from one address, if asked)."""
    out = []
    for m in whole(messages):
        if requests_from is not None and (m["is_response"] or m["src"] != requests_from):
            continue
        out.append(ExchangeType(m["exchange"]).name)
    return out


def sent_once(pcap: Path, messages: list[dict]) -> list[dict]:
    """The captured messages without retransmissions: RFC 7296 §2.1, a retransmitted request, and
    the response repeated for it, are the same octets again between the same ends (a slow
    machine makes charon retransmit: its first timeout is 4 s)."""
    rows = tshark("-r", str(pcap), "-Y", "isakmp", "-T", "fields", "-e", "frame.number", "-e", "ip.src",
                  "-e", "ip.dst", "-e", "udp.payload").splitlines()
    seen: set[tuple[str, ...]] = set()
    repeated: set[int] = set()
    for row in rows:
        frame, src, dst, payload = (row.split("\t") + [""] * 4)[:4]
        if payload and (src, dst, payload) in seen:
            repeated.add(int(frame))
        seen.add((src, dst, payload))
    return [m for m in messages if m["frame"] not in repeated]


def wan(gateway: str) -> str:
    return GATEWAYS[gateway]["wan"]


# ------------------------------------------------------------------ authentication


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("auth", ["psk", "rsa", "ecdsa"])
def test_authentication(interop_lab, role, auth):
    pki = make_pki(auth) if auth != "psk" else None
    pair = make_pair(interop_lab, role, auth="psk" if auth == "psk" else "pubkey", pki=pki)
    pair.up()
    ours, theirs = pair.settled()
    assert (ours["local_id"], ours["remote_id"]) == ("gwa.lab", "gwb.lab")
    assert (theirs["local-id"], theirs["remote-id"]) == ("gwb.lab", "gwa.lab")
    assert ours["initiator"] is pair.ours_initiates
    listing = ctl(pair, "list-sas")
    assert f"s2s: #{ours['id']}, ESTABLISHED, IKEv2, {theirs['initiator-spi']}_i" in listing, listing
    assert f"remote 'gwb.lab' @ {wan(SWAN)}:4500" in listing, listing

    log = pair.swan.log_text()
    method = {"psk": "pre-shared key", "rsa": "RSA_EMSA_PKCS1_SHA2_256", "ecdsa": "ECDSA_WITH_SHA256_DER"}[auth]
    assert f"authentication of 'gwa.lab' with {method} successful" in log, pair.swan.log_tail()
    assert f"authentication of 'gwb.lab' (myself) with {method}" in log
    if auth != "psk":
        # strongSwan checked our chain against its CA; we sent our certificate, it sent its
        assert "reached self-signed root ca with a path length of 0" in log
        sent = "IDi" if pair.ours_initiates else "IDr"
        our_auth = pair.messages(dir="out", exchange="IKE_AUTH")[0]
        their_auth = pair.messages(dir="in", exchange="IKE_AUTH")[0]
        assert our_auth["payloads"][:2] == [sent, "CERT"], our_auth
        assert "CERT" in their_auth["payloads"], their_auth

    messages = pair.finish()
    assert exchanges(messages) == ["IKE_SA_INIT"] * 2 + ["IKE_AUTH"] * 2
    if auth == "rsa":
        # RFC 7383: with RSA certificates IKE_AUTH exceeds 1280 octets and is fragmented both ways
        fragmented = {m["src"] for m in messages if m["payloads"] == [SKF]}
        assert fragmented == {wan(OURS), wan(SWAN)}, fragmented


# ------------------------------------------------------------------ proposals


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("ike_proposal, esp_proposal, our_name, ike_expected, child_expected", PROPOSALS)
def test_proposals(interop_lab, role, ike_proposal, esp_proposal, our_name, ike_expected, child_expected):
    pair = make_pair(interop_lab, role, ours_proposals=ike_proposal, esp=esp_proposal)
    pair.up()
    ours, theirs = pair.settled()
    assert {k: theirs.get(k) for k in ike_expected} == ike_expected, theirs
    child = next(iter(theirs["child-sas"].values()))
    assert {k: child.get(k) for k in child_expected} == child_expected, child
    if "integ-alg" not in ike_expected:
        assert "integ-alg" not in theirs, "an AEAD IKE SA has no integrity algorithm"
    assert ours["algorithms"] == our_name
    assert ours["children"][0]["algorithms"] == f"{esp_proposal}-noesn"
    messages = pair.finish()
    assert exchanges(messages) == ["IKE_SA_INIT"] * 2 + ["IKE_AUTH"] * 2


# ------------------------------------------------------------------ INVALID_KE_PAYLOAD


def test_invalid_ke_our_initiator_retries_with_the_group_strongswan_asks_for(interop_lab):
    # RFC 7296 §1.3: our KE is ecp256, strongSwan ranks x25519 first and asks for it
    pair = make_pair(interop_lab, "ours-initiator", ours_proposals="aes128gcm16-prfsha256-ecp256-x25519",
                     swan_proposals="aes128gcm16-prfsha256-x25519-ecp256")
    pair.up()
    ours, theirs = pair.settled()
    assert theirs["dh-group"] == "CURVE_25519"
    assert ours["algorithms"].endswith("x25519"), ours["algorithms"]
    notes = [r for r in pair.trace() if r["kind"] == "note" and r.get("what") == "invalid_ke"]
    assert [n["group"] for n in notes] == ["CURVE25519"], notes
    requests = pair.messages(dir="out", exchange="IKE_SA_INIT")
    assert len(requests) == 2
    answers = pair.messages(dir="in", exchange="IKE_SA_INIT")
    assert answers[0]["payloads"] == ["N(INVALID_KE_PAYLOAD)"], answers
    assert "DH group ECP_256 unacceptable, requesting CURVE_25519" in pair.swan.log_text()

    messages = sent_once(pair.dump.path, pair.finish())
    assert exchanges(messages) == ["IKE_SA_INIT"] * 4 + ["IKE_AUTH"] * 2
    assert messages[1]["notifies"] == [17] and messages[1]["spi_r"] == "0" * 16  # INVALID_KE_PAYLOAD


def test_invalid_ke_strongswan_initiator_retries_with_the_group_we_ask_for(interop_lab):
    # RFC 7296 §1.3: strongSwan's KE is x25519, we rank ecp256 first and ask for it
    pair = make_pair(interop_lab, "ours-responder", ours_proposals="aes128gcm16-prfsha256-ecp256-x25519",
                     swan_proposals="aes128gcm16-prfsha256-x25519-ecp256")
    pair.up()
    ours, theirs = pair.settled()
    assert theirs["dh-group"] == "ECP_256"
    assert ours["algorithms"].endswith("ecp256"), ours["algorithms"]
    answers = pair.messages(dir="out", exchange="IKE_SA_INIT")
    assert answers[0]["payloads"] == ["N(INVALID_KE_PAYLOAD)"] and answers[1]["payloads"][:2] == ["SA", "KE"]
    assert "peer didn't accept DH group CURVE_25519, it requested ECP_256" in pair.swan.log_text()

    messages = sent_once(pair.dump.path, pair.finish())
    assert exchanges(messages) == ["IKE_SA_INIT"] * 4 + ["IKE_AUTH"] * 2
    assert messages[1]["notifies"] == [17] and messages[1]["src"] == wan(OURS)


# ------------------------------------------------------------------ rekeying


def ctl(pair: Pair, *args: str) -> str:
    """`ipsec-lab ctl` against our daemon, as a person would type it; returns its output."""
    import sys

    run = subprocess.run([sys.executable, "-m", "lab.cli", "ctl", "--control", str(pair.ours.control_path), *args],
                         capture_output=True, text=True, timeout=30, cwd=Path(__file__).resolve().parents[2])
    assert run.returncode == 0, f"ipsec-lab ctl {' '.join(args)}: {run.stdout}{run.stderr}"
    return run.stdout


def rekey(pair: Pair, side: str, what: str) -> None:
    if side == "ours":
        out = ctl(pair, "rekey", "--ike", IKE) if what == "ike" else ctl(pair, "rekey", "--child", CHILD)
        assert out.startswith("rekey: ok (1 SA(s))"), out
    elif what == "ike":
        pair.swan.rekey(ike=IKE)
    else:
        pair.swan.rekey(child=CHILD)


def wait_child_rekeyed(pair: Pair, old: set[tuple[str, str]]) -> tuple[dict, dict]:
    """Both sides agree on one new CHILD_SA; the old one is gone from ours and DELETED at strongSwan."""
    old_spis = {spi for p in old for spi in p}

    def rekeyed():
        agreed = pair.agreement()
        if agreed is None:
            return None
        o, t = agreed
        our_spis = {spi for c in o["children"] for spi in (c["spi_in"], c["spi_out"])}
        lingering = [c for c in t["child-sas"].values() if c["state"] != "INSTALLED"]
        if len(o["children"]) != 1 or our_spis & old_spis or any(c["state"] != "DELETED" for c in lingering):
            return None
        return agreed

    return wait_until(rekeyed, 10, "the CHILD_SA rekeyed on both sides and the old one deleted")


def first_rekey_answer(pair: Pair) -> list[str]:
    """The payloads inside SK of the first CREATE_CHILD_SA response, as our trace recorded them."""
    return pair.messages(exchange="CREATE_CHILD_SA", response=True)[0]["payloads"]


@pytest.mark.parametrize("side", SIDES, ids=lambda s: f"{s}-rekeys")
@pytest.mark.parametrize("role", ROLES)
def test_child_sa_rekey(interop_lab, role, side):
    pair = make_pair(interop_lab, role)
    pair.up()
    ours, theirs = pair.settled()
    old = installed_pairs(ours)
    ike_spis = (ours["spi_i"], ours["spi_r"])

    rekey(pair, side, "child")
    o, t = wait_child_rekeyed(pair, old)
    assert (o["spi_i"], o["spi_r"]) == ike_spis, "a CHILD_SA rekey keeps the IKE SA"
    assert len(o["children"]) == 1
    rekeyed_events = pair.events("ChildSaRekeyed")
    assert len(rekeyed_events) == 1, rekeyed_events
    event = rekeyed_events[0]
    assert {(event["old_spi_in"], event["old_spi_out"])} == old
    assert {(event["new_spi_in"], event["new_spi_out"])} == installed_pairs(o)

    messages = pair.finish()
    rekeyer = wan(OURS) if side == "ours" else wan(SWAN)
    assert exchanges(messages[4:], requests_from=rekeyer) == ["CREATE_CHILD_SA", "INFORMATIONAL"]
    assert exchanges(messages[4:]) == ["CREATE_CHILD_SA"] * 2 + ["INFORMATIONAL"] * 2


@pytest.mark.parametrize("side", SIDES, ids=lambda s: f"{s}-rekeys")
@pytest.mark.parametrize("role", ROLES)
def test_ike_sa_rekey(interop_lab, role, side):
    pair = make_pair(interop_lab, role)
    pair.up()
    ours, theirs = pair.settled()
    old_spis = (ours["spi_i"], ours["spi_r"])
    children = installed_pairs(ours)

    rekey(pair, side, "ike")

    def rekeyed():
        agreed = pair.agreement()
        if agreed is None:
            return None
        o, t = agreed
        return agreed if o["spi_i"] not in old_spis and o["spi_r"] not in old_spis else None

    o, t = wait_until(rekeyed, 10, "the IKE SA rekeyed on both sides and the old one deleted")
    assert installed_pairs(o) == children, "the CHILD_SA moves to the new IKE SA unchanged"
    assert o["initiator"] is (side == "ours"), "the rekey initiator is the new IKE SA's initiator"
    assert len(pair.events("IkeSaRekeyed")) == 1

    messages = pair.finish()
    rekeyer = wan(OURS) if side == "ours" else wan(SWAN)
    assert exchanges(messages[4:], requests_from=rekeyer) == ["CREATE_CHILD_SA", "INFORMATIONAL"]
    assert (messages[-1]["spi_i"], messages[-1]["spi_r"]) == old_spis, "the delete is sent on the old IKE SA"
    assert {(m["spi_i"], m["spi_r"]) for m in messages[4:]} == {old_spis}


@pytest.mark.parametrize("side", SIDES, ids=lambda s: f"{s}-rekeys")
def test_child_sa_rekey_with_pfs_after_invalid_ke(interop_lab, side):
    # RFC 7296 §1.3: the rekey initiator leads with its first PFS group, the responder asks for its own
    pair = make_pair(interop_lab, "ours-initiator", esp="aes128gcm16-ecp256-x25519",
                     swan_esp="aes128gcm16-x25519-ecp256")
    pair.up()
    ours, _ = pair.settled()
    rekey(pair, side, "child")
    o, t = wait_child_rekeyed(pair, installed_pairs(ours))
    wanted = "CURVE_25519" if side == "ours" else "ECP_256"
    child = next(c for c in t["child-sas"].values() if c["state"] == "INSTALLED")
    assert child["dh-group"] == wanted, child
    log = pair.swan.log_text()
    if side == "ours":
        assert "DH group ECP_256 unacceptable, requesting CURVE_25519" in log
    else:
        assert "peer didn't accept DH group CURVE_25519, it requested ECP_256" in log

    messages = pair.finish()
    rekeyer = wan(OURS) if side == "ours" else wan(SWAN)
    assert exchanges(messages[4:], requests_from=rekeyer) == ["CREATE_CHILD_SA"] * 2 + ["INFORMATIONAL"]
    assert first_rekey_answer(pair) == ["N(INVALID_KE_PAYLOAD)"]


@pytest.mark.parametrize("side, role", [("ours", "ours-responder"), ("strongswan", "ours-initiator")],
                         ids=["ours-rekeys", "strongswan-rekeys"])
def test_ike_sa_rekey_after_invalid_ke(interop_lab, side, role):
    # RFC 7296 §1.3: the rekey leads with the current group, the responder ranks another first
    pair = make_pair(interop_lab, role, ours_proposals="aes128gcm16-prfsha256-ecp256-x25519",
                     swan_proposals="aes128gcm16-prfsha256-x25519-ecp256")
    pair.up()
    ours, theirs = pair.settled()
    first = theirs["dh-group"]
    rekey(pair, side, "ike")
    o, t = wait_until(lambda: (a := pair.agreement()) and a[0]["spi_i"] != ours["spi_i"] and a, 10,
                      "the IKE SA rekeyed on both sides")
    assert (first, t["dh-group"]) == (("ECP_256", "CURVE_25519") if side == "ours" else ("CURVE_25519", "ECP_256"))
    assert installed_pairs(o) == installed_pairs(ours)
    messages = pair.finish()
    rekeyer = wan(OURS) if side == "ours" else wan(SWAN)
    assert exchanges(messages[4:], requests_from=rekeyer) == ["CREATE_CHILD_SA"] * 2 + ["INFORMATIONAL"]
    assert first_rekey_answer(pair) == ["N(INVALID_KE_PAYLOAD)"]


@pytest.mark.parametrize("role", ROLES)
def test_child_sa_rekey_collision(interop_lab, role):
    # RFC 7296 §2.8.1: both rekey the CHILD_SA at once; the SA made with the lowest nonce is redundant
    pair = make_pair(interop_lab, role, ours_options={"retransmit_timeout": 1.0})
    pair.up()
    ours, _ = pair.settled()
    node = pair.swan.node
    # our request and our answer to strongSwan's are lost once, so the two exchanges overlap
    assert "blocked" in node.cmd("iptables -I INPUT -p udp -j DROP && echo blocked")
    rekey(pair, "ours", "child")
    rekey(pair, "strongswan", "child")
    time.sleep(0.2)
    assert "open" in node.cmd("iptables -D INPUT -p udp -j DROP && echo open")

    o, t = wait_child_rekeyed(pair, installed_pairs(ours))
    notes = [r for r in pair.trace() if r["kind"] == "note" and r.get("what") == "rekey_collision"]
    assert len(notes) == 1, notes
    log = pair.swan.log_text()
    assert "detected CHILD_REKEY collision with CHILD_REKEY" in log
    (kept,) = installed_pairs(o)
    assert notes[0]["kept"] == kept[0]
    assert len(pair.events("ChildSaRekeyed")) == 1
    # both sides find the same redundant SA: its creator deletes it
    strongswan_won = "CHILD_SA rekey collision won" in log
    strongswan_lost = ("CHILD_SA rekey collision lost" in log
                       or "CHILD_SA rekey/delete collision, deleting redundant child" in log)
    assert strongswan_won != strongswan_lost, "strongSwan decided the collision once"
    we_deleted = [e for e in pair.events("ChildSaDeleted") if e["reason"] == "redundant after a rekey collision"]
    assert bool(we_deleted) == strongswan_won
    assert we_deleted == [] or we_deleted[0]["spi_in"] == notes[0]["redundant"]

    messages = pair.finish(answered=False)
    requests = {(m["spi_i"], m["message_id"], m["exchange"]) for m in messages if not m["is_response"]}
    responses = {(m["spi_i"], m["message_id"], m["exchange"]) for m in messages if m["is_response"]}
    assert requests == responses, "every request is answered (some only after a retransmission)"
    assert exchanges(messages[4:]).count("CREATE_CHILD_SA") >= 4


# ------------------------------------------------------------------ deleting


@pytest.mark.parametrize("side", SIDES, ids=lambda s: f"{s}-deletes")
@pytest.mark.parametrize("role", ROLES)
def test_delete(interop_lab, role, side):
    pair = make_pair(interop_lab, role)
    pair.up()
    ours, _ = pair.settled()
    child_spis = installed_pairs(ours)

    if side == "ours":
        assert ctl(pair, "terminate", "--child", CHILD).startswith("terminate: ok (1 SA(s))")
    else:
        pair.swan.terminate(child=CHILD)

    def childless():
        ours, theirs = pair.views()
        if len(ours) != 1 or len(theirs) != 1 or ours[0]["children"]:
            return None
        if any(c["state"] != "DELETED" for c in theirs[0]["child-sas"].values()):
            return None
        return ours[0], theirs[0]

    o, t = wait_until(childless, 10, "the CHILD_SA deleted on both sides, the IKE SA kept")
    assert o["state"] == t["state"] == "ESTABLISHED"
    deleted = pair.events("ChildSaDeleted")
    assert [(e["spi_in"], e["spi_out"]) for e in deleted] == list(child_spis)

    if side == "ours":
        assert ctl(pair, "terminate", "--ike", IKE).startswith("terminate: ok (1 SA(s))")
    else:
        pair.swan.terminate(ike=IKE)
    wait_until(lambda: not pair.our_sas() and not pair.swan_sas(), 10, "no SA left on either side")
    assert len(pair.events("IkeSaDeleted")) == 1

    messages = pair.finish()
    deleter = wan(OURS) if side == "ours" else wan(SWAN)
    assert exchanges(messages[4:]) == ["INFORMATIONAL"] * 4
    assert exchanges(messages[4:], requests_from=deleter) == ["INFORMATIONAL"] * 2


# ------------------------------------------------------------------ dead peer detection


@pytest.mark.parametrize("role", ROLES)
def test_our_dpd_finds_strongswan_gone(interop_lab, role):
    # RFC 7296 §2.4: an unanswered liveness check, retransmitted, means the peer is dead
    pair = make_pair(interop_lab, role, ours_conf={"dpd_delay": "1s"}, ours_options=FAST_RETRANSMIT)
    pair.up()
    wait_until(lambda: any(r.get("what") == "dpd_ok" for r in pair.trace()), 5,
               "a liveness check that strongSwan answers")

    out = pair.swan.node.cmd("iptables -I INPUT -p udp -j DROP && echo dropped")
    assert "dropped" in out, out
    gone = time.monotonic()
    wait_until(lambda: not pair.our_sas(), 15, "our daemon to clear the SA of the dead peer")
    assert time.monotonic() - gone < 10
    unreachable = pair.events("PeerUnreachable")
    assert len(unreachable) == 1, unreachable
    retransmits = [r for r in pair.trace() if r["kind"] == "retransmit"]
    assert {r["exchange"] for r in retransmits} == {"INFORMATIONAL"} and len(retransmits) == 2, retransmits
    assert len(pair.events("IkeSaDeleted")) == 1
    assert pair.swan_sas(), "strongSwan never heard of it and keeps its SA"

    messages = pair.finish(answered=False)
    tail = [m for m in messages if m["exchange"] == ExchangeType.INFORMATIONAL]
    unanswered = [m for m in tail if not m["is_response"] and m["src"] == wan(OURS)
                  and not any(r["is_response"] and r["message_id"] == m["message_id"] for r in tail)]
    assert len(unanswered) == 3, "one liveness check, sent three times"


@pytest.mark.parametrize("role", ROLES)
def test_strongswan_dpd_is_answered(interop_lab, role):
    pair = make_pair(interop_lab, role, swan_conf={"dpd_delay": "1s"})
    pair.up()
    ours, theirs = pair.settled()

    def answered_twice():
        return len(re.findall(r"parsed INFORMATIONAL response \d+ \[ \]", pair.swan.log_text())) >= 2

    wait_until(answered_twice, 8, "strongSwan to have two liveness checks answered")
    log = pair.swan.log_text()
    assert log.count("sending DPD request") >= 2
    assert "retransmit" not in log
    assert pair.agreement() is not None and pair.agreement()[0]["spi_i"] == ours["spi_i"]
    checks = pair.messages(dir="in", exchange="INFORMATIONAL", response=False)
    replies = pair.messages(dir="out", exchange="INFORMATIONAL", response=True)
    assert len(checks) >= 2 and all(m["payloads"] == [] for m in checks)
    assert [m["message_id"] for m in replies][:len(checks)] == [m["message_id"] for m in checks]

    messages = pair.finish()
    dpd = [m for m in messages[4:] if m["exchange"] == ExchangeType.INFORMATIONAL]
    assert len(dpd) >= 4 and all(m["payloads"] == [46] for m in dpd), "empty INFORMATIONALs (only SK)"


# ------------------------------------------------------------------ Wireshark key export


def tshark_with_keys(pcap: Path, keys: Path | None, *args: str) -> subprocess.CompletedProcess:
    """tshark reading Wireshark's personal files (ikev2_decryption_table) from keys/wireshark/."""
    config = str(keys) if keys is not None else "/nonexistent"
    env = dict(os.environ, XDG_CONFIG_HOME=config, HOME="/nonexistent")
    return subprocess.run(["tshark", "-r", str(pcap), *args], capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("proposal, esp, table_names", [
    ("aes128gcm16-prfsha256-x25519", "aes128gcm16", ('"AES-GCM-128 with 16 octet ICV [RFC5282]"', '"NONE [RFC4306]"')),
    ("aes128-sha256-modp2048", "aes128-sha256", ('"AES-CBC-128 [RFC3602]"', '"HMAC_SHA2_256_128 [RFC4868]"')),
], ids=["gcm", "cbc"])
def test_wireshark_decrypts_with_our_exported_keys(interop_lab, role, proposal, esp, table_names):
    pair = make_pair(interop_lab, role, ours_proposals=proposal, esp=esp)
    pair.up()
    ours, _ = pair.settled()
    rekey(pair, "ours", "ike")
    wait_until(lambda: (a := pair.agreement()) and a[0]["spi_i"] != ours["spi_i"], 10, "the IKE SA rekeyed")
    messages = pair.finish()

    table = pair.ours.keys_dir / "wireshark" / "ikev2_decryption_table"
    lines = table.read_text().splitlines()
    assert len(lines) == 2, "the first and the rekeyed IKE SA"
    for line in lines:
        columns = line.split(",")
        assert (columns[4], columns[7]) == table_names, line
    assert lines[0].split(",")[:2] == [ours["spi_i"], ours["spi_r"]]

    sk = [m for m in messages if m["exchange"] != ExchangeType.IKE_SA_INIT]
    fields = ("-T", "fields", "-E", "occurrence=a", "-E", "separator=|", "-e", "isakmp.exchangetype",
              "-e", "isakmp.id.data.fqdn", "-e", "isakmp.enc.icd")
    without = tshark_with_keys(pair.dump.path, None, "-Y", "isakmp.exchangetype == 35", *fields)
    assert without.returncode == 0, without.stderr
    assert "gwa.lab" not in without.stdout, "tshark should not see inside SK without the keys"

    with_keys = tshark_with_keys(pair.dump.path, pair.ours.keys_dir, "-Y", "isakmp.exchangetype == 35", *fields)
    complaints = [line for line in with_keys.stderr.splitlines() if "Running as user" not in line]
    assert with_keys.returncode == 0 and not complaints, with_keys.stderr  # a bad table line is reported here
    ids = [row.split("|")[1] for row in with_keys.stdout.splitlines()]
    initiator, responder = ("gwa.lab", "gwb.lab") if pair.ours_initiates else ("gwb.lab", "gwa.lab")
    assert ids == [f"{initiator},{responder}", responder], "IDi (and IDr) in the request, IDr in the response"

    detail = tshark_with_keys(pair.dump.path, pair.ours.keys_dir, "-V")
    assert detail.returncode == 0, detail.stderr
    assert detail.stdout.count("Decrypted Data") == len(sk), "every SK payload, on both IKE SAs, decrypts"
    assert "Payload: Identification - Initiator (35)" in detail.stdout
    assert "[incorrect]" not in detail.stdout, "an integrity checksum did not verify with the exported keys"
    assert "Payload: Authentication (39)" in detail.stdout and "Payload: Traffic Selector - Initiator" in detail.stdout
    assert "Payload: Delete (42)" in detail.stdout, "the delete of the rekeyed IKE SA decrypts too"
