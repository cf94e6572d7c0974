"""What a gateway said when it refused its peer, read from a run's records: charon's log lines
("tried 1 shared key for 'gwb.lab' - 'gwa.lab', but MAC mismatched", "no IKE config found for
...", "no acceptable traffic selectors found", ...) and our daemon's trace (AuthFailed and
NegotiationFailed reasons, drops, notes). Each becomes a `Refusal` with a kind that
lab.viz.diagnose turns into advice. A refusal is `own` when the node states its own reason,
not when it only reports that its peer answered with an error notify."""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from lab.runfolder import TraceRecord

from .timeline import TimelineEntry

# kinds, roughly in the order a negotiation meets them
KINDS = ("no-config", "proposal", "invalid-ke", "psk", "psk-missing", "peer-config", "identity", "eap-cert-id", "cert-id",
         "cert-expired", "cert-revoked", "cert-chain", "cert-trust", "own-key", "signature", "auth", "ts", "transport",
         "ah-nat", "install", "other")


@dataclass
class Refusal:
    wall: float
    node: str
    kind: str
    text: str                     # as logged, without charon's thread and SA prefix
    own: bool                     # the node's own reason (False: "the peer answered ...")
    source: str                   # "charon" or "trace"
    exchange: str | None = None
    parts: dict[str, str] = field(default_factory=dict)
    final: bool = True            # False: the exchange goes on (INVALID_KE_PAYLOAD asks for another group)


# (kind, own, pattern, exchange); named groups become `parts`
_CHARON: list[tuple[str, bool, str, str | None]] = [
    ("no-config", True, r"no IKE config found for (?P<local>\S+?)\.\.\.(?P<remote>\S+), sending NO_PROPOSAL_CHOSEN",
     "IKE_SA_INIT"),
    ("proposal", True, r"received proposals unacceptable", "IKE_SA_INIT"),
    ("proposal", True, r"no acceptable proposal found", None),
    ("proposal", False, r"received NO_PROPOSAL_CHOSEN notify", None),
    ("invalid-ke", True, r"DH group (?P<offered>\S+) unacceptable, requesting (?P<wanted>\S+)", None),
    ("invalid-ke", False, r"peer didn't accept DH group (?P<offered>\S+), it requested (?P<wanted>\S+)", None),
    ("psk", True, r"tried (?P<count>\d+) shared keys? for '(?P<local>[^']*)' - '(?P<remote>[^']*)', but MAC mismatched",
     "IKE_AUTH"),
    ("psk-missing", True, r"no shared key found for '(?P<local>[^']*)' - '(?P<remote>[^']*)'", "IKE_AUTH"),
    ("peer-config", True, r"no matching peer config found", "IKE_AUTH"),
    ("cert-id", True, r"constraint check failed: identity '(?P<id>[^']*)' required", "IKE_AUTH"),
    ("cert-expired", True, r"(?P<which>subject|issuer) certificate invalid \(valid from (?P<start>.+?) to "
                           r"(?P<end>.+?)\)", "IKE_AUTH"),
    ("cert-revoked", True, r"certificate was revoked on (?P<date>.+?), reason: (?P<reason>[\w ]+)", "IKE_AUTH"),
    ("cert-chain", True, r"no issuer certificate found for \"(?P<subject>[^\"]*)\"", "IKE_AUTH"),
    ("cert-trust", True, r"no trusted (?P<keytype>\S+) public key found for '(?P<id>[^']*)'", "IKE_AUTH"),
    ("own-key", True, r"no private key found for '(?P<id>[^']*)'", "IKE_AUTH"),
    ("signature", True, r"signature validation failed", "IKE_AUTH"),
    ("auth", False, r"received AUTHENTICATION_FAILED notify", "IKE_AUTH"),
    ("auth", True, r"peer authentication failed|verification of AUTH payload.* failed|"
                   r"authentication of '(?P<id>[^']*)' with .* failed", "IKE_AUTH"),
    ("ts", True, r"no acceptable traffic selectors found", None),
    ("ts", True, r"traffic selectors (?P<ts>.*) unacceptable", None),
    ("ts", False, r"received TS_UNACCEPTABLE notify", None),
    ("install", True, r"error installing route with policy (?P<policy>.*)", None),
    ("install", True, r"unable to install source route", None),
    ("install", True, r"unable to install IPsec policies \(SPD\) in kernel", None),
    ("install", True, r"IPsec SA: unsupported mode", None),
    ("install", True, r"unable to install inbound and outbound IPsec SA \(SAD\) in kernel", None),
]
_CHARON_COMPILED = [(kind, own, re.compile(pattern), exchange) for kind, own, pattern, exchange in _CHARON]
_CHARON_PREFIX = re.compile(r"^\d+\[\w+\]\s+(?:<[^>]*>\s+)?")

