"""Why a negotiation failed, for `ipsec-lab diagnose`: the side that refused and the reason it
gave lead (lab.viz.refusals), then what the two configurations as run say about it (proposals,
selectors, modes, identities, keys, certificates), each claim checked against them first: a
cause the configurations contradict is never named, and when they cannot decide the paragraph
says what it saw and what would tell."""
from __future__ import annotations

import datetime
import re
from dataclasses import dataclass

from lab.iana import TransformType
from lab.ike.proposals import (
    ProposalError,
    format_proposal,
    format_transform,
    parse_ah_proposals,
    parse_esp_proposals,
    parse_ike_proposals,
    select_proposal,
)

from .configs import CertConf, ChildConf, dn_key, id_kind, parse_id, proposal_text
from .evidence import Diagnosis, Run, addr_allowed, quote, selectors, ts_covers, ts_overlap
from .refusals import Refusal

FAMILY = {"proposal": "proposal", "no-config": "proposal", "ah-nat": "proposal",
          "ts": "ts", "install": "ts", "transport": "ts",
          "psk": "auth", "psk-missing": "auth", "peer-config": "auth", "identity": "auth", "cert-id": "auth",
          "eap-cert-id": "auth",
          "cert-expired": "auth", "cert-revoked": "auth", "cert-chain": "auth", "cert-trust": "auth",
          "own-key": "auth", "signature": "auth", "auth": "auth", "other": "other"}
# the more specific reason first when one side logged several
RANK = ["no-config", "ah-nat", "install", "transport", "psk", "psk-missing", "peer-config", "identity", "cert-expired",
        "cert-revoked", "cert-chain", "eap-cert-id", "cert-id", "cert-trust", "own-key", "signature", "proposal", "ts",
        "auth", "other"]
NOTIFY = {"proposal": "NO_PROPOSAL_CHOSEN", "ts": "TS_UNACCEPTABLE", "auth": "AUTHENTICATION_FAILED"}
TYPE_WORDS = {TransformType.ENCR: "encryption algorithm", TransformType.PRF: "PRF",
              TransformType.INTEG: "integrity algorithm", TransformType.DH: "Diffie-Hellman group",
              TransformType.ESN: "ESN setting",
              # RFC 9370 §2.2.1: Additional Key Exchange 1..7 (strongSwan 6's ke1_ .. ke7_)
              **{ttype: f"additional key exchange {ttype - 5} (ke{ttype - 5}_)" for ttype in range(6, 13)}}


@dataclass
class Failure:
    """One failed exchange: who refused whom, the refuser's own reason (if it gave one), what the
    other side was told, and where in the run."""
    run: Run
    family: str
    reason: Refusal | None          # the refuser's own words
    told: list[Refusal]             # "peer answered ..." on the other side
    related: list[Refusal]
    refuser: str | None
    other: str | None
    initiator: str | None           # of the failed exchange
    responder: str | None
    exchange: str
    step: int | None
    wall: float

    @property
    def child_name(self) -> str | None:
        for f in self.related:
            match = re.search(r"CHILD_SA (\S+?):? (?:not created|peer answered)", f.text)
            if match:
                return match.group(1)
        step = self.run.step_args(self.step) if self.step else {}
        return step.get("child") if isinstance(step.get("child"), str) else None

    def lead(self) -> str:
        """The refuser's own reason, first; or what the other side was told when the refuser gave none."""
        run = self.run
        role = "request" if self.refuser != self.initiator else "answer"
        where = f"in {run.step_words(self.step)} at {run.when(self.wall)}"
        if self.reason is not None:
            said = "logged why" if self.reason.source == "charon" else "recorded why in its trace"
            notify = self.notify
            answered = f" with {notify}" if notify and role == "request" else ""
            return (f"{run.who(self.refuser)} refused {self.other}'s {self.exchange} {role}{answered} {where} and "
                    f"{said}: “{self.reason.text}”.")
        notify = self.notify or "an error"
        logs = "its log does not say why" if self.refuser in run.charon or self.refuser in run.folder.traces or \
            any(r.get("node") == self.refuser for r in run.records) else "no log of it is in the run folder"
        return (f"{run.who(self.refuser)} answered {self.other}'s {self.exchange} request {where} with {notify}; "
                f"{logs}.")

    @property
    def notify(self) -> str | None:
        """The error notify the other side got: from its own record, else the family's."""
        for f in self.told:
            match = re.search(r"(?:answered|received) ([A-Z_]{6,})", f.text)
            if match:
                return match.group(1)
        return NOTIFY.get(self.family)

    def evidence(self) -> list[str]:
        return [f"{f.node}: {quote(f.text)}" for f in self.related[:4]]


def negotiation(run: Run) -> Diagnosis | None:
    """The earliest refusal of a negotiation (NO_PROPOSAL_CHOSEN, TS_UNACCEPTABLE, AUTHENTICATION_FAILED, and
    what a side says before it answers one), explained."""
    finals = [f for f in run.refusals if f.final]
    if not finals:
        return None
    first = finals[0]
    family = FAMILY.get(first.kind, "other")
    related = [f for f in finals if FAMILY.get(f.kind, "other") == family and abs(f.wall - first.wall) <= 2.0]
    own = sorted((f for f in related if f.own), key=lambda f: (RANK.index(f.kind), f.wall))
    told = [f for f in related if not f.own]
    reason = own[0] if own else None
    elsewhere = [f.node for f in told if reason is None or f.node != reason.node]
    refuser: str | None
    other: str | None
    if reason is not None:
        refuser = reason.node
        other = elsewhere[0] if elsewhere else run.peer_of(refuser)
    else:
        other = told[0].node
        refuser = run.peer_of(other)
    refuser, other = refuser or "the peer", other or "the peer"
    exchange = next((f.exchange for f in related if f.exchange), None)
    step = run.step_at(first.wall) or run.first_failed_index
    if exchange is None:
        kind = next((s.kind for s in run.steps if s.index == step), "")
        exchange = "CREATE_CHILD_SA" if kind == "rekey" else "IKE_AUTH"
    initiator = _initiator_of(run, refuser, other, first.wall) if exchange != "CREATE_CHILD_SA" else None
    if initiator is None:
        asking = [f.node for f in told if "peer answered" in f.text or "notify" in f.text]
        initiator = asking[0] if asking else other
    responder = refuser if initiator == other else other
    failure = Failure(run, family, reason, told, related, refuser, other, initiator, responder, exchange, step,
                      first.wall)
    if family == "proposal":
        return _proposal(failure)
    if family == "ts":
        return _ts(failure)
    if family == "auth":
        return _auth(failure)
    return _other(failure)


# ------------------------------------------------------------------ proposals


