"""Each step of a run told in plain words: what was proposed and chosen, who is behind a NAT
and why the port changed, which keys were derived, which SPI carries the traffic now, why a
packet was dropped. From our gateways' trace records, charon's log lines, the captures
(decrypted with the keys the daemons write) and the daemons' drop counters.

    ipsec-lab run net2net-nat --explain         # live: Narrator is the runner's after_step hook
    narrate_run("out/net2net-nat")               # afterwards, from a run folder: [(step, [sentences])]

`Storyteller.tell(...)` turns one step's material into sentences; it keeps what earlier steps
said (SPIs, NAT) so that later sentences can say "the new SA", "again".
"""
from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.runfolder import RunResult, StepResult, TapInfo, Topology, TraceRecord, read_trace, trace_record

from .analysis import CaptureAnalysis, Packet, match_nat
from .configs import GatewayConf, proposal_text, read_config, run_configs
from .keys import KeyTables
from .timeline import TimelineEntry, charon_time, read_charon_log

if TYPE_CHECKING:
    from .live import LiveKeys

DROP_WORDS = {
    "unknown_spi": "ESP for an SPI it holds no SA for (deleted already, or never made)",
    "replay": "a sequence number it had seen already (anti-replay, RFC 4303 §3.4.3)",
    "too_old": "a sequence number left of its anti-replay window (RFC 4303 §3.4.3)",
    "auth_failed": "an ICV that did not verify (wrong key, or the packet was altered)",
    "selector_mismatch": "an inner packet outside the SA's traffic selectors (RFC 4301 §5.2)",
    "policy_discard": "a packet a DISCARD policy matched (or no policy at all, RFC 4301 §4.4.1)",
    "unprotected": "a clear-text packet where its policy says PROTECT",
    "malformed": "a malformed packet",
    "bad_padding": "bad ESP padding",
    "bad_next_header": "an unknown next header",
    "expired": "a packet for an SA past its hard lifetime",
    "seq_exhausted": "a packet after the sequence numbers ran out",
    "dropped_out": "packets from its LAN that no SA covers (nothing to send them through)",
    "dropped_in": "packets from the wire it could not open",
}
PRF_BYTES = {"prfsha1": 20, "prfsha256": 32, "prfsha384": 48, "prfsha512": 64, "prfmd5": 16, "prfaesxcbc": 16,
             "prfaescmac": 16, "sha1": 20, "sha256": 32, "sha384": 48, "sha512": 64, "md5": 16}
CHARON_KEY = re.compile(r"(SKEYSEED|Sk_(?:d|ei|er|ai|ar|pi|pr) secret|(?:encryption|integrity) "
                        r"(?:initiator|responder) key) => (\d+) bytes")


def _prf_size(algorithms: str) -> int | None:
    words = algorithms.split("-")
    for word in words:
        if word.startswith("prf") and word in PRF_BYTES:
            return PRF_BYTES[word]
    for word in words[1:]:
        if word in PRF_BYTES:
            return PRF_BYTES[word]
    return None


@dataclass
class Material:
    """What one step left: trace records, charon log lines (per node), captured packets (per tap),
    drop counters' increase (per node)."""

    records: list[TraceRecord] = field(default_factory=list)
    charon: list[TimelineEntry] = field(default_factory=list)
    packets: dict[str, list[Packet]] = field(default_factory=dict)
    drops: dict[str, dict[str, int]] = field(default_factory=dict)


