"""The one algorithm registry (lab.iana), walked.

Every keyword strongSwan's proposal parser accepts, in IKE `proposals`, in `esp_proposals` and
in `ah_proposals`, either works end to end or is refused by the swanctl.conf reader with
`file:line: key: message`. End to end: both swanctl.conf files are written by lab.conf.writer
and read by lab.conf.swanctl, two IkeEndpoints negotiate in memory, the CHILD_SA keys go into
lab.esp's SAs the way the daemon installs them (a rekey shows the PFS group), traffic is carried
both ways and checked against scapy's SecurityAssociation where scapy knows the algorithm, and the
keys the daemon exports open a capture of it all in tshark where Wireshark knows the names.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.ipsec import AH, ESP, SecurityAssociation
from scapy.packet import Raw
from scapy.utils import wrpcap

from lab.conf.swanctl import ConfigError, parse_swanctl
from lab.conf.writer import render
from lab.daemon.dataplane import child_sa_pair
from lab.daemon.keys import KeyExport
from lab.iana import (ALGORITHMS, Algorithm, DhGroup, EncrId, IntegId, ProtocolId, TransformType, algorithm,
                      keyword_algorithm)
from lab.ike import events as ev
from lab.ike.proposals import ProposalError, format_proposals, parse_proposals
from lab.ike.wireshark import ESP_ENCR_NAMES, ESP_INTEG_NAMES, IKE_ENCR_NAMES, IKE_INTEG_NAMES

from .ike_net import GW_A, GW_B, make_net

CONTEXTS = {"proposals": ProtocolId.IKE, "esp_proposals": ProtocolId.ESP, "ah_proposals": ProtocolId.AH}
KEYWORDS = [k for a in ALGORITHMS if a.parsed for k in a.keywords]
# (context, the proposals as parsed) carried end to end: an alias (sha, sha1) or a keyword strongSwan's rules
# drop (a PRF in ESP, a cipher in AH) gives a proposal identical to one already carried; it is not run again
CARRIED: set[tuple[str, str]] = set()

# scapy's names for what it implements (scapy.layers.ipsec CRYPT_ALGOS, AUTH_ALGOS), with the ICV size. Not
# AES-GCM with 8 or 12 octets: scapy 2.8 seals those with the full 16-octet tag whatever crypt_icv_size says
# (its AESGCM path ignores it); tshark decrypting the capture is their outside check.
SCAPY_ENCR = {EncrId.NULL: ("NULL", None), EncrId.AES_CBC: ("AES-CBC", None), EncrId.AES_CTR: ("AES-CTR", None),
              EncrId.AES_GCM_16: ("AES-GCM", 16),
              EncrId.AES_CCM_8: ("AES-CCM", 8), EncrId.AES_CCM_12: ("AES-CCM", 12), EncrId.AES_CCM_16: ("AES-CCM", 16),
              EncrId.NULL_AUTH_AES_GMAC: ("AES-NULL-GMAC", None), EncrId.CHACHA20_POLY1305: ("CHACHA20-POLY1305", None)}
SCAPY_INTEG = {IntegId.NONE: None, IntegId.HMAC_MD5_96: "HMAC-MD5-96", IntegId.HMAC_SHA1_96: "HMAC-SHA1-96",
               IntegId.HMAC_SHA2_256_128: "SHA2-256-128", IntegId.HMAC_SHA2_384_192: "SHA2-384-192",
               IntegId.HMAC_SHA2_512_256: "SHA2-512-256", IntegId.AES_CMAC_96: "AES-CMAC-96"}


def proposal_for(context: str, keyword: str) -> str:
    """A proposal that holds `keyword` and is complete otherwise (with the most common partners)."""
    if keyword == "default":
        return "default"
    entry = keyword_algorithm(keyword)
    assert entry is not None
    kind = entry.type
    if context == "proposals":
        if kind == TransformType.ENCR:
            return f"{keyword}-prfsha256-x25519" if entry.aead else f"{keyword}-sha256-x25519"
        return {TransformType.INTEG: f"aes128-{keyword}-prfsha256-x25519",
                TransformType.PRF: f"aes128gcm16-{keyword}-x25519",
                TransformType.DH: f"aes128gcm16-prfsha256-{keyword}",
                TransformType.ESN: f"aes128gcm16-prfsha256-x25519-{keyword}"}[kind]
    if context == "esp_proposals":
        if kind == TransformType.ENCR:
            return keyword if entry.aead else f"{keyword}-sha256"
        return f"aes128-{keyword}" if kind == TransformType.INTEG else f"aes128gcm16-{keyword}"
    return keyword if kind == TransformType.INTEG else f"sha256-{keyword}"


def swanctl_text(side: str, context: str, proposal: str) -> str:
    local, remote = (GW_A, GW_B) if side == "a" else (GW_B, GW_A)
    me, peer = ("gwa.lab", "gwb.lab") if side == "a" else ("gwb.lab", "gwa.lab")
    lans = ("10.1.0.0/24", "10.2.0.0/24") if side == "a" else ("10.2.0.0/24", "10.1.0.0/24")
    child = {"local_ts": lans[0], "remote_ts": lans[1], "mode": "tunnel"}
    conn = {"version": 2, "local_addrs": local, "remote_addrs": remote, "mobike": False,
            "proposals": "aes128gcm16-prfsha256-x25519",
            "local": {"auth": "psk", "id": me}, "remote": {"auth": "psk", "id": peer},
            "children": {"net": child}}
    (child if context != "proposals" else conn)[context] = proposal
    return render({"connections": {"s2s": conn},
                   "secrets": {"ike-s2s": {"id-a": me, "id-b": peer, "secret": "a-lab-only-psk"}}})


def _key_line(text: str, context: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if line.strip().startswith(f"{context} ="))


def _refused_by_strongswan_rules(protocol: int, proposal: str) -> bool:
    try:
        parse_proposals(protocol, proposal)
    except ProposalError:
        return True
    return False


def _implemented(protocol: int, proposal: str) -> bool:
    """Whether the registry marks every transform parsing keeps as implemented for `protocol`."""
    for parsed in parse_proposals(protocol, proposal):
        for t in parsed.transforms:
            entry = algorithm(t.transform_type, t.transform_id, t.key_length)
            if entry is None or not entry.implemented(protocol):
                return False
    return True


def _kept(protocol: int, proposal: str, entry: Algorithm) -> bool:
    """Whether parsing keeps the keyword's transform (strongSwan drops PRFs from ESP/AH, ENCR from AH)."""
    wanted = (entry.type, entry.id, entry.key_bits)
    return any((t.transform_type, t.transform_id, t.key_length or 0) == wanted
               for p in parse_proposals(protocol, proposal) for t in p.transforms)


