"""Figures readable when projected: every slide a run folder's figures are cut into is
1920 x 1080 with no text under 20 pixels (read from the files written); the ladder's labels
are not crossed by lane lines (read from the pixels drawn); its legend names the notify
abbreviations each slide uses; the MTU figure's colours are Okabe-Ito, its path MTU line in a
colour no configuration has, its axes from zero; the rekey timeline's zoomed panels cover
each make-before-break overlap and make it wide."""
from __future__ import annotations

import re
import shutil
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_hex
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.text import Text

from lab.viz.analysis import NOTIFY_SHORT, analyze_capture
from lab.viz.figures import draw_run
from lab.viz.ladder import Arrow, _legend, build_ladder, ladder_slides, render_slide
from lab.viz.mtu import PATH_MTU_COLOR, Observation, mtu_model, render_mtu
from lab.viz.rekey import (Handover, RekeyTimeline, SaSpan, draw_timeline_model, render_timeline, sa_spans,
                           zoom_windows)
from lab.viz.style import OKABE_ITO, SLIDE_MIN_PX, plt

DATA = Path(__file__).resolve().parent.parent / "data"
DEMO = DATA / "demo"
RUN = DATA / "runs" / "net2net-nat"


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def svg_text_pixels(path: Path) -> list[tuple[str, float]]:
    """(text, font size in pixels) of every text in an SVG, shown as large as it fits on a
    1920 x 1080 slide."""
    root = ET.parse(path).getroot()
    _, _, width, height = (float(v) for v in root.get("viewBox").split())
    scale = min(1920 / width, 1080 / height)
    out = []
    for element in root.iter("{http://www.w3.org/2000/svg}text"):
        size = re.search(r"font-size:\s*([\d.]+)px", element.get("style", ""))
        assert size, f"{path.name}: a text without a font size: {ET.tostring(element)[:120]}"
        out.append(("".join(element.itertext()), float(size[1]) * scale))
    return out


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """The figures of the recorded net2net-nat run: (PNG, caption) of each figure and slide."""
    run = tmp_path_factory.mktemp("slides") / "run"
    shutil.copytree(RUN, run)
    return draw_run(run)


def test_slides_are_1920_by_1080_with_text_of_20_pixels_or_more(drawn):
    names = {p.stem: p for p, _ in drawn}
    slides = [p for stem, p in names.items() if re.fullmatch(r"ladder-.*-\d+", stem)]
    slides += [names[stem] for stem in ("rekey-nat-outside", "mtu", "headers")]
    assert len(slides) >= 5
    for png in slides:
        assert png_size(png) == (1920, 1080), png.name
        texts = svg_text_pixels(png.with_suffix(".svg"))
        assert len(texts) >= 10, png.name
        small = [(t, round(px, 1)) for t, px in texts if px < SLIDE_MIN_PX]
        assert not small, f"{png.name}: {small[:5]}"
    # the whole ladder is kept (the report and the notebooks link it), taller than a slide
    whole = names["ladder-nat-inside-nat-outside"]
    assert png_size(whole)[0] == 1920 and png_size(whole)[1] > 1080


def demo_ladder():
    keys = DEMO / "keys"
    return build_ladder([analyze_capture(DEMO / "captures" / "nat-inside.pcap", keys),
                         analyze_capture(DEMO / "captures" / "nat-outside.pcap", keys)])


def ladders():
    yield "demo", demo_ladder()
    yield "strongswan_s2s", build_ladder([analyze_capture(DATA / "strongswan_s2s.pcap")])
    yield "fragments", build_ladder([analyze_capture(DATA / "forms" / "fragments-inside.pcap",
                                                     DATA / "forms" / "fragments.keys")])
    # arrows that end at the NAT box (not passed on), and one whose port the box changed
    expiry = DATA / "runs" / "nat-expiry"
    yield "nat-expiry", build_ladder([analyze_capture(expiry / "captures" / f"nat-{side}.pcap", expiry / "keys")
                                      for side in ("inside", "outside")])


def _pixels(fig) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[:, :, :3].astype(int)


