"""Trim a run of compare-site-to-site to tests/data/alternatives/: the outside capture's
first frames of each VPN (its handshake and the pings after it), and the run's ESP keys.

    .venv/bin/ipsec-lab run compare-site-to-site --out /tmp/s2s      # as root
    .venv/bin/python tests/data/make_alternatives.py /tmp/s2s
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

from scapy.layers.inet import IP, TCP, UDP
from scapy.utils import PcapReader, wrpcap

# (what, how many frames from its first): the first pings come right after each handshake
CLASSES = {"ipsec": 40, "wireguard": 30, "openvpn": 40, "openvpn-tcp": 70}


def _class(packet) -> str | None:
    ip = packet.getlayer(IP)
    if ip is None:
        return None
    udp, tcp = ip.getlayer(UDP), ip.getlayer(TCP)
    if udp is not None:
        ports = {udp.sport, udp.dport}
        return "ipsec" if ports & {500, 4500} else "wireguard" if 51820 in ports else \
            "openvpn" if 1194 in ports else None
    if tcp is not None and 443 in (tcp.sport, tcp.dport):
        return "openvpn-tcp"
    return None


def main(run: str) -> None:
    here = Path(__file__).parent / "alternatives"
    here.mkdir(exist_ok=True)
    kept, counts = [], dict.fromkeys(CLASSES, 0)
    with PcapReader(str(Path(run) / "captures" / "nat-outside.pcap")) as reader:
        for packet in reader:
            which = _class(packet)
            if which is not None and counts[which] < CLASSES[which]:
                counts[which] += 1
                kept.append(packet)
    wrpcap(str(here / "compare-site-to-site.pcap"), kept)
    (here / "keys").mkdir(exist_ok=True)
    for name in ("esp_sa", "ikev2_decryption_table"):
        shutil.copy(Path(run) / "keys" / name, here / "keys" / name)
    print(f"{len(kept)} frames: {counts}")


if __name__ == "__main__":
    main(sys.argv[1])
