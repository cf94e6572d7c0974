"""All the figures that apply to a run folder or to a few captures.

    entries = draw_run("out/run")          # [(path, caption), ...], PNG and SVG of each figure
    entries = draw_run("out/run", steps=(6, 9))   # only what crossed the wire in steps 6 to 9
    figures = draw_captures(["a.pcap"], keys="keys", out="figures")
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import os
import re
import signal
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lab.runfolder import RunResult, Topology

from .alternatives import draw_vpn_ladder, draw_vpn_layouts, draw_vpn_mtu, nat_names
from .analysis import CaptureAnalysis, Packet, analyze_capture, match_nat
from .keys import KeyTables, load_keys
from .ladder import draw_ladder
from .layout import FORM_TITLES, layouts_figure, packet_layout
from .mtu import draw_mtu
from .rekey import draw_rekey_timeline
from .run import load_run
from .style import Figure
from .topology import TopologyFileError, draw_topology
from .vpns import formats_in, vpn_packets


def form_of(packet) -> str | None:
    """Which of the eight forms a packet is (the header-layout figure's rows)."""
    sa = packet.ipsec
    if sa is None:
        return "plain" if packet.kind == "other" and packet.clear is not None and packet.data[:1] and \
            packet.data[0] >> 4 == 4 and packet.clear.protocol in (1, 6, 17) else None
    if sa.protocol == "AH":
        return f"ah-{sa.mode}" if sa.mode else None
    if sa.mode is None:
        return None
    if sa.encap:
        return "esp-udp-tunnel" if sa.mode == "tunnel" else None
    if sa.tcp:   # RFC 9329: a frame whole in its segment, so that the bar shows IP | TCP | length | ESP
        return "esp-tcp-tunnel" if sa.mode == "tunnel" and packet.tcp is not None and \
            packet.tcp.offset is not None else None
    return f"esp-{sa.mode}"


def _alone(packet: Packet) -> bool:
    """An RFC 9329 frame that had its TCP segment to itself."""
    return packet.tcp is not None and packet.tcp.alone


def _forms(captures: list[CaptureAnalysis]) -> dict[str, tuple[CaptureAnalysis, Packet]]:
    found: dict[str, tuple[CaptureAnalysis, Packet]] = {}
    for capture in captures:
        for packet in capture.packets:
            form = form_of(packet)
            if form is not None and packet.ipsec is not None and packet.ipsec.protocol == "ESP":
                sa_keys = capture.keys.esp_sa(packet.ipsec.spi, packet.src, packet.dst)
                if sa_keys is not None and sa_keys.encr_id == 11 and form == "esp-tunnel":
                    form = "esp-null"
            if form is not None and (form not in found or (form == "esp-tcp-tunnel" and _alone(packet) and
                                                           not _alone(found[form][1]))):
                found[form] = (capture, packet)   # in TCP: one alone in its segment, when there is one
    return found


def _inside_first(a: CaptureAnalysis, b: CaptureAnalysis) -> tuple[CaptureAnalysis, CaptureAnalysis]:
    """(inside, outside) of two captures of one NAT box: by their names, else the one with
    private (RFC 1918) addresses the other does not have is inside, else as given."""
    for first, second in ((a, b), (b, a)):
        if "inside" in first.name and "outside" in second.name:
            return first, second
    from .ladder import _is_private

    def private_only(x: CaptureAnalysis, y: CaptureAnalysis) -> bool:
        theirs = {q for p in y.packets for q in (p.src, p.dst)}
        return any(_is_private(q) and q not in theirs for p in x.packets if p.kind in ("ike", "esp")
                   for q in (p.src, p.dst))
    if private_only(b, a) and not private_only(a, b):
        return b, a
    return a, b


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name)


def capture_jobs(captures: list[CaptureAnalysis], out: str | Path, topology: Topology | None = None,
                 nat_pairs: list[tuple[CaptureAnalysis, CaptureAnalysis]] | None = None,
                 path_mtu: int = 1500) -> list[tuple[Callable[..., Figure], tuple]]:
    """The figures of `captures` as (function, arguments) to call: ladders (one per NAT box
    seen from both sides, one per other capture), a rekey timeline, the header layouts of the
    forms present, MTU and overhead."""
    out = Path(out)
    jobs: list[tuple[Callable[..., Figure], tuple]] = []
    if nat_pairs is None:
        nat_pairs = []
        if len(captures) == 2:
            inside, outside = _inside_first(*captures)
            pairs = match_nat(inside, outside)
            if pairs and any(p.rewrite() != "unchanged" for p in pairs):
                nat_pairs = [(inside, outside)]
    paired = {id(c) for pair in nat_pairs for c in pair}
    found = {id(c): vpn_packets(c) for c in captures}
    for inside, outside in nat_pairs:
        if found[id(inside)] and not (inside.ike() or inside.ipsec()):
            continue  # a WireGuard or OpenVPN gateway's side: its own ladder (_vpn_jobs), not one arrow a packet
        jobs.append((draw_ladder, ([inside, outside], out / f"ladder-{_safe(inside.name)}-{_safe(outside.name)}",
                                   topology)))
    for capture in captures:
        if id(capture) not in paired and (capture.ike() or capture.ipsec()):
            jobs.append((draw_ladder, ([capture], out / f"ladder-{_safe(capture.name)}", topology)))
    rekey_sources: dict[int, CaptureAnalysis] = {}   # one NAT box's outside pairs with each of its insides
    for capture in [outside for _, outside in nat_pairs] + [c for c in captures if id(c) not in paired]:
        rekey_sources.setdefault(id(capture), capture)
    for capture in rekey_sources.values():
        if capture.ipsec() or capture.ike():
            jobs.append((draw_rekey_timeline, (capture, out / f"rekey-{_safe(capture.name)}")))
    if _forms(captures):
        jobs.append((_draw_forms, (captures, out / "headers")))
    if any(c.ipsec() for c in captures):
        jobs.append((draw_mtu, (out / "mtu", captures, path_mtu)))
    jobs += _vpn_jobs(captures, out, topology, {id(inside) for inside, _ in nat_pairs}, path_mtu, found)
    return jobs


