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
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

from lab.runfolder import Topology

from .analysis import NOTIFY_SHORT, CaptureAnalysis, NatPair, Packet, match_nat
from .style import (
    COLORS,
    FONT,
    LABEL_FONT,
    MONO,
    OKABE_ITO,
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

INTERESTING = ("ike", "esp", "ah", "keepalive", "ip-fragment")
PLAIN_LIMIT = 100  # arrows of a capture without IKE or ESP: its first packets only


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
    spis: tuple[str, str] | None = None     # the IKE SA's (SPIi, SPIr), hex, of an IKE message
    message_id: int | None = None
    response: bool = False
    callouts: list[str] = field(default_factory=list)  # written on the arrow: NAT-D, message IDs
    color: str = ""             # another protocol's colour (lab.viz.alternatives), else by kind
    tcp: bool = False           # carried in a TCP stream (RFC 9329)
    packets: list[Packet] = field(default_factory=list, repr=False)  # what it was drawn from, one per side


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
    label: str = ""             # the band's words, for another protocol than ESP/AH (lab.viz.alternatives)
    color: str = ""
    tcp_port: int = 0           # ESP in a TCP stream (RFC 9329) to this port
    packets: list[Packet] = field(default_factory=list, repr=False)  # what it was drawn from


@dataclass
class Ladder:
    lanes: list[Lane]
    arrows: list[Arrow]
    bands: list[Band]
    title: str
    start: float
    decrypted: bool = False
    legend: list[tuple[str, str, str]] = field(default_factory=list)  # more samples: (line|band, colour, words)
    notes: list[str] = field(default_factory=list)   # sentences under the legend: what the ladder could not draw

    @property
    def rows(self) -> int:
        return max([a.row for a in self.arrows] + [b.row for b in self.bands], default=-1) + 1


def _names_from_topology(topology: Topology | None) -> dict[str, str]:
    names: dict[str, str] = {}
    for node in topology.nodes if topology is not None else []:
        for intf in node.interfaces:
            for address in intf.addresses:
                names[address.split("/")[0]] = node.name
        if node.nat is not None and node.nat.public:
            names[node.nat.public] = node.name
    return names


def _is_private(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_private and not address.startswith(("192.0.2.", "198.51.100.",
                                                                                    "203.0.113."))
    except ValueError:
        return False


def _nat_public(pairs: list[NatPair], a_in: set[str], a_out: set[str], topology: Topology | None) -> list[str]:
    """The NAT box's own outside addresses: those it wrote into the packets it passed (the
    source of one going out, the destination of one coming in), and a NAT box's public
    address of topology.json seen outside. Not every address seen only outside: an outside
    capture also holds the traffic of the NAT box's other inside links, to other peers."""
    public: list[str] = []
    hidden = a_in - a_out
    for pair in pairs:
        if pair.outbound:
            rewritten, before = pair.outside.src, pair.inside.src
        else:
            rewritten, before = pair.outside.dst, pair.inside.dst
        # an inside host's address replaced by one not seen inside (two packets paired by
        # mistake, e.g. identical NAT-keepalives of two hosts, do not pass this)
        if before in hidden and rewritten not in a_in and rewritten not in public:
            public.append(rewritten)
    for node in topology.nodes if topology is not None else []:
        address = node.nat.public if node.nat is not None else None
        if address and address in a_out and address not in a_in and address not in public:
            public.append(address)
    return sorted(public) if public else sorted(a_out - a_in)


def _interesting(packets: Iterable[Packet]) -> list[Packet]:
    """IKE, ESP/AH, keepalives and IP fragments; in a capture without any, its first PLAIN_LIMIT
    IPv4 packets (a bulk transfer in clear, or in a TCP stream we do not take apart, would be
    thousands of arrows)."""
    packets = list(packets)
    chosen = [p for p in packets if p.kind in INTERESTING]
    if not chosen:
        chosen = [p for p in packets if p.clear is not None and p.data[:1] and p.data[0] >> 4 == 4][:PLAIN_LIMIT]
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
        if ike.key_generation is not None:
            # RFC 9370 §2.2.2: the keys in force, renewed after each additional key exchange
            label += "  (keys of IKE_SA_INIT)" if ike.key_generation == 0 else f"  (keys after ADDKE{ike.key_generation})"
        fragment = None
        if ike.fragment:
            fragment = f"SKF {ike.fragment[0]}/{ike.fragment[1]}"
            label += f"  ({fragment})"
        if packet.ip_fragment:
            label += f"  (IP fragment {packet.ip_fragment[0]}/{packet.ip_fragment[1]}, reassembled)"
            fragment = fragment or f"IP fragment {packet.ip_fragment[0]}/{packet.ip_fragment[1]}"
        if packet.tcp is not None:
            label += "  (TCP)"   # RFC 9329: a frame of a TCP stream
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


def build_ladder(captures: list[CaptureAnalysis], topology: Topology | dict[str, Any] | None = None,
                 pairs: list[NatPair] | None = None) -> Ladder:
    """The ladder of one capture, or of two captured on the inside and the outside of one
    NAT box (given as [inside, outside]; `pairs` from match_nat, computed if None). The lanes
    are named after the nodes of `topology` (topology.json's, or an object shaped like it)."""
    topology = Topology.of(topology)
    names = _names_from_topology(topology)
    nat_mode = len(captures) == 2
    if nat_mode and pairs is None:
        pairs = match_nat(captures[0], captures[1])
        nat_mode = bool(pairs) and any(p.rewrite() != "unchanged" for p in pairs)
    events: list[tuple[float, NatPair | tuple[str, Packet]]] = []   # a pair across the NAT box, or (side, packet)
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
        public = _nat_public(pairs or [], a_in, a_out, topology)
        common = _order(list(a_in & a_out), pin + pout)
        for a in hidden:
            add_lane(names.get(a, a), [a])
        nat_name = names.get(public[0], "NAT box") if public else "NAT box"
        nat_lane = add_lane(nat_name, public, nat=True)
        for a in common:
            add_lane(names.get(a, a), [a])
        pairs = pairs or []
        paired = {id(p.inside) for p in pairs} | {id(p.outside) for p in pairs}
        chosen = {id(p) for p in pin}
        events += [(min(p.inside.time, p.outside.time), p) for p in pairs if p.inside.kind in INTERESTING
                   or id(p.inside) in chosen]
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
            if side == "inside" and nat_lane is not None:   # (a side's packets come with a NAT box's lane)
                if src is not None and (dst is None or dst > nat_lane):
                    dst, note = nat_lane, "not seen outside the NAT box"
                elif dst is not None and (src is None or src > nat_lane):
                    src, note = nat_lane, "not seen outside the NAT box"
            elif side == "outside" and nat_lane is not None:
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
                                       encap=bool(sa and sa.encap), via=via,
                                       tcp_port=first.tcp.server_port if first.tcp is not None else 0)
            band.count += 1
            band.end = first.time
            band.frames += frames
            band.packets += [p for _, p in sides]
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
        tcp = first.tcp is not None
        arrow = Arrow(row, src, dst, first.sport, first.dport, label, chain, kind, first.time, frames, via,
                      (second.sport, second.dport) if via is not None else None, retrans, fragment, note,
                      4500 in (first.sport, first.dport) and not tcp, tcp=tcp, packets=[p for _, p in sides])
        if first.ike is not None and not first.ike.error:
            arrow.spis = (first.ike.spi_i, first.ike.spi_r)
            arrow.message_id, arrow.response = first.ike.message_id, first.ike.response
        rewritten = ((first.src, first.sport) != (second.src, second.sport)) if isinstance(event, NatPair) else None
        arrow.callouts += _nat_detection(second, lanes[src].name, lanes[dst].name, rewritten)
        ladder.arrows.append(arrow)
        row += 1
    flush()
    _explain_moves(ladder)
    _explain_message_ids(ladder, captures)
    return ladder


def _nat_detection(packet: Packet, sender: str, receiver: str, rewritten: bool | None) -> list[str]:
    """What the receiver of an IKE_SA_INIT message learns from its NAT-D notifies: the
    hashes it finds against the addresses on the packet as it arrives (RFC 7296 §2.23)."""
    from lab.ike import payloads as pl
    from lab.ike.const import NotifyType
    from lab.ike.tasks.ike_natd import nat_hash

    ike = packet.ike
    if ike is None or ike.error or ike.exchange_name != "IKE_SA_INIT":
        return []
    spis = bytes.fromhex(ike.spi_i), bytes.fromhex(ike.spi_r)
    found: dict[int, list[bytes]] = {}
    for payload in ike.payload_objects:
        if isinstance(payload, pl.Notify) and payload.notify_type in (NotifyType.NAT_DETECTION_SOURCE_IP,
                                                                      NotifyType.NAT_DETECTION_DESTINATION_IP):
            found.setdefault(int(payload.notify_type), []).append(payload.data)
    out = []
    hashes = found.get(NotifyType.NAT_DETECTION_DESTINATION_IP)
    if hashes and nat_hash(*spis, (packet.dst, packet.dport)) not in hashes:
        out.append(f"NAT-D at {receiver}: NATD_D_IP ≠ hash of {packet.dst}:{packet.dport}, its own address: "
                   f"{receiver} is behind a NAT")
    hashes = found.get(NotifyType.NAT_DETECTION_SOURCE_IP)
    if hashes and nat_hash(*spis, (packet.src, packet.sport)) not in hashes:
        if rewritten is False:
            out.append(f"NAT-D at {receiver}: NATD_S_IP ≠ hash of {packet.src}:{packet.sport}, though no NAT "
                       "rewrote it: some peers send a false hash to force UDP 4500")
        else:
            out.append(f"NAT-D at {receiver}: NATD_S_IP ≠ hash of {packet.src}:{packet.sport}, the source it "
                       f"sees: {sender} is behind a NAT")
    return out


def _explain_moves(ladder: Ladder) -> None:
    """The IKE_SA_INIT response whose NAT-D showed a NAT says where the initiator goes next:
    to UDP 4500 for the rest of the IKE SA (RFC 7296 §2.23)."""
    for index, arrow in enumerate(ladder.arrows):
        if not (arrow.callouts and arrow.label.startswith("IKE_SA_INIT")):
            continue
        if not arrow.response:
            arrow.callouts[-1] += " (RFC 7296 §2.23)"
            continue
        later = next((a for a in ladder.arrows[index + 1:] if a.spis == arrow.spis and not
                      a.label.startswith("IKE_SA_INIT")), None)
        initiator = ladder.lanes[arrow.dst].name
        if arrow.tcp:
            # RFC 9329 §6.5: a NAT found over TCP changes nothing; the stream already passes it
            arrow.callouts[0] += ", but over TCP nothing moves: the stream already passes the NAT (RFC 9329 §6.5)"
        elif later is not None and later.port4500:
            arrow.callouts[0] += f", so {initiator} moves IKE and ESP to UDP 4500 (RFC 7296 §2.23)"
            if not arrow.port4500:
                # the arrow that moves: the reason written on it too (it is often on the next slide)
                at = f" at #{arrow.frames[0][1]}" if arrow.frames else ""
                later.callouts.insert(0, f"now on UDP 4500: NAT-D{at} showed a NAT; each IKE message starts with "
                                         "4 zero octets (the non-ESP marker), ESP goes in UDP on the same ports "
                                         "(RFC 7296 §2.23; RFC 3948 §2.1, §2.2)")
        else:
            arrow.callouts[0] += f": RFC 7296 §2.23 says {initiator} must move to UDP 4500"


def _explain_message_ids(ladder: Ladder, captures: list[CaptureAnalysis]) -> None:
    """Message IDs that start at 0 again: on the IKE SA a rekey made (RFC 7296 §2.18), and for
    the first request of the end that did not start the IKE SA (RFC 7296 §2.2)."""
    rekeyed: dict[tuple[str, str], Packet] = {}   # the new IKE SA's SPIs -> the rekey's response
    where = captures[-1].name if captures else ""
    for capture in captures[-1:]:
        requests: dict[tuple[str, str, int], bytes] = {}   # a rekey's request -> the SPI it offers
        for packet in capture.ike():
            ike = packet.ike
            new_spi = ike.ike_spi() if ike is not None and not ike.error and ike.exchange_name == "CREATE_CHILD_SA" \
                else None
            if ike is None or new_spi is None:
                continue
            key = (ike.spi_i, ike.spi_r, ike.message_id)
            if not ike.response:
                requests[key] = new_spi
            elif key in requests:
                # RFC 7296 §2.18: SPIi of the new IKE SA from the rekey's request, SPIr from its response
                rekeyed.setdefault((requests[key].hex(), new_spi.hex()), packet)
    for sa, response in rekeyed.items():
        origin = next((a for a in ladder.arrows if (where, response.frame) in a.frames), None)
        if origin is not None:
            origin.callouts.append(f"this rekeys the IKE SA: the new one is {sa[0][:8]}../{sa[1][:8]}.., its SPIs "
                                   "from the SA payloads of request and response (RFC 7296 §2.18)")
    seen: dict[tuple[str, str], set[int]] = {}         # IKE SA -> lanes that sent requests on it
    last: dict[tuple[tuple[str, str], int], int] = {}   # (IKE SA, lane) -> its last request's message ID
    previous: tuple[str, str] | None = None
    for arrow in ladder.arrows:
        if arrow.spis is None or arrow.message_id is None:
            continue
        sa = arrow.spis
        first_on_sa = sa not in seen and not arrow.label.startswith("IKE_SA_INIT")
        requester = arrow.dst if arrow.response else arrow.src
        name = ladder.lanes[requester].name
        if first_on_sa and previous is not None and arrow.message_id == 0:
            short = f"{sa[0][:8]}../{sa[1][:8]}.."
            rekey = rekeyed.get(sa)
            origin = next((a for a in ladder.arrows if rekey is not None and (where, rekey.frame) in a.frames), None)
            made = f", made by the rekey at #{origin.frames[0][1]}" if origin is not None else ""
            old = previous if rekey is None or rekey.ike is None else (rekey.ike.spi_i, rekey.ike.spi_r)
            before = last.get((old, requester))
            text = (f"message ID 0 again: this is a new IKE SA ({short}{made}), and a new IKE SA counts its "
                    "messages from 0 (RFC 7296 §2.18)")
            if before is not None:
                text += f"; {name}'s last request on the old one was {before}"
            arrow.callouts.append(text)
        elif not arrow.response and arrow.message_id == 0 and sa in seen and requester not in seen[sa] and seen[sa]:
            arrow.callouts.append(f"{name}'s first request on this IKE SA: each end numbers its own requests "
                                  "from 0 (RFC 7296 §2.2)")
        seen.setdefault(sa, set())
        if not arrow.response:
            seen[sa].add(requester)
            last[(sa, requester)] = arrow.message_id
        previous = sa


# ---------------------------------------------------------------- drawing
#
# A ladder is drawn twice: whole (NAME.png, as tall as it gets: for reading) and cut into
# 16:9 slides of one exchange or a few (NAME-1.png, NAME-2.png, ...: for projecting). Each
# row is laid out first (its lines wrapped to the room they have, so nothing overlaps), then
# rows are put on pages, an exchange's messages together where they fit.

TIME_X, LANES_X0, LANES_X1, NOTE_X = 0.15, 2.5, 10.6, 11.5
NOTE_WIDTH = WIDTH - NOTE_X - 0.15
TEXT_X0, TEXT_X1 = 1.9, NOTE_X - 0.25    # where text under or on an arrow may go (time and notes columns aside)
TOP = 1.75
CHAIN_FONT = 14.0
LINE = 0.27              # inches per line of FONT-point text
MONO_LINE = 0.25         # inches per line of the CHAIN_FONT-point chain
PAD = 0.1
NAT_HALF = 0.35          # the NAT box's half width
PAGE_BOTTOM = 0.15
CALLOUT_EDGE = OKABE_ITO["orange"]
CALLOUT_FACE = "#fdf1d8"
TEXT_COLOR = "#222222"


@dataclass
class _Block:
    """Lines of text in a box that covers whatever is under it (lanes, the NAT box)."""
    x: float                     # centre
    top: float                   # relative to the row's top
    lines: list[str]
    size: float = FONT
    family: str | None = None
    weight: str = "normal"
    color: str = TEXT_COLOR
    face: str = "white"
    edge: str = "none"
    line: float = LINE

    @property
    def width(self) -> float:
        return max((text_width(l, self.size, self.family, self.weight) for l in self.lines), default=0.0) + 0.16

    @property
    def height(self) -> float:
        return len(self.lines) * self.line + 0.06


@dataclass
class _Row:
    item: Arrow | Band
    height: float
    y: float                     # the arrow (or the band's arrow), relative to the row's top
    blocks: list[_Block]
    ports: list[tuple[float, str, str]]      # (x, text, ha)
    note: list[str]
    group: object


def _lane_x(ladder: Ladder) -> list[float]:
    n = len(ladder.lanes)
    if n == 1:
        return [(LANES_X0 + LANES_X1) / 2]
    return [LANES_X0 + i * (LANES_X1 - LANES_X0) / (n - 1) for i in range(n)]


def _color(arrow: Arrow) -> str:
    if arrow.color:
        return arrow.color
    if arrow.kind == "other":
        return COLORS["other"]
    if arrow.retransmission:
        return COLORS["retransmit"]
    return COLORS["iketcp"] if arrow.tcp else (COLORS["ike4500"] if arrow.port4500 else COLORS["ike"])


def _band_color(band: Band) -> str:
    if band.color:
        return band.color
    return _protocol_color(band.protocol)


def _protocol_color(protocol: str) -> str:
    return COLORS["esp"] if protocol == "ESP" else (COLORS["ah"] if protocol == "AH" else COLORS["keepalive"])


def _blend(color: str, alpha: float) -> str:
    """`color` at `alpha` over white, as one opaque colour."""
    from matplotlib.colors import to_hex, to_rgb
    r, g, b = (alpha * c + (1 - alpha) * 1.0 for c in to_rgb(color))
    return to_hex((r, g, b))


def _under_width(center: float, span: float) -> tuple[float, float]:
    """(centre, width) for text under an arrow: as wide as the arrow, at least 6 inches, inside
    the lanes' columns."""
    width = min(max(span - 0.3, 6.0), TEXT_X1 - TEXT_X0)
    center = min(max(center, TEXT_X0 + width / 2), TEXT_X1 - width / 2)
    return center, width


def _arrow_row(ladder: Ladder, arrow: Arrow, xs: list[float], group: object) -> _Row:
    x0, x1 = xs[arrow.src], xs[arrow.dst]
    direction = 1 if x1 > x0 else -1
    ports: list[tuple[float, str, str]] = []

    def port(x: float, number: int, outward: int, clear: float = 0.12) -> float:
        """Writes `number` `clear` inches beside x (outward: away from x along the arrow); the
        room it takes from x."""
        if not number:
            return 0.0
        toward = direction * outward
        ports.append((x + toward * clear, str(number), "left" if toward > 0 else "right"))
        return text_width(str(number), FONT, MONO) + clear

    def clear(lane: int) -> float:  # an arrow that ends at the NAT box: its port outside the box
        return NAT_HALF + 0.1 if ladder.lanes[lane].nat else 0.12

    near = port(x0, arrow.sport, 1, clear(arrow.src))
    far = port(x1, arrow.far_ports[1] if arrow.far_ports else arrow.dport, -1, clear(arrow.dst))
    if arrow.via is not None:
        at_nat = xs[arrow.via]
        # at the NAT box only the ports it changed
        if arrow.far_ports and arrow.far_ports[0] != arrow.sport:
            port(at_nat + direction * (NAT_HALF + 0.1), arrow.far_ports[0], 1)
        nat_in = port(at_nat - direction * (NAT_HALF + 0.1), arrow.dport, -1) \
            if arrow.far_ports and arrow.far_ports[1] != arrow.dport else 0.0
        # the label goes on the sender's side of the NAT box, clear of the ports and of the box;
        # across the box (covering it) when it is too long for that and the box changed no port
        ends = sorted((x0 + direction * (near + 0.15), at_nat - direction * (NAT_HALF + 0.2 + nat_in)))
        if text_width(arrow.label, FONT, weight="bold") > ends[1] - ends[0] and len(ports) == 2:
            ends = sorted((x0 + direction * (near + 0.15), x1 - direction * (far + 0.15)))
    else:
        ends = sorted((x0 + direction * (near + 0.15), x1 - direction * (far + 0.15)))
    room = max(ends[1] - ends[0], 1.5)
    label = wrap(arrow.label, room, FONT, weight="bold")
    center, width = _under_width((x0 + x1) / 2, abs(x1 - x0))
    chain = wrap(arrow.chain, width - 0.16, CHAIN_FONT, MONO, lines=4) if arrow.chain else []
    wide_center, wide = _under_width((x0 + x1) / 2, TEXT_X1 - TEXT_X0)
    callouts = [wrap(text, wide - 0.2, FONT) for text in arrow.callouts]
    note = wrap(arrow.note, NOTE_WIDTH, FONT, lines=3) if arrow.note else []
    y = PAD + len(label) * LINE + 0.09
    blocks = [_Block((ends[0] + ends[1]) / 2, y - 0.09 - len(label) * LINE, label, weight="bold",
                     color=_color(arrow))]
    below = y + 0.1
    if chain:
        blocks.append(_Block(center, below, chain, CHAIN_FONT, MONO, line=MONO_LINE))
        below += blocks[-1].height
    for lines in callouts:
        below += 0.08
        blocks.append(_Block(wide_center, below, lines, face=CALLOUT_FACE, edge=CALLOUT_EDGE))
        below += blocks[-1].height
    height = max(below + PAD, 2 * PAD + len(note) * LINE, y + 0.35)
    return _Row(arrow, height, y, blocks, ports, note, group)


def _band_text(band: Band) -> str:
    if band.label:
        return band.label
    if band.protocol == "keepalive":
        return f"NAT-keepalive x{band.count}"
    packets = "packet" if band.count == 1 else "packets"
    seq = f"seq {band.first_seq}" if band.first_seq == band.last_seq else f"seq {band.first_seq}-{band.last_seq}"
    carrier = " in UDP 4500" if band.encap else (f" in TCP {band.tcp_port}" if band.tcp_port else "")
    return (f"{band.protocol}{carrier} SPI {band.spi}: {band.count} {packets}, "
            f"{seq}" + (f"  [{band.inner}]" if band.inner else ""))


def _band_row(ladder: Ladder, band: Band, xs: list[float], group: object) -> _Row:
    x0, x1 = sorted((xs[band.src], xs[band.dst]))
    width = max(x1 - x0 - 0.2, 3.0)                  # inside the band where it is wide enough
    center = min(max((x0 + x1) / 2, TEXT_X0 + width / 2), TEXT_X1 - width / 2)
    head, _, inner = _band_text(band).partition("  [")
    lines = wrap(head, width - 0.16, FONT, weight="bold", lines=3)
    if inner:
        lines += wrap("[" + inner, width - 0.16, FONT, weight="bold", lines=1)
    text = _Block(center, PAD + 0.02, lines, weight="bold", color="#113311",
                  face=_blend(_band_color(band), 0.18))
    y = text.top + text.height + 0.12
    note = [f"for {band.end - band.time:.2f} s"] if band.end > band.time else []
    return _Row(band, y + 0.12 + PAD, y, [text], [], note, group)


def _rows(ladder: Ladder) -> list[_Row]:
    """Every row laid out, with the exchange it belongs to (request, response, their
    retransmissions and fragments: one group)."""
    xs = _lane_x(ladder)
    items = sorted([(a.row, a) for a in ladder.arrows] + [(b.row, b) for b in ladder.bands], key=lambda i: i[0])
    rows: list[_Row] = []
    for index, (_, item) in enumerate(items):
        if isinstance(item, Band):  # bands one after the other: one group
            group: object = rows[-1].group if rows and isinstance(rows[-1].item, Band) else ("traffic", index)
        elif item.spis is not None and item.message_id is not None:
            requester = item.dst if item.response else item.src
            group = (item.spis[0], item.message_id, requester)
        elif item.kind == "ip-fragment":  # the datagram's last fragment, which comes next, says which exchange
            following = next((a for _, a in items[index + 1:] if isinstance(a, Arrow) and a.spis is not None), None)
            group = (following.spis[0], following.message_id, following.dst if following.response else
                     following.src) if following is not None and following.spis is not None else ("fragment", index)
        else:
            group = ("other", index)
        rows.append(_arrow_row(ladder, item, xs, group) if isinstance(item, Arrow) else _band_row(ladder, item, xs, group))
    return rows


_ABBREVIATIONS = {short: full for full, short in NOTIFY_SHORT.items()}
_MEANINGS = {"NATD_S_IP": "SHA-1 of the SPIs and the sender's address and port",
             "NATD_D_IP": "the same of the receiver's"}


def _legend(ladder: Ladder, rows: list[_Row]) -> tuple[list[list[tuple[str, dict, str]]], list[str]]:
    """(lines of samples: (kind, style, words), lines of words) saying what the colours,
    lines and abbreviations of these rows mean."""
    arrows = [r.item for r in rows if isinstance(r.item, Arrow)]
    bands = [r.item for r in rows if isinstance(r.item, Band)]
    samples: list[tuple[str, dict, str]] = []
    if any(a.kind == "ike" and not a.port4500 and not a.tcp and not a.retransmission for a in arrows):
        samples.append(("line", dict(color=COLORS["ike"]), "IKE on UDP 500"))
    if any(a.kind == "ike" and a.tcp and not a.retransmission for a in arrows):
        samples.append(("line", dict(color=COLORS["iketcp"]), "IKE in a TCP stream (length, non-ESP marker; RFC 9329)"))
    if any(a.kind == "ike" and a.port4500 and not a.retransmission for a in arrows):
        samples.append(("line", dict(color=COLORS["ike4500"]), "IKE on UDP 4500 (after a non-ESP marker)"))
    if any(a.retransmission for a in arrows):
        samples.append(("line", dict(color=COLORS["retransmit"], linestyle="--"), "retransmission"))
    if any(a.kind == "ip-fragment" for a in arrows):
        samples.append(("line", dict(color=COLORS["ike"], linestyle=":"), "IP fragment"))
    in_tcp = " (in TCP: each packet a frame of the stream, RFC 9329 §3.2)" if any(b.tcp_port for b in bands) else ""
    for protocol, words in (("ESP", "ESP, one band per SPI" + in_tcp), ("AH", "AH, one band per SPI"),
                            ("keepalive", "NAT-keepalives")):
        if any(b.protocol == protocol for b in bands):
            samples.append(("band", dict(color=_protocol_color(protocol)), words))
    samples += [(kind, dict(color=color), words) for kind, color, words in ladder.legend]
    if any(lane.nat for lane in ladder.lanes):
        samples.append(("nat", {}, "the NAT box"))
    if any(a.callouts for a in arrows):
        samples.append(("callout", {}, "what it means, with the RFC section"))
    lines: list[list[tuple[str, dict, str]]] = [[]]
    x = 0.3
    for sample in samples:
        width = 0.55 + text_width(sample[2], FONT) + 0.45
        if x + width > WIDTH - 0.2 and lines[-1]:
            lines.append([])
            x = 0.3
        lines[-1].append(sample)
        x += width
    items = []
    for arrow in arrows:
        for short in re.findall(r"N\(([A-Z0-9_]+)\)", arrow.chain):
            if short not in _ABBREVIATIONS:
                continue
            item = f"{short} = {_ABBREVIATIONS[short]}" + (f" ({_MEANINGS[short]})" if short in _MEANINGS else "")
            if item not in items:
                items.append(item)
    if any("{" in a.chain for a in arrows):
        items.append("SK{ ... } = inside the encrypted SK payload, decrypted with the run's keys")
    text_lines: list[str] = []
    for item in items:  # whole items on a line where they fit, three spaces apart
        if text_lines and text_width(f"{text_lines[-1]}   {item}", FONT) <= WIDTH - 0.6:
            text_lines[-1] += f"   {item}"
        else:
            text_lines += wrap(item, WIDTH - 0.6, FONT)
    for note in ladder.notes:
        text_lines += wrap(note, WIDTH - 0.6, FONT)
    return [line for line in lines if line], text_lines


def _legend_height(legend) -> float:
    samples, words = legend
    return (len(samples) + len(words)) * LINE + 0.2 if samples or words else 0.0


def paginate(ladder: Ladder, rows: list[_Row]) -> list[list[_Row]]:
    """Rows on 16:9 pages: whole exchanges where they fit, as many as fit. What comes between
    a request and its response (ESP passing meanwhile, another exchange) stays with them."""
    last = {row.group: index for index, row in enumerate(rows)}
    groups: list[list[_Row]] = []
    start = 0
    while start < len(rows):
        end = last[rows[start].group]
        index = start
        while index <= end:
            end = max(end, last[rows[index].group])
            index += 1
        groups.append(rows[start:end + 1])
        start = end + 1

    def fits(candidate: list[_Row]) -> bool:
        room = SLIDE_HEIGHT - TOP - PAGE_BOTTOM - _legend_height(_legend(ladder, candidate)) - 0.1
        return sum(r.height for r in candidate) <= room

    pages: list[list[_Row]] = []
    current: list[_Row] = []
    for group in groups:
        if fits(current + group):
            current += group
            continue
        if current and fits(group):
            pages.append(current)
            current = []
        for row in group:  # an exchange longer than a page (retransmissions): cut between its messages
            if current and not fits(current + [row]):
                pages.append(current)
                current = []
            current.append(row)
    if current:
        pages.append(current)
    return pages


def _render(ladder: Ladder, rows: list[_Row], page: tuple[int, int] | None = None):
    """The figure of these rows: a 16:9 slide when `page` (number, of how many) is given."""
    from matplotlib.patches import FancyBboxPatch, Rectangle

    legend = _legend(ladder, rows)
    legend_height = _legend_height(legend)
    body = sum(r.height for r in rows)
    height = SLIDE_HEIGHT if page else TOP + body + 0.1 + legend_height + PAGE_BOTTOM
    fig = new_slide() if page else new_figure(height)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, WIDTH)
    ax.set_ylim(height, 0)
    ax.axis("off")
    xs = _lane_x(ladder)
    title_room = WIDTH - 2 * 2.0 if page else WIDTH - 0.4
    title = wrap(ladder.title, title_room, TITLE_FONT, weight="bold", lines=1)[0]
    ax.text(WIDTH / 2, 0.38, title, ha="center", va="center", fontsize=TITLE_FONT, weight="bold")
    if page:
        ax.text(WIDTH - 0.2, 0.38, f"slide {page[0]}/{page[1]}", ha="right", va="center", fontsize=FONT,
                color=COLORS["other"])
    end = TOP + body + 0.05
    for lane, x in zip(ladder.lanes, xs):
        if lane.nat:
            ax.add_patch(Rectangle((x - NAT_HALF, TOP - 0.15), 2 * NAT_HALF, end - TOP + 0.15,
                                   facecolor=COLORS["nat"], edgecolor=COLORS["natedge"], lw=1.2, zorder=0, gid="lane"))
        ax.plot([x, x], [TOP - 0.1, end], color=COLORS["natedge"] if lane.nat else COLORS["lane"],
                lw=2.5 if lane.nat else 1.6, zorder=1, gid="lane")
        ax.text(x, 0.95, lane.name, ha="center", va="center", fontsize=LABEL_FONT, weight="bold")
        ax.text(x, 1.33, " / ".join(lane.addresses) if lane.addresses else "", ha="center", va="center",
                fontsize=FONT, family=MONO)
    ax.text(TIME_X, 1.33, "time, frame", ha="left", va="center", fontsize=FONT, color=COLORS["other"])
    ax.text(NOTE_X, 1.33, "notes", ha="left", va="center", fontsize=FONT, color=COLORS["other"])
    top = TOP
    for row in rows:
        y = top + row.y
        item = row.item
        if isinstance(item, Arrow):
            x0, x1 = xs[item.src], xs[item.dst]
            style = "--" if item.retransmission else (":" if item.kind == "ip-fragment" else "-")
            ax.annotate("", xy=(x1, y), xytext=(x0, y), arrowprops=dict(
                arrowstyle="-|>", color=_color(item), lw=2.4, linestyle=style, mutation_scale=22), zorder=3)
            for x, text, ha in row.ports:
                ax.text(x, y - 0.05, text, ha=ha, va="bottom", fontsize=FONT, family=MONO, color=_color(item),
                        zorder=6)
            when, frames, color = item.time, item.frames, (COLORS["retransmit"] if item.retransmission else "#333333")
        else:
            x0, x1 = sorted((xs[item.src], xs[item.dst]))
            band_color = _band_color(item)
            ax.add_patch(FancyBboxPatch((x0, top + PAD * 0.5), x1 - x0, row.height - PAD, boxstyle="round,pad=0.02",
                                        facecolor=band_color, alpha=0.18, edgecolor=band_color, lw=1.5, zorder=2))
            start, stop = (xs[item.src], xs[item.dst])
            ax.annotate("", xy=(stop, y), xytext=(start, y),
                        arrowprops=dict(arrowstyle="-|>", color=band_color, lw=2, mutation_scale=18), zorder=3)
            when, frames, color = item.time, item.frames, "#333333"
        for block in row.blocks:
            _draw_block(ax, block, top)
        ax.text(TIME_X, y, f"{when - ladder.start:6.3f} s #{frames[0][1]}" if frames else "", ha="left",
                va="center", fontsize=FONT, family=MONO, color=COLORS["other"])
        for index, line in enumerate(row.note):
            ax.text(NOTE_X, y + (index - (len(row.note) - 1) / 2) * LINE, line, ha="left", va="center",
                    fontsize=FONT, color=color)
        top += row.height
    _draw_legend(ax, legend, height - PAGE_BOTTOM - legend_height)
    return fig


