"""`ipsec-lab audit`: IPsec settings graded against the documents that govern them.

    report = audit_paths(["scenarios/"])
    for finding in report.findings: print(finding.where, finding.reference, finding.message)

Reads swanctl.conf files (one gateway, or a folder of many), strongSwan's legacy ipsec.conf
(with ipsec.secrets beside it), run folders (their gateways' configurations and captures) and
any pcap/pcapng capture (what IKE_SA_INIT offered and chose, in the clear). Each rule is one
small function in `RULES` (per connection) or `SET_RULES` (across the gateways of one
organization), run in order; each finding names the document and section it comes from, the
word that document uses (MUST NOT, SHOULD NOT, MUST-, ...), a sentence a learner understands,
and the file, line and key to change. Proposals are parsed and negotiated by lab.ike's own
code (`parse_proposals`, `select_proposal`), exactly as the daemon does.

Levels, worst first: `must` (the reference says MUST NOT, or a setting that cannot work),
`should` (SHOULD NOT, MUST-: expected to be demoted), `advice` (MAY, or what the lab advises
with the reason given). `--fail-on LEVEL` makes the command fail when a finding at LEVEL or
worse is found.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from lab.conf.ipsecconf import IpsecConn, load_ipsec_conf, load_ipsec_secrets
from lab.conf.swanctl import Section, Setting, parse_settings, resolve_settings
from lab.iana import DhGroup, EncrId, IntegId, PrfId, ProtocolId, TransformType, algorithm
from lab.ike.config import ConfigValueError, decode_secret, parse_time
from lab.ike.payloads import Proposal
from lab.ike.proposals import ProposalError, format_proposal, parse_proposals, select_proposal

__all__ = ["AuditError", "AuditReport", "Finding", "LEVELS", "audit_paths", "render_json", "render_markdown",
           "render_text", "write_run_audit"]

LEVELS = ("must", "should", "advice")


class AuditError(Exception):
    """Input the audit cannot read: the message names the file (and line and key)."""


@dataclass(frozen=True)
class Finding:
    rule: str
    level: str          # must | should | advice
    term: str           # the reference's own word: MUST NOT, SHOULD NOT, MUST-, MAY, ...
    reference: str      # document and section
    message: str
    file: str
    line: int | None
    key: str
    subject: str = ""   # gateway:connection[/child], or the capture's frame

    @property
    def where(self) -> str:
        return self.file if self.line is None else f"{self.file}:{self.line}"


# ---------------------------------------------------------------- the settings, as read


@dataclass
class Value:
    text: str | None
    file: str
    line: int | None
    key: str


@dataclass
class Child:
    name: str
    anchor: Value                       # the child's section (swanctl) or conn line (ipsec.conf)
    esp: Value | None = None
    ah: Value | None = None
    esp_proposals: list[Proposal] = field(default_factory=list)
    ah_proposals: list[Proposal] = field(default_factory=list)
    rekey_time: Value | None = None
    life_time: Value | None = None
    rand_time: Value | None = None
    rekey_bytes: Value | None = None
    life_bytes: Value | None = None
    local_ts: tuple[str, ...] = ()
    remote_ts: tuple[str, ...] = ()

    @property
    def proposals(self) -> list[Proposal]:
        return self.ah_proposals or self.esp_proposals

    @property
    def proposals_value(self) -> Value:
        return self.ah or self.esp or Value(None, self.anchor.file, self.anchor.line,
                                            self.anchor.key + ".esp_proposals")


@dataclass
class Conn:
    gateway: str
    name: str
    anchor: Value
    legacy: bool = False                # from ipsec.conf
    version: Value | None = None
    proposals: Value | None = None
    ike_proposals: list[Proposal] = field(default_factory=list)
    local_auth: list[Value] = field(default_factory=list)
    remote_auth: list[Value] = field(default_factory=list)
    certs: list[tuple[Value, str]] = field(default_factory=list)    # (where it is named, the file)
    dpd_delay: Value | None = None
    dpd_off: Value | None = None        # ipsec.conf dpdaction=none (or absent)
    fragmentation: Value | None = None
    rekey_time: Value | None = None
    over_time: Value | None = None
    rand_time: Value | None = None
    aggressive: Value | None = None
    ppk_id: Value | None = None
    pools: bool = False
    local_addrs: tuple[str, ...] = ()
    remote_addrs: tuple[str, ...] = ()
    local_id: str = ""
    remote_id: str = ""
    children: list[Child] = field(default_factory=list)

    @property
    def subject(self) -> str:
        return f"{self.gateway}:{self.name}"

    @property
    def uses_certs(self) -> bool:
        return any((v.text or "").lower() in ("pubkey", "rsasig", "ecdsasig") or (v.text or "").startswith(
            ("rsa", "ecdsa", "pubkey")) for v in self.local_auth)


@dataclass
class AuditedGateway:
    name: str
    file: str
    group: str                          # the organization: gateways of one group are audited together
    variant: str = ""                   # swanctl-ah.conf: "ah", a scenario's alternative configuration
    conns: list[Conn] = field(default_factory=list)
    psks: list[Value] = field(default_factory=list)


@dataclass
class Observation:
    """What one IKE_SA_INIT exchange in a capture offered and chose."""

    file: str
    frame: int
    initiator: str
    responder: str
    offered: list[str]
    chosen: str | None
    frame_chosen: int | None
    exchange: str = "IKE_SA_INIT"


# ---------------------------------------------------------------- the references (tables as the RFCs give them)

E, P, I, D = TransformType.ENCR, TransformType.PRF, TransformType.INTEG, TransformType.DH

# RFC 8247 §2.1-§2.4: IKEv2. Only the entries that say "less than SHOULD"; what is not here is fine or unlisted.
# Each row as the RFC's table gives it (tests/unit/test_audit.py pins every one of them).
IKE_TABLE: dict[tuple[int, int], tuple[str, str]] = {
    (E, EncrId.DES): ("MUST NOT", "RFC 8247 §2.1"),
    (E, EncrId.TRIPLE_DES): ("MAY", "RFC 8247 §2.1"),
    (E, EncrId.NULL): ("MUST NOT", "RFC 8247 §2.1"),
    (P, PrfId.HMAC_MD5): ("MUST NOT", "RFC 8247 §2.2"),
    (P, PrfId.HMAC_SHA1): ("MUST-", "RFC 8247 §2.2"),
    (I, IntegId.HMAC_MD5_96): ("MUST NOT", "RFC 8247 §2.3"),
    (I, IntegId.HMAC_SHA1_96): ("MUST-", "RFC 8247 §2.3"),
    # RFC 8247 §2.3: SHOULD only for IoT; "for the non-IoT VPN deployment, it has been downgraded ... to MAY"
    (I, IntegId.AES_XCBC_96): ("MAY", "RFC 8247 §2.3"),
    (I, IntegId.DES_MAC): ("MUST NOT", "RFC 8247 §2.3"),
    (I, IntegId.KPDK_MD5): ("MUST NOT", "RFC 8247 §2.3"),
}
# RFC 8247 §2.4: key exchange, in IKE_SA_INIT and in CREATE_CHILD_SA (PFS) alike
DH_TABLE: dict[int, tuple[str, str]] = {
    DhGroup.MODP_768: ("MUST NOT", "RFC 8247 §2.4"),
    DhGroup.MODP_1024: ("SHOULD NOT", "RFC 8247 §2.4"),   # "expected in the near future to be downgraded to MUST NOT"
    DhGroup.MODP_1536: ("SHOULD NOT", "RFC 8247 §2.4"),
    DhGroup.MODP_1024_160: ("MUST NOT", "RFC 8247 §2.4"),
    DhGroup.MODP_2048_224: ("SHOULD NOT", "RFC 8247 §2.4"),
    DhGroup.MODP_2048_256: ("SHOULD NOT", "RFC 8247 §2.4"),
}
# RFC 8221 §5 (encryption) and §6 (authentication): ESP and AH
ESP_TABLE: dict[tuple[int, int], tuple[str, str]] = {
    (E, EncrId.DES_IV64): ("MUST NOT", "RFC 8221 §5"),
    (E, EncrId.DES): ("MUST NOT", "RFC 8221 §5"),
    (E, EncrId.TRIPLE_DES): ("SHOULD NOT", "RFC 8221 §5"),
    (E, EncrId.BLOWFISH): ("MUST NOT", "RFC 8221 §5"),
    (E, EncrId.TRIPLE_IDEA): ("MUST NOT", "RFC 8221 §5"),
    (E, EncrId.DES_IV32): ("MUST NOT", "RFC 8221 §5"),
    (I, IntegId.HMAC_MD5_96): ("MUST NOT", "RFC 8221 §6"),
    (I, IntegId.HMAC_SHA1_96): ("MUST-", "RFC 8221 §6"),
    (I, IntegId.DES_MAC): ("MUST NOT", "RFC 8221 §6"),
    (I, IntegId.KPDK_MD5): ("MUST NOT", "RFC 8221 §6"),
    # RFC 8221 §6: "SHOULD / MAY (IoT)"; "for the wide VPN deployment ... downgraded from SHOULD to MAY"
    (I, IntegId.AES_XCBC_96): ("MAY", "RFC 8221 §6"),
}
_LEVEL_OF_TERM = {"MUST NOT": "must", "SHOULD NOT": "should", "MUST-": "should"}

_WHY: dict[tuple[int, int], str] = {   # (transform type, id): IntEnum members look up as their numbers
    (E, EncrId.DES): "DES has a 56-bit key: it is broken by exhaustive search",
    (E, EncrId.DES_IV64): "DES has a 56-bit key: it is broken by exhaustive search",
    (E, EncrId.DES_IV32): "DES has a 56-bit key: it is broken by exhaustive search",
    (E, EncrId.TRIPLE_DES): "3DES has a 64-bit block (Sweet32: blocks repeat after some 32 GiB under one key) "
                            "and is slow; use AES-GCM or AES-CBC",
    (E, EncrId.BLOWFISH): "Blowfish has a 64-bit block",
    (E, EncrId.TRIPLE_IDEA): "3IDEA has a 64-bit block and is not used any more",
    (P, PrfId.HMAC_MD5): "MD5 is broken",
    (P, PrfId.HMAC_SHA1): "SHA-1 is on its way out: RFC 8247 expects to demote it; use prfsha256",
    (I, IntegId.HMAC_MD5_96): "MD5 is broken",
    (I, IntegId.HMAC_SHA1_96): "SHA-1 is on its way out (MUST- means it is expected to be demoted); use sha256",
    (I, IntegId.AES_XCBC_96): "AES-XCBC is kept for constrained devices only; use sha256 or an AEAD",
    (I, IntegId.DES_MAC): "DES is broken by exhaustive search",
    (I, IntegId.KPDK_MD5): "MD5 is broken",
    (E, EncrId.NULL): "the IKE SA's own messages would travel unencrypted (RFC 7296 §5: ENCR_NULL MUST NOT be used there)",
}

# FIPS 203 §8, Table 3: ML-KEM encapsulation key and ciphertext sizes in octets
MLKEM_SIZES = {DhGroup.MLKEM_512: (800, 768), DhGroup.MLKEM_768: (1184, 1088), DhGroup.MLKEM_1024: (1568, 1568)}
KE_PAYLOAD_HEADER = 8   # RFC 7296 §3.4: generic payload header, DH Group Num, RESERVED

_COMMON_WORDS = frozenset("""password passw0rd secret secret123 changeme letmein welcome admin administrator qwerty
qwertz azerty abc123 123456 12345678 123456789 iloveyou monkey dragon master sunshine princess football baseball
shadow superman trustno1 test testing ipsec vpn strongswan swanctl psk presharedkey sharedkey sharedsecret company
default cisco juniper fortinet paloalto firewall gateway network internet security""".split())


def _term_level(term: str) -> str:
    return _LEVEL_OF_TERM.get(term, "advice")


# ---------------------------------------------------------------- rules: one small function each


Rule = Callable[[Conn], Iterator[Finding]]


def _finding(rule: str, term: str, reference: str, message: str, at: Value, subject: str,
             level: str | None = None) -> Finding:
    return Finding(rule, level or _term_level(term), term, reference, message, at.file, at.line, at.key, subject)


def _transforms(proposals: Iterable[Proposal]) -> Iterator[tuple[int, int, int]]:
    seen = set()
    for proposal in proposals:
        for t in proposal.transforms:
            entry = (int(t.transform_type), int(t.transform_id), t.key_length or 0)
            if entry not in seen:
                seen.add(entry)
                yield entry


def _name(ttype: int, tid: int, bits: int = 0) -> str:
    known = algorithm(ttype, tid, bits) or algorithm(ttype, tid)
    if 6 <= ttype <= 12:
        base = algorithm(D, tid)
        return f"ke{ttype - 5}_{base.keyword}" if base and base.keyword else f"ADDKE{ttype - 5}({tid})"
    return known.keyword if known and known.keyword else f"{TransformType(ttype).name}({tid})"


def _ike_proposals_value(conn: Conn) -> Value:
    return conn.proposals or Value(None, conn.anchor.file, conn.anchor.line,
                                   conn.anchor.key + (" ike" if conn.legacy else ".proposals"))


def grade(protocol: int, ttype: int, tid: int) -> tuple[str, str] | None:
    """(term, reference) for a transform in an IKE, ESP or AH proposal, None when fine or unlisted."""
    if ttype == D or 6 <= ttype <= 12:
        return DH_TABLE.get(tid)
    table = IKE_TABLE if protocol == ProtocolId.IKE else ESP_TABLE
    return table.get((ttype, tid))


def rule_ikev1(conn: Conn) -> Iterator[Finding]:
    """IKEv1 anywhere (version = 1, keyexchange=ikev1, aggressive mode)."""
    for value in (conn.version, conn.aggressive):
        if value is not None and (value.text or "").lower() in ("1", "ikev1", "yes"):
            what = "IKEv1 Aggressive Mode" if value is conn.aggressive else "IKEv1"
            yield _finding("ikev1", "Historic", "RFC 9395 §1", f"{what} is used: IKEv1 has been moved to Historic "
                           "status, replaced by IKEv2 (RFC 7296); set IKEv2 (version = 2, keyexchange=ikev2)",
                           value, conn.subject, level="must")


def rule_ike_algorithms(conn: Conn) -> Iterator[Finding]:
    """IKE SA encryption, PRF, integrity and key exchange against RFC 8247 §2."""
    if conn.proposals is None or not conn.proposals.text:
        return   # the software's default list: negotiated with, not graded (it changes with the version)
    at = _ike_proposals_value(conn)
    for ttype, tid, bits in _transforms(conn.ike_proposals):
        graded = grade(ProtocolId.IKE, ttype, tid)
        if graded is None:
            continue
        term, reference = graded
        why = _WHY.get((ttype, tid)) or _dh_why(tid)
        yield _finding("ike-algorithm", term, reference, f"IKE proposal offers {_name(ttype, tid, bits)} "
                       f"({term} in {reference}): {why}", at, conn.subject)


def _dh_why(tid: int) -> str:
    if tid in (DhGroup.MODP_768, DhGroup.MODP_1024):
        return "a group this small can be broken with precomputation (Logjam); use x25519, ecp256 or modp3072"
    if tid == DhGroup.MODP_1024_160:
        return "a 1024-bit group whose seeds were never published: too weak, and crafted values are within reach"
    if tid == DhGroup.MODP_1536:
        return "1536-bit MODP gives less than 112 bits of strength; use x25519, ecp256 or modp3072"
    return "the RFC 5114 groups with small subgroups need extra checks peers often skip; use x25519 or ecp256"


def rule_child_algorithms(conn: Conn) -> Iterator[Finding]:
    """ESP/AH encryption, integrity and PFS groups against RFC 8221 §5-§6 and RFC 8247 §2.4."""
    for child in conn.children:
        protocol = ProtocolId.AH if child.ah_proposals else ProtocolId.ESP
        at = child.proposals_value
        if at.text is None:
            continue   # the software's default list
        for ttype, tid, bits in _transforms(child.proposals):
            graded = grade(protocol, ttype, tid)
            if graded is not None:
                term, reference = graded
                why = _WHY.get((ttype, tid)) or _dh_why(tid)
                yield _finding("child-algorithm", term, reference, f"{protocol.name} proposal offers "
                               f"{_name(ttype, tid, bits)} ({term} in {reference}): {why}", at,
                               f"{conn.subject}/{child.name}")
            elif protocol == ProtocolId.ESP and ttype == E and tid == EncrId.NULL:
                yield _finding("esp-null", "no confidentiality", "RFC 8221 §5",
                               "ESP with NULL encryption: the traffic is authenticated but readable by anyone on "
                               "the path; right only where integrity alone is wanted", at,
                               f"{conn.subject}/{child.name}", level="advice")


def rule_ah(conn: Conn) -> Iterator[Finding]:
    """AH where ESP with NULL encryption would do (and cross a NAT)."""
    for child in conn.children:
        if child.ah_proposals:
            yield _finding("ah", "ESP preferred", "RFC 8221 §5",
                           "AH authenticates the outer IP addresses, so it cannot cross a NAT; ESP with NULL "
                           "encryption (esp_proposals = null-sha256) gives the same integrity for the payload and "
                           "is what RFC 8221 keeps ENCR_NULL for", child.proposals_value,
                           f"{conn.subject}/{child.name}", level="advice")


BLOCK64_REKEY_BYTES = 1 << 30   # far below Sweet32's 2^32 blocks (32 GiB) under one key


def rule_block64_lifetime(conn: Conn) -> Iterator[Finding]:
    """64-bit block ciphers with a volume lifetime too long for them (Sweet32)."""
    for child in conn.children:
        small = [t for t in _transforms(child.esp_proposals)
                 if t[0] == E and (a := algorithm(*t) or algorithm(t[0], t[1])) is not None and a.block_size == 8]
        if not small:
            continue
        limit = child.rekey_bytes or child.life_bytes
        volume = _int(limit) if limit is not None else 0
        if volume and volume <= BLOCK64_REKEY_BYTES:
            continue
        at = limit or child.proposals_value
        # RFC 8221 §5 grades the 64-bit-block ciphers (3DES SHOULD NOT, Blowfish MUST NOT) but says nothing of
        # volume limits: the term is the lab's own, not a word of the RFC's
        yield _finding("block64-lifetime", "64-bit block", "RFC 8221 §5",
                       f"{_name(*small[0])} has a 64-bit block and this CHILD_SA "
                       + ("has no volume limit" if not volume else f"rekeys only after {volume} octets")
                       + ": after about 2^32 blocks (32 GiB) under one key blocks repeat and leak plaintext (Sweet32);"
                       f" set rekey_bytes to {BLOCK64_REKEY_BYTES} or less, better use AES", at,
                       f"{conn.subject}/{child.name}", level="should")


def rule_pfs(conn: Conn) -> Iterator[Finding]:
    """CHILD_SAs without PFS: no key exchange in their proposals."""
    for child in conn.children:
        if any(t[0] == D and t[1] != DhGroup.NONE for t in _transforms(child.proposals)):
            continue
        yield _finding("pfs", "MAY", "RFC 7296 §1.3",
                       "no PFS: the CHILD_SA's rekeys take their keys from the IKE SA's SK_d without a new key "
                       "exchange, so whoever learns SK_d learns every CHILD_SA key derived from it; add a group "
                       "to the proposal (e.g. aes256gcm16-x25519)", child.proposals_value,
                       f"{conn.subject}/{child.name}", level="advice")


IKE_REKEY_MAX = 24 * 3600
CHILD_REKEY_MAX = 8 * 3600
MARGIN_MIN = 60


def rule_lifetimes(conn: Conn) -> Iterator[Finding]:
    """Lifetimes too long, rekey and expiry too close for make-before-break, no jitter."""
    if conn.rekey_time is not None and _seconds(conn.rekey_time) > IKE_REKEY_MAX:
        yield _finding("lifetime", "24 h", "NIST SP 800-77r1", f"the IKE SA lives {_human(_seconds(conn.rekey_time))}"
                       f" before its rekey: more than the 24 hours NIST SP 800-77r1 suggests for IKE SAs",
                       conn.rekey_time, conn.subject, level="advice")
    if conn.over_time is not None and _seconds(conn.over_time) == 0:
        yield _finding("make-before-break", "new SA first", "RFC 7296 §2.8",
                       "no time between the IKE SA's rekey and its end (over_time/margintime 0): the new SA cannot be "
                       "set up before the old one is gone", conn.over_time, conn.subject, level="should")
    if conn.rand_time is not None and _seconds(conn.rand_time) == 0:
        # RFC 7296 §2.8.1 (and §2.8.2 for IKE SAs): the timing of rekeying requests SHOULD be jittered
        yield _finding("jitter", "SHOULD", "RFC 7296 §2.8.1",
                       "no random jitter on the IKE SA's rekey: two peers configured alike rekey at the same moment "
                       "and collide (both rekeys must then be resolved, RFC 7296 §2.8.2)", conn.rand_time,
                       conn.subject, level="should")
    for child in conn.children:
        subject = f"{conn.subject}/{child.name}"
        rekey = _seconds(child.rekey_time) if child.rekey_time is not None else 3600
        if child.rekey_time is not None and rekey > CHILD_REKEY_MAX:
            yield _finding("lifetime", "8 h", "NIST SP 800-77r1", f"the CHILD_SA lives {_human(rekey)} before its "
                           f"rekey: more than the 8 hours NIST SP 800-77r1 suggests for CHILD_SAs",
                           child.rekey_time, subject, level="advice")
        if child.life_time is not None:
            life = _seconds(child.life_time)
            if rekey and life <= rekey:
                yield _finding("make-before-break", "new SA first", "RFC 7296 §2.8",
                               f"life_time ({_human(life)}) is not after rekey_time ({_human(rekey)}): the CHILD_SA "
                               f"expires before its replacement is made, and traffic stops", child.life_time, subject,
                               level="must")
            elif rekey and life - rekey < MARGIN_MIN:
                yield _finding("make-before-break", "new SA first", "RFC 7296 §2.8",
                               f"only {life - rekey} s between rekey and expiry: one lost rekey request and its "
                               f"retransmissions take longer, and the CHILD_SA expires before its replacement",
                               child.life_time, subject, level="should")
        if child.rand_time is not None and _seconds(child.rand_time) == 0:
            yield _finding("jitter", "SHOULD", "RFC 7296 §2.8.1",
                           "no random jitter on the CHILD_SA's rekey: two peers configured alike rekey at the same "
                           "moment and collide (both rekeys must then be resolved, RFC 7296 §2.8.1)",
                           child.rand_time, subject, level="should")


def rule_dpd(conn: Conn) -> Iterator[Finding]:
    """Dead peer detection off."""
    if not conn.children:
        return
    if conn.dpd_off is None and conn.dpd_delay is not None and _seconds(conn.dpd_delay) > 0:
        return
    at = conn.dpd_off or conn.dpd_delay or Value(None, conn.anchor.file, conn.anchor.line,
                                                 conn.anchor.key + ".dpd_delay")
    yield _finding("dpd", "liveness", "RFC 7296 §2.4",
                   "dead peer detection is off: a peer that rebooted or lost its state is noticed only at the next "
                   "rekey, and traffic into the tunnel is lost until then; "
                   + ("set dpdaction=restart and dpddelay=30s" if conn.legacy else "set dpd_delay (e.g. 30s)"), at,
                   conn.subject, level="advice")


def rule_fragmentation(conn: Conn) -> Iterator[Finding]:
    """`fragmentation = no` with certificates."""
    if conn.fragmentation is not None and (conn.fragmentation.text or "").lower() in ("no", "false") \
            and (conn.uses_certs or conn.certs):
        yield _finding("fragmentation", "IKE fragmentation", "RFC 7383 §1",
                       "fragmentation = no with certificates: IKE_AUTH carrying certificates is often larger than "
                       "the path MTU, its IP fragments are dropped by many firewalls and NATs, and the connection "
                       "never comes up; leave fragmentation = yes", conn.fragmentation, conn.subject,
                       level="should")


PSK_MIN = 20


def psk_weakness(secret: bytes) -> str | None:
    """Why a pre-shared key is guessable, or None."""
    text = secret.decode("utf-8", "replace")
    bare = "".join(c for c in text.lower() if c.isalpha())
    if text.lower() in _COMMON_WORDS or (bare in _COMMON_WORDS and len(bare) >= len(text) - 4):
        return "it is a common word or password"
    if len(secret) < PSK_MIN:
        return f"it has {len(secret)} characters (fewer than {PSK_MIN})"
    if len(set(text)) < 8:
        return f"it is made of {len(set(text))} distinct characters"
    classes = sum(any(f(c) for c in text) for f in (str.islower, str.isupper, str.isdigit))
    others = any(not c.isalnum() for c in text)
    alphabet = (26 if any(c.islower() for c in text) else 0) + (26 if any(c.isupper() for c in text) else 0) \
        + (10 if any(c.isdigit() for c in text) else 0) + (32 if others else 0)
    if classes + others < 2 and len(secret) * math.log2(max(alphabet, 2)) < 112:
        return "it is a run of one kind of character with less than 112 bits of guessing work"
    return None


def rule_psk(gateway: AuditedGateway) -> Iterator[Finding]:
    """Pre-shared keys short or guessable."""
    for value in gateway.psks:
        try:
            secret = decode_secret(value.text or "")
        except ConfigValueError:
            continue
        why = psk_weakness(secret)
        if why is None:
            continue
        yield _finding("psk", "unpredictable key", "RFC 7296 §2.15",
                       f"weak pre-shared key: {why}. A passive listener cannot test guesses in IKEv2 (AUTH travels "
                       "encrypted under the DH keys), but anyone who answers the initiator's IKE_SA_INIT in the "
                       "responder's place receives its AUTH payload and can try a dictionary offline (with IKEv1 "
                       "Aggressive Mode a passive listener can); use 32 random characters or certificates",
                       value, gateway.name, level="should")


CERT_DAYS = 30
SERVER_AUTH = ExtendedKeyUsageOID.SERVER_AUTH


def rule_certificates(conn: Conn, *, now: datetime, days: int = CERT_DAYS) -> Iterator[Finding]:
    """Certificates: key size, signature hash, validity, the EKUs a Windows client needs."""
    for at, path in conn.certs:
        try:
            with open(path, "rb") as handle:
                data = handle.read()
            certs = (x509.load_pem_x509_certificates(data) if b"-----BEGIN" in data
                     else [x509.load_der_x509_certificate(data)])
        except (OSError, ValueError) as err:
            raise AuditError(f"{at.file}:{at.line}: {at.key}: cannot read certificate '{path}': {err}") from None
        cert = certs[0]
        subject = f"{conn.subject} ({os.path.basename(path)})"
        key = cert.public_key()
        if isinstance(key, (rsa.RSAPublicKey, dsa.DSAPublicKey)) and key.key_size < 2048:
            yield _finding("cert-key", "disallowed", "NIST SP 800-131A Rev. 2 §3",
                           f"the certificate's {key.key_size}-bit key is below the 2048 bits RSA signatures need",
                           at, subject, level="must")
        if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.key_size < 224:
            yield _finding("cert-key", "disallowed", "NIST SP 800-131A Rev. 2 §3",
                           f"the certificate's {key.curve.key_size}-bit curve is below 224 bits", at, subject,
                           level="must")
        hash_name = cert.signature_hash_algorithm.name if cert.signature_hash_algorithm else ""
        if hash_name in ("md5", "sha1"):
            yield _finding("cert-hash", "disallowed", "NIST SP 800-131A Rev. 2 §9",
                           f"the certificate is signed with {hash_name.upper()}: collisions make forged "
                           f"certificates possible; reissue it with SHA-256", at, subject, level="must")
        not_after = cert.not_valid_after_utc
        if not_after <= now or cert.not_valid_before_utc > now:
            yield _finding("cert-validity", "validity", "RFC 5280 §4.1.2.5",
                           f"the certificate is not valid now (valid {cert.not_valid_before_utc:%Y-%m-%d} to "
                           f"{not_after:%Y-%m-%d})", at, subject, level="must")
        elif (not_after - now).days < days:
            yield _finding("cert-validity", "validity", "RFC 5280 §4.1.2.5",
                           f"the certificate expires in {(not_after - now).days} days ({not_after:%Y-%m-%d}): "
                           f"renew it before then", at, subject, level="should")
        if conn.pools:
            try:
                usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            except x509.ExtensionNotFound:
                usages = None
            if usages is not None and SERVER_AUTH not in usages:
                # RFC 4945 §5.1.3.12: how IPsec treats the ExtendedKeyUsage; serverAuth is Windows' own demand
                yield _finding("cert-eku", "Windows: serverAuth", "RFC 4945 §5.1.3.12",
                               "the gateway's certificate has an extended key usage without serverAuth: Windows "
                               "clients refuse it; add serverAuth", at, subject, level="should")


def rule_post_quantum(conn: Conn) -> Iterator[Finding]:
    """Post-quantum readiness: a hybrid ML-KEM exchange (RFC 9370) or a PPK (RFC 8784)."""
    if not conn.ike_proposals or conn.ppk_id is not None or post_quantum_groups(conn):
        return
    ek, ct = MLKEM_SIZES[DhGroup.MLKEM_768]
    yield _finding("post-quantum", "harvest now, decrypt later", "RFC 9370 §1",
                   "no post-quantum key exchange: a recording of today's exchange can be decrypted once a quantum "
                   "computer breaks the classic one; add ke1_mlkem768 after the DH group (RFC 9370; ipsec-lab, or "
                   "strongSwan 6.0+ with ML-KEM, on both ends): one IKE_INTERMEDIATE exchange (RFC 9242) more, "
                   "with KE payloads of "
                   f"{ek + KE_PAYLOAD_HEADER} octets from the initiator and {ct + KE_PAYLOAD_HEADER} from the "
                   "responder; or a post-quantum preshared key (ppk_id, RFC 8784)", _ike_proposals_value(conn),
                   conn.subject, level="advice")


def post_quantum_groups(conn: Conn) -> list[str]:
    return [_name(*t) for t in _transforms(conn.ike_proposals) if (t[0] == D or 6 <= t[0] <= 12)
            and t[1] in MLKEM_SIZES]


RULES: tuple[Rule, ...] = (rule_ikev1, rule_ike_algorithms, rule_child_algorithms, rule_ah, rule_block64_lifetime,
                           rule_pfs, rule_lifetimes, rule_dpd, rule_fragmentation, rule_post_quantum)


# ---------------------------------------------------------------- rules across the gateways of one organization


def _peers(a: Conn, b: Conn) -> bool:
    def addr_match(remote: tuple[str, ...], local: tuple[str, ...]) -> bool:
        return bool(set(remote) & set(local) - {"%any", "0.0.0.0", "::", "%any4", "%any6"})

    # each end's remote_addrs names the other (or is left open, as a road-warrior gateway's is)
    forward, backward = addr_match(a.remote_addrs, b.local_addrs), addr_match(b.remote_addrs, a.local_addrs)
    if (forward or backward) and (forward or not a.remote_addrs) and (backward or not b.remote_addrs):
        return True
    return bool(a.local_id and a.remote_id and a.local_id == b.remote_id and a.remote_id == b.local_id)


def _worst(protocol: int, proposal: Proposal) -> int:
    ranks = [LEVELS.index(_term_level(g[0])) for t in proposal.transforms
             if (g := grade(protocol, int(t.transform_type), int(t.transform_id))) is not None]
    return min(ranks, default=len(LEVELS))


def rule_peer_ike(a: Conn, b: Conn) -> Iterator[Finding]:
    """The same connection on its two ends: do the IKE proposals meet, and on what?"""
    # a initiates, b responds and picks by its own order (strongSwan's default)
    chosen = select_proposal(b.ike_proposals, a.ike_proposals)
    at = _ike_proposals_value(a)
    peer = f"{b.subject} ({_ike_proposals_value(b).file}:{_ike_proposals_value(b).line})"
    if chosen is None:
        yield _finding("peer-mismatch", "NO_PROPOSAL_CHOSEN", "RFC 7296 §2.7",
                       f"no IKE proposal in common with {peer}: the connection cannot come up", at, a.subject,
                       level="must")
        return
    if _worst(ProtocolId.IKE, chosen) < _worst(ProtocolId.IKE, a.ike_proposals[0]):
        yield _finding("peer-weaker", "weaker than first choice", "RFC 7296 §2.7",
                       f"against {peer} this connection negotiates {format_proposal(chosen)}, weaker than its first "
                       f"choice {format_proposal(a.ike_proposals[0])}", at, a.subject, level="should")
    elif _proposal_set(a.ike_proposals) != _proposal_set(b.ike_proposals):
        yield _finding("peer-differs", "consistency", "RFC 7296 §2.7",
                       f"the two ends list different IKE proposals (this one and {peer}); they meet on "
                       f"{format_proposal(chosen)} only because both happen to list it: keep them the same",
                       at, a.subject, level="advice")


def _proposal_set(proposals: list[Proposal]) -> frozenset[str]:
    return frozenset(format_proposal(p) for p in proposals)


def _pair_children(a: Conn, b: Conn) -> Iterator[tuple[Child, Child]]:
    for child in a.children:
        other = next((c for c in b.children if c.name == child.name), None) or next(
            (c for c in b.children if c.local_ts and c.local_ts == child.remote_ts and c.remote_ts == child.local_ts),
            None)
        if other is not None:
            yield child, other


def rule_peer_children(a: Conn, b: Conn) -> Iterator[Finding]:
    """The CHILD_SAs of one connection on its two ends: IKE_AUTH (no key exchange) and the rekeys (with it)."""
    for child, other in _pair_children(a, b):
        at, subject = child.proposals_value, f"{a.subject}/{child.name}"
        peer = f"{b.subject}/{other.name} ({other.proposals_value.file}:{other.proposals_value.line})"
        # RFC 7296 §1.2: the CHILD_SA of IKE_AUTH has no KE payload; rekeys in CREATE_CHILD_SA MAY (§1.3)
        first = select_proposal(other.proposals, child.proposals, skip_dh=True)
        if first is None:
            yield _finding("peer-mismatch", "NO_PROPOSAL_CHOSEN", "RFC 7296 §2.7",
                           f"no {'AH' if child.ah_proposals else 'ESP'} proposal in common with {peer}: the "
                           f"CHILD_SA cannot come up", at, subject, level="must")
            continue
        rekeys = [select_proposal(other.proposals, child.proposals), select_proposal(child.proposals, other.proposals)]
        if any(r is None for r in rekeys):
            yield _finding("peer-pfs", "NO_PROPOSAL_CHOSEN", "RFC 7296 §1.3",
                           f"the two ends disagree on PFS (the key exchange group in the proposals) with {peer}: the "
                           f"CHILD_SA comes up in IKE_AUTH, which carries no key exchange, but its first rekey fails",
                           at, subject, level="must")
        elif _worst(child.ah_proposals and ProtocolId.AH or ProtocolId.ESP, first) < _worst(
                ProtocolId.ESP, child.proposals[0]):
            yield _finding("peer-weaker", "weaker than first choice", "RFC 7296 §2.7",
                           f"against {peer} this CHILD_SA negotiates {format_proposal(first)}, weaker than its "
                           f"first choice {format_proposal(child.proposals[0])}", at, subject, level="should")


def rule_org_policy(gateways: list[AuditedGateway]) -> Iterator[Finding]:
    """Gateways of one organization whose IKE policy differs from the most common one."""
    policies: dict[frozenset[str], list[Conn]] = {}
    for gateway in gateways:
        for conn in gateway.conns:
            if conn.ike_proposals:
                policies.setdefault(_proposal_set(conn.ike_proposals), []).append(conn)
    if len(policies) < 2:
        return
    common = max(policies.values(), key=lambda conns: len({c.gateway for c in conns}))
    for conns in policies.values():
        if conns is common or len({c.gateway for c in common}) < 2:
            continue
        for conn in conns:
            yield _finding("org-policy", "consistency", "NIST SP 800-77r1",
                           f"this connection's IKE proposals ({', '.join(sorted(_proposal_set(conn.ike_proposals)))}) "
                           f"differ from the {len(common)} connections of this organization that share one policy "
                           f"({', '.join(sorted(_proposal_set(common[0].ike_proposals)))}): if there is no reason, "
                           f"use one policy", _ike_proposals_value(conn), conn.subject, level="advice")


# ---------------------------------------------------------------- reading swanctl.conf


def _value(section: Section, key: str) -> Value | None:
    setting: Setting | None = section.settings.get(key)
    if setting is None:
        return None
    return Value(setting.value, setting.file, setting.line, f"{section.path}.{key}")


def _proposals(protocol: int, value: Value | None, default: str | None) -> list[Proposal]:
    text = value.text if value is not None and value.text else default
    if text is None:
        return []
    try:
        return parse_proposals(protocol, text.replace("!", ""))
    except ProposalError as err:
        assert value is not None
        raise AuditError(f"{value.file}:{value.line}: {value.key}: {err}") from None


def _check_time(value: Value | None) -> None:
    if value is not None and value.text is not None:
        try:
            parse_time(value.text.rstrip("%"))
        except ConfigValueError as err:
            raise AuditError(f"{value.file}:{value.line}: {value.key}: {err}") from None


def _seconds(value: Value) -> int:
    try:
        return parse_time(value.text or "0")
    except ConfigValueError as err:
        raise AuditError(f"{value.file}:{value.line}: {value.key}: {err}") from None


def _int(value: Value) -> int:
    text = (value.text or "0").strip()
    try:
        return int(text, 16) if text.lower().startswith("0x") else int(text)
    except ValueError:
        raise AuditError(f"{value.file}:{value.line}: {value.key}: expected a whole number, not '{text}'") from None


def _list(value: Value | None) -> tuple[str, ...]:
    return tuple(x.strip() for x in (value.text or "").split(",") if x.strip()) if value else ()


def read_swanctl(path: str, name: str, group: str) -> AuditedGateway:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise AuditError(f"{path}: cannot read: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise AuditError(f"{path}: not a text file (UTF-8 expected)") from None
    root = resolve_settings(parse_settings(text, path)[0])
    gateway = AuditedGateway(name, path, group)
    directory = os.path.dirname(path)
    connections = root.sections.get("connections")
    for conn_section in (connections.sections.values() if connections else ()):
        anchor = Value(None, conn_section.file, conn_section.line, conn_section.path)
        conn = Conn(name, conn_section.name, anchor)
        get = lambda key, s=conn_section: _value(s, key)  # noqa: E731
        conn.version = get("version")
        conn.proposals = get("proposals")
        conn.ike_proposals = _proposals(ProtocolId.IKE, conn.proposals, "default")
        conn.dpd_delay, conn.fragmentation = get("dpd_delay"), get("fragmentation")
        conn.rekey_time, conn.over_time, conn.rand_time = get("rekey_time"), get("over_time"), get("rand_time")
        conn.aggressive, conn.ppk_id = get("aggressive"), get("ppk_id")
        for value in (conn.dpd_delay, conn.rekey_time, conn.over_time, conn.rand_time):
            _check_time(value)
        conn.pools = bool(get("pools"))
        conn.local_addrs, conn.remote_addrs = _list(get("local_addrs")), _list(get("remote_addrs"))
        for sub_name, sub in conn_section.sections.items():
            if sub_name.startswith(("local", "remote")):
                auth = _value(sub, "auth")
                side = conn.local_auth if sub_name.startswith("local") else conn.remote_auth
                side.append(auth or Value("pubkey", sub.file, sub.line, f"{sub.path}.auth"))
                ident = _value(sub, "id")
                if ident is not None and sub_name in ("local", "remote"):
                    setattr(conn, f"{sub_name}_id", ident.text or "")
                certs = _value(sub, "certs")
                if certs is not None and sub_name.startswith("local"):
                    for cert in _list(certs):
                        full = cert if os.path.isabs(cert) else os.path.join(directory, "x509", cert)
                        conn.certs.append((certs, full))
        children = conn_section.sections.get("children")
        shunts = 0
        for child_section in (children.sections.values() if children else ()):
            cget = lambda key, s=child_section: _value(s, key)  # noqa: E731
            if (mode := cget("mode")) and (mode.text or "").lower() in ("pass", "drop"):
                shunts += 1   # strongSwan's shunts: installed policies, nothing negotiated
                continue
            child = Child(child_section.name, Value(None, child_section.file, child_section.line, child_section.path))
            child.esp, child.ah = cget("esp_proposals"), cget("ah_proposals")
            child.ah_proposals = _proposals(ProtocolId.AH, child.ah, None)
            child.esp_proposals = [] if child.ah_proposals else _proposals(ProtocolId.ESP, child.esp, "default")
            child.rekey_time, child.life_time = cget("rekey_time"), cget("life_time")
            child.rand_time = cget("rand_time")
            for value in (child.rekey_time, child.life_time, child.rand_time):
                _check_time(value)
            child.rekey_bytes, child.life_bytes = cget("rekey_bytes"), cget("life_bytes")
            child.local_ts, child.remote_ts = _list(cget("local_ts")), _list(cget("remote_ts"))
            conn.children.append(child)
        if shunts and not conn.children:
            continue
        gateway.conns.append(conn)
    secrets = root.sections.get("secrets")
    for secret_section in (secrets.sections.values() if secrets else ()):
        if secret_section.name.startswith("ike"):
            value = _value(secret_section, "secret")
            if value is not None:
                gateway.psks.append(value)
    return gateway


# ---------------------------------------------------------------- reading ipsec.conf


def read_ipsec_conf(path: str, name: str, group: str) -> AuditedGateway:
    conf = load_ipsec_conf(path)
    gateway = AuditedGateway(name, path, group)
    directory = os.path.dirname(path)
    for legacy in conf.conns.values():
        # ipsec.conf(5) auto: ignore (the default) means the conn is not loaded, e.g. a template for also=
        if (legacy.value("auto") or "ignore").lower() != "ignore":
            gateway.conns.append(_legacy_conn(legacy, name, directory))
    secrets = os.path.join(directory, "ipsec.secrets")
    if os.path.isfile(secrets):
        for entry in load_ipsec_secrets(secrets):
            if entry.kind == "PSK":
                gateway.psks.append(Value(entry.secret, entry.file, entry.line, "PSK"))
    return gateway


def _legacy_value(legacy: IpsecConn, key: str) -> Value | None:
    setting = legacy.get(key)
    if setting is None:
        return None
    return Value(setting.value, setting.file, setting.line, f"conn {legacy.name} {key}")


def _legacy_conn(legacy: IpsecConn, gateway: str, directory: str) -> Conn:
    get = lambda key: _legacy_value(legacy, key)  # noqa: E731
    conn = Conn(gateway, legacy.name, Value(None, legacy.file, legacy.line, f"conn {legacy.name}"), legacy=True)
    conn.version = get("keyexchange")
    conn.aggressive = get("aggressive")
    conn.proposals = get("ike")
    conn.ike_proposals = _proposals(ProtocolId.IKE, conn.proposals, "default")
    # ipsec.conf(5): ikelifetime (3h) and lifetime (1h) are the lifetimes; rekeying starts margintime (9m) earlier
    conn.rekey_time = get("ikelifetime")
    conn.over_time = get("margintime") or get("rekeymargin")
    fuzz = get("rekeyfuzz")
    if fuzz is not None and (fuzz.text or "").rstrip("%") == "0":
        conn.rand_time = Value("0", fuzz.file, fuzz.line, fuzz.key)
    for value in (conn.rekey_time, conn.over_time):
        _check_time(value)
    # ipsec.conf(5) dpdaction: none (the default) turns dead peer detection off; dpddelay defaults to 30s
    action = get("dpdaction")
    if action is None or (action.text or "none").lower() == "none":
        conn.dpd_off = action or Value(None, legacy.file, legacy.line, f"conn {legacy.name} dpdaction")
    else:
        conn.dpd_delay = get("dpddelay") or Value("30s", action.file, action.line, action.key)
        _check_time(conn.dpd_delay)
    conn.fragmentation = get("fragmentation")
    auth = get("authby")
    for side, target in (("left", conn.local_auth), ("right", conn.remote_auth)):
        value = get(f"{side}auth") or auth
        if value is not None:
            target.append(Value("psk" if (value.text or "") in ("secret", "psk") else value.text, value.file,
                                value.line, value.key))
    cert = get("leftcert")
    if cert is not None and cert.text:
        full = cert.text if os.path.isabs(cert.text) else os.path.join(directory, "ipsec.d", "certs", cert.text)
        conn.certs.append((cert, full))
        if not conn.local_auth:
            conn.local_auth.append(Value("pubkey", cert.file, cert.line, cert.key))
    conn.pools = get("rightsourceip") is not None
    conn.local_addrs, conn.remote_addrs = _list(get("left")), _list(get("right"))
    conn.local_id = (leftid.text or "") if (leftid := get("leftid")) else ""
    conn.remote_id = (rightid.text or "") if (rightid := get("rightid")) else ""
    child = Child(legacy.name, conn.anchor)
    child.esp, child.ah = get("esp"), get("ah")
    child.ah_proposals = _proposals(ProtocolId.AH, child.ah, None)
    child.esp_proposals = [] if child.ah_proposals else _proposals(ProtocolId.ESP, child.esp, "default")
    life = get("lifetime") or get("keylife")
    margin = get("margintime") or get("rekeymargin")
    for value in (life, margin):
        _check_time(value)
    if life is not None:
        rekey_seconds = _seconds(life) - (_seconds(margin) if margin is not None else 540)
        child.rekey_time = Value(f"{max(rekey_seconds, 0)}s", life.file, life.line, life.key)
        child.life_time = life
    child.rekey_bytes = get("lifebytes")
    if fuzz is not None and (fuzz.text or "").rstrip("%") == "0":
        child.rand_time = Value("0", fuzz.file, fuzz.line, fuzz.key)
    child.local_ts, child.remote_ts = _list(get("leftsubnet")), _list(get("rightsubnet"))
    conn.children.append(child)
    return conn


# ---------------------------------------------------------------- captures


def read_capture(path: str, keys: str | None = None) -> tuple[list[Observation], list[Finding], list[dict]]:
    """What each exchange in a capture offered and chose, graded: IKE_SA_INIT always (it is in the
    clear), IKE_AUTH and CREATE_CHILD_SA too with the run's keys; and the lifetimes the rekeys show."""
    from lab.ike.const import ExchangeType
    from lab.ike.payloads import SA
    from lab.viz.analysis import analyze_capture
    from lab.viz.decode import CaptureError

    try:
        analysis = analyze_capture(path, keys)
    except CaptureError as err:
        raise AuditError(str(err)) from None
    observations: list[Observation] = []
    findings: list[Finding] = []
    lifetimes: list[dict] = []
    pending: dict[tuple[str, int], Observation] = {}
    born: dict[bytes, float] = {}           # SPI (IKE: spi_i) -> when its SA was made
    for packet in analysis.packets:
        info = packet.ike
        if info is None or info.error is not None or packet.retransmission_of is not None:
            continue
        if info.exchange == ExchangeType.IKE_SA_INIT and info.response:
            born.setdefault(bytes.fromhex(info.spi_i), packet.time)
        rekeyed = info.rekeyed_spi()
        if not info.response and info.exchange == ExchangeType.CREATE_CHILD_SA:
            old = rekeyed if rekeyed is not None else (bytes.fromhex(info.spi_i) if info.ike_spi() else None)
            if old is not None and old in born:
                lifetimes.append({"file": path, "frame": packet.frame, "sa": "CHILD_SA" if rekeyed else "IKE SA",
                                  "spi": old.hex(), "rekeyed_after": round(packet.time - born[old], 3)})
        for _spi_protocol, spi in info.child_spis():
            born.setdefault(spi, packet.time)
        if (ike_spi := info.ike_spi()) is not None:
            born.setdefault(ike_spi, packet.time)
        payloads = info.inner_payloads or info.payload_objects
        sa = next((p for p in payloads if isinstance(p, SA)), None)
        if sa is None:
            continue
        texts = [format_proposal(p) for p in sa.proposals]
        what = info.exchange_name + (" response (chosen)" if info.response else " request (offered)")
        findings.extend(_capture_grades(path, packet.frame, what, sa.proposals))
        if not info.response:
            obs = Observation(path, packet.frame, f"{packet.src}:{packet.sport}", f"{packet.dst}:{packet.dport}",
                              texts, None, None, info.exchange_name)
            pending[(info.spi_i, info.message_id)] = obs
            observations.append(obs)
        else:
            asked = pending.pop((info.spi_i, info.message_id), None)
            if asked is not None:
                asked.chosen, asked.frame_chosen = (texts[0] if texts else None), packet.frame
    return observations, findings, lifetimes


