"""The topology diagram of a scenario, from its topology.json: nodes (hosts, gateways with
the software they run, NAT boxes with their public address and mapping, routers,
switches), links with their interfaces and addresses, and where the taps are."""
from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.runfolder import SchemaError, Topology, read_topology

from .style import FONT, LABEL_FONT, MIN_FONT, MONO, TITLE_FONT, WIDTH, Figure, new_figure, save, styled, text_width

KIND_COLORS = {"host": "#eeeeee", "gateway": "#cfe2f3", "nat": "#f4e3b5", "router": "#d9ead3", "switch": "#e6e6e6"}
SOFTWARE = {"ours": "ipsec-lab", "strongswan": "strongSwan", "strongswan6": "strongSwan 6"}
PER_ROW = 5   # columns of boxes at most across the figure


class TopologyFileError(ValueError):
    """A topology.json that cannot be drawn; the message names the field."""


@dataclass
class NodeBox:
    name: str
    kind: str
    lines: list[str]             # what the box says under the name
    x: float = 0.0               # its centre, in inches from the figure's left and top
    y: float = 0.0
    h: float = 0.0               # its height, in inches
    interfaces: dict[str, str] = field(default_factory=dict)   # interface -> addresses


@dataclass
class TopologyModel:
    title: str
    nodes: list[NodeBox]
    links: list[tuple[str, str, str, str, int | None]]         # a, a_intf, b, b_intf, mtu
    taps: list[tuple[str, str, str]]                            # tap name, node, interface
    paths: list[list[tuple[float, float]]] = field(default_factory=list)   # each link's line, as drawn


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


BOX_W, TOP, ROW_GAP = 2.6, 1.0, 0.6   # inches: a box's width, the title's band, the space between boxes


