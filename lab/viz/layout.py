"""Header layouts of real captured packets: one bar per packet, its headers with byte
offsets, and which octets are encrypted and which authenticated (RFC 4303 §2, RFC 4302
§3.3.3, RFC 3948 §2.1, and ESP in a TCP stream: RFC 9329 §3.2).

    layouts = [packet_layout(packet, capture.keys) for ...]
    draw_header_layouts(layouts, "figures/headers")
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

from lab.esp import EspDrop
from lab.esp.algorithms import encr_spec
from lab.ike.const import EncrId, IntegId, name_of

from .analysis import PROTO_ICMP, PROTO_IPIP, PROTO_NAMES, PROTO_UDP, CaptureAnalysis, Packet
from .keys import KeyTables
from .style import (
    FONT,
    LABEL_FONT,
    MONO,
    SLIDE_HEIGHT,
    TITLE_FONT,
    WIDTH,
    Figure,
    new_figure,
    new_slide,
    outputs,
    save,
    styled,
    text_width,
    wrap,
)

SEGMENT_COLORS = {
    "ip": "#9ecae1", "inner-ip": "#c6dbef", "udp": "#fdd0a2", "esp": "#a1d99b", "iv": "#d9d9d9",
    "transport": "#fcbba1", "data": "#fee0d2", "trailer": "#bcbddc", "icv": "#fdae6b", "ah": "#fde68a",
    "ah-icv": "#fdae6b", "ciphertext": "#e7969c", "vpn": "#a1d99b", "tcp": "#fdd0a2", "length": "#fee391",
    "stream": "#eeeeee",
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
    notes: list[str] = field(default_factory=list)   # what the algorithms' names say, in words


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
    """The layout of one captured IPv4 packet: plain, ESP (transport/tunnel, in UDP, in a TCP
    stream or neither, NULL encryption) or AH (transport/tunnel). ESP's inner split needs the
    packet's keys."""
    data = packet.data
    segments, ihl, protocol = _ip_segments(data, 0, "ip", "IP header")
    total = struct.unpack_from("!H", data, 2)[0]
    layout = Layout(form or "", "", total, segments, source=source)
    at = ihl
    encap = False
    end = total            # where the ESP packet ends (before later frames of a TCP segment)
    stream = packet.tcp if packet.ipsec is not None else None
    if protocol == PROTO_UDP and packet.ipsec is not None:
        segments.append(Segment(at, at + 8, "UDP", "udp"))
        at += 8
        encap = True
    elif stream is not None:
        header_end = at + (data[at + 12] >> 4) * 4
        segments.append(Segment(at, header_end, "TCP", "tcp"))
        if stream.offset is None:   # split over segments: this one holds only part of it
            segments.append(Segment(header_end, total, "part of a frame split over TCP segments", "stream"))
            layout.form, layout.detail = form or "ESP in TCP", "frame split over segments"
            return layout
        if stream.offset > header_end:
            segments.append(Segment(header_end, stream.offset, "earlier frames", "stream"))
        segments.append(Segment(stream.offset, stream.offset + 2, "length", "length"))   # RFC 9329 §3.2
        at = stream.offset + 2
        end = at + len(stream.data)
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
        layout.notes = [f"AH: its {ah_length - 12}-octet ICV covers the whole packet but the IP fields a router may "
                        "change (hatched; RFC 4302 §3.3.3.1); nothing is encrypted"]
        return layout
    esp_start = at
    segments += [Segment(at, at + 4, "SPI", "esp"), Segment(at + 4, at + 8, "Seq", "esp")]
    sa_keys = keys.esp_sa(sa.spi, packet.src, packet.dst) if keys is not None else None
    if sa_keys is None:
        segments.append(Segment(at + 8, end, "encrypted (no keys: the split is unknown)", "ciphertext"))
        layout.form = form or ("ESP in UDP" if encap else "ESP")
        layout.detail = "no keys"
        return layout
    spec = encr_spec(sa_keys.encr_id)
    icv = sa_keys.inbound_sa().icv_size
    try:
        payload, next_header = sa_keys.inbound_sa().open_payload(data[esp_start:end])
    except EspDrop as err:
        segments.append(Segment(at + 8, end, f"not decrypted ({err})", "ciphertext"))
        layout.form, layout.detail = form or "ESP", "keys do not open it"
        return layout
    iv_end = at + 8 + spec.iv_size
    if spec.iv_size:
        segments.append(Segment(at + 8, iv_end, "IV", "iv"))
    payload_end = iv_end + len(payload)
    segments += _inner_segments(data[:iv_end] + payload, iv_end, payload_end, next_header)
    trailer_end = end - icv
    segments.append(Segment(payload_end, trailer_end, "trailer", "trailer"))
    if icv:
        segments.append(Segment(trailer_end, end, "ICV", "icv"))
    null = sa_keys.encr_id == EncrId.NULL
    # RFC 4303 §2: the ICV covers the ESP header, the payload (IV included) and the trailer
    layout.authenticated = (esp_start, trailer_end) if icv else None
    layout.encrypted = None if null else (iv_end, trailer_end)
    mode = "tunnel" if next_header in (PROTO_IPIP, 41) else "transport"
    carrier = "-in-UDP" if encap else ("-in-TCP" if stream is not None else "")
    layout.form = form or (f"ESP-NULL {mode}" if null else f"ESP{carrier} {mode}")
    pad = trailer_end - payload_end - 2
    integ = "" if spec.aead else f" + {name_of(IntegId, sa_keys.integ_id)}"
    layout.detail = f"{name_of(EncrId, sa_keys.encr_id)}{integ}, pad {pad}"
    layout.pad_length = pad
    layout.notes = algorithm_notes(sa_keys.encr_id, None if spec.aead else sa_keys.integ_id, spec.iv_size, icv)
    layout.notes.append(f"pad {pad}: padding so that payload and trailer end on {_octets(max(spec.block_size, 4))} "
                        "boundary (RFC 4303 §2.4)")
    if stream is not None and stream.offset is not None:
        tcp_header = stream.offset - ihl
        if end < total:
            segments.append(Segment(end, total, "later frames", "stream"))
        layout.notes.append(f"in TCP: the {tcp_header}-octet TCP header, then the frame's 2-octet length (yellow, "
                            f"counting itself) before the ESP header, no marker (an SPI is never 0): "
                            f"{tcp_header + 2 - 8} octets more than ESP in UDP (RFC 9329 §3.2)")
    return layout


