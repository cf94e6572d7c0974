"""MTU and overhead: how big a packet becomes on the wire per algorithm and mode, computed
by protecting real packets with lab.esp (so padding steps are exact), beside the sizes
seen in captures, and which inner sizes still pass a given path MTU. Drawn as one slide
in the Okabe-Ito palette, the path MTU in black, a colour no configuration uses."""
from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lab.esp import IpsecProto, Mode, OutboundSA, UdpEncap
from lab.esp.algorithms import encr_keymat_size, integ_keymat_size
from lab.ike.const import EncrId, IntegId

from .analysis import CaptureAnalysis
from .style import FONT, LABEL_FONT, OKABE_ITO, TITLE_FONT, WIDTH, Figure, new_slide, save, styled, wrap

LOCAL, REMOTE = "192.0.2.1", "198.51.100.1"


@dataclass(frozen=True)
class Form:
    name: str
    protocol: IpsecProto
    mode: Mode
    encr_id: int | None
    key_bits: int | None
    integ_id: int
    encap: bool = False

    def sa(self) -> OutboundSA:
        encr_key = bytes(encr_keymat_size(self.encr_id, self.key_bits)) if self.encr_id is not None else b""
        integ_key = bytes(integ_keymat_size(self.integ_id)) if self.integ_id != IntegId.NONE else b""
        return OutboundSA(0x1000, protocol=self.protocol, mode=self.mode, encr_id=self.encr_id, encr_key=encr_key,
                          integ_id=self.integ_id, integ_key=integ_key, local=LOCAL, remote=REMOTE,
                          encap=UdpEncap() if self.encap else None, df="clear")

    @property
    def key(self) -> tuple:
        return (self.protocol.name, self.mode.value, self.encap)


CONFIGS = (
    Form("ESP tunnel, AES-GCM-128", IpsecProto.ESP, Mode.TUNNEL, EncrId.AES_GCM_16, 128, IntegId.NONE),
    Form("ESP tunnel, AES-CBC-128 + SHA-256", IpsecProto.ESP, Mode.TUNNEL, EncrId.AES_CBC, 128,
           IntegId.HMAC_SHA2_256_128),
    Form("ESP-in-UDP tunnel, AES-GCM-128", IpsecProto.ESP, Mode.TUNNEL, EncrId.AES_GCM_16, 128, IntegId.NONE,
           True),
    Form("ESP-in-UDP tunnel, AES-CBC-128 + SHA-256", IpsecProto.ESP, Mode.TUNNEL, EncrId.AES_CBC, 128,
           IntegId.HMAC_SHA2_256_128, True),
    Form("ESP transport, AES-GCM-128", IpsecProto.ESP, Mode.TRANSPORT, EncrId.AES_GCM_16, 128, IntegId.NONE),
    Form("ESP-NULL tunnel, SHA-256", IpsecProto.ESP, Mode.TUNNEL, EncrId.NULL, None, IntegId.HMAC_SHA2_256_128),
    Form("AH tunnel, SHA-256", IpsecProto.AH, Mode.TUNNEL, None, None, IntegId.HMAC_SHA2_256_128),
    Form("AH transport, SHA-256", IpsecProto.AH, Mode.TRANSPORT, None, None, IntegId.HMAC_SHA2_256_128),
)


def inner_packet(size: int) -> bytes:
    """An IPv4/UDP packet of `size` octets from host to host (what enters the tunnel)."""
    payload = bytes(size - 28)
    udp = struct.pack("!HHHH", 40000, 9, 8 + len(payload), 0) + payload
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, size, 1, 0x4000, 64, 17, 0, bytes([10, 1, 0, 10]),
                         bytes([10, 2, 0, 10]))
    return header + udp


def wire_size(config: Form, size: int, sa: OutboundSA | None = None) -> int:
    """Octets of the IP datagram on the wire for an inner packet of `size` octets."""
    return len((sa or config.sa()).protect(inner_packet(size)))


def largest_inner(config: Form, path_mtu: int) -> int:
    """The largest inner packet whose protected datagram is at most `path_mtu` octets."""
    sa = config.sa()
    low, high = 28, path_mtu
    while low < high:
        mid = (low + high + 1) // 2
        if wire_size(config, mid, sa) <= path_mtu:
            low = mid
        else:
            high = mid - 1
    return low


