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

from lab.ike.const import ProtocolId

from .analysis import CaptureAnalysis, Packet
from .style import FONT, LABEL_FONT, MONO, PALETTE, TITLE_FONT, Figure, new_figure, save, styled


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
    requests: dict[tuple, Packet] = {}
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
                requests[key] = packet
                continue
            request = requests.pop(key, None)
            if request is None or request.ike.inner is None or ike.inner is None:
                continue
            from_keys = True
            mine, theirs = request.ike.child_spis(), ike.child_spis()
            if mine and theirs:
                # RFC 7296 §3.3.1: each side's SA payload carries the SPI it receives on
                kind = "AH" if mine[0][0] == ProtocolId.AH else "ESP"
                a = span(kind, mine[0][1].hex(), request.src)
                b = span(kind, theirs[0][1].hex(), packet.src)
                a.born = b.born = packet.time
                old = request.ike.rekeyed_spi()
                if old is not None and old.hex() in spans:
                    old_a = spans[old.hex()]
                    a.replaces = old_a.spi
                    partner = next((s for s in order if s.kind == old_a.kind and s.born == old_a.born and s is not old_a
                                    and s.towards != old_a.towards), None)
                    if partner is not None:
                        b.replaces = partner.spi
            new_i, new_r = request.ike.ike_spi(), ike.ike_spi()
            if new_i and new_r:
                # RFC 7296 §2.18: the SPIs of the new IKE SA, SPIi from the rekey's initiator
                s = span("IKE", f"{new_i.hex()[:8]}../{new_r.hex()[:8]}..", "")
                s.born = packet.time
                s.replaces = f"{ike.spi_i[:8]}../{ike.spi_r[:8]}.."
            for protocol, spi in request.ike.deleted_spis() + ike.deleted_spis():
                if spi and spi.hex() in spans:
                    spans[spi.hex()].died = packet.time
            if any(p == ProtocolId.IKE for p, _ in request.ike.deleted_spis()):
                s = spans.get(f"{ike.spi_i[:8]}../{ike.spi_r[:8]}..")
                if s is not None:
                    s.died = packet.time
                rekeyed = any(o.replaces == (s.spi if s else None) for o in order)
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
            old = spans[s.replaces]
            overlap = (old.end(end) - s.born) if s.born is not None else 0.0
            gap = (s.first - old.last) if s.first is not None and old.last is not None else None
            handovers.append(Handover(old, s, overlap, gap))
    for s in order:
        if s.replaces and s.replaces in spans:
            s.generation = spans[s.replaces].generation + 1
    return RekeyTimeline(order, handovers, start, end, capture.title, from_keys)


# ---------------------------------------------------------------- drawing


@styled
def draw_timeline_model(timeline: RekeyTimeline, out: str | Path) -> list[Path]:
    rows = [s for s in timeline.spans if s.kind == "IKE"] + sorted(
        (s for s in timeline.spans if s.kind != "IKE"), key=lambda s: (s.towards, s.start() or 0))
    height = 2.2 + 0.72 * len(rows) + 0.9 * bool(timeline.handovers)
    fig = new_figure(height)
    ax = fig.add_axes([0.24, (1.4 + 0.9 * bool(timeline.handovers)) / height, 0.62,
                       (0.72 * len(rows)) / height])
    t0 = timeline.start
    span_x = max(timeline.end - t0, 1e-3)
    for index, s in enumerate(rows):
        y = len(rows) - 1 - index
        color = PALETTE[s.generation % len(PALETTE)] if s.kind != "IKE" else "#555555"
        start = (s.start() or t0) - t0
        end = s.end(timeline.end) - t0
        open_end = s.died is None and s.born is not None
        ax.barh(y, max(end - start, span_x * 0.004), left=start, height=0.5, color=color, alpha=0.35,
                edgecolor=color, lw=1.5, hatch="//" if open_end else None)
        if s.packets:
            ax.plot([p - t0 for p in s.packets], [y] * len(s.packets), "|", color=color, markersize=22, mew=2.5)
        count = f"{len(s.packets)} packet{'s' if len(s.packets) != 1 else ''}" if s.kind != "IKE" else \
            f"{len(s.packets)} messages"
        ax.text(1.01, y, count, transform=ax.get_yaxis_transform(), ha="left", va="center", fontsize=FONT)
    labels = [f"{s.kind} {s.spi}" + (f"\n→ {s.towards}" if s.towards else "") for s in rows]
    ax.set_yticks(range(len(rows) - 1, -1, -1), labels, fontsize=FONT, family=MONO)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlim(-span_x * 0.03, span_x * 1.03)
    ax.set_xlabel("seconds since the first IKE/ESP packet", fontsize=LABEL_FONT)
    ax.tick_params(axis="x", labelsize=FONT)
    ax.grid(axis="x", color="#dddddd")
    for h in timeline.handovers:
        if h.new.born is None:
            continue
        a, b = sorted((h.new.born - t0, h.old.end(timeline.end) - t0))
        color = "#2ca02c" if h.overlap >= 0 else "#c0392b"
        ax.axvspan(a, b, color=color, alpha=0.15)
    fig.suptitle(f"SAs over time: {timeline.title}", fontsize=TITLE_FONT, weight="bold", y=1 - 0.35 / height)
    notes = [_handover_text(h) for h in timeline.handovers]
    if not timeline.from_keys:
        notes.append("no IKE keys: rows run from the first to the last packet on each SPI")
    notes.append("bars: SA installed (hatched: still up at the end), ticks: packets")
    fig.text(0.5, 0.35 / height + 0.25 * bool(timeline.handovers) / height, "\n".join(notes[:4]), ha="center",
             va="bottom", fontsize=FONT)
    return save(fig, out)


def _handover_text(h: Handover) -> str:
    if h.overlap >= 0:
        head = f"{h.old.spi} → {h.new.spi}: overlap {h.overlap * 1000:.0f} ms, no gap (make-before-break)"
    else:
        head = f"{h.old.spi} → {h.new.spi}: GAP of {-h.overlap * 1000:.0f} ms without an SA"
    if h.traffic_gap is not None and h.new.kind != "IKE":
        head += f"; last old packet to first new {h.traffic_gap:.2f} s"
    return head


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


__all__ = ["Handover", "RekeyTimeline", "SaSpan", "draw_rekey_timeline", "draw_timeline_model", "sa_spans"]
