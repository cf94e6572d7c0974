"""report.html of a run folder: one self-contained page a trainee opens in any browser (no
server, no network, no Python on the reader's side).

    write_report_html("out/net2net-nat")      # -> out/net2net-nat/report.html
    page_data("out/net2net-nat")              # what the page shows, as JSON-ready data

Everything the page shows is worked out here, with the lab's own decoders: the ladder is
lab.viz.ladder's model, the payloads inside SK are what lab.viz.analysis decrypted with the
run's keys (described by lab.viz.explain), the encrypted and authenticated ranges come from
the ciphers' IV and ICV sizes and from lab.viz.layout for ESP, the narration is
lab.viz.narrate's. The page's script (lab/viz/static/report.js) only draws that data: it
decodes nothing itself.
"""
from __future__ import annotations

import base64
import html
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab import runfolder
from lab.ike import payloads as pl
from lab.ike.message import HEADER_LENGTH, Message
from lab.ike.payloads import chain_names

from .analysis import CaptureAnalysis, Packet, analyze_capture
from .explain import describe_payload
from .keys import KeyTables, load_keys
from .ladder import Arrow, Band, Ladder, build_ladder
from .layout import packet_layout
from .run import RunFolder, load_run
from .vpns import FORMATS, vpn_packets

REPORT_HTML = "report.html"
STATIC = Path(__file__).parent / "static"
BAND_PACKETS = 200          # packets of one ESP band listed (a long run has thousands)
BAND_BYTES = 3              # of those, how many carry their bytes


# ------------------------------------------------------------------ bytes and ranges


@dataclass
class Bytes:
    """One packet's octets with named segments and the encrypted/authenticated ranges."""

    data: bytes
    segments: list[tuple[int, int, str, str]] = field(default_factory=list)   # (start, end, label, kind)
    encrypted: tuple[int, int] | None = None
    authenticated: tuple[int, int] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"b64": base64.b64encode(self.data).decode(), "segments": [list(s) for s in self.segments],
                "encrypted": list(self.encrypted) if self.encrypted else None,
                "authenticated": list(self.authenticated) if self.authenticated else None}


def _ip_udp(data: bytes, segments: list) -> int:
    """Segments of the IPv4/IPv6 and UDP headers; returns where the UDP payload starts."""
    if data[0] >> 4 == 4:
        ihl = (data[0] & 0x0F) * 4
    else:
        ihl = 40
    segments.append((0, ihl, "IP header", "ip"))
    segments.append((ihl, ihl + 8, "UDP", "udp"))
    return ihl + 8


def _tcp_frame(packet: Packet, segments: list) -> tuple[bytes, int]:
    """A frame of an RFC 9329 stream: (the octets shown, where the IKE message or ESP packet
    starts in them) with the segments up to it. The IP packet of its segment when the frame
    is all in it; the frame alone (length field first) when segments split it."""
    frame = packet.tcp
    assert frame is not None
    data = packet.data
    if frame.offset is not None:
        ihl = (data[0] & 0x0F) * 4 if data[0] >> 4 == 4 else 40
        segments.append((0, ihl, "IP header", "ip"))
        segments.append((ihl, frame.offset, "TCP", "tcp"))
        at = frame.offset
    else:
        data, at = frame.wire, 0
    segments.append((at, at + 2, "length", "length"))   # RFC 9329 §3
    at += 2
    if frame.kind == "ike":
        segments.append((at, at + 4, "non-ESP marker", "marker"))   # RFC 9329 §3.1
        at += 4
    return data, at