def _capture_grades(path: str, frame: int, what: str, proposals: list[Proposal]) -> Iterator[Finding]:
    at = Value(None, path, None, f"frame {frame} {what}")
    for protocol in (ProtocolId.IKE, ProtocolId.ESP, ProtocolId.AH):
        for ttype, tid, bits in _transforms(p for p in proposals if int(p.protocol_id) == protocol):
            graded = grade(protocol, ttype, tid)
            if graded is not None:
                term, reference = graded
                why = _WHY.get((ttype, tid)) or _dh_why(tid)
                yield _finding("capture-algorithm", term, reference, f"{what}: {_name(ttype, tid, bits)} ({term} "
                               f"in {reference}): {why}", at, f"frame {frame}")


# ---------------------------------------------------------------- the report


@dataclass
class AuditReport:
    findings: list[Finding] = field(default_factory=list)
    gateways: list[str] = field(default_factory=list)
    captures: list[Observation] = field(default_factory=list)
    post_quantum: list[dict] = field(default_factory=list)
    lifetimes: list[dict] = field(default_factory=list)   # seen in captures: when each SA was rekeyed

    def at_or_above(self, level: str) -> list[Finding]:
        limit = LEVELS.index(level)
        return [f for f in self.findings if LEVELS.index(f.level) <= limit]

    def counts(self) -> dict[str, int]:
        return {level: sum(f.level == level for f in self.findings) for level in LEVELS}


