"""The ladder diagram: one lane per node, one arrow per IKE message (ports 500/4500 at its
ends, the payload chain under it, inside SK when the keys are there), retransmissions
and fragments marked, ESP/AH traffic summarised as one band per SPI with its packet count.
With captures from both sides of a NAT box, each arrow crosses the NAT box's lane and the
rewrite it did is written beside it.

    figure = draw_ladder([analyze_capture("inside.pcap", keys), analyze_capture("outside.pcap", keys)],
                         "figures/ladder")
    figure.model.arrows   # what was drawn, to compare with the capture
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from .analysis import CaptureAnalysis, NatPair, Packet, match_nat
from .style import COLORS, FONT, LABEL_FONT, MONO, TITLE_FONT, WIDTH, Figure, new_figure, save, styled

INTERESTING = ("ike", "esp", "ah", "keepalive", "ip-fragment")


@dataclass
class Lane:
    name: str
    addresses: list[str]
    nat: bool = False


@dataclass
class Arrow:
    row: int
    src: int                    # lane index
    dst: int
    sport: int
    dport: int
    label: str                  # "IKE_AUTH request 1"
    chain: str                  # "SK{ IDi IDr AUTH ... }" or "SK(240 octets)"
    kind: str                   # ike, ip-fragment, other
    time: float
    frames: list[tuple[str, int]]          # (capture name, frame number) of each side
    via: int | None = None      # the NAT box's lane the arrow crosses
    far_ports: tuple[int, int] | None = None  # (sport, dport) beyond the NAT box
    retransmission: bool = False
    fragment: str | None = None  # "SKF 1/2" or "IP fragment 1/2"
    note: str = ""              # written in the right column: the rewrite, the retransmission, a loss
    port4500: bool = False


@dataclass
class Band:
    row: int
    src: int
    dst: int
    protocol: str               # ESP, AH, keepalive
    spi: str                    # hex, "" for keepalives
    count: int
    first_seq: int
    last_seq: int
    time: float
    end: float
    inner: str = ""             # "ICMP 10.1.0.10 > 10.2.0.10" when decrypted
    encap: bool = False
    via: int | None = None
    frames: list[tuple[str, int]] = field(default_factory=list)


@dataclass
class Ladder:
    lanes: list[Lane]
    arrows: list[Arrow]
    bands: list[Band]
    title: str
    start: float
    decrypted: bool = False

    @property
    def rows(self) -> int:
        return max([a.row for a in self.arrows] + [b.row for b in self.bands], default=-1) + 1


def _names_from_topology(topology: dict | None) -> dict[str, str]:
    names: dict[str, str] = {}
    for node in (topology or {}).get("nodes", []):
        for intf in node.get("interfaces", []):
            for address in intf.get("addresses", []):
                names[address.split("/")[0]] = node["name"]
        nat = node.get("nat") or {}
        if nat.get("public"):
            names[nat["public"]] = node["name"]
    return names


def _is_private(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_private and not address.startswith(("192.0.2.", "198.51.100.",
                                                                                    "203.0.113."))
    except ValueError:
        return False


def _interesting(packets: Iterable[Packet]) -> list[Packet]:
    chosen = [p for p in packets if p.kind in INTERESTING]
    if not chosen:
        chosen = [p for p in packets if p.clear is not None and p.data[:1] and p.data[0] >> 4 == 4]
    return chosen


def _order(addresses: list[str], packets: list[Packet]) -> list[str]:
    """Addresses in order of first appearance, the first IKE_SA_INIT initiator leftmost."""
    seen: list[str] = []
    first_init = next((p for p in packets if p.ike and p.ike.exchange_name == "IKE_SA_INIT" and not p.ike.response),
                      None)
    if first_init is not None:
        seen.append(first_init.src)
    for p in packets:
        for a in (p.src, p.dst):
            if a not in seen:
                seen.append(a)
    return [a for a in seen if a in addresses]


def _label(packet: Packet) -> tuple[str, str, str, str | None]:
    """(label, chain, kind, fragment) of one arrow."""
    if packet.kind == "ip-fragment":
        n, m = packet.ip_fragment or (0, 0)
        if not m:  # the rest never arrived here: its count is unknown
            return ("IP fragment, never reassembled", "(the other fragments of this datagram are missing)",
                    "ip-fragment", "IP fragment")
        return f"IP fragment {n}/{m}", "(the rest of the datagram follows)", "ip-fragment", f"IP fragment {n}/{m}"
    if packet.ike is not None:
        ike = packet.ike
        if ike.error:
            return "not a valid IKE message", ike.error[:60], "ike", None
        label = f"{ike.exchange_name} {'response' if ike.response else 'request'} {ike.message_id}"
        fragment = None
        if ike.fragment:
            fragment = f"SKF {ike.fragment[0]}/{ike.fragment[1]}"
            label += f"  ({fragment})"
        if packet.ip_fragment:
            label += f"  (IP fragment {packet.ip_fragment[0]}/{packet.ip_fragment[1]}, reassembled)"
            fragment = fragment or f"IP fragment {packet.ip_fragment[0]}/{packet.ip_fragment[1]}"
        return label, ike.chain(), "ike", fragment
    return packet.summary or packet.what(), "", "other", None


def _short_rewrite(pair: NatPair) -> str:
    """`src 172.16.0.2 → 198.51.100.1`, with ports only where the NAT box changed them."""
    parts = []
    for side, (a_addr, a_port), (b_addr, b_port) in (
            ("src", (pair.inside.src, pair.inside.sport), (pair.outside.src, pair.outside.sport)),
            ("dst", (pair.outside.dst, pair.outside.dport), (pair.inside.dst, pair.inside.dport))):
        if (a_addr, a_port) == (b_addr, b_port):
            continue
        if a_port != b_port:
            parts.append(f"{side} {a_addr}:{a_port} → {b_addr}:{b_port}")
        else:
            parts.append(f"{side} {a_addr} → {b_addr}")
    return "NAT: " + ", ".join(parts) if parts else "NAT: unchanged"


def build_ladder(captures: list[CaptureAnalysis], topology: dict | None = None,
                 pairs: list[NatPair] | None = None) -> Ladder:
    """The ladder of one capture, or of two captured on the inside and the outside of one
    NAT box (given as [inside, outside]; `pairs` from match_nat, computed if None)."""
    names = _names_from_topology(topology)
    nat_mode = len(captures) == 2
    if nat_mode and pairs is None:
        pairs = match_nat(captures[0], captures[1])
        nat_mode = bool(pairs) and any(p.rewrite() != "unchanged" for p in pairs)
    events: list[tuple[float, object]] = []
    lanes: list[Lane] = []
    lane_of: dict[str, int] = {}
    nat_lane: int | None = None

    def add_lane(name: str, addresses: list[str], nat: bool = False) -> int:
        lanes.append(Lane(name, addresses, nat))
        for a in addresses:
            lane_of[a] = len(lanes) - 1
        return len(lanes) - 1

    if nat_mode:
        inside, outside = captures
        pin, pout = _interesting(inside.packets), _interesting(outside.packets)
        a_in = {a for p in pin for a in (p.src, p.dst)}
        a_out = {a for p in pout for a in (p.src, p.dst)}
        hidden = [a for a in _order(list(a_in - a_out), pin)]
        public = sorted(a_out - a_in)
        common = _order(list(a_in & a_out), pin + pout)
        for a in hidden:
            add_lane(names.get(a, a), [a])
        nat_name = names.get(public[0], "NAT box") if public else "NAT box"
        nat_lane = add_lane(nat_name, public, nat=True)
        for a in common:
            add_lane(names.get(a, a), [a])
        paired = {id(p.inside) for p in pairs} | {id(p.outside) for p in pairs}
        events += [(min(p.inside.time, p.outside.time), p) for p in pairs if p.inside.kind in INTERESTING
                   or p.inside in pin]
        events += [(p.time, ("inside", p)) for p in pin if id(p) not in paired]
        events += [(p.time, ("outside", p)) for p in pout if id(p) not in paired]
        title = (f"{inside.name} and {outside.name}: both sides of the NAT box ({inside.span})"
                 if inside.span and inside.span == outside.span
                 else f"{inside.title} and {outside.title}: both sides of the NAT box")
        start = min(inside.start or outside.start, outside.start or inside.start)
    else:
        capture = captures[0]
        packets = _interesting(capture.packets)
        addresses = _order(list({a for p in packets for a in (p.src, p.dst)}), packets)
        for a in addresses:
            add_lane(names.get(a, a), [a])
        events = [(p.time, ("single", p)) for p in packets]
        title = capture.title
        start = capture.start
    first_init = next((p for c in captures for p in c.packets
                       if p.ike and p.ike.exchange_name == "IKE_SA_INIT" and not p.ike.response), None)
    for index, lane in enumerate(lanes):
        if lane.nat or lane.name not in lane.addresses:
            continue  # named by topology.json
        role = ""
        if first_init is not None:
            role = "initiator" if first_init.src in lane.addresses else (
                "responder" if first_init.dst in lane.addresses else "")
        if nat_mode and nat_lane is not None and index < nat_lane:
            role = f"{role or 'host'}, behind NAT"
        lane.name = role or "peer"
    events.sort(key=lambda e: e[0])
    if events:
        start = events[0][0]
    ladder = Ladder(lanes, [], [], title, start,
                    decrypted=any(p.ike and p.ike.inner is not None for c in captures for p in c.packets))
    row = 0
    run: dict[tuple, Band] = {}

    def flush() -> None:
        nonlocal row
        for band in sorted(run.values(), key=lambda b: b.time):
            band.row = row
            ladder.bands.append(band)
            row += 1
        run.clear()

    for _, event in events:
        if isinstance(event, NatPair):
            near, far = event.inside, event.outside
            if event.outbound:
                src, dst, first, second = lane_of.get(near.src), lane_of.get(far.dst), near, far
            else:
                src, dst, first, second = lane_of.get(far.src), lane_of.get(near.dst), far, near
            sides = [("inside", near), ("outside", far)]
            via = nat_lane
            note = _short_rewrite(event)
        else:
            side, packet = event
            first = second = packet
            sides = [(side, packet)]
            via = None
            note = ""
            src, dst = lane_of.get(packet.src), lane_of.get(packet.dst)
            if side == "inside":
                if src is not None and (dst is None or dst > nat_lane):
                    dst, note = nat_lane, "not seen outside the NAT box"
                elif dst is not None and (src is None or src > nat_lane):
                    src, note = nat_lane, "not seen outside the NAT box"
            elif side == "outside":
                if src is not None and src > nat_lane and (dst is None or dst <= nat_lane):
                    dst, note = nat_lane, "not passed to the inside"
                elif dst is not None and dst > nat_lane:
                    src, note = nat_lane, "not seen inside the NAT box"
        if src is None or dst is None or src == dst:
            continue
        frames = [(captures[0].name if s in ("inside", "single") else captures[-1].name, p.frame) for s, p in sides]
        if first.kind in ("esp", "ah", "keepalive") and first.ipsec is not None or first.kind == "keepalive":
            sa = first.ipsec
            key = (first.kind, sa.spi if sa else 0, src, dst)
            band = run.get(key)
            if band is None:
                band = run[key] = Band(0, src, dst, sa.protocol if sa else "keepalive", sa.spi_hex if sa else "", 0,
                                       sa.seq if sa else 0, sa.seq if sa else 0, first.time, first.time,
                                       encap=bool(sa and sa.encap), via=via)
            band.count += 1
            band.end = first.time
            band.frames += frames
            if sa:
                band.first_seq, band.last_seq = min(band.first_seq, sa.seq), max(band.last_seq, sa.seq)
                inner = first.inner
                if inner is not None and not band.inner:
                    band.inner = f"{inner.protocol_name} {inner.src} > {inner.dst}"
            continue
        flush()
        label, chain, kind, fragment = _label(first)
        retrans = first.retransmission_of is not None or second.retransmission_of is not None
        if retrans:
            note = (f"retransmission of #{first.retransmission_of or second.retransmission_of}"
                    + (f"; {note}" if note else ""))
        arrow = Arrow(row, src, dst, first.sport, first.dport, label, chain, kind, first.time, frames, via,
                      (second.sport, second.dport) if via is not None else None, retrans, fragment, note,
                      4500 in (first.sport, first.dport))
        ladder.arrows.append(arrow)
        row += 1
    flush()
    return ladder


# ---------------------------------------------------------------- drawing

TIME_X, LANES_X0, LANES_X1, NOTE_X = 0.15, 2.5, 10.6, 11.5
TOP = 1.75
IKE_ROW, BAND_ROW, CHAIN_LINE = 0.82, 0.62, 0.24
CHAIN_FONT = 14.0


def _lane_x(ladder: Ladder) -> list[float]:
    n = len(ladder.lanes)
    if n == 1:
        return [(LANES_X0 + LANES_X1) / 2]
    return [LANES_X0 + i * (LANES_X1 - LANES_X0) / (n - 1) for i in range(n)]


@styled
def draw_ladder_model(ladder: Ladder, out: str | Path) -> list[Path]:
    heights = {}
    y = TOP
    extra = {a.row: max(0, _chain_lines(ladder, a) - 1) * CHAIN_LINE for a in ladder.arrows}
    for r in range(ladder.rows):
        is_band = any(b.row == r for b in ladder.bands)
        heights[r] = (y, BAND_ROW if is_band else IKE_ROW + extra.get(r, 0))
        y += heights[r][1]
    total = y + 0.9
    fig = new_figure(total)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, WIDTH)
    ax.set_ylim(total, 0)
    ax.axis("off")
    xs = _lane_x(ladder)
    ax.text(WIDTH / 2, 0.38, ladder.title, ha="center", va="center", fontsize=TITLE_FONT, weight="bold")
    for lane, x in zip(ladder.lanes, xs):
        if lane.nat:
            ax.add_patch(_rect(x - 0.35, TOP - 0.15, 0.7, total - TOP - 0.6, COLORS["nat"], COLORS["natedge"]))
        ax.plot([x, x], [TOP - 0.1, total - 0.75], color=COLORS["natedge"] if lane.nat else COLORS["lane"],
                lw=2.5 if lane.nat else 1.6, zorder=1)
        ax.text(x, 0.95, lane.name, ha="center", va="center", fontsize=LABEL_FONT, weight="bold")
        ax.text(x, 1.33, " / ".join(lane.addresses) if lane.addresses else "", ha="center", va="center",
                fontsize=FONT, family=MONO)
    ax.text(TIME_X, 1.33, "time, frame", ha="left", va="center", fontsize=FONT, color=COLORS["other"])
    ax.text(NOTE_X, 1.33, "notes", ha="left", va="center", fontsize=FONT, color=COLORS["other"])
    for arrow in ladder.arrows:
        y0, h = heights[arrow.row]
        _draw_arrow(ax, ladder, arrow, xs, y0 + (h - extra.get(arrow.row, 0)) * 0.5)
    for band in ladder.bands:
        y0, h = heights[band.row]
        _draw_band(ax, ladder, band, xs, y0 + h * 0.5)
    legend = ("blue: IKE on UDP 500   purple: UDP 4500 (non-ESP marker)   red dashed: retransmission   "
              "dotted: IP fragment   green band: ESP/AH per SPI")
    ax.text(WIDTH / 2, total - 0.4, legend, ha="center", va="center", fontsize=FONT, color=COLORS["other"])
    return save(fig, out)


def _rect(x, y, w, h, face, edge):
    from matplotlib.patches import Rectangle
    return Rectangle((x, y), w, h, facecolor=face, edgecolor=edge, lw=1.2, zorder=0)


def _time_text(ladder: Ladder, t: float, frames: list[tuple[str, int]]) -> str:
    return f"{t - ladder.start:6.3f} s #{frames[0][1]}"


def _draw_arrow(ax, ladder: Ladder, arrow: Arrow, xs: list[float], y: float) -> None:
    x0, x1 = xs[arrow.src], xs[arrow.dst]
    color = COLORS["retransmit"] if arrow.retransmission else (COLORS["ike4500"] if arrow.port4500 else COLORS["ike"])
    if arrow.kind == "other":
        color = COLORS["other"]
    style = "--" if arrow.retransmission else (":" if arrow.kind == "ip-fragment" else "-")
    ax.annotate("", xy=(x1, y), xytext=(x0, y), arrowprops=dict(arrowstyle="-|>", color=color, lw=2.4,
                                                                   linestyle=style, mutation_scale=22), zorder=3)
    direction = 1 if x1 > x0 else -1
    # ports at both ends of each segment
    ends = [(x0, arrow.sport, 1), (x1, arrow.far_ports[1] if arrow.far_ports else arrow.dport, -1)]
    if arrow.via is not None and arrow.far_ports is not None:
        # at the NAT box only the ports it changed
        if arrow.far_ports[0] != arrow.sport:
            ends.append((xs[arrow.via] + direction * 0.45, arrow.far_ports[0], 1))
        if arrow.far_ports[1] != arrow.dport:
            ends.append((xs[arrow.via] - direction * 0.45, arrow.dport, -1))
    for x, port, outward in ends:
        if port:
            toward = direction * outward
            ax.text(x + toward * 0.12, y - 0.07, str(port), ha="left" if toward > 0 else "right", va="bottom",
                    fontsize=FONT, family=MONO, color=color)
    if arrow.via is not None:
        # beside the sender's port, clear of it and of the NAT box's lane
        ax.text(x0 + direction * 0.8, y - 0.1, arrow.label, ha="left" if direction > 0 else "right", va="bottom",
                fontsize=FONT, weight="bold", color=color)
    else:
        ax.text((x0 + x1) / 2, y - 0.1, arrow.label, ha="center", va="bottom", fontsize=FONT, weight="bold",
                color=color)
    if arrow.chain:
        ax.text((x0 + x1) / 2, y + 0.07, _wrap(arrow.chain, _chain_width(xs)), ha="center", va="top",
                fontsize=CHAIN_FONT, family=MONO, color="#222222", linespacing=1.05,
                bbox=dict(facecolor="white", edgecolor="none", pad=0.5, alpha=0.85), zorder=4)
    ax.text(TIME_X, y, _time_text(ladder, arrow.time, arrow.frames), ha="left", va="center", fontsize=FONT,
            family=MONO, color=COLORS["other"])
    if arrow.note:
        ax.text(NOTE_X, y, _wrap(arrow.note), ha="left", va="center", fontsize=FONT,
                color=COLORS["retransmit"] if arrow.retransmission else "#333333", linespacing=1.0)


def _wrap(text: str, width: int = 40) -> str:
    import textwrap
    return "\n".join(textwrap.wrap(text, width, break_on_hyphens=False)[:3])


def _chain_width(xs: list[float]) -> int:
    """Characters of the monospaced chain that fit under the widest arrow."""
    span = (max(xs) - min(xs)) + 1.2 if len(xs) > 1 else LANES_X1 - LANES_X0
    return int(span / (0.6 * CHAIN_FONT / 72))


def _chain_lines(ladder: "Ladder", arrow: "Arrow") -> int:
    return len(_wrap(arrow.chain, _chain_width(_lane_x(ladder))).splitlines()) if arrow.chain else 0


def _draw_band(ax, ladder: Ladder, band: Band, xs: list[float], y: float) -> None:
    from matplotlib.patches import FancyBboxPatch
    x0, x1 = sorted((xs[band.src], xs[band.dst]))
    color = COLORS["esp"] if band.protocol == "ESP" else (COLORS["ah"] if band.protocol == "AH" else
                                                           COLORS["keepalive"])
    ax.add_patch(FancyBboxPatch((x0, y - 0.22), x1 - x0, 0.44, boxstyle="round,pad=0.02", facecolor=color,
                                alpha=0.18, edgecolor=color, lw=1.5, zorder=2))
    arrow_y = y + 0.13
    start, end = (x0, x1) if xs[band.dst] > xs[band.src] else (x1, x0)
    ax.annotate("", xy=(end, arrow_y), xytext=(start, arrow_y),
                arrowprops=dict(arrowstyle="-|>", color=color, lw=2, mutation_scale=18), zorder=3)
    if band.protocol == "keepalive":
        text = f"NAT-keepalive x{band.count}"
    else:
        packets = "packet" if band.count == 1 else "packets"
        seq = f"seq {band.first_seq}" if band.first_seq == band.last_seq else f"seq {band.first_seq}-{band.last_seq}"
        text = (f"{band.protocol}{' in UDP 4500' if band.encap else ''} SPI {band.spi}: {band.count} {packets}, "
                f"{seq}" + (f"  [{band.inner}]" if band.inner else ""))
    ax.text((x0 + x1) / 2, y - 0.05, text, ha="center", va="center", fontsize=FONT, color="#113311", weight="bold")
    ax.text(TIME_X, y, _time_text(ladder, band.time, band.frames), ha="left", va="center", fontsize=FONT,
            family=MONO, color=COLORS["other"])
    if band.end > band.time:
        ax.text(NOTE_X, y, f"for {band.end - band.time:.2f} s", ha="left", va="center", fontsize=FONT,
                color="#333333")


def draw_ladder(captures: list[CaptureAnalysis], out: str | Path, topology: dict | None = None) -> Figure:
    """Draw the ladder of one capture (or of [inside, outside] of one NAT box) into out.png/.svg."""
    ladder = build_ladder(captures, topology)
    files = draw_ladder_model(ladder, out)
    ike = len(ladder.arrows)
    traffic = sum(b.count for b in ladder.bands if b.protocol != "keepalive")
    across = " across the NAT box" if any(l.nat for l in ladder.lanes) else ""
    clear = "" if ladder.decrypted else " (no keys: encrypted payloads stay closed)"
    caption = (f"Ladder of {ladder.title}: {ike} IKE arrows{across}, {traffic} ESP/AH packets in "
               f"{sum(1 for b in ladder.bands if b.protocol != 'keepalive')} bands{clear}")
    return Figure(files, caption, ladder)


__all__ = ["Arrow", "Band", "Lane", "Ladder", "build_ladder", "draw_ladder", "draw_ladder_model"]
