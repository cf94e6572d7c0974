"""Trace records as one line each, in the spirit of strongSwan's log."""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any


def narrate(record: dict[str, Any]) -> str | None:
    kind = record.get("kind")
    sa = f"#{record['ike_sa']}" if record.get("ike_sa") is not None else "#-"
    if kind == "message":
        verb = "sending" if record["dir"] == "out" else "received"
        arrow = "->" if record["dir"] == "out" else "<-"
        peer = record["dst"] if record["dir"] == "out" else record["src"]
        what = "response" if record["response"] else "request"
        frag = f" in {record['fragments']} fragments" if record.get("fragments", 1) > 1 else ""
        chain = " ".join(record["payloads"])
        if record.get("encrypted"):
            chain = f"SK{{ {chain} }}" if chain else "SK{ }"
        return (f"[IKE] {sa} {verb} {record['exchange']} {what} {record['message_id']} [ {chain} ] "
                f"{arrow} {peer}{frag}")
    if kind == "event":
        name = record["event"]
        if name == "IkeSaUp":
            nat = []
            if record.get("local_behind_nat"):
                nat.append("local host is behind NAT")
            if record.get("remote_behind_nat"):
                nat.append("remote host is behind NAT")
            return (f"[IKE] {sa} IKE_SA {record['name']} established between {record['local'][0]}[{record['local_id']}]"
                    f"...{record['remote'][0]}[{record['remote_id']}] ({record['algorithms']})"
                    + (f", {', '.join(nat)}" if nat else ""))
        if name == "ChildSaUp":
            return (f"[CHD] {sa} CHILD_SA {record['name']} established with SPIs {record['spi_in']}_i "
                    f"{record['spi_out']}_o ({record['algorithms']}, {record['mode']}"
                    f"{', UDP-encapsulated' if record.get('encap') else ''}) and TS "
                    f"{' '.join(record['local_ts'])} === {' '.join(record['remote_ts'])}")
        if name == "ChildSaDeleted":
            return f"[CHD] {sa} CHILD_SA {record['name']} {record['spi_in']}_i deleted: {record['reason']}"
        if name == "ChildSaRekeyed":
            return (f"[CHD] {sa} CHILD_SA {record['name']} rekeyed: {record['old_spi_in']}_i -> "
                    f"{record['new_spi_in']}_i")
        if name == "IkeSaDeleted":
            return f"[IKE] {sa} IKE_SA {record['name']} deleted: {record['reason']}"
        if name == "IkeSaRekeyed":
            return f"[IKE] {sa} IKE_SA rekeyed into #{record['new_ike_sa']}"
        if name == "AuthFailed":
            side = "peer rejected our authentication" if record["by_peer"] else "authentication of the peer failed"
            return f"[IKE] {sa} {side}: {record['reason']}"
        if name == "NegotiationFailed":
            return f"[IKE] {sa} {record['exchange']} failed: {record['reason']}"
        if name == "AddressesUpdated":
            return (f"[IKE] {sa} MOBIKE: IPsec SAs moved to {record['local'][0]}:{record['local'][1]} - "
                    f"{record['remote'][0]}:{record['remote'][1]}{', UDP-encapsulated' if record.get('encap') else ''}"
                    f" ({record.get('reason')})")
        if name == "PeerUnreachable":
            return f"[IKE] {sa} giving up after {record['tries']} tries of {record['exchange']}: peer unreachable"
        return None
    if kind == "retransmit":
        return f"[IKE] {sa} retransmit {record['tries']} of {record['exchange']} request {record['message_id']}"
    if kind == "drop":
        return f"[NET] {sa} dropped: {record['reason']}"
    if kind == "note" and record.get("what") == "radius":
        # strongSwan's eap-radius says it in these words
        if record.get("dir") == "out":
            return f"[CFG] {sa} sending RADIUS Access-Request to server '{record.get('server')}'"
        return f"[CFG] {sa} received RADIUS {record.get('code')} from server '{record.get('server')}'"
    if kind == "note" and record.get("what") in ("nat_detection", "invalid_ke", "rekey_collision",
                                                  "ike_rekey_collision", "peer_address_changed",
                                                  "local_address_changed", "mobike_update", "update_sa_addresses",
                                                  "return_routability_check", "return_routability_ok",
                                                  "nat_mapping_changed", "reauthenticate", "no_path",
                                                  "peer_addresses", "cookie2_mismatch",
                                                  "mobike_unacceptable_addresses", "additional_ke", "keys_updated",
                                                  "followup_ke", "followup_ke_refused", "ike_intermediate_refused",
                                                  "ike_rekey_refused"):
        details = ", ".join(f"{k}={v}" for k, v in record.items() if k not in ("t", "wall", "kind", "ike_sa", "what"))
        return f"[IKE] {sa} {record['what'].replace('_', ' ')}: {details}"
    return None


