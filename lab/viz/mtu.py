"""MTU and overhead: how big a packet becomes on the wire per algorithm and mode, computed
by protecting real packets with lab.esp (so padding steps are exact), beside the sizes
seen in captures, and which inner sizes still pass a given path MTU."""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

from lab.esp import IpsecProto, Mode, OutboundSA, UdpEncap
from lab.esp.algorithms import encr_keymat_size, integ_keymat_size
from lab.ike.const import EncrId, IntegId

from .analysis import CaptureAnalysis
from .style import FONT, LABEL_FONT, PALETTE, TITLE_FONT, Figure, new_figure, save, styled

LOCAL, REMOTE = "192.0.2.1", "198.51.100.1"


@dataclass(frozen=True)
class Config:
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
    Config("ESP tunnel, AES-GCM-128", IpsecProto.ESP, Mode.TUNNEL, EncrId.AES_GCM_16, 128, IntegId.NONE),
    Config("ESP tunnel, AES-CBC-128 + SHA-256", IpsecProto.ESP, Mode.TUNNEL, EncrId.AES_CBC, 128,
           IntegId.HMAC_SHA2_256_128),
    Config("ESP-in-UDP tunnel, AES-GCM-128", IpsecProto.ESP, Mode.TUNNEL, EncrId.AES_GCM_16, 128, IntegId.NONE,
           True),
    Config("ESP-in-UDP tunnel, AES-CBC-128 + SHA-256", IpsecProto.ESP, Mode.TUNNEL, EncrId.AES_CBC, 128,
           IntegId.HMAC_SHA2_256_128, True),
    Config("ESP transport, AES-GCM-128", IpsecProto.ESP, Mode.TRANSPORT, EncrId.AES_GCM_16, 128, IntegId.NONE),
    Config("ESP-NULL tunnel, SHA-256", IpsecProto.ESP, Mode.TUNNEL, EncrId.NULL, None, IntegId.HMAC_SHA2_256_128),
    Config("AH tunnel, SHA-256", IpsecProto.AH, Mode.TUNNEL, None, None, IntegId.HMAC_SHA2_256_128),
    Config("AH transport, SHA-256", IpsecProto.AH, Mode.TRANSPORT, None, None, IntegId.HMAC_SHA2_256_128),
)


def inner_packet(size: int) -> bytes:
    """An IPv4/UDP packet of `size` octets from host to host (what enters the tunnel)."""
    payload = bytes(size - 28)
    udp = struct.pack("!HHHH", 40000, 9, 8 + len(payload), 0) + payload
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, size, 1, 0x4000, 64, 17, 0, bytes([10, 1, 0, 10]),
                         bytes([10, 2, 0, 10]))
    return header + udp


def wire_size(config: Config, size: int, sa: OutboundSA | None = None) -> int:
    """Octets of the IP datagram on the wire for an inner packet of `size` octets."""
    return len((sa or config.sa()).protect(inner_packet(size)))


def largest_inner(config: Config, path_mtu: int) -> int:
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


def observations(captures: list[CaptureAnalysis]) -> list[Observation]:
    """(inner, wire) sizes of decrypted ESP and of AH packets in the captures."""
    out = []
    for capture in captures:
        for p in capture.ipsec():
            if p.inner is None or p.ipsec.mode is None:
                continue
            inner = p.inner.length if p.ipsec.mode == "tunnel" else p.inner.length + 20
            encr = None
            if p.ipsec.protocol == "ESP":
                sa_keys = capture.keys.esp_sa(p.ipsec.spi, p.src, p.dst)
                encr = sa_keys.encr_id if sa_keys else None
            match = next((c.name for c in CONFIGS if c.protocol.name == p.ipsec.protocol and c.mode.value ==
                          p.ipsec.mode and c.encap == p.ipsec.encap and (p.ipsec.protocol == "AH" or c.encr_id == encr)),
                         "")
            out.append(Observation(match, inner, p.length, f"{capture.name}:{p.frame}"))
    return out


def mtu_model(path_mtu: int = 1500, captures: list[CaptureAnalysis] = (), step: int = 1,
              configs: tuple[Config, ...] = CONFIGS) -> MtuModel:
    sizes = list(range(40, max(1500, path_mtu) + 1, step))
    series = {}
    for config in configs:
        sa = config.sa()
        series[config.name] = [wire_size(config, n, sa) for n in sizes]
    largest = {c.name: largest_inner(c, path_mtu) for c in configs}
    return MtuModel(sizes, series, largest, path_mtu, observations(list(captures)))