def _initiator_of(run: Run, a: str | None, b: str | None, wall: float) -> str | None:
    """Which of `a` and `b` started the IKE SA that failed: the last IKE_SA_INIT request sent before `wall`."""
    starts = [(r.get("wall", 0.0), r.get("node")) for r in run.records
              if r.get("kind") == "message" and r.get("exchange") == "IKE_SA_INIT" and r.get("dir") == "out"
              and not r.get("response") and r.get("node") in (a, b) and r.get("wall", 0.0) <= wall + 0.01]
    starts += [(e.wall, node) for node, e, _m in run.charon_lines(r"initiating IKE_SA") if node in (a, b)
               and e.wall <= wall + 0.01]
    return max(starts)[1] if starts else None


def _parse(protocol: str, texts: list[str]):
    parse = {"IKE": parse_ike_proposals, "ESP": parse_esp_proposals, "AH": parse_ah_proposals}[protocol]
    return parse(texts or ["default"])


def compare_proposals(offered: list[str], accepted: list[str], protocol: str, skip_dh: bool = False
                      ) -> tuple[str | None, list[tuple[str, list[str], list[str]]], str | None]:
    """(a proposal both accept or None, [(part, initiator's keywords, responder's)] of the parts with nothing
    in common, an error reading them) - as lab.ike.proposals negotiates (strongSwan's rules)."""
    try:
        mine, theirs = _parse(protocol, offered), _parse(protocol, accepted)
    except ProposalError as err:
        return None, [], str(err)
    chosen = select_proposal(theirs, mine, skip_dh=skip_dh)
    if chosen is not None:
        return format_proposal(chosen), [], None
    parts: dict[int, tuple[dict, dict]] = {}
    for index, proposals in enumerate((mine, theirs)):
        for proposal in proposals:
            for t in proposal.transforms:
                parts.setdefault(int(t.transform_type), ({}, {}))[index][format_transform(t)] = \
                    (int(t.transform_id), t.key_length or 0)
    differ = []
    for ttype, (a, b) in sorted(parts.items()):
        if skip_dh and (ttype == TransformType.DH or 6 <= ttype <= 12):
            continue
        if 6 <= ttype <= 12 and bool(a) != bool(b):
            # RFC 9370 §2.2.1: an additional key exchange one side requires (no NONE) and the other lacks
            if 0 not in {tid for tid, _ in (a or b).values()}:
                differ.append((TYPE_WORDS[ttype], list(a) or ["(none offered)"], list(b) or ["(none offered)"]))
            continue
        if not a or not b:
            continue
        if not set(a.values()) & set(b.values()):
            differ.append((TYPE_WORDS.get(ttype, f"transform type {ttype}"), list(a), list(b)))
    return None, differ, None


def _proposal(f: Failure) -> Diagnosis:
    run = f.run
    if f.reason is not None and f.reason.kind == "no-config":
        return _no_config(f)
    init, resp = f.initiator, f.responder
    is_child = f.exchange in ("IKE_AUTH", "CREATE_CHILD_SA") or any(
        "ESP:" in m.group(1) or "AH:" in m.group(1) for *_x, m in run.charon_lines(r"received proposals: (.*)"))
    exchange = f.exchange if is_child else "IKE_SA_INIT"
    received = [m.group(1) for _n, e, m in run.charon_lines(r"received proposals: (.*)", resp)
                if abs(e.wall - f.wall) < 2]
    configured = [m.group(1) for _n, e, m in run.charon_lines(r"configured proposals: (.*)", resp)
                  if abs(e.wall - f.wall) < 2]
    evidence = f.evidence() + [f"{resp}'s log: received proposals: {x}" for x in received[:1]] + \
        [f"{resp}'s log: configured proposals: {x}" for x in configured[:1]]
    if is_child:
        i_child, r_child = run.child(init, f.child_name), run.child(resp, f.child_name)
        what = i_child.protocol if i_child else "ESP"
        key = i_child.proposals_key if i_child else "esp_proposals"
        offered, accepted = (i_child.proposals if i_child else []), (r_child.proposals if r_child else [])
        where_i = run.where(init, i_child.where(key)) if i_child else run.where(init)
        where_r = run.where(resp, r_child.where(key)) if r_child else run.where(resp)
        known = i_child is not None and r_child is not None
        subject = f"the CHILD_SA {i_child.name}" if i_child else "the CHILD_SA"
    else:
        i_conn, r_conn = run.conn(init), run.conn(resp)
        what, key = "IKE", "proposals"
        offered, accepted = (i_conn.proposals if i_conn else []), (r_conn.proposals if r_conn else [])
        where_i = run.where(init, i_conn.where(key)) if i_conn else run.where(init)
        where_r = run.where(resp, r_conn.where(key)) if r_conn else run.where(resp)
        known = i_conn is not None and r_conn is not None
        subject = "the IKE SA"
    if f.reason is not None and f.reason.kind == "ah-nat":
        paragraph = (f"{f.lead()} {init} asked for AH ({key} in {where_i}) with a NAT between the two (and "
                     f"strongSwan here always acts as if there were one): AH authenticates the outer IP addresses, "
                     f"which a NAT box rewrites, and UDP encapsulation (RFC 3948) exists for ESP only. Fix: use ESP "
                     f"across a NAT: esp_proposals instead of ah_proposals in {where_i} and {where_r}.")
        return Diagnosis("ah-across-nat", "AH cannot cross a NAT (NO_PROPOSAL_CHOSEN)", paragraph, f.step, f.wall,
                         evidence)
    skip_dh = exchange == "IKE_AUTH"  # RFC 7296 §1.2: the CHILD_SA of IKE_AUTH has no KE
    common, differ, error = compare_proposals(offered, accepted, what, skip_dh) if known else (None, [], None)
    i_words = f"{what} {proposal_text(offered, what)} ({key} in {where_i})"
    r_words = f"{proposal_text(accepted, what)} ({key} in {where_r})"
    if not known or error:
        why = (f"the configurations could not be compared ({error})" if error else
               "the configurations as run are not both in the run folder, so they cannot be compared")
        logged = (f" {resp}'s log names both sides: received {received[0]}, configured {configured[0]}."
                  if received and configured else "")
        paragraph = (f"{f.lead()} {subject.capitalize()} could not be made: {why}.{logged} What would tell: "
                     f"{key} in hosts/{init}/swanctl.conf and hosts/{resp}/swanctl.conf side by side - every part of "
                     f"one proposal (encryption, integrity, PRF, DH group) must be on both sides.")
        return Diagnosis("proposal-mismatch" if received else "proposal-refused",
                         f"{what} proposal refused (NO_PROPOSAL_CHOSEN)", paragraph, f.step, f.wall, evidence)
    if common is not None:
        paragraph = (f"{f.lead()} Yet the configurations as run share a proposal: {init} offers {i_words} and "
                     f"{resp} accepts {r_words}; both take {common}. So the algorithms are not what {resp} refused. "
                     f"What would tell: the lines of {resp}'s log just before the refusal. A responder also answers "
                     f"NO_PROPOSAL_CHOSEN when it has no connection for the initiator's address (strongSwan: 'no IKE "
                     f"config found'), or has not loaded its configuration yet (the start step loads it).")
        return Diagnosis("proposal-refused", f"{what} proposal refused although both sides share one", paragraph,
                         f.step, f.wall, evidence)
    only_dh = bool(differ) and all(part == TYPE_WORDS[TransformType.DH] for part, _a, _b in differ)
    if only_dh:
        _part, a, b = differ[0]
        detail = (f"they differ only in the Diffie-Hellman group: {init} has {', '.join(a)} and {resp} "
                  f"{', '.join(b)}, and the DH group is as much a part of a proposal as the cipher")
    elif differ:
        detail = "they have " + "; ".join(f"no {part} in common ({init}: {', '.join(a)}; {resp}: {', '.join(b)})"
                                          for part, a, b in differ)
    else:
        detail = "each part appears on both sides, but never all parts in one proposal of each"
    pfs = ""
    if is_child and exchange == "CREATE_CHILD_SA" and only_dh:
        pfs = (f" The first CHILD_SA came up inside IKE_AUTH, which carries no key exchange of its own (RFC 7296 §1.2), "
               f"so its DH group was left out; a CREATE_CHILD_SA with PFS sends a KE payload of the group in {key}, so "
               f"the difference shows only now.")
    layer = (f"The IKE SA is up; only {subject} failed" if is_child else
             "Not even the IKE SA could be made")
    example = accepted[0] if accepted else "default"
    fix = (f"the same Diffie-Hellman group on both sides, e.g. {key} = {example} in {where_i}" if only_dh
           else f"one proposal written the same on both sides, e.g. {key} = {example} in {where_i}")
    paragraph = (f"{f.lead()} {layer}: {init} offered {i_words}, and {resp} accepts only {r_words}: {detail}.{pfs} "
                 f"Fix: {fix} (or add {init}'s to {where_r}).")
    title = f"{what} proposal mismatch" + (" (DH group only)" if only_dh else "") + " (NO_PROPOSAL_CHOSEN)"
    return Diagnosis("proposal-mismatch", title, paragraph, f.step, f.wall, evidence)


