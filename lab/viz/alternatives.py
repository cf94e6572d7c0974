"""Figures of the alternatives to IPsec, from the packets lab.viz.vpns finds in captures:
a ladder per VPN (its handshake or control channel as arrows, its data as bands per receiver
index, peer id, TLS connection or DTLS epoch), one real data packet of each VPN beside ESP's
(what an observer can read, offsets in octets), and their overhead and the largest inner packet
beside ESP's forms (OpenConnect's with the cipher its ServerHello chose).

    found = vpn_packets(capture)
    draw_vpn_ladder(capture, WIREGUARD, "figures/ladder-wireguard", found=found)
    draw_vpn_layouts([capture], "figures/headers-vpns")
    draw_vpn_mtu([capture], "figures/mtu-vpns")

Every format of lab.viz.vpns.FORMATS is drawn the same way: a new one needs no code here.
"""
from __future__ import annotations

import struct
from pathlib import Path

from lab.runfolder import Topology

from .analysis import CaptureAnalysis, Packet
from .ladder import Arrow, Band, Ladder, Lane, _is_private, _names_from_topology, draw_ladder_model, ladder_slides
from .layout import Layout, Segment, layouts_figure, packet_layout
from .mtu import CONFIGS, FORM_COLORS, Form, MtuModel, Observation, draw_mtu_model, largest_inner, observations, wire_size
from .style import Figure
from .vpns import FORMATS, VpnFormat, VpnPacket, formats_in, ip_transport, vpn_packets, vpn_unread

# ---------------------------------------------------------------- the ladder


def _band_label(fmt: VpnFormat, band: Band, first: VpnPacket, last: VpnPacket, session: str, keepalives: int) -> str:
    what = "packet" if band.count == 1 else "packets"
    counters = (f", counter {first.message.counter}" if first.message.counter == last.message.counter
                else f", counter {first.message.counter}-{last.message.counter}") \
        if first.message.counter is not None else ""
    empty = f" ({keepalives} keepalive{'s' if keepalives > 1 else ''})" if keepalives else ""
    missing = ""
    if first.message.counter is not None and last.message.counter is not None:
        gap = last.message.counter - first.message.counter + 1 - band.count
        if gap > 0:   # each packet takes the next counter: those between that the capture lacks
            missing = f"; {gap} counters between not in this capture"
    return f"{fmt.name} data, {session}: {band.count} {what}{empty}{counters}{missing}"


def build_vpn_ladder(capture: CaptureAnalysis, fmt: VpnFormat, topology: Topology | None = None,
                     found: list[VpnPacket] | None = None, behind: dict[tuple[str, str], str] | None = None) -> Ladder:
    """The ladder of one VPN format in one capture: one arrow per handshake or control
    message, data as bands (one per direction and receiver index / peer id between two
    arrows). `behind` names a NAT box's public address by the gateway behind it."""
    items = [f for f in (vpn_packets(capture, [fmt]) if found is None else found) if f.format.key == fmt.key]
    names = _names_from_topology(topology)
    lanes: list[Lane] = []
    lane_of: dict[str, int] = {}
    for item in items:
        for address in (item.src, item.dst):
            if address not in lane_of:
                name = (behind or {}).get((fmt.key, address)) or names.get(address,
                                                                            "initiator" if not lanes else "responder")
                lane_of[address] = len(lanes)
                lanes.append(Lane(name, [address]))
    title = f"{fmt.name} in {capture.title}"
    ladder = Ladder(lanes, [], [], title, items[0].packet.time if items else capture.start,
                    legend=[("line", fmt.color, f"{fmt.name}: handshake and control messages"),
                            ("band", fmt.color, f"{fmt.name} data, one band per direction and session")])
    unread = vpn_unread(capture).get(fmt.key, 0) if fmt.transport == "tcp" else 0
    if unread:
        ladder.notes.append(f"Not drawn: {unread:,} TCP segments of {fmt.name} after a gap in this capture that "
                            "never filled (a packet the tap missed; tcpdump counts those it dropped in "
                            "logs/tap-*.txt). The messages and data packets counted here are those before the gap.")
    row = 0
    run: dict[tuple, list] = {}   # (src, dst, session) -> [band, first, last, keepalives]

    def flush() -> None:
        nonlocal row
        for band, first, last, keepalives in sorted(run.values(), key=lambda r: r[0].time):
            band.row = row
            band.label = _band_label(fmt, band, first, last, first.message.session, keepalives)
            ladder.bands.append(band)
            row += 1
        run.clear()

    for item in items:
        packet, message = item.packet, item.message
        src, dst = lane_of[item.src], lane_of[item.dst]
        frames = [(capture.name, f) for f in item.frames]
        if not message.handshake:
            key = (src, dst, message.session)
            entry = run.get(key)
            if entry is None:
                entry = run[key] = [Band(0, src, dst, fmt.name, "", 0, 0, 0, packet.time, packet.time,
                                         color=fmt.color), item, item, 0]
            band = entry[0]
            band.count += 1
            band.end = packet.time
            band.frames += frames
            entry[2] = item
            entry[3] += message.keepalive
            continue
        flush()
        octets = f"{message.length} octets"
        ladder.arrows.append(Arrow(row, src, dst, packet.sport, packet.dport, message.label,
                                   f"{octets}: {message.detail}" if message.detail else octets, "vpn", packet.time,
                                   frames, color=fmt.color))
        row += 1
    flush()
    return ladder