def _octets(n: int) -> str:
    """`a 16-octet`, `an 8-octet`."""
    return f"{'an' if str(n).startswith('8') or n in (11, 18) else 'a'} {n}-octet"


def algorithm_notes(encr_id: int, integ_id: int | None, iv: int, icv: int) -> list[str]:
    """What an ESP SA's algorithm names say, in words: `AES_GCM_16` is AES-GCM with a
    16-octet ICV. `iv` and `icv` are the octets the packet really has."""
    encr = name_of(EncrId, encr_id)
    match = re.fullmatch(r"(AES|CAMELLIA)_(GCM|CCM)_(\d+)(_IIV)?", encr)
    if match:
        cipher, mode, digits, implicit = match.groups()
        mode_words = {"GCM": "Galois/Counter Mode", "CCM": "CCM mode (counter with CBC-MAC)"}[mode]
        the = f"the _{digits} in its name; " if int(digits) == icv else ""
        source = {"AES_GCM": "RFC 4106 §6", "AES_CCM": "RFC 4309"}.get(f"{cipher}_{mode}", "RFC 5529")
        iv_words = "no IV on the wire (RFC 8750)" if implicit else f"{_octets(iv)} IV"
        return [f"{encr} = {cipher} in {mode_words} with {_octets(icv)} ICV ({the}{source}) and {iv_words}: it "
                "encrypts and authenticates at once, so no separate integrity algorithm"]
    if encr.startswith("CHACHA20_POLY1305"):
        return [f"{encr} = ChaCha20 to encrypt, Poly1305 to authenticate: {_octets(icv)} ICV (RFC 7634)"]
    out = []
    if encr == "NULL":
        out.append("NULL = no encryption: the payload travels in the clear (RFC 2410)")
    elif encr == "AES_CBC":
        out.append(f"AES_CBC = AES in CBC mode with {_octets(iv)} IV (RFC 3602)")
    else:
        out.append(f"{encr}: {_octets(iv)} IV")
    if integ_id is not None:
        integ = name_of(IntegId, integ_id)
        match = re.fullmatch(r"HMAC_(SHA2_(\d+)|SHA1|MD5)_(\d+)", integ)
        if match:
            hash_name = f"SHA-{match[2]}" if match[2] else {"SHA1": "SHA-1", "MD5": "MD5"}[match[1]]
            source = {"SHA1": "RFC 2404", "MD5": "RFC 2403"}.get(match[1], "RFC 4868")
            out.append(f"{integ} = HMAC-{hash_name} cut to {match[3]} bits: {_octets(icv)} ICV ({source})")
        else:
            out.append(f"{integ}: {_octets(icv)} ICV")
    return ["; ".join(out)]


