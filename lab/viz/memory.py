"""A capture of IKE endpoints stepped in memory (lab.ike.memnet): every datagram they sent,
as a pcap that the analysis, the figures, tshark and Wireshark read like any other."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

BASE_TIME = 1_800_000_000.0  # an arbitrary fixed epoch: the pcap of a memnet run is reproducible


def write_memnet_capture(net, path: str | Path, extra: Iterable[tuple[float, bytes]] = (),
                         base_time: float = BASE_TIME) -> Path:
    """Write what the endpoints of `net` sent (net.log: a tap at each sender) as IPv4/UDP
    packets into a pcap at `path`; `extra` adds whole IP packets (e.g. ESP made with
    lab.esp) at the given memnet times."""
    import struct

    from lab.esp.ip import ipv4_header_checksum

    def udp_packet(datagram) -> bytes:
        src, dst = bytes(map(int, datagram.src[0].split("."))), bytes(map(int, datagram.dst[0].split(".")))
        udp = struct.pack("!HHHH", datagram.src[1], datagram.dst[1], 8 + len(datagram.data), 0) + datagram.data
        header = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0, src, dst))
        struct.pack_into("!H", header, 10, ipv4_header_checksum(header))
        return bytes(header) + udp

    packets = [(base_time + when, udp_packet(datagram)) for when, _sender, datagram in net.log]
    packets += [(base_time + when, bytes(data)) for when, data in extra]
    packets.sort(key=lambda p: p[0])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        # pcap file header: magic, version 2.4, zone, sigfigs, snaplen, LINKTYPE_RAW (101, IP first)
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101))
        for stamp, data in packets:
            seconds = int(stamp)
            out.write(struct.pack("<IIII", seconds, int(round((stamp - seconds) * 1e6)), len(data), len(data)))
            out.write(data)
    return path


__all__ = ["BASE_TIME", "write_memnet_capture"]