def _label(path: Path, root: Path) -> str:
    parent = path.parent
    if parent.name in ("swanctl", "ipsec.d", "etc"):
        parent = parent.parent
    return parent.name or str(parent)


def _group(path: Path, root: Path) -> str:
    for parent in path.parents:
        if (parent / "scenario.yaml").is_file() or (parent / "result.json").is_file():
            return str(parent)
        if parent == root:
            break
    return str(root)


def _kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith((".pcap", ".pcapng", ".cap")):
        return "capture"
    if name.endswith("ipsec.conf"):
        return "ipsec.conf"
    if name.endswith(".conf") and "swanctl" in name:
        return "swanctl"
    return None


def _collect(paths: Iterable[str]) -> list[tuple[Path, str, Path]]:
    out = []
    for given in paths:
        root = Path(given)
        if not root.exists():
            raise AuditError(f"{given}: no such file or folder")
        if root.is_file():
            kind = _kind(root) or "swanctl"
            out.append((root, kind, root.parent))
            continue
        for path in sorted(root.rglob("*")):
            found = _kind(path) if path.is_file() else None
            if found is not None:
                out.append((path, found, root))
    return out


def _run_keys(capture: Path) -> str | None:
    # a run folder's captures/ sit beside its keys/
    keys = capture.parent.parent / "keys"
    return str(keys) if capture.parent.name == "captures" and keys.is_dir() else None