def _draw_block(ax, block: _Block, top: float) -> None:
    from matplotlib.patches import FancyBboxPatch, Rectangle
    if not block.lines:
        return
    width, y = block.width, top + block.top
    if block.edge == "none":
        ax.add_patch(Rectangle((block.x - width / 2, y), width, block.height, facecolor=block.face, edgecolor="none",
                               zorder=4))
    else:
        ax.add_patch(FancyBboxPatch((block.x - width / 2, y), width, block.height, boxstyle="round,pad=0.03",
                                    facecolor=block.face, edgecolor=block.edge, lw=2, zorder=4))
    for index, line in enumerate(block.lines):
        ax.text(block.x, y + 0.03 + (index + 0.5) * block.line, line, ha="center", va="center",
                fontsize=block.size, family=block.family or matplotlib.rcParams["font.family"],
                weight=block.weight, color=block.color, zorder=5)


def _draw_legend(ax, legend, y: float) -> None:
    from matplotlib.patches import FancyBboxPatch, Rectangle
    samples, words = legend
    y += 0.1 + LINE / 2
    for line in samples:
        x = 0.3
        for kind, style, text in line:
            if kind == "line":
                ax.plot([x, x + 0.45], [y, y], lw=2.4, zorder=3, **style)
            elif kind == "band":
                ax.add_patch(Rectangle((x, y - 0.1), 0.45, 0.2, facecolor=style["color"], alpha=0.18,
                                       edgecolor=style["color"], lw=1.5))
            elif kind == "nat":
                ax.add_patch(Rectangle((x, y - 0.1), 0.45, 0.2, facecolor=COLORS["nat"], edgecolor=COLORS["natedge"],
                                       lw=1.2))
            else:
                ax.add_patch(FancyBboxPatch((x, y - 0.1), 0.45, 0.2, boxstyle="round,pad=0.02",
                                            facecolor=CALLOUT_FACE, edgecolor=CALLOUT_EDGE, lw=2))
            ax.text(x + 0.55, y, text, ha="left", va="center", fontsize=FONT, color="#333333")
            x += 0.55 + text_width(text, FONT) + 0.45
        y += LINE
    for line in words:
        ax.text(0.3, y, line, ha="left", va="center", fontsize=FONT, color="#333333")
        y += LINE