def ike_bytes(packet: Packet, keys: KeyTables) -> Bytes:
    """The IP packet of an IKE message, its headers and payloads as segments; inside SK/SKF
    the IV, the encrypted part and the ICV when the run's keys name the cipher (RFC 7296
    §3.14: the ICV covers the IKE header through the encrypted part; RFC 7383 §2.5 for SKF)."""
    data = packet.data
    out = Bytes(data)
    if not data or packet.ike is None:
        return out
    if packet.tcp is not None:
        data, at = _tcp_frame(packet, out.segments)
        out.data = data
    else:
        at = _ip_udp(data, out.segments)
        if 4500 in (packet.sport, packet.dport):
            out.segments.append((at, at + 4, "non-ESP marker", "marker"))   # RFC 3948 §2.2
            at += 4
    start = at
    end = start + packet.ike.length
    if end > len(data) or packet.ike.error:
        out.segments.append((start, len(data), "not a valid IKE message", "other"))
        return out
    out.segments.append((start, start + HEADER_LENGTH, "IKE header", "ike"))
    try:
        message = Message.parse(data[start:end])
    except Exception:  # the analyser said it parses; be safe with the bytes anyway
        return out
    names = chain_names(message.payloads, not message.is_response)
    offset = start + HEADER_LENGTH
    for payload, name in zip(message.payloads, names):
        if offset + 4 > end:
            break
        length = struct.unpack_from("!H", data, offset + 2)[0]
        if isinstance(payload, (pl.SK, pl.SKF)):
            header = 8 if isinstance(payload, pl.SKF) else 4
            tag = "SKF" if isinstance(payload, pl.SKF) else "SK"
            out.segments.append((offset, offset + header, f"{tag} header", "sk"))
            body, body_end = offset + header, min(offset + length, end)
            sa = keys.ike_sa(message.spi_i, message.spi_r) if keys else None
            if sa is None:
                out.segments.append((body, body_end, "IV, ciphertext, ICV (no keys: the split is unknown)",
                                     "ciphertext"))
            else:
                cipher = sa.cipher()
                iv, icv = cipher.iv_size, cipher.icv_size
                if iv:
                    out.segments.append((body, body + iv, "IV", "iv"))
                out.segments.append((body + iv, body_end - icv, "encrypted payloads, padding, pad length",
                                     "ciphertext"))
                if icv:
                    out.segments.append((body_end - icv, body_end, "ICV", "icv"))
                out.encrypted = (body + iv, body_end - icv)
                out.authenticated = (start, body_end - icv)
        else:
            out.segments.append((offset, offset + length, name, "payload"))
        offset += length
    return out


def ipsec_bytes(packet: Packet, keys: KeyTables) -> Bytes:
    """An ESP/AH packet's layout (lab.viz.layout) as segments and ranges."""
    out = Bytes(packet.data)
    if not packet.data or packet.data[0] >> 4 != 4:
        return out
    try:
        layout = packet_layout(packet, keys)
    except (struct.error, IndexError, ValueError):
        return out
    out.segments = [(s.start, s.end, s.label, s.kind) for s in layout.segments]
    out.encrypted, out.authenticated = layout.encrypted, layout.authenticated
    return out


# ------------------------------------------------------------------ one message in words


def _payloads(packet: Packet) -> list[dict[str, Any]]:
    """The payload chain, each payload in a line; inside SK the decrypted ones, nested."""
    ike = packet.ike
    if ike is None or ike.error:
        return []
    in_request = not ike.response
    out = []
    objects = ike.payload_objects
    for payload, name in zip(objects, chain_names(objects, in_request)):
        entry: dict[str, Any] = {"name": name, "text": describe_payload(payload, name)}
        if isinstance(payload, (pl.SK, pl.SKF)):
            if ike.inner is not None:
                key = "SK_ei/SK_ai" if ike.initiator else "SK_er/SK_ar"
                whole = " (the whole message, reassembled from its fragments)" if ike.reassembled else ""
                entry["opened"] = f"decrypted with {key}{whole}, the ICV verified:"
                entry["inner"] = [{"name": n, "text": describe_payload(p, n)}
                                  for p, n in zip(ike.inner_payloads, chain_names(ike.inner_payloads, in_request))]
            elif ike.fragment_verified:
                entry["opened"] = ("this fragment decrypted and its ICV verified; the payloads show on the last "
                                   "fragment, once the message is whole (RFC 7383 §2.6)")
            elif ike.decrypt_error:
                entry["opened"] = f"not decrypted: {ike.decrypt_error}"
            else:
                entry["opened"] = "not decrypted: this run folder has no keys for it"
        out.append(entry)
    return out


def _header(packet: Packet) -> str:
    ike = packet.ike
    if ike is None:
        return packet.what()
    if ike.error:
        return f"not a valid IKE message: {ike.error}"
    role = "original initiator" if ike.initiator else "original responder"
    return (f"{ike.exchange_name} {'response' if ike.response else 'request'} {ike.message_id}, from the {role}; "
            f"SPIi {ike.spi_i}, SPIr {ike.spi_r}; {ike.length} octets of IKE")


def _side(name: str, side: str, packet: Packet, keys: KeyTables, with_bytes: bool = True) -> dict[str, Any]:
    entry: dict[str, Any] = {"capture": name, "side": side, "frame": packet.frame, "src": packet.endpoint("src"),
                             "dst": packet.endpoint("dst"), "length": packet.length, "what": packet.what()}
    if packet.rewrite:
        entry["rewrite"] = packet.rewrite
    if with_bytes:
        entry["bytes"] = (ike_bytes(packet, keys) if packet.ike is not None else ipsec_bytes(packet, keys)).to_json()
    return entry