def _lanes(ax) -> list[tuple[float, float, float, tuple[int, int, int]]]:
    """(x, y from, y to, colour) in display pixels of every vertical line the lanes draw:
    the lanes and the edges of the NAT box."""
    out = []
    for artist in ax.get_children():
        if artist.get_gid() != "lane":
            continue
        if isinstance(artist, Line2D):
            (x0, y0), (_, y1) = ax.transData.transform(list(zip(artist.get_xdata(), artist.get_ydata())))
            edges, color = [x0], artist.get_color()
        else:
            (x0, y0), (x1, y1) = ax.transData.transform([artist.get_xy(), (artist.get_x() + artist.get_width(),
                                                                          artist.get_y() + artist.get_height())])
            edges, color = [x0, x1], artist.get_edgecolor()
        rgb = tuple(round(255 * c) for c in plt.matplotlib.colors.to_rgb(color))
        out += [(x, min(y0, y1), max(y0, y1), rgb) for x in edges]
    return out


@pytest.mark.parametrize("name,ladder", list(ladders()), ids=lambda v: v if isinstance(v, str) else "")
def test_no_lane_line_crosses_a_label(name, ladder):
    """Drawn without the glyphs, each text's box shows no lane line: the pixels down a lane's
    column inside the box are not the lane's colour (what is under a label is its box). And
    no two texts overlap."""
    slides = ladder_slides(ladder)
    crossing_candidates = 0
    for number, rows in enumerate(slides, start=1):
        fig = render_slide(ladder, rows, (number, len(slides)))
        try:
            ax = fig.axes[0]
            fig.canvas.draw()
            renderer = fig.canvas.get_renderer()
            texts = [t for t in ax.findobj(Text) if t.get_visible() and t.get_text().strip()]
            boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
            for text in texts:
                text.set_visible(False)
            image = _pixels(fig)
            height = image.shape[0]
            lanes = _lanes(ax)
            assert lanes
            for label, box in boxes:
                for x, y_low, y_high, rgb in lanes:
                    if not (box.x0 + 2 < x < box.x1 - 2) or box.y1 < y_low or box.y0 > y_high:
                        continue
                    crossing_candidates += 1
                    top, bottom = height - int(box.y1) + 1, height - int(box.y0) - 1
                    column = image[top:bottom, int(round(x)) - 1:int(round(x)) + 2]
                    lane = (np.abs(column - np.array(rgb)).max(axis=2) <= 24).any(axis=1)
                    assert lane.mean() < 0.3, f"{name} slide {number}: a lane line crosses {label!r}"
            for index, (first, a) in enumerate(boxes):
                for second, b in boxes[index + 1:]:
                    overlap = min(a.x1, b.x1) - max(a.x0, b.x0), min(a.y1, b.y1) - max(a.y0, b.y0)
                    assert min(overlap) <= 2, f"{name} slide {number}: {first!r} overlaps {second!r}"
        finally:
            plt.close(fig)
    if name == "demo":  # labels do sit across the NAT box's lane: their boxes are what keeps the lines off them
        assert crossing_candidates > 0


def test_each_slide_explains_the_notify_abbreviations_it_uses():
    ladder = demo_ladder()
    full = {short: name for name, short in NOTIFY_SHORT.items()}
    used_anywhere = set()
    for rows in ladder_slides(ladder):
        legend = " ".join(_legend(ladder, rows)[1])
        used = {s for r in rows if isinstance(r.item, Arrow) for s in re.findall(r"N\(([A-Z_]+)\)", r.item.chain)}
        used_anywhere |= used & set(full)
        for short in used & set(full):
            assert f"{short} = {full[short]}" in legend, short
    assert {"NATD_S_IP", "NATD_D_IP", "INIT_CONTACT"} <= used_anywhere


def test_an_exchange_stays_on_one_slide():
    ladder = demo_ladder()
    slides = ladder_slides(ladder)
    where = {}
    for number, rows in enumerate(slides):
        for row in rows:
            where.setdefault(row.group, set()).add(number)
    assert all(len(pages) == 1 for pages in where.values())
    assert 1 < len(slides) < len(ladder.arrows) // 2  # cut, and more than one exchange on some slides


def test_what_passes_between_a_request_and_its_response_keeps_them_on_one_slide():
    """ESP between a CREATE_CHILD_SA request and its response (as in the rekey scenario): the
    three rows go to the next slide together, the request is not left behind."""
    from types import SimpleNamespace

    from lab.viz.ladder import PAGE_BOTTOM, TOP, _legend_height, paginate
    from lab.viz.style import SLIDE_HEIGHT

    ladder = demo_ladder()
    row = lambda group, height: SimpleNamespace(item=None, group=group, height=height)
    room = SLIDE_HEIGHT - TOP - PAGE_BOTTOM - _legend_height(_legend(ladder, [row(None, 0)])) - 0.1
    rows = [row(("earlier", 0), room - 1.0), row(("rekey", 0), 0.6), row(("traffic", 1), 0.6), row(("rekey", 0), 0.6),
            row(("delete", 1), 0.6)]
    pages = paginate(ladder, rows)
    where = {}
    for number, page in enumerate(pages):
        for r in page:
            where.setdefault(r.group, set()).add(number)
    assert where[("rekey", 0)] == where[("traffic", 1)] == {1}, where