FORMS = ("plain", "esp-transport", "esp-tunnel", "esp-udp-tunnel", "esp-tcp-tunnel", "ah-transport", "ah-tunnel",
         "esp-null")
FORM_TITLES = {"plain": "plain IP", "esp-transport": "ESP transport", "esp-tunnel": "ESP tunnel",
               "esp-udp-tunnel": "ESP-in-UDP tunnel", "esp-tcp-tunnel": "ESP-in-TCP tunnel",
               "ah-transport": "AH transport", "ah-tunnel": "AH tunnel", "esp-null": "ESP-NULL tunnel"}


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
#
# One panel per packet (per form): its title, its ranges, the bar of its headers with
# offsets, and what its algorithms' names mean. All panels share one scale of octets. When
# the panels do not fit one 16:9 slide, the figure holds them all and slides NAME-1.png,
# NAME-2.png ... hold a few each.

BAR_X0, BAR_X1 = 0.45, 15.55
BAR_HEIGHT = 0.4
HEAD = 0.85              # inches: the figure's title
FOOT = 0.55              # the footnote
LINE = 0.27
PANEL_GAP = 0.12
PANEL_FACE, PANEL_EDGE = "#f7f7f7", "#bbbbbb"


def _panel_notes(layout: Layout) -> list[str]:
    return [line for note in layout.notes for line in wrap(note, BAR_X1 - BAR_X0, FONT)]


def _panel_height(layout: Layout) -> float:
    return 2.05 + len(_panel_notes(layout)) * LINE + 0.12


def _footnotes(layouts: list[Layout]) -> list[str]:
    notes = ["tr = trailer: padding, Pad Length, Next Header (RFC 4303 §2.4)"] if any(
        s.kind == "trailer" for l in layouts for s in l.segments) else []
    if any(l.mutable for l in layouts):
        notes.append("hatched: IP fields AH leaves out of the ICV (TOS, flags, TTL, checksum)")
    return notes


def layout_slides(layouts: list[Layout]) -> list[list[Layout]]:
    """The panels on 16:9 slides, as many on each as fit."""
    room = SLIDE_HEIGHT - HEAD - FOOT
    pages: list[list[Layout]] = []
    used = room
    for layout in layouts:
        height = _panel_height(layout) + PANEL_GAP
        if used + height > room and (not pages or pages[-1]):
            pages.append([])
            used = 0.0
        pages[-1].append(layout)
        used += height
    return pages


def _segment_text(seg: Segment, width: float) -> tuple[str, int]:
    """(text, rotation) that fits a segment `width` inches wide: its label, a short form, or
    the short form turned on its side; ("", 0) when nothing fits."""
    if text_width(seg.label, FONT) + 0.1 <= width:
        return seg.label, 0
    short = _short(seg)
    if short and text_width(short, FONT) + 0.06 <= width:
        return short, 0
    if short and width > 0.2 and text_width(short, FONT - 1) <= BAR_HEIGHT - 0.02:  # on its side, across the bar
        return short, 90
    return "", 0