@dataclass
class Observation:
    config: str          # the CONFIGS entry it matches ("" when none does)
    inner: int
    wire: int
    source: str


@dataclass
class MtuModel:
    sizes: list[int]
    series: dict[str, list[int]]          # config name -> wire size per inner size
    largest: dict[str, int]               # config name -> largest inner size through path_mtu
    path_mtu: int
    seen: list[Observation] = field(default_factory=list)
    colors: dict[str, str] = field(default_factory=dict)   # a row's colour when not one of FORM_COLORS' forms
    title: str = "MTU and overhead: what IPsec adds to each packet"
    what: str = "IPsec"                                       # "octets IPsec adds to a packet"
    note: str = "Computed by protecting real packets with lab.esp."


def observations(captures: list[CaptureAnalysis]) -> list[Observation]:
    """(inner, wire) sizes of decrypted ESP and of AH packets in the captures."""
    out = []
    for capture in captures:
        for p in capture.ipsec():
            sa = p.ipsec
            if p.inner is None or sa is None or sa.mode is None or sa.tcp:
                continue   # ESP in TCP (RFC 9329): a segment may hold several packets; not one of these forms
            inner = p.inner.length if sa.mode == "tunnel" else p.inner.length + 20
            encr = None
            if sa.protocol == "ESP":
                sa_keys = capture.keys.esp_sa(sa.spi, p.src, p.dst)
                encr = sa_keys.encr_id if sa_keys else None
            match = next((c.name for c in CONFIGS if c.protocol.name == sa.protocol and c.mode.value ==
                          sa.mode and c.encap == sa.encap and (sa.protocol == "AH" or c.encr_id == encr)),
                         "")
            out.append(Observation(match, inner, p.length, f"{capture.name}:{p.frame}"))
    return out


def mtu_model(path_mtu: int = 1500, captures: Sequence[CaptureAnalysis] = (), step: int = 1,
              configs: tuple[Form, ...] = CONFIGS) -> MtuModel:
    sizes = list(range(40, max(1500, path_mtu) + 1, step))
    series = {}
    for config in configs:
        sa = config.sa()
        series[config.name] = [wire_size(config, n, sa) for n in sizes]
    largest = {c.name: largest_inner(c, path_mtu) for c in configs}
    return MtuModel(sizes, series, largest, path_mtu, observations(list(captures)))


# ---------------------------------------------------------------- drawing
#
# One slide, one row per configuration (so no series can hide another), two panels on
# axes that start at zero: the octets IPsec adds (the solid part every packet gets, the
# light part what padding may add), and the largest inner packet that still fits the path
# MTU, drawn in black, a colour no configuration uses. A configuration's colour says its
# form, as the header layouts name it; the row's label says the algorithms.

FORM_COLORS = {
    "ESP tunnel": OKABE_ITO["blue"], "ESP-in-UDP tunnel": OKABE_ITO["orange"],
    "ESP transport": OKABE_ITO["bluish green"], "ESP-NULL tunnel": OKABE_ITO["reddish purple"],
    "AH tunnel": OKABE_ITO["vermillion"], "AH transport": OKABE_ITO["sky blue"],
}
PATH_MTU_COLOR = OKABE_ITO["black"]


def config_color(name: str) -> str:
    """The colour of a configuration: that of its form (the name before the comma)."""
    return FORM_COLORS[name.split(",")[0]]