class Storyteller:
    def __init__(self, software: dict[str, str], configs: dict[str, GatewayConf] | None = None,
                 topology: Topology | None = None, keys: Callable[[], KeyTables] | None = None,
                 nat_pairs: Iterable[tuple[str, str]] = ()) -> None:
        self.software = dict(software)
        self.configs = configs or {}
        self.topology = topology if topology is not None else Topology()
        self.keys = keys or KeyTables
        self.nat_pairs = list(nat_pairs)       # (inside tap, outside tap)
        self.ike_told: set[tuple[str, str]] = set()
        self.child_told: set[frozenset[str]] = set()
        self.child_told_by: set[tuple[str, frozenset[str]]] = set()
        self.spi_owner: dict[str, tuple[str, str]] = {}   # SPI hex -> (receiving node, child)
        self.nat_told: set[str] = set()
        self.rewrites_told: set[str] = set()
        self.current_out: dict[tuple[str, str], str] = {}  # (node, child) -> outbound SPI now
        self.charon_ike: set[tuple[str, str]] = set()      # (node, connection) with an IKE SA up

    # -- words for things

    def who(self, node: str) -> str:
        software = self.software.get(node)
        if not str(software).startswith("strongswan"):
            return node
        return f"{node} (strongSwan 6)" if software == "strongswan6" else f"{node} (strongSwan)"

    def owner(self, address: str) -> str | None:
        address = address.rsplit(":", 1)[0] if address.count(":") == 1 else address
        for entry in self.topology.nodes:
            for intf in entry.interfaces:
                for cidr in intf.addresses:
                    if cidr.split("/")[0] == address:
                        return entry.name
        return None

    def offered(self, node: str, child: str | None = None) -> str:
        conf = self.configs.get(node)
        if conf is None:
            return ""
        if child:
            found = conf.child(child)
            if found:
                return proposal_text(found[1].proposals, found[1].protocol)
            return ""
        conn = conf.connection()
        return proposal_text(conn.proposals) if conn else ""

    def _child_offer(self, node: str) -> str:
        conf = self.configs.get(node)
        conn = conf.connection() if conf else None
        child = next(iter(conn.children.values()), None) if conn else None
        if child is None:
            return " (SA, TSi, TSr)"
        return (f" (SA: {child.protocol} {proposal_text(child.proposals, child.protocol)}; TSi/TSr: "
                f"{' '.join(child.local_ts) or 'dynamic'} === {' '.join(child.remote_ts) or 'dynamic'})")

    # -- one step

    def tell(self, material: Material) -> list[str]:
        said: list[str] = []
        items: list[tuple[float, int, Any]] = [(r.get("wall", 0.0), 0, r) for r in material.records]
        items += [(e.wall, 1, e) for e in material.charon]
        items.sort(key=lambda item: (item[0], item[1]))
        keys_logged: dict[str, list[tuple[str, int]]] = {}
        for _wall, source, item in items:
            if source == 0:
                said += self._record(item)
            else:
                match = CHARON_KEY.search(item.text)
                if match:
                    keys_logged.setdefault(item.node, []).append((match.group(1), int(match.group(2))))
                    continue
                said += self._charon(item)
        for node, keys in keys_logged.items():
            said.append(self._charon_keys(node, keys))
        said += self._wire(material.packets)
        for node, drops in material.drops.items():
            if set(drops) - {"dropped_out", "dropped_in"}:
                drops = {k: v for k, v in drops.items() if k not in ("dropped_out", "dropped_in")}  # the reasons say more
            for reason, count in drops.items():
                if count > 0:
                    said.append(f"{node} dropped {count} packet(s): {DROP_WORDS.get(reason, reason.replace('_', ' '))}.")
        unique = []
        for sentence in said:
            if sentence and sentence not in unique:
                unique.append(sentence)
        return unique

    # -- our trace records

    def _record(self, r: dict) -> list[str]:
        node = r.get("node", "?")
        kind = r.get("kind")
        if kind == "message":
            return self._message(node, r)
        if kind == "note":
            return self._note(node, r)
        if kind == "retransmit":
            return [f"{node} has no answer to its {r.get('exchange')} request {r.get('message_id')} yet and sends it "
                    f"again (try {int(r.get('tries', 0)) + 1}; RFC 7296 §2.1)."]
        if kind == "drop":
            return [f"{node} dropped an IKE message: {r.get('reason')}."]
        if kind != "event":
            return []
        event = r.get("event")
        if event == "IkeSaUp":
            return self._ike_up(node, r)
        if event == "ChildSaUp":
            return self._child_up(node, r)
        if event == "ChildSaRekeyed":
            key = (node, r.get("name", ""))
            self.current_out[key] = r.get("new_spi_out", "")
            return [f"{node} rekeyed CHILD_SA {r.get('name')}: the new SAs (in {r.get('new_spi_in')}, out "
                    f"{r.get('new_spi_out')}) are installed before the old ones (in {r.get('old_spi_in')}) go "
                    f"(make-before-break, RFC 7296 §2.8): from now on {node} sends on SPI {r.get('new_spi_out')}."]
        if event == "ChildSaDeleted":
            return [f"{node} deleted CHILD_SA {r.get('name')} (in {r.get('spi_in')}, out {r.get('spi_out')}): "
                    f"{r.get('reason')}."]
        if event == "IkeSaRekeyed":
            return [f"{node}: the IKE SA was rekeyed into #{r.get('new_ike_sa')} with new SPIs {r.get('spi_i')}/"
                    f"{r.get('spi_r')} (fresh SKEYSEED from a new Diffie-Hellman exchange, RFC 7296 §2.18); its "
                    f"CHILD_SAs move over, their ESP SPIs stay."]
        if event == "IkeSaDeleted":
            return [f"{node} deleted IKE SA #{r.get('ike_sa')} {r.get('name')}: {r.get('reason')}."]
        if event == "PeerAddressChanged":
            old, new = r.get("old") or ["?", 0], r.get("new") or ["?", 0]
            return [f"{node}: the peer's messages now come from {new[0]}:{new[1]} instead of {old[0]}:{old[1]} - the "
                    f"NAT box gave the flow a new mapping - so {node} sends IKE and ESP there from now on "
                    f"(RFC 7296 §2.23)."]
        if event == "AuthFailed":
            who = "the peer refused its authentication" if r.get("by_peer") else "it refused the peer's authentication"
            return [f"{node}: {who} - {r.get('reason')}. (ipsec-lab diagnose DIR says which setting to change.)"]
        if event == "NegotiationFailed":
            return [f"{node}: {r.get('exchange')} failed - {r.get('reason')}."]
        if event == "PeerUnreachable":
            return [f"{node} gives up after {r.get('tries')} tries of {r.get('exchange')}: no answer came back."]
        return []

    def _message(self, node: str, r: dict) -> list[str]:
        if r.get("dir") != "out":
            return []
        exchange, response = r.get("exchange"), r.get("response")
        src, dst = r.get("src", ""), r.get("dst", "")
        if exchange == "IKE_SA_INIT" and not response:
            offer = self.offered(node)
            return [f"{node} starts IKE_SA_INIT from {src} to {dst}, offering IKE {offer or 'its proposals'}, its "
                    f"Diffie-Hellman public value (KE), a nonce (Ni) and NAT_DETECTION hashes of the addresses and "
                    f"ports it sees (RFC 7296 §2.23)."]
        if exchange == "IKE_SA_INIT" and response:
            return [f"{node} answers IKE_SA_INIT from {src}: the proposal it chose (SA), its KE and nonce (Nr)."]
        if exchange == "IKE_AUTH" and not response:
            port = src.rsplit(":", 1)[-1]
            if port == "4500" and node not in self.nat_told:
                self.nat_told.add(node)
                return [f"{node} sends IKE_AUTH from {src} to {dst}: IKE moved from UDP 500 to 4500 (RFC 7296 §2.23), "
                        f"where IKE carries a zero non-ESP marker and ESP in UDP will follow (RFC 3948). "
                        f"It proves its identity (IDi, AUTH) and proposes the CHILD_SA{self._child_offer(node)}, "
                        f"all encrypted in SK."]
            return [f"{node} sends IKE_AUTH to {dst}: its identity (IDi, AUTH) and the CHILD_SA"
                    f"{self._child_offer(node)}, encrypted in SK."]
        if exchange == "CREATE_CHILD_SA" and not response:
            payloads = r.get("payloads", [])
            if "N(REKEY_SA)" in payloads:
                return [f"{node} asks to rekey a CHILD_SA (CREATE_CHILD_SA with N(REKEY_SA)): new SPIs and nonces, "
                        f"while the old SA keeps carrying traffic."]
            if "KE" in payloads and "TSi" not in payloads:
                return [f"{node} asks to rekey the IKE SA (CREATE_CHILD_SA with a new KE, no selectors)."]
            return [f"{node} asks for another CHILD_SA (CREATE_CHILD_SA)."]
        if exchange == "INFORMATIONAL" and not response and "D" in r.get("payloads", []):
            return [f"{node} sends a Delete (INFORMATIONAL) to {dst}."]
        return []

    def _note(self, node: str, r: dict) -> list[str]:
        what = r.get("what")
        if what == "nat_detection":
            local, remote = r.get("local_behind_nat"), r.get("remote_behind_nat")
            if not local and not remote:
                return ["NAT detection: the NAT_DETECTION hashes match the addresses and ports the other side "
                        "sees - no NAT in between, so IKE stays on UDP 500 and ESP travels as IP protocol 50."]
            parts = []
            if local:
                parts.append(f"{node} is behind a NAT (the peer saw another source address or port than {node} "
                             f"sent from)")
            if remote:
                peer_sw = [n for n, s in self.software.items() if n != node and str(s).startswith("strongswan")]
                extra = (" - or pretends to be: strongSwan with kernel-libipsec fakes its NAT-D hash to get ESP in UDP"
                         if peer_sw else "")
                parts.append(f"the peer is behind a NAT{extra}")
            return [f"NAT detection at {node}: {'; '.join(parts)}. So from IKE_AUTH on IKE uses UDP 4500 and ESP "
                    f"is encapsulated in UDP 4500 (RFC 3948), which a NAT box can map like any UDP flow; the side "
                    f"behind the NAT sends NAT-keepalives to keep the mapping (RFC 3948 §2.3)."]
        if what == "invalid_ke":
            return [f"{node} is asked for Diffie-Hellman group {r.get('group')} instead (INVALID_KE_PAYLOAD, "
                    f"RFC 7296 §1.2) and starts IKE_SA_INIT again with it."]
        if what == "no_proposal_chosen":
            why = f": {r['reason']}" if r.get("reason") else ""
            return [f"{node} found none of the {r.get('offered')} proposal(s) it was offered acceptable "
                    f"(NO_PROPOSAL_CHOSEN){why}."]
        if what == "peer_address_changed":
            return [f"{node}: the peer now sends from {r.get('new')} instead of {r.get('old')} (the NAT mapping "
                    f"changed); {node} answers to the new address (RFC 7296 §2.23)."]
        if what == "additional_ke":
            return [f"{node}: the additional key exchange {r.get('transform')} ({r.get('method')}) is done in "
                    f"IKE_INTERMEDIATE (RFC 9242); its secret goes into new keys: SKEYSEED = prf(SK_d, new secret | "
                    f"Ni | Nr), then SK_d, SK_a, SK_e and SK_p anew (RFC 9370 §2.2.2)."]
        if what == "followup_ke":
            return [f"{node}: the rekey's additional key exchange {r.get('transform')} ({r.get('method')}) is done in "
                    f"IKE_FOLLOWUP_KE, linked to the CREATE_CHILD_SA by the ADDITIONAL_KEY_EXCHANGE notify; the new "
                    f"IKE SA's SKEYSEED = prf(SK_d, SK(0) | Ni | Nr | SK(1) | ... | SK(n)) (RFC 9370 §2.2.4)."]
        if what in ("ike_intermediate_refused", "ike_rekey_refused", "followup_ke_refused"):
            return [f"{node} refuses: {r.get('reason')}."]
        if what in ("rekey_collision", "ike_rekey_collision"):
            return [f"{node}: both sides rekeyed at once (RFC 7296 §2.8.1); the pair with the lowest nonce loses, "
                    f"its SA {r.get('redundant')} is deleted, {r.get('kept', 'the other')} stays."]
        return []

    def _ike_up(self, node: str, r: dict) -> list[str]:
        spis = (r.get("spi_i", ""), r.get("spi_r", ""))
        local, remote = r.get("local") or ["?", 0], r.get("remote") or ["?", 0]
        algorithms = r.get("algorithms", "")
        said = []
        if spis not in self.ike_told:
            self.ike_told.add(spis)
            peer = self.owner(remote[0]) or remote[0]
            seen = ""
            if peer != remote[0] and self.owner(remote[0]) and \
                    any(n.kind == "nat" and n.name == peer for n in self.topology.nodes):
                seen = f" ({remote[0]} is the NAT box {peer}'s public address: that is all {node} sees of its peer)"
            said.append(f"The IKE SA {r.get('name')} is up: {node} [{r.get('local_id')}] at {local[0]}:{local[1]} and "
                        f"[{r.get('remote_id')}] at {remote[0]}:{remote[1]}{seen}, SPIs {spis[0]}/{spis[1]}, with "
                        f"{algorithms}.")
            said.append(self._ike_keys(node, spis, algorithms))
        return said

    def _ike_keys(self, node: str, spis: tuple[str, str], algorithms: str) -> str:
        prf = _prf_size(algorithms)
        tables = self.keys()
        entry = tables.ike.get((bytes.fromhex(spis[0]), bytes.fromhex(spis[1]))) if all(spis) else None
        sizes = []
        if prf:
            sizes.append(f"SK_d {prf}")
        if entry is not None:
            sizes.append(f"SK_ei/SK_er {len(entry.sk_ei)}")
            sizes.append(f"SK_ai/SK_ar {len(entry.sk_ai)}" if entry.sk_ai else
                         "no SK_ai/SK_ar (an AEAD cipher authenticates by itself)")
        if prf:
            sizes.append(f"SK_pi/SK_pr {prf}")
        where = f" (exported for Wireshark: {node}'s keys/ikev2_decryption_table)" if entry is not None else ""
        return (f"Both sides derived the same keys without sending them: SKEYSEED = prf(Ni | Nr, g^ir) from the "
                f"Diffie-Hellman shared secret, then prf+ gives {', '.join(sizes) or 'SK_d, SK_a, SK_e, SK_p'}"
                f"{' bytes' if sizes else ''} (RFC 7296 §2.14){where}.")

    def _child_up(self, node: str, r: dict) -> list[str]:
        spi_in, spi_out = r.get("spi_in", ""), r.get("spi_out", "")
        child = r.get("name", "")
        self.spi_owner[spi_in] = (node, child)
        self.current_out[(node, child)] = spi_out
        pair = frozenset((spi_in, spi_out))
        if (node, pair) in self.child_told_by:
            return []
        self.child_told_by.add((node, pair))
        if pair in self.child_told and all(self.software.get(n) == "ours" for n in self.software):
            return []  # both ends are ours: one of them says it
        self.child_told.add(pair)
        mode = r.get("mode", "tunnel")
        encap = ", UDP-encapsulated (ESP in UDP 4500)" if r.get("encap") else ", plain ESP (IP protocol 50)"
        protocol = "AH" if r.get("protocol") == 2 else "ESP"
        if protocol == "AH":
            encap = ""
        tables = self.keys()
        key = next(iter(tables.esp.get(int(spi_out, 16), [])), None) if spi_out else None
        sizes = ""
        if key is not None:
            sizes = f" - {len(key.encr_key)} bytes of encryption key" + \
                (f" and {len(key.integ_key)} of integrity key" if key.integ_key else "") + " per direction"
        return [f"CHILD_SA {child} is installed: {protocol} {mode} mode{encap}, {r.get('algorithms')}, traffic "
                f"{' '.join(r.get('local_ts', []))} === {' '.join(r.get('remote_ts', []))}. {node} receives on SPI "
                f"{spi_in} and sends on SPI {spi_out} (each side picks the SPI it receives on, RFC 7296 §3.3.1). "
                f"Its keys are KEYMAT = prf+(SK_d, Ni | Nr) (RFC 7296 §2.17){sizes}."]

    # -- charon's log

    def _charon(self, e: TimelineEntry) -> list[str]:
        node, text = e.node, e.text
        who = self.who(node)
        m = re.search(r"initiating IKE_SA (\S+)\[\d+\] to (\S+)", text)
        if m and (node, m.group(1)) in self.charon_ike:
            return [f"{who} starts rekeying the IKE SA {m.group(1)}: CREATE_CHILD_SA with a new SA proposal, nonce "
                    f"and KE (RFC 7296 §1.3.2)."]
        if m:
            return [f"{who} starts IKE_SA_INIT for {m.group(1)} to {m.group(2)}, offering IKE "
                    f"{self.offered(node) or 'its proposals'}."]
        m = re.search(r"received proposals: (.*)", text)
        if m:
            return [f"{who} was offered {m.group(1)}."]
        m = re.search(r"configured proposals: (.*)", text)
        if m:
            return [f"{who} accepts {m.group(1)} - no match (NO_PROPOSAL_CHOSEN)."]
        m = re.search(r"selected proposal: (IKE|ESP|AH):(\S+)", text)
        if m:
            return [f"{who} chose {m.group(1)} {m.group(2)} from what it was offered (the responder picks, by its "
                    f"own order of preference)."]
        if "faking NAT situation" in text:
            return [f"{who} pretends to be behind a NAT (its NAT_DETECTION_SOURCE_IP hash is random): "
                    f"kernel-libipsec sends ESP only in UDP, so both sides move to UDP 4500."]
        m = re.search(r"IKE_SA (\S+)\[\d+\] established between (\S+)\[([^\]]*)\]\.\.\.(\S+)\[([^\]]*)\]", text)
        if m:
            self.charon_ike.add((node, m.group(1)))
            peer = self.owner(m.group(4))
            nat = next((n.name for n in self.topology.nodes if n.kind == "nat" and n.name == peer), None)
            seen = f", which is the NAT box {nat}'s public address" if nat else ""
            return [f"{who} has the IKE SA {m.group(1)} with [{m.group(5)}] at {m.group(4)}{seen}."]
        m = re.search(r"CHILD_SA (\S+)\{\d+\} established with SPIs (\w+)_i (\w+)_o and TS (.*)", text)
        if m and not text.lstrip().startswith(("inbound", "outbound")) and "inbound CHILD_SA" not in text \
                and "outbound CHILD_SA" not in text:
            self.spi_owner[m.group(2)] = (node, m.group(1))
            pair = frozenset((m.group(2), m.group(3)))
            if pair in self.child_told:
                return []
            self.child_told.add(pair)
            return [f"{who} installed CHILD_SA {m.group(1)}: it receives on SPI {m.group(2)} and sends on "
                    f"{m.group(3)}, traffic {m.group(4)}."]
        m = re.search(r"outbound CHILD_SA (\S+)\{\d+\} established with SPIs (\w+)_i (\w+)_o", text)
        if m:
            self.spi_owner[m.group(2)] = (node, m.group(1))
            return [f"{who} now sends CHILD_SA {m.group(1)}'s traffic on the new SPI {m.group(3)}."]
        m = re.search(r"traffic selectors (.*) unacceptable", text)
        if m:
            return [f"{who} cannot accept the traffic selectors {m.group(1)} (TS_UNACCEPTABLE)."]
        if "MAC mismatched" in text:
            return [f"{who}: the AUTH payload does not match its pre-shared key (AUTHENTICATION_FAILED)."]
        if "no matching peer config found" in text:
            return [f"{who} has no connection for the identities asked for (AUTHENTICATION_FAILED)."]
        m = re.search(r"received (\w+) notify", text)
        if m and m.group(1) not in ("NAT_DETECTION_SOURCE_IP", "NAT_DETECTION_DESTINATION_IP"):
            return [f"{who} received {m.group(1)} from its peer."]
        m = re.search(r"retransmit (\d+) of request with message ID (\d+)", text)
        if m:
            return [f"{who} sends request {m.group(2)} again (retransmission {m.group(1)}): no answer yet."]
        m = re.search(r"giving up after (\d+) retransmits", text)
        if m:
            return [f"{who} gives up after {m.group(1)} retransmissions."]
        m = re.search(r"closing CHILD_SA (\S+)\{\d+\} with SPIs (\w+)_i \((\d+) bytes\) (\w+)_o \((\d+) bytes\)", text)
        if m:
            return [f"{who} closed CHILD_SA {m.group(1)} (in {m.group(2)}: {m.group(3)} bytes, out {m.group(4)}: "
                    f"{m.group(5)} bytes)."]
        m = re.search(r"IKE_SA (\S+)\[\d+\] rekeyed between", text)
        if m:
            return [f"{who} rekeyed the IKE SA {m.group(1)}."]
        return []

    def _charon_keys(self, node: str, keys: list[tuple[str, int]]) -> str:
        names = {"SKEYSEED": "SKEYSEED", "Sk_d secret": "SK_d", "Sk_ei secret": "SK_ei", "Sk_er secret": "SK_er",
                 "Sk_ai secret": "SK_ai", "Sk_ar secret": "SK_ar", "Sk_pi secret": "SK_pi", "Sk_pr secret": "SK_pr",
                 "encryption initiator key": "ESP encryption key (initiator)",
                 "encryption responder key": "ESP encryption key (responder)",
                 "integrity initiator key": "ESP integrity key (initiator)",
                 "integrity responder key": "ESP integrity key (responder)"}
        seen, parts = set(), []
        for name, size in keys:
            label = names.get(name, name)
            if (label, size) in seen:
                continue
            seen.add((label, size))
            parts.append(f"{label} {size}")
        return f"{node}'s charon log shows the keys it derived (sizes in bytes): {', '.join(parts)}."

    # -- the wire

    def _wire(self, packets: dict[str, list[Packet]]) -> list[str]:
        said = []
        for inside, outside in self.nat_pairs:
            a, b = packets.get(inside, []), packets.get(outside, [])
            if not a or not b:
                continue
            pairs = match_nat(CaptureAnalysis(Path(inside), a, KeyTables()), CaptureAnalysis(Path(outside), b, KeyTables()))
            for pair in pairs:
                if pair.inside.kind not in ("ike", "esp", "keepalive"):
                    continue
                if not pair.outbound:
                    continue
                rewrite = pair.rewrite()
                key = f"{pair.inside.kind}:{rewrite}"
                if rewrite == "unchanged" or key in self.rewrites_told:
                    continue
                self.rewrites_told.add(key)
                carried = " in TCP" if pair.inside.tcp is not None else ""
                what = f"IKE{carried}" if pair.inside.kind == "ike" else (carried and "ESP in TCP" or "ESP in UDP") \
                    if pair.inside.kind == "esp" else "the NAT-keepalive"
                port_note = ""
                if pair.inside.sport != pair.outside.sport:
                    port_note = (f" - and it changed the source port too ({pair.inside.sport} -> {pair.outside.sport}): "
                                 f"the peer must answer to the port it sees")
                said.append(f"The NAT box rewrote {what} on its way out: {rewrite}{port_note}.")
        esp: Counter[tuple[str, str, str, str, str]] = Counter()
        encap: dict[str, str] = {}
        sample: dict[str, str] = {}
        for tap, items in packets.items():
            for p in items:
                if p.ipsec is not None:
                    esp[(tap, p.ipsec.protocol, p.ipsec.spi_hex, p.src, p.dst)] += 1
                    encap[p.ipsec.spi_hex] = "TCP" if p.ipsec.tcp else ("UDP" if p.ipsec.encap else "")
                    if p.inner is not None:
                        sample.setdefault(p.ipsec.spi_hex, p.inner.summary)
        by_spi: dict[tuple[str, str], dict[str, int]] = {}
        ends: dict[str, tuple[str, str]] = {}
        for (tap, protocol, spi, src, dst), n in esp.items():
            by_spi.setdefault((protocol, spi), {})[tap] = n
            ends.setdefault(spi, (src, dst))
        for (protocol, spi), counts in sorted(by_spi.items(), key=lambda item: -max(item[1].values())):
            receiver = self.spi_owner.get(spi)
            src, dst = ends[spi]
            to = receiver[0] if receiver else (self.owner(dst) or dst)
            where = ", ".join(f"{n} on {tap}" for tap, n in sorted(counts.items()))
            form = f"{protocol} in {encap[spi]}" if encap.get(spi) else protocol
            inside = f", carrying e.g. {sample[spi]}" if spi in sample else ""
            child = f" ({receiver[1]})" if receiver else ""
            said.append(f"On the wire: {form} SPI {spi}{child} towards {to}: {where}{inside}.")
        return said