@styled
def render_layouts(layouts: list[Layout], title: str, page: tuple[int, int] | None = None,
                   longest: int | None = None, slide: bool = False):
    """The figure of these panels (a 16:9 slide when `slide`), not saved; `longest` octets
    span the bar's width (the longest packet of all panels, so that slides share a scale)."""
    from matplotlib.patches import FancyBboxPatch, Rectangle

    body = sum(_panel_height(l) + PANEL_GAP for l in layouts)
    height = SLIDE_HEIGHT if slide else HEAD + body + FOOT
    fig = new_slide() if slide else new_figure(height)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, WIDTH)
    ax.set_ylim(height, 0)
    ax.axis("off")
    ax.text(WIDTH / 2, 0.42, title, ha="center", va="center", fontsize=TITLE_FONT, weight="bold")
    if page:
        ax.text(WIDTH - 0.2, 0.42, f"slide {page[0]}/{page[1]}", ha="right", va="center", fontsize=FONT,
                color="#666666")
    longest = longest or max((l.length for l in layouts), default=1)
    scale = (BAR_X1 - BAR_X0) / longest

    def x(offset: int) -> float:
        return BAR_X0 + offset * scale

    top = HEAD
    for layout in layouts:
        panel = _panel_height(layout)
        ax.add_patch(FancyBboxPatch((0.2, top), WIDTH - 0.4, panel, boxstyle="round,pad=0.02", facecolor=PANEL_FACE,
                                    edgecolor=PANEL_EDGE, lw=1.2, zorder=0))
        head = ax.text(BAR_X0, top + 0.27, layout.form, ha="left", va="center", fontsize=LABEL_FONT, weight="bold")
        rest = f"{layout.length} octets" + (f", {layout.detail}" if layout.detail else "") + \
            (f"   ({layout.source.replace(':', ', frame ')})" if layout.source else "")
        ax.text(BAR_X0 + text_width(layout.form, LABEL_FONT, weight="bold") + 0.25, top + 0.27, rest, ha="left",
                va="center", fontsize=FONT, color="#333333")
        del head
        bar_y = top + 1.35                      # the bar's middle
        for seg in layout.segments:
            ax.add_patch(Rectangle((x(seg.start), bar_y - BAR_HEIGHT / 2), seg.length * scale, BAR_HEIGHT,
                                   facecolor=SEGMENT_COLORS.get(seg.kind, "#eeeeee"), edgecolor="#333333", lw=1.2))
            text, rotation = _segment_text(seg, seg.length * scale)
            if text:
                ax.text(x(seg.start) + seg.length * scale / 2, bar_y, text, ha="center", va="center",
                        fontsize=FONT if not rotation else FONT - 1, rotation=rotation)
        for start, end in layout.mutable:
            ax.add_patch(Rectangle((x(start), bar_y - 0.2), (end - start) * scale, 0.4, facecolor="none",
                                   edgecolor="#555555", hatch="//", lw=0))
        last = -1.0
        for offset in sorted({s.start for s in layout.segments} | {layout.length}):
            width = text_width(str(offset), FONT, MONO)
            if x(offset) - width / 2 < last + 0.08:
                continue
            last = x(offset) + width / 2
            ax.plot([x(offset)] * 2, [bar_y + 0.2, bar_y + 0.28], color="#333333", lw=1)
            ax.text(x(offset), bar_y + 0.3, str(offset), ha="center", va="top", fontsize=FONT, family=MONO)
        for span, label, color, level in ((layout.authenticated, "authenticated (ICV)", "#1f4e9c", 0),
                                          (layout.encrypted, "encrypted", "#c0392b", 1)):
            if span is None:
                continue
            yb = bar_y - 0.32 - level * 0.33
            ax.annotate("", xy=(x(span[1]), yb), xytext=(x(span[0]), yb),
                        arrowprops=dict(arrowstyle="|-|", color=color, lw=2, mutation_scale=6))
            ax.text(x(span[0]) + 0.05, yb - 0.03, label, ha="left", va="bottom", fontsize=FONT, color=color,
                    weight="bold")
        for index, line in enumerate(_panel_notes(layout)):
            ax.text(BAR_X0, top + 2.05 + (index + 0.5) * LINE, line, ha="left", va="center", fontsize=FONT,
                    color="#222222")
        top += panel + PANEL_GAP
    ax.text(WIDTH / 2, height - FOOT / 2, "      ".join(_footnotes(layouts)), ha="center", va="center",
            fontsize=FONT, color="#444444")
    return fig