@styled
def render_mtu(model: MtuModel):
    """The figure, a 16:9 slide, not saved (for draw_mtu_model and tests)."""
    fig = new_slide()
    order = sorted(model.series, key=lambda n: -model.largest[n])
    n = len(order)
    notes = [f"{model.note} Both axes start at zero. "
             f"Colour: the form; white circles: the overhead of packets seen in the captures ({len(model.seen)}). "
             f"An inner packet larger than its bar is fragmented after IPsec, or, with DF set, dropped and an "
             f"ICMP \"fragmentation needed\" goes back (unless a firewall drops that too: a PMTUD black hole)."]
    lines = [line for note in notes for line in wrap(note, WIDTH - 0.6, FONT)]
    top, bottom = 1.3, 1.0 + 0.3 * len(lines)        # inches: title and panel titles; x labels and notes
    height = 9.0 - top - bottom
    overhead_ax = fig.add_axes([3.55 / WIDTH, bottom / 9.0, 5.0 / WIDTH, height / 9.0])
    passes_ax = fig.add_axes([9.25 / WIDTH, bottom / 9.0, 6.4 / WIDTH, height / 9.0])
    labels = []
    for i, name in enumerate(order):
        color = model.colors.get(name) or config_color(name)
        overhead = [w - s for w, s in zip(model.series[name], model.sizes)]
        low, high = min(overhead), max(overhead)
        overhead_ax.barh(i, low, height=0.6, color=color, edgecolor=color, lw=1.5, zorder=2)
        if high > low:
            overhead_ax.barh(i, high - low, left=low, height=0.6, color=color, alpha=0.3, edgecolor=color, lw=1.5,
                             hatch="//", zorder=2)
        seen = sorted({o.wire - o.inner for o in model.seen if o.config == name})
        overhead_ax.text(max([high] + [o + 3 for o in seen]) + 2, i, f"{low}" if low == high else f"{low}-{high}",
                         va="center", ha="left", fontsize=FONT)
        if seen:
            # white with the row's colour round it: black stays the path MTU's alone
            overhead_ax.plot(seen, [i] * len(seen), "o", ms=17, mfc="white", mec=color, mew=3, zorder=5)
        largest = model.largest[name]
        passes_ax.barh(i, largest, height=0.6, color=color, alpha=0.35, edgecolor=color, lw=1.5, zorder=2)
        passes_ax.text(largest - 12, i, f"{largest}", ha="right", va="center", fontsize=FONT, weight="bold",
                       color="#111111", zorder=3)
        form, _, algorithms = name.partition(", ")
        labels.append(f"{form}\n{algorithms}")
    for ax in (overhead_ax, passes_ax):
        ax.set_ylim(n - 0.4, -0.6)
        ax.grid(axis="x", color="#dddddd", zorder=0)
        ax.tick_params(labelsize=FONT)
    overhead_ax.set_yticks(range(n), labels, fontsize=FONT, linespacing=1.1)
    overhead_ax.set_xlim(0, max(100, max(max(w - s for w, s in zip(model.series[c], model.sizes))
                                         for c in order) + 18))
    overhead_ax.set_xlabel(f"octets {model.what} adds to a packet", fontsize=LABEL_FONT)
    overhead_ax.set_title("overhead (hatched: what padding may add)", fontsize=LABEL_FONT)
    passes_ax.set_yticks([])
    passes_ax.set_xlim(0, model.path_mtu * 1.08)
    passes_ax.axvline(model.path_mtu, color=PATH_MTU_COLOR, lw=2.5, linestyle="--", zorder=4)
    passes_ax.set_xlabel("largest inner packet that still fits (octets)", fontsize=LABEL_FONT)
    passes_ax.set_title(f"through a path MTU of {model.path_mtu} (dashed line)", fontsize=LABEL_FONT)
    fig.suptitle(model.title, fontsize=TITLE_FONT, weight="bold",
                 y=1 - 0.35 / 9.0)
    fig.text(0.5, 0.2 / 9.0, "\n".join(lines), ha="center", va="bottom", fontsize=FONT, linespacing=1.25)
    return fig


@styled
def draw_mtu_model(model: MtuModel, out: str | Path) -> list[Path]:
    return save(render_mtu(model), out, slide=True)


def draw_mtu(out: str | Path, captures: Sequence[CaptureAnalysis] = (), path_mtu: int = 1500) -> Figure:
    model = mtu_model(path_mtu, captures)
    files = draw_mtu_model(model, out)
    best = max(model.largest, key=model.largest.__getitem__)
    worst = min(model.largest, key=model.largest.__getitem__)
    caption = (f"MTU and overhead: through a path MTU of {path_mtu}, from {model.largest[worst]} octets "
               f"({worst}) to {model.largest[best]} ({best}); {len(model.seen)} captured packets on their rows")
    return Figure(files, caption, model)


__all__ = ["CONFIGS", "Form", "FORM_COLORS", "MtuModel", "Observation", "PATH_MTU_COLOR", "config_color", "draw_mtu",
           "draw_mtu_model", "inner_packet", "largest_inner", "mtu_model", "observations", "render_mtu", "wire_size"]
