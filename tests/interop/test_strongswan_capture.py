"""strongSwan to strongSwan through a rekey of the CHILD_SA and of the IKE SA, captured on
one gateway; our capture decoder must agree with tshark on every IKE message."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from lab.ike.const import PAYLOAD_SHORT_NAMES, ExchangeType, NotifyType, PayloadType
from lab.net.peers import established

KEPT_CAPTURE = Path(__file__).resolve().parent.parent / "data" / "strongswan_s2s.pcap"

IKE, CHILD = "s2s", "net"
I_FLAG, R_FLAG = 0x08, 0x20  # RFC 7296 §3.1
PAYLOAD_TYPES = {name: int(t) for t, name in PAYLOAD_SHORT_NAMES.items()} | {"Ni": 40, "Nr": 40}
TSHARK_FIELDS = ("frame.number", "ip.src", "udp.srcport", "ip.dst", "udp.dstport", "isakmp.ispi", "isakmp.rspi",
                 "isakmp.exchangetype", "isakmp.flags", "isakmp.messageid", "isakmp.typepayload",
                 "isakmp.notify.msgtype")


def tshark(*args: str) -> str:
    if shutil.which("tshark") is None:
        pytest.fail("tshark is missing: apt-get install tshark", pytrace=False)
    env = dict(os.environ, XDG_CONFIG_HOME="/nonexistent", HOME="/nonexistent")  # no user preferences
    run = subprocess.run(["tshark", *args], capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, f"tshark {' '.join(args)} failed: {run.stderr}"
    return run.stdout


def tshark_messages(pcap) -> list[dict]:
    """The IKE header facts and top-level payload types of every IKE message, per tshark."""
    out = tshark("-r", str(pcap), "-Y", "isakmp", "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a",
                 *(arg for f in TSHARK_FIELDS for arg in ("-e", f)))
    messages = []
    for line in out.splitlines():
        row = dict(zip(TSHARK_FIELDS, line.split("\t")))
        flags = int(row["isakmp.flags"], 16)
        messages.append({
            "frame": int(row["frame.number"]),
            "src": row["ip.src"], "sport": int(row["udp.srcport"]),
            "dst": row["ip.dst"], "dport": int(row["udp.dstport"]),
            "spi_i": row["isakmp.ispi"].replace(":", ""), "spi_r": row["isakmp.rspi"].replace(":", ""),
            "exchange": int(row["isakmp.exchangetype"]),
            "is_initiator": bool(flags & I_FLAG), "is_response": bool(flags & R_FLAG),
            "message_id": int(row["isakmp.messageid"], 0),
            # tshark also lists proposal (2) and transform (3) substructures in this field
            "payloads": [int(t) for t in row["isakmp.typepayload"].split(",") if t and int(t) not in (2, 3)],
            "notifies": [int(t) for t in row.get("isakmp.notify.msgtype", "").split(",") if t],
        })
    return messages


def ours(decoded) -> dict:
    """The same facts from our decoder's DecodedMessage."""
    payloads, notifies = [], []
    for name in decoded.payloads:
        short, _, inner = name.partition("(")
        payloads.append(PAYLOAD_TYPES[short] if short in PAYLOAD_TYPES else int(PayloadType[short]))
        if short == "N":
            notify = inner.rstrip(")")
            notifies.append(int(NotifyType[notify]) if notify in NotifyType.__members__
                            else int(notify.split("(")[-1].rstrip(")")))
    return {
        "frame": decoded.frame, "src": decoded.src, "sport": decoded.sport, "dst": decoded.dst,
        "dport": decoded.dport, "spi_i": decoded.spi_i, "spi_r": decoded.spi_r, "exchange": decoded.exchange,
        "is_initiator": decoded.is_initiator, "is_response": decoded.is_response,
        "message_id": decoded.message_id, "payloads": payloads, "notifies": notifies,
    }


def only_sa(sas):
    assert len(sas) == 1, f"expected one IKE SA, found {sas}"
    return sas[0]


def only_child(sa):
    """The one INSTALLED CHILD_SA (rekeyed ones linger as DELETED for a while)."""
    children = [c for c in sa.children if c.state == "INSTALLED"]
    assert len(children) == 1, f"expected one INSTALLED CHILD_SA, found {sa.children}"
    return children[0]