def draw_vpn_ladder(capture: CaptureAnalysis, fmt: VpnFormat, out: str | Path, topology: Topology | None = None,
                    found: list[VpnPacket] | None = None, behind: dict[tuple[str, str], str] | None = None) -> Figure:
    ladder = build_vpn_ladder(capture, fmt, topology, found, behind)
    files = draw_ladder_model(ladder, out)
    data = sum(b.count for b in ladder.bands)
    caption = (f"Ladder of {ladder.title}: {len(ladder.arrows)} handshake and control messages, {data} data "
               f"packets in {len(ladder.bands)} bands")
    unread = vpn_unread(capture).get(fmt.key, 0) if fmt.transport == "tcp" else 0
    if unread:
        caption += f"; {unread:,} TCP segments after a gap in the capture not read"
    slides = ladder_slides(ladder)
    pngs = [p for p in files[2:] if p.suffix == ".png"]
    pages = [(png, f"Ladder of {ladder.title}, slide {n} of {len(slides)}") for n, png in enumerate(pngs, start=1)]
    return Figure(files, caption, ladder, pages=pages)


def nat_names(captures: list[CaptureAnalysis], topology: Topology | None,
              found: dict[int, list[VpnPacket]] | None = None) -> dict[tuple[str, str], str]:
    """(format, a NAT box's public address) -> "gwc behind nat", from captures inside it: the
    gateway that sent the same format's packets to the same peer there. Empty when unknown or
    when several gateways share the address for the same format."""
    names = _names_from_topology(topology)
    inside: dict[tuple[str, str], set[str]] = {}   # (format, peer) -> private senders
    for capture in captures:
        for item in (found or {}).get(id(capture)) or vpn_packets(capture):
            if _is_private(item.src) and not _is_private(item.dst):
                inside.setdefault((item.format.key, item.dst), set()).add(names.get(item.src, item.src))
    out: dict[tuple[str, str], str] = {}
    for capture in captures:
        for item in (found or {}).get(id(capture)) or vpn_packets(capture):
            senders = inside.get((item.format.key, item.dst), set())
            if not _is_private(item.src) and len(senders) == 1 and (item.format.key, item.src) not in out:
                nat = names.get(item.src, "the NAT box")
                out[(item.format.key, item.src)] = f"{next(iter(senders))} behind {nat}"
    return out


# ---------------------------------------------------------------- the header layouts

_KINDS = {"header": "vpn", "encrypted": "ciphertext", "tag": "icv", "opaque": "iv"}


