"""What every figure shares: legible when projected. A figure is WIDTH inches wide and
saved at DPI so that its PNG is 1920 pixels wide; no text is smaller than MIN_FONT points."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.text import Text  # noqa: E402

WIDTH = 16.0       # inches
DPI = 120          # 16 in x 120 = 1920 px
MIN_FONT = 14.0    # points, at 1920 px wide
FONT = 15.0
LABEL_FONT = 17.0
TITLE_FONT = 21.0
MONO = "DejaVu Sans Mono"

COLORS = {
    "ike": "#1f4e9c", "ike500": "#1f4e9c", "ike4500": "#7b2d8e", "esp": "#1b7a3a", "ah": "#b8860b",
    "retransmit": "#c0392b", "fragment": "#555555", "nat": "#e8e0c8", "natedge": "#9c7c38", "lane": "#444444",
    "other": "#666666", "keepalive": "#999999", "encrypted": "#f4c7c3", "authenticated": "#c9daf8",
    "grid": "#dddddd",
}
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f",
           "#bcbd22"]

RC = {
    "font.size": FONT, "axes.titlesize": LABEL_FONT, "axes.labelsize": LABEL_FONT, "xtick.labelsize": FONT,
    "ytick.labelsize": FONT, "legend.fontsize": FONT, "figure.titlesize": TITLE_FONT, "svg.fonttype": "none",
    "axes.spines.top": False, "axes.spines.right": False,
}


@dataclass
class Figure:
    """What a figure function returns: the files it wrote, a one-line caption, and the
    model it drew (lanes and arrows, rows, series: what tests compare with the capture)."""

    files: list[Path]
    caption: str
    model: Any = None
    notes: list[str] = field(default_factory=list)


def new_figure(height: float, **kwargs) -> Any:
    return plt.figure(figsize=(WIDTH, height), dpi=DPI, **kwargs)


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


def save(fig: Any, out: str | Path) -> list[Path]:
    png, svg = outputs(out)
    png.parent.mkdir(parents=True, exist_ok=True)
    small = too_small(fig)
    if small:
        raise AssertionError(f"text below {MIN_FONT} pt in {png.name}: {small[:3]}")
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


__all__ = ["COLORS", "DPI", "FONT", "Figure", "LABEL_FONT", "MIN_FONT", "MONO", "PALETTE", "RC", "TITLE_FONT",
           "WIDTH", "new_figure", "outputs", "plt", "save", "styled", "too_small"]
