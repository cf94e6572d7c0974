"""The topology diagram of a scenario, from its topology.json: nodes (hosts, gateways with
the software they run, NAT boxes with their public address and mapping, routers,
switches), links with their interfaces and addresses, and where the taps are."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.runfolder import SchemaError, Topology, read_topology

from .style import FONT, LABEL_FONT, MIN_FONT, MONO, TITLE_FONT, WIDTH, Figure, new_figure, save, styled

KIND_COLORS = {"host": "#eeeeee", "gateway": "#cfe2f3", "nat": "#f4e3b5", "router": "#d9ead3", "switch": "#e6e6e6"}
SOFTWARE = {"ours": "ipsec-lab", "strongswan": "strongSwan", "strongswan6": "strongSwan 6"}
PER_ROW = 5


class TopologyFileError(ValueError):
    """A topology.json that cannot be drawn; the message names the field."""


@dataclass
class NodeBox:
    name: str
    kind: str
    lines: list[str]             # what the box says under the name
    x: float = 0.0
    y: float = 0.0
    interfaces: dict[str, str] = field(default_factory=dict)   # interface -> addresses


@dataclass
class TopologyModel:
    title: str
    nodes: list[NodeBox]
    links: list[tuple[str, str, str, str, int | None]]         # a, a_intf, b, b_intf, mtu
    taps: list[tuple[str, str, str]]                            # tap name, node, interface


def load_topology(source: str | Path | dict[str, Any] | Topology) -> Topology:
    """A topology from a topology.json file, an object shaped like one, or as it is."""
    if isinstance(source, Topology):
        return source
    try:
        if isinstance(source, dict):
            return Topology.from_json(source)
        topology = read_topology(Path(source))
    except SchemaError as err:
        raise TopologyFileError(str(err)) from None
    if not topology.nodes:
        raise TopologyFileError(f"{source}: no nodes")
    return topology


def _spine(names: list[str], adjacency: dict[str, list[str]]) -> list[str]:
    """The longest path through the (tree-shaped) graph: the line the diagram is drawn along."""
    def farthest(start: str) -> tuple[str, dict[str, str | None]]:
        parent: dict[str, str | None] = {start: None}
        queue, last = deque([start]), start
        while queue:
            last = queue.popleft()
            for other in adjacency.get(last, []):
                if other not in parent:
                    parent[other] = last
                    queue.append(other)
        return last, parent

    if not names:
        return []
    first = next((n for n in names if len(adjacency.get(n, [])) <= 1), names[0])
    end, _ = farthest(first)
    other, parent = farthest(end)
    path = [other]
    while (up := parent[path[-1]]) is not None:
        path.append(up)
    return path


def topology_model(topology: Topology) -> TopologyModel:
    nodes = {}
    for node in topology.nodes:
        software = SOFTWARE.get(node.software or "", node.software or "")
        lines = [node.kind + (f", {software}" if software else "")]
        nat = node.nat
        if node.kind == "nat" and nat is not None:
            lines = [f"NAT to {nat.public or '?'}", f"mapping: {nat.mapping}"]
        interfaces = {i.name or "?": ", ".join(i.addresses) for i in node.interfaces}
        if nat is not None:
            inside = nat.inside
            # a NAT box with several inside interfaces (compare: one per VPN) shows each, in2: ...
            sides = {name: "in" if len(inside) == 1 else _inside_label(name) for name in inside} \
                | {nat.outside or "": "out"}
            interfaces = {(f"{sides[name]}:" if name in sides else name): value for name, value in interfaces.items()}
        nodes[node.name] = NodeBox(node.name, node.kind, lines, interfaces=interfaces)
    links: list[tuple[str, str, str, str, int | None]] = []
    adjacency: dict[str, list[str]] = {n: [] for n in nodes}
    for index, link in enumerate(topology.links):
        a, b = link.a, link.b
        if a not in nodes or b not in nodes:
            raise TopologyFileError(f"topology.json: links[{index}] joins unknown node {a if a not in nodes else b!r}")
        links.append((a, link.a_intf, b, link.b_intf, link.mtu))
        adjacency[a].append(b)
        adjacency[b].append(a)
    spine = _spine(list(nodes), adjacency)
    placed = set(spine)
    rows = [spine[i:i + PER_ROW] for i in range(0, len(spine), PER_ROW)] or [[]]
    for r, row in enumerate(rows):
        for c, name in enumerate(row if r % 2 == 0 else list(reversed(row))):
            nodes[name].x = (c + 0.5) * WIDTH / PER_ROW if len(row) == PER_ROW else \
                (c + 0.5) * WIDTH / max(len(row), 1)
            nodes[name].y = r
    branch = 0
    for name in spine:
        for other in adjacency[name]:
            if other not in placed:
                placed.add(other)
                nodes[other].x, nodes[other].y = nodes[name].x, len(rows) + branch
                branch += 1
    for name in nodes:
        if name not in placed:
            nodes[name].x, nodes[name].y = WIDTH / 2, len(rows) + branch
            branch += 1
    taps = [(t.name, t.node, t.intf) for t in topology.taps]
    title = topology.scenario or topology.topology or "topology"
    params = topology.params
    if params:
        title += " (" + ", ".join(f"{k}={v}" for k, v in params.items()) + ")"
    return TopologyModel(title, list(nodes.values()), links, taps)


BOX_W, ROW_H = 2.6, 3.4


@styled
def draw_topology_model(model: TopologyModel, out: str | Path) -> list[Path]:
    from matplotlib.patches import FancyBboxPatch

    rows = max((n.y for n in model.nodes), default=0) + 1
    heights = {}
    for node in model.nodes:
        lines = len(node.lines) + sum(len(_intf_lines(i, a)) for i, a in node.interfaces.items())
        heights[node.name] = 0.55 + 0.33 * lines
    # a box taller than four lines (addresses of both families) pushes the tap labels down
    height = 1.3 + rows * ROW_H + 0.5 + max(0.0, max(heights.values(), default=0) - (0.55 + 0.33 * 4))
    fig = new_figure(height)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, WIDTH)
    ax.set_ylim(height, 0)
    ax.axis("off")
    ax.text(WIDTH / 2, 0.45, f"Topology: {model.title}", ha="center", va="center", fontsize=TITLE_FONT, weight="bold")
    by_name = {n.name: n for n in model.nodes}
    def centre(node: NodeBox) -> tuple[float, float]:
        return node.x, 1.3 + node.y * ROW_H + 1.3
    tapped = {(node, intf): name for name, node, intf in model.taps}
    tap_index = {name: i for i, (name, _, _) in enumerate(model.taps)}
    neighbour: dict[str, str] = {}
    for a, _, b, _, _ in model.links:
        neighbour.setdefault(a, b)
        neighbour.setdefault(b, a)

    def other_name(node: str) -> str:
        return neighbour.get(node, node)
    dots: dict[tuple[float, float, int], list[tuple[float, str]]] = {}   # a tap's dot, its side -> (label's height, tap)
    for a, a_intf, b, b_intf, mtu in model.links:
        (xa, ya), (xb, yb) = centre(by_name[a]), centre(by_name[b])
        rows_ab = sorted((by_name[a].y, by_name[b].y))
        hidden = abs(xa - xb) < 0.01 and any(
            n.name not in (a, b) and abs(n.x - xa) < 0.01 and rows_ab[0] < n.y < rows_ab[1] for n in model.nodes)
        if hidden:  # a straight line would run through the boxes between: out below the upper box, then beside them
            (xt, yt, top), (xl, yl) = ((xa, ya, a), (xb, yb)) if ya < yb else ((xb, yb, b), (xa, ya))
            side = xt + BOX_W / 2 + 0.3 if xt + BOX_W / 2 + 0.5 < WIDTH else xt - BOX_W / 2 - 0.3
            turn = yt + heights[top] / 2 + 0.3
            ax.plot([xt, xt, side, side, xl], [yt, turn, turn, yl, yl], color="#555555", lw=3, zorder=1)
        else:
            ax.plot([xa, xb], [ya, yb], color="#555555", lw=3, zorder=1)
        if mtu and mtu != 1500:
            ax.text((xa + xb) / 2, (ya + yb) / 2 - 0.12, f"MTU {mtu}", ha="center", va="bottom", fontsize=FONT,
                    color="#c0392b", weight="bold", zorder=3)
        for end, intf, other_x, other_y in ((a, a_intf, xb, yb), (b, b_intf, xa, ya)):
            tap = tapped.get((end, intf))
            if tap is None:
                continue
            x0, y0 = centre(by_name[end])
            # on the link, just outside the node's box
            if abs(other_x - x0) > 0.01:
                tx, ty = x0 + (BOX_W / 2 + 0.25) * (1 if other_x > x0 else -1), y0
            else:
                tx, ty = x0, y0 + (heights[end] / 2 + 0.25) * (1 if other_y > y0 else -1)
            below = y0 + max(heights[end], heights[other_name(end)]) / 2 + 0.45 + 0.4 * (tap_index[tap] % 2)
            side = 0 if abs(tx - x0) < 0.01 else (1 if tx > x0 else -1)
            dots.setdefault((round(tx, 3), round(ty, 3), side), []).append((below, tap))
    # taps on links drawn from the same point (a NAT box's inside interfaces, one per VPN) share
    # one dot and one label: their labels, drawn one over the other, could not be read. A dot
    # beside its box has its label outwards from there, clear of a box below it; the label's white
    # ground keeps it legible where links cross it.
    renderer = fig.canvas.get_renderer()

    def extent(artist):
        return artist.get_window_extent(renderer=renderer).transformed(ax.transData.inverted())
    placed: list = []   # the tap labels' extents so far
    for (tx, ty, side), here in dots.items():
        below = min(b for b, _ in here)
        names = [tap for _, tap in here]
        ax.plot([tx], [ty], "o", ms=20, color="#c0392b", zorder=4)
        stem, = ax.plot([tx, tx], [ty, below - 0.18], color="#c0392b", lw=1.5, zorder=4)
        text = ax.text(tx + 0.1 * side, below, ("tap " if len(names) == 1 else "taps ") + ", ".join(names),
                       ha={-1: "right", 0: "center", 1: "left"}[side], va="center", fontsize=FONT,
                       color="#c0392b", weight="bold", zorder=4,
                       bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
        box = extent(text)
        if box.x0 < 0 or box.x1 > WIDTH:   # kept inside the slide, beside the dot's line
            text.set_horizontalalignment("left" if box.x0 < 0 else "right")
            text.set_x(0.1 if box.x0 < 0 else WIDTH - 0.1)
            box = extent(text)
        while any(box.overlaps(other) for other in placed):   # nor over another tap's label
            below += 0.4
            text.set_y(below)
            box = extent(text)
        stem.set_ydata([ty, below - 0.18])
        placed.append(box)
    for node in model.nodes:
        x, y = centre(node)
        h = heights[node.name]
        ax.add_patch(FancyBboxPatch((x - BOX_W / 2, y - h / 2), BOX_W, h, boxstyle="round,pad=0.05",
                                    facecolor=KIND_COLORS.get(node.kind, "#ffffff"), edgecolor="#333333", lw=1.8,
                                    zorder=2))
        ax.text(x, y - h / 2 + 0.28, node.name, ha="center", va="center", fontsize=LABEL_FONT, weight="bold",
                zorder=3)
        text_y = y - h / 2 + 0.62
        for line in node.lines:
            ax.text(x, text_y, line, ha="center", va="center", fontsize=FONT, zorder=3)
            text_y += 0.33
        for intf, addresses in node.interfaces.items():
            for label in _intf_lines(intf, addresses):
                ax.text(x, text_y, label, ha="center", va="center", fontsize=MIN_FONT, family=MONO, zorder=3)
                text_y += 0.33
    legend = "boxes: nodes with their interfaces and addresses    red dots: capture taps"
    ax.text(WIDTH / 2, height - 0.3, legend, ha="center", va="center", fontsize=FONT, color="#555555")
    return save(fig, out)


def draw_topology(source: str | Path | dict[str, Any] | Topology, out: str | Path) -> Figure:
    model = topology_model(load_topology(source))
    files = draw_topology_model(model, out)
    nats = sum(1 for n in model.nodes if n.kind == "nat")
    caption = (f"Topology {model.title}: {len(model.nodes)} nodes, {len(model.links)} links, {nats} NAT box"
               f"{'es' if nats != 1 else ''}, {len(model.taps)} taps")
    return Figure(files, caption, model)


__all__ = ["NodeBox", "TopologyFileError", "TopologyModel", "draw_topology", "load_topology", "topology_model"]


def _inside_label(name: str) -> str:
    short = name.split("-")[-1]
    return short if short.startswith("in") else f"in {short}"


def _intf_lines(intf: str, addresses: str) -> list[str]:
    """An interface's lines in its node's box: its short name with the first address, each
    further address (an IPv6 one beside the IPv4 one) on a line of its own, so that it fits."""
    if not addresses:
        return [intf]
    short = intf.split("-")[-1]
    first, *more = addresses.split(", ")
    return [f"{short} {first}", *(" " * (len(short) + 1) + address for address in more)]