# ------------------------------------------------------------------ the page's data


def _step_of(time: float, edges: list[tuple[int, float]]) -> int | None:
    """The step (index) a packet at wall-clock `time` belongs to: the first whose end is at or
    after it (as narrate_run splits the run), the last step for what came after."""
    for index, ended in edges:
        if time <= ended:
            return index
    return edges[-1][0] if edges else None


def _side_names(ladder_captures: list[CaptureAnalysis]) -> dict[str, str]:
    if len(ladder_captures) == 2:
        return {ladder_captures[0].name: "inside the NAT box", ladder_captures[1].name: "outside the NAT box"}
    return {c.name: "" for c in ladder_captures}


def _ladder_json(ladder: Ladder, captures: list[CaptureAnalysis], keys: KeyTables,
                 edges: list[tuple[int, float]]) -> dict[str, Any]:
    by_frame = {(c.name, p.frame): p for c in captures for p in c.packets}
    sides = _side_names(captures)
    rows: list[dict[str, Any]] = []
    items: list[tuple[int, Arrow | Band]] = [(a.row, a) for a in ladder.arrows] + [(b.row, b) for b in ladder.bands]
    for _, item in sorted(items, key=lambda x: x[0]):
        if isinstance(item, Arrow):
            if len(item.packets) == len(item.frames):   # a frame number may hold several frames of a TCP stream
                packets = [(name, p) for (name, _), p in zip(item.frames, item.packets)]
            else:
                packets = [(name, by_frame[(name, frame)]) for name, frame in item.frames if (name, frame) in by_frame]
            first = packets[0][1] if packets else None
            rows.append({
                "type": "arrow", "kind": item.kind, "src": item.src, "dst": item.dst, "via": item.via,
                "label": item.label, "chain": item.chain, "note": item.note, "time": item.time - ladder.start,
                "retransmission": item.retransmission, "fragment": item.fragment, "port4500": item.port4500,
                "tcp": item.tcp,
                "ports": [item.sport, item.far_ports[1] if item.far_ports else item.dport],
                "step": _step_of(item.time, edges),
                "header": _header(first) if first is not None else item.label,
                "payloads": _payloads(first) if first is not None else [],
                "sides": [_side(name, sides.get(name, ""), p, keys) for name, p in packets],
            })
        else:
            frames = [(name, frame) for name, frame in item.frames]
            # a band's frames hold each packet once per capture it crossed: list the first capture's
            first_capture = frames[0][0] if frames else ""
            if len(item.packets) == len(frames):
                own = [p for (name, _), p in zip(frames, item.packets) if name == first_capture]
            else:
                own = [by_frame[f] for f in frames if f[0] == first_capture and f in by_frame]
            listed = own[:BAND_PACKETS]
            rows.append({
                "type": "band", "protocol": item.protocol, "spi": item.spi, "count": item.count, "src": item.src,
                "dst": item.dst, "via": item.via, "first_seq": item.first_seq, "last_seq": item.last_seq,
                "inner": item.inner, "encap": item.encap, "tcp_port": item.tcp_port, "time": item.time - ladder.start,
                "end": item.end - ladder.start, "step": _step_of(item.time, edges), "capture": first_capture,
                "more": max(0, len(own) - len(listed)),
                "packets": [_side(first_capture, "", p, keys, with_bytes=i < BAND_BYTES) | {"time": p.time - ladder.start}
                            for i, p in enumerate(listed)],
            })
    return {"title": ladder.title, "decrypted": ladder.decrypted,
            "lanes": [{"name": l.name, "addresses": l.addresses, "nat": l.nat} for l in ladder.lanes],
            "rows": rows}


def _ladders(run: RunFolder, analyses: dict[Path, CaptureAnalysis]) -> list[tuple[Ladder, list[CaptureAnalysis]]]:
    """The ladders lab.viz.figures draws: one per NAT box seen from both sides, one per other capture."""
    out = []
    paired: set[Path] = set()
    for inside, outside in run.nat_sides():
        pair = [analyses[inside], analyses[outside]]
        paired |= {inside, outside}
        if not (pair[0].ike() or pair[0].ipsec()) and vpn_packets(pair[0]):
            continue  # a WireGuard or OpenVPN gateway's side: lab.viz.figures draws it as its own ladder
        out.append((build_ladder(pair, run.topology), pair))   # as lab.viz.figures draws it
    for path, capture in analyses.items():
        if path not in paired and (capture.ike() or capture.ipsec()):
            out.append((build_ladder([capture], run.topology), [capture]))
    return out