def _vpn_jobs(captures: list[CaptureAnalysis], out: Path, topology: Topology | None, insides: set[int],
              path_mtu: int, found: dict[int, list]) -> list[tuple[Callable[..., Figure], tuple]]:
    """The alternatives' figures (lab.viz.alternatives) when the captures hold WireGuard,
    OpenVPN or another format of lab.viz.vpns: a ladder per format in each capture not
    taken inside a NAT box, one data packet of each beside ESP's, their overhead beside ESP's."""
    if not any(found.values()):
        return []
    behind = nat_names(captures, topology, found)
    jobs: list[tuple[Callable[..., Figure], tuple]] = []
    for capture in captures:
        if id(capture) in insides and len(captures) > 1:
            continue
        for fmt in formats_in(found[id(capture)]):
            jobs.append((draw_vpn_ladder, (capture, fmt, out / f"ladder-{_safe(capture.name)}-{fmt.key}", topology,
                                           found[id(capture)], behind)))
    outside_first = sorted(captures, key=lambda c: id(c) in insides)
    jobs.append((draw_vpn_layouts, (outside_first, out / "headers-vpns", found)))
    jobs.append((draw_vpn_mtu, (outside_first, out / "mtu-vpns", path_mtu, found)))
    return jobs


def _draw_forms(captures: list[CaptureAnalysis], out: Path) -> Figure:
    forms = _forms(captures)
    order = ["plain", "esp-transport", "esp-tunnel", "esp-udp-tunnel", "esp-tcp-tunnel", "ah-transport", "ah-tunnel",
             "esp-null"]
    layouts = [packet_layout(packet, capture.keys, FORM_TITLES[form], f"{capture.name}:{packet.frame}")
               for form in order if form in forms for capture, packet in [forms[form]]]
    return layouts_figure(layouts, out, "One real packet of each form in these captures",
                          "Header layouts of captured packets (" + ", ".join(l.form for l in layouts)
                          + "): offsets, encrypted and authenticated ranges")


def draw_captures(captures: list[CaptureAnalysis], out: str | Path, topology: Topology | dict[str, Any] | None = None,
                  nat_pairs: list[tuple[CaptureAnalysis, CaptureAnalysis]] | None = None,
                  path_mtu: int = 1500) -> list[Figure]:
    """Every figure of capture_jobs(), drawn here (`topology`: topology.json's, or an object
    shaped like it)."""
    return [function(*args) for function, args in capture_jobs(captures, out, Topology.of(topology), nat_pairs,
                                                                path_mtu)]


_JOBS: list[tuple[Callable[..., Figure], tuple]] = []  # what forked workers draw (inherited, not pickled)


def _draw_job(index: int) -> list[tuple[str, str]] | str:
    """(PNG, caption) of the figure and of its slides, or why it could not be drawn."""
    function, args = _JOBS[index]
    try:
        figure = function(*args)
    except TopologyFileError as err:
        return str(err)
    return [(str(path), caption) for path, caption in figure.entries()]


def _draw_all(jobs: list[tuple[Callable[..., Figure], tuple]]) -> list[list[tuple[str, str]] | str]:
    """Draw the jobs, side by side on the machine's cores (each figure in a forked process:
    matplotlib spends its time rasterizing text, one core a figure)."""
    global _JOBS
    workers = min(len(jobs), os.cpu_count() or 1)
    if workers < 2 or "fork" not in multiprocessing.get_all_start_methods():
        _JOBS = jobs
        return [_draw_job(i) for i in range(len(jobs))]
    _JOBS = jobs
    try:
        with multiprocessing.get_context("fork").Pool(workers, initializer=_worker_signals) as pool:
            return pool.map(_draw_job, range(len(jobs)), chunksize=1)
    finally:
        _JOBS = []


