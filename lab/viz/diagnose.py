"""What went wrong in a run: `diagnose(DIR)` reads a run folder (result.json, trace.jsonl,
charon's logs, the gateways' swanctl.conf as run, the captures with the run's keys) and names
the first point where it went wrong and the likely misconfiguration, in one paragraph a
trainee can act on. When a side logged its own reason for refusing the other, that reason
leads the paragraph (lab.viz.refusals); every cause is checked against the evidence that could
contradict it before it is named, and when the evidence cannot decide the paragraph says what
it saw and what would tell.

Causes it knows, looked for in this order (the first detector that finds its evidence speaks):

    missing-name         a step names a child or connection the node's swanctl.conf lacks
    mfa-code-wrong, mfa-code-reused, radius-password-wrong, radius-rejected  an auth = eap-radius gateway
                         refused a login because RADIUS answered Access-Reject (its Reply-Message says why)
    radius-timeout       the gateway's RADIUS server did not answer: the login hung, then failed
    windows-13868, windows-13801  a client with profile = windows refused, in the Windows error's words:
                         no proposal in common (Windows' default MODP-1024), or a gateway certificate
                         Windows does not take (no serverAuth EKU, the name not in a dNSName)
    proposal-mismatch    NO_PROPOSAL_CHOSEN and the proposals share nothing (IKE_SA_INIT, or ESP/AH in
                         IKE_AUTH/CREATE_CHILD_SA; "DH group only" when that is all that differs)
    no-ike-config        NO_PROPOSAL_CHOSEN because no connection admits the peer's address
    ah-across-nat        AH asked for across a NAT
    ts-mismatch          TS_UNACCEPTABLE: the selectors share no address, protocol or port
    mode-mismatch        transport mode on one side only
    install-failed       strongSwan could not install the CHILD_SA (kernel-libipsec: no transport mode,
                         a local_ts without an address of its own)
    psk-mismatch         the pre-shared keys differ (how, without showing them)
    psk-missing          no pre-shared key for the two identities
    identity-mismatch    identities that do not match (swapped, another value, another type)
    certificate-identity a certificate for another identity; certificate-untrusted: no trusted CA
    eap-server-certificate  inside EAP-(T)TLS the EAP server's certificate names another server than the
                         client expects (a RADIUS server behind eap-radius: aaa_id)
    certificate-expired  a certificate outside its dates ("the VPN certificate has expired"; the gateway's: 13801)
    certificate-revoked  a certificate the CA's CRL lists ("revoked, blocked by the company CA")
    missing-intermediate the holder sent its certificate without the intermediate CA below the shared root
    *-refused, auth-failed  a refusal the configurations do not explain: what was seen, what would tell
    remote-addrs         IKE_SA_INIT sent to an address no gateway has
    ike-fragments-lost   IKE_AUTH larger than the path MTU, its IP fragments dropped, no answer
    dpd-flapping         the peer declared dead again and again, the tunnel back each time: DPD too aggressive
                         for a lossy link
    no-answer            requests retransmitted and never answered (UDP 500 or 4500 blocked, peer down)
    overlapping-subnets  the other office's address is inside the sender's own LAN: both number their LANs alike
    outside-selectors    the tunnel is up, the traffic is outside what it carries (narrowed, or not meant for it)
    nat-mapping-expired  the NAT box forgot the UDP mapping between keepalives (nat-mapping-lost: gone
                         otherwise, e.g. a NAT reboot or rebind step)
    esp-blocked          the tunnel is up but ESP does not cross (IP protocol 50 or ESP in UDP dropped)
    pmtud-black-hole     small packets pass, full-size ones vanish and no ICMP "fragmentation needed" returns
    encap-differs, strongswan-encap, mobike-differs  a check about NAT, ports or MOBIKE failed because of
                         one side's setting (or strongSwan here, which always encapsulates)
    unknown              the first failed step, with what the logs say about it
"""
from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.runfolder import StepResult, TraceRecord

from .configs import ConnConf, GatewayConf
from .evidence import TRAFFIC_STEPS, DiagnoseError, Diagnosis, InstalledChild, Run, quote, selectors, ts_covers
from .negotiation import negotiation

KEEPALIVE_DEFAULT = 20.0  # RFC 3948 §2.3 leaves it open; charon's keep_alive and our daemon use 20 s
_quote = quote


def _conf_where(run: Run, node: str, line: str = "") -> str:
    return run.where(node, line)


# ------------------------------------------------------------------ a step that names what is not there


_MISSING = [(r"no connection has a child named '?([^'\s]+)'?", "child"),
            (r"CHILD_SA config '([^']+)' not found", "child"),
            (r"has no child config '?([^'\s]+)'?", "child"),
            (r"(?:IKE_SA|peer) config '([^']+)' not found", "ike"),
            (r"no (?:such )?(?:connection|IKE config) (?:named )?'([^']+)'", "ike")]


def _missing_name(run: Run) -> Diagnosis | None:
    failed = run.first_failed
    if failed is None or failed.kind not in ("initiate", "rekey", "terminate"):
        return None
    detail = str(failed.detail)
    for pattern, what in _MISSING:  # noqa: B007 - `what` is read after the loop
        match = re.search(pattern, detail)
        if match:
            break
    else:
        return None
    name = match.group(1)
    args = run.step_args(failed.index)
    node = args.get("node")
    conf = run.conf(node)
    if conf is None:
        return None
    have = conf.children() if what == "child" else list(conf.connections)
    if name in have:
        return None  # the configuration as run has it: not this
    key = "children { }" if what == "child" else "connections { }"
    places = ", ".join(f"{n} ({run.where(node, _line(conf, what, n))})" for n in have) or "none"
    sections = "children" if what == "child" else "connections"
    paragraph = (f"The first thing that went wrong was {run.step_words(failed.index)}: "
                 f"{quote(detail, 200)}. The step names the {what} '{name}' ({what}: {name}, {run.step_line(failed.index)}), "
                 f"but hosts/{node}/swanctl.conf has no {what} of that name: the {sections} "
                 f"it has are {places}. The {what}: of a step is the name of a section inside {key} of that node's "
                 f"swanctl.conf. Fix: {what}: {have[0] if have else '...'} in {run.step_line(failed.index)}, or "
                 f"rename the section in hosts/{node}/swanctl.conf.")
    return Diagnosis("missing-name", f"the step names a {what} the configuration lacks", paragraph,
                     failed.index, failed.started, [f"{node}: {quote(detail)}"])


# ------------------------------------------------------------------ nothing comes back


def _connections(run: Run, node: str) -> list[ConnConf]:
    conf = run.conf(node)
    return list(conf.connections.values()) if conf is not None else []


def _line(conf: GatewayConf, what: str, name: str) -> str:
    """file:line of the child or connection `name` (one the configuration has)."""
    found = conf.child(name) if what == "child" else None
    return found[1].line if found is not None else conf.connections[name].line