def vpn_layout(item: VpnPacket, source: str = "") -> Layout:
    """The layout of one captured packet carrying one whole VPN message: IP, UDP or TCP (and
    its 2-octet length), then the message's fields, with what is encrypted and what the
    tag authenticates."""
    if item.offset is None:
        raise ValueError(f"frame {item.packet.frame}: the message spans TCP segments")
    data, fmt, message = item.packet.data, item.format, item.message
    ihl = (data[0] & 0x0F) * 4
    total = struct.unpack_from("!H", data, 2)[0]
    at = item.offset
    segments = [Segment(0, ihl, "IP header", "ip")]
    if fmt.transport == "udp":
        segments.append(Segment(ihl, at, "UDP", "udp"))
    elif fmt.tcp_length_prefix:
        segments.append(Segment(ihl, at - 2, "TCP", "udp"))
        segments.append(Segment(at - 2, at, "length", "vpn"))
    else:
        segments.append(Segment(ihl, at, "TCP", "udp"))
    spans: dict[tuple[int, int], list] = {}
    for f in message.fields:   # fields that share octets (OpenVPN's opcode and key id) as one segment
        spans.setdefault((f.start, f.end), []).append(f)
    for (start, end), fields in sorted(spans.items()):
        label = "/".join(f.name for f in fields)
        segments.append(Segment(at + start, at + end, label, _KINDS[fields[0].kind]))
    encrypted = [f for f in message.fields if f.kind == "encrypted"]
    tag = next((f for f in message.fields if f.kind == "tag"), None)
    layout = Layout(f"{fmt.name} data" if not message.handshake else f"{fmt.name} {message.label}", "", total,
                    segments, source=source)
    if encrypted:
        layout.encrypted = (at + encrypted[0].start, at + encrypted[-1].end)
    clear = []
    for (start, end), fields in sorted(spans.items()):
        if fields[0].kind == "header":
            clear.append(" / ".join(f"{f.name} {f.value}".strip() for f in fields) + f" ({end - start})")
    layout.detail = f"{total - (message.ciphertext or 0)} octets around {message.ciphertext} encrypted"
    layout.notes = ["in clear, from the left (octets): " + ", ".join(clear)]
    if fmt.key == "wireguard" and tag is not None and encrypted:
        layout.authenticated = (at + encrypted[0].start, at + encrypted[-1].end)
        layout.notes.append("ChaCha20-Poly1305: the inner packet padded to a multiple of 16 (its size is hidden "
                            "to 16 octets), then the 16-octet tag; the counter is the nonce and the receiver index "
                            "picks the key, so changing either fails the tag")
    elif fmt.key.startswith("openvpn") and tag is not None:
        layout.authenticated = (at, at + message.length)
        layout.notes.append("AES-256-GCM: the 16-octet tag comes before the ciphertext; it covers the opcode, peer "
                            "id and packet id (as associated data) and the ciphertext; GCM pads nothing, so the "
                            "inner packet's size shows")
    elif fmt.key.startswith("openconnect") and tag is not None:
        layout.authenticated = (at, at + message.length)
        nonce = next((f for f in message.fields if f.name == "explicit nonce"), None)
        inside = "a 1-octet packet type" if fmt.transport == "udp" else "the 8-octet CSTP header"
        layout.notes.append(f"{fmt.algorithm}: the record header in clear and authenticated as associated data; "
                            f"encrypted: {inside} and the inner packet"
                            + (" and the real content type" if any(f.name == "content type (encrypted)"
                                                                    for f in message.fields) else "")
                            + ("; the 8-octet explicit nonce in clear" if nonce else "")
                            + "; the 16-octet tag last; nothing padded, so the inner packet's size shows")
    if fmt.transport == "tcp" and fmt.tcp_length_prefix:
        layout.notes.append("over TCP: a 2-octet length before each message; TCP's own header (with timestamps) "
                            "and its ACKs come on top")
    elif fmt.transport == "tcp":
        layout.notes.append("over TCP: TLS records one after the other in the stream; TCP's own header (with "
                            "timestamps) and its ACKs come on top")
    return layout


def alone(item: VpnPacket) -> bool:
    """The message is all its captured packet carries (over TCP: no other message, or part of one, in
    the segment): the packet's size is the message's cost on the wire."""
    transport = ip_transport(item.packet)
    return transport is not None and item.offset == transport[3] + 2 * item.format.tcp_length_prefix and \
        item.offset + item.message.length == struct.unpack_from("!H", item.packet.data, 2)[0]