def _worker_signals() -> None:
    """A drawing worker ends quietly when the pool ends it (SIGTERM) and leaves Ctrl-C to its
    parent: the handlers it inherited from the command raise, and printed a traceback."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _path_mtu(topology: Topology | None) -> int:
    return min((link.mtu for link in topology.links), default=1500) if topology is not None else 1500


class StepsError(ValueError):
    """Steps asked for that the run folder does not have; the message says which it has."""


def step_window(result: RunResult | None, first: int, last: int) -> tuple[float, float]:
    """The wall-clock span from the start of step `first` to the end of step `last` of a run
    (its result.json), for the packets captured meanwhile."""
    steps = result.steps if result is not None else []
    if not steps:
        raise StepsError("the run folder has no result.json with steps")
    have = f"it has steps {steps[0].index}-{steps[-1].index}"
    by_index = {s.index: s for s in steps}
    if first > last:
        raise StepsError(f"steps {first}-{last}: the first is after the last")
    for index in (first, last):
        if index not in by_index:
            raise StepsError(f"step {index} is not in this run: {have}")
        if by_index[index].skipped or not by_index[index].started:
            raise StepsError(f"step {index} did not run (the run stopped before it): {have}")
    return by_index[first].started, by_index[last].ended or by_index[last].started


def _within(analysis: CaptureAnalysis, window: tuple[float, float], label: str) -> CaptureAnalysis:
    lo, hi = window
    return dataclasses.replace(analysis, span=label, packets=[p for p in analysis.packets if lo <= p.time <= hi])


def draw_run(run_dir: str | Path, report: bool = False, out: str | Path | None = None,
             steps: tuple[int, int] | None = None) -> list[tuple[Path, str]]:
    """Draw every figure that applies into run_dir/figures/ (or `out`); returns (PNG file,
    one-line caption) for each figure and each slide cut from one (its SVG is beside it, same
    name): ladder-X.png, then ladder-X-1.png, ladder-X-2.png, ... With `report`, also
    puts them into report.md's Figures section (the runner does that itself). With `steps`
    (first, last), only the packets of those steps (StepsError if the run has no such steps),
    into figures/steps-FIRST-LAST/ (figures/step-N/ for one) unless `out` says otherwise."""
    run = load_run(run_dir)
    window = step_window(run.result, *steps) if steps else None
    label = (f"step {steps[0]}" if steps[0] == steps[1] else f"steps {steps[0]}-{steps[1]}") if steps else ""
    figures = Path(out) if out is not None else run.figures / label.replace(" ", "-")
    keys = load_keys(run.keys) if run.keys else KeyTables()
    analyses = {path: analyze_capture(path, keys) for path in run.captures}
    if window is not None:
        analyses = {path: _within(analysis, window, label) for path, analysis in analyses.items()}
    jobs: list[tuple[Callable[..., Figure], tuple]] = []
    if run.topology:
        jobs.append((draw_topology, (run.topology, figures / "topology")))
    nat_pairs = [(analyses[a], analyses[b]) for a, b in run.nat_sides()]
    jobs += capture_jobs(list(analyses.values()), figures, run.topology, nat_pairs or None,
                         _path_mtu(run.topology))
    entries = []
    for drawn in _draw_all(jobs):
        if isinstance(drawn, str):
            run.problems.append(drawn)
            continue
        entries += [(Path(path), caption) for path, caption in drawn]
    if report and (run.root / "report.md").exists():
        add_figures_section(run.root / "report.md", entries, run.missing)
    return entries


# the runner's report.md marks its figures section (lab/net/report.py writes the same)
FIGURES_START, FIGURES_END = "<!-- figures -->", "<!-- /figures -->"


def figures_markdown(entries: list[tuple[Path, str]], root: Path, missing: Sequence[str] = ()) -> str:
    lines = [FIGURES_START]
    for path, caption in entries:
        rel = path.relative_to(root) if path.is_relative_to(root) else path
        lines += [f"### {caption}", "", f"![{caption}]({rel})", "", f"([SVG]({rel.with_suffix('.svg')}))", ""]
    if missing:
        lines += ["Not in this run: " + ", ".join(missing) + ".", ""]
    lines.append(FIGURES_END)
    return "\n".join(lines)


def add_figures_section(report: Path, entries: list[tuple[Path, str]], missing: Sequence[str] = ()) -> None:
    """Replace the report's figures block (between the runner's markers), or append a
    `## Figures` section holding one."""
    text = report.read_text()
    block = figures_markdown(entries, report.parent, missing)
    start, end = text.find(FIGURES_START), text.find(FIGURES_END)
    if start == -1 or end == -1:
        text = text.rstrip("\n") + "\n\n## Figures\n\n" + block + "\n"
    else:
        text = text[:start] + block + text[end + len(FIGURES_END):]
    report.write_text(text)


__all__ = ["add_figures_section", "draw_captures", "draw_run", "figures_markdown", "form_of"]