@styled
def draw_layouts(layouts: list[Layout], out: str | Path, title: str = "One real packet of each form",
                 slides: list[list[Layout]] | None = None) -> list[Path]:
    """out.png/.svg with every panel (a 16:9 slide when they fit one); when they do not,
    also out-1.png/.svg, out-2... with a few panels each. The files, PNG first."""
    slides = layout_slides(layouts) if slides is None else slides
    longest = max((l.length for l in layouts), default=1)
    whole = len(slides) <= 1
    files = save(render_layouts(layouts, title, longest=longest, slide=whole), out, slide=whole)
    stem = outputs(out)[0].with_suffix("")
    if not whole:
        for number, page in enumerate(slides, start=1):
            files += save(render_layouts(page, title, (number, len(slides)), longest, slide=True),
                          f"{stem}-{number}", slide=True)
    for path in stem.parent.glob(f"{stem.name}-*"):  # slides of an earlier drawing beyond those drawn now
        suffix = path.stem[len(stem.name) + 1:]
        if suffix.isdigit() and int(suffix) > (0 if whole else len(slides)) and path.suffix in (".png", ".svg"):
            path.unlink()
    return files


def layouts_figure(layouts: list[Layout], out: str | Path, title: str, caption: str) -> Figure:
    """draw_layouts as a Figure, its slides (if any) with their captions."""
    slides = layout_slides(layouts)
    files = draw_layouts(layouts, out, title, slides)
    pngs = [p for p in files[2:] if p.suffix == ".png"]
    pages = [(png, f"Header layouts, slide {n} of {len(pngs)}: " + ", ".join(l.form for l in page))
             for n, (png, page) in enumerate(zip(pngs, slides), start=1)]
    return Figure(files, caption, layouts, pages=pages)


def _short(segment: Segment) -> str:
    return {"IP header": "IP", "inner IP": "IP", "trailer": "tr", "ICV": "ICV", "data": "", "IV": "IV",
            "AH": "AH", "UDP": "UDP", "SPI": "SPI", "Seq": "Seq", "TCP": "TCP", "type": "t", "reserved": "",
            "receiver index": "idx", "counter": "ctr", "opcode/key id": "op", "peer id": "peer",
            "packet id": "pid", "tag": "tag", "length": "len", "content type": "ct", "version": "ver",
            "epoch": "ep", "sequence number": "seq", "explicit nonce": "nonce", "CSTP header (encrypted)": "CSTP",
            "packet type (encrypted)": "t", "content type (encrypted)": "ct"}.get(segment.label, segment.label[:3])


def draw_header_layouts(captures: dict[str, CaptureAnalysis], out: str | Path) -> Figure:
    """One real packet of each capture given (form name -> analysed capture), in FORMS order."""
    layouts = []
    for name in sorted(captures, key=lambda n: FORMS.index(n) if n in FORMS else len(FORMS)):
        capture = captures[name]
        packet = example_packet(capture)
        if packet is None or not packet.data or packet.data[0] >> 4 != 4:
            continue
        layouts.append(packet_layout(packet, capture.keys, FORM_TITLES.get(name), f"{capture.name}:{packet.frame}"))
    forms = ", ".join(l.form for l in layouts)
    return layouts_figure(layouts, out, "One real packet of each form",
                          f"Header layouts of real captured packets ({forms}): offsets in octets, encrypted and "
                          "authenticated ranges")


__all__ = ["FORMS", "Layout", "Segment", "algorithm_notes", "draw_header_layouts", "draw_layouts", "example_packet",
           "layout_slides", "layouts_figure", "packet_layout", "render_layouts"]