def first_data(found: list[VpnPacket], fmt: VpnFormat, inner: int | None = None) -> VpnPacket | None:
    """The first data message of `fmt` that carries a packet (of `inner` octets, if given and the
    format shows it) and fills one captured packet alone."""
    for item in found:
        if item.format.key == fmt.key and not item.message.handshake and not item.message.keepalive and alone(item) \
                and (inner is None or item.message.ciphertext == inner):
            return item
    return None


def _first_esp(captures: list[CaptureAnalysis]) -> tuple[CaptureAnalysis, Packet] | None:
    for capture in captures:
        for packet in capture.ipsec():
            sa = packet.ipsec
            if sa is not None and sa.protocol == "ESP" and packet.inner is not None and sa.mode == "tunnel":
                return capture, packet
    return None


def vpn_layouts(captures: list[CaptureAnalysis], found: dict[int, list[VpnPacket]] | None = None) -> list[Layout]:
    """One real data packet of ESP (decrypted: the first ESP tunnel packet) and of each VPN format:
    one with the same inner packet as ESP's where the capture has one (openconnect's first DTLS
    packets are its path MTU probes, padded)."""
    layouts = []
    esp = _first_esp(captures)
    same: int | None = None
    if esp is not None:
        capture, packet = esp
        same = packet.inner.length if packet.inner is not None else None
        title = "ESP-in-UDP tunnel" if packet.ipsec is not None and packet.ipsec.encap else (
            "ESP-in-TCP tunnel" if packet.ipsec is not None and packet.ipsec.tcp else "ESP tunnel")
        layouts.append(packet_layout(packet, capture.keys, title, f"{capture.name}:{packet.frame}"))
    for fmt in FORMATS:
        for capture in captures:
            items = (found or {}).get(id(capture)) or vpn_packets(capture, [fmt])
            item = first_data(items, fmt, same) or first_data(items, fmt)
            if item is not None:
                layouts.append(vpn_layout(item, f"{capture.name}:{item.packet.frame}"))
                break
    return layouts


def draw_vpn_layouts(captures: list[CaptureAnalysis], out: str | Path,
                     found: dict[int, list[VpnPacket]] | None = None) -> Figure:
    layouts = vpn_layouts(captures, found)
    return layouts_figure(layouts, out, "One real data packet of each VPN",
                          "Header layouts of one captured data packet of each VPN ("
                          + ", ".join(f"{l.form} {l.length}" for l in layouts)
                          + " octets): what an observer reads, what is encrypted")


# ---------------------------------------------------------------- overhead and MTU

# the IPsec forms the comparison shows: the lab's (ESP in UDP through a NAT box) and plain ESP
IPSEC_ROWS = ("ESP-in-UDP tunnel, AES-GCM-128", "ESP tunnel, AES-GCM-128")


def _row_name(fmt: VpnFormat) -> str:
    return f"{fmt.name}, {fmt.algorithm}".rstrip(", ")


def configured(formats: list[VpnFormat], found: dict[int, list[VpnPacket]] | None,
               captures: list[CaptureAnalysis]) -> list[VpnFormat]:
    """The formats as the captures' handshakes set them up (the cipher OpenConnect's ServerHello chose)."""
    every = [item for capture in captures for item in (found or {}).get(id(capture)) or vpn_packets(capture, formats)]
    return [fmt.configured(every) for fmt in formats]


def largest_vpn_inner(fmt: VpnFormat, path_mtu: int) -> int:
    """The largest inner packet whose datagram (its largest form) is at most `path_mtu` octets."""
    low, high = 28, path_mtu
    while low < high:
        mid = (low + high + 1) // 2
        if fmt.wire_size(mid)[1] <= path_mtu:
            low = mid
        else:
            high = mid - 1
    return min(low, fmt.mtu or low)


def vpn_observations(found: list[VpnPacket], capture: CaptureAnalysis) -> list[Observation]:
    """(inner, wire) of data packets whose inner size the wire shows: a format that pads
    nothing (OpenVPN with GCM), one whole message per captured packet. WireGuard pads to 16,
    so its inner size is not on the wire."""
    out = []
    setup = {fmt.key: fmt for fmt in configured(formats_in(found), {id(capture): found}, [capture])}
    for item in found:
        fmt, message = setup[item.format.key], item.message
        if fmt.pads or message.handshake or message.keepalive or message.ciphertext is None or item.offset is None:
            continue
        if fmt.payload_size(message.ciphertext)[0] != message.length or not alone(item):
            continue
        out.append(Observation(_row_name(fmt), message.ciphertext, item.packet.length,
                                  f"{capture.name}:{item.packet.frame}"))
    return out