def _request_addresses(f: Failure) -> tuple[str | None, str | None]:
    """(address the request came to, address it came from) at the refuser."""
    if f.reason is not None and f.reason.parts.get("remote"):
        return f.reason.parts.get("local"), f.reason.parts.get("remote")
    for r in reversed([r for r in f.run.records if r.get("node") == f.refuser and r.get("kind") == "message"
                       and r.get("dir") == "in" and r.get("wall", 0) <= f.wall + 0.01]):
        return str(r.get("dst", "")).rsplit(":", 1)[0] or None, str(r.get("src", "")).rsplit(":", 1)[0] or None
    return None, None


def _no_config(f: Failure) -> Diagnosis:
    run = f.run
    resp, init = f.refuser, f.other
    local, remote = _request_addresses(f)
    conf = run.conf(resp)
    evidence = f.evidence()
    head = (f"{f.lead()} {resp} has no connection for a peer at {remote or 'that address'}"
            f"{f' (reaching it at {local})' if local else ''}, so there were no proposals to choose from: strongSwan "
            f"and ipsec-lab answer NO_PROPOSAL_CHOSEN when no connection matches the addresses.")
    problems = []
    for conn in (conf.connections.values() if conf else []):
        wrong = []
        if remote and addr_allowed(remote, conn.remote_addrs) is False:
            wrong.append(("remote_addrs", conn.remote_addrs, remote))
        if local and addr_allowed(local, conn.local_addrs) is False:
            wrong.append(("local_addrs", conn.local_addrs, local))
        problems.append((conn, wrong))
    i_conn, r_conn = run.conn(init), run.conn(resp)
    common = compare_proposals(i_conn.proposals, r_conn.proposals, "IKE")[0] if i_conn and r_conn else None
    agree = f" The proposals themselves agree: both take {common}." if common else ""
    if conf is None or not problems:
        paragraph = (f"{head}{agree} What would tell: local_addrs and remote_addrs of each connection in "
                     f"hosts/{resp}/swanctl.conf, against {remote}.")
        return Diagnosis("no-ike-config", "no connection for the peer's address (NO_PROPOSAL_CHOSEN)", paragraph,
                         f.step, f.wall, evidence)
    if any(not wrong for _conn, wrong in problems):
        ok = next(conn for conn, wrong in problems if not wrong)
        paragraph = (f"{head} Yet its connection {ok.name} as run admits {remote} (remote_addrs = "
                     f"{', '.join(ok.remote_addrs) or '%any'}, {run.where(resp, ok.where('remote_addrs'))}).{agree} "
                     f"What would tell: whether {resp} had loaded that configuration when the request came (strongSwan "
                     f"logs 'loaded connection' or swanctl --load-all; the start step loads it).")
        return Diagnosis("proposal-refused", "NO_PROPOSAL_CHOSEN although a connection matches", paragraph, f.step,
                         f.wall, evidence)
    conn, wrong = problems[0]
    key, specs, address = wrong[0]
    spec_owner = next((run.owner(s) for s in specs if run.owner(s)), None)
    nat = ""
    if key == "remote_addrs" and spec_owner == init and run.node_kind(run.owner(address)) == "nat":
        nat = (f" {', '.join(specs)} is {init}'s own address inside the NAT box {run.owner(address)}; outside the box "
               f"{init}'s requests come from {address}, the box's public address.")
    elif spec_owner:
        nat = f" {', '.join(specs)} is {run.address_words(specs[0])}, and the request came from {run.address_words(address)}."
    paragraph = (f"{head} Its connection {conn.name} has {key} = {', '.join(specs)} "
                 f"({run.where(resp, conn.where(key))}), which does not include {address}.{nat}{agree} Fix: {key} = "
                 f"{address} (or %any) in {run.where(resp, conn.where(key))}.")
    return Diagnosis("no-ike-config", "no connection for the peer's address (NO_PROPOSAL_CHOSEN)", paragraph, f.step,
                     f.wall, evidence)


# ------------------------------------------------------------------ traffic selectors, mode, data plane


def _ts_pair(a: list[str], b: list[str], address_a: str | None = None, address_b: str | None = None
             ) -> tuple[bool | None, bool | None]:
    """(overlap, overlap of the addresses alone) of two selector lists as written."""
    sa, sb = selectors(a, address_a), selectors(b, address_b)
    plain = [t.split("[")[0] for t in a], [t.split("[")[0] for t in b]
    return ts_overlap(sa, sb), ts_overlap(selectors(plain[0] or a, address_a), selectors(plain[1] or b, address_b))


