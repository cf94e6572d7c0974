"""strongSwan proposal strings to RFC 7296 SA proposals and back, and proposal selection.

`parse_ike_proposal("aes128gcm16-prfsha256-x25519")` gives a `lab.ike.payloads.Proposal`
whose transforms are in the order ENCR, PRF, INTEG, DH, ESN; `format_proposal` writes it
back in strongSwan's keywords. `select_proposal` picks from a peer's proposals the way a
strongSwan responder does. Pure functions: no I/O, no clock, no crypto.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

from lab.iana import ALGORITHMS, AUTH_HMAC_SHA2_256_96, Algorithm, keyword_algorithm
from lab.iana import algorithm as _registry_entry

from .const import (
    DhGroup,
    EncrId,
    EsnId,
    IntegId,
    PrfId,
    ProtocolId,
    TransformAttr,
    TransformType,
    coerce,
)
from .payloads import Proposal, Transform, TransformAttribute

__all__ = [
    "AUTH_HMAC_SHA2_256_96",
    "AEAD_ENCR",
    "ChosenAlgorithms",
    "DEFAULT_AH_PROPOSALS",
    "DEFAULT_ESP_PROPOSALS",
    "DEFAULT_IKE_PROPOSALS",
    "ProposalError",
    "check_implemented",
    "format_proposal",
    "format_proposals",
    "format_transform",
    "initiator_dh_group",
    "invalid_ke_group",
    "additional_key_exchanges",
    "has_additional_ke",
    "is_aead",
    "without_additional_ke",
    "implemented_keywords",
    "known_keywords",
    "parse_ah_proposal",
    "parse_ah_proposals",
    "parse_esp_proposal",
    "parse_esp_proposals",
    "parse_ike_proposal",
    "parse_ike_proposals",
    "parse_proposal",
    "parse_proposals",
    "promote_dh_group",
    "proposal_dh_groups",
    "responder_dh_group",
    "select_proposal",
]


class ProposalError(ValueError):
    """A proposal string that is not a valid strongSwan proposal.

    `text` is the proposal (or list) as written, `token` the offending keyword if one is
    to blame, `protocol` the protocol it was parsed for.
    """

    def __init__(self, message: str, *, text: str = "", token: str | None = None,
                 protocol: int | None = None) -> None:
        super().__init__(message)
        self.text = text
        self.token = token
        self.protocol = protocol


# strongSwan crypter.c encryption_algorithm_is_aead
AEAD_ENCR = frozenset(a.id for a in ALGORITHMS if a.type == TransformType.ENCR and a.aead)


def is_aead(encr_id: int) -> bool:
    """True for combined-mode (AEAD) encryption algorithms, which take no INTEG transform."""
    return encr_id in AEAD_ENCR


_ENCR, _PRF, _INTEG, _DH, _ESN = (TransformType.ENCR, TransformType.PRF, TransformType.INTEG,
                                  TransformType.DH, TransformType.ESN)

# RFC 7296 §3.3.2: transform types in numeric order, the order they are sent in
_WIRE_ORDER = (_ENCR, _PRF, _INTEG, _DH, _ESN)
# strongSwan proposal.c type_for_sort: the order proposals are printed and selected in
_TEXT_ORDER = (_ENCR, _INTEG, _PRF, _DH, _ESN)

_ID_ENUMS: dict[int, type[IntEnum]] = {_ENCR: EncrId, _PRF: PrfId, _INTEG: IntegId, _DH: DhGroup, _ESN: EsnId}

_KIND_NAMES: dict[int, str] = {
    _ENCR: "encryption",
    _INTEG: "integrity",
    _PRF: "PRF",
    _DH: "key exchange (DH)",
    _ESN: "ESN",
}

# (transform type, transform id, key length in bits or 0)
_Algo = tuple[int, int, int]


def _entry(algorithm: Algorithm) -> _Algo:
    return (algorithm.type, algorithm.id, algorithm.key_bits)


# strongSwan proposal keywords (docs.strongswan.org config/proposals, proposal_keywords_static.txt), from lab.iana
_KEYWORDS: dict[str, _Algo] = {k: _entry(a) for a in ALGORITHMS if a.parsed for k in a.keywords}
_CANONICAL: dict[_Algo, str] = {_entry(a): a.keywords[0] for a in ALGORITHMS if a.keywords}

# strongSwan proposal.c integ_prf_map: the PRF an IKE proposal without PRF keywords gets
_PRF_FOR_INTEG = {a.id: a.derived_prf for a in ALGORITHMS
                  if a.type == TransformType.INTEG and a.derived_prf is not None}

# strongSwan proposal.c check_proposal: AES-GMAC in AH is an integrity algorithm, written like the ESP cipher
_GMAC_INTEG = {a.key_bits: i.id for a in ALGORITHMS if a.type == TransformType.ENCR and a.id == EncrId.NULL_AUTH_AES_GMAC
               for i in ALGORITHMS if i.type == TransformType.INTEG and not i.parsed and i.keyword == a.keyword}

_DH_NONES = ("none", "modpnone")

_DH_LIST = ("ecp256-ecp384-ecp521-ecp256bp-ecp384bp-ecp512bp-x25519-x448-"
            "modp3072-modp4096-modp6144-modp8192-modp2048")
_PRF_LIST = "prfsha256-prfsha384-prfsha512-prfaesxcbc-prfaescmac-prfsha1"



def _implemented_only(protocol: int, text: str) -> str:
    # what a strongSwan build without the plugins for the others would offer
    return "-".join(k for k in text.split("-") if (a := keyword_algorithm(k)) is not None and a.implemented(protocol))


# strongSwan proposal.c proposal_create_default / _aead (rounds by strength), less what lab.iana marks unimplemented
DEFAULT_IKE_PROPOSALS: tuple[str, ...] = tuple(_implemented_only(ProtocolId.IKE, text) for text in (
    f"aes128-aes192-aes256-sha256-sha384-sha512-aesxcbc-aescmac-sha1-{_PRF_LIST}-{_DH_LIST}",
    "aes128gcm16-aes192gcm16-aes256gcm16-chacha20poly1305-aes128gcm12-aes192gcm12-aes256gcm12-"
    f"aes128gcm8-aes192gcm8-aes256gcm8-{_PRF_LIST}-{_DH_LIST}",
))
# strongSwan vici_config.c add_default_proposals: AEAD first for ESP, classic first for IKE
DEFAULT_ESP_PROPOSALS: tuple[str, ...] = tuple(_implemented_only(ProtocolId.ESP, text) for text in (
    "aes128gcm16-aes192gcm16-aes256gcm16",
    "aes128-aes192-aes256-sha256-sha384-sha512-sha1-aesxcbc",
))
DEFAULT_AH_PROPOSALS: tuple[str, ...] = (_implemented_only(ProtocolId.AH, "sha256-sha384-sha512-sha1-aesxcbc"),)

_DEFAULTS: dict[int, tuple[str, ...]] = {ProtocolId.IKE: DEFAULT_IKE_PROPOSALS, ProtocolId.ESP: DEFAULT_ESP_PROPOSALS,
             ProtocolId.AH: DEFAULT_AH_PROPOSALS}


def known_keywords() -> dict[str, tuple[str, ...]]:
    """Every proposal keyword this module understands, grouped by kind of algorithm."""
    groups: dict[str, list[str]] = {name: [] for name in _KIND_NAMES.values()}
    for token, (ttype, _, _) in _KEYWORDS.items():
        groups[_KIND_NAMES[ttype]].append(token)
    return {kind: tuple(tokens) for kind, tokens in groups.items()}


def _protocol_name(protocol: int) -> str:
    try:
        return ProtocolId(protocol).name
    except ValueError:
        return f"protocol {protocol}"


def _unknown_token_message(token: str, text: str, protocol: int) -> str:
    where = f"in {_protocol_name(protocol)} proposal '{text}'"
    if not token:
        return (f"empty algorithm keyword {where}: keywords are separated by single dashes, "
                f"e.g. 'aes128-sha256-modp2048'")
    hints = []
    lowered = token.lower()
    if lowered[:2] == "ke" and "_" in lowered and lowered.split("_", 1)[0][2:].isdigit():
        # RFC 9370 §2.2.1: seven additional key exchanges, written ke1_ .. ke7_ by strongSwan 6
        prefix, base = lowered.split("_", 1)
        if not 1 <= int(prefix[2:]) <= 7:
            hints.append(f"RFC 9370 allows seven additional key exchanges, ke1_ .. ke7_, not {prefix}_")
        elif base in _KEYWORDS and _KEYWORDS[base][0] != _DH:
            hints.append(f"{base} is no key exchange method; after {prefix}_ write a group such as mlkem768 or "
                         f"ecp384")
        else:
            close = difflib.get_close_matches(base, [k for k, v in _KEYWORDS.items() if v[0] == _DH], n=3,
                                              cutoff=0.75)
            if close:
                hints.append("did you mean " + " or ".join(f"'{prefix}_{c}'" for c in close))
    elif token.lower() in _KEYWORDS:
        hints.append(f"keywords are lowercase, write '{token.lower()}'")
    else:
        close = difflib.get_close_matches(token.lower(), list(_KEYWORDS), n=3, cutoff=0.75)
        if close:
            hints.append("did you mean " + " or ".join(f"'{c}'" for c in close))
    known = "; ".join(f"{kind}: {' '.join(tokens)}" for kind, tokens in known_keywords().items())
    hint = f" ({', '.join(hints)})" if hints else ""
    return f"unknown algorithm '{token}' {where}{hint}. Known keywords are {known}"


def _coerce_protocol(protocol: int) -> int:
    value = coerce(ProtocolId, int(protocol))
    if value not in (ProtocolId.IKE, ProtocolId.ESP, ProtocolId.AH):
        raise ProposalError(f"proposals are for IKE, ESP or AH, not {_protocol_name(protocol)}",
                            protocol=int(protocol))
    return value


def _dedupe(entries: Iterable[_Algo]) -> list[_Algo]:
    seen: set[_Algo] = set()
    out = []
    for entry in entries:
        if entry not in seen:
            seen.add(entry)
            out.append(entry)
    return out


def _of(entries: Sequence[_Algo], ttype: int) -> list[_Algo]:
    return [e for e in entries if e[0] == ttype]


def _derived_prfs(entries: Sequence[_Algo]) -> list[_Algo]:
    return _dedupe((_PRF, _PRF_FOR_INTEG[e[1]], 0) for e in _of(entries, _INTEG) if e[1] in _PRF_FOR_INTEG)


def _make_transform(ttype: int, tid: int, key_length: int) -> Transform:
    # RFC 7296 §3.3.5: Key Length attribute, always TV format
    attrs = [TransformAttribute(TransformAttr.KEY_LENGTH, key_length)] if key_length else []
    enum = _ID_ENUMS.get(ttype)
    return Transform(coerce(TransformType, ttype), coerce(enum, tid) if enum else tid, attrs)


def _wire_rank(ttype: int) -> int:
    return _WIRE_ORDER.index(ttype) if ttype in _WIRE_ORDER else len(_WIRE_ORDER) + ttype


def _build_proposal(number: int, protocol: int, spi: bytes, entries: Sequence[_Algo]) -> Proposal:
    ordered = sorted(entries, key=lambda e: _wire_rank(e[0]))
    return Proposal(number, protocol, spi, [_make_transform(*e) for e in ordered])


def _entries(proposal: Proposal) -> list[_Algo]:
    return [(int(t.transform_type), int(t.transform_id), t.key_length or 0) for t in proposal.transforms]


def parse_proposal(protocol: int, text: str, number: int = 1) -> Proposal:
    """One proposal, algorithm keywords joined by '-', for `protocol` (IKE, ESP or AH).

    Applies strongSwan's completion rules and raises `ProposalError` for anything strongSwan
    (or this lab) refuses. `default` expands to several proposals: use `parse_proposals`.
    """
    protocol = _coerce_protocol(protocol)
    name = _protocol_name(protocol)
    if not isinstance(text, str):
        raise ProposalError(f"{name} proposal must be a string, not {type(text).__name__}",
                            protocol=protocol)
    if not 1 <= number <= 255:
        # RFC 7296 §3.3.1: the Proposal Num field is one octet, the first proposal is number 1
        raise ProposalError(f"proposal number {number} is outside 1..255", text=text, protocol=protocol)
    source = text
    text = text.strip()
    if not text:
        example = "'aes128gcm16-prfsha256-x25519'" if protocol == ProtocolId.IKE else "'aes128gcm16' or 'aes128-sha256'"
        raise ProposalError(f"empty {name} proposal: write algorithm keywords separated by '-', e.g. {example}",
                            text=source, protocol=protocol)
    if text.lower() == "default":
        raise ProposalError(f"'default' stands for several {name} proposals; parse it with parse_proposals()",
                            text=source, token=text, protocol=protocol)

    entries: list[_Algo] = []
    for raw in text.split("-"):
        token = raw.strip()
        algo = _KEYWORDS.get(token) or _additional_ke(token)
        if algo is None:
            raise ProposalError(_unknown_token_message(token, text, protocol), text=source, token=token,
                                protocol=protocol)
        entries.append(algo)

    def fail(message: str) -> ProposalError:
        return ProposalError(f"{name} proposal '{text}': {message}", text=source, protocol=protocol)

    if protocol == ProtocolId.IKE:
        # strongSwan proposal.c check_proposal: no PRF keyword means PRFs follow the integrity algorithms
        if not _of(entries, _PRF):
            entries.extend(_derived_prfs(entries))
        # strongSwan proposal.c check_proposal: KE_NONE is dropped from IKE proposals
        entries = [e for e in entries if not (e[0] == _DH and e[1] == DhGroup.NONE)]
        if _of(entries, _ESN):
            raise fail("esn/noesn only apply to ESP and AH proposals, remove them from IKE proposals")
    else:
        # strongSwan proposal.c check_proposal: PRFs are dropped from ESP/AH proposals
        entries = [e for e in entries if e[0] != _PRF]

    if protocol in (ProtocolId.IKE, ProtocolId.ESP):
        encrs = _of(entries, _ENCR)
        if not encrs:
            raise fail("an encryption algorithm is mandatory, e.g. aes128gcm16 or aes128 with sha256")
        aead = [e for e in encrs if is_aead(e[1])]
        if aead and len(aead) != len(encrs):
            classic = next(e for e in encrs if not is_aead(e[1]))
            raise fail(f"combined-mode (AEAD) {_CANONICAL[aead[0]]} and classic {_CANONICAL[classic]} "
                       f"can't be in the same proposal; put them in two comma-separated proposals")
        if aead:
            # RFC 7296 §3.3: an AEAD proposal carries no integrity transform (strongSwan drops them)
            entries = [e for e in entries if e[0] != _INTEG]
        elif not _of(entries, _INTEG):
            raise fail(f"classic encryption {_CANONICAL[encrs[0]]} needs an integrity algorithm such as "
                       f"sha256, or use an AEAD algorithm such as aes128gcm16")
    else:
        mapped: list[_Algo] = []
        for entry in entries:
            if entry[0] == _ENCR:
                if entry[1] == EncrId.NULL_AUTH_AES_GMAC and entry[2] in _GMAC_INTEG:
                    mapped.append((_INTEG, _GMAC_INTEG[entry[2]], 0))
                continue
            mapped.append(entry)
        entries = mapped
        if not _of(entries, _INTEG):
            raise fail("an integrity algorithm is mandatory in AH proposals, e.g. sha256")

    if protocol == ProtocolId.IKE:
        if not _of(entries, _PRF):
            if any(is_aead(e[1]) for e in _of(entries, _ENCR)):
                raise fail("an AEAD IKE proposal needs an explicit PRF such as prfsha256")
            integs = " ".join(_CANONICAL.get(e, str(e[1])) for e in _of(entries, _INTEG))
            raise fail(f"no PRF can be derived from {integs}; add one such as prfsha256")
        if not _of(entries, _DH):
            raise fail("a key exchange method (DH group) is mandatory in IKE proposals, e.g. x25519 or modp2048")
    else:
        additional = [e for e in entries if _is_additional(e[0]) and e[1] != DhGroup.NONE]
        if additional and not [e for e in _of(entries, _DH) if e[1] != DhGroup.NONE]:
            # RFC 9370 §2.2.4: the additional key exchanges follow the KE payload of CREATE_CHILD_SA
            token = _format_entry(additional[0])
            words = [w.strip() for w in text.split("-")]
            at = next(i for i, w in enumerate(words) if _additional_ke(w) is not None)
            example = "-".join(words[:at] + ["ecp256" if token.endswith("_x25519") else "x25519"] + words[at:])
            raise ProposalError(
                f"{name} proposal '{text}': {token} needs a key exchange method in the same proposal (e.g. "
                f"'{example}'): RFC 9370 §2.2.4 runs additional key exchanges in "
                f"IKE_FOLLOWUP_KE after the KE payload of CREATE_CHILD_SA, and without a key exchange method "
                f"there is none", text=source, token=token, protocol=protocol)
    if protocol != ProtocolId.IKE and not _of(entries, _ESN):
        # strongSwan proposal.c check_proposal: ESN not given means no ESN
        entries.append((_ESN, EsnId.NO_ESN, 0))

    return _build_proposal(number, protocol, b"", _dedupe(entries))


def _additional_ke(token: str) -> _Algo | None:
    # RFC 9370 §2.2.1: Additional Key Exchange 1..7 are transform types 6..12 (strongSwan ke1_ .. ke7_)
    if len(token) > 4 and token[:2] == "ke" and token[2] in "1234567" and token[3] == "_":
        base = _KEYWORDS.get(token[4:])
        if base is not None and base[0] == _DH:
            return (_DH + 1 + int(token[2]), base[1], 0)
    return None


def _split_list(text: str | Iterable[str]) -> list[str]:
    if isinstance(text, str):
        return text.split(",")
    items = list(text)
    if not all(isinstance(item, str) for item in items):
        raise ProposalError("proposal lists hold strings such as 'aes128-sha256'")
    return [part for item in items for part in item.split(",")]


def parse_proposals(protocol: int, text: str | Iterable[str]) -> list[Proposal]:
    """A comma-separated list (or an iterable) of proposals, numbered 1..n in order.

    The item `default` stands for strongSwan's default proposals for `protocol`.
    """
    protocol = _coerce_protocol(protocol)
    items = _split_list(text)
    shown = text if isinstance(text, str) else ", ".join(items)
    if not any(item.strip() for item in items):
        raise ProposalError(f"empty {_protocol_name(protocol)} proposal list: give at least one proposal "
                            f"such as 'aes128gcm16-prfsha256-x25519' or 'default'", text=shown, protocol=protocol)
    out: list[Proposal] = []
    for index, item in enumerate(items, 1):
        item = item.strip()
        if not item:
            raise ProposalError(f"proposal {index} of '{shown}' is empty: remove the extra comma",
                                text=shown, protocol=protocol)
        expanded = _DEFAULTS[protocol] if item.lower() == "default" else (item,)
        for one in expanded:
            out.append(parse_proposal(protocol, one, number=len(out) + 1))
    if len(out) > 255:
        # RFC 7296 §3.3.1: the Proposal Num field is one octet
        raise ProposalError(f"{len(out)} proposals do not fit the one-octet proposal number",
                            text=shown, protocol=protocol)
    return out


def parse_ike_proposal(text: str, number: int = 1) -> Proposal:
    """One IKE proposal, e.g. `aes128gcm16-prfsha256-x25519`."""
    return parse_proposal(ProtocolId.IKE, text, number)


def parse_esp_proposal(text: str, number: int = 1) -> Proposal:
    """One ESP proposal, e.g. `aes128-sha256` or `aes256gcm16-esn`."""
    return parse_proposal(ProtocolId.ESP, text, number)


def parse_ah_proposal(text: str, number: int = 1) -> Proposal:
    """One AH proposal, e.g. `sha256` or `aes128gmac`."""
    return parse_proposal(ProtocolId.AH, text, number)


def parse_ike_proposals(text: str | Iterable[str]) -> list[Proposal]:
    """swanctl.conf `proposals` value: comma-separated IKE proposals."""
    return parse_proposals(ProtocolId.IKE, text)


def parse_esp_proposals(text: str | Iterable[str]) -> list[Proposal]:
    """swanctl.conf `esp_proposals` value: comma-separated ESP proposals."""
    return parse_proposals(ProtocolId.ESP, text)


def parse_ah_proposals(text: str | Iterable[str]) -> list[Proposal]:
    """swanctl.conf `ah_proposals` value: comma-separated AH proposals."""
    return parse_proposals(ProtocolId.AH, text)


def implemented_keywords(protocol: int) -> dict[str, tuple[str, ...]]:
    """The canonical keywords of what ipsec-lab carries out in `protocol` proposals, by kind."""
    protocol = _coerce_protocol(protocol)
    groups: dict[str, list[str]] = {name: [] for name in _KIND_NAMES.values()}
    for a in ALGORITHMS:
        if a.parsed and a.keywords and a.implemented(protocol) and not (protocol == ProtocolId.IKE and a.type == _DH
                                                                         and a.id == DhGroup.NONE):
            groups[_KIND_NAMES[a.type]].append(a.keywords[0])
    return {kind: tuple(tokens) for kind, tokens in groups.items() if tokens}


def check_implemented(proposals: Sequence[Proposal]) -> list[Proposal]:
    """`proposals` if ipsec-lab carries out every transform in them, else a ProposalError naming
    the first one it does not implement and what it implements instead."""
    for proposal in proposals:
        protocol = _coerce_protocol(proposal.protocol_id)
        for entry in _entries(proposal):
            if 6 <= entry[0] <= 12:
                _check_additional_ke(proposal, protocol, entry)
                continue
            known = _registry_entry(*entry)
            if known is not None and known.implemented(protocol):
                continue
            name = _protocol_name(protocol)
            token = _format_entry(entry)
            if known is not None and known.forbidden and (protocol == ProtocolId.IKE or known.type == _DH):
                raise ProposalError(f"{token} ({known.name}) is forbidden: {known.forbidden} says MUST NOT use it "
                                    f"in IKEv2, so ipsec-lab refuses it; remove it from the proposal",
                                    text=format_proposal(proposal, explicit=True), token=token, protocol=protocol)
            kind = _KIND_NAMES.get(entry[0], "additional key exchange" if _is_ke_type(entry[0]) else "transform")
            if protocol == ProtocolId.AH and entry[0] == _INTEG and entry[1] in _GMAC_INTEG.values():
                hint = "AES-GMAC is implemented for ESP only: write esp_proposals = " + token
            else:
                offered = implemented_keywords(protocol).get(kind, ())
                hint = f"implemented {kind}: {' '.join(offered)}" if offered else f"no {kind} is implemented"
            raise ProposalError(f"{token} ({known.name if known else kind}) is not implemented by ipsec-lab in "
                                f"{name} proposals ({hint})", text=format_proposal(proposal, explicit=True),
                                token=token, protocol=protocol)
    return list(proposals)


def _check_additional_ke(proposal: Proposal, protocol: int, entry: _Algo) -> None:
    token = _format_entry(entry)
    text = format_proposal(proposal, explicit=True)
    if entry[1] == DhGroup.NONE:
        return  # RFC 9370 §2.2.1: NONE makes the additional key exchange optional
    known = _registry_entry(_DH, entry[1], 0)
    if known is None or not known.implemented(protocol):
        offered = " ".join(implemented_keywords(protocol).get(_KIND_NAMES[_DH], ()))
        raise ProposalError(f"{token} is not implemented by ipsec-lab as an additional key exchange "
                            f"(implemented: {offered} and none)", text=text, token=token, protocol=protocol)


def has_additional_ke(proposal: Proposal) -> bool:
    """Whether a proposal holds RFC 9370 Additional Key Exchange transforms (types 6..12) other than NONE."""
    return any(_is_additional(int(t.transform_type)) and t.transform_id != DhGroup.NONE for t in proposal.transforms)


def without_additional_ke(proposals: Sequence[Proposal]) -> list[Proposal]:
    """`proposals` as they stand where no additional key exchange can run (RFC 9370 §2.2.1): a
    proposal that requires one (an Additional Key Exchange type without NONE) is left out, the
    optional ones (with NONE) lose those transforms. Numbers and SPIs are kept."""
    out = []
    for p in proposals:
        types = {int(t.transform_type) for t in p.transforms if _is_additional(int(t.transform_type))}
        optional = {int(t.transform_type) for t in p.transforms
                    if _is_additional(int(t.transform_type)) and t.transform_id == DhGroup.NONE}
        if types - optional:
            continue
        out.append(Proposal(p.number, p.protocol_id, p.spi,
                            [t for t in p.transforms if not _is_additional(int(t.transform_type))]))
    return out


def additional_key_exchanges(proposal: Proposal) -> list[tuple[int, int]]:
    """(transform type, method) of a selected proposal's additional key exchanges, in the order
    they run: by transform type, NONE left out (RFC 9370 §2.2.2)."""
    return sorted((int(t.transform_type), int(t.transform_id)) for t in proposal.transforms
                  if _is_additional(int(t.transform_type)) and t.transform_id != DhGroup.NONE)


def _is_additional(ttype: int) -> bool:
    # RFC 9370 §2.2.1: Additional Key Exchange 1..7 are transform types 6..12
    return 6 <= ttype <= 12


def _format_entry(entry: _Algo) -> str:
    name = _CANONICAL.get(entry)
    if name is not None:
        return name
    if 6 <= entry[0] <= 12:
        base = _CANONICAL.get((_DH, entry[1], 0))
        if base is not None:
            return f"ke{entry[0] - _DH - 1}_{base}"
    ttype, tid, key_length = entry
    try:
        prefix = TransformType(ttype).name
    except ValueError:
        prefix = f"TRANSFORM{ttype}"
    return f"{prefix}({tid})" + (f"_{key_length}" if key_length else "")


def format_transform(transform: Transform) -> str:
    """strongSwan's keyword for one transform (`aes128gcm16`, `prfsha256`, `x25519`, `noesn`),
    or e.g. `ENCR(99)` / `ENCR(12)_64` when no keyword names that id and key length."""
    return _format_entry((int(transform.transform_type), int(transform.transform_id),
                          transform.key_length or 0))


def format_proposal(proposal: Proposal, *, explicit: bool = False) -> str:
    """The proposal as strongSwan keywords: encryption, integrity, PRF, DH, ESN.

    Unless `explicit`, what parsing would add back is left out: PRFs of an IKE proposal that
    equal those derived from its integrity algorithms, and a lone `noesn` in ESP/AH.
    """
    entries = _entries(proposal)
    protocol = proposal.protocol_id
    others = sorted({e[0] for e in entries if e[0] not in _TEXT_ORDER})
    parts: list[str] = []
    for ttype in [*_TEXT_ORDER, *others]:
        group = _of(entries, ttype)
        if not explicit:
            if ttype == _PRF and protocol == ProtocolId.IKE and group and group == _derived_prfs(entries):
                continue
            if ttype == _ESN and protocol in (ProtocolId.ESP, ProtocolId.AH) and group == [(_ESN, EsnId.NO_ESN, 0)]:
                continue
        parts.extend(_format_entry(e) for e in group)
    return "-".join(parts)


def format_proposals(proposals: Iterable[Proposal], *, explicit: bool = False) -> str:
    """Proposals as a swanctl.conf list value: `a-b-c, d-e`."""
    return ", ".join(format_proposal(p, explicit=explicit) for p in proposals)


def _is_ke_type(ttype: int) -> bool:
    # RFC 9370: Additional Key Exchange 1..7 are transform types 6..12
    return ttype == _DH or 6 <= ttype <= 12


def _select_algo(mine: list[tuple[int, int]], theirs: list[tuple[int, int]], optional: bool,
                 skip_private: bool) -> tuple[bool, tuple[int, int] | None]:
    # strongSwan proposal.c select_algo
    if not mine or not theirs:
        present = mine or theirs
        if not present:
            return True, None
        return (optional and any(alg == 0 for alg, _ in present)), None
    for alg, key_length in mine:
        if skip_private and alg >= 1024:
            continue
        if (alg, key_length) in theirs:
            return True, (alg, key_length)
    return False, None


def _select_algos(this: Proposal, other: Proposal, skip_dh: bool, skip_private: bool) -> list[_Algo] | None:
    # strongSwan proposal.c select_algos
    mine_all, theirs_all = _entries(this), _entries(other)
    present = {e[0] for e in mine_all} | {e[0] for e in theirs_all}
    types = [t for t in _TEXT_ORDER if t in present] + sorted(present - set(_TEXT_ORDER))
    protocol = this.protocol_id
    chosen: list[_Algo] = []
    skip_integrity = False
    for ttype in types:
        if ttype == _INTEG and skip_integrity:
            continue
        if skip_dh and _is_ke_type(ttype):
            continue
        # strongSwan proposal.c select_algo: KE is optional in ESP/AH (NONE offered means "no PFS is fine")
        optional = _is_ke_type(ttype) and (protocol in (ProtocolId.ESP, ProtocolId.AH) or ttype != _DH)
        mine = [(e[1], e[2]) for e in mine_all if e[0] == ttype]
        theirs = [(e[1], e[2]) for e in theirs_all if e[0] == ttype]
        found, pick = _select_algo(mine, theirs, optional, skip_private)
        if not found:
            return None
        if pick is None or (pick[0] == 0 and ttype != _ESN):
            continue
        chosen.append((ttype, *pick))
        if ttype == _ENCR and is_aead(pick[0]):
            skip_integrity = True
    return chosen


# RFC 8247 §2.4 (MODP-768 MUST NOT, MODP-1024 SHOULD NOT), §2.1 (3DES SHOULD NOT, DES MUST NOT)
_WEAK_DH = {1: "MODP-768", 2: "MODP-1024"}
_WEAK_ENCR = {2: "DES", 3: "3DES"}


def deprecated_only(remote: Sequence[Proposal]) -> str | None:
    """Why an IKE offer was refused when every proposal in it leans on what RFC 8247 deprecates
    (only weak key exchange groups, or only weak ciphers): a sentence, else None."""
    def weak(proposal: Proposal, ttype: int, names: dict[int, str]) -> list[str] | None:
        ids = [t.transform_id for t in proposal.transforms if t.transform_type == ttype]
        return [names[i] for i in ids] if ids and all(i in names for i in ids) else None

    ike = [p for p in remote if p.protocol_id == ProtocolId.IKE]
    if not ike:
        return None
    groups = [weak(p, TransformType.DH, _WEAK_DH) for p in ike]
    if all(groups):
        found = sorted({g for gs in groups if gs for g in gs})
        return (f"the peer offers only {', '.join(found)} key exchange, which RFC 8247 §2.4 deprecates; "
                f"a gateway takes it only when its proposals name it")
    ciphers = [weak(p, TransformType.ENCR, _WEAK_ENCR) for p in ike]
    if all(ciphers):
        found = sorted({c for cs in ciphers if cs for c in cs})
        return (f"the peer offers only {', '.join(found)} encryption, which RFC 8247 §2.1 deprecates; "
                f"a gateway takes it only when its proposals name it")
    return None


def select_proposal(local: Sequence[Proposal], remote: Sequence[Proposal], prefer_local: bool = True, *,
                    skip_dh: bool = False, skip_private: bool = False) -> Proposal | None:
    """The proposal a responder with `local` proposals accepts from `remote` ones, or None.

    Walks the preferred side's proposals in order (local ones unless `prefer_local` is False,
    strongSwan's `prefer_configured_proposals`), pairs each with the other side's proposals of
    the same protocol, and takes the first pair with a common algorithm for every transform
    type; within a type the preferred side's order wins. The result holds one transform per
    type plus the remote proposal's number and SPI (RFC 7296 §3.3.1). `skip_dh` ignores DH
    transforms (the child SA of IKE_AUTH, RFC 7296 §1.2); `skip_private` refuses private-use
    algorithm ids (>= 1024), as strongSwan does with peers that are not strongSwan.
    """
    # strongSwan proposal.c proposal_select
    prefer, match = (local, remote) if prefer_local else (remote, local)
    for this in prefer:
        for other in match:
            if int(this.protocol_id) != int(other.protocol_id):
                continue
            chosen = _select_algos(this, other, skip_dh, skip_private)
            if chosen is None:
                continue
            theirs = other if prefer_local else this
            return _build_proposal(theirs.number, theirs.protocol_id, theirs.spi, chosen)
    return None


def proposal_dh_groups(proposal: Proposal) -> list[int]:
    """The DH groups of a proposal in preference order, without NONE."""
    return [coerce(DhGroup, int(t.transform_id)) for t in proposal.transforms
            if t.transform_type == _DH and t.transform_id != DhGroup.NONE]


def initiator_dh_group(proposals: Sequence[Proposal]) -> int | None:
    """The group an initiator sends its KE payload for: the first DH transform of the first
    proposal that has one (strongSwan ike_cfg/child_cfg get_dh_group); None if that is NONE."""
    for proposal in proposals:
        for t in proposal.transforms:
            if t.transform_type == _DH:
                return None if t.transform_id == DhGroup.NONE else coerce(DhGroup, int(t.transform_id))
    return None


def promote_dh_group(proposals: Sequence[Proposal], group: int) -> list[Proposal]:
    """Proposals to resend after INVALID_KE_PAYLOAD named `group` (RFC 7296 §1.3): `group` moved
    to the front of each proposal holding it, proposals without it moved to the back, renumbered
    1..n (strongSwan ike_init.c build_payloads with promote_transform). Inputs are not changed."""
    holding, others = [], []
    for proposal in proposals:
        dh = [t for t in proposal.transforms if t.transform_type == _DH and t.transform_id == group]
        if dh:
            rest = [t for t in proposal.transforms if not (t.transform_type == _DH and t.transform_id == group)]
            entries = [(_DH, int(group), 0)] + [(int(t.transform_type), int(t.transform_id), t.key_length or 0)
                                                for t in rest]
            ordered = sorted(entries, key=lambda e: _wire_rank(e[0]))
            holding.append((proposal, ordered))
        else:
            others.append((proposal, _entries(proposal)))
    return [_build_proposal(number, p.protocol_id, p.spi, entries)
            for number, (p, entries) in enumerate(holding + others, 1)]


def invalid_ke_group(selected: Proposal, ke_group: int | None) -> int | None:
    """The group a responder names in INVALID_KE_PAYLOAD, or None when the KE payload's group
    (None: no KE payload) is the selected proposal's, or the proposal has no DH (RFC 7296 §1.3, §2.7)."""
    groups = proposal_dh_groups(selected)
    if not groups or (ke_group is not None and int(ke_group) in groups):
        return None
    return groups[0]