def test_nat_detection_and_message_ids_are_written_on_their_arrows():
    ladder = demo_ladder()
    by_label = {a.label: a for a in ladder.arrows}
    request, response = by_label["IKE_SA_INIT request 0"], by_label["IKE_SA_INIT response 0"]
    # outside, gwb finds gwa's source hash against the NAT box's address; inside, gwa its own against the hash
    assert any("NATD_S_IP ≠ hash of 198.51.100.1:500" in c and "RFC 7296 §2.23" in c for c in request.callouts)
    assert any("NATD_D_IP ≠ hash of 172.16.0.2:500" in c and "moves IKE and ESP to UDP 4500" in c
               for c in response.callouts)
    # and the arrow that moves to UDP 4500 says why, naming the frame whose NAT-D showed the NAT
    moved = by_label["IKE_AUTH request 1"]
    assert moved.port4500 and not response.port4500
    assert [c for c in moved.callouts if "now on UDP 4500" in c and f"NAT-D at #{response.frames[0][1]}" in c
            and "RFC 7296 §2.23" in c] == moved.callouts and len(moved.callouts) == 1
    assert not by_label["IKE_AUTH response 1"].callouts
    first_new = next(a for a in ladder.arrows if a.spis != ladder.arrows[1].spis and not a.label.startswith("IKE_SA"))
    assert first_new.message_id == 0 and not first_new.response
    assert any("message ID 0 again" in c and "RFC 7296 §2.18" in c and "made by the rekey" in c
               for c in first_new.callouts)
    assert any("RFC 7296 §2.2)" in c for c in by_label["CREATE_CHILD_SA request 0"].callouts)
    # no NAT on the path: the hashes match and nothing is said
    plain = build_ladder([analyze_capture(DATA / "runs" / "ike-fragments" / "captures" / "gwa-wan.pcap",
                                          DATA / "runs" / "ike-fragments" / "keys")])
    assert not any("NAT-D" in c for a in plain.arrows for c in a.callouts)


def test_mtu_colours_are_okabe_ito_and_its_axes_start_at_zero():
    model = mtu_model(1400, step=50)
    first = next(iter(model.series))
    model.seen = [Observation(first, 1000, 1000 + 62, "a capture")]  # a captured packet's circle
    fig = render_mtu(model)
    try:
        palette = {c.lower() for c in OKABE_ITO.values()}
        bars = [p for ax in fig.axes for p in ax.patches if isinstance(p, Rectangle)]
        colors = {to_hex(p.get_facecolor(), keep_alpha=False) for p in bars}
        assert len(bars) >= 16 and colors <= palette, colors - palette
        mtu_lines = [line for ax in fig.axes for line in ax.get_lines() if line.get_linestyle() == "--"]
        assert len(mtu_lines) == 1 and to_hex(mtu_lines[0].get_color()) == PATH_MTU_COLOR.lower()
        assert mtu_lines[0].get_xdata()[0] == 1400
        assert PATH_MTU_COLOR.lower() not in colors
        # nor anything else drawn in the panels: the circles of captured packets included
        others = [line for ax in fig.axes for line in ax.get_lines() if line not in mtu_lines]
        assert any(line.get_marker() == "o" for line in others)
        assert all(PATH_MTU_COLOR.lower() not in {to_hex(line.get_color()), to_hex(line.get_markeredgecolor()),
                                                  to_hex(line.get_markerfacecolor()) if line.get_markerfacecolor()
                                                  != "none" else ""} for line in others)
        for ax in fig.axes:
            assert ax.get_xlim()[0] == 0  # nothing exaggerated: lengths are the octets
            # one row per configuration: no bar lies on another's row
            rows = sorted({round(p.get_y() + p.get_height() / 2, 6) for p in ax.patches if isinstance(p, Rectangle)})
            assert len(rows) == 8
    finally:
        plt.close(fig)