def _ts_text(ts: list[str]) -> str:
    return ", ".join(ts) if ts else "dynamic (its own address)"


def _ts(f: Failure) -> Diagnosis:
    run = f.run
    if any(r.kind == "install" for r in f.related if r.node == f.refuser) or \
            (f.reason is not None and f.reason.kind == "install"):
        return _install(f)
    init, resp = f.initiator, f.responder
    i_child, r_child = run.child(init, f.child_name), run.child(resp, f.child_name)
    evidence = f.evidence()
    if f.reason is not None and f.reason.kind == "transport" or \
            (i_child and r_child and i_child.mode == "transport" and r_child.mode != "transport"):
        return _transport(f, i_child, r_child)
    if not (i_child and r_child):
        paragraph = (f"{f.lead()} The configurations as run are not both in the run folder, so which selectors "
                     f"differ cannot be told. What would tell: local_ts and remote_ts of the child in "
                     f"hosts/{init}/swanctl.conf and hosts/{resp}/swanctl.conf: each side's local_ts must overlap the "
                     f"other's remote_ts.")
        return Diagnosis("ts-refused", "traffic selectors refused (TS_UNACCEPTABLE)", paragraph, f.step, f.wall,
                         evidence)
    where_i = {k: run.where(init, i_child.where(k)) for k in ("local_ts", "remote_ts")}
    where_r = {k: run.where(resp, r_child.where(k)) for k in ("local_ts", "remote_ts")}
    problems, fixes = [], []
    for mine, theirs, i_side, _r_side in (("remote_ts", "local_ts", "TSr", "their side"),
                                         ("local_ts", "remote_ts", "TSi", "its own side")):
        a, b = getattr(i_child, mine), getattr(r_child, theirs)
        overlap, addresses = _ts_pair(a, b)
        if overlap is not False:
            continue
        if addresses:
            why = (f"the addresses overlap, but the protocols or ports in [...] do not "
                   f"({_ts_text(a)} against {_ts_text(b)})")
        else:
            why = f"{_ts_text(a)} and {_ts_text(b)} have no address in common"
        problems.append(f"{init} asks for {_ts_text(a)} as {i_side} ({mine} in {where_i[mine]}) but {resp} allows "
                        f"{_ts_text(b)} there ({theirs} in {where_r[theirs]}): {why}")
        fixes.append(f"{mine} = {', '.join(b) or 'dynamic'} in {where_i[mine]} (or {theirs} in {where_r[theirs]} "
                     f"widened to cover it)")
    logged = next((r.text for r in f.related if r.parts.get("ts")), None)
    if not problems:
        unknown = any(o is None for o in (_ts_pair(i_child.remote_ts, r_child.local_ts)[0],
                                          _ts_pair(i_child.local_ts, r_child.remote_ts)[0]))
        seen = ("some of them are dynamic or unreadable, so their overlap cannot be checked from the files" if unknown
                else f"as configured they overlap ({init}: {_ts_text(i_child.local_ts)} === "
                     f"{_ts_text(i_child.remote_ts)}; {resp}: {_ts_text(r_child.remote_ts)} === "
                     f"{_ts_text(r_child.local_ts)}), so the subnets are not what {resp} refused")
        paragraph = (f"{f.lead()} The IKE SA is up; only the CHILD_SA's traffic selectors were refused, and {seen}. "
                     f"What would tell: the selectors {init} actually sent (its IKE_AUTH request in the ladder, "
                     f"figures/) and the lines before the refusal in {resp}'s log; strongSwan also answers "
                     f"TS_UNACCEPTABLE for a CHILD_SA it cannot install in its data plane ('unable to install ...').")
        return Diagnosis("ts-refused", "traffic selectors refused (TS_UNACCEPTABLE)", paragraph, f.step, f.wall,
                         evidence + ([f"{resp} logged: {logged}"] if logged else []))
    paragraph = (f"{f.lead()} The IKE SA is up; only the CHILD_SA {i_child.name} failed, because the traffic "
                 f"selectors do not overlap (RFC 7296 §2.9: the responder may narrow them, never widen): "
                 f"{'; and '.join(problems)}. Fix: {' and '.join(fixes)} - each side's local_ts must overlap the "
                 f"other side's remote_ts.")
    return Diagnosis("ts-mismatch", "traffic selector mismatch (TS_UNACCEPTABLE)", paragraph, f.step, f.wall,
                     evidence)


def _transport(f: Failure, i_child: ChildConf | None, r_child: ChildConf | None) -> Diagnosis:
    run = f.run
    init, resp = f.initiator, f.responder
    i_where = run.where(init, i_child.where("mode")) if i_child else run.where(init)
    r_mode = (f"mode = {r_child.mode}" if r_child and "mode" in r_child.lines else
              "no mode set, so tunnel, the default")
    r_where = run.where(resp, r_child.where("mode")) if r_child else run.where(resp)
    same_ts = ""
    if i_child and r_child and _ts_pair(i_child.remote_ts, r_child.local_ts)[0] and \
            _ts_pair(i_child.local_ts, r_child.remote_ts)[0]:
        same_ts = (f" The selectors themselves agree ({_ts_text(i_child.local_ts)} === {_ts_text(i_child.remote_ts)}), "
                   f"so the mode is what differs.")
    head = (f"{f.lead()} {init} asked for transport mode (mode = transport in {i_where}: N(USE_TRANSPORT_MODE) in its "
            f"request), while {resp}'s child {r_child.name if r_child else ''} is in tunnel mode ({r_mode}, "
            f"{r_where}).{same_ts}")
    if run.is_strongswan(resp) and f.reason is not None and f.reason.kind != "transport":
        why = (" Asked for transport mode with a NAT on the way (and strongSwan here, with kernel-libipsec, always "
               "acts as if it were behind one), strongSwan keeps only selectors of single addresses and puts the "
               "IKE addresses in them (RFC 7296 §2.23.1); subnets are dropped, nothing is left, and it answers "
               "TS_UNACCEPTABLE. Even between single addresses strongSwan here could not install the SA: "
               "kernel-libipsec, its data plane on this machine, does tunnel mode only.")
        fix = (f"remove mode = transport from {i_where}: between gateways that protect subnets, tunnel mode (the "
               f"default) is the mode to use, and transport mode works here only between two ipsec-lab peers "
               f"(see host2host-transport)")
    else:
        why = (f" A responder that declines transport mode answers without USE_TRANSPORT_MODE and the SA is in "
               f"tunnel mode; an initiator that insists on transport must then refuse it (RFC 7296 §1.3.1), as "
               f"{init} did.")
        fix = (f"the same mode on both sides: remove mode = transport from {i_where} (tunnel, the default, is what "
               f"gateways between subnets use), or set mode = transport in {resp}'s child ({r_where})")
    paragraph = f"{head}{why} Fix: {fix}."
    return Diagnosis("mode-mismatch", "transport mode on one side only", paragraph, f.step, f.wall, f.evidence())