def _unanswered(run: Run) -> Diagnosis | None:
    """Requests sent again and again without a response: where they stop."""
    retransmits = [r for r in run.records if r.get("kind") == "retransmit"]
    unreachable = run.events("PeerUnreachable")
    charon_retx = run.charon_lines(r"retransmit (\d+) of request with message ID (\d+)")
    if not retransmits and not unreachable and not charon_retx:
        return None
    answered: set[tuple[str | None, str | None]] = set()
    for r in run.records:
        if r.get("kind") == "message" and r.get("dir") == "in" and r.get("response"):
            answered.add((r.get("node"), r.get("exchange")))
    lost: TraceRecord | None = None
    for r in retransmits:
        if (r.get("node"), r.get("exchange")) not in answered:
            lost = r
            break
    if lost is None and unreachable:
        lost = unreachable[0]
    node = lost.get("node") if lost else None
    exchange = lost.get("exchange") if lost else None
    wall = lost.get("wall") if lost else None
    if lost is None:
        name, entry, match = charon_retx[0]
        node, wall = name, entry.wall
        exchange = "IKE_SA_INIT" if match.group(2) == "0" else "IKE_AUTH" if match.group(2) == "1" else None
        if (node, exchange) in answered:
            return None
    tries = 1 + sum(1 for r in retransmits if r.get("node") == node and r.get("exchange") == exchange)
    peer = run.peer_of(node) if node else None
    step = run.step_at(wall or 0) or run.first_failed_index
    sent = [r for r in run.records if r.get("kind") == "message" and r.get("node") == node and r.get("dir") == "out"
            and r.get("exchange") == exchange and not r.get("response")]
    size = max((int(r.get("length", 0)) for r in sent), default=0)
    fragments = max((int(r.get("fragments", 1)) for r in sent), default=1)
    where = _where_requests_stop(run, exchange)
    evidence = [f"{node} sent {exchange} {tries} time(s) without an answer"] + where["evidence"]
    if exchange == "IKE_AUTH" and where["ip_fragmented"]:
        mtus = run.link_mtus()
        mtu = f"the path MTU ({mtus[0][0]} on {mtus[0][1]})" if mtus else "the path MTU (1500)"
        conf = run.configs.get(node or "")
        conn = conf.connection() if conf else None
        frag = conn.fragmentation if conn else "yes"
        head = (f"The first thing that went wrong was IKE_AUTH in {run.step_words(step)}: IKE_SA_INIT was "
                f"answered, but {node} sent its IKE_AUTH request {tries} time(s) and never got an answer.")
        if fragments > 1:
            piece = where["ip_size"] or (size // fragments)
            paragraph = (f"{head} {node} did use IKEv2 fragmentation (RFC 7383): the {size}-byte message went as "
                         f"{fragments} IKE fragments, but each is up to {piece} bytes (the fragment size), more than "
                         f"{mtu}, so IP split them again; {where['fragment_words']} - a middlebox drops IP "
                         f"fragments, so {peer or 'the peer'} never gets every IKE fragment. Fix: an IKE fragment "
                         f"size below the path MTU (our daemon: --fragment-size in the scenario's gateway options, "
                         f"e.g. 900; strongSwan: charon.fragment_size), or let IP fragments through.")
        else:
            offered = any("N(IKEV2_FRAGMENTATION_SUPPORTED)" in r.get("payloads", []) for r in run.records
                          if r.get("node") == node and r.get("kind") == "message" and r.get("dir") == "in"
                          and r.get("exchange") == "IKE_SA_INIT" and r.get("response"))
            frag_where = run.where(node, conn.where("fragmentation")) if conn else f"hosts/{node}/swanctl.conf"
            why = (f"{node} has fragmentation = {frag} in {frag_where}" if frag == "no" else
                   f"{peer} did not offer IKE fragmentation (no IKEV2_FRAGMENTATION_SUPPORTED in its IKE_SA_INIT "
                   f"answer)" if peer and not offered and any(r.get("node") == node for r in run.records) else
                   f"{node} sent the message whole although fragmentation is on: its fragment size is above the "
                   f"path MTU" if offered else "IKE fragmentation was not used")
            droppers = run.nodes_with("drop_fragments")
            who_drops = f" (drop_fragments on {', '.join(droppers)})" if droppers else ""
            paragraph = (f"{head} The request is {size or where['ip_size']} bytes (certificates and signatures), "
                         f"more than {mtu}, so IP split it into fragments; {where['fragment_words']} - a middlebox "
                         f"drops IP fragments{who_drops}, and without every fragment {peer or 'the peer'} cannot reassemble "
                         f"the message. IKEv2 fragmentation (RFC 7383) would have cut it into IKE fragments that "
                         f"each fit, but {why}. Fix: fragmentation = yes on both sides (and, if needed, a smaller "
                         f"fragment size), or let IP fragments through the box.")
        return Diagnosis("ike-fragments-lost", "IKE_AUTH fragments lost (no answer)", paragraph, step, wall,
                         evidence)
    if exchange == "IKE_SA_INIT":
        wrong = _wrong_remote_addrs(run, node, sent, step, wall, tries, where, evidence)
        if wrong is not None:
            return wrong
    path_words = where["words"] or "no capture shows where they stopped"
    got, answered_by_peer, last_words = _peer_received(run, peer, exchange, wall)
    ports = sorted({str(r.get("dst", "")).rsplit(":", 1)[-1] for r in sent if r.get("dst")})
    if got and answered_by_peer:
        path_words = (f"{peer} did receive them and answered each ({got} request(s) in its log), so the answers are "
                      f"lost on the way back; {where['words'].lower() if where['words'] else 'no capture shows where'}")
        fix = f"let {peer}'s answers (UDP from its port {'/'.join(ports) or '500'}) back through to {node}"
    elif got:
        path_words = (f"{peer} did receive them ({got} in its log) and did not answer"
                      + (f"; the last thing its log says about them: “{last_words}”" if last_words else ""))
        fix = f"read {peer}'s log (logs/) around {run.when(wall)} for why it stays silent"
    elif droppers := _what_drops_udp(run, ports or (["500"] if exchange == "IKE_SA_INIT" else ["4500"])):
        port = "/".join(ports) or ("500" if exchange == "IKE_SA_INIT" else "4500")
        fix = (f"the scenario drops them: {'; '.join(droppers)}. Remove that, so that UDP {port} passes every box "
               f"between the peers" + (" (IKE_SA_INIT got through: UDP 500 works, and IKE moved to 4500 when NAT-D "
                                       "found a NAT, RFC 7296 §2.23)" if port == "4500" else ""))
    elif exchange == "IKE_SA_INIT":
        fix = ("check that the peer's daemon runs and listens (its log), that remote_addrs points at it, and "
               "that UDP 500 passes every firewall and NAT box on the way")
    elif ports and ports != ["4500"]:
        fix = (f"IKE_SA_INIT got through on UDP {'/'.join(ports)}, so the port is open; find what drops the later, "
               f"larger message (its size is in the evidence)")
    else:
        fix = ("IKE_SA_INIT got through, so UDP 500 works: let UDP 4500 through (IKE moves there when NAT-D finds "
               "a NAT, RFC 7296 §2.23, and strongSwan here always moves there), or find what drops the bigger message")
    if exchange == "IKE_SA_INIT":
        cause = "no answer to IKE_SA_INIT on UDP 500"
        first = "the very first message, IKE_SA_INIT on UDP 500,"
    else:
        cause = f"no answer to {exchange}"
        first = f"{exchange}, after IKE_SA_INIT was answered,"
    paragraph = (f"The first thing that went wrong was {first} in {run.step_words(step)} at {run.when(wall)}: "
                 f"{node} sent it {tries} time(s) (retransmissions, RFC 7296 §2.1) and {peer or 'the peer'} never "
                 f"answered. {path_words}. Fix: {fix}.")
    return Diagnosis("no-answer", cause, paragraph, step, wall, evidence)


def _peer_received(run: Run, peer: str | None, exchange: str | None, wall: float | None) -> tuple[int, bool, str]:
    """(requests of `exchange` the peer logged receiving, whether it answered, its last line about them)."""
    if not peer or not exchange:
        return 0, False, ""
    got = [r for r in run.records if r.get("node") == peer and r.get("kind") == "message" and r.get("dir") == "in"
           and r.get("exchange") == exchange and not r.get("response")]
    answered = [r for r in run.records if r.get("node") == peer and r.get("kind") == "message"
                and r.get("dir") == "out" and r.get("exchange") == exchange and r.get("response")]
    charon_got = run.charon_lines(rf"parsed {exchange} request", peer)
    charon_answer = run.charon_lines(rf"generating {exchange} response", peer)
    count = len(got) + len(charon_got)
    last = ""
    if charon_got:
        after = [e for n, e, _m in run.charon_lines(r".", peer) if e.wall >= charon_got[-1][1].wall][:6]
        last = next((quote(e.text) for e in after[1:] if not re.search(r"\d+: |=> \d+ bytes", e.text)), "")
    return count, bool(answered or charon_answer), last


def _wrong_remote_addrs(run: Run, node: str | None, sent: list[TraceRecord], step: int | None, wall: float | None,
                        tries: int, where: dict, evidence: list[str]) -> Diagnosis | None:
    """IKE_SA_INIT sent to an address no gateway (nor a NAT box forwarding IKE) has."""
    target = next((str(r.get("dst", "")).rsplit(":", 1)[0] for r in sent if r.get("dst")), "")
    if not target or not node:
        conn = run.conn(node)
        target = conn.remote_addrs[0] if conn and conn.remote_addrs else ""
    if not target:
        return None
    owner = run.owner(target)
    if owner in run.software:
        return None
    if owner is not None and run.node_kind(owner) == "nat" and run.knobs(owner).get("dnat"):
        return None
    conn = run.conn(node, run.step_args(step).get("child") if step else None)
    peer = next((g for g in run.gateways if g != node), None)
    if owner is None:
        what = "an address no node of this lab has"
    elif run.node_kind(owner) == "nat":
        what = f"the NAT box {owner}, which forwards no IKE to anyone (no dnat knob)"
    else:
        what = f"{run.address_words(target)}, a {run.node_kind(owner) or 'node'} that runs no IKE daemon"
    right = ""
    if peer:
        child = run.child(peer)
        own_ts = selectors(child.local_ts) if child else None
        outer = [a for a in run.addresses(peer) if not ts_covers(own_ts, a)]
        right = outer[0] if outer else ""
    conf_where = run.where(node, conn.where("remote_addrs")) if conn else f"hosts/{node}/swanctl.conf"
    setting = f"remote_addrs = {', '.join(conn.remote_addrs)} ({conf_where})" if conn and conn.remote_addrs else \
        "its configuration"
    paragraph = (f"The first thing that went wrong was the very first message, IKE_SA_INIT, in {run.step_words(step)} "
                 f"at {run.when(wall)}: {node} sent it {tries} time(s) to {target} and nobody answered. {target} is "
                 f"{what}; it comes from {setting}."
                 + (f" {peer}, the gateway {node} should reach, is at {right}." if peer and right else "")
                 + (f" {where['words']}." if where["words"] else "")
                 + (f" Fix: remote_addrs = {right} in {conf_where}." if right else
                    f" Fix: remote_addrs in {conf_where} must be the address of the peer gateway."))
    return Diagnosis("remote-addrs", f"IKE_SA_INIT sent to {target}, where no gateway is", paragraph, step, wall,
                     evidence)


def _what_drops_udp(run: Run, ports: list[str]) -> list[str]:
    """What in the scenario drops IKE's UDP on these ports: loss knobs that apply to IKE, and `run` steps
    with an iptables rule that drops or rejects UDP (to one of the ports, or to any)."""
    found = []
    for entry in run.topology.nodes:
        knobs = run.knobs(entry.name)
        if knobs.get("impair", "all") in ("all", "ike"):
            if float(knobs.get("loss") or 0) >= 1.0:
                found.append(f"loss: {knobs['loss']} (impair: {knobs.get('impair', 'all')}) on {entry.name}, "
                             f"which drops every packet it applies to")
    for index, node, command in _drop_rules(run):
        words = command.split()
        if "udp" not in words:
            continue
        dport = words[words.index("--dport") + 1] if "--dport" in words[:-1] else None
        if dport is None or dport in ports:
            found.append(f"`{command}` on {node} (step {index})")
    return found


def _drop_rules(run: Run) -> list[tuple[int, str, str]]:
    """(step, node, command) of the scenario's `run` steps that add an iptables rule dropping or rejecting packets."""
    rules = []
    for index, step in enumerate(run.scenario_steps(), start=1):
        command = (step.get("run") or {}).get("cmd", "") if isinstance(step.get("run"), dict) else ""
        if "iptables" in command and {"DROP", "REJECT"} & set(command.split()):
            rules.append((index, str(step["run"].get("node")), command))
    return rules


def _where_requests_stop(run: Run, exchange: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"words": "", "evidence": [], "ip_fragmented": False, "ip_size": 0, "fragment_words": ""}
    seen = []
    for capture in run.captures:
        requests = [p for p in capture.packets if p.kind == "ike" and p.ike and p.ike.exchange_name == exchange
                    and not p.ike.response]
        responses = [p for p in capture.packets if p.kind == "ike" and p.ike and p.ike.exchange_name == exchange
                     and p.ike.response]
        fragments = [p for p in capture.packets if p.ip_fragment and p.protocol == 17]
        incomplete = [p for p in fragments if p.ip_fragment == (0, 0)]
        seen.append((capture, requests, responses, fragments, incomplete))
        out["evidence"].append(f"{run.tap_words(capture.name)}: {len(requests)} {exchange} request(s) whole, "
                               f"{len(responses)} response(s), {len(fragments)} IP fragment(s) of UDP"
                               + (f" ({len(incomplete)} never completed)" if incomplete else ""))
    if not seen:
        return out
    with_requests = [s for s in seen if s[1]]
    without = [s for s in seen if not s[1]]
    if any(s[3] for s in seen):
        out["ip_fragmented"] = True
        sizes = [len(p.data) for s in seen for p in s[1] if p.ip_fragment]
        out["ip_size"] = max(sizes, default=0)
        whole = [s for s in seen if s[3] and not s[4]]
        broken = [s for s in seen if s[4]]
        if whole and broken:
            out["fragment_words"] = (f"on {run.tap_words(whole[0][0].name)} the IP fragments arrive and reassemble, "
                                     f"on {run.tap_words(broken[0][0].name)} {len(broken[0][4])} fragment(s) show "
                                     f"whose datagram is never whole")
        elif broken:
            out["fragment_words"] = (f"on {run.tap_words(broken[0][0].name)} {len(broken[0][4])} IP fragment(s) "
                                     f"show whose datagram is never whole")
        else:
            out["fragment_words"] = "the fragments reach the last tap, but no answer comes back"
    if with_requests and without:
        out["words"] = (f"The requests show on {', '.join(run.tap_words(s[0].name) for s in with_requests)} "
                        f"but never on {', '.join(run.tap_words(s[0].name) for s in without)}: they are dropped "
                        f"between those points")
    elif with_requests and not any(s[2] for s in seen):
        out["words"] = ("The requests show on every tap, so they reached the peer's side, and no response came back: "
                        "the peer did not answer them (not running, no listener on that port, or dropped at the peer)")
    return out


# ------------------------------------------------------------------ the tunnel is up, traffic is not


def _traffic_step_failed(run: Run) -> StepResult | None:
    failed = run.first_failed
    if failed and failed.kind in TRAFFIC_STEPS and failed.expect != "fail":
        return failed
    return None


def _child_up(run: Run) -> bool:
    return bool(run.events("ChildSaUp")) or bool(run.charon_lines(r"CHILD_SA \S+\{\d+\} established"))


def _traffic_ends(run: Run, step: StepResult) -> tuple[list[str], list[str], str, str]:
    """(source addresses, destination addresses, the sending node, `to` as written) of a traffic step."""
    args = run.step_args(step.index)
    src_node, to = str(args.get("from", "")), str(args.get("to", ""))
    sources = [str(args["source"])] if args.get("source") else run.addresses(src_node)
    try:
        ipaddress.ip_address(to)
        targets = [to]
    except ValueError:
        targets = run.addresses(to)
    return sources, targets, src_node, to


def _gateway_for(run: Run, node: str) -> str | None:
    """The gateway `node` sends through: itself, or the owner of its default route's next hop."""
    if node in run.software:
        return node
    entry = run.topology.node(node)
    for route in entry.routes if entry is not None else []:
        owner = run.owner(route.via)
        if owner in run.software:
            return owner
    return None


def _carried(child: InstalledChild, src: str, dst: str) -> bool | None:
    local, remote = selectors(child.local_ts), selectors(child.remote_ts)
    out_way = (ts_covers(local, src), ts_covers(remote, dst))
    back_way = (ts_covers(local, dst), ts_covers(remote, src))
    if None in out_way + back_way:
        return None
    return all(out_way) or all(back_way)


def _same_ts(a: list[str], b: list[str]) -> bool | None:
    sa, sb = selectors(a), selectors(b)
    if sa is None or sb is None:
        return None
    key = lambda ts: (ts.start_addr, ts.end_addr, ts.ip_protocol, ts.start_port, ts.end_port)  # noqa: E731
    return sorted(map(key, sa)) == sorted(map(key, sb))


def _outside_selectors(run: Run) -> Diagnosis | None:
    """The tunnel is up but the traffic of the failed step is not what it carries: the selectors were
    narrowed by the responder, or the traffic was never meant for them."""
    step = _traffic_step_failed(run)
    if step is None:
        return None
    children = [c for c in run.installed_children() if c.wall <= step.ended]
    sources, targets, src_node, to = _traffic_ends(run, step)
    if not children or not sources or not targets:
        return None
    verdicts = [_carried(c, s, d) for c in children for s in sources for d in targets]
    if any(v is None or v for v in verdicts):
        return None  # some SA carries it (or cannot be read): not this
    gw = _gateway_for(run, src_node) or children[0].node
    sa = ([c for c in children if c.node == gw] or children)[-1]
    src, dst = sources[0], targets[0]
    out_src = not any(ts_covers(selectors(sa.local_ts), s) for s in sources)
    window = (step.started - 0.5, step.ended + 0.5)
    clear = [(c.name, len([p for p in c.packets if p.clear is not None and p.ipsec is None and p.src in sources
                           and p.dst in targets and window[0] <= p.time <= window[1]])) for c in run.captures]
    clear = [(name, n) for name, n in clear if n]
    if clear:
        seen = (f"they left {gw} unprotected, in clear: {', '.join(f'{run.tap_words(n)} shows {k}' for n, k in clear)} "
                f"of them from {src} to {dst} without ESP")
    elif run.captures:
        seen = f"no tap shows them after {gw}: {gw} has no SA for them and does not send them into the tunnel"
    else:
        seen = f"{gw} has no SA for them"
    what = f"{run.step_words(step.index)} got no answer"
    carries = f"the CHILD_SA {sa.name} carries only {' '.join(sa.local_ts)} === {' '.join(sa.remote_ts)} ({gw}'s side first)"
    conf = run.child(gw, sa.name)
    peer = run.peer_of(gw)
    p_child = run.child(peer, sa.name) if peer else None
    evidence = [f"{gw}: CHILD_SA {sa.name} up with {' '.join(sa.local_ts)} === {' '.join(sa.remote_ts)}",
                f"{run.step_words(step.index)}: {src} -> {dst}"] + [f"{run.tap_words(n)}: {k} in clear" for n, k in clear]
    narrowed = []
    if conf is not None:
        for mine, theirs, got in (("local_ts", "remote_ts", sa.local_ts), ("remote_ts", "local_ts", sa.remote_ts)):
            if _same_ts(getattr(conf, mine), got) is False:
                narrowed.append((mine, theirs, got))
    if narrowed and conf is not None and p_child is not None:
        mine, theirs, got = narrowed[0]
        value = getattr(p_child, theirs)
        p_where = run.where(peer, p_child.where(theirs))
        g_where = run.where(gw, conf.where(mine))
        outside = src if out_src else dst
        paragraph = (f"The tunnel is up, but {what}: {src_node} sends from {src} to {dst}, and {carries}. {gw} asked for "
                     f"{' '.join(conf.local_ts) or 'dynamic'} === {' '.join(conf.remote_ts) or 'dynamic'} ({mine} in "
                     f"{g_where}); {peer} narrowed it to what its own configuration allows, {theirs} = "
                     f"{', '.join(value)} ({p_where}). A responder may narrow the selectors (RFC 7296 §2.9), and "
                     f"that is no error: the SA came up without a complaint. But {outside} is outside "
                     f"{' '.join(got)}, so {seen}. Fix: {theirs} = {', '.join(getattr(conf, mine))} in {p_where}, the "
                     f"same as {gw}'s {mine} ({g_where}).")
        return Diagnosis("outside-selectors", "traffic outside the narrowed selectors (TS narrowing)", paragraph,
                         step.index, step.started, evidence)
    key = "local_ts" if out_src else "remote_ts"
    outside = src if out_src else dst
    conf_where = run.where(gw, conf.where(key)) if conf else f"hosts/{gw}/swanctl.conf"
    owner = run.owner(outside)
    owner_words = (f"{outside} is {run.address_words(outside)}" if owner else
                   f"no node of this lab has the address {outside}")
    inside_hosts = [(n.name, a) for n in run.topology.nodes if n.kind == "host"
                    for a in run.addresses(n.name)
                    if ts_covers(selectors(sa.remote_ts if not out_src else sa.local_ts), a)]
    example = f" (e.g. {inside_hosts[0][0]}, {inside_hosts[0][1]})" if inside_hosts else ""
    paragraph = (f"The tunnel is up, but {what}: {src_node} sends from {src} to {dst}, and {carries}: {outside} is "
                 f"outside its {key} ({key} in {conf_where}). Only traffic the selectors cover goes through the tunnel, "
                 f"and {seen}; {owner_words}. Fix: use an address inside {key}{example} in "
                 f"{run.step_line(step.index)}, or widen the selectors on both sides ({key} in {conf_where} and "
                 f"the peer's {'remote_ts' if key == 'local_ts' else 'local_ts'}) if {outside} is meant to be reached "
                 f"through the tunnel.")
    return Diagnosis("outside-selectors", f"traffic to {outside}, outside the tunnel's selectors", paragraph,
                     step.index, step.started, evidence)


def _lossy(run: Run) -> list[str]:
    """The loss knobs a scenario sets anywhere (at start or in a set/nat step), in its own words."""
    found: list[str] = []
    sources = [(n, k) for n, k in ((run.scenario.get("knobs") or {}).items())] + \
        [(n, k) for n, k in ((run.scenario.get("nat") or {}).items())]
    sources += [(step[kind].get("node"), step[kind]) for step in run.scenario_steps() for kind in ("set", "nat")
                if isinstance(step.get(kind), dict)]
    for node, knobs in sources:
        for knob in ("loss", "loss_every"):
            value = (knobs or {}).get(knob)
            if value and float(value) > 0 and f"{knob}: {value} on {node}" not in found:
                found.append(f"{knob}: {value} on {node}")
    return found


def _flapping(run: Run) -> Diagnosis | None:
    """A gateway declares its peer dead again and again and each time builds the tunnel straight back:
    the peer was alive; dead peer detection gives up too fast for a lossy link."""
    for node in run.gateways:
        dead = run.events("PeerUnreachable", node=node)
        ups = run.events("IkeSaUp", node=node)
        back = [d for d in dead if d.get("exchange") == "INFORMATIONAL"
                and any(0 <= float(u.get("wall", 0)) - float(d.get("wall", 0)) <= 5 for u in ups)]
        if len(back) < 2:
            continue
        peer = run.peer_of(node) or "its peer"
        conf = run.conf(node)
        delay, where = "", ""
        if conf is not None and conf.path is not None and conf.path.is_file():
            for number, line in enumerate(conf.path.read_text(errors="replace").splitlines(), start=1):
                match = re.match(r"\s*dpd_delay\s*=\s*(\S+)", line)
                if match:
                    delay, where = match.group(1), run.where(node, f"{conf.path.name}:{number}")
                    break
        tries = back[0].get("tries")
        timeout, retries = (run.gateway_option(node, "--retransmit-timeout"),
                            run.gateway_option(node, "--retransmit-tries"))
        span = float(back[-1]["wall"]) - float(back[0]["wall"])
        loss = _lossy(run)
        step = run.first_failed_index or run.step_at(float(back[0]["wall"]))
        settings = ", ".join(x for x in (
            f"dpd_delay = {delay} ({where})" if delay else "",
            f"a check given up after {tries} tr{'y' if tries == 1 else 'ies'}" if tries else "",
            f"--retransmit-tries {retries}" if retries is not None else "",
            f"--retransmit-timeout {timeout}" if timeout is not None else "") if x)
        paragraph = (f"In help-desk words: the VPN keeps dropping and reconnecting. {node} declared {peer} dead "
                     f"{len(back)} times in {span:.1f} s (its dead peer detection check, an empty INFORMATIONAL "
                     f"request, went unanswered: RFC 7296 §2.4), and each time the tunnel was back within seconds: "
                     f"{peer} was alive all along. What was lost were packets"
                     + (f" on a lossy path ({', '.join(loss)})" if loss else "")
                     + f", and {node} gives up on {peer} too fast for such a link"
                     + (f": {settings}" if settings else "") + ". Fix: ask less often and retry before giving "
                     "up: dpd_delay = 30s and the default retransmissions (charon: 5 retransmissions from 4 s; "
                     "ipsec-lab: the default --retransmit-timeout and --retransmit-tries), so that a lost DPD "
                     "message is sent again instead of taking the tunnel down.")
        evidence = [f"{node}: PeerUnreachable after {d.get('tries')} tr{'y' if d.get('tries') == 1 else 'ies'} of "
                    f"{d.get('exchange')} at {run.when(float(d['wall']))}" for d in back[:3]]
        return Diagnosis("dpd-flapping", "the tunnel keeps dropping: dead peer detection too aggressive for a lossy "
                                         "link", paragraph, step, float(back[0]["wall"]), evidence)
    return None


def _overlapping(run: Run) -> Diagnosis | None:
    """Traffic to the other office fails because its address is inside the sender's own LAN: both
    offices number their LANs alike, and the tunnel's selectors join that range to itself."""
    failed = _traffic_step_failed(run)
    if failed is None:
        return None
    args = run.step_args(failed.index)
    src, to = str(args.get("from", "")), str(args.get("to", ""))
    try:
        dst = str(ipaddress.ip_address(to))
    except ValueError:
        found = run.addresses(to)
        dst = found[0] if found else ""
    owner = run.owner(dst) if dst else None
    if not src or owner is None or owner == src:
        return None
    interfaces = {n.name: n.interfaces for n in run.topology.nodes}
    own = [(ipaddress.ip_interface(c), i.link) for i in interfaces.get(src, []) for c in i.addresses]
    theirs = {i.link for i in interfaces.get(owner, []) if any(c.split("/")[0] == dst for c in i.addresses)}
    lan = next((iface for iface, link in own if ipaddress.ip_address(dst) in iface.network and link not in theirs),
               None)
    if lan is None:
        return None  # not in the sender's own subnets, or truly on the sender's link
    net = lan.network

    def covers(ts: list[str]) -> bool:
        for text in ts:
            try:
                if ipaddress.ip_network(text.split("[")[0], strict=False).overlaps(net):
                    return True
            except ValueError:
                continue
        return False

    tunnel = next(((gw, child) for gw in run.gateways for conn in _connections(run, gw)
                   for child in conn.children.values() if covers(child.local_ts) and covers(child.remote_ts)), None)
    gw, child = tunnel if tunnel else (None, None)
    sel = (f" The tunnel's selectors join that range to itself (local_ts = {', '.join(child.local_ts)} and remote_ts = "
           f"{', '.join(child.remote_ts)}, {run.where(gw, child.where('local_ts'))}), so the tunnel can come up "
           f"and still no packet enters it." if child else "")
    paragraph = (f"The first thing that went wrong was {run.step_words(failed.index)}: "
                 f"{quote(str(failed.detail), 160)}. In help-desk words: both offices use the same "
                 f"addresses ({net}). {src} is {lan.ip} on {net}, so it takes {dst} ({owner}, in the other office) for a "
                 f"neighbour on its own LAN, asks for it there (ARP) and never hands the packet to its gateway; no "
                 f"tunnel can carry it.{sel} Fix: renumber one office, or map each office one to one into a range "
                 f"unique to the tunnel with NETMAP on its gateway (e.g. 10.1.0.0/24 and 10.2.0.0/24: iptables -t nat "
                 f"... -j NETMAP in POSTROUTING and PREROUTING), with local_ts and remote_ts set to the mapped ranges; "
                 f"users then reach the other office at its mapped address.")
    return Diagnosis("overlapping-subnets", f"both offices use {net}", paragraph, failed.index,
                     failed.started, [f"{src}: {lan} on its LAN; {dst} is {owner}'s, on another link"])


def _nat_expired(run: Run) -> Diagnosis | None:
    step = _traffic_step_failed(run)
    if step is None or not run.nat_boxes():
        return None
    for box in run.nat_boxes():
        public = box.nat.public if box.nat is not None else None
        outside = next((c for c in run.captures if c.name.endswith("outside") and
                        any(t.node == box.name and t.name == c.name for t in run.topology.taps)), None)
        inside = next((c for c in run.captures if c.name.endswith("inside") and
                       any(t.node == box.name and t.name == c.name for t in run.topology.taps)), None)
        if outside is None or not public:
            continue
        in_step = [p for p in outside.packets if step.started - 0.5 <= p.time <= step.ended + 0.5]
        to_public = [p for p in in_step if p.dst == public and p.kind in ("esp", "ike", "keepalive") and p.dport]
        refused = [p for p in in_step if p.src == public and p.clear is not None and p.clear.icmp_type == 3]
        if not to_public or (not refused and inside is None):
            continue
        port = to_public[0].dport
        crossed = []
        if inside is not None:
            crossed = [p for p in inside.packets if step.started - 0.5 <= p.time <= step.ended + 0.5
                       and p.kind == to_public[0].kind and p.dport == port and p.src == to_public[0].src]
        if crossed and not refused:
            continue
        flow = [p for p in outside.packets if p.time < to_public[0].time and
                ((p.src == public and p.sport == port) or (p.dst == public and p.dport == port))]
        last = flow[-1] if flow else None
        idle = to_public[0].time - last.time if last else None
        knobs = run.nat_knobs(box.name)
        timeout = knobs.get("udp_timeout")
        reset = next((s for s in run.scenario_steps()[:step.index - 1] if isinstance(s.get("nat"), dict)
                      and s["nat"].get("node") == box.name and (s["nat"].get("reboot") or s["nat"].get("rebind"))),
                     None)
        if reset is not None:
            how = "rebooted (forgot every mapping)" if reset["nat"].get("reboot") else "rebound (new ports)"
            index = run.scenario_steps().index(reset) + 1
            paragraph = (f"The tunnel was up, but in {run.step_words(step.index)} the packets to {public}:{port} "
                         f"found no mapping on the NAT box {box.name}: {run.step_words(index)} {how} it, so what "
                         f"{run.owner(to_public[0].src) or to_public[0].src} sends goes to a mapping that is gone. "
                         f"An authenticated IKE message (DPD, MOBIKE) from the side behind the NAT makes the peer learn "
                         f"the new one (RFC 7296 §2.23). Fix: dpd_delay on the side behind the NAT, or MOBIKE.")
            return Diagnosis("nat-mapping-lost", "NAT mapping gone after a NAT reboot/rebind", paragraph,
                             step.index, to_public[0].time, [f"{run.step_words(index)} {how}"])
        behind = _behind(run, box.name)
        interval = run.gateway_option(behind, "--keepalive-interval") if behind else None
        interval_s = float(interval) if interval else KEEPALIVE_DEFAULT
        keepalives = [p for p in (inside or outside).packets if p.kind == "keepalive"
                      and last is not None and last.time <= p.time <= to_public[0].time]
        sender = run.owner(to_public[0].src) or to_public[0].src
        later = [p for p in outside.packets if p.time > to_public[0].time and p.src == public and p.sport
                 and p.sport != port and p.kind in ("esp", "ike", "keepalive")]
        evidence = [f"{run.tap_words(outside.name)}: {len(to_public)} packet(s) to {public}:{port} in "
                    f"{run.step_words(step.index)}, {len(refused)} ICMP unreachable from {public}",
                    f"{run.tap_words(inside.name) if inside else 'inside'}: {len(crossed)} of them crossed the box"]
        if idle is not None and last is not None:
            evidence.append(f"the flow was idle {idle:.1f} s before (last packet at {run.when(last.time)})")
        paragraph = (f"The tunnel was up, but in {run.step_words(step.index)} {sender}'s packets to "
                     f"{public}:{port} - the NAT box's public side of {behind or 'the gateway'}'s mapping - "
                     f"{'were answered by the box with ICMP port unreachable' if refused else 'never came out on the inside'}: "
                     f"the NAT box no longer had the UDP mapping, so it did not know where to send them.")
        if idle is not None and timeout and idle + 1.0 < float(timeout):
            paragraph += (f" Yet the flow had been idle only {idle:.1f} s, less than the box's udp_timeout "
                          f"({timeout} s on {box.name}), so an expired mapping does not explain it by itself. What "
                          f"would tell: conntrack -L on {box.name} during the step (ipsec-lab up), and the packets "
                          f"around {run.when(to_public[0].time)} on {run.tap_words(outside.name)}.")
            return Diagnosis("nat-mapping-lost", "NAT mapping gone (not by its timeout)", paragraph, step.index,
                             to_public[0].time, evidence)
        if idle is not None:
            paragraph += f" Nothing had used that mapping for {idle:.1f} s"
            paragraph += (f", longer than the box keeps an idle UDP mapping (udp_timeout: {timeout} s on "
                          f"{box.name})" if timeout else ", longer than the box keeps an idle UDP mapping")
            paragraph += (f"; {behind} sends a NAT-keepalive only every {interval_s:g} s (RFC 3948 §2.3), and "
                          f"{len(keepalives)} were sent in that gap.")
        if later:
            paragraph += (f" When {behind or 'the gateway'} sent again, the box made a new mapping with port "
                          f"{later[0].sport}, which {sender} does not know.")
        paragraph += (" Fix: a keepalive interval below the NAT's mapping timeout (our daemon: "
                      "--keepalive-interval in the scenario's gateway options; strongSwan: keep_alive in "
                      "strongswan.conf), or a longer udp_timeout on the NAT box; traffic or DPD from the side "
                      "behind the NAT also keeps the mapping alive.")
        return Diagnosis("nat-mapping-expired", "NAT mapping expired (keepalive interval vs mapping timeout)",
                         paragraph, step.index, to_public[0].time, evidence)
    return None


def _behind(run: Run, box: str) -> str | None:
    """The gateway on the inside of NAT box `box`."""
    nat = next((n.nat for n in run.nat_boxes() if n.name == box and n.nat is not None), None)
    inside = set(nat.inside if nat is not None else [])
    for link in run.topology.links:
        names = [(link.a, link.a_intf), (link.b, link.b_intf)]
        if any(n == box and i in inside for n, i in names):
            for n, _i in names:
                if n in run.software:
                    return n
    for gateway in run.gateways:
        sa = next((r for r in run.events("IkeSaUp", node=gateway) if r.get("local_behind_nat")), None)
        if sa is not None:
            return gateway
    return None


def _esp_blocked(run: Run) -> Diagnosis | None:
    step = _traffic_step_failed(run)
    if step is None or not _child_up(run):
        return None
    window = [(c, [p for p in c.packets if p.ipsec is not None and step.started - 0.5 <= p.time <= step.ended + 0.5])
              for c in run.captures]
    by_spi: dict[int, dict[str, int]] = {}
    for capture, packets in window:
        for p in packets:
            if p.ipsec is not None:
                seen = by_spi.setdefault(p.ipsec.spi, {})
                seen[capture.name] = seen.get(capture.name, 0) + 1
    for spi, counts in by_spi.items():
        missing = [c.name for c, _p in window if counts.get(c.name, 0) == 0 and c.packets]
        present = [name for name, n in counts.items() if n]
        if not missing or not present:
            continue
        sample, sa = next((p, p.ipsec) for c, ps in window for p in ps if p.ipsec is not None and p.ipsec.spi == spi)
        sender = run.owner(sample.src) or sample.src
        encap = sa.encap
        form = "ESP inside UDP 4500" if encap else (
            "ESP inside a TCP stream (RFC 9329)" if sa.tcp else "plain ESP (IP protocol 50)")
        inner = f" carrying {sample.inner.summary}" if sample.inner else ""
        replies = [s for s in by_spi if s != spi]
        back = ("no ESP came back at all" if not replies else
                f"ESP on SPI {replies[0]:08x} came back")
        droppers = [f"{n} has drop_esp: true" for n in run.nodes_with("drop_esp")]
        droppers += [f"`{cmd}` on {node} (step {index})" for index, node, cmd in _drop_rules(run)
                     if {"esp", "50"} & set(cmd.split())]
        if droppers and not encap:
            back += f" ({'; '.join(droppers)})"
        conn = run.conn(sender)
        place = f"the connection {conn.name} of {run.where(sender, conn.line)}" if conn else _conf_where(run, sender)
        fix = (f"let IP protocol 50 through, or force UDP encapsulation with encap = yes in {place} (ESP then "
               f"travels in UDP 4500, RFC 3948)" if not encap else
               "let UDP 4500 through the middlebox")
        why = ("ESP has no ports, and firewalls or NAT boxes that know only TCP and UDP drop it" if not encap
               else "the ESP packets share port 4500 with IKE but are dropped")
        paragraph = (f"IKE worked and the CHILD_SA is up, but traffic does not get through: in "
                     f"{run.step_words(step.index)} {sender} sent {counts[present[0]]} {form} packet(s) on SPI "
                     f"{spi:08x}{inner}; they show on {', '.join(run.tap_words(n) for n in present)} and never on "
                     f"{', '.join(run.tap_words(n) for n in missing)}, so something between drops them, and "
                     f"{back}. IKE uses UDP 500/4500 and passes; {why}. "
                     f"Fix: {fix}.")
        evidence = [f"SPI {spi:08x}: " + ", ".join(f"{name} {counts.get(name, 0)}" for name in
                                                   [c.name for c, _p in window])]
        return Diagnosis("esp-blocked", "ESP blocked on the path", paragraph, step.index, sample.time, evidence)
    return None


def _pmtud(run: Run) -> Diagnosis | None:
    failed = _traffic_step_failed(run)
    if failed is None:
        return None
    mtus = run.link_mtus()
    path_mtu = mtus[0][0] if mtus else 1500
    earlier_ping = next((s for s in run.steps if s.kind == "ping" and s.ok
                         and s.index < failed.index), None)
    window = {c.name: [p for p in c.packets if failed.started - 0.5 <= p.time <= failed.ended + 0.5]
              for c in run.captures}
    every = [p for ps in window.values() for p in ps]

    def carried(p):
        return p.inner if p.inner is not None else p.clear

    big = [p for p in every if p.src and (p.length > path_mtu or (carried(p) is not None and carried(p).length >
                                                                  path_mtu))]
    tcp = [p for p in every if carried(p) is not None and carried(p).protocol == 6 and carried(p).tcp_payload]
    biggest = max((carried(p).length for p in tcp), default=0)
    repeats = Counter((carried(p).src, carried(p).tcp_seq) for p in tcp if carried(p).length == biggest)
    resent = sum(n - 1 for n in repeats.values() if n > 1) // max(1, len([c for c in window if window[c]]))
    # where the big packets stop: a capture that has them and one that has none of them
    by_tap = {name: len([p for p in ps if p in big]) for name, ps in window.items()}
    have = [n for n, k in by_tap.items() if k]
    lack = [n for n, k in by_tap.items() if not k and window[n]]
    df = any(p.data[:1] and p.data[0] >> 4 == 4 and p.data[6] & 0x40 for p in big) or \
        any(carried(p) is not None and carried(p).df for p in big)
    icmp_frag = [p for c in run.captures for p in c.packets
                 if (p.clear and p.clear.icmp_type == 3 and p.clear.icmp_code == 4)
                 or (p.inner and p.inner.icmp_type == 3 and p.inner.icmp_code == 4)]
    if not mtus or not (resent or (big and lack)):
        return None
    if icmp_frag and not [n for n in run.nodes_with("block_icmp_frag")]:
        return None  # ICMP came back: not a black hole, whatever else it is
    if failed.kind == "ping" and not big:
        return None
    blockers = [f"block_icmp_frag on {n}" for n in run.nodes_with("block_icmp_frag")]
    for s in run.scenario_steps():
        command = (s.get("run") or {}).get("cmd", "") if isinstance(s.get("run"), dict) else ""
        if "fragmentation-needed" in command or ("icmp" in command and "DROP" in command):
            blockers.append(f"`{command}` on {s['run']['node']}")
    sample = (big or tcp)[0]
    who = run.owner(carried(sample).src if carried(sample) else sample.src) or \
        (carried(sample).src if carried(sample) else sample.src)
    inner_sizes = [carried(p).length for p in big if carried(p) is not None and p.ipsec is not None]
    size = max(inner_sizes, default=biggest)
    inside_esp = " inside ESP" if inner_sizes else ""
    ping_words = f" (the ping of step {earlier_ping.index} passed)" if earlier_ping else ""
    what = "the bulk transfer" if failed.kind in ("transfer", "iperf3") else "the large ping"
    paragraph = (f"The tunnel works for small packets{ping_words}, but {what} of {run.step_words(failed.index)} "
                 f"does not get through: {who} sends full-size packets of {size} bytes"
                 f"{' with Don’t Fragment set' if df else ''}{inside_esp}")
    if have and lack:
        paragraph += (f"; they show on {', '.join(run.tap_words(n) for n in have)} and never on "
                      f"{', '.join(run.tap_words(n) for n in lack)}")
    if resent:
        paragraph += f", and TCP sends the same full-size segments again ({resent} retransmissions)"
    paragraph += (f". A link on the way has a smaller MTU: {mtus[0][0]} on {mtus[0][1]}. A router that cannot "
                  f"forward a packet with DF set drops it and must answer ICMP 'fragmentation needed' so that the "
                  f"sender lowers its packet size (path MTU discovery, RFC 1191), but "
                  f"{len(icmp_frag)} such ICMP message(s) appear in the captures"
                  + (f" ({'; '.join(blockers)} drops them)" if blockers else "")
                  + ": a PMTUD black hole. Fix: clamp the TCP MSS on the gateway (the knob mss_clamp, or iptables "
                    "-t mangle -A FORWARD -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu), lower the "
                    "tunnel MTU below the path's (our daemon: --tunnel-mtu), or let ICMP fragmentation-needed "
                    "through.")
    evidence = [f"{len(big)} packet(s) over {path_mtu} bytes in the step: " +
                ", ".join(f"{n} on {k}" for k, n in by_tap.items()),
                f"{len(tcp)} TCP segments, largest {biggest} bytes, {resent} resent",
                f"{len(icmp_frag)} ICMP fragmentation-needed in the captures"] + [f"MTU {m} on {w}" for m, w in mtus]
    return Diagnosis("pmtud-black-hole", "PMTUD black hole (full-size packets vanish, no ICMP comes back)",
                     paragraph, failed.index, sample.time, evidence)


# ------------------------------------------------------------------ what a Windows client shows


_WINDOWS = re.compile(r"Windows error (13868|13801): ([^(]*?) \((.*)\)$")


def _windows(run: Run) -> Diagnosis | None:
    """A node with profile = windows refused in Windows' words (lab.ike.profiles): the number a user
    reads to the help desk leads, then what the lab saw and the fix."""
    for r in run.records:
        if r.get("kind") != "event" or r.get("event") not in ("NegotiationFailed", "AuthFailed"):
            continue
        found = _WINDOWS.search(str(r.get("reason", "")))
        if found is None:
            continue
        number, text, detail = found.groups()
        node = str(r.get("node"))
        step = run.step_at(r["wall"]) if r.get("wall") is not None else None
        conn = run.conn(node)
        profile = f"profile = {conn.profile} at {run.where(node, conn.where('profile'))}" \
            if conn is not None and conn.profile else "a Windows client profile"
        head = (f"The user on {node} sees Windows error {number}, “{text.strip()}”. {node} plays Windows' "
                f"built-in IKEv2 client ({profile}).")
        evidence = [f"{node}: {r.get('reason')}"]
        if number == "13868":
            why = [x for x in run.records if x.get("kind") == "note" and x.get("what") == "no_proposal_chosen"]
            said = f" The gateway {why[0]['node']} says why: {why[0]['reason']}." if why and why[0].get("reason") \
                else ""
            evidence += [f"{x['node']}: {x['reason']}" for x in why if x.get("reason")]
            paragraph = (f"{head} The gateway answered IKE_SA_INIT with NO_PROPOSAL_CHOSEN: nothing in Windows' "
                         f"offer is in its proposals.{said} Windows offers by default "
                         f"3des-aes128-aes192-aes256-sha1-sha256-sha384-modp1024, MODP-1024 its only key exchange, "
                         f"which a gateway hardened to RFC 8247 refuses. Fix on the laptops: the registry value "
                         f"NegotiateDH2048_AES256 = 2 (HKLM\\SYSTEM\\CurrentControlSet\\Services\\Rasman\\"
                         f"Parameters; profile = windows-dh2048 here) or Set-VpnConnectionIPsecConfiguration, which "
                         f"keeps the gateway strong; or on the gateway a narrow compatibility proposal such as "
                         f"aes256-sha256-modp1024 after the strong ones, which admits a 1024-bit key exchange "
                         f"(the windows-defaults scenario shows both).")
            return Diagnosis("windows-13868", "Windows error 13868: no proposal in common (policy match error)",
                             paragraph, step, r.get("wall"), evidence)
        if "serverAuth" in detail:
            fix = ("reissue the gateway certificate with the serverAuth extended key usage "
                   "(pki --issue ... --flag serverAuth)")
        elif "does not name the server" in detail or "is not in the peer's certificate" in detail:
            fix = ("reissue the gateway certificate with the name users type as a subjectAltName dNSName, an "
                   "address too (pki --issue ... --san dns:<name>; a bare address given to --san becomes an "
                   "iPAddress, which Windows ignores)")
        else:
            fix = "give the gateway an RSA or ECDSA P-256/P-384 certificate from a CA the laptops trust"
        paragraph = (f"{head} IKE itself went well up to the gateway's certificate: {detail}. Windows checks "
                     f"more than IKE does (strongSwan's \"Windows Certificate Requirements\"): the serverAuth "
                     f"extended key usage and the server name in a subjectAltName dNSName. Fix: {fix}; the "
                     f"windows-certificate scenario shows each. Turning the check off on the laptops "
                     f"(DisableIKENameEkuCheck) lets any certificate of the CA act as the gateway.")
        return Diagnosis("windows-13801", "Windows error 13801: the gateway certificate is unacceptable",
                         paragraph, step, r.get("wall"), evidence)
    return None


# ------------------------------------------------------------------ RADIUS: MFA refusals, a server that does not answer


_RADIUS_REJECT = re.compile(r"RADIUS server (\S+) answered Access-Reject(?: \((.*)\))?$")
_RADIUS_SILENT = re.compile(r"RADIUS server (\S+) \(([^)]+)\) did not answer")


def _radius_user(run: Run, index: int | None) -> tuple[str, str]:
    """(the client node of the failed step, its user's name) for the paragraph."""
    node = str(run.step_args(index).get("node", "")) if index else ""
    conn = run.conn(node) if node else None
    user = conn.local_id if conn is not None and conn.local_id else ""
    return node or "the client", user or "the user"


def _radius(run: Run) -> Diagnosis | None:
    """A gateway with auth = eap-radius refused a login because RADIUS said no (the reason in
    its Reply-Message: a wrong or reused one-time code, a wrong password) or did not answer."""
    failed = run.first_failed
    if failed is None:
        return None
    for r in run.records:
        if r.get("kind") != "event" or r.get("event") != "AuthFailed" or r.get("by_peer") or r.get("wall") is None:
            continue
        if run.step_at(r["wall"]) != failed.index:
            continue
        reason = str(r.get("reason", ""))
        gw = str(r.get("node"))
        node, user = _radius_user(run, failed.index)
        evidence = [f"{gw}: authentication of the peer failed: {reason}"]
        reject = _RADIUS_REJECT.search(reason)
        if reject is not None:
            server, said = reject.group(1), reject.group(2) or ""
            return _radius_reject(run, gw, node, user, server, said, failed.index, r["wall"], evidence)
        silent = _RADIUS_SILENT.search(reason)
        if silent is not None:
            return _radius_timeout(run, r, gw, node, user, silent.group(1), silent.group(2), failed.index, evidence)
    return None


def _radius_reject(run: Run, gw: str, node: str, user: str, server: str, said: str, step: int, wall: float,
                   evidence: list[str]) -> Diagnosis:
    head = (f"{user} on {node} could not log in: {gw} asks RADIUS server {server} (auth = eap-radius), and it "
            f"answered Access-Reject")
    client = f"hosts/{node}/swanctl.conf"
    tail = (f" {node} itself sees only an EAP Failure; the reason is in {gw}'s log, from the Reply-Message "
            f"FreeRADIUS put in its Access-Reject.")
    if "one-time code wrong" in said:
        paragraph = (f"{head}: the password was right, the one-time code was wrong (FreeRADIUS: “{said}”). "
                     f"An authenticator app computes its code from the secret it was enrolled with and the time of "
                     f"day (TOTP, RFC 6238): either {user}'s phone holds another secret than FreeRADIUS (an old QR "
                     f"code, a token issued again) or its clock is off by more than the 30 seconds a code lives. "
                     f"What to tell the user: set the phone's time to automatic and log in with a new code; if it "
                     f"still fails, enrol the app again with the QR code of the secret FreeRADIUS holds (here: the "
                     f"totp of {user}'s eap secret in {client} must be {user}'s TOTP-Secret in FreeRADIUS's users "
                     f"file).{tail}")
        return Diagnosis("mfa-code-wrong", "MFA: the one-time code was refused (wrong code or the phone's clock)",
                         paragraph, step, wall, evidence)
    if "already used" in said:
        paragraph = (f"{head}: the one-time code had been used before (FreeRADIUS: “{said}”). A code is good for "
                     f"one login (RFC 6238 §5.2): {user} logged in a moment ago, or tried again right after a "
                     f"failure, while the app still showed the same code. What to tell the user: wait until the app "
                     f"shows a new code (at most 30 seconds) and log in with that one. If {user} did not log in "
                     f"just before, someone else used the code (seen over the shoulder or phished): change the "
                     f"password.{tail}")
        return Diagnosis("mfa-code-reused", "MFA: the one-time code was already used (replay)", paragraph, step, wall,
                         evidence)
    if "password wrong" in said:
        paragraph = (f"{head}: the password is wrong (FreeRADIUS: “{said}”); the one-time code was not even "
                     f"checked. What to tell the user: check the password (caps lock, a recent change) and type it, "
                     f"then the code; if it is forgotten, reset it in the directory FreeRADIUS reads (here its users "
                     f"file).{tail}")
        return Diagnosis("radius-password-wrong", "RADIUS refused the password", paragraph, step, wall, evidence)
    why = f" (FreeRADIUS: “{said}”)" if said else " without saying why"
    paragraph = (f"{head}{why}. The user is unknown to RADIUS, the password or second factor is wrong, or a policy "
                 f"refuses the login; FreeRADIUS's own log (nodes/<server>/radiusd.log in the run folder) names the "
                 f"module that refused.{tail}")
    return Diagnosis("radius-rejected", "RADIUS refused the login", paragraph, step, wall, evidence)


def _step_nodes(value: Any) -> list[str]:
    """The nodes of a step written `kill: X`, `kill: [X, Y]` or `kill: {nodes: ...}`."""
    if isinstance(value, dict):
        value = value.get("nodes")
    return [value] if isinstance(value, str) else [str(v) for v in value] if isinstance(value, list) else []


def _radius_servers(path: Path) -> list[str]:
    """The server names in the eap-radius section's servers { } of a swanctl.conf (none if unreadable)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    start = re.search(r"\bservers\s*\{", text)
    if start is None:
        return []
    names, depth = [], 1
    for token in re.finditer(r"([\w.-]+)\s*\{|\}", text[start.end():]):
        if token.group(0) == "}":
            depth -= 1
            if depth == 0:
                break
        else:
            if depth == 1:
                names.append(token.group(1))
            depth += 1
    return names


def _radius_timeout(run: Run, r: TraceRecord, gw: str, node: str, user: str, server: str, address: str, step: int,
                    evidence: list[str]) -> Diagnosis:
    asked = [x for x in run.records if x.get("node") == gw and x.get("kind") == "note" and x.get("what") == "radius"
             and x.get("ike_sa") == r.get("ike_sa") and x.get("dir") == "out" and x.get("wall") is not None
             and x["wall"] <= r["wall"]]
    waited = r["wall"] - asked[-1]["wall"] if asked else None
    log = run.root / "nodes" / gw / "gateway.log"
    text = log.read_text(errors="replace") if log.exists() else ""
    tries = re.findall(rf"radius: no answer from {re.escape(server)} \({re.escape(address)}\), sending again "
                       rf"\((\d+) of (\d+)\)", text)
    evidence += [f"{gw}: radius: no answer from {server} ({address}), sending again ({a} of {b})" for a, b in tries]
    sent = f"sent the Access-Request {tries[-1][1]} times" if tries else "sent the Access-Request again and again"
    host = run.owner(address)
    killed = [s for s in run.steps if s.kind == "kill" and s.started <= r["wall"]
              and host in _step_nodes(run.scenario_step(s.index).get("kill"))] if host else []
    cause = (f" Here radiusd on {host} was killed at step {killed[0].index}." if killed else
             f" Check that FreeRADIUS runs on {host or address} and that {gw} reaches it on UDP 1812.")
    used = re.findall(r"sending RADIUS Access-Request to server '([^']+)'", text)
    standby = [n for n in dict.fromkeys(used + _radius_servers(run.root / "nodes" / gw / "swanctl" / "swanctl.conf"))
               if n != server]
    if standby:
        after = (f" {gw} has marked {server} down and sends the next logins to {', '.join(standby)}: “try again” "
                 f"works, and only this one login was lost.")
    else:
        after = (f" {gw} knows no other RADIUS server (the servers of ipsec-lab {{ eap-radius {{ ... }} }} in "
                 f"hosts/{gw}/swanctl.conf; strongSwan: charon.plugins.eap-radius.servers): every login will hang "
                 f"and fail the same way until {server} answers. A second server removes that single point of "
                 f"failure.")
    wait = f"{waited:.1f} s" if waited is not None else "the whole retransmission schedule"
    paragraph = (f"{user} on {node} waited {wait} and then saw an authentication failure, with nothing wrong on "
                 f"the user's side: {gw}'s RADIUS server {server} ({address}) did not answer. {gw} {sent} (RFC 2865 "
                 f"§2.5: the same packet, waiting longer each time: retransmit_timeout and retransmit_base), gave up "
                 f"and refused the login.{cause} A wrong shared secret looks different: answers arrive and {gw}'s "
                 f"log says “answer from {server} refused”.{after}")
    return Diagnosis("radius-timeout", f"The RADIUS server {server} does not answer: logins hang, then fail",
                     paragraph, step, r.get("wall"), evidence)


# ------------------------------------------------------------------ a check about NAT, ports or MOBIKE


def _failed_check(run: Run) -> tuple[dict, str, str, str, int | None] | None:
    """(the check as written, its words, what it saw, where it is written, the step) of the first failed check."""
    failed = run.first_failed
    if failed is not None:
        if failed.kind != "check":
            return None
        spec = run.scenario_step(failed.index).get("check")
        return (spec if isinstance(spec, dict) else {}, failed.text, failed.detail,
                run.step_line(failed.index), failed.index)
    bad = [c for c in run.checks if not c.ok]
    if not bad:
        return None
    check = bad[0]
    written = [c for c in run.scenario.get("checks", []) if isinstance(c, dict)]
    spec = written[check.index - 1] if 0 < check.index <= len(written) else {}
    return spec, check.text, check.saw, f"scenario.yaml:{check.line}", None


def _config_difference(run: Run) -> Diagnosis | None:
    """A failed check about NAT traversal, ports or MOBIKE that one side's setting explains."""
    found = _failed_check(run)
    if found is None:
        return None
    spec, words, saw, where, step = found
    blob = " ".join([repr(spec), words, saw])
    head = f"Every negotiation worked, but the check “{words}” ({where}) did not hold: it saw {quote(saw, 200)}."
    conns = {g: c for g in run.gateways if (c := run.conn(g)) is not None}
    if "mobike" in blob.lower():
        off = [g for g, c in conns.items() if not c.mobike]
        on = [g for g, c in conns.items() if c.mobike]
        if off and on:
            places = ", ".join(f"{g}: mobike = no ({run.where(g, conns[g].where('mobike'))})" for g in off)
            paragraph = (f"{head} MOBIKE is used only when both sides announce MOBIKE_SUPPORTED in IKE_AUTH "
                         f"(RFC 4555 §3.1), and {places}, while {', '.join(on)} {'has' if len(on) == 1 else 'have'} it "
                         f"on (mobike = yes, the default): no IKE SA with {', '.join(off)} uses MOBIKE. Fix: mobike = "
                         f"yes (or no mobike line at all: yes is the default) in "
                         f"{', '.join(run.where(g, conns[g].where('mobike')) for g in off)}.")
            return Diagnosis("mobike-differs", "MOBIKE off on one side", paragraph, step, None,
                             [f"{g}: mobike = {'yes' if conns[g].mobike else 'no'}" for g in off + on])
    if re.search(r"nat_local|nat_remote|encap|remote_port|local_port|4500|proto 50|\besp\b|port 500", blob) \
            and not run.nat_boxes():
        encapped = [g for g, c in conns.items() if c.encap]
        strong = [g for g in run.gateways if run.is_strongswan(g)]
        nat_notes = [f"{r['node']}: NAT detection says local_behind_nat={r.get('local_behind_nat')}, "
                     f"remote_behind_nat={r.get('remote_behind_nat')}"
                     for r in run.records if r.get("kind") == "note" and r.get("what") == "nat_detection"][:2]
        if encapped:
            g = encapped[0]
            others = [x for x in run.gateways if x not in encapped and not run.is_strongswan(x)]
            place = run.where(g, conns[g].where("encap"))
            paragraph = (f"{head} There is no NAT box between the gateways, yet {g} set up UDP encapsulation: "
                         f"encap = yes ({place}) makes it send a NAT-D hash that cannot match (RFC 7296 §2.23 NAT "
                         f"detection), so both sides act as if {g} were behind a NAT: IKE moves to UDP 4500 after "
                         f"IKE_SA_INIT and ESP travels inside UDP 4500 instead of as IP protocol 50"
                         + (f"; {', '.join(others)} has no encap" if others else "") +
                         f". Fix: remove encap = yes from {place} (it is meant for a path that drops ESP), or make the "
                         f"check ({where}) expect UDP 4500.")
            return Diagnosis("encap-differs", f"encap = yes on {g}", paragraph, step, None,
                             [f"{g}: encap = yes ({place})"] + nat_notes)
        if strong:
            g = strong[0]
            paragraph = (f"{head} {g} runs strongSwan, and strongSwan here uses kernel-libipsec (a userspace data "
                         f"plane: this kernel has no XFRM), which cannot send plain ESP: it fakes its NAT-D hash as "
                         f"encap = yes does, so IKE always moves to UDP 4500 and ESP travels in UDP, NAT or not (see "
                         f"the mixed-strongswan scenario). Fix: make the check ({where}) expect UDP 4500 and ESP in UDP "
                         f"when a strongSwan gateway takes part, or run ipsec-lab on both gateways to show plain ESP.")
            return Diagnosis("strongswan-encap", "strongSwan here always encapsulates ESP in UDP", paragraph, step,
                             None, [f"{g}: strongSwan (kernel-libipsec)"] + nat_notes)
    return None


# ------------------------------------------------------------------ the rest


def _unknown(run: Run) -> Diagnosis:
    failed = run.first_failed
    lines = []
    for node, entries in run.charon.items():
        lines += [f"{node}: {quote(e.text)}" for e in entries if re.search(r"fail|error|unacceptable|giving up", e.text,
                                                                        re.IGNORECASE)][:2]
    for r in run.records:
        if r.get("kind") in ("drop",) or r.get("event") in ("NegotiationFailed", "AuthFailed", "PeerUnreachable"):
            lines.append(f"{r.get('node')}: {r.get('reason') or r.get('event')}")
    if failed is not None:
        paragraph = (f"The first thing that went wrong was {run.step_words(failed.index)}: "
                     f"{quote(failed.detail, 300)}. None of the causes diagnose knows shows in the trace, "
                     f"the logs or the captures" + (f"; the logs say: {lines[0]}" if lines else "") +
                     ". What would tell: the step's line in report.md, the daemons' logs in logs/ and the ladder in "
                     "figures/.")
        return Diagnosis("unknown", f"step {failed.index} failed", paragraph, failed.index,
                         failed.started, lines[:5])
    checks = [c for c in run.checks if not c.ok]
    if run.error:
        return Diagnosis("unknown", "the run stopped with an error",
                         f"The run stopped with an error before it finished: {run.error}.", None, None, lines[:5])
    if checks:
        c = checks[0]
        return Diagnosis("check-failed", f"check {c.index} failed",
                         f"Every step did what it should, but check {c.index} ({c.text}) did not hold: it saw "
                         f"{c.saw}. The scenario expected something of the captures or the SAs that did not "
                         f"happen; compare with what report.md shows for it.", None, None, lines[:5])
    return Diagnosis("passed", "nothing went wrong", "Every step and every check passed: nothing to diagnose.")


DETECTORS: list[Callable[[Run], Diagnosis | None]] = [
    _missing_name, _windows, _radius, negotiation, _flapping, _unanswered, _overlapping, _outside_selectors, _nat_expired,
    _esp_blocked, _pmtud,
    _config_difference]


def diagnose(root: str | Path) -> Diagnosis:
    """The first point where the run in `root` went wrong, and why (see the module's docstring)."""
    run = Run(root)
    if run.passed:
        return Diagnosis("passed", "nothing went wrong", "Every step and every check passed: nothing to diagnose.")
    for detector in DETECTORS:
        found = detector(run)
        if found is not None:
            return found
    return _unknown(run)


__all__ = ["DETECTORS", "Diagnosis", "DiagnoseError", "Run", "diagnose"]