def test_the_zoomed_panels_cover_each_overlap():
    capture = analyze_capture(DEMO / "captures" / "nat-outside.pcap", DEMO / "keys")
    timeline = sa_spans(capture)
    fig = render_timeline(timeline)
    try:
        assert tuple(fig.get_size_inches()) == (16, 9)
        panels = [ax for ax in fig.axes if ax.get_label().startswith("zoom")]
        zooms = zoom_windows(timeline)
        assert len(panels) == len(zooms) == 2  # the CHILD SA rekey, then the IKE SA rekey 0.2 s later
        assert len(timeline.handovers) == 3
        for h in timeline.handovers:
            covering = []
            for ax, zoom in zip(panels, zooms):
                # the panel counts milliseconds from zoom.origin, and says so
                assert ax.get_xlabel() == f"ms after {zoom.origin:.3f} s"
                a, b = sorted(((t - timeline.start - zoom.origin) * 1000 for t in (h.new.born,
                                                                                 h.old.end(timeline.end))))
                assert b > a  # make-before-break: an overlap
                low, high = ax.get_xlim()
                if low < a and b < high:
                    covering.append((b - a) / (high - low))
            # zoomed: the overlap is a visible part of a panel, not a hairline as in the whole capture
            assert covering and max(covering) > 0.2, (h.old.spi, covering)
        whole = next(ax for ax in fig.axes if not ax.get_label().startswith("zoom"))
        low, high = whole.get_xlim()
        assert all((h.old.end(timeline.end) - h.new.born) / (high - low) < 0.01 for h in timeline.handovers)
    finally:
        plt.close(fig)


def test_a_timeline_of_many_rekeys_is_still_one_slide(tmp_path):
    """Three CHILD SA rekeys and two IKE SA rekeys in a minute (eleven SAs): one slide, the
    first two rekeys zoomed, one line of notes per rekey (both directions of a CHILD SA)."""
    start = 1000.0
    ike = [SaSpan("IKE", f"{i:08x}../{i + 1:08x}..", "", born=start + 20 * i,
                  died=start + 20 * i + 20.003 if i < 2 else None, packets=[start + 20 * i + 1]) for i in range(3)]
    spans, handovers = list(ike), []
    for i in (1, 2):
        ike[i].replaces, ike[i].generation = ike[i - 1].spi, i
        handovers.append(Handover(ike[i - 1], ike[i], ike[i - 1].died - ike[i].born, None))
    for direction, towards in enumerate(("198.51.100.1", "198.51.100.2")):
        old = None
        for generation in range(4):
            born = start + 15 * generation + 0.01
            new = SaSpan("ESP", f"{direction}{generation}aabbcc", towards, born=born,
                         died=born + 15.002 if generation < 3 else None, generation=generation,
                         packets=[born + k for k in range(15)])
            if old is not None:
                new.replaces = old.spi
                handovers.append(Handover(old, new, old.died - new.born, 0.05))
            spans.append(new)
            old = new
    timeline = RekeyTimeline(spans, handovers, start, start + 60, "three CHILD SA rekeys, two IKE SA rekeys", True)
    files = draw_timeline_model(timeline, tmp_path / "rekey")
    assert png_size(files[0]) == (1920, 1080)
    assert min(px for _, px in svg_text_pixels(files[1])) >= SLIDE_MIN_PX
    zooms = zoom_windows(timeline)
    assert [z.what for z in zooms] == ["CHILD SA rekey", "IKE SA rekey"]
    assert all(z.hi - z.lo < 0.02 for z in zooms)  # each a few milliseconds: the rekeys 5 s apart not lumped


def test_header_layouts_one_panel_per_form_and_aes_gcm_16_explained(tmp_path):
    """The eight forms of tests/data/forms: cut into 1920 x 1080 slides with no text under
    20 px, each form's panel on exactly one slide, and every AES-GCM panel says what the 16
    in AES_GCM_16 is: the ICV's length in octets (RFC 4106 §6), as its packet really has."""
    from lab.viz.layout import FORM_TITLES, FORMS, draw_header_layouts

    forms = DATA / "forms"
    captures = {name: analyze_capture(forms / f"{name}.pcap", forms / f"{name}.keys" if (forms / f"{name}.keys").is_dir()
                                      else None) for name in FORMS}
    figure = draw_header_layouts(captures, tmp_path / "headers")
    assert [l.form for l in figure.model] == [FORM_TITLES[name] for name in FORMS]
    slides = [png for png, _ in figure.pages]
    assert len(slides) > 1
    seen: dict[str, int] = {}
    for png in slides:
        assert png_size(png) == (1920, 1080), png.name
        texts = svg_text_pixels(png.with_suffix(".svg"))
        small = [(t, round(px, 1)) for t, px in texts if px < SLIDE_MIN_PX]
        assert not small, f"{png.name}: {small[:5]}"
        for text, _ in texts:
            if text in FORM_TITLES.values():
                seen[text] = seen.get(text, 0) + 1
    assert seen == {title: 1 for title in FORM_TITLES.values()}
    gcm = [l for l in figure.model if "AES_GCM_16" in l.detail]
    assert {l.form for l in gcm} == {"ESP transport", "ESP tunnel", "ESP-in-UDP tunnel", "ESP-in-TCP tunnel"}
    for layout in gcm:
        icv = next(s for s in layout.segments if s.label == "ICV")
        assert icv.length == 16
        assert any(note.startswith("AES_GCM_16 = AES in Galois/Counter Mode with a 16-octet ICV (the _16 in its name")
                   for note in layout.notes), layout.notes