def audit_paths(paths: Iterable[str], *, cert_days: int = CERT_DAYS, now: datetime | None = None,
                keys: str | None = None) -> AuditReport:
    """Audit every swanctl.conf, ipsec.conf and capture at or under `paths` (captures decrypted
    with the key tables in `keys`, or their run folder's keys/). Raises AuditError (or lab.conf's
    ConfigError) naming file, line and key for input it cannot read."""
    now = now or datetime.now(UTC)
    report = AuditReport()
    gateways: list[AuditedGateway] = []
    for path, kind, root in _collect(paths):
        if kind == "capture":
            found_keys = keys or _run_keys(path)
            observations, findings, lifetimes = read_capture(str(path), found_keys)
            report.captures.extend(observations)
            report.findings.extend(findings)
            report.lifetimes.extend(lifetimes)
            continue
        read = read_swanctl if kind == "swanctl" else read_ipsec_conf
        gateway = read(str(path), _label(path, root), _group(path, root))
        gateway.variant = _variant(path)
        gateways.append(gateway)
        report.gateways.append(str(path))
    report.findings.extend(audit_gateways(gateways, cert_days=cert_days, now=now))
    for gateway in gateways:
        for conn in gateway.conns:
            groups = post_quantum_groups(conn)
            status = "hybrid" if groups else ("ppk" if conn.ppk_id is not None else "classic")
            ek, ct = MLKEM_SIZES[DhGroup.MLKEM_768]
            report.post_quantum.append({"connection": conn.subject, "file": conn.anchor.file, "line": conn.anchor.line,
                                        "status": status, "post_quantum": groups,
                                        "added_octets": 0 if status != "classic"
                                        else ek + ct + 2 * KE_PAYLOAD_HEADER})
    return report


