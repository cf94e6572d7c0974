"""Header layouts of real captured packets: one bar per packet, its headers with byte
offsets, and which octets are encrypted and which authenticated (RFC 4303 §2, RFC 4302
§3.3.3, RFC 3948 §2.1).

    layouts = [packet_layout(packet, capture.keys) for ...]
    draw_header_layouts(layouts, "figures/headers")
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

from lab.esp import EspDrop
from lab.esp.algorithms import encr_spec
from lab.ike.const import EncrId, IntegId, name_of

from .analysis import PROTO_ICMP, PROTO_IPIP, PROTO_NAMES, PROTO_UDP, CaptureAnalysis, Packet
from .keys import KeyTables
from .style import FONT, LABEL_FONT, MONO, TITLE_FONT, WIDTH, Figure, new_figure, save, styled

SEGMENT_COLORS = {
    "ip": "#9ecae1", "inner-ip": "#c6dbef", "udp": "#fdd0a2", "esp": "#a1d99b", "iv": "#d9d9d9",
    "transport": "#fcbba1", "data": "#fee0d2", "trailer": "#bcbddc", "icv": "#fdae6b", "ah": "#fde68a",
    "ah-icv": "#fdae6b", "ciphertext": "#e7969c",
}


@dataclass
class Segment:
    start: int
    end: int
    label: str
    kind: str

    @property
    def length(self) -> int:
        return self.end - self.start


@dataclass
class Layout:
    form: str                     # "ESP tunnel", "AH transport", ...
    detail: str                   # algorithm, sizes
    length: int
    segments: list[Segment]
    encrypted: tuple[int, int] | None = None
    authenticated: tuple[int, int] | None = None
    mutable: list[tuple[int, int]] = field(default_factory=list)   # AH: IP header fields left out of the ICV
    source: str = ""              # capture:frame
    pad_length: int | None = None # ESP padding octets (RFC 4303 §2.4)


def _ip_segments(data: bytes, start: int, kind: str, name: str) -> tuple[list[Segment], int, int]:
    """(segments, header length, protocol) of an IPv4 header at `start`."""
    ihl = (data[start] & 0x0F) * 4
    return [Segment(start, start + ihl, name, kind)], ihl, data[start + 9]


def _transport_segments(data: bytes, start: int, end: int, protocol: int, kind: str = "transport") -> list[Segment]:
    name = PROTO_NAMES.get(protocol, str(protocol))
    header = {PROTO_ICMP: 8, PROTO_UDP: 8, 6: 20}.get(protocol, 0)
    if 6 == protocol and end - start >= 20:
        header = (data[start + 12] >> 4) * 4
    header = min(header, end - start)
    out = []
    if header:
        out.append(Segment(start, start + header, name, kind))
    if end > start + header:
        out.append(Segment(start + header, end, "data", "data"))
    return out


def _inner_segments(data: bytes, start: int, end: int, next_header: int) -> list[Segment]:
    if next_header == PROTO_IPIP and end - start >= 20:
        segments, ihl, protocol = _ip_segments(data, start, "inner-ip", "inner IP")
        inner_end = min(end, start + struct.unpack_from("!H", data, start + 2)[0])
        return segments + _transport_segments(data, start + ihl, inner_end, protocol)
    return _transport_segments(data, start, end, next_header)


def packet_layout(packet: Packet, keys: KeyTables | None = None, form: str | None = None,
                  source: str = "") -> Layout:
    """The layout of one captured IPv4 packet: plain, ESP (transport/tunnel, in UDP or not,
    NULL encryption) or AH (transport/tunnel). ESP's inner split needs the packet's keys."""
    data = packet.data
    segments, ihl, protocol = _ip_segments(data, 0, "ip", "IP header")
    total = struct.unpack_from("!H", data, 2)[0]
    layout = Layout(form or "", "", total, segments, source=source)
    at = ihl
    encap = False
    if protocol == PROTO_UDP and packet.ipsec is not None:
        segments.append(Segment(at, at + 8, "UDP", "udp"))
        at += 8
        encap = True
    if packet.ipsec is None:
        segments += _transport_segments(data, at, total, protocol)
        layout.form = form or "plain"
        layout.detail = f"{PROTO_NAMES.get(protocol, protocol)}, no IPsec"
        return layout
    sa = packet.ipsec
    if sa.protocol == "AH":
        ah_length = (data[at + 1] + 2) * 4
        segments += [Segment(at, at + 4, "AH", "ah"), Segment(at + 4, at + 8, "SPI", "ah"),
                     Segment(at + 8, at + 12, "Seq", "ah")]
        segments.append(Segment(at + 12, at + ah_length, "ICV", "ah-icv"))
        segments += _inner_segments(data, at + ah_length, total, data[at])
        # RFC 4302 §3.3.3.1.1.1: TOS, flags and fragment offset, TTL and the checksum are mutable
        layout.mutable = [(1, 2), (6, 8), (8, 9), (10, 12)]
        layout.authenticated = (0, total)
        layout.form = form or f"AH {sa.mode}"
        layout.detail = f"ICV {ah_length - 12} octets"
        return layout
    esp_start = at
    segments += [Segment(at, at + 4, "SPI", "esp"), Segment(at + 4, at + 8, "Seq", "esp")]
    sa_keys = keys.esp_sa(sa.spi, packet.src, packet.dst) if keys is not None else None
    if sa_keys is None:
        segments.append(Segment(at + 8, total, "encrypted (no keys: the split is unknown)", "ciphertext"))
        layout.form = form or ("ESP in UDP" if encap else "ESP")
        layout.detail = "no keys"
        return layout
    spec = encr_spec(sa_keys.encr_id)
    icv = sa_keys.inbound_sa().icv_size
    try:
        payload, next_header = sa_keys.inbound_sa().open_payload(data[esp_start:total])
    except EspDrop as err:
        segments.append(Segment(at + 8, total, f"not decrypted ({err})", "ciphertext"))
        layout.form, layout.detail = form or "ESP", "keys do not open it"
        return layout
    iv_end = at + 8 + spec.iv_size
    if spec.iv_size:
        segments.append(Segment(at + 8, iv_end, "IV", "iv"))
    payload_end = iv_end + len(payload)
    segments += _inner_segments(data[:iv_end] + payload, iv_end, payload_end, next_header)
    trailer_end = total - icv
    segments.append(Segment(payload_end, trailer_end, "trailer", "trailer"))
    if icv:
        segments.append(Segment(trailer_end, total, "ICV", "icv"))
    null = sa_keys.encr_id == EncrId.NULL
    # RFC 4303 §2: the ICV covers the ESP header, the payload (IV included) and the trailer
    layout.authenticated = (esp_start, trailer_end) if icv else None
    layout.encrypted = None if null else (iv_end, trailer_end)
    mode = "tunnel" if next_header in (PROTO_IPIP, 41) else "transport"
    layout.form = form or (f"ESP-NULL {mode}" if null else f"ESP{'-in-UDP' if encap else ''} {mode}")
    pad = trailer_end - payload_end - 2
    integ = "" if spec.aead else f" + {name_of(IntegId, sa_keys.integ_id)}"
    layout.detail = f"{name_of(EncrId, sa_keys.encr_id)}{integ}, pad {pad}"
    layout.pad_length = pad
    return layout


FORMS = ("plain", "esp-transport", "esp-tunnel", "esp-udp-tunnel", "ah-transport", "ah-tunnel", "esp-null")
FORM_TITLES = {"plain": "plain IP", "esp-transport": "ESP transport", "esp-tunnel": "ESP tunnel",
               "esp-udp-tunnel": "ESP-in-UDP tunnel", "ah-transport": "AH transport", "ah-tunnel": "AH tunnel",
               "esp-null": "ESP-NULL tunnel"}


def example_packet(capture: CaptureAnalysis) -> Packet | None:
    """The first packet of a capture that carries traffic: ESP/AH, else clear ICMP/TCP/UDP."""
    for packet in capture.packets:
        if packet.ipsec is not None:
            return packet
    for packet in capture.packets:
        if packet.clear is not None and packet.kind == "other" and packet.data[:1] and packet.data[0] >> 4 == 4:
            return packet
    return None


# ---------------------------------------------------------------- drawing

LEFT, BAR_X0, BAR_X1 = 0.2, 3.6, 15.7
ROW = 1.75


@styled
def draw_layouts(layouts: list[Layout], out: str | Path, title: str = "One real packet of each form") -> list[Path]:
    from matplotlib.patches import Rectangle

    height = 1.1 + ROW * len(layouts) + 1.0
    fig = new_figure(height)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, WIDTH)
    ax.set_ylim(height, 0)
    ax.axis("off")
    ax.text(WIDTH / 2, 0.4, title, ha="center", va="center", fontsize=TITLE_FONT, weight="bold")
    longest = max((l.length for l in layouts), default=1)
    scale = (BAR_X1 - BAR_X0) / longest
    for index, layout in enumerate(layouts):
        top = 1.1 + index * ROW
        bar_y = top + 0.72
        ax.text(LEFT, bar_y - 0.2, layout.form, ha="left", va="center", fontsize=LABEL_FONT, weight="bold")
        ax.text(LEFT, bar_y + 0.12, f"{layout.length} octets", ha="left", va="center", fontsize=FONT)
        detail = layout.detail
        if len(detail) * CHAR_WIDTH * 0.9 > BAR_X0 - LEFT - 0.2 and ", " in detail:
            detail = detail.replace(", ", ",\n", 1)
        ax.text(LEFT, bar_y + 0.42, detail, ha="left", va="top" if "\n" in detail else "center",
                fontsize=FONT - 1, color="#444444", linespacing=1.1)

        def x(offset: int) -> float:
            return BAR_X0 + offset * scale

        for seg in layout.segments:
            ax.add_patch(Rectangle((x(seg.start), bar_y - 0.2), seg.length * scale, 0.4,
                                   facecolor=SEGMENT_COLORS.get(seg.kind, "#eeeeee"), edgecolor="#333333", lw=1.2))
            width = seg.length * scale
            text = seg.label if width > len(seg.label) * CHAR_WIDTH + 0.05 else _abbreviate(seg, scale)
            if text:
                ax.text(x(seg.start) + width / 2, bar_y, text, ha="center", va="center", fontsize=FONT)
            elif width > 0.22 and len(_short(seg)) * CHAR_WIDTH * 0.95 <= 0.4:
                ax.text(x(seg.start) + width / 2, bar_y, _short(seg), ha="center", va="center",
                        fontsize=FONT - 1, rotation=90)
        for start, end in layout.mutable:
            ax.add_patch(Rectangle((x(start), bar_y - 0.2), (end - start) * scale, 0.4, facecolor="none",
                                   edgecolor="#555555", hatch="//", lw=0))
        offsets = sorted({s.start for s in layout.segments} | {layout.length})
        last = -1.0
        for offset in offsets:
            if x(offset) - last < 0.34:
                continue
            last = x(offset)
            ax.plot([x(offset)] * 2, [bar_y + 0.2, bar_y + 0.28], color="#333333", lw=1)
            ax.text(x(offset), bar_y + 0.3, str(offset), ha="center", va="top", fontsize=FONT, family=MONO)
        for (span, label, color, level) in ((layout.authenticated, "authenticated (ICV)", "#1f4e9c", 0),
                                            (layout.encrypted, "encrypted", "#c0392b", 1)):
            if span is None:
                continue
            yb = bar_y - 0.3 - level * 0.3
            ax.annotate("", xy=(x(span[1]), yb), xytext=(x(span[0]), yb),
                        arrowprops=dict(arrowstyle="|-|", color=color, lw=2, mutation_scale=6))
            ax.text(x(span[0]) + 0.05, yb - 0.02, label, ha="left", va="bottom", fontsize=FONT, color=color,
                    weight="bold")
    notes = ["tr = trailer: padding, Pad Length, Next Header (RFC 4303 §2.4)"]
    if any(l.mutable for l in layouts):
        notes.append("hatched: IP fields AH leaves out of the ICV (TOS, flags, TTL, checksum)")
    ax.text(WIDTH / 2, height - 0.45, "      ".join(notes), ha="center", va="center", fontsize=FONT, color="#444444")
    return save(fig, out)


CHAR_WIDTH = 0.13  # inches per character at FONT points, a little more than the average glyph


def _short(segment: Segment) -> str:
    return {"IP header": "IP", "inner IP": "IP", "trailer": "tr", "ICV": "ICV", "data": "", "IV": "IV",
            "AH": "AH", "UDP": "UDP", "SPI": "SPI", "Seq": "Seq"}.get(segment.label, segment.label[:3])


def _abbreviate(segment: Segment, scale: float) -> str:
    short = _short(segment)
    return short if segment.length * scale > len(short) * CHAR_WIDTH else ""


def draw_header_layouts(captures: dict[str, CaptureAnalysis], out: str | Path) -> Figure:
    """One real packet of each capture given (form name -> analysed capture), in FORMS order."""
    layouts = []
    for name in sorted(captures, key=lambda n: FORMS.index(n) if n in FORMS else len(FORMS)):
        capture = captures[name]
        packet = example_packet(capture)
        if packet is None or not packet.data or packet.data[0] >> 4 != 4:
            continue
        layouts.append(packet_layout(packet, capture.keys, FORM_TITLES.get(name), f"{capture.name}:{packet.frame}"))
    files = draw_layouts(layouts, out)
    forms = ", ".join(l.form for l in layouts)
    return Figure(files, f"Header layouts of real captured packets ({forms}): offsets in octets, encrypted and "
                         f"authenticated ranges", layouts)


__all__ = ["FORMS", "Layout", "Segment", "draw_header_layouts", "draw_layouts", "example_packet", "packet_layout"]