# ---------------------------------------------------------------- end to end


def _chosen(event) -> list[str]:
    return event.algorithms.split("-")


def _scapy_sa(event: ev.ChildSaUp, outbound: bool, seq_num: int) -> SecurityAssociation:
    keys = event.keys_out if outbound else event.keys_in
    spi = int.from_bytes(event.spi_out if outbound else event.spi_in, "big")
    src, dst = (event.local[0], event.remote[0]) if outbound else (event.remote[0], event.local[0])
    kwargs = dict(spi=spi, seq_num=seq_num, tunnel_header=IP(src=src, dst=dst), esn_en=event.esn, esn=0,
                  auth_algo=SCAPY_INTEG[event.integ_id], auth_key=keys.integ or None)
    if event.protocol == ProtocolId.AH:
        return SecurityAssociation(AH, **kwargs)
    name, icv = SCAPY_ENCR[event.encr_id]
    return SecurityAssociation(ESP, crypt_algo=name, crypt_key=keys.encr or None, crypt_icv_size=icv, **kwargs)


def _scapy_knows(event: ev.ChildSaUp) -> bool:
    encr_ok = event.protocol == ProtocolId.AH or event.encr_id in SCAPY_ENCR
    return encr_ok and event.integ_id in SCAPY_INTEG


def _carry_traffic(up_a: ev.ChildSaUp, up_b: ev.ChildSaUp) -> list[bytes]:
    """Packets both ways through lab.esp (and scapy), the ESP/AH packets sent returned."""
    in_a, out_a = child_sa_pair(up_a, 0.0)
    in_b, out_b = child_sa_pair(up_b, 0.0)
    sent, inners = [], []
    for (out, inb, src, dst) in ((out_a, in_b, "10.1.0.5", "10.2.0.7"), (out_b, in_a, "10.2.0.7", "10.1.0.5")):
        for size in (0, 1, 77, 1300):
            inner = bytes(IP(src=src, dst=dst) / ICMP(id=size) / Raw(b"p" * size))
            wire = out.protect(inner)
            assert inb.unprotect_datagram(wire) == inner
            sent.append(wire)
            inners.append(inner)
    assert in_a.drops.total == 0 and in_b.drops.total == 0
    if _scapy_knows(up_a):
        for up, index in ((up_a, 2), (up_b, 6)):
            theirs = _scapy_sa(up, outbound=True, seq_num=1)
            assert bytes(theirs.decrypt(IP(sent[index]))) == inners[index]
        inner = IP(src="10.2.0.7", dst="10.1.0.5") / ICMP(id=4242) / Raw(b"from scapy")
        theirs = _scapy_sa(up_a, outbound=False, seq_num=1000)
        assert in_a.unprotect_datagram(bytes(theirs.encrypt(inner))) == bytes(inner)
    return sent