def audit_gateways(gateways: list[AuditedGateway], *, cert_days: int = CERT_DAYS,
                   now: datetime | None = None) -> list[Finding]:
    """Every rule over `gateways`: per connection, per gateway, then across each organization."""
    now = now or datetime.now(UTC)
    findings: list[Finding] = []
    for gateway in gateways:
        for conn in gateway.conns:
            for rule in RULES:
                findings.extend(rule(conn))
            findings.extend(rule_certificates(conn, now=now, days=cert_days))
        findings.extend(rule_psk(gateway))
    groups: dict[str, list[AuditedGateway]] = {}
    for gateway in gateways:
        groups.setdefault(gateway.group, []).append(gateway)
    for members in groups.values():
        variants: dict[str, set[str]] = {}
        for gateway in members:
            variants.setdefault(gateway.name, set()).add(gateway.variant)
        for a in members:
            for b in members:
                if a.name == b.name or not _same_setup(a, b, variants):
                    continue
                for conn_a in a.conns:
                    for conn_b in b.conns:
                        if _peers(conn_a, conn_b):
                            findings.extend(rule_peer_ike(conn_a, conn_b))
                            findings.extend(rule_peer_children(conn_a, conn_b))
        findings.extend(rule_org_policy(members))
    return findings


def _same_setup(a: AuditedGateway, b: AuditedGateway, variants: dict[str, set[str]]) -> bool:
    # a scenario's swanctl-X.conf on one gateway goes with swanctl-X.conf on the other, else with its swanctl.conf
    if a.variant == b.variant:
        return True
    return (a.variant == "" and b.variant not in variants[a.name]) or (
        b.variant == "" and a.variant not in variants[b.name])