def responder_dh_group(local: Sequence[Proposal], remote: Sequence[Proposal], ke_group: int | None,
                       prefer_local: bool = True, *, skip_private: bool = False) -> int | None:
    """`invalid_ke_group` for the proposal `select_proposal` picks; None also when nothing matches
    (that is NO_PROPOSAL_CHOSEN, not INVALID_KE_PAYLOAD)."""
    selected = select_proposal(local, remote, prefer_local, skip_private=skip_private)
    return None if selected is None else invalid_ke_group(selected, ke_group)


@dataclass(frozen=True)
class ChosenAlgorithms:
    """The algorithms of a selected proposal, one per transform type (None where absent)."""

    protocol: int
    number: int
    spi: bytes
    encr: int | None
    encr_key_length: int | None
    prf: int | None
    integ: int | None
    dh: int | None
    esn: bool
    # RFC 9370 §2.2.2: (transform type, method) of each additional key exchange, in the order they run
    additional: tuple[tuple[int, int], ...] = ()

    @property
    def aead(self) -> bool:
        return self.encr is not None and is_aead(self.encr)

    @classmethod
    def from_proposal(cls, proposal: Proposal) -> ChosenAlgorithms:
        """Raises ProposalError unless the proposal holds at most one transform per type."""
        by_type: dict[int, Transform] = {}
        for t in proposal.transforms:
            ttype = int(t.transform_type)
            if ttype in by_type:
                raise ProposalError(f"proposal {proposal.number} holds more than one {_format_type(ttype)} "
                                    f"transform; select_proposal() first",
                                    text=format_proposal(proposal), protocol=int(proposal.protocol_id))
            by_type[ttype] = t

        def tid(ttype: int) -> int | None:
            t = by_type.get(ttype)
            return None if t is None else coerce(_ID_ENUMS[ttype], int(t.transform_id))

        encr = by_type.get(_ENCR)
        esn = by_type.get(_ESN)
        return cls(
            protocol=coerce(ProtocolId, int(proposal.protocol_id)),
            number=proposal.number,
            spi=proposal.spi,
            encr=tid(_ENCR),
            encr_key_length=None if encr is None else encr.key_length,
            prf=tid(_PRF),
            integ=None if by_type.get(_INTEG) is None or by_type[_INTEG].transform_id == IntegId.NONE else tid(_INTEG),
            dh=None if by_type.get(_DH) is None or by_type[_DH].transform_id == DhGroup.NONE else tid(_DH),
            esn=esn is not None and esn.transform_id == EsnId.ESN,
            additional=tuple((ttype, coerce(DhGroup, method)) for ttype, method in additional_key_exchanges(proposal)),
        )

    def __str__(self) -> str:
        parts = []
        for ttype, value, key_length in ((_ENCR, self.encr, self.encr_key_length or 0), (_INTEG, self.integ, 0),
                                         (_PRF, self.prf, 0), (_DH, self.dh, 0)):
            if value is not None:
                parts.append(_format_entry((ttype, int(value), key_length)))
        parts += [_format_entry((ttype, int(method), 0)) for ttype, method in self.additional]
        if self.protocol in (ProtocolId.ESP, ProtocolId.AH):
            parts.append("esn" if self.esn else "noesn")
        return "-".join(parts)


def _format_type(ttype: int) -> str:
    try:
        return TransformType(ttype).name
    except ValueError:
        return f"type {ttype}"
