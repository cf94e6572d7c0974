"""tshark for the tests that hold our dissection of a capture against Wireshark's: run it on a
pcap (a missing tshark fails the test, it does not skip it), read its PDML into the fields of each
frame, pick fields out by name and position, compare its numbers with ours."""
from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path


def tshark(pcap: Path, *args: str, decode_as: Iterable[str] = (), where: str | None = None) -> str:
    """tshark's output on `pcap`, told how to decode ports (`-d` each of decode_as) and which
    frames to keep (`-Y where`)."""
    if shutil.which("tshark") is None:
        import pytest
        pytest.fail("tshark is missing: apt-get install tshark", pytrace=False)
    decode = [a for d in decode_as for a in ("-d", d)]
    keep = ["-Y", where] if where else []
    return subprocess.run(["tshark", "-r", str(pcap), *decode, *keep, *args], check=True, capture_output=True,
                          text=True, timeout=300).stdout


def pdml_frames(pdml: str) -> dict[int, list[dict]]:
    """Frame number -> every proto and field tshark dissects in it (name, pos, size, show, ...),
    positions relative to the IP header; `pdml` is the output of `tshark -T pdml`."""
    frames: dict[int, list[dict]] = {}
    for packet in ET.fromstring(pdml).iter("packet"):
        items = [dict(e.attrib) for e in packet.iter() if e.tag in ("proto", "field") and "pos" in e.attrib]
        number = int(next(i["show"] for i in items if i.get("name") == "frame.number"))
        ip = next(int(i["pos"]) for i in items if i.get("name") == "ip")
        for item in items:
            item["pos"], item["size"] = int(item["pos"]) - ip, int(item.get("size", 0))
        frames[number] = items
    return frames


def named(items: list[dict], name: str, pos: int | None = None) -> list[dict]:
    """The fields of one frame called `name` (at IP-relative offset `pos`, if given)."""
    return [i for i in items if i.get("name") == name and (pos is None or i["pos"] == pos)]


def number(text: str) -> int:
    """The number a value starts with, decimal or 0x-hex ("0x00000001", "6 (P_DATA_V2)")."""
    return int(text.split()[0], 0)


def same(ours: str, theirs: str) -> bool:
    """Our value and tshark's the same: as numbers where both are, else as text."""
    try:
        return number(ours) == number(theirs)
    except ValueError:
        return ours == theirs