# our daemon's reasons (lab.ike: AuthFailed, NegotiationFailed, drops)
_OURS: list[tuple[str, bool, str]] = [
    ("auth", False, r"peer answered AUTHENTICATION_FAILED|peer rejected our authentication"),
    ("psk", True, r"shared key MIC does not match"),
    ("psk-missing", True, r"no pre-shared key for (?P<local>\S+) - (?P<remote>\S+)"),
    ("peer-config", True, r"no connection for peer identity (?P<id>\S+)"),
    ("identity", True, r"responder identity (?P<id>\S+) does not match the expected (?P<expected>\S+)"),
    # the EAP server's certificate inside EAP-(T)TLS (lab.ike.eap.tls.peer_checker), before the IKE peer's
    ("eap-cert-id", True, r"TLS certificate refused: identity (?P<id>\S+) is not in the peer's certificate "
                          r"'(?P<subject>[^']*)'"),
    ("cert-id", True, r"identity (?P<id>\S+) is not in the peer's certificate '(?P<subject>[^']*)'"),
    ("cert-expired", True, r"certificate '(?P<subject>[^']*)' is not valid now \((?P<start>\S+) to (?P<end>\S+)\)"),
    ("cert-revoked", True, r"certificate '(?P<subject>[^']*)' \(serial (?P<serial>\S+)\) was revoked on "
                           r"(?P<date>.+? UTC), reason: (?P<reason>[\w ]+?), by"),
    ("cert-chain", True, r"peer's certificate '(?P<subject>[^']*)' does not chain to a trusted CA: its issuer "
                         r"'(?P<issuer>[^']*)'"),
    ("transport", True, r"responder refused transport mode"),
    ("ah-nat", True, r"AH cannot cross a NAT"),
    ("proposal", False, r"peer answered NO_PROPOSAL_CHOSEN"),
    ("ts", False, r"peer answered TS_UNACCEPTABLE"),
    ("ts", True, r"traffic selectors not acceptable|traffic selectors are not within ours"),
    ("proposal", True, r"no acceptable (?:IKE|ESP|AH) proposal|responder wants DH group (?P<wanted>\S+), which we do "
                       r"not offer"),
    ("other", False, r"peer answered (?P<notify>[A-Z_]+)"),
]
_OURS_COMPILED = [(kind, own, re.compile(pattern)) for kind, own, pattern in _OURS]


def charon_reason(text: str) -> str:
    """A charon log line without its thread and SA prefix: `12[IKE] <s2s|1> x` -> `x`."""
    return _CHARON_PREFIX.sub("", text).strip()


def from_charon(node: str, entries: Iterable[TimelineEntry]) -> list[Refusal]:
    out = []
    for entry in entries:
        for kind, own, regex, exchange in _CHARON_COMPILED:
            match = regex.search(entry.text)
            if match:
                out.append(Refusal(entry.wall, node, kind, charon_reason(entry.text), own, "charon", exchange,
                                   {k: v for k, v in match.groupdict().items() if v is not None},
                                   final=kind != "invalid-ke"))
                break
    return out


def from_trace(records: Iterable[TraceRecord]) -> list[Refusal]:
    out = []
    for r in records:
        wall, node = float(r.get("wall", 0.0) or 0.0), str(r.get("node", ""))
        if r.get("kind") == "event" and r.get("event") in ("AuthFailed", "NegotiationFailed"):
            reason = str(r.get("reason", ""))
            exchange = r.get("exchange") or ("IKE_AUTH" if r["event"] == "AuthFailed" else None)
            for kind, own, regex in _OURS_COMPILED:
                match = regex.search(reason)
                if match:
                    if r["event"] == "AuthFailed" and kind in ("proposal", "ts"):
                        continue
                    own = own and not r.get("by_peer", False)
                    out.append(Refusal(wall, node, kind, reason, own, "trace", exchange,
                                       {k: v for k, v in match.groupdict().items() if v is not None},
                                       final=kind != "invalid-ke"))
                    break
            else:
                kind = "auth" if r["event"] == "AuthFailed" else "other"
                out.append(Refusal(wall, node, kind, reason, not r.get("by_peer", False), "trace", exchange))
        elif r.get("kind") == "note" and r.get("what") == "no_proposal_chosen":
            reason = "no proposal chosen" + (f": {r['reason']}" if r.get("reason") else "")
            out.append(Refusal(wall, node, "proposal", reason, True, "trace", "IKE_SA_INIT"))
        elif r.get("kind") == "drop" and "no connection for these addresses" in str(r.get("reason", "")):
            out.append(Refusal(wall, node, "no-config", str(r.get("reason")), True, "trace", "IKE_SA_INIT"))
    return out


def read_refusals(records: Iterable[TraceRecord], charon: dict[str, list[TimelineEntry]]) -> list[Refusal]:
    """Every refusal of a run, in time order."""
    found = from_trace(records)
    for node, entries in charon.items():
        found += from_charon(node, entries)
    found.sort(key=lambda f: f.wall)
    return found


__all__ = ["KINDS", "Refusal", "charon_reason", "from_charon", "from_trace", "read_refusals"]
