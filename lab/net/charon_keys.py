"""Wireshark key tables for strongSwan's SAs, read from charon's own log.

Debian's charon has no save-keys plugin, but with `ike = 4` and `chd = 4` it logs every key it
derives as a hex dump (lab.net.strongswan.KEY_EXPORT_LOG_LEVELS):

    14[IKE] <s2s|1> Sk_ei secret => 20 bytes @ 0x...
    14[IKE] <s2s|1>    0: 26 5A B0 7C 71 EE 24 D7 B9 48 3B 90 61 CA 4D 11  &Z.|q.$..H;.a.M.
    14[IKE] <s2s|1> IKE_SA s2s[1] state change: CONNECTING => ESTABLISHED
    11[CHD] <s2s|1>   using AES_CBC for encryption
    11[CHD] <s2s|1> encryption initiator key => 16 bytes @ 0x...
    11[CHD] <s2s|1> adding inbound ESP SA
    11[CHD] <s2s|1>   SPI 0x38bac041, src 198.51.100.2 dst 192.0.2.2

With additional key exchanges (strongSwan 6, RFC 9370) the keys are derived after IKE_SA_INIT
and again after each IKE_INTERMEDIATE exchange, each time perhaps by another worker thread: the
last set before IKE_AUTH is the IKE SA's (Wireshark's table holds one set per SA, the one
IKE_AUTH and everything after it use).
A set of Sk_* keys belongs to the IKE SA whose "CONNECTING => ESTABLISHED" the same worker
thread logs next, before it generates its next message (a rekey logs the new SA's keys under
the old SA's prefix); failing that, to the IKE SA of its prefix (an initiator derives its keys
on the IKE_SA_INIT response and is established only after IKE_AUTH). IKE SPIs are not in the
log; the caller gives them by IKE SA number (VICI list-sas). A responder that rekeys a CHILD_SA
installs its outbound SA later, when the old one is deleted: such an SPI takes the keys of the
newest CHILD_SA of its IKE SA still waiting for its outbound half.
A CHILD_SA's keys go by direction (RFC 7296 §2.17): the initiator's keys protect what the
initiator of the exchange that made the SA sends; the role is read from the exchange lines.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from lab.iana import EncrId, IntegId
from lab.ike.wireshark import ESP_ENCR_NAMES, ESP_INTEG_NAMES, IKE_ENCR_NAMES, IKE_INTEG_NAMES

LINE = re.compile(r"^\S+ \S+ (?P<thread>\d+)\[(?P<group>\w+)\] (?:<(?P<prefix>[^>]*)> )?(?P<text>.*)$")
IKE_KEY = re.compile(r"^(Sk_e[ir]|Sk_a[ir]) secret => (\d+) bytes @")
CHILD_KEY = re.compile(r"^(encryption|integrity) (initiator|responder) key => (\d+) bytes @")
HEX = re.compile(r"^\s*\d+: ((?:[0-9A-F]{2} )*[0-9A-F]{2})")
ESTABLISHED = re.compile(r"IKE_SA \S+\[(\d+)\] state change: CONNECTING => ESTABLISHED")
USING = re.compile(r"^using (\S+) for (encryption|integrity)")
ADDING = re.compile(r"^adding (inbound|outbound) (ESP|AH) SA")
SPI = re.compile(r"^SPI 0x([0-9a-f]{8}), src (\S+) dst (\S+)")
EXCHANGE = re.compile(r"^(generating|parsed) (IKE_AUTH|CREATE_CHILD_SA) (request|response)")


@dataclass
class ChildKey:
    spi: str            # 8 hex digits
    src: str
    dst: str
    encr: str           # charon's name, e.g. AES_GCM_16
    integ: str | None
    encr_key: bytes
    integ_key: bytes


@dataclass
class CharonKeys:
    ike: dict[int, dict[str, bytes]] = field(default_factory=dict)  # IKE SA number -> Sk_ei, Sk_er, Sk_ai, Sk_ar
    children: list[ChildKey] = field(default_factory=list)


def _number(prefix: str) -> int | None:
    tail = prefix.rsplit("|", 1)[-1]
    return int(tail) if tail.isdigit() else None


def parse(text: str) -> CharonKeys:
    found = CharonKeys()
    pending_ike: dict[str, tuple[dict[str, bytes], int | None]] = {}  # thread -> (Sk_*, prefix's SA number)
    dumping: dict[str, tuple[str, int, bytearray, dict]] = {}          # thread -> (name, length, bytes, where)
    algorithms: dict[str, dict[str, str]] = {}                         # thread -> using ... for ...
    child_keys: dict[str, dict[str, bytes]] = {}                       # thread -> encryption initiator ... keys
    adding: dict[str, str] = {}                                        # thread -> inbound | outbound
    initiator: dict[int | None, bool] = {}                             # IKE SA -> we started its last exchange
    waiting: dict[int | None, list[tuple[dict[str, bytes], dict[str, str], bool]]] = {}  # IKE SA -> no outbound yet

    def settle(thread: str, number: int | None) -> None:
        keys, own = pending_ike.pop(thread)
        if number is None:
            number = own
        if number is not None and keys:
            found.ike[number] = keys

    for raw in text.splitlines():
        match = LINE.match(raw)
        if not match:
            continue
        thread, body = match["thread"], match["text"]
        prefix = match["prefix"] or ""
        sa_number = _number(prefix)  # "<1>" before the connection is known, "<rw|1>" after: the same SA
        if thread in dumping:
            name, length, data, where = dumping[thread]
            hexed = HEX.match(body)
            if hexed:
                data += bytes.fromhex(hexed.group(1).replace(" ", ""))
                if len(data) >= length:
                    where[name] = bytes(data[:length])
                    del dumping[thread]
                continue
            del dumping[thread]  # a dump cut short: the key is not taken
        line = body.strip()
        key = IKE_KEY.match(line)
        if key:
            if thread not in pending_ike:
                # RFC 9370 §2.2.2: after each IKE_INTERMEDIATE the keys are derived again, often by
                # another worker thread; a newer set for the same IKE SA replaces the older one
                for other, (_keys, own) in list(pending_ike.items()):
                    if own is not None and own == sa_number:
                        del pending_ike[other]
                        dumping.pop(other, None)
                pending_ike[thread] = ({}, _number(prefix))
            dumping[thread] = (key.group(1), int(key.group(2)), bytearray(), pending_ike[thread][0])
            continue
        key = CHILD_KEY.match(line)
        if key:
            dumping[thread] = (f"{key.group(1)} {key.group(2)}", int(key.group(3)), bytearray(),
                               child_keys.setdefault(thread, {}))
            continue
        established = ESTABLISHED.search(line)
        if established and thread in pending_ike:
            settle(thread, int(established.group(1)))
            continue
        exchange = EXCHANGE.match(line)
        if exchange:
            if thread in pending_ike and exchange.group(1) == "generating":
                settle(thread, None)
            sent, kind = exchange.group(1) == "generating", exchange.group(3)
            initiator[sa_number] = (sent and kind == "request") or (not sent and kind == "response")
            continue
        using = USING.match(line)
        if using:
            algorithms.setdefault(thread, {})[using.group(2)] = using.group(1)
            continue
        add = ADDING.match(line)
        if add:
            adding[thread] = add.group(1) if add.group(2) == "ESP" else ""
            continue
        spi = SPI.match(line)
        if not spi or not adding.get(thread):
            continue
        direction, adding[thread] = adding[thread], ""
        if thread in child_keys and "encryption" in algorithms.get(thread, {}):
            keys, algos = child_keys.pop(thread), dict(algorithms.get(thread, {}))
            entry = (keys, algos, initiator.get(sa_number, True))
            if direction == "inbound":
                waiting.setdefault(sa_number, []).append(entry)
        elif direction == "outbound" and waiting.get(sa_number):
            entry = waiting[sa_number][-1]
        else:
            continue
        keys, algos, we_initiated = entry
        if direction == "outbound" and entry in waiting.get(sa_number, []):
            waiting[sa_number].remove(entry)
        # RFC 7296 §2.17: the exchange initiator's keys protect its own outbound traffic
        ours = "initiator" if we_initiated else "responder"
        side = ours if direction == "outbound" else ("responder" if ours == "initiator" else "initiator")
        found.children.append(ChildKey(spi.group(1), spi.group(2), spi.group(3), algos["encryption"],
                                       algos.get("integrity"), keys.get(f"encryption {side}", b""),
                                       keys.get(f"integrity {side}", b"")))
    for thread in list(pending_ike):
        settle(thread, None)
    return found


def _encr_id(name: str) -> EncrId | None:
    try:
        return EncrId[name]
    except KeyError:
        return None


def _integ_id(name: str | None) -> IntegId | None:
    if not name:  # AEAD: no integrity transform
        return IntegId.NONE
    try:
        return IntegId[name]
    except KeyError:
        return None


def ike_lines(keys: CharonKeys, sas: dict[int, dict[str, str]]) -> list[str]:
    """ikev2_decryption_table lines for the IKE SAs of `sas` (number -> VICI list-sas fields:
    initiator-spi, responder-spi, encr-alg, encr-keysize, integ-alg) whose keys the log holds."""
    lines = []
    for number, sa in sorted(sas.items()):
        sk = keys.ike.get(number)
        encr = _encr_id(sa.get("encr-alg", ""))
        integ = _integ_id(sa.get("integ-alg"))
        if not sk or encr is None or integ is None:
            continue
        encr_name = IKE_ENCR_NAMES.get((encr, int(sa.get("encr-keysize", 0) or 0)))
        integ_name = IKE_INTEG_NAMES.get(integ)
        if encr_name is None or integ_name is None:
            continue
        lines.append(",".join([sa["initiator-spi"], sa["responder-spi"], sk.get("Sk_ei", b"").hex(),
                               sk.get("Sk_er", b"").hex(), f'"{encr_name}"', sk.get("Sk_ai", b"").hex(),
                               sk.get("Sk_ar", b"").hex(), f'"{integ_name}"']))
    return lines


def esp_lines(keys: CharonKeys) -> list[str]:
    """esp_sa lines for every ESP SA the log holds (wildcard addresses, as ours are written)."""
    lines = []
    for child in keys.children:
        encr, integ = _encr_id(child.encr), _integ_id(child.integ)
        encr_name = ESP_ENCR_NAMES.get(encr) if encr is not None else None
        integ_name = ESP_INTEG_NAMES.get(integ) if integ is not None else None
        if encr_name is None or integ_name is None:
            continue
        family = "IPv6" if ":" in child.src else "IPv4"
        lines.append(",".join(f'"{v}"' for v in (family, "*", "*", f"0x{child.spi}", encr_name,
                                                   f"0x{child.encr_key.hex()}", integ_name,
                                                   f"0x{child.integ_key.hex()}" if child.integ_key else "")))
    return lines