def _install(f: Failure) -> Diagnosis:
    run = f.run
    node = f.refuser
    lines = [r for r in f.related if r.node == node and r.kind == "install"]
    first = lines[0] if lines else f.reason
    child = run.child(node, f.child_name)
    evidence = f.evidence() + [f"{node}: {quote(r.text)}" for r in lines[1:3]]
    head = (f"{run.who(node)} accepted the selectors in {run.step_words(f.step)} at {run.when(f.wall)} but could not "
            f"install the CHILD_SA in its data plane, and logged why: “{first.text if first else ''}”; it then "
            f"answered TS_UNACCEPTABLE.")
    texts = " ".join(r.text for r in lines)
    if "unsupported mode" in texts:
        paragraph = (f"{head} strongSwan here runs kernel-libipsec (a userspace data plane: this kernel has no "
                     f"XFRM), which installs tunnel-mode SAs only. Fix: tunnel mode (remove mode = transport from "
                     f"the child in hosts/{node}/swanctl.conf and in its peer's).")
        return Diagnosis("install-failed", "strongSwan cannot install a transport-mode SA here", paragraph, f.step,
                         f.wall, evidence)
    own = run.addresses(node)
    local_ts = selectors(child.local_ts) if child else None
    holds = [a for a in own if ts_covers(local_ts, a)]
    if run.is_strongswan(node) and child and local_ts is not None and not holds:
        where = run.where(node, child.where("local_ts"))
        lan = [a for a in own if run.interface_of(a).endswith("lan")]
        example = f" (e.g. {node}'s LAN, with {lan[0]})" if lan else ""
        paragraph = (f"{head} strongSwan here runs kernel-libipsec (a userspace data plane: this kernel has no XFRM): "
                     f"it routes the remote selectors into its TUN device with a source address of its own taken "
                     f"from its local_ts, and local_ts = {', '.join(child.local_ts)} ({where}) holds none of {node}'s "
                     f"addresses ({', '.join(own)}). Fix: a local_ts that contains one of {node}'s addresses"
                     f"{example}, in {where}, and the same as remote_ts in its peer's configuration.")
        return Diagnosis("install-failed", "strongSwan's local_ts holds no address of its own", paragraph, f.step,
                         f.wall, evidence)
    paragraph = (f"{head} Its configuration as run does not show why"
                 + (f" (local_ts {', '.join(child.local_ts)} holds its address {holds[0]})" if holds and child else "") +
                 f". What would tell: the lines around it in {node}'s log (logs/), and the routes in its node.")
    return Diagnosis("install-failed", "the CHILD_SA could not be installed", paragraph, f.step, f.wall, evidence)


# ------------------------------------------------------------------ authentication


def _matches(identity: str, pattern: str) -> bool | None:
    a, b = parse_id(identity), parse_id(pattern)
    if a is None or b is None:
        return None
    return int(a.matches(b)) > 0


def _type_note(a: str, b: str) -> str:
    ka, kb = id_kind(a), id_kind(b)
    if ka == kb:
        return ""
    return f" - IKE compares an identity's type as well as its value, and {ka} never matches {kb}"


def identity_problems(run: Run, init: str | None, resp: str | None, sent_idi: str | None = None,
                      sent_idr: str | None = None) -> list[tuple[str, str, str]]:
    """[(kind, problem, fix)] of the identities of `init` and `resp` that do not match as IKE compares them."""
    i, r = run.conn(init), run.conn(resp)
    if i is None or r is None:
        return []
    idi = sent_idi or i.local_id
    idr = sent_idr or (i.remote_id if i.remote_id and "%any" not in i.remote_id else "")
    wi = {k: run.where(init, i.where(k)) for k in ("local.id", "remote.id")}
    wr = {k: run.where(resp, r.where(k)) for k in ("local.id", "remote.id")}
    if i.local_id and r.local_id and i.remote_id and r.remote_id and _matches(i.local_id, r.local_id) and \
            _matches(i.remote_id, r.remote_id) and not _matches(i.local_id, i.remote_id):
        return [("swapped",
                 f"{init}'s local and remote ids are swapped: its local section says id = {i.local_id} "
                 f"({wi['local.id']}), which is {resp}'s own identity, and its remote section id = {i.remote_id} "
                 f"({wi['remote.id']}), which is {init}'s",
                 f"swap them back: id = {r.remote_id} in the local section ({wi['local.id']}) and id = {r.local_id} "
                 f"in the remote section ({wi['remote.id']})")]
    out = []
    if idr and r.local_id and _matches(r.local_id, idr) is False:
        out.append(("idr", f"{init} asks for {resp} to be '{idr}', {id_kind(idr)}, written in its remote section "
                           f"({wi['remote.id']}), but {resp} is '{r.local_id}', {id_kind(r.local_id)}, its local id "
                           f"({wr['local.id']}){_type_note(idr, r.local_id)}",
                    f"id = {r.local_id} in {init}'s remote section ({wi['remote.id']})"))
    if idi and r.remote_id and "%any" not in r.remote_id and _matches(idi, r.remote_id) is False:
        out.append(("idi", f"{resp} accepts only '{r.remote_id}', {id_kind(r.remote_id)}, written in its remote "
                           f"section ({wr['remote.id']}), but {init} calls itself '{idi}', {id_kind(idi)}, its local "
                           f"id ({wi['local.id']}){_type_note(idi, r.remote_id)}",
                    f"id = {r.remote_id} in {init}'s local section ({wi['local.id']}; also in its secrets' id-... "
                    f"lines if it uses a pre-shared key), or id = {idi} in {resp}'s remote section "
                    f"({wr['remote.id']})"))
    return out