def _tshark_fields(pcap: Path, keys: Path, *fields: str) -> list[list[str]]:
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.fail("tshark is missing: install Debian's tshark package (scripts/setup.sh does)")
    args = [tshark, "-r", str(pcap), "-o", "esp.enable_encryption_decode:TRUE", "-o",
            "esp.enable_authentication_check:TRUE", "-T", "fields"]
    for field in fields:
        args += ["-e", field]
    env = dict(os.environ, XDG_CONFIG_HOME=str(keys), HOME=str(keys))
    run = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env)
    complaints = [line for line in run.stderr.splitlines() if "Running as user" not in line]
    assert run.returncode == 0 and not complaints, run.stderr
    return [line.split("\t") for line in run.stdout.splitlines()]


def _check_capture(tmp_path: Path, net, up_a: ev.ChildSaUp, esp_packets: list[bytes]) -> None:
    """The daemon's key export opens a capture of the run in tshark, where Wireshark knows the names."""
    export = KeyExport(str(tmp_path / "keys"))
    export.update_ike(net.endpoints["a"])
    export.add_child(up_a)
    frames = [IP(src=d.src[0], dst=d.dst[0]) / UDP(sport=d.src[1], dport=d.dst[1]) / Raw(d.data)
              for _, _, d in net.log]
    frames += [IP(wire) for wire in esp_packets]
    wrpcap(str(tmp_path / "run.pcap"), frames)
    rows = _tshark_fields(tmp_path / "run.pcap", tmp_path / "keys", "isakmp.id.data.fqdn", "ip.src", "icmp.ident",
                          "_ws.malformed", "esp.icv_good", "_ws.expert.message")
    assert not any(row[3] for row in rows), rows
    assert not any("incorrect" in row[5] for row in rows), rows
    ike_sa = next(iter(net.endpoints["a"].by_id.values())).algorithms
    if (ike_sa.encr, ike_sa.encr_key_length or 0) in IKE_ENCR_NAMES and (ike_sa.integ or 0) in IKE_INTEG_NAMES:
        # IKE_AUTH decrypted (IDi and IDr read back), its ICV checked by Wireshark
        assert any("gwa.lab" in row[0] and "gwb.lab" in row[0] for row in rows), rows
    if up_a.protocol == ProtocolId.AH:
        assert sum("10.1.0.5" in row[1] for row in rows) == 4, rows  # AH protects, never hides
    elif up_a.encr_id in ESP_ENCR_NAMES and up_a.integ_id in ESP_INTEG_NAMES:
        decrypted = [row for row in rows if "10.1.0.5" in row[1] or "10.2.0.7" in row[1]]
        assert len(decrypted) == 8 and {row[2] for row in decrypted} == {"0", "1", "77", "1300"}, rows
        if not up_a.esn:
            # Wireshark 4.0's esp_sa has no ESN column: it leaves seq_hi out of the ICV (RFC 4303 §2.2.1)
            assert all(row[4] == "1" for row in decrypted), rows


def end_to_end(context: str, keyword: str, a, b, tmp_path: Path, capture: bool = True) -> None:
    protocol = CONTEXTS[context]
    proposal = proposal_for(context, keyword)
    net = make_net(a, b)
    net.endpoints["a"].initiate("s2s", net.now)
    net.settle()
    events = {side: net.events(side) for side in "ab"}
    ike_up = {side: [e for e in events[side] if isinstance(e, ev.IkeSaUp)] for side in "ab"}
    child_up = {side: [e for e in events[side] if isinstance(e, ev.ChildSaUp)] for side in "ab"}
    assert len(ike_up["a"]) == len(ike_up["b"]) == 1, events
    assert len(child_up["a"]) == len(child_up["b"]) == 1, events
    entry = keyword_algorithm(keyword)
    if entry is not None and _kept(protocol, proposal, entry):
        if protocol == ProtocolId.IKE:
            assert entry.keywords[0] in _chosen(ike_up["a"][0]), (keyword, ike_up["a"][0].algorithms)
        elif entry.type == TransformType.DH:
            # RFC 7296 §1.3.1: the KE payload, and so the PFS group, comes with a CREATE_CHILD_SA rekey
            net.endpoints["a"].rekey_child(net.now, "net")
            net.settle()
            child_up = {side: [e for e in net.events(side) if isinstance(e, ev.ChildSaUp)] for side in "ab"}
            assert len(child_up["a"]) == len(child_up["b"]) == 1 and child_up["a"][0].rekeyed_from
            dh = [k for k in _chosen(child_up["a"][0]) if (e := keyword_algorithm(k)) and e.type == TransformType.DH]
            assert dh == ([] if entry.id == DhGroup.NONE else [entry.keywords[0]]), child_up["a"][0].algorithms
        else:
            assert entry.keywords[0] in _chosen(child_up["a"][0]), (keyword, child_up["a"][0].algorithms)
    up_a, up_b = child_up["a"][0], child_up["b"][0]
    assert up_a.protocol == protocol if protocol != ProtocolId.IKE else up_a.protocol == ProtocolId.ESP
    esp_packets = _carry_traffic(up_a, up_b)
    if capture:
        _check_capture(tmp_path, net, up_a, esp_packets)