def _columns(nodes: dict[str, NodeBox], links: list, adjacency: dict[str, list[str]]) -> list[list[str]]:
    """The nodes in columns by their distance from one end of the longest path, so every link
    joins a column to itself or to the next (a gateway of site A beside its host, the NAT box
    beside the gateways behind it); at most PER_ROW columns (the middle ones share one). In a
    column, nodes are in the order of their neighbours in the column before, then of their first
    link: a site A gateway and the site B gateway of its pair get the same row."""
    names = list(nodes)
    layer: dict[str, int] = {}
    for start in _spine(names, adjacency)[:1] + names:
        if start in layer:
            continue
        layer[start], queue = 0, deque([start])
        while queue:
            name = queue.popleft()
            for other in adjacency[name]:
                if other not in layer:
                    layer[other] = layer[name] + 1
                    queue.append(other)
    first_link: dict[str, int] = {}
    for index, (a, _, b, _, _) in enumerate(links):
        first_link.setdefault(a, index)
        first_link.setdefault(b, index)
    columns: list[list[str]] = [[] for _ in range(max(layer.values(), default=-1) + 1)]
    for name in names:
        columns[layer[name]].append(name)
    for before, column in zip(columns, columns[1:]):
        rank = {name: i for i, name in enumerate(before)}
        ranks = {name: [rank[other] for other in adjacency[name] if other in rank] for name in column}
        keys = {name: (sum(ranks[name]) / len(ranks[name]) if ranks[name] else len(before),
                       first_link.get(name, len(links))) for name in column}
        column.sort(key=keys.__getitem__)
    while len(columns) > PER_ROW:   # the middle two share a column, the later's nodes beside their neighbours
        mid = (len(columns) - 1) // 2
        merged, beside = list(columns[mid]), Counter[str]()
        for name in columns[mid + 1]:
            near = sorted(merged.index(other) for other in adjacency[name] if other in columns[mid])
            if not near:
                merged.append(name)
                continue
            anchor = merged[near[len(near) // 2]]   # after it, or before it if a node went after it already
            merged.insert(int(sum(near) / len(near)) + 1 if beside[anchor] % 2 == 0 else near[0], name)
            beside[anchor] += 1
        columns[mid:mid + 2] = [merged]
    return columns


def _place(nodes: dict[str, NodeBox], links: list, adjacency: dict[str, list[str]],
           tapped: set[tuple[str, str]]) -> None:
    """Each node's centre: its column's across the figure; the columns with the most nodes on
    one grid of rows, each other column stacked and centred beside them. Two boxes of a column
    joined by a link leave room between them for the dots of its taps and their labels."""
    columns = _columns(nodes, links, adjacency)
    if not columns:
        return
    tall = max(len(column) for column in columns)
    pitch = max(nodes[name].h for column in columns if len(column) == tall for name in column) + ROW_GAP
    room = {frozenset((a, b)): ROW_GAP + 0.5 * ((a, ai) in tapped) + 0.5 * ((b, bi) in tapped)
            for a, ai, b, bi, _ in links}

    def centres(column: list[str], gap: float) -> tuple[list[float], float]:
        """The centres from the first one down, and the height the column takes."""
        ys = [0.0]
        for above, name in zip(column, column[1:]):
            half = (nodes[above].h + nodes[name].h) / 2
            ys.append(ys[-1] + half + max(pitch - half if len(column) == tall else gap,
                                          room.get(frozenset((above, name)), 0.0)))
        ends = pitch if len(column) == tall else (nodes[column[0]].h + nodes[column[-1]].h) / 2 + gap
        return ys, ys[-1] + ends
    body = max(centres(column, ROW_GAP)[1] for column in columns)
    for c, column in enumerate(columns):
        # a column with fewer nodes spreads them (up to an inch apart: room for a tap's label)
        gap = ROW_GAP + min(1.0 - ROW_GAP, (body - centres(column, ROW_GAP)[1]) / len(column))
        ys, span = centres(column, gap)
        top = TOP + (body - span) / 2 + (pitch / 2 if len(column) == tall else nodes[column[0]].h / 2 + gap / 2)
        for name, y in zip(column, ys):
            nodes[name].x, nodes[name].y = (c + 0.5) * WIDTH / len(columns), top + y


def _route(nodes: dict[str, NodeBox], links: list) -> list[list[tuple[float, float]]]:
    """Each link's line. Between columns: out of its box's side, along the gap between the two
    columns, into the other's side, never through a third box (a node's links to one column share
    one line along the gap). In a column: straight down to the next box, or out below the upper
    box and beside those between."""
    def ends(a: str, b: str) -> tuple[NodeBox, NodeBox]:
        return (nodes[a], nodes[b]) if nodes[a].x < nodes[b].x else (nodes[b], nodes[a])
    fans: dict[tuple[str, float], int] = {}
    for a, _, b, _, _ in links:
        left, right = ends(a, b)
        if right.x - left.x > 0.01:
            for node in (left, right):
                fans[node.name, round(right.x, 3)] = fans.get((node.name, round(right.x, 3)), 0) + 1
    hubs: dict[float, list[NodeBox]] = {}   # a gap (by its right column) -> the nodes its lines fan from
    for a, _, b, _, _ in links:
        left, right = ends(a, b)
        gap = round(right.x, 3)
        if right.x - left.x > 0.01:
            hub = left if fans[left.name, gap] >= fans[right.name, gap] else right
            if hub not in hubs.setdefault(gap, []):
                hubs[gap].append(hub)
    paths = []
    for a, _, b, _, _ in links:
        left, right = ends(a, b)
        gap = round(right.x, 3)
        if right.x - left.x > 0.01:
            hub = left if fans[left.name, gap] >= fans[right.name, gap] else right
            spread = sorted(hubs[gap], key=lambda n: (n.y, n.x))
            x = (left.x + right.x) / 2 + 0.2 * (spread.index(hub) - (len(spread) - 1) / 2)
            paths.append([(left.x, left.y), (x, left.y), (x, right.y), (right.x, right.y)])
            continue
        top, low = sorted((nodes[a], nodes[b]), key=lambda n: n.y)
        between = [n for n in nodes.values() if n not in (top, low) and abs(n.x - top.x) < 0.01
                   and top.y < n.y < low.y]
        if not between:
            paths.append([(top.x, top.y), (low.x, low.y)])
            continue
        side = top.x + BOX_W / 2 + 0.3 if top.x + BOX_W / 2 + 0.5 < WIDTH else top.x - BOX_W / 2 - 0.3
        turn = top.y + top.h / 2 + 0.3
        paths.append([(top.x, top.y), (top.x, turn), (side, turn), (side, low.y), (low.x, low.y)])
    return paths


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
        box = NodeBox(node.name, node.kind, lines, interfaces=interfaces)
        box.h = 0.55 + 0.33 * (len(lines) + sum(len(_intf_lines(i, a)) for i, a in interfaces.items()))
        nodes[node.name] = box
    links: list[tuple[str, str, str, str, int | None]] = []
    adjacency: dict[str, list[str]] = {n: [] for n in nodes}
    for index, link in enumerate(topology.links):
        a, b = link.a, link.b
        if a not in nodes or b not in nodes:
            raise TopologyFileError(f"topology.json: links[{index}] joins unknown node {a if a not in nodes else b!r}")
        links.append((a, link.a_intf, b, link.b_intf, link.mtu))
        adjacency[a].append(b)
        adjacency[b].append(a)
    _place(nodes, links, adjacency, {(t.node, t.intf) for t in topology.taps})
    paths = _route(nodes, links)
    taps = [(t.name, t.node, t.intf) for t in topology.taps]
    title = topology.scenario or topology.topology or "topology"
    params = topology.params
    if params:
        title += " (" + ", ".join(f"{k}={v}" for k, v in params.items()) + ")"
    return TopologyModel(title, list(nodes.values()), links, taps, paths)



@styled
def draw_topology_model(model: TopologyModel, out: str | Path) -> list[Path]:
    from matplotlib.patches import FancyBboxPatch
    from matplotlib.transforms import Bbox

    heights = {node.name: node.h for node in model.nodes}
    height = max((n.y + n.h / 2 for n in model.nodes), default=TOP) + 0.8   # grown below for tap labels
    fig = new_figure(height)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, WIDTH)
    ax.set_ylim(height, 0)
    ax.axis("off")
    title = f"Topology: {model.title}"
    name, _, params = title.partition(" (")
    if params and text_width(title, TITLE_FONT, weight="bold") > WIDTH - 0.4:   # the parameters on a line below
        ax.text(WIDTH / 2, 0.35, name, ha="center", va="center", fontsize=TITLE_FONT, weight="bold")
        ax.text(WIDTH / 2, 0.75, "(" + params, ha="center", va="center", fontsize=FONT)
    else:
        ax.text(WIDTH / 2, 0.45, title, ha="center", va="center", fontsize=TITLE_FONT, weight="bold")
    by_name = {n.name: n for n in model.nodes}
    def centre(node: NodeBox) -> tuple[float, float]:
        return node.x, node.y
    tapped = {(node, intf): name for name, node, intf in model.taps}
    tap_index = {name: i for i, (name, _, _) in enumerate(model.taps)}
    neighbour: dict[str, str] = {}
    for a, _, b, _, _ in model.links:
        neighbour.setdefault(a, b)
        neighbour.setdefault(b, a)

    def other_name(node: str) -> str:
        return neighbour.get(node, node)
    dots: dict[tuple[float, float, int], list[tuple[float, str]]] = {}   # a tap's dot, its side -> (label's height, tap)
    for (a, a_intf, b, b_intf, mtu), path in zip(model.links, model.paths):
        (xa, ya), (xb, yb) = centre(by_name[a]), centre(by_name[b])
        ax.plot([x for x, _ in path], [y for _, y in path], color="#555555", lw=3, zorder=1)
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
    boxes = [Bbox.from_extents(n.x - BOX_W / 2 - 0.05, n.y - n.h / 2 - 0.05, n.x + BOX_W / 2 + 0.05, n.y + n.h / 2 + 0.05)
             for n in model.nodes]
    for (tx, ty, side), here in dots.items():
        below = min(b for b, _ in here)
        names = [tap for _, tap in here]
        ax.plot([tx], [ty], "o", ms=20, color="#c0392b", zorder=4)
        stem, = ax.plot([tx, tx], [ty, below - 0.18], color="#c0392b", lw=1.5, zorder=4)
        text = ax.text(tx + 0.1 * side, below, ("tap " if len(names) == 1 else "taps ") + ", ".join(names),
                       ha={-1: "right", 0: "center", 1: "left"}[side], va="center", fontsize=FONT,
                       color="#c0392b", weight="bold", zorder=4,
                       bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
        # the nearest place clear of every box and label: beside a dot on a link between two boxes
        # of one column, else along the dot's line (a dot beside its box: in the gap between columns)
        label = text.get_text()
        tries = [(tx + 0.3 * s, ty + dy, "left" if s > 0 else "right", words)
                 for words in (label, label.replace(" ", "\n", 1)) for dy in (0.0, 0.15, -0.15) for s in (1, -1)] \
            if side == 0 else []
        tries += [(tx + 0.1 * side, ty + 0.1 * k, text.get_horizontalalignment(), label)
                  for k in sorted(range(-80, 81), key=lambda k: (abs(k), k < 0)) if abs(k) >= 4]
        for x, y, ha, words in tries:
            text.set_position((x, y))
            text.set_horizontalalignment(ha)
            text.set_text(words)
            box = extent(text)
            foot: float = ty if abs(x - tx) > 0.2 else y - 0.18 if y > ty else y + 0.18   # the stem's end
            stem_box = Bbox.from_extents(tx - 0.01, min(ty, foot), tx + 0.01, max(ty, foot))
            if min(box.x0, box.x1) >= 0 and max(box.x0, box.x1) <= WIDTH and min(box.y0, box.y1) > TOP - 0.05 \
                    and not any(box.overlaps(other) or stem_box.overlaps(other) for other in placed + boxes):
                stem.set_ydata([ty, foot])
                break
        else:   # below, inside the slide, and not over another tap's label
            text.set_text(label)
            text.set_position((tx + 0.1 * side, below))
            text.set_horizontalalignment({-1: "right", 0: "center", 1: "left"}[side])
            box = extent(text)
            if box.x0 < 0 or box.x1 > WIDTH:
                text.set_horizontalalignment("left" if box.x0 < 0 else "right")
                text.set_x(0.1 if box.x0 < 0 else WIDTH - 0.1)
                box = extent(text)
            while any(box.overlaps(other) for other in placed):
                below += 0.4
                text.set_y(below)
                box = extent(text)
            stem.set_ydata([ty, below - 0.18])
        placed.append(box)
    height = max([height] + [max(box.y0, box.y1) + 0.7 for box in placed])
    fig.set_size_inches(WIDTH, height)
    ax.set_ylim(height, 0)
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