@pytest.mark.interop
@pytest.mark.root
def test_strongswan_s2s_rekey_capture_matches_tshark(s2s_lab):
    a, b = s2s_lab.swans["swgwa"], s2s_lab.swans["swgwb"]
    dump = s2s_lab.capture("swgwa", "strongswan_s2s.pcap")

    b.start()
    b.load_all()  # the responder first, or the initiator meets NO_PROPOSAL_CHOSEN
    a.start()
    a.load_all()
    a.initiate(child=CHILD, timeout=20)

    for gw in (a, b):
        gw.wait_for(lambda sas: established(sas, IKE, CHILD), timeout=10, what="s2s ESTABLISHED, net INSTALLED")
    sa_a, sa_b = only_sa(a.list_sas()), only_sa(b.list_sas())
    for sa in (sa_a, sa_b):
        assert sa.state == "ESTABLISHED" and sa.name == IKE
        assert [c.state for c in sa.children] == ["INSTALLED"]
    assert (sa_a.spi_i, sa_a.spi_r) == (sa_b.spi_i, sa_b.spi_r)
    assert only_child(sa_a).spi_in == only_child(sa_b).spi_out
    assert s2s_lab.ping("swgwa") == 3, "no traffic through the first CHILD_SA"

    # CREATE_CHILD_SA rekeying the CHILD_SA, then INFORMATIONAL deleting the old one (which
    # charon keeps as DELETED for charon.delete_rekeyed_delay, 5 s)
    old_child_spis = {only_child(sa_a).spi_in, only_child(sa_a).spi_out}
    a.rekey(child=CHILD)

    def child_rekeyed(sas):
        if not established(sas, IKE, CHILD) or len(sas) != 1:
            return False
        children = sas[0].children
        installed = [c for c in children if c.state == "INSTALLED"]
        return (len(installed) == 1 and not {installed[0].spi_in, installed[0].spi_out} & old_child_spis
                and all(c.state == "DELETED" for c in children if c is not installed[0]))

    for gw in (a, b):
        gw.wait_for(child_rekeyed, what="the CHILD_SA rekeyed and the old one deleted")

    # CREATE_CHILD_SA rekeying the IKE SA, then INFORMATIONAL deleting the old one
    old_spis = (sa_a.spi_i, sa_a.spi_r)
    a.rekey(ike=IKE)

    def ike_rekeyed(sas):
        return (established(sas, IKE, CHILD) and len(sas) == 1
                and sas[0].spi_i != old_spis[0] and sas[0].spi_r != old_spis[1])

    new_a = only_sa(a.wait_for(ike_rekeyed, what="the IKE SA rekeyed and the old one deleted"))
    new_b = only_sa(b.wait_for(ike_rekeyed, what="the rekeyed IKE SA on the responder"))
    new_spis = (new_a.spi_i, new_a.spi_r)
    assert new_spis == (new_b.spi_i, new_b.spi_r)
    assert s2s_lab.ping("swgwa", count=2) == 2, "no traffic after the rekeyings"

    # INFORMATIONAL deleting the IKE SA
    a.terminate(ike=IKE)
    for gw in (a, b):
        gw.wait_for(lambda sas: not sas, timeout=10, what="no SA left after terminate")
    stats = dump.stop()
    counts = {" ".join(line.split()[1:]): int(line.split()[0]) for line in stats.splitlines() if line[:1].isdigit()}
    assert counts["packets dropped by kernel"] == 0, stats
    assert counts["packets captured"] == counts["packets received by filter"], stats

    pcap = dump.path
    theirs = check_capture(pcap)
    esp_frames = tshark("-r", str(pcap), "-Y", "esp", "-T", "fields", "-e", "frame.number").split()
    assert len(esp_frames) >= 10, f"expected the pings' ESP-in-UDP packets, tshark found {len(esp_frames)}"
    assert (theirs[0]["spi_i"], theirs[0]["spi_r"]) == (old_spis[0], "0" * 16), "IKE_SA_INIT request SPIs"
    assert (theirs[1]["spi_i"], theirs[1]["spi_r"]) == old_spis, "IKE_SA_INIT response SPIs"
    assert (theirs[-1]["spi_i"], theirs[-1]["spi_r"]) == new_spis, "the final delete is on the rekeyed IKE SA"


@pytest.mark.interop
def test_kept_capture_matches_tshark():
    """tests/data/strongswan_s2s.pcap, a capture of the run above, still decodes the same (no root)."""
    check_capture(KEPT_CAPTURE)


def check_capture(pcap: Path) -> list[dict]:
    """tshark finds no malformed packet; the IKE messages are the scenario's exchanges (set up,
    CHILD_SA rekey, IKE SA rekey, delete, each request answered); our decoder reports the
    same header facts and payload chain as tshark for every one. Returns tshark's view."""
    assert pcap.stat().st_size > 0, f"{pcap} is empty"
    assert tshark("-r", str(pcap), "-Y", "_ws.malformed").strip() == "", "tshark finds malformed packets"
    expert = tshark("-r", str(pcap), "-q", "-z", "expert,error")
    assert "Errors (" not in expert, expert
    theirs = tshark_messages(pcap)

    assert len(theirs) >= 8, f"only {len(theirs)} IKE messages captured"
    kinds = [m["exchange"] for m in theirs]
    for kind in (ExchangeType.IKE_SA_INIT, ExchangeType.IKE_AUTH, ExchangeType.INFORMATIONAL):
        assert kinds.count(kind) >= 2, f"{kind.name} request and response missing: {kinds}"
    assert kinds.count(ExchangeType.CREATE_CHILD_SA) >= 4, f"two CREATE_CHILD_SA exchanges expected: {kinds}"
    assert {m["sport"] for m in theirs[2:]} == {4500}, "strongSwan should float to UDP 4500 after IKE_SA_INIT"
    requests = [(m["spi_i"], m["message_id"], m["exchange"]) for m in theirs if not m["is_response"]]
    responses = [(m["spi_i"], m["message_id"], m["exchange"]) for m in theirs if m["is_response"]]
    assert sorted(requests) == sorted(responses), "every request has exactly one response"

    from lab.viz.decode import decode_pcap

    decoded = decode_pcap(pcap)
    assert [m.error for m in decoded] == [None] * len(decoded)
    assert [m.exchange_name for m in decoded] == [ExchangeType(k).name for k in kinds]
    assert [ours(m) for m in decoded] == theirs
    return theirs