# ------------------------------------------------------------------ live, as the runner's after_step hook


class Narrator:
    """`Runner(..., after_step=Narrator())`: after each step, say in plain words what happened in it."""

    cli_option = "--explain"  # what `ipsec-lab run` takes to do the same (a notebook's run in a world)

    def __init__(self, say: Callable[[str], None] | None = None, indent: str = "        ", width: int = 110) -> None:
        self._say = say
        self.width = width
        self.indent = indent
        self.story: Storyteller | None = None
        self.trace_offsets: dict[str, int] = {}
        self.log_offsets: dict[str, int] = {}
        self.tails: dict[str, Any] = {}
        self.drops: dict[str, dict[str, int]] = {}
        self.keys: LiveKeys | None = None
        self.told: list[tuple[int, list[str]]] = []

    def _setup(self, runner: Any) -> tuple[Storyteller, LiveKeys]:
        from .live import LiveKeys

        software = {n: p.software for n, p in runner.peers.items()}
        configs = {}
        for node, peer in runner.peers.items():
            path = Path(peer.swanctl_dir) / "swanctl.conf"
            if path.exists():
                configs[node] = read_config(node, path)
        topology = runner.lab.describe() if runner.lab is not None else Topology()
        topology.taps = [TapInfo(t.name, t.node, t.intf) for t in runner.scenario.taps]
        keys = LiveKeys([Path(p.keys_dir) for p in runner.peers.values() if getattr(p, "keys_dir", None)])
        pairs = _nat_tap_pairs(topology)
        return Storyteller(software, configs, topology, keys=lambda: keys.tables, nat_pairs=pairs), keys

    def __call__(self, runner: Any, step: Any, result: Any) -> None:
        if self.story is None or self.keys is None:
            self.story, self.keys = self._setup(runner)
        material = self.collect(runner, self.keys)
        lines = self.story.tell(material)
        self.told.append((step.index, lines))
        say = self._say or runner.say
        import textwrap

        for line in lines:
            say(textwrap.fill(line, self.width, initial_indent=self.indent + "- ",
                              subsequent_indent=self.indent + "  "))

    def collect(self, runner: Any, keys: LiveKeys) -> Material:
        from .live import LiveTap, PcapTail

        material = Material()
        reference = runner.result.started
        for node, peer in runner.peers.items():
            trace = getattr(peer, "trace_path", None)
            if peer.software == "ours" and trace is not None:
                for line in self._new_lines(Path(trace), self.trace_offsets, node):
                    try:
                        data = trace_record(json.loads(line), str(trace))
                    except ValueError:  # not JSON, or not a trace record (SchemaError): nothing to tell
                        continue
                    data["node"] = node
                    material.records.append(data)
                material.drops[node] = self._drops(node, peer)
            elif peer.software.startswith("strongswan"):
                for line in self._new_lines(Path(peer.log_path), self.log_offsets, node):
                    parsed = charon_time(line, reference)
                    if parsed is not None:
                        material.charon.append(TimelineEntry(parsed[0], "charon", node, parsed[1]))
        keys.refresh(force=True)
        for tap in runner.scenario.taps:
            path = Path(runner.out) / "captures" / f"{tap.name}.pcap"
            if tap.name not in self.tails:
                self.tails[tap.name] = (PcapTail(path), LiveTap(tap.name, keys))
            tail, live = self.tails[tap.name]
            packets = [live.add(stamp, ip) for _frame, stamp, ip in tail.read()]
            material.packets[tap.name] = [p for p in packets if p.src]
        return material

    @staticmethod
    def _new_lines(path: Path, offsets: dict[str, int], key: str) -> list[str]:
        try:
            with open(path, "rb") as handle:
                handle.seek(offsets.get(key, 0))
                data = handle.read()
        except OSError:
            return []
        complete = data[:data.rfind(b"\n") + 1] if b"\n" in data else b""
        offsets[key] = offsets.get(key, 0) + len(complete)
        return complete.decode(errors="replace").splitlines()

    def _drops(self, node: str, peer: Any) -> dict[str, int]:
        try:
            counters = peer.counters()
        except Exception:
            return {}
        now = {k.split(":", 1)[1]: int(v) for k, v in counters.items()
               if k.startswith("esp-drop:") or k in ("esp:dropped_out", "esp:dropped_in")}
        before = self.drops.get(node, {})
        self.drops[node] = now
        return {k: v - before.get(k, 0) for k, v in now.items() if v - before.get(k, 0) > 0}


