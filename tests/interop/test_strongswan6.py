"""strongSwan 6 (Debian 13's charon in a root file system of its own, lab.net.strongswan6) as a
peer: against our daemon in both roles (PSK and certificates, classical groups), against
strongSwan 5.9.8 in both roles, two strongSwan 6 with RFC 9370 additional key exchanges, 5.9.8
refusing a proposal whose additional key exchange it cannot do, and nothing left behind (no
process, no mount) after a run that fails or is interrupted.

Our daemon or 5.9.8 runs on swgwa (203.0.113.1), strongSwan 6 on swgwb (203.0.113.2), except
where both are strongSwan 6.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.conf.writer import render
from lab.net.strongswan import StrongSwan, StrongSwanError
from lab.net.strongswan6 import STRONGSWAN6_ROOT, StrongSwan6, find_root, mounts_below

from .conftest import GATEWAYS, PEER, PSK, S2SLab, render_conf
from .test_ike_strongswan import (
    OURS,
    SWAN,
    Pair,
    check_capture,
    exchanges,
    install_pki,
    installed_pairs,
    make_pki,
    rekey,
    wait_child_rekeyed,
    wait_until,
    wan,
)

pytestmark = [pytest.mark.interop, pytest.mark.root]

IKE, CHILD = "s2s", "net"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _strongswan6_installed():
    try:
        find_root()
    except StrongSwanError as err:
        pytest.fail(str(err), pytrace=False)


def use_strongswan6(lab: S2SLab, gateway: str, swanctl_conf: str, **options) -> StrongSwan6:
    """strongSwan 6 (not started) for `gateway`, stopped with the lab like 5.9.8 (lab.swans)."""
    swan = StrongSwan6(lab.nodes[gateway], lab.workdir / gateway, gateway, **options)
    swan.write_config(swanctl_conf)
    lab.swans[gateway] = swan
    return swan


def all_mounts_below(root: Path) -> dict[int, list[str]]:
    """Every process we can see with a mount below `root` in its mount namespace."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            points = mounts_below(root, f"/proc/{entry}/mountinfo")
            if points:
                found[int(entry)] = points
    return found


