"""What every figure shares: legible when projected. A figure is WIDTH inches wide and
saved at DPI so that its PNG is 1920 pixels wide; no text is smaller than MIN_FONT points.
A slide is WIDTH x SLIDE_HEIGHT inches, 1920 x 1080 pixels (16:9, what a projector shows):
no text on it is smaller than SLIDE_MIN_PX pixels. Colours that tell series apart come from
the Okabe-Ito palette, which people with any common colour-vision deficiency can tell apart."""
from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.text import Text

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

WIDTH = 16.0       # inches
DPI = 120          # 16 in x 120 = 1920 px
SLIDE_HEIGHT = 9.0  # inches: 1080 px, 16:9
MIN_FONT = 14.0    # points, at 1920 px wide (23 px)
SLIDE_MIN_PX = 20.0  # pixels of text on a 1920 x 1080 slide, readable from the back row
FONT = 15.0
LABEL_FONT = 17.0
TITLE_FONT = 21.0
MONO = "DejaVu Sans Mono"

COLORS = {
    "ike": "#1f4e9c", "ike500": "#1f4e9c", "ike4500": "#7b2d8e", "iketcp": "#a6530a", "esp": "#1b7a3a", "ah": "#b8860b",
    "retransmit": "#c0392b", "fragment": "#555555", "nat": "#e8e0c8", "natedge": "#9c7c38", "lane": "#444444",
    "other": "#666666", "keepalive": "#999999", "encrypted": "#f4c7c3", "authenticated": "#c9daf8",
    "grid": "#dddddd",
}
# Okabe & Ito, "Color Universal Design" (2008): eight colours told apart with any common colour-vision deficiency
OKABE_ITO = {"black": "#000000", "orange": "#E69F00", "sky blue": "#56B4E9", "bluish green": "#009E73",
             "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "reddish purple": "#CC79A7"}
# for series: black is left for reference lines, yellow (faint on white) comes last
PALETTE = [OKABE_ITO[name] for name in ("blue", "vermillion", "bluish green", "orange", "reddish purple", "sky blue",
                                        "yellow")]

RC: dict[RcKeyType, Any] = {   # matplotlib's rcParams, each key one of the names matplotlib.typing lists
    "font.size": FONT, "axes.titlesize": LABEL_FONT, "axes.labelsize": LABEL_FONT, "xtick.labelsize": FONT,
    "ytick.labelsize": FONT, "legend.fontsize": FONT, "figure.titlesize": TITLE_FONT, "svg.fonttype": "none",
    "axes.spines.top": False, "axes.spines.right": False,
}


@dataclass
class Figure:
    """What a figure function returns: the files it wrote (its PNG and SVG first, then those
    of its slides), a one-line caption, and the model it drew (lanes and arrows, rows, series:
    what tests compare with the capture). A figure too long for one slide is also cut into
    slides NAME-1.png, NAME-2.png, ...: `pages` holds (PNG, caption) of each."""

    files: list[Path]
    caption: str
    model: Any = None
    notes: list[str] = field(default_factory=list)
    pages: list[tuple[Path, str]] = field(default_factory=list)

    def entries(self) -> list[tuple[Path, str]]:
        """(PNG, caption) of the figure, then of each of its slides."""
        return [(self.files[0], self.caption)] + list(self.pages)


def new_figure(height: float, **kwargs) -> Any:
    return plt.figure(figsize=(WIDTH, height), dpi=DPI, **kwargs)


def new_slide(**kwargs) -> Any:
    """A 16:9 figure, 1920 x 1080 pixels when saved."""
    return new_figure(SLIDE_HEIGHT, **kwargs)


def styled(function):
    """Run a drawing function with the figures' rcParams (not touching the caller's)."""
    import functools

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with plt.rc_context(RC):
            return function(*args, **kwargs)
    return wrapper


def outputs(out: str | Path) -> tuple[Path, Path]:
    """(PNG, SVG) paths for `out` (given with or without a suffix)."""
    out = Path(out)
    stem = out.with_suffix("") if out.suffix.lower() in (".png", ".svg") else out
    return stem.with_suffix(".png"), stem.with_suffix(".svg")


def save(fig: Any, out: str | Path, slide: bool = False) -> list[Path]:
    """Write out.png and out.svg; a `slide` must be 1920 x 1080 with no text below SLIDE_MIN_PX."""
    png, svg = outputs(out)
    png.parent.mkdir(parents=True, exist_ok=True)
    small = too_small(fig)
    if small:
        raise AssertionError(f"text below {MIN_FONT} pt in {png.name}: {small[:3]}")
    if slide:
        size = tuple(round(v * DPI) for v in fig.get_size_inches())
        if size != (1920, 1080):
            raise AssertionError(f"{png.name} is a slide but {size[0]} x {size[1]} pixels, not 1920 x 1080")
        small = [(text, px) for text, px in slide_pixels(fig) if px < SLIDE_MIN_PX - 1e-6]
        if small:
            raise AssertionError(f"text below {SLIDE_MIN_PX} px on slide {png.name}: {small[:3]}")
    # written beside and renamed, so an interrupted save leaves no half-written figure
    partial = [png.with_name(f".{png.name}.partial"), svg.with_name(f".{svg.name}.partial")]
    try:
        fig.savefig(partial[0], format="png", dpi=DPI, pil_kwargs={"compress_level": 1})  # zlib level 1: a third
        fig.savefig(partial[1], format="svg")                                                # of the save time
        os.replace(partial[0], png)
        os.replace(partial[1], svg)
    finally:
        plt.close(fig)
        for path in partial:
            path.unlink(missing_ok=True)
    return [png, svg]


def too_small(fig: Any) -> list[tuple[str, float]]:
    """Visible texts smaller than MIN_FONT points (at WIDTH inches = 1920 px)."""
    scale = WIDTH / fig.get_figwidth()
    out = []
    for text in fig.findobj(Text):
        if text.get_visible() and text.get_text().strip() and text.get_fontsize() * scale < MIN_FONT - 1e-6:
            out.append((text.get_text()[:40], text.get_fontsize() * scale))
    return out


def slide_pixels(fig: Any) -> list[tuple[str, float]]:
    """(text, height of its font in pixels) of each visible text, with the figure shown as
    large as it fits on a 1920 x 1080 slide."""
    width, height = fig.get_size_inches() * DPI
    scale = min(1920 / width, 1080 / height)
    return [(text.get_text()[:40], text.get_fontsize() * DPI / 72 * scale) for text in fig.findobj(Text)
            if text.get_visible() and text.get_text().strip()]


_TEXT_PATH = None


def text_width(text: str, size: float = FONT, family: str | None = None, weight: str = "normal") -> float:
    """Inches `text` takes on one line at `size` points (what matplotlib will draw)."""
    global _TEXT_PATH
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    if _TEXT_PATH is None:
        _TEXT_PATH = TextToPath()
    prop = FontProperties(family=family or matplotlib.rcParams["font.family"], size=size, weight=weight)
    return _TEXT_PATH.get_text_width_height_descent(text, prop, ismath=False)[0] / 72


def wrap(text: str, width: float, size: float = FONT, family: str | None = None, weight: str = "normal",
         lines: int | None = None) -> list[str]:
    """`text` broken at spaces into lines no wider than `width` inches (a word wider than
    that is cut; "RFC 7296 §2.23" is one word); at most `lines` lines, the last ending in
    "..." when cut short."""
    out: list[str] = []
    # an RFC and its section stay on one line (joined by no-break spaces)
    text = re.sub(r"RFC (\d+)(?: (§[\d.]*\d))?", lambda m: "\u00a0".join(filter(None, ("RFC", m[1], m[2]))),
                  " ".join(text.split()))
    for word in text.split(" "):
        if not word:
            continue
        while text_width(word, size, family, weight) > width and len(word) > 1:
            cut = _most(len(word) - 1, _prefix_fits(word, "", width, size, family, weight), least=1)
            if out and not out[-1]:
                out[-1] = word[:cut]
            else:
                out.append(word[:cut])
            word = word[cut:]
        if out and text_width(f"{out[-1]} {word}", size, family, weight) <= width:
            out[-1] = f"{out[-1]} {word}"
        else:
            out.append(word)
    if lines is not None and len(out) > lines:
        last = out[lines - 1]
        last = last[:_most(len(last), _prefix_fits(last, " ...", width, size, family, weight))]
        out = out[:lines - 1] + [last.rstrip() + " ..."]
    return out


def _prefix_fits(text: str, tail: str, width: float, size: float, family: str | None,
                 weight: str) -> Callable[[int], bool]:
    """Whether text[:n] + tail fits in `width` inches, for _most."""
    return lambda n: text_width(text[:n] + tail, size, family, weight) <= width


def _most(most: int, fits: Callable[[int], bool], least: int = 0) -> int:
    """The largest n in least..most with fits(n) (fits shrinks as n grows), `least` if none:
    found by halving, since measuring a long unbroken word (a hex dump) one character shorter
    at a time took minutes per figure."""
    lo, hi = least, most
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


__all__ = ["COLORS", "DPI", "FONT", "Figure", "LABEL_FONT", "MIN_FONT", "MONO", "OKABE_ITO", "PALETTE", "RC",
           "SLIDE_HEIGHT", "SLIDE_MIN_PX", "TITLE_FONT", "WIDTH", "new_figure", "new_slide", "outputs", "plt", "save",
           "slide_pixels", "styled", "text_width", "too_small", "wrap"]