def _figures(run: RunFolder) -> list[dict[str, str]]:
    """The figures drawn into figures/ (not the ladders: the page has its own), as data: URIs."""
    entries = []
    for path in sorted(run.figures.glob("*.png")) if run.figures.is_dir() else []:
        if path.stem.startswith("ladder") and not any(path.stem.endswith(f"-{f.key}") or f"-{f.key}-" in path.stem
                                                      for f in FORMATS):
            continue  # IPsec's ladders: the page draws its own; the alternatives' are shown as drawn
        entries.append({"file": str(path.relative_to(run.root)), "caption": _caption(path.stem),
                        "src": "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()})
    return entries


def _caption(stem: str) -> str:
    for prefix, words in (("topology", "The topology"), ("rekey", "Rekeying timeline"),
                          ("headers", "Header layouts of captured packets"), ("mtu", "MTU and overhead"),
                          ("ladder", "Ladder")):
        if stem.startswith(prefix):
            rest = stem[len(prefix):].strip("-")
            return f"{words}" + (f" ({rest})" if rest else "")
    return stem


def _narration(root: Path) -> dict[int, list[str]]:
    from .narrate import narrate_run

    try:
        told = narrate_run(root)
    except Exception as err:  # narration is a help: a run it cannot tell still gets its page
        return {0: [f"(the narration could not be made: {type(err).__name__}: {err})"]}
    return {step.index: lines for step, lines in told}


def page_data(root: str | Path) -> dict[str, Any]:
    """Everything report.html shows, as JSON-ready data."""
    run = load_run(root)
    result = run.result if run.result is not None else runfolder.RunResult.from_json({})
    keys = load_keys(run.keys) if run.keys else KeyTables()
    analyses = {path: analyze_capture(path, keys) for path in run.captures}
    edges = [(s.index, s.ended or s.started) for s in result.steps if not s.skipped]
    narration = _narration(run.root)
    ladders = [_ladder_json(ladder, captures, keys, edges) for ladder, captures in _ladders(run, analyses)]
    ladders = [ladder for ladder in ladders if ladder["rows"]]  # a tap that saw nothing draws no empty ladder
    gateways = ", ".join(f"{node} runs {software}" for node, software in result.nodes.items())
    return {
        "scenario": result.scenario or run.root.name, "title": result.title, "verdict": result.verdict,
        "passed": result.passed, "duration": result.duration, "started": result.started, "error": result.error,
        "topology": run.topology.topology if run.topology is not None else "", "gateways": gateways,
        "steps": [{"index": s.index, "kind": s.kind, "text": s.text, "expect": s.expect, "ok": s.ok,
                   "skipped": s.skipped, "detail": s.detail, "narration": narration.get(s.index, [])}
                  for s in result.steps],
        "narration_problem": narration.get(0, []),
        "checks": [{"index": c.index, "text": c.text, "ok": c.ok, "saw": c.saw, "tries": c.tries,
                    "seconds": c.seconds} for c in result.checks],
        "teardown": result.teardown,
        "ladders": ladders,
        "figures": _figures(run),
        "files": {sub: result.files.get(sub, []) for sub in (runfolder.CAPTURES, runfolder.KEYS, runfolder.LOGS)},
        "tap_losses": [{"tap": t.tap, "received": t.received, "dropped": t.dropped}
                       for t in runfolder.tap_losses(run.root)],
        "missing": run.missing, "problems": run.problems + keys.problems,
    }


def _script_json(data: Any) -> str:
    """JSON safe inside <script>: no `</script>` or `<!--` can end or change the element."""
    return json.dumps(data, separators=(",", ":")).replace("<", "\\u003c").replace(">", "\\u003e") \
        .replace("&", "\\u0026").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def render_html(data: dict[str, Any]) -> str:
    template = (STATIC / "report.html").read_text()
    title = f"{data['scenario']}: {data['title']}" if data.get("title") else data["scenario"]
    return (template.replace("/*CSS*/", (STATIC / "report.css").read_text())
            .replace("/*JS*/", (STATIC / "report.js").read_text())
            .replace("{{TITLE}}", html.escape(title))
            .replace("{{DATA}}", _script_json(data)))


def write_report_html(root: str | Path, out: str | Path | None = None) -> Path:
    """report.html of the run folder `root`, written beside its report.md (or to `out`)."""
    root = Path(root)
    target = Path(out) if out is not None else root / REPORT_HTML
    target.write_text(render_html(page_data(root)), encoding="utf-8")
    return target


__all__ = ["REPORT_HTML", "ike_bytes", "ipsec_bytes", "page_data", "render_html", "write_report_html"]