def _cases() -> list[tuple[str, str]]:
    return [(context, keyword) for context in CONTEXTS for keyword in ["default", *KEYWORDS]]


@pytest.mark.parametrize("context, keyword", _cases(), ids=lambda v: v)
def test_every_keyword_works_end_to_end_or_is_refused_with_file_line_key(context, keyword, tmp_path):
    protocol = CONTEXTS[context]
    proposal = proposal_for(context, keyword)
    text_a, text_b = swanctl_text("a", context, proposal), swanctl_text("b", context, proposal)
    try:
        a = parse_swanctl(text_a, "gwa.conf")
    except ConfigError as err:
        key = "connections.s2s." + ("" if context == "proposals" else "children.net.") + context
        line = _key_line(text_a, context)
        assert (err.file, err.line, err.key) == ("gwa.conf", line, key), str(err)
        assert str(err).startswith(f"gwa.conf:{line}: {key}: ") and err.reason
        # refused only for a reason: strongSwan's own rules, or the registry marks it unimplemented
        assert _refused_by_strongswan_rules(protocol, proposal) or not _implemented(protocol, proposal), str(err)
        return
    assert _implemented(protocol, proposal), f"{proposal} accepted but not implemented"
    b = parse_swanctl(text_b, "gwb.conf")
    parsed = (context, format_proposals(parse_proposals(protocol, proposal), explicit=True))
    if parsed not in CARRIED:
        end_to_end(context, keyword, a, b, tmp_path)
        CARRIED.add(parsed)


# ---------------------------------------------------------------- the disagreements issue 10 named


@pytest.mark.parametrize("context, keyword", [("esp_proposals", "aes128gmac"), ("esp_proposals", "aes128gcm8"),
                                              ("esp_proposals", "aes256gcm12"), ("proposals", "aes128gcm8"),
                                              ("esp_proposals", "aes128ctr"), ("proposals", "aes256ctr"),
                                              ("esp_proposals", "aes128ccm8"), ("proposals", "aes192ccm12")])
def test_named_disagreements_now_work(context, keyword, tmp_path):
    a = parse_swanctl(swanctl_text("a", context, proposal_for(context, keyword)), "gwa.conf")
    b = parse_swanctl(swanctl_text("b", context, proposal_for(context, keyword)), "gwb.conf")
    end_to_end(context, keyword, a, b, tmp_path)


@pytest.mark.parametrize("context, proposal, token", [
    ("esp_proposals", "camellia128-sha256", "camellia128"), ("esp_proposals", "3des-md5", "3des"),
    ("esp_proposals", "aes128-md5", "md5"), ("proposals", "camellia256-sha256-x25519", "camellia256"),
    ("proposals", "aes128-sha256-modp1536", "modp1536"), ("ah_proposals", "md5", "md5"),
    ("ah_proposals", "aes128gmac", "aes128gmac"),
])
def test_named_unimplemented_keywords_are_refused(context, proposal, token):
    text = swanctl_text("a", context, proposal)
    with pytest.raises(ConfigError, match=f"gwa.conf:{_key_line(text, context)}: .*{context}: {token} ") as info:
        parse_swanctl(text, "gwa.conf")
    assert "not implemented by ipsec-lab" in str(info.value)


def test_every_registry_entry_is_consistent():
    seen: set[tuple[int, int, int]] = set()
    keywords: set[str] = set()
    for entry in ALGORITHMS:
        key = (entry.type, entry.id, entry.key_bits)
        assert key not in seen, entry
        seen.add(key)
        if entry.parsed:
            assert not keywords & set(entry.keywords), entry
            keywords |= set(entry.keywords)
        if entry.type == TransformType.ENCR:
            assert entry.key_size == entry.key_bits // 8 + entry.salt_size or entry.key_bits == 0, entry
            assert entry.aead == bool(entry.icv_size), entry
        if entry.type == TransformType.INTEG and entry.id != IntegId.NONE:
            assert entry.key_size and entry.icv_size, entry
        if entry.ike or entry.esp or entry.ah:
            assert entry.key_size or entry.type in (TransformType.DH, TransformType.ESN) or \
                entry.id in (EncrId.NULL, IntegId.NONE), entry