def vpn_mtu_model(captures: list[CaptureAnalysis], path_mtu: int = 1500, formats: list[VpnFormat] | None = None,
                  found: dict[int, list[VpnPacket]] | None = None, step: int = 1) -> MtuModel:
    formats = configured(list(FORMATS if formats is None else formats), found, captures)
    sizes = list(range(40, max(1500, path_mtu) + 1, step))
    series: dict[str, list[int]] = {}
    largest: dict[str, int] = {}
    colors: dict[str, str] = {}
    configs: list[Form] = [c for c in CONFIGS if c.name in IPSEC_ROWS]
    for config in configs:
        sa = config.sa()
        series[config.name] = [wire_size(config, n, sa) for n in sizes]
        largest[config.name] = largest_inner(config, path_mtu)
        colors[config.name] = FORM_COLORS[config.name.split(",")[0]]
    for fmt in formats:
        name = _row_name(fmt)
        series[name] = [fmt.wire_size(n)[1] for n in sizes]
        largest[name] = largest_vpn_inner(fmt, path_mtu)
        colors[name] = fmt.color
    seen = [o for o in observations(captures) if o.config in series]
    for capture in captures:
        seen += vpn_observations((found or {}).get(id(capture)) or vpn_packets(capture, formats), capture)
    note = ("IPsec rows: computed by protecting real packets with lab.esp; the others: each format's "
            "arithmetic (lab/viz/vpns.py), IPv4, TCP with timestamps (32 octets). WireGuard pads the inner packet "
            "to 16 (hatched), so no captured packet shows its inner size; wireguard-go's interface MTU (1420 by "
            "default) sends nothing larger. Over TCP a larger packet is cut into TCP segments instead of IP "
            "fragments.")
    if any(fmt.key.startswith("openconnect") for fmt in formats):
        # a capture without OpenConnect (compare-site-to-site) still gets its rows, from the defaults
        chosen = any(getattr(fmt, "negotiated_here", False) for fmt in formats)   # _Records
        note += (" OpenConnect: " + ("the cipher its ServerHello chose in these captures" if chosen else
                                     "not in these captures; the cipher and TLS version ocserv chose in the lab's runs")
                 + "; its tun device takes the MTU ocserv sends it: the lab's captures show inner packets of up to "
                   "1434 octets (what DTLS leaves of 1500), over TLS too.")
    names = [f.name.split(" (")[0] for f in formats]
    vpns = list(dict.fromkeys(n.split(" over ")[0].split(" DTLS")[0] for n in names))
    title = "MTU and overhead: " + ", ".join(["IPsec", *vpns[:-1]]) + f" and {vpns[-1]} on the same path" \
        if vpns else "MTU and overhead: IPsec"
    return MtuModel(sizes, series, largest, path_mtu, seen, colors, title, "the VPN", note)


def draw_vpn_mtu(captures: list[CaptureAnalysis], out: str | Path, path_mtu: int = 1500,
                 found: dict[int, list[VpnPacket]] | None = None) -> Figure:
    model = vpn_mtu_model(captures, path_mtu, found=found)
    files = draw_mtu_model(model, out)
    parts = ", ".join(f"{name.split(',')[0]} {model.largest[name]}" for name in model.series)
    what = model.title.split(" on the same path")[0].replace("overhead: ", "overhead of ")
    caption = (f"{what}: the largest inner packet through a path MTU of "
               f"{path_mtu}: {parts}; {len(model.seen)} captured packets on their rows")
    return Figure(files, caption, model)


__all__ = ["build_vpn_ladder", "draw_vpn_ladder", "draw_vpn_layouts", "draw_vpn_mtu", "first_data",
           "formats_in", "largest_vpn_inner", "nat_names", "vpn_layout", "vpn_layouts", "vpn_mtu_model",
           "vpn_observations"]
