"""The rekey timeline: every SA of a capture over time (CHILD SAs one row per SPI, that is
per direction, and IKE SAs by their SPI pair), from the exchange that made it to the one
that deleted it, with its packets; where a rekey replaced an SA, the overlap of old and
new (make-before-break, RFC 7296 §2.8) or the gap between them.

SA births and deaths need the IKE keys (the SA and Delete payloads are inside SK); without
them the rows run from the first to the last packet seen on each SPI.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import matplotlib.ticker

from lab.ike.const import ProtocolId

from .analysis import CaptureAnalysis, IkeInfo, Packet
from .style import (
    FONT,
    LABEL_FONT,
    MIN_FONT,
    MONO,
    OKABE_ITO,
    PALETTE,
    SLIDE_HEIGHT,
    TITLE_FONT,
    WIDTH,
    Figure,
    new_figure,
    new_slide,
    save,
    styled,
    wrap,
)


@dataclass
class SaSpan:
    kind: str                    # "ESP", "AH", "IKE"
    spi: str                     # hex (IKE: "spi_i/spi_r" abbreviated)
    towards: str                 # the address packets on this SPI go to ("" for IKE SAs)
    born: float | None = None    # the response that completed the exchange creating it
    died: float | None = None    # the response that completed its deletion
    packets: list[float] = field(default_factory=list)
    replaces: str | None = None  # SPI of the SA it rekeyed (same direction)
    generation: int = 0

    @property
    def first(self) -> float | None:
        return self.packets[0] if self.packets else None

    @property
    def last(self) -> float | None:
        return self.packets[-1] if self.packets else None

    def start(self) -> float | None:
        return self.born if self.born is not None else self.first

    def end(self, default: float) -> float:
        return self.died if self.died is not None else (self.last if self.born is None and self.last else default)


@dataclass
class Handover:
    old: SaSpan
    new: SaSpan
    overlap: float               # seconds both were installed (negative: a gap without an SA)
    traffic_gap: float | None    # last packet on the old SPI to the first on the new one


@dataclass
class RekeyTimeline:
    spans: list[SaSpan]
    handovers: list[Handover]
    start: float
    end: float
    title: str
    from_keys: bool


def sa_spans(capture: CaptureAnalysis) -> RekeyTimeline:
    spans: dict[str, SaSpan] = {}
    requests: dict[tuple[str, str, int, bool], tuple[Packet, IkeInfo]] = {}
    order: list[SaSpan] = []

    def span(kind: str, spi: str, towards: str) -> SaSpan:
        if spi not in spans:
            spans[spi] = SaSpan(kind, spi, towards)
            order.append(spans[spi])
        return spans[spi]

    from_keys = False
    for packet in capture.packets:
        ike = packet.ike
        if ike is not None and not ike.error:
            ike_spi = f"{ike.spi_i[:8]}../{ike.spi_r[:8]}.."
            if ike.spi_r != "0" * 16:
                s = span("IKE", ike_spi, "")
                s.packets.append(packet.time)
                if ike.exchange_name == "IKE_SA_INIT" and ike.response and s.born is None:
                    s.born = packet.time
            if packet.retransmission_of is not None or (ike.fragment and not ike.reassembled):
                continue
            key = (ike.spi_i, ike.spi_r, ike.message_id, ike.initiator if not ike.response else not ike.initiator)
            if not ike.response:
                requests[key] = (packet, ike)
                continue
            if key not in requests:
                continue
            request, asked = requests.pop(key)
            if asked.inner is None or ike.inner is None:
                continue
            from_keys = True
            mine, theirs = asked.child_spis(), ike.child_spis()
            if mine and theirs:
                # RFC 7296 §3.3.1: each side's SA payload carries the SPI it receives on
                kind = "AH" if mine[0][0] == ProtocolId.AH else "ESP"
                a = span(kind, mine[0][1].hex(), request.src)
                b = span(kind, theirs[0][1].hex(), packet.src)
                a.born = b.born = packet.time
                old = asked.rekeyed_spi()
                if old is not None and old.hex() in spans:
                    old_a = spans[old.hex()]
                    a.replaces = old_a.spi
                    partner = next((s for s in order if s.kind == old_a.kind and s.born == old_a.born and s is not old_a
                                    and s.towards != old_a.towards), None)
                    if partner is not None:
                        b.replaces = partner.spi
            new_i, new_r = asked.ike_spi(), ike.ike_spi()
            if new_i and new_r:
                # RFC 7296 §2.18: the SPIs of the new IKE SA, SPIi from the rekey's initiator
                s = span("IKE", f"{new_i.hex()[:8]}../{new_r.hex()[:8]}..", "")
                s.born = packet.time
                s.replaces = f"{ike.spi_i[:8]}../{ike.spi_r[:8]}.."
            for _protocol, spi in asked.deleted_spis() + ike.deleted_spis():
                if spi and spi.hex() in spans:
                    spans[spi.hex()].died = packet.time
            if any(p == ProtocolId.IKE for p, _ in asked.deleted_spis()):
                closed = spans.get(f"{ike.spi_i[:8]}../{ike.spi_r[:8]}..")
                if closed is not None:
                    closed.died = packet.time
                rekeyed = any(o.replaces == (closed.spi if closed else None) for o in order)
                if not rekeyed:
                    # RFC 7296 §1.4.1: deleting an IKE SA closes its CHILD SAs
                    for child in order:
                        if child.kind != "IKE" and child.born is not None and child.died is None:
                            child.died = packet.time
        elif packet.ipsec is not None:
            span(packet.ipsec.protocol, packet.ipsec.spi_hex, packet.dst).packets.append(packet.time)
    # a deleted CHILD SA's partner (the other direction) goes with it
    for s in order:
        if s.kind != "IKE" and s.died is None and s.born is not None:
            partner = next((o for o in order if o is not s and o.kind == s.kind and o.born == s.born and o.died), None)
            if partner is not None:
                s.died = partner.died
    times = [p.time for p in capture.packets if p.kind in ("ike", "esp", "ah")]
    start, end = (min(times), max(times)) if times else (0.0, 1.0)
    handovers = []
    for s in order:
        if s.replaces and s.replaces in spans:
            before = spans[s.replaces]
            overlap = (before.end(end) - s.born) if s.born is not None else 0.0
            gap = (s.first - before.last) if s.first is not None and before.last is not None else None
            handovers.append(Handover(before, s, overlap, gap))
    for s in order:
        if s.replaces and s.replaces in spans:
            s.generation = spans[s.replaces].generation + 1
    return RekeyTimeline(order, handovers, start, end, capture.title, from_keys)


# ---------------------------------------------------------------- drawing
#
# One slide: the whole run on the left; on the right the same rows zoomed to the first
# handover (or the first few, when they come close together), where old and new SAs are
# both installed for a few milliseconds: make-before-break is seen there, not on the left.

ROW = 0.48              # inches per row, at least (two lines of MIN_FONT)
MAX_NOTES = 4           # lines on the handovers under the panels
OVERLAP_COLOR = OKABE_ITO["yellow"]
GAP_COLOR = OKABE_ITO["black"]
IKE_COLOR = "#555555"


def _rows(timeline: RekeyTimeline) -> list[SaSpan]:
    return [s for s in timeline.spans if s.kind == "IKE"] + sorted(
        (s for s in timeline.spans if s.kind != "IKE"), key=lambda s: (s.towards, s.start() or 0))


def _span_color(s: SaSpan) -> str:
    return PALETTE[s.generation % (len(PALETTE) - 1)] if s.kind != "IKE" else IKE_COLOR  # yellow marks overlaps


def _born(h: Handover) -> float:
    """When the new SA of a handover came up (the callers keep the handovers whose new SA's
    birth is in the capture)."""
    if h.new.born is None:
        raise ValueError(f"the birth of the SA {h.new.spi} is not in the capture")
    return h.new.born


def _interval(h: Handover, end: float) -> tuple[float, float]:
    """From the new SA's birth to the old one's end (or the other way round: a gap)."""
    a, b = _born(h), h.old.end(end)
    return (a, b) if a <= b else (b, a)


MAX_ZOOMS = 2


@dataclass
class Zoom:
    """A stretch of the timeline drawn zoomed in: seconds since the first packet."""
    lo: float
    hi: float
    handovers: list[Handover]
    origin: float = 0.0          # the panel counts milliseconds from here: the first new SA's birth

    @property
    def what(self) -> str:
        kinds = {"IKE SA" if h.new.kind == "IKE" else "CHILD SA" for h in self.handovers}
        return " and ".join(sorted(kinds, reverse=True)) + (" rekeys" if len(kinds) > 1 else " rekey")


def _kinds(group: list[Handover]) -> set[str]:
    return {"IKE" if h.new.kind == "IKE" else "CHILD" for h in group}


def zoom_windows(timeline: RekeyTimeline) -> list[Zoom]:
    """The handovers in groups (those that follow within 50 ms, as long as the group spans at
    most four times its narrowest overlap or gap, 2 ms at least), each with room either side:
    what the zoomed panels show, MAX_ZOOMS groups in time order: the first, the first with a
    kind of rekey (CHILD SA, IKE SA) not shown yet, then the next ones."""
    handovers = sorted((h for h in timeline.handovers if h.new.born is not None), key=_born)
    t0 = timeline.start
    groups: list[list[Handover]] = []
    lo: float | None = None
    hi: float | None = None
    narrowest = 0.0
    for h in handovers:
        a, b = _interval(h, timeline.end)
        width = max(b - a, 0.002)
        # together only when close and when the panel stays narrow enough to show each overlap (or gap) wide
        if lo is None or hi is None or a - hi > 0.05 or max(hi, b) - min(lo, a) > 4 * min(narrowest, width):
            groups.append([])
            lo, hi, narrowest = a, b, width
        groups[-1].append(h)
        lo, hi, narrowest = min(lo, a), max(hi, b), min(narrowest, width)
    # the first group, then the first of a kind not shown yet (an IKE SA rekey after CHILD SA ones), then the next
    chosen: list[list[Handover]] = []
    for group in groups:
        if len(chosen) < MAX_ZOOMS and (not chosen or _kinds(group) - set().union(*map(_kinds, chosen))):
            chosen.append(group)
    chosen += [g for g in groups if g not in chosen][:MAX_ZOOMS - len(chosen)]
    zooms = []
    for group in sorted(chosen, key=groups.index):
        lo = min(_interval(h, timeline.end)[0] for h in group)
        hi = max(_interval(h, timeline.end)[1] for h in group)
        pad = max((hi - lo) * 0.6, 0.0015)
        zooms.append(Zoom(lo - t0 - pad, hi - t0 + pad, group, min(_born(h) for h in group) - t0))
    return zooms


def _draw_rows(ax, timeline: RekeyTimeline, rows: list[SaSpan], scale: float, origin: float = 0.0) -> None:
    """Bars, packet ticks and handover shading; x in seconds times `scale` since `origin`
    seconds after the first packet."""
    t0 = timeline.start + origin
    span_x = max(timeline.end - t0, 1e-3)
    from matplotlib.patches import Rectangle
    for h in timeline.handovers:
        if h.new.born is None or h.old not in rows or h.new not in rows:
            continue
        a, b = _interval(h, timeline.end)
        ys = [len(rows) - 1 - rows.index(s) for s in (h.old, h.new)]
        # across the rows of the old and the new SA: where both (or neither) are installed
        box = ((a - t0) * scale, min(ys) - 0.4), (b - a) * scale, abs(ys[0] - ys[1]) + 0.8
        if h.overlap >= 0:
            ax.add_patch(Rectangle(*box, facecolor=OVERLAP_COLOR, lw=0, zorder=0, alpha=0.55))
        else:  # cross-hatched in black: no series has it (the bars' colours are the generations')
            ax.add_patch(Rectangle(*box, facecolor="none", edgecolor=GAP_COLOR, hatch="xx", lw=0, zorder=0))
    for index, s in enumerate(rows):
        y = len(rows) - 1 - index
        color = _span_color(s)
        start = (s.start() or t0) - t0
        end = s.end(timeline.end) - t0
        open_end = s.died is None and s.born is not None
        ax.barh(y, max(end - start, span_x * 0.004) * scale, left=start * scale, height=0.5, color=color, alpha=0.35,
                edgecolor=color, lw=1.5, hatch="//" if open_end else None, zorder=2)
        if s.packets:
            ax.plot([(p - t0) * scale for p in s.packets], [y] * len(s.packets), "|", color=color, markersize=22,
                    mew=2.5, zorder=3)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.grid(axis="x", color="#dddddd", zorder=0)
    ax.tick_params(axis="x", labelsize=FONT)


@styled
def render_timeline(timeline: RekeyTimeline):
    """The figure (a 16:9 slide when its rows fit one), not saved: for draw_timeline_model and tests."""
    from matplotlib.patches import Rectangle

    rows = _rows(timeline)
    zooms = zoom_windows(timeline)
    notes = _handover_notes(timeline)
    if not timeline.from_keys:
        notes.append("no IKE keys: rows run from the first to the last packet on each SPI")
    open_ends = any(s.died is None and s.born is not None for s in rows)
    letters = ", ".join("ABC"[:len(zooms)])
    notes.append("bars: SA installed" + (" (hatched: still up at the end)" if open_ends else "") + "; ticks: packets"
                 + ("; yellow: old and new SA both installed" if any(h.overlap >= 0 for h in timeline.handovers)
                    else "")
                 + ("; cross-hatched: a gap, neither installed" if any(h.overlap < 0 for h in timeline.handovers)
                    else "")
                 + (f"; dashed box{'es' if len(zooms) > 1 else ''} {letters}: zoomed on the right" if zooms else ""))
    note_lines = [line for note in notes for line in wrap(note, WIDTH - 0.6, FONT)]
    head, below = 1.35, 0.85 + len(note_lines) * 0.27 + 0.15      # title; x labels, then the notes
    row = min(0.95, max(ROW, (SLIDE_HEIGHT - head - below) / max(len(rows), 1)))
    label_font = FONT if row >= 0.56 else MIN_FONT
    body = row * max(len(rows), 1)
    height = max(SLIDE_HEIGHT, head + body + below)
    fig = new_figure(height) if height > SLIDE_HEIGHT else new_slide()
    left, right = 3.75, (9.2 if zooms else WIDTH - 0.4)
    bottom = height - head - body
    main = fig.add_axes([left / WIDTH, bottom / height, (right - left) / WIDTH, body / height])
    t0 = timeline.start
    span_x = max(timeline.end - t0, 1e-3)
    _draw_rows(main, timeline, rows, 1.0)
    main.set_xlim(-span_x * 0.03, span_x * 1.03)
    main.set_xlabel("seconds since the first IKE/ESP packet", fontsize=LABEL_FONT)
    labels = []
    for s in rows:
        count = f"{len(s.packets)} message{'s' if len(s.packets) != 1 else ''}" if s.kind == "IKE" else \
            f"{len(s.packets)} packet{'s' if len(s.packets) != 1 else ''}"
        labels.append(f"{s.kind} {s.spi}\n" + (f"→ {s.towards}, {count}" if s.towards else count))
    main.set_yticks(range(len(rows) - 1, -1, -1), labels, fontsize=label_font, family=MONO, linespacing=1.05)
    main.set_title("the whole capture", fontsize=LABEL_FONT, pad=30 if zooms else 6)
    gap = 0.45
    width = (WIDTH - 0.35 - 10.0 - gap * (len(zooms) - 1)) / max(len(zooms), 1)
    for number, zoom in enumerate(zooms):
        letter = "ABC"[number]
        main.add_patch(Rectangle((zoom.lo, -0.55), zoom.hi - zoom.lo, len(rows) - 0.1, facecolor="none",
                                 edgecolor="black", lw=1.8, linestyle="--", zorder=5))
        main.text((zoom.lo + zoom.hi) / 2, len(rows) - 0.45, letter, ha="center", va="bottom", fontsize=LABEL_FONT,
                  weight="bold", zorder=6)
        ax = fig.add_axes([(10.0 + number * (width + gap)) / WIDTH, bottom / height, width / WIDTH, body / height],
                          label=f"zoom {letter}")
        _draw_rows(ax, timeline, rows, 1000.0, zoom.origin)
        ax.set_xlim((zoom.lo - zoom.origin) * 1000, (zoom.hi - zoom.origin) * 1000)
        ax.set_yticks([])
        ax.set_xlabel(f"ms after {zoom.origin:.3f} s", fontsize=LABEL_FONT)
        ax.set_title("\n".join(wrap(f"{letter}: {zoom.what}", width + 0.3, LABEL_FONT)), fontsize=LABEL_FONT,
                     pad=30, linespacing=1.0)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(5 if len(zooms) == 1 else 3))
        ax.xaxis.get_major_formatter().set_useOffset(False)
        for h in zoom.handovers:
            a, b = _interval(h, timeline.end)
            y = len(rows) - 1 - rows.index(h.new)
            ax.text(((a + b) / 2 - t0 - zoom.origin) * 1000, y + 0.3, _ms(abs(h.overlap)), ha="center", va="bottom",
                    fontsize=FONT, zorder=6, bbox=dict(facecolor="white", edgecolor="none", pad=0.5, alpha=0.9))
    fig.suptitle(f"SAs over time: {timeline.title}", fontsize=TITLE_FONT, weight="bold", y=1 - 0.35 / height)
    fig.text(0.5, (bottom - 0.85) / height, "\n".join(note_lines), ha="center", va="top", fontsize=FONT,
             linespacing=1.25)
    return fig


@styled
def draw_timeline_model(timeline: RekeyTimeline, out: str | Path) -> list[Path]:
    fig = render_timeline(timeline)
    return save(fig, out, slide=tuple(fig.get_size_inches()) == (WIDTH, SLIDE_HEIGHT))


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 0.01 else f"{seconds * 1000:.0f} ms"


def _handover_notes(timeline: RekeyTimeline) -> list[str]:
    """A line per rekey (a CHILD SA's two directions together), the first MAX_NOTES of them."""
    rekeys: dict[tuple, list[Handover]] = {}
    for h in timeline.handovers:
        rekeys.setdefault((h.new.kind == "IKE", h.new.born), []).append(h)
    lines = []
    for group in rekeys.values():
        names = " and ".join(f"{h.old.spi} → {h.new.spi}" for h in group)
        gaps = [h for h in group if h.overlap < 0]
        if gaps:
            line = f"{names}: GAP of {_ms(max(-h.overlap for h in gaps))} without an SA"
        else:
            low, high = min(h.overlap for h in group), max(h.overlap for h in group)
            span = _ms(low) if _ms(low) == _ms(high) else f"{_ms(low)} to {_ms(high)}"
            line = f"{names}: overlap {span}, no gap (make-before-break)"
        traffic = [h.traffic_gap for h in group if h.traffic_gap is not None and h.new.kind != "IKE"]
        if traffic:
            line += f"; last old packet to first new {max(traffic):.2f} s"
        lines.append(line)
    if len(lines) > MAX_NOTES:
        rest = list(rekeys.values())[MAX_NOTES - 1:]
        with_gap = sum(1 for group in rest if any(h.overlap < 0 for h in group))
        lines = lines[:MAX_NOTES - 1] + [f"and {len(rest)} more rekeys, " + (f"{with_gap} of them with a gap" if
                                                                           with_gap else "none with a gap")]
    return lines


def draw_rekey_timeline(capture: CaptureAnalysis, out: str | Path) -> Figure:
    timeline = sa_spans(capture)
    files = draw_timeline_model(timeline, out)
    children = [s for s in timeline.spans if s.kind != "IKE"]
    gaps = [h for h in timeline.handovers if h.overlap < 0]
    if timeline.from_keys:
        verdict = f"{len(timeline.handovers)} handovers, " + (f"{len(gaps)} with a gap" if gaps else "no gap")
    else:
        verdict = "no IKE keys: rows follow the packets, handovers unknown"
    caption = f"Rekey timeline of {timeline.title}: {len(children)} CHILD SA SPIs, {verdict}"
    return Figure(files, caption, timeline)


__all__ = ["Handover", "RekeyTimeline", "SaSpan", "draw_rekey_timeline", "draw_timeline_model", "render_timeline",
           "sa_spans", "zoom_windows"]