def secret_difference(a: bytes, b: bytes, name_a: str, name_b: str) -> str:
    """How two secrets differ, without showing either."""
    if a == b:
        return "they are the same"
    first = next((n for n, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    if len(a) == len(b):
        count = sum(1 for x, y in zip(a, b) if x != y)
        return (f"both are {len(a)} characters long and differ in {count} of them (the first at character "
                f"{first + 1})")
    longer, shorter, name = (a, b, name_a) if len(a) > len(b) else (b, a, name_b)
    if longer.startswith(shorter):
        extra = longer[len(shorter):]
        what = "a space" if extra.strip() == b"" and len(extra) == 1 else (
            "white space" if extra.strip() == b"" else f"{len(extra)} character(s)")
        return f"{name}'s has {what} more at its end ({len(longer)} characters against {len(shorter)})"
    return f"they are {len(a)} and {len(b)} characters long and differ from character {first + 1} on"


def _psk_compare(run: Run, init: str | None, resp: str | None) -> tuple[bool | None, str, list[str]]:
    """(differ?, words, the two places) of the keys each side uses for its connection."""
    i_conf, r_conf, i, r = run.conf(init), run.conf(resp), run.conn(init), run.conn(resp)
    if not (i_conf and r_conf and i and r):
        return None, "", []
    a, b = i_conf.psk_for(i.local_id, i.remote_id), r_conf.psk_for(r.local_id, r.remote_id)
    if a is None or b is None:
        return None, "", []
    places = [run.where(init, a.line), run.where(resp, b.line)]
    return a.secret != b.secret, secret_difference(a.secret, b.secret, init or "", resp or ""), places


def _cert_names(run: Run, node: str | None) -> tuple[str, list[str], str]:
    """(where the node's certificate is, the identities it holds, them in words)."""
    conf = run.conf(node)
    if conf is None or not conf.certs:
        return "", [], ""
    cert = conf.certs[0]
    names = cert.names()
    words = " and ".join([f"{names[0]} (its subject)"] + [f"{n} (subjectAltName)" for n in names[1:]])
    return f"hosts/{node}/x509/{cert.file}", names, words


def _auth(f: Failure) -> Diagnosis:
    run = f.run
    init, resp = f.initiator, f.responder
    kind = f.reason.kind if f.reason is not None else "auth"
    evidence = f.evidence()
    lookup = [m for _n, e, m in run.charon_lines(r"looking for peer configs matching (\S+)\[([^\]]*)\]\.\.\."
                                                   r"(\S+)\[([^\]]*)\]", f.refuser) if e.wall <= f.wall + 0.01]
    sent_idr, sent_idi = (lookup[-1].group(2), lookup[-1].group(4)) if lookup and f.refuser == resp else (None, None)
    if f.reason is not None and f.reason.kind == "peer-config" and f.reason.parts.get("id"):
        sent_idi = f.reason.parts["id"]
    if f.reason is not None and f.reason.kind == "identity":
        sent_idr = f.reason.parts.get("id")
    ids = identity_problems(run, init, resp, sent_idi, sent_idr)
    differ, diff_words, places = _psk_compare(run, init, resp)
    title = "authentication failed (AUTHENTICATION_FAILED)"

    if kind in ("psk", "psk-missing") or (kind == "auth" and differ and not ids):
        if kind == "psk-missing":
            conf = run.conf(f.refuser)
            local, remote = (f.reason.parts.get("local", ""), f.reason.parts.get("remote", "")) if f.reason else ("", "")
            has = conf.psk_for(local, remote) if conf else None
            listed = "; ".join(f"ids {', '.join(p.ids) or '(none: any)'} ({run.where(f.refuser, p.section)})"
                               for p in (conf.psks if conf else [])) or "none"
            if has is not None:
                paragraph = (f"{f.lead()} Yet its swanctl.conf as run has a secret for them "
                             f"({run.where(f.refuser, has.line)}). What would tell: whether {f.refuser} loaded its "
                             f"secrets (swanctl --load-all, the start step).")
                return Diagnosis("auth-refused", title, paragraph, f.step, f.wall, evidence)
            paragraph = (f"{f.lead()} {f.refuser} has no pre-shared key for the identities {local} and {remote}: a "
                         f"secret is used only when one of its id-... lines names one of the two, and its secrets are "
                         f"for {listed}. Fix: id-a = {remote} and id-b = {local} in that secrets section (or ids that "
                         f"match the local and remote id of {f.refuser}'s connection).")
            return Diagnosis("psk-missing", "no pre-shared key for these identities (AUTHENTICATION_FAILED)",
                             paragraph, f.step, f.wall, evidence)
        meaning = (f" {f.refuser} found a pre-shared key for the two identities and computed the AUTH value "
                   f"{f.other} should have sent with it (RFC 7296 §2.15); {f.other}'s does not match, so the "
                   f"pre-shared keys on the two sides are not the same.")
        if differ is False:
            paragraph = (f"{f.lead()}{meaning} Yet the secrets each side's swanctl.conf as run would use are the "
                         f"same ({' and '.join(places)}), so the keys in the files are not what differs. What would "
                         f"tell: the identities each side used to pick its secret (the log names them), and whether "
                         f"a message was altered on the way (the ladder in figures/).")
            return Diagnosis("auth-refused", title, paragraph, f.step, f.wall, evidence)
        compare = (f" The two secrets as run ({places[0]} and {places[1]}) are indeed different: {diff_words}."
                   if differ else " (The configurations are not both in the run folder, so the secrets cannot be "
                                  "compared.)")
        lead = f.lead() if f.reason is not None else (
            f"{f.lead()} The likely reason, from the two configurations:")
        paragraph = (f"{lead}{meaning}{compare} Fix: the same secret = \"...\" for these identities on both sides"
                     f"{' (' + ' and '.join(places) + ')' if places else ''}.")
        return Diagnosis("psk-mismatch", "wrong pre-shared key (AUTHENTICATION_FAILED)", paragraph, f.step, f.wall,
                         evidence)

    if kind in ("peer-config", "identity") or (kind == "auth" and ids):
        if not ids:
            i, r = run.conn(init), run.conn(resp)
            auths = ""
            if i and r and i.local_auth and r.remote_auth and i.local_auth != r.remote_auth:
                auths = (f" The methods differ, though: {init} authenticates with auth = {i.local_auth} "
                         f"({run.where(init, i.where('local.auth'))}), {resp} expects auth = {r.remote_auth} "
                         f"({run.where(resp, r.where('remote.auth'))}).")
            paragraph = (f"{f.lead()} Yet the identities as configured agree with each other"
                         + (f" ({resp} was asked to be {sent_idr}, {init} called itself {sent_idi})" if sent_idi else "")
                         + f".{auths} What would tell: the lines before the refusal in {f.refuser}'s log, and "
                           f"local/remote sections of both configurations side by side.")
            return Diagnosis("auth-refused", title, paragraph, f.step, f.wall, evidence)
        _k, problem, fix = ids[0]
        looked = ""
        if lookup and f.refuser == resp:
            looked = (f" ({resp} looked for a connection in which it is '{sent_idr}' and its peer '{sent_idi}', as "
                      f"{init}'s IDr and IDi said, and found none.)")
        paragraph = (f"{f.lead()} The identities do not match: {problem}.{looked} Fix: {fix}.")
        return Diagnosis("identity-mismatch", "wrong identity (AUTHENTICATION_FAILED)", paragraph, f.step, f.wall,
                         evidence)

    if kind in ("cert-expired", "cert-revoked", "cert-chain"):
        return _certificate(f, kind, evidence, title)

    if kind == "eap-cert-id" and f.reason is not None:
        identity, subject = f.reason.parts.get("id", ""), f.reason.parts.get("subject", "")
        named = re.search(r"CN=([^,]+)", subject)
        server = named.group(1) if named else subject
        conn = run.conn(f.refuser)
        where_auth = run.where(f.refuser, conn.where("local.auth")) if conn else f"hosts/{f.refuser}/swanctl.conf"
        paragraph = (f"{f.lead()} That certificate is not the IKE peer's: it came inside the TLS tunnel of EAP-TLS or "
                     f"EAP-TTLS, from the EAP server, and names {server}. {f.refuser} expected the EAP server to be "
                     f"'{identity}', its IKE peer, as it does without aaa_id in its local section. A gateway that "
                     f"relays EAP to a RADIUS server (auth = eap-radius) does not end that tunnel: the RADIUS server "
                     f"does. {f.refuser} stopped at the end of the TLS handshake, before EAP-TTLS would have sent "
                     f"the password inside it. Fix: aaa_id = {server} in {f.refuser}'s local section "
                     f"({where_auth}), if {server} is the server meant to check the users.")
        return Diagnosis("eap-server-certificate", "the EAP server's certificate names another server "
                         "(AUTHENTICATION_FAILED)", paragraph, f.step, f.wall, evidence)

    if kind in ("cert-id", "cert-trust", "own-key"):
        identity = f.reason.parts.get("id", "") if f.reason else ""
        holder = f.refuser if kind == "own-key" else f.other
        checker = f.other if kind == "own-key" else f.refuser
        path, names, cert_words = _cert_names(run, holder)
        h_conn, c_conn = run.conn(holder), run.conn(checker)
        where_id = run.where(holder, h_conn.where("local.id")) if h_conn else f"hosts/{holder}/swanctl.conf"
        where_expect = run.where(checker, c_conn.where("remote.id")) if c_conn else f"hosts/{checker}/swanctl.conf"
        if not names:
            paragraph = (f"{f.lead()} {holder}'s certificate is not in the run folder, so whether it holds "
                         f"'{identity}' cannot be checked. What would tell: the subjectAltName of "
                         f"hosts/{holder}/x509/*.pem (openssl x509 -noout -ext subjectAltName -in FILE) against the "
                         f"id in its local section ({where_id}).")
            return Diagnosis("auth-refused", title, paragraph, f.step, f.wall, evidence)
        held = any(_matches(identity, n) or _matches(n, identity) for n in names)
        if not held:
            what = ("so it has nothing to sign as that identity with" if kind == "own-key" else
                    "and a certificate proves only the identities written in it")
            paragraph = (f"{f.lead()} The certificate of {holder}, {path}, holds {cert_words}, not '{identity}', the "
                         f"identity {holder} uses (id in its local section, {where_id}) and {checker} expects (id in "
                         f"its remote section, {where_expect}), {what}. Fix: use an identity the "
                         f"certificate holds - id = {names[-1]} in {where_id} and in {where_expect} - or give "
                         f"{holder} a certificate with subjectAltName {identity}.")
            return Diagnosis("certificate-identity", "certificate for another identity (AUTHENTICATION_FAILED)",
                             paragraph, f.step, f.wall, evidence)
        if kind == "cert-trust":
            paragraph = (f"{f.lead()} {holder}'s certificate {path} does hold '{identity}', so what {f.refuser} lacks "
                         f"is trust in it: the CA that signed it must be in hosts/{f.refuser}/x509ca/ (and the "
                         f"certificate within its validity). Fix: put that CA certificate into "
                         f"hosts/{f.refuser}/x509ca/.")
            return Diagnosis("certificate-untrusted", "certificate not trusted (AUTHENTICATION_FAILED)", paragraph,
                             f.step, f.wall, evidence)
        paragraph = (f"{f.lead()} Yet {holder}'s certificate {path} as run holds '{identity}'. What would tell: which "
                     f"certificate {holder} sent (local.certs in {where_id}'s section) and the lines before the "
                     f"refusal in {f.refuser}'s log.")
        return Diagnosis("auth-refused", title, paragraph, f.step, f.wall, evidence)

    # a reason we have no rule for, or a refusal without any
    seen = []
    if ids:
        seen.append(f"the identities do not match: {ids[0][1]}")
    if differ:
        seen.append(f"the pre-shared keys differ ({diff_words})")
    said = f" {f.refuser} says: {f.reason.text}." if f.reason is not None and f.reason.text not in f.lead() else ""
    paragraph = (f"{f.lead()}{said} " + (f"From the configurations: {'; '.join(seen)}." if seen else
                                         "The configurations as run show no difference in identities or keys.")
                 + f" What would tell: {f.refuser}'s log around {run.when(f.wall)} (logs/), and the local and remote "
                   f"sections of both configurations: the auth method (psk, pubkey, eap), the ids, the certificates "
                   f"in x509/ and the CA in x509ca/.")
    return Diagnosis("auth-failed", title, paragraph, f.step, f.wall, evidence)


def _date(text: str) -> datetime.datetime | None:
    """A date as our trace (2025-12-01) or charon (Dec 01 00:00:00 2025) writes it, in UTC."""
    for form in ("%Y-%m-%d", "%b %d %H:%M:%S %Y", "%Y-%m-%d %H:%M UTC"):
        try:
            return datetime.datetime.strptime(text.strip(), form).replace(tzinfo=datetime.UTC)
        except ValueError:
            continue
    return None


def _holder_cert(run: Run, holder: str | None, subject: str = "") -> tuple[str, CertConf | None]:
    """(where, the certificate) of the one `holder` shows: named by its subject if given, else local.certs."""
    conf, conn = run.conf(holder), run.conn(holder)
    if conf is None:
        return "", None
    cert = conf.cert(conn.local_certs[0]) if conn is not None and conn.local_certs else None
    if cert is None or subject and dn_key(cert.subject) != dn_key(subject):
        cert = next((c for c in conf.certs if subject and dn_key(c.subject) == dn_key(subject)), cert)
    cert = cert or conf.cert()
    return (f"hosts/{holder}/x509/{cert.file}" if cert else ""), cert


def _certificate(f: Failure, kind: str, evidence: list[str], title: str) -> Diagnosis:
    """An expired, revoked or unchained certificate, in the words a help desk uses."""
    run = f.run
    parts = f.reason.parts if f.reason is not None else {}
    holder, checker = f.other, f.refuser
    gateway = holder == f.responder
    whose = f"the VPN gateway {holder}'s" if gateway else f"{holder}'s"
    h_conn = run.conn(holder)
    where_certs = run.where(holder, h_conn.where("local.certs")) if h_conn else f"hosts/{holder}/swanctl.conf"
    path, cert = _holder_cert(run, holder, parts.get("subject", ""))
    windows = (" A Windows client shows this as error 13801 (IKE authentication credentials are unacceptable)."
               if gateway else "")
    if kind == "cert-expired":
        start, end = _date(parts.get("start", "")), _date(parts.get("end", ""))
        when = datetime.datetime.fromtimestamp(f.wall, datetime.UTC)
        which = "an issuing CA's certificate" if parts.get("which") == "issuer" else f"{whose} certificate"
        if end is not None and when > end:
            state, cause = f"has expired: it was valid until {end:%d %B %Y}", "certificate-expired"
            words = f"the {'VPN ' if gateway else ''}certificate has expired"
        elif start is not None and when < start:
            state, cause = f"is not valid yet: it is valid from {start:%d %B %Y}", "certificate-not-yet-valid"
            words = "the certificate is not valid yet"
        else:
            state, cause = (f"is outside its validity ({parts.get('start')} to {parts.get('end')})",
                            "certificate-expired")
            words = "the certificate is outside its validity"
        held = f" ({path})" if path else ""
        paragraph = (f"{f.lead()} In help-desk words: {words}. {which[0].upper() + which[1:]}{held} {state}, and "
                     f"{checker} checked it on {when:%d %B %Y}; its signature and name would do, the date alone is "
                     f"refused (RFC 5280 §6.1.3), so every peer that checks it meets the same refusal.{windows} "
                     f"Fix: renew it: a new certificate from the same CA with new dates (the key may stay: "
                     f"pki --issue --in its key --type priv ... --lifetime 730) in hosts/{holder}/x509/, named by "
                     f"local.certs ({where_certs}). If the dates look right, the clock of {checker} is wrong.")
        return Diagnosis(cause, f"{words} (AUTHENTICATION_FAILED)", paragraph, f.step, f.wall, evidence)
    if kind == "cert-revoked":
        serial = f" (serial {parts['serial']})" if parts.get("serial") else ""
        reason = parts.get("reason", "")
        held = f", {path}," if path else ""
        paragraph = (f"{f.lead()} In help-desk words: {whose} certificate has been revoked (blocked by the company "
                     f"CA). The CA's certificate revocation list (CRL) in hosts/{checker}/x509crl/ lists "
                     f"{holder}'s certificate{held}{serial} as revoked since {parts.get('date', 'a date it names')}"
                     f"{', reason ' + reason if reason else ''} (RFC 5280 §5.3.1), so {checker} refuses it whatever "
                     f"else is right. That is the CRL doing its job (a lost or stolen device, a user who left), not "
                     f"a fault of the VPN. Fix, only if {holder} should have access again: a new key and a new "
                     f"certificate from the CA for it in hosts/{holder}/x509/ and private/ (local.certs, "
                     f"{where_certs}); a revoked certificate stays revoked.")
        return Diagnosis("certificate-revoked", "certificate revoked (AUTHENTICATION_FAILED)", paragraph, f.step,
                         f.wall, evidence)
    # cert-chain: no certificate of the issuer came along and none is trusted
    issuer = parts.get("issuer", "")
    if not issuer:
        near = [m.group(1) for _n, e, m in run.charon_lines(r'issuer is "([^"]*)"', checker)
                if abs(e.wall - f.wall) < 2]
        issuer = near[-1] if near else (cert.issuer if cert else "")
    c_conf, h_conf = run.conf(checker), run.conf(holder)
    roots = [c for c in (c_conf.cas if c_conf else []) if c.self_signed]
    shared = [c for c in roots if h_conf and any(dn_key(c.subject) == dn_key(h.subject) for h in h_conf.cas)]
    has_it = [c for c in (h_conf.cas if h_conf else []) if issuer and dn_key(c.subject) == dn_key(issuer)]
    if shared and issuer and not any(dn_key(issuer) == dn_key(c.subject) for c in shared):
        root = shared[0]
        where_ca = (f"{holder} has it (hosts/{holder}/x509ca/{has_it[0].file}) and still did not send it: check "
                    f"send_cert in {run.where(holder, h_conn.line) if h_conn else 'its connection'}" if has_it else
                    f"{holder} does not have it: hosts/{holder}/x509ca/ holds only "
                    f"{', '.join(c.file for c in h_conf.cas) if h_conf else 'nothing'}")
        paragraph = (f"{f.lead()} In help-desk words: {whose} certificate chain is incomplete - the intermediate "
                     f"certificate is missing. {holder}'s certificate{(' ' + path) if path else ''} was issued by "
                     f"'{issuer}', not by the root both sides trust ('{root.subject}', "
                     f"hosts/{checker}/x509ca/{root.file}): by an intermediate CA between them. {checker} trusts only "
                     f"the root, so it needs the "
                     f"intermediate's certificate from {holder} in the same IKE_AUTH message (a CERT payload after "
                     f"{holder}'s own, RFC 7296 §3.6) to connect the two; {where_ca}.{windows} Fix: put the "
                     f"intermediate CA's certificate into hosts/{holder}/x509ca/ (strongSwan and ipsec-lab then send "
                     f"it after their own) and reload; do not make every client trust the intermediate instead.")
        return Diagnosis("missing-intermediate", "certificate chain incomplete: intermediate CA missing "
                                                 "(AUTHENTICATION_FAILED)", paragraph, f.step, f.wall, evidence)
    paragraph = (f"{f.lead()} In help-desk words: {whose} certificate is not trusted: it was issued by "
                 f"'{issuer or 'a CA'}', and {checker} has neither that CA in hosts/{checker}/x509ca/ nor an "
                 f"intermediate certificate from {holder} that leads to one it has.{windows} Fix: put the CA that "
                 f"issued it (the root of its chain) into hosts/{checker}/x509ca/, and any intermediate into "
                 f"hosts/{holder}/x509ca/ so that {holder} sends it.")
    return Diagnosis("certificate-untrusted", "certificate not trusted (AUTHENTICATION_FAILED)", paragraph, f.step,
                     f.wall, evidence)


def _other(f: Failure) -> Diagnosis:
    paragraph = (f"{f.lead()} diagnose has no rule for this reason. What would tell: the lines around it in "
                 f"{f.refuser}'s log (logs/) and the exchange in the ladder (figures/).")
    return Diagnosis("negotiation-failed", f"{f.exchange} failed", paragraph, f.step, f.wall, f.evidence())


__all__ = ["compare_proposals", "identity_problems", "negotiation", "secret_difference"]