def charons_in_root(root: Path) -> list[int]:
    """Processes whose root directory is strongSwan 6's root file system."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/root") == str(root):
                    found.append(int(entry))
            except OSError:
                pass
    return found


# ------------------------------------------------------------------ ours <-> strongSwan 6


@pytest.mark.parametrize("role", ["ours-initiator", "ours-responder"])
@pytest.mark.parametrize("auth, proposal", [("psk", "aes128gcm16-prfsha256-x25519"),
                                            ("psk", "aes256-sha384-modp3072"),
                                            ("ecdsa", "aes256gcm16-prfsha384-ecp384"),
                                            ("rsa", "aes128-sha256-modp2048")])
def test_ours_and_strongswan6(interop_lab, role, auth, proposal):
    ours_initiates = role == "ours-initiator"
    kind = "psk" if auth == "psk" else "pubkey"
    esp = "aes128gcm16" if "gcm" in proposal else "aes128-sha256"
    ours = interop_lab.use_ours(OURS, render_conf(OURS, initiator=ours_initiates, auth=kind, proposals=proposal,
                                                  esp_proposals=esp))
    swan = use_strongswan6(interop_lab, SWAN, render_conf(SWAN, initiator=not ours_initiates, auth=kind,
                                                          proposals=proposal, esp_proposals=esp),
                           export_keys=True)
    if auth != "psk":
        for gateway in (OURS, SWAN):
            install_pki(interop_lab, gateway, make_pki(auth))
    pair = Pair(interop_lab, ours, swan, ours_initiates, interop_lab.capture(OURS, "ike.pcap"))
    pair.up()
    mine, theirs = pair.settled()
    assert swan.version().startswith("6."), swan.version()
    assert mine["initiator"] is ours_initiates
    assert mine["algorithms"].split("-")[-1] == proposal.split("-")[-1], mine["algorithms"]
    method = {"psk": "pre-shared key", "rsa": "RSA_EMSA_PKCS1_SHA2_256", "ecdsa": "ECDSA_WITH_SHA256_DER"}[auth]
    assert f"authentication of 'gwa.lab' with {method} successful" in swan.log_text(), swan.log_tail()
    # strongSwan 6 announces IKE_INTERMEDIATE (RFC 9242 §3.1) only with additional key exchanges
    messages = pair.finish()
    assert exchanges(messages) == ["IKE_SA_INIT"] * 2 + ["IKE_AUTH"] * 2
    # the keys strongSwan 6 logged decrypt its IKE SA like 5.9.8's (lab.net.charon_keys)
    swan.observe()
    tables = swan.key_tables()
    assert [line.split(",")[:2] for line in tables["ikev2_decryption_table"]] == [
        [theirs["initiator-spi"], theirs["responder-spi"]]], tables
    assert len(tables["esp_sa"]) == 2, tables


@pytest.mark.parametrize("role", ["ours-initiator", "ours-responder"])
def test_ours_and_strongswan6_with_two_additional_key_exchanges(interop_lab, role):
    """RFC 9370 between implementations: ECP-384 in IKE_SA_INIT, then X25519 and MODP-3072 each in
    an IKE_INTERMEDIATE exchange (RFC 9242), keys derived anew after each, IntAuth in AUTH. If
    either side derived or authenticated differently, IKE_AUTH would fail."""
    ours_initiates = role == "ours-initiator"
    proposal = "aes256gcm16-prfsha384-ecp384-ke1_x25519-ke2_modp3072"
    ours = interop_lab.use_ours(OURS, render_conf(OURS, initiator=ours_initiates, auth="psk", proposals=proposal,
                                                  esp_proposals="aes128gcm16"))
    swan = use_strongswan6(interop_lab, SWAN, render_conf(SWAN, initiator=not ours_initiates, auth="psk",
                                                          proposals=proposal, esp_proposals="aes128gcm16"),
                           export_keys=True)
    pair = Pair(interop_lab, ours, swan, ours_initiates, interop_lab.capture(OURS, "ike.pcap"))
    pair.up()
    _mine, theirs = pair.settled()
    assert (theirs.get("dh-group"), theirs.get("ake1"), theirs.get("ake2")) == ("ECP_384", "CURVE_25519",
                                                                              "MODP_3072"), theirs
    assert "authentication of 'gwa.lab' with pre-shared key successful" in swan.log_text(), swan.log_tail()
    messages = pair.finish()
    assert exchanges(messages) == ["IKE_SA_INIT"] * 2 + ["IKE_INTERMEDIATE"] * 4 + ["IKE_AUTH"] * 2


@pytest.mark.parametrize("side", ["ours", "strongswan"], ids=lambda s: f"{s}-rekeys")
def test_ike_rekey_with_followup_ke_between_ours_and_strongswan6(interop_lab, side):
    """RFC 9370 §2.2.4: the IKE SA rekey carries X25519 in one IKE_FOLLOWUP_KE exchange after
    CREATE_CHILD_SA, linked by the ADDITIONAL_KEY_EXCHANGE notify; SKEYSEED from both shared
    secrets. If either side derived differently, the DELETE of the old IKE SA would be the only
    thing to get through and the new IKE SA would not agree."""
    proposal = "aes256gcm16-prfsha384-ecp384-ke1_x25519"
    ours = interop_lab.use_ours(OURS, render_conf(OURS, initiator=True, auth="psk", proposals=proposal,
                                                  esp_proposals="aes128gcm16"))
    swan = use_strongswan6(interop_lab, SWAN, render_conf(SWAN, initiator=False, auth="psk",
                                                          proposals=proposal, esp_proposals="aes128gcm16"),
                           export_keys=True)
    pair = Pair(interop_lab, ours, swan, True, interop_lab.capture(OURS, "ike.pcap"))
    pair.up()
    first, _ = pair.settled()
    old_spis = (first["spi_i"], first["spi_r"])
    rekey(pair, side, "ike")

    def rekeyed():
        agreed = pair.agreement()
        if agreed is None:
            return None
        o, _t = agreed
        return agreed if o["spi_i"] not in old_spis and o["spi_r"] not in old_spis else None

    _o, theirs = wait_until(rekeyed, 15, "the IKE SA rekeyed with IKE_FOLLOWUP_KE on both sides")
    assert (theirs.get("dh-group"), theirs.get("ake1")) == ("ECP_384", "CURVE_25519"), theirs
    # the new IKE SA's keys agree: a CHILD SA rekey runs over it, protected with them
    rekey(pair, side, "child")
    wait_child_rekeyed(pair, installed_pairs(_o))
    messages = pair.finish()
    rekeyer = wan(OURS) if side == "ours" else wan(SWAN)
    names = exchanges(messages[6:], requests_from=rekeyer)
    assert names == ["CREATE_CHILD_SA", "IKE_FOLLOWUP_KE", "INFORMATIONAL", "CREATE_CHILD_SA", "INFORMATIONAL"], names


# ------------------------------------------------------------------ CHILD SAs with IKE_FOLLOWUP_KE

FOLLOWUP_IKE = {"hybrid-ike": "aes256gcm16-prfsha384-ecp384-ke1_x25519",
                "classic-ike": "aes256gcm16-prfsha384-ecp384"}
FOLLOWUP_ESP = {"one-additional": "aes256gcm16-x25519-ke1_modp3072",
                "two-additional": "aes256gcm16-x25519-ke1_modp3072-ke2_ecp384"}
AUX_TS = {OURS: "10.1.1.0/24", SWAN: "10.2.1.0/24"}  # the IKE_AUTH CHILD SA of the "new" case: no traffic


def followup_conf(gateway: str, *, initiator: bool, esp: str, new: bool, ike: str) -> str:
    """s2s with child net; for a new CHILD SA, child aux first (made in IKE_AUTH, on selectors no packet
    uses), and net then asked for in CREATE_CHILD_SA: the pings cross the CHILD SA made with
    IKE_FOLLOWUP_KE."""
    me, peer = GATEWAYS[gateway], GATEWAYS[PEER[gateway]]
    child = {"local_ts": me["local_ts"], "remote_ts": peer["local_ts"], "esp_proposals": esp, "mode": "tunnel"}
    children = {"net": child}
    if new:
        children = {"aux": dict(child, local_ts=AUX_TS[gateway], remote_ts=AUX_TS[PEER[gateway]]), "net": child}
    conn = {"version": 2, "local_addrs": me["wan"], "remote_addrs": peer["wan"] if initiator else "%any",
            "proposals": ike, "mobike": False, "local": {"auth": "psk", "id": me["id"]},
            "remote": {"auth": "psk", "id": peer["id"]}, "children": children}
    secrets = {"ike-s2s": {"id-local": me["id"], "id-remote": peer["id"], "secret": PSK}}
    return render({"connections": {"s2s": conn}, "secrets": secrets})


def esp_lines_of(tables: dict[str, list[str]], spis: set[str]) -> set[str]:
    """The esp_sa lines (Wireshark's ESP SA table) of the SAs with these SPIs (hex, no 0x)."""
    return {line for line in tables.get("esp_sa", []) if line.split(",")[3].strip('"')[2:] in spis}


FOLLOWUP_CASES = [pytest.param(side, kind, esp, "hybrid-ike", id=f"{side}-initiates-{kind}-{name}")
                  for side in ("ours", "strongswan") for kind in ("rekey", "new")
                  for name, esp in FOLLOWUP_ESP.items()]
# an IKE SA without additional key exchanges (so without IKE_INTERMEDIATE; strongSwan 6 then does not announce
# it) rekeys its CHILD SA with them all the same
FOLLOWUP_CASES += [pytest.param(side, "rekey", FOLLOWUP_ESP["one-additional"], "classic-ike",
                                id=f"{side}-initiates-rekey-one-additional-classic-ike")
                   for side in ("ours", "strongswan")]


@pytest.mark.parametrize("side, kind, esp, ike", FOLLOWUP_CASES)
def test_child_sa_with_followup_ke_between_ours_and_strongswan6(interop_lab, side, kind, esp, ike):
    """RFC 9370 §2.2.4 for a CHILD SA: CREATE_CHILD_SA carries X25519, one IKE_FOLLOWUP_KE exchange per
    additional key exchange (MODP-3072, ECP-384) follows, and KEYMAT comes from all the shared
    secrets. Both the rekey of the CHILD SA made in IKE_AUTH (which has no key exchange of its own) and
    a second CHILD SA, asked for by either side. The ESP keys that charon logged are the ones we
    exported, and pings cross the new CHILD SA."""
    new = kind == "new"
    additional = esp.count("-ke")
    proposals = FOLLOWUP_IKE[ike]
    ours = interop_lab.use_ours(OURS, followup_conf(OURS, initiator=True, esp=esp, new=new, ike=proposals),
                                export_keys=True)
    swan = use_strongswan6(interop_lab, SWAN, followup_conf(SWAN, initiator=False, esp=esp, new=new, ike=proposals),
                           export_keys=True)
    pair = Pair(interop_lab, ours, swan, True, interop_lab.capture(OURS, "ike.pcap"))
    swan.start()
    swan.load_all()
    ours.start()
    answer = ours.ctl("initiate", ike=IKE, child="aux" if new else CHILD, timeout=20)
    assert answer["ok"], f"{answer}\n{ours.log_tail()}\n{swan.log_tail()}"
    first, _ = pair.settled()
    # RFC 9370 §2.2.4: the CHILD SA of IKE_AUTH has no key exchange, so none of the additional ones
    assert [c["algorithms"] for c in first["children"]] == ["aes256gcm16-noesn"], first
    old = installed_pairs(first)
    if new:
        if side == "ours":
            ours.initiate(child=CHILD, ike=IKE, reuse=True)
        else:
            swan.initiate(child=CHILD, timeout=20)

        def both():
            agreed = pair.agreement()
            return agreed if agreed is not None and len(installed_pairs(agreed[0])) == 2 else None

        mine, theirs = wait_until(both, 15, "a second CHILD SA on both sides")
    else:
        rekey(pair, side, "child")
        mine, theirs = wait_child_rekeyed(pair, old)
    [made] = [c for c in mine["children"] if (c["spi_in"], c["spi_out"]) not in old]
    assert made["name"] == CHILD and made["algorithms"] == esp + "-noesn", made
    [child] = [c for c in theirs["child-sas"].values() if c["spi-in"] == made["spi_out"]]
    assert (child.get("dh-group"), child.get("ake1"), child.get("ake2")) == (
        ("CURVE_25519", "MODP_3072", "ECP_384" if additional == 2 else None)), child
    # the same ESP keys on both sides: KEYMAT from g^ir and every SK(n), in order
    swan.observe()
    spis = {made["spi_in"], made["spi_out"]}
    theirs_lines = esp_lines_of(swan.key_tables(), spis)
    assert len(theirs_lines) == 2 and theirs_lines == esp_lines_of(ours.key_tables(), spis), (
        theirs_lines, esp_lines_of(ours.key_tables(), spis))
    assert ping(interop_lab, OURS) == 3
    assert ping(interop_lab, SWAN) == 3
    messages = pair.finish()
    creator = wan(OURS) if side == "ours" else wan(SWAN)
    names = [n for n in exchanges(messages, requests_from=creator)
             if n not in ("IKE_SA_INIT", "IKE_INTERMEDIATE", "IKE_AUTH")]
    # RFC 9370 §2.2.4: one IKE_FOLLOWUP_KE per additional key exchange; a rekey then deletes the old SA
    assert names == ["CREATE_CHILD_SA"] + ["IKE_FOLLOWUP_KE"] * additional + ([] if new else ["INFORMATIONAL"]), names


# ------------------------------------------------------------------ strongSwan 6 <-> 5.9.8


def ping(lab: S2SLab, gateway: str) -> int:
    return lab.ping(gateway, count=3)


@pytest.mark.parametrize("initiator", ["strongswan6", "strongswan5"])
def test_strongswan6_and_strongswan5(interop_lab, initiator):
    six_initiates = initiator == "strongswan6"
    five = StrongSwan(interop_lab.nodes[OURS], interop_lab.workdir / OURS, OURS, export_keys=True)
    five.write_config(render_conf(OURS, initiator=not six_initiates, proposals="aes256gcm16-prfsha384-ecp384",
                                  esp_proposals="aes256gcm16"))
    interop_lab.swans[OURS] = five
    six = use_strongswan6(interop_lab, SWAN, render_conf(SWAN, initiator=six_initiates,
                                                        proposals="aes256gcm16-prfsha384-ecp384",
                                                        esp_proposals="aes256gcm16"), export_keys=True)
    five.start()
    six.start()
    assert five.version().startswith("5.9"), five.version()
    assert six.version().startswith("6."), six.version()
    (six if six_initiates else five).initiate(child=CHILD, timeout=20)
    for swan in (five, six):
        swan.wait_for(lambda sas: any(s.state == "ESTABLISHED" and s.children for s in sas), 10)
    assert ping(interop_lab, OURS) == 3
    assert ping(interop_lab, SWAN) == 3
    [sa] = six.list_sas()
    assert sa.initiator is six_initiates and sa.algorithms == "aes256gcm16-prfsha384-ecp384", sa


# ------------------------------------------------------------------ RFC 9370 between two strongSwan 6


def test_two_strongswan6_with_two_additional_key_exchanges(interop_lab):
    proposal = "aes256gcm16-prfsha384-ecp384-ke1_x25519-ke2_modp3072"
    swans = {gw: use_strongswan6(interop_lab, gw, render_conf(gw, initiator=gw == OURS, proposals=proposal,
                                                              esp_proposals="aes256gcm16"), export_keys=True)
             for gw in (OURS, SWAN)}
    dump = interop_lab.capture(OURS, "ike.pcap")
    for swan in swans.values():
        swan.start()
    swans[OURS].initiate(child=CHILD, timeout=20)
    [sa] = swans[SWAN].raw_sas()
    assert sa["state"] == "ESTABLISHED"
    # VICI names the additional key exchanges ake1 ... ake7 (strongSwan 6)
    assert (sa.get("dh-group"), sa.get("ake1"), sa.get("ake2")) == ("ECP_384", "CURVE_25519", "MODP_3072"), sa
    assert swans[SWAN].list_sas()[0].algorithms == proposal
    assert ping(interop_lab, OURS) == 3
    dump.stop()
    # tshark and our decoder agree on every message; RFC 9370 §2.2.2: one IKE_INTERMEDIATE
    # exchange per additional key exchange, between IKE_SA_INIT and IKE_AUTH
    messages = check_capture(dump.path)
    assert exchanges(messages) == ["IKE_SA_INIT"] * 2 + ["IKE_INTERMEDIATE"] * 4 + ["IKE_AUTH"] * 2
    # RFC 9242 §3.1: both announce INTERMEDIATE_EXCHANGE_SUPPORTED (16438) in IKE_SA_INIT
    assert [16438 in m["notifies"] for m in messages[:2]] == [True, True], messages[:2]
    assert "IKE_INT_SUP" in swans[OURS].log_text()


@pytest.mark.parametrize("initiator", ["strongswan6", "strongswan5"])
def test_an_additional_key_exchange_strongswan5_cannot_do_is_refused(interop_lab, initiator):
    """strongSwan 6 requires an additional key exchange (ke1_x25519, RFC 9370). As responder,
    5.9.8 does not know transform type 6 and refuses the proposal; as initiator it offers
    none, and strongSwan 6 refuses that (RFC 9370 §2.2.1: a required one). Either way the
    answer is NO_PROPOSAL_CHOSEN and no SA comes up."""
    six_initiates = initiator == "strongswan6"
    five = StrongSwan(interop_lab.nodes[OURS], interop_lab.workdir / OURS, OURS)
    five.write_config(render_conf(OURS, initiator=not six_initiates, proposals="aes256gcm16-prfsha384-ecp384",
                                  esp_proposals="aes256gcm16"))
    interop_lab.swans[OURS] = five
    six = use_strongswan6(interop_lab, SWAN, render_conf(SWAN, initiator=six_initiates,
                                                        proposals="aes256gcm16-prfsha384-ecp384-ke1_x25519",
                                                        esp_proposals="aes256gcm16"))
    six.start()
    five.start()
    with pytest.raises(StrongSwanError, match="establishing CHILD_SA 'net' failed"):
        (six if six_initiates else five).initiate(child=CHILD, timeout=10)
    responder, initiating = (five, six) if six_initiates else (six, five)
    assert "received proposals unacceptable" in responder.log_text(), responder.log_tail()
    assert "received NO_PROPOSAL_CHOSEN notify error" in initiating.log_text(), initiating.log_tail()
    if six_initiates:
        # 5.9.8 names the transform it does not know by its type (6: additional key exchange 1)
        assert "IKE:AES_GCM_16_256/PRF_HMAC_SHA2_384/ECP_384/UNKNOWN_6_31" in five.log_text(), five.log_tail()
    assert five.list_sas() == [] and six.list_sas() == []


# ------------------------------------------------------------------ nothing left behind


def test_a_failed_run_leaves_no_mount_and_no_process(interop_lab):
    root = find_root()
    if root == Path("/"):
        pytest.skip("strongSwan 6 is the system's own here: nothing is mounted")
    swan = use_strongswan6(interop_lab, SWAN, render_conf(SWAN, initiator=True, esp_proposals="aes128gcm16"))
    swan.start()
    pid = swan.pid
    # the mounts are in charon's mount namespace only (its mountinfo names them from inside its
    # root), never in ours
    inside = {line.split()[4]: line.split()[-3] for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()}
    assert {point: inside.get(point) for point in ("/run", "/mnt", "/proc", "/dev")} == {
        "/run": "tmpfs", "/mnt": "ext4" if inside.get("/mnt") == "ext4" else inside.get("/mnt"), "/proc": "proc",
        "/dev": "devtmpfs"}, inside
    assert mounts_below(root) == []
    assert os.readlink(f"/proc/{pid}/root") == str(root)
    with pytest.raises(StrongSwanError):  # no peer answers: the run fails
        swan.initiate(child=CHILD, timeout=3)
    # the lab's teardown as after any failure: the lab stops what it started ...
    interop_lab.swans.pop(SWAN).stop()
    wait_until(lambda: not charons_in_root(root) and not all_mounts_below(root), 10,
               "charon gone and its mounts with it")


def test_a_killed_charon_takes_its_mounts_along(interop_lab):
    root = find_root()
    if root == Path("/"):
        pytest.skip("strongSwan 6 is the system's own here: nothing is mounted")
    swan = use_strongswan6(interop_lab, SWAN, render_conf(SWAN, initiator=True, esp_proposals="aes128gcm16"))
    swan.start()
    swan.kill()  # a crash: no orderly stop
    wait_until(lambda: not charons_in_root(root) and not all_mounts_below(root), 10,
               "charon gone and its mounts with it")


def test_cleanup_finds_and_removes_a_mount_left_below_the_root(tmp_path):
    """A mount below strongSwan 6's root in the lab's own mount namespace (a run never makes one
    there) is a leftover for lab.net.cleanup: reported, then unmounted. Tried in a mount namespace
    of its own, so that nothing outside this test sees it."""
    root = STRONGSWAN6_ROOT
    script = (
        "import os, subprocess\n"
        "from lab.net import cleanup\n"
        f"subprocess.run(['mount', '-t', 'tmpfs', 'leftover', {str(root / 'mnt')!r}], check=True)\n"
        "record = cleanup.LabRecord(name='leftover-test')\n"
        "print('FOUND', cleanup.leftovers(record))\n"
        "print('REMOVED', cleanup.remove(record))\n"
        "print('AFTER', cleanup.mounts_below())\n"
    )
    run = subprocess.run(["unshare", "--mount", "--propagation", "private", "--", sys.executable, "-c", script],
                         capture_output=True, text=True, cwd=str(REPO), timeout=60,
                         env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert run.returncode == 0, run.stdout + run.stderr
    mount = f"mount {root / 'mnt'} (strongSwan 6's root file system)"
    assert f"FOUND [{mount!r}]" in run.stdout, run.stdout
    assert f"REMOVED [{mount!r}]" in run.stdout, run.stdout
    assert "AFTER []" in run.stdout, run.stdout


def test_ctrl_c_during_a_strongswan6_run_leaves_nothing(tmp_path):
    """`ipsec-lab run strongswan6` interrupted once strongSwan 6 is up: exit 130, no charon, no
    mount below the root."""
    root = find_root()
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "lab.cli", "run", "strongswan6", "--out", str(out)],
                            cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, IPSEC_LAB_HOST="1"), start_new_session=True)
    try:
        # both strongSwan 6 (hub and spoke2) running, each with its mounts
        wait_until(lambda: len(charons_in_root(root)) >= 2 if root != Path("/") else True, 120,
                   "strongSwan 6 running")
        time.sleep(1)
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, output
    assert "Traceback" not in output, output
    assert not charons_in_root(root)
    assert not all_mounts_below(root)
    assert "tear down (daemons, taps, namespaces) - nothing left behind" in output, output