def _page_summary(rows: list[_Row]) -> str:
    """What a page holds: `IKE_SA_INIT 0, IKE_AUTH 1, ESP`."""
    parts: list[str] = []
    for row in rows:
        item = row.item
        if isinstance(item, Band):
            part = "NAT-keepalives" if item.protocol == "keepalive" else item.protocol
        elif item.message_id is not None:
            part = f"{item.label.split()[0]} {item.message_id}"
        else:
            part = item.label.split(",")[0]
        if part not in parts:
            parts.append(part)
    return ", ".join(parts)


def ladder_slides(ladder: Ladder) -> list[list[_Row]]:
    """The rows of each slide the ladder is cut into."""
    return paginate(ladder, _rows(ladder))


@styled
def render_slide(ladder: Ladder, rows: list[_Row], page: tuple[int, int]):
    """One slide of the ladder as a matplotlib figure, not saved (for tests and notebooks)."""
    return _render(ladder, rows, page)


@styled
def draw_ladder_model(ladder: Ladder, out: str | Path) -> list[Path]:
    """out.png/.svg (the whole ladder), then out-1.png/.svg, out-2... (its slides)."""
    rows = _rows(ladder)
    files = save(_render(ladder, rows), out)
    pages = paginate(ladder, rows)
    stem = outputs(out)[0].with_suffix("")
    for number, page in enumerate(pages, start=1):
        files += save(_render(ladder, page, (number, len(pages))), f"{stem}-{number}", slide=True)
    _remove_stale_slides(stem, len(pages))
    return files