def _nat_tap_pairs(topology: Topology | None) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    if topology is None:
        return pairs
    for node in topology.nodes:
        nat = node.nat if node.kind == "nat" else None
        if nat is None:
            continue
        inside = [t.name for t in topology.taps if t.node == node.name and t.intf in nat.inside]
        outside = [t.name for t in topology.taps if t.node == node.name and t.intf == nat.outside]
        pairs += [(a, b) for a in inside for b in outside]
    return pairs


# ------------------------------------------------------------------ afterwards, from a run folder


def narrate_run(root: str | Path) -> list[tuple[StepResult, list[str]]]:
    """Each step of the finished run in `root` with its sentences (the same as --explain said)."""
    from .analysis import analyze_capture
    from .keys import load_keys
    from .run import load_run

    folder = load_run(root)
    result = folder.result if folder.result is not None else RunResult.from_json({})
    steps = result.steps
    start = result.started
    records: list[TraceRecord] = []
    for node, path in folder.traces.items():
        records += read_trace(path, node)
    charon = []
    for node, path in folder.charon_logs.items():
        charon += read_charon_log(path, start, node)
    keys = load_keys(folder.keys) if folder.keys else KeyTables()
    captures = {p.stem: analyze_capture(p, keys) for p in folder.captures}
    topology = folder.topology
    story = Storyteller(result.nodes, run_configs(root), topology, keys=lambda: keys,
                        nat_pairs=_nat_tap_pairs(topology))
    out = []
    edges = [s.ended for s in steps]
    for i, step in enumerate(steps):
        low = edges[i - 1] if i else float("-inf")
        high = step.ended if i < len(steps) - 1 else float("inf")
        material = Material(
            records=[r for r in records if low < r.get("wall", 0.0) <= high],
            charon=[e for e in charon if low < e.wall <= high],
            packets={name: [p for p in c.packets if low < p.time <= high and p.src] for name, c in captures.items()})
        out.append((step, story.tell(material)))
    return out


__all__ = ["Material", "Narrator", "Storyteller", "narrate_run"]