def _variant(path: Path) -> str:
    stem = path.name[:-len(".conf")] if path.name.endswith(".conf") else path.name
    for base in ("swanctl", "ipsec"):
        if stem == base:
            return ""
        if stem.startswith(base + "-") or stem.startswith(base + "."):
            return stem[len(base) + 1:]
    return stem


def _human(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def render_json(report: AuditReport) -> str:
    return json.dumps({"counts": report.counts(), "findings": [asdict(f) for f in report.findings],
                       "gateways": report.gateways, "captures": [asdict(o) for o in report.captures],
                       "lifetimes": report.lifetimes, "post_quantum": report.post_quantum}, indent=2)


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(report: AuditReport) -> str:
    counts = report.counts()
    lines = [f"## Audit: {counts['must']} must, {counts['should']} should, {counts['advice']} advice", ""]
    if report.findings:
        lines += ["| level | where | key | reference | finding |", "|---|---|---|---|---|"]
        for f in sorted(report.findings, key=lambda f: (LEVELS.index(f.level), f.file, f.line or 0)):
            lines.append(f"| {f.level} ({_cell(f.term)}) | {_cell(f.where)} | {_cell(f.key)} | {_cell(f.reference)} | "
                         f"{_cell(f.subject)}: {_cell(f.message)} |")
    if report.captures:
        lines += ["", "| capture | frame | exchange | initiator → responder | offered | chosen |",
                  "|---|---|---|---|---|---|"]
        for o in report.captures:
            lines.append(f"| {_cell(o.file)} | {o.frame} | {o.exchange} | {o.initiator} → {o.responder} | "
                         f"{_cell(', '.join(o.offered))} | {_cell(o.chosen or 'no answer')} |")
    if report.lifetimes:
        lines += ["", "| capture | frame | rekey of | SPI | after (s) |", "|---|---|---|---|---|"]
        for seen in report.lifetimes:
            lines.append(f"| {_cell(seen['file'])} | {seen['frame']} | {seen['sa']} | {seen['spi']} | "
                         f"{seen['rekeyed_after']:g} |")
    if report.post_quantum:
        hybrid = [p["connection"] for p in report.post_quantum if p["status"] != "classic"]
        lines += ["", f"Post-quantum: {len(hybrid)} of {len(report.post_quantum)} connections have a hybrid ML-KEM "
                      f"exchange or a PPK" + (f" ({', '.join(hybrid)})" if hybrid else "") + "."]
    return "\n".join(lines) + "\n"


def render_text(report: AuditReport, console=None) -> None:
    """The report as tables on a terminal (rich)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    counts = report.counts()
    table = Table(title=f"ipsec-lab audit: {counts['must']} must, {counts['should']} should, "
                        f"{counts['advice']} advice", show_lines=False, expand=True)
    for column in ("level", "where", "key", "reference", "finding"):
        table.add_column(column, overflow="fold")
    colour = {"must": "bold red", "should": "yellow", "advice": "cyan"}
    for f in sorted(report.findings, key=lambda f: (LEVELS.index(f.level), f.file, f.line or 0)):
        table.add_row(f"[{colour[f.level]}]{f.level}[/] {f.term}", f.where, f.key, f.reference,
                      f"{f.subject}: {f.message}")
    console.print(table)
    if report.captures:
        captures = Table(title="offered and chosen in the captures", expand=True)
        for column in ("capture", "frame", "exchange", "initiator → responder", "offered", "chosen"):
            captures.add_column(column, overflow="fold")
        for o in report.captures:
            captures.add_row(o.file, str(o.frame), o.exchange, f"{o.initiator} → {o.responder}",
                             ", ".join(o.offered), o.chosen or "no answer")
        console.print(captures)
    if report.post_quantum:
        hybrid = sum(p["status"] != "classic" for p in report.post_quantum)
        console.print(f"post-quantum: {hybrid} of {len(report.post_quantum)} connections protected "
                      f"(hybrid ML-KEM or PPK)")


AUDIT_START, AUDIT_END = "<!-- audit -->", "<!-- /audit -->"
REPORT_LISTED = 12


def write_run_audit(folder: str | Path) -> AuditReport:
    """Audit a run folder (its gateways' configurations as run, its captures) into DIR/audit.md and
    DIR/audit.json, and put a summary with the worst findings in DIR/report.md's Audit section."""
    folder = Path(folder)
    report = audit_paths([str(folder)])
    # file names relative to the run folder, as the report's links are
    report.findings = [replace(f, file=os.path.relpath(f.file, folder)) for f in report.findings]
    for observation in report.captures:
        observation.file = os.path.relpath(observation.file, folder)
    for seen in report.lifetimes:
        seen["file"] = os.path.relpath(seen["file"], folder)
    report.gateways = [os.path.relpath(g, folder) for g in report.gateways]
    (folder / "audit.md").write_text(render_markdown(report))
    (folder / "audit.json").write_text(render_json(report) + "\n")
    report_md = folder / "report.md"
    if report_md.is_file():
        counts = report.counts()
        lines = [AUDIT_START, f"{counts['must']} must, {counts['should']} should, {counts['advice']} advice "
                              f"in the gateways' settings: [audit.md](audit.md) (`ipsec-lab audit` grades them "
                              f"against RFC 8247/8221 and more)", ""]
        worst = [f for f in sorted(report.findings, key=lambda f: (LEVELS.index(f.level), f.file, f.line or 0))
                 if f.level != "advice"]
        lines += [f"- {f.level} ({f.term}, {f.reference}) {f.where} `{f.key}`: {f.subject}: {f.message}"
                  for f in worst[:REPORT_LISTED]]
        if len(worst) > REPORT_LISTED:
            lines.append(f"- ... {len(worst) - REPORT_LISTED} more in [audit.md](audit.md)")
        block = "\n".join(lines + [AUDIT_END])
        text = report_md.read_text()
        start, end = text.find(AUDIT_START), text.find(AUDIT_END)
        if start == -1 or end == -1:
            text = text.rstrip("\n") + "\n\n## Audit\n\n" + block + "\n"
        else:
            text = text[:start] + block + text[end + len(AUDIT_END):]
        report_md.write_text(text)
    return report
