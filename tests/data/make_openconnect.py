"""Trim a run of restrictive-network and one of compare-roaming to tests/data/openconnect/: the
internet side (`captures/nat-outside.pcap`) of each, with the first frames of OpenConnect's TLS
connection and DTLS (and, from restrictive-network, of OpenVPN over TCP 443 beside it: two
formats on one port).

    .venv/bin/ipsec-lab run restrictive-network --out /tmp/rn      # as root
    .venv/bin/ipsec-lab run compare-roaming --out /tmp/cr
    .venv/bin/python tests/data/make_openconnect.py /tmp/rn /tmp/cr
"""
from __future__ import annotations

import sys
from pathlib import Path

from scapy.layers.inet import IP, TCP, UDP
from scapy.utils import PcapReader, wrpcap

# (run, the server's address, how many frames of it): TCP 443 and UDP 443 are counted apart
KEEP = {
    "restrictive-network": {("198.51.100.6", "tcp"): 70, ("198.51.100.5", "tcp"): 45},
    "compare-roaming": {("198.51.100.4", "tcp"): 45, ("198.51.100.4", "udp"): 45},
}


def _class(packet) -> tuple[str, str] | None:
    ip = packet.getlayer(IP)
    if ip is None:
        return None
    for layer, name in ((TCP, "tcp"), (UDP, "udp")):
        segment = ip.getlayer(layer)
        if segment is not None and 443 in (segment.sport, segment.dport):
            server = ip.src if segment.sport == 443 else ip.dst
            return server, name
    return None


def trim(run: Path, name: str, here: Path) -> None:
    kept, counts = [], dict.fromkeys(KEEP[name], 0)
    with PcapReader(str(run / "captures" / "nat-outside.pcap")) as reader:
        for packet in reader:
            which = _class(packet)
            if which in counts and counts[which] < KEEP[name][which]:
                counts[which] += 1
                kept.append(packet)
    wrpcap(str(here / f"{name}.pcap"), kept)
    print(f"{name}: {len(kept)} frames: {counts}")


def main(restrictive: str, roaming: str) -> None:
    here = Path(__file__).parent / "openconnect"
    here.mkdir(exist_ok=True)
    trim(Path(restrictive), "restrictive-network", here)
    trim(Path(roaming), "compare-roaming", here)


if __name__ == "__main__":
    main(*sys.argv[1:3])