def test_a_gap_is_told_apart_from_the_bars_and_zoomed_apart_from_a_later_overlap():
    """A CHILD SA rekey with a 250 ms gap and an IKE SA rekey 0.5 s later (2 ms overlap):
    two panels, each wide on its own handover (one panel over both made the overlap a
    hairline); the gap cross-hatched in a colour no bar has, and the notes say so."""
    capture = analyze_capture(DEMO / "captures" / "nat-outside.pcap", DEMO / "keys")
    frames = {(p.ike.exchange_name, p.ike.message_id, p.ike.response): p for p in capture.ike()}
    frames[("INFORMATIONAL", 3, True)].time = frames[("CREATE_CHILD_SA", 2, True)].time - 0.25
    timeline = sa_spans(capture)
    assert sorted(h.overlap < 0 for h in timeline.handovers) == [False, True, True]
    fig = render_timeline(timeline)
    try:
        panels = [ax for ax in fig.axes if ax.get_label().startswith("zoom")]
        zooms = zoom_windows(timeline)
        assert len(panels) == len(zooms) == 2
        for h in timeline.handovers:
            widths = []
            for ax, zoom in zip(panels, zooms):
                a, b = sorted((t - timeline.start - zoom.origin) * 1000 for t in (h.new.born, h.old.end(timeline.end)))
                low, high = ax.get_xlim()
                if low < a and b < high:
                    widths.append((b - a) / (high - low))
            assert widths and max(widths) > 0.2, (h.old.spi, widths)
        bars = {to_hex(p.get_edgecolor(), keep_alpha=False) for ax in fig.axes for p in ax.patches
                if isinstance(p, Rectangle) and p.get_hatch() != "xx" and p.get_width() > 0 and p.zorder == 2}
        gaps = [p for ax in fig.axes for p in ax.patches if isinstance(p, Rectangle) and p.get_hatch() == "xx"]
        assert bars and gaps
        assert all(to_hex(p.get_edgecolor(), keep_alpha=False) not in bars for p in gaps)
        notes = " ".join(t.get_text() for t in fig.texts)
        assert "cross-hatched: a gap" in notes and "yellow: old and new SA both installed" in notes
        assert "hatched: still up" not in notes  # every SA here ends before the capture does
    finally:
        plt.close(fig)


def test_the_panels_show_a_rekey_of_each_kind_before_a_second_of_the_same():
    """Two CHILD SA rekeys, then an IKE SA rekey (the rekey scenario's order): the panels zoom
    to the first CHILD SA rekey and to the IKE SA rekey, not to two CHILD SA rekeys alike."""
    start = 1000.0
    old_ike = SaSpan("IKE", "0000000a../0000000b..", "", born=start, died=start + 40.002, packets=[start])
    new_ike = SaSpan("IKE", "0000000c../0000000d..", "", born=start + 40, packets=[start + 41],
                     replaces=old_ike.spi, generation=1)
    spans, handovers = [old_ike, new_ike], [Handover(old_ike, new_ike, 0.002, None)]
    old = None
    for generation in range(3):
        born = start + 15 * generation + 0.01
        new = SaSpan("ESP", f"{generation}aabbcc", "198.51.100.2", born=born, died=born + 15.003 if generation < 2 else None,
                     generation=generation, packets=[born + k for k in range(15)])
        if old is not None:
            new.replaces = old.spi
            handovers.append(Handover(old, new, old.died - new.born, 0.05))
        spans.append(new)
        old = new
    timeline = RekeyTimeline(spans, handovers, start, start + 50, "two CHILD SA rekeys, then an IKE SA rekey", True)
    zooms = zoom_windows(timeline)
    assert [z.what for z in zooms] == ["CHILD SA rekey", "IKE SA rekey"]
    assert [round(z.origin) for z in zooms] == [15, 40]