@styled
def draw_mtu_model(model: MtuModel, out: str | Path) -> list[Path]:
    fig = new_figure(12.0)
    top = fig.add_axes([0.08, 0.60, 0.88, 0.32])
    bottom_left = fig.add_axes([0.33, 0.07, 0.36, 0.42])
    bottom_right = fig.add_axes([0.72, 0.07, 0.25, 0.42])
    order = sorted(model.series, key=lambda n: -model.largest[n])
    colors = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(order)}
    # size in vs size on the wire, near the path MTU
    lo = model.path_mtu - 140
    for name in order:
        pairs = [(n, w) for n, w in zip(model.sizes, model.series[name]) if n >= lo]
        top.step([n for n, _ in pairs], [w for _, w in pairs], where="post", color=colors[name], lw=2.4)
    top.axhline(model.path_mtu, color="#c0392b", lw=2.5)
    top.text(lo + 2, model.path_mtu + 3, f"path MTU {model.path_mtu}: larger datagrams are fragmented or dropped (DF)",
             color="#c0392b", fontsize=FONT, va="bottom")
    top.set_xlim(lo, model.sizes[-1])
    top.set_xlabel("inner packet entering the tunnel (octets)", fontsize=LABEL_FONT)
    top.set_ylabel("datagram on the wire", fontsize=LABEL_FONT)
    top.set_title("size in vs size on the wire (computed with lab.esp; colours as below)", fontsize=LABEL_FONT)
    top.grid(color="#dddddd")
    top.tick_params(labelsize=FONT)
    # overhead range per configuration, captured packets on it
    for i, name in enumerate(order):
        overhead = [w - n for w, n in zip(model.series[name], model.sizes)]
        bottom_left.plot([min(overhead), max(overhead)], [i, i], color=colors[name], lw=12, solid_capstyle="butt")
        label = f"{min(overhead)}" if min(overhead) == max(overhead) else f"{min(overhead)}-{max(overhead)}"
        bottom_left.text(max(overhead) + 3, i, label, va="center", ha="left", fontsize=FONT)
        seen = [o for o in model.seen if o.config == name]
        if seen:
            bottom_left.plot([o.wire - o.inner for o in seen], [i] * len(seen), "o", ms=14, mfc="white",
                             mec="black", mew=2.5, zorder=5)
    bottom_left.set_yticks(range(len(order)), order, fontsize=FONT)
    bottom_left.invert_yaxis()
    bottom_left.set_xlabel("octets added (padding makes a range)", fontsize=LABEL_FONT)
    bottom_left.set_title("overhead; circles: seen in captures", fontsize=LABEL_FONT)
    bottom_left.set_xlim(20, 100)
    bottom_left.grid(axis="x", color="#dddddd")
    bottom_left.tick_params(labelsize=FONT)
    # which sizes pass the path MTU
    bottom_right.barh(range(len(order)), [model.largest[n] for n in order], color=[colors[n] for n in order])
    bottom_right.set_xlim(min(model.largest.values()) - 60, model.path_mtu + 5)
    for i, name in enumerate(order):
        bottom_right.text(model.largest[name] - 4, i, str(model.largest[name]), ha="right", va="center",
                          fontsize=FONT, color="white", weight="bold")
    bottom_right.set_yticks([])
    bottom_right.invert_yaxis()
    bottom_right.axvline(model.path_mtu, color="#c0392b", lw=2)
    bottom_right.set_title("largest inner packet that passes", fontsize=LABEL_FONT)
    bottom_right.set_xlabel("octets", fontsize=LABEL_FONT)
    bottom_right.tick_params(labelsize=FONT)
    fig.suptitle("MTU and overhead: what IPsec adds to each packet", fontsize=TITLE_FONT, weight="bold", y=0.985)
    return save(fig, out)


def draw_mtu(out: str | Path, captures: list[CaptureAnalysis] = (), path_mtu: int = 1500) -> Figure:
    model = mtu_model(path_mtu, captures)
    files = draw_mtu_model(model, out)
    best = max(model.largest, key=model.largest.get)
    worst = min(model.largest, key=model.largest.get)
    caption = (f"MTU and overhead: through a path MTU of {path_mtu}, from {model.largest[worst]} octets "
               f"({worst}) to {model.largest[best]} ({best}); {len(model.seen)} captured packets on the curves")
    return Figure(files, caption, model)


__all__ = ["CONFIGS", "Config", "MtuModel", "Observation", "draw_mtu", "draw_mtu_model", "inner_packet",
           "largest_inner", "mtu_model", "observations", "wire_size"]
