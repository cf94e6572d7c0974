"""Trace records, charon log lines and captured packets on one time axis (Unix epoch
seconds, the clock of pcap timestamps and of the trace's "wall")."""
from __future__ import annotations

import datetime
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.runfolder import TraceRecord, read_trace

from .analysis import CaptureAnalysis

# "2026-12-01 10:02:03.123 ...", "Dec  1 10:02:03.123 ..." (syslog style) or "10:02:03.123 ..."
_CHARON_TIME = re.compile(r"^(?:(?P<year>\d{4})-(?P<month>\d{2})-(?P<mday>\d{2})\s+|"
                          r"(?P<mon>[A-Z][a-z]{2})\s+(?P<day>\d{1,2})\s+)?"
                          r"(?P<h>\d{2}):(?P<m>\d{2}):(?P<s>\d{2})(?:\.(?P<frac>\d{1,6}))?\s+(?P<rest>.*)$")
_MONTHS = {m: i for i, m in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), start=1)}


@dataclass
class TimelineEntry:
    wall: float
    source: str        # "trace", "charon", "capture"
    node: str          # gateway or capture name
    text: str
    record: Any = field(default=None, repr=False)


def charon_time(line: str, reference: float) -> tuple[float, str] | None:
    """(wall time, the rest of the line) of a charon log line, local time, on the day of
    `reference` (or the day before/after, whichever is nearest)."""
    match = _CHARON_TIME.match(line)
    if match is None:
        return None
    ref = datetime.datetime.fromtimestamp(reference)
    year = int(match["year"]) if match["year"] else ref.year
    month = int(match["month"]) if match["month"] else _MONTHS.get(match["mon"] or "", ref.month)
    day = int(match["mday"] or match["day"] or ref.day)
    frac = float("0." + match["frac"]) if match["frac"] else 0.0
    try:
        stamp = datetime.datetime(year, month, day, int(match["h"]), int(match["m"]), int(match["s"]))
    except ValueError:
        return None
    wall = time.mktime(stamp.timetuple()) + frac
    if match["year"]:
        return wall, match["rest"]
    for shift in (-86400.0, 86400.0):
        if abs(wall + shift - reference) < abs(wall - reference):
            wall += shift
    return wall, match["rest"]


def read_charon_log(path: str | Path, reference: float, node: str = "") -> list[TimelineEntry]:
    entries = []
    for line in Path(path).read_text(errors="replace").splitlines():
        parsed = charon_time(line, reference)
        if parsed is not None:
            entries.append(TimelineEntry(parsed[0], "charon", node, parsed[1]))
    return entries


def _trace_text(record: TraceRecord) -> str:
    kind = record.get("kind")
    if kind == "message":
        arrow = "->" if record.get("dir") == "out" else "<-"
        what = "response" if record.get("response") else "request"
        return f"{arrow} {record.get('exchange')} {what} {record.get('message_id')} [ {' '.join(record.get('payloads', []))} ]"
    if kind == "event":
        return str(record.get("event"))
    if kind == "note":
        return f"note {record.get('what')}"
    return str(kind)


def merge_timeline(traces: Iterable[TraceRecord] = (), charon_logs: dict[str, str | Path] | None = None,
                   captures: Iterable[CaptureAnalysis] = ()) -> list[TimelineEntry]:
    """One list, ordered by wall-clock time: trace records (those with "wall"), charon log
    lines (dated from the earliest other entry) and captured packets."""
    entries: list[TimelineEntry] = []
    for record in traces:
        if isinstance(record.get("wall"), (int, float)):
            entries.append(TimelineEntry(float(record["wall"]), "trace", record.get("node", ""), _trace_text(record),
                                         record))
    for capture in captures:
        for packet in capture.packets:
            entries.append(TimelineEntry(packet.time, "capture", capture.name, packet.what(), packet))
    reference = min((e.wall for e in entries), default=time.time())
    for node, path in (charon_logs or {}).items():
        entries += read_charon_log(path, reference, node)
    entries.sort(key=lambda e: e.wall)
    return entries


__all__ = ["TimelineEntry", "charon_time", "merge_timeline", "read_charon_log", "read_trace"]