_VARIABLE = re.compile(r"\b[0-9a-f]{8,}\b|\d+")


def line_kind(line: str) -> str:
    """What a log line says with its numbers, SPIs and addresses taken out: lines of one kind
    differ only in those."""
    return _VARIABLE.sub("N", line)


def record_line_kind(record: dict[str, Any], line: str) -> Any:
    """`line_kind` of the line `narrate` made of `record`, for a message read off the record
    (its numbers and addresses aside, a message's line is its direction, exchange and chain)."""
    if record.get("kind") == "message":
        return ("message", record["dir"], record["exchange"], record["response"], record.get("encrypted"),
                record.get("fragments", 1) > 1, tuple(record["payloads"]))
    return line_kind(line)


class Summariser:
    """Repeated log lines summarised: of each kind of line (`line_kind`), the first `burst` in
    a window of `window` seconds are written, the rest only counted; when the window ends one
    line says how many more there were ("... 1234 more like this in the last 10 s"). A flood of
    a million requests then writes a few lines every `window` seconds, not a million.

    Other items than lines (trace records) are summarised alike with their own `kind` and
    `summary(first item, how many more, seconds)`."""

    def __init__(self, burst: int = 10, window: float = 10.0,
                 summary: Callable[[Any, int, float], Any] | None = None) -> None:
        self.burst = burst
        self.window = window
        self.summary = summary or (lambda first, more, span: f"{first} ... {more} more like this in the last "
                                                              f"{span:.0f} s")
        self.windows: dict[Any, list] = {}  # kind -> [window start, items seen, first item]
        self.next_end = float("inf")
        self.next_due = float("inf")  # the earliest end of a window with items held back

    def add(self, item: Any, now: float, kind: Any = None) -> list[Any]:
        """What to write now for `item` arriving at `now`: the summaries of windows that have
        ended, then the item itself unless its kind is past its burst."""
        out = self.flush(now) if now >= self.next_end else []
        kind = line_kind(item) if kind is None else kind
        window = self.windows.get(kind)
        if window is None:
            window = self.windows[kind] = [now, 0, item]
            self.next_end = min(self.next_end, now + self.window)
        window[1] += 1
        if window[1] <= self.burst:
            out.append(item)
        elif window[1] == self.burst + 1:
            self.next_due = min(self.next_due, window[0] + self.window)
        return out

    @property
    def held(self) -> int:
        """Items held back (counted, not written) in the windows still open."""
        return sum(max(0, seen - self.burst) for _, seen, _ in self.windows.values())

    def due(self) -> float | None:
        """When the next summary is due (a window with items held back ends)."""
        return self.next_due if self.next_due != float("inf") else None

    def flush(self, now: float, everything: bool = False) -> list[Any]:
        """Summaries of the windows that ended by `now` (of all of them with `everything`)."""
        out = []
        self.next_end = self.next_due = float("inf")
        for kind, (start, seen, first) in list(self.windows.items()):
            if everything or now >= start + self.window:
                del self.windows[kind]
                if seen > self.burst:
                    out.append(self.summary(first, seen - self.burst, min(self.window, max(now - start, 0.0))))
            else:
                self.next_end = min(self.next_end, start + self.window)
                if seen > self.burst:
                    self.next_due = min(self.next_due, start + self.window)
        return out