def _remove_stale_slides(stem: Path, count: int) -> None:
    """Slides of an earlier drawing of the same ladder beyond the `count` drawn now."""
    for path in stem.parent.glob(f"{stem.name}-*"):
        number = path.stem[len(stem.name) + 1:]
        if number.isdigit() and int(number) > count and path.suffix in (".png", ".svg"):
            path.unlink()


def draw_ladder(captures: list[CaptureAnalysis], out: str | Path, topology: Topology | dict[str, Any] | None = None) -> Figure:
    """Draw the ladder of one capture (or of [inside, outside] of one NAT box) into out.png/.svg,
    and its slides into out-1.png/.svg, out-2..."""
    ladder = build_ladder(captures, topology)
    files = draw_ladder_model(ladder, out)
    ike = len(ladder.arrows)
    traffic = sum(b.count for b in ladder.bands if b.protocol != "keepalive")
    across = " across the NAT box" if any(l.nat for l in ladder.lanes) else ""
    clear = "" if ladder.decrypted else " (no keys: encrypted payloads stay closed)"
    caption = (f"Ladder of {ladder.title}: {ike} IKE arrows{across}, {traffic} ESP/AH packets in "
               f"{sum(1 for b in ladder.bands if b.protocol != 'keepalive')} bands{clear}")
    slides = ladder_slides(ladder)
    pngs = [p for p in files[2:] if p.suffix == ".png"]
    pages = [(png, f"Ladder of {ladder.title}, slide {n} of {len(slides)}: {_page_summary(rows)}")
             for n, (png, rows) in enumerate(zip(pngs, slides), start=1)]
    return Figure(files, caption, ladder, pages=pages)


__all__ = ["Arrow", "Band", "Lane", "Ladder", "build_ladder", "draw_ladder", "draw_ladder_model", "ladder_slides",
           "paginate", "render_slide"]
