"""The lab's ping: ICMP echo requests that wait for each reply as long as they were told.

iputils' `ping -c N -i I -W T`, once it has had one reply, waits only max(2 x the longest round
trip so far, I) after its last request (ping_common.c, schedule_exit) and ignores -W: on a loaded
machine a reply that comes 300 ms late counts as lost, and a scenario fails on a tunnel that
works. `ping -w` waits, but sends more than N requests, which changes what the captures show.
This sends exactly N requests, `interval` apart, and counts each reply that comes within
`timeout` seconds of its request. It prints what ping prints (reply lines, "From ... Frag needed
and DF set (mtu = M)", "N packets transmitted, M received"), so the ping step reads either.
An IPv6 address gets ICMPv6 echo requests (RFC 4443 §4.1), and "Packet too big: mtu=M" for an
ICMPv6 Packet Too Big (§3.2), as iputils' ping prints it.

Standard library only, run as its own process inside a node: python -I lab/net/pinger.py ...
"""
from __future__ import annotations

import argparse
import errno
import os
import select
import socket
import struct
import sys
import time

IP_MTU_DISCOVER, IP_PMTUDISC_DO = 10, 2   # linux/in.h
IPV6_MTU_DISCOVER, IPV6_MTU, IPV6_RECVHOPLIMIT, IPV6_HOPLIMIT = 23, 24, 51, 52  # linux/in6.h
ECHO6_REQUEST, ECHO6_REPLY = 128, 129  # RFC 4443 §4.1, §4.2
UNREACHABLE6, TOO_BIG6, TIME_EXCEEDED6 = 1, 2, 3  # RFC 4443 §3.1-3.3
UNREACHABLE6_TEXT = {0: "Destination unreachable: No route", 1: "Destination unreachable: Administratively prohibited",
                     3: "Destination unreachable: Address unreachable", 4: "Destination unreachable: Port unreachable"}
ECHO_REQUEST, ECHO_REPLY, UNREACHABLE, TIME_EXCEEDED = 8, 0, 3, 11  # RFC 792
UNREACHABLE_TEXT = {0: "Destination Net Unreachable", 1: "Destination Host Unreachable",
                    2: "Destination Protocol Unreachable", 3: "Destination Port Unreachable",
                    13: "Communication administratively prohibited"}


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int, size: int) -> bytes:
    payload = bytes(i & 0xFF for i in range(size))
    header = struct.pack("!BBHHH", ECHO_REQUEST, 0, 0, ident, seq)
    return struct.pack("!BBHHH", ECHO_REQUEST, 0, checksum(header + payload), ident, seq) + payload


def parse(datagram: bytes, ident: int) -> tuple[str, int, int, int] | None:
    """(kind, seq, ttl, mtu) of an ICMP message about one of our requests, else None.
    A raw socket hands over the IP header too; an error quotes our request's IP header and first
    8 octets (RFC 792), where its identifier and sequence number are."""
    if len(datagram) < 20:
        return None
    ihl, ttl = (datagram[0] & 0x0F) * 4, datagram[8]
    icmp = datagram[ihl:]
    if len(icmp) < 8:
        return None
    kind, code, _, rest_a, rest_b = struct.unpack("!BBHHH", icmp[:8])
    if kind == ECHO_REPLY:
        return ("reply", rest_b, ttl, 0) if rest_a == ident else None
    if kind in (UNREACHABLE, TIME_EXCEEDED):
        inner = icmp[8:]
        if len(inner) < 20 or inner[9] != socket.IPPROTO_ICMP:
            return None
        quoted = inner[(inner[0] & 0x0F) * 4:]
        if len(quoted) < 8:
            return None
        q_kind, _, _, q_ident, q_seq = struct.unpack("!BBHHH", quoted[:8])
        if q_kind != ECHO_REQUEST or q_ident != ident:
            return None
        if kind == TIME_EXCEEDED:
            return ("Time to live exceeded", q_seq, ttl, 0)
        if code == 4:  # RFC 1191 §4: the next-hop MTU in the low 16 bits
            return ("Frag needed", q_seq, ttl, rest_b)
        return (UNREACHABLE_TEXT.get(code, f"Dest Unreachable, Bad Code: {code}"), q_seq, ttl, 0)
    return None


def echo6_request(ident: int, seq: int, size: int) -> bytes:
    """An ICMPv6 echo request; the kernel fills in the checksum of a raw ICMPv6 socket (RFC 3542 §3.1)."""
    return struct.pack("!BBHHH", ECHO6_REQUEST, 0, 0, ident, seq) + bytes(i & 0xFF for i in range(size))


def parse6(message: bytes, ident: int, hops: int) -> tuple[str, int, int, int] | None:
    """(kind, seq, hop limit, mtu) of an ICMPv6 message about one of our requests, else None.
    A raw ICMPv6 socket hands over the ICMPv6 message alone; an error quotes as much of our
    request as fits, its IPv6 header first (RFC 4443 §2.4)."""
    if len(message) < 8:
        return None
    kind, code, _, rest_a, rest_b = struct.unpack("!BBHHH", message[:8])
    if kind == ECHO6_REPLY:
        return ("reply", rest_b, hops, 0) if rest_a == ident else None
    if kind in (UNREACHABLE6, TOO_BIG6, TIME_EXCEEDED6):
        inner = message[8:]
        if len(inner) < 48 or inner[6] != socket.IPPROTO_ICMPV6:
            return None
        q_kind, _, _, q_ident, q_seq = struct.unpack("!BBHHH", inner[40:48])
        if q_kind != ECHO6_REQUEST or q_ident != ident:
            return None
        if kind == TOO_BIG6:
            return ("Packet too big", q_seq, hops, rest_a << 16 | rest_b)  # RFC 4443 §3.2: the MTU
        if kind == TIME_EXCEEDED6:
            return ("Time exceeded: Hop limit", q_seq, hops, 0)
        return (UNREACHABLE6_TEXT.get(code, f"Destination unreachable: Unknown code {code}"), q_seq, hops, 0)
    return None


def ping(to: str, count: int, interval: float, timeout: float, size: int, df: bool, source: str | None) -> int:
    v6 = ":" in to
    if v6:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    if source:
        try:
            sock.bind((source, 0))
        except OSError as e:
            print(f"ping: bind to {source}: {e.strerror}", flush=True)
            return 2
    if df and v6:
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER, IP_PMTUDISC_DO)  # no fragments from us either
    elif df:
        sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
    ident = os.getpid() & 0xFFFF
    sent: dict[int, float] = {}
    answered: set[int] = set()
    errors = received = 0
    print(f"PING {to} {size}({size + (48 if v6 else 28)}) bytes of data.", flush=True)
    start = time.monotonic()
    next_send, seq = start, 1
    while True:
        now = time.monotonic()
        if seq <= count and now >= next_send:
            try:
                sock.sendto(echo6_request(ident, seq, size) if v6 else echo_request(ident, seq, size), (to, 0))
                sent[seq] = now
            except OSError as e:
                errors += 1
                if e.errno == errno.EMSGSIZE:
                    print(f"ping: local error: message too long, mtu={_route_mtu(to, v6)}", flush=True)
                else:
                    print(f"ping: sendmsg: {e.strerror}", flush=True)
            seq, next_send = seq + 1, next_send + interval
            continue
        open_ = [s for s in sent if s not in answered and now - sent[s] < timeout]
        if seq > count and not open_:
            break
        wake = min([sent[s] + timeout for s in open_] + ([next_send] if seq <= count else []))
        ready, _, _ = select.select([sock], [], [], max(0.0, wake - now))
        if not ready:
            continue
        if v6:
            datagram, ancillary, _, address = sock.recvmsg(65535, socket.CMSG_SPACE(4))
            sender = address[0]
            hops = next((int.from_bytes(data[:4], sys.byteorder) for level, kind, data in ancillary
                         if level == socket.IPPROTO_IPV6 and kind == IPV6_HOPLIMIT), 0)
            length = len(datagram)
        else:
            datagram, (sender, _) = sock.recvfrom(65535)
            length = len(datagram) - (datagram[0] & 0x0F) * 4
        arrived = time.monotonic()
        got = parse6(datagram, ident, hops) if v6 else parse(datagram, ident)
        if got is None or got[1] not in sent or got[1] in answered:
            continue
        kind, n, ttl, mtu = got
        if arrived - sent[n] > timeout:
            continue  # too late: counted as lost, as asked
        answered.add(n)
        if kind == "reply":
            received += 1
            print(f"{length} bytes from {sender}: icmp_seq={n} ttl={ttl} "
                  f"time={(arrived - sent[n]) * 1000:.3g} ms", flush=True)
        else:
            errors += 1
            print(f"From {sender} icmp_seq={n} {kind}" + (f" and DF set (mtu = {mtu})" if kind == "Frag needed" else "")
                  + (f": mtu={mtu}" if kind == "Packet too big" else ""), flush=True)
    transmitted = seq - 1
    loss = 100 - (100 * received // transmitted if transmitted else 0)
    print(f"\n--- {to} ping statistics ---")
    print(f"{transmitted} packets transmitted, {received} received" + (f", +{errors} errors" if errors else "")
          + f", {loss}% packet loss, time {(time.monotonic() - start) * 1000:.0f}ms", flush=True)
    return 0 if received else 1


def _route_mtu(to: str, v6: bool = False) -> str:
    probe = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect((to, 9))
        if v6:
            return str(probe.getsockopt(socket.IPPROTO_IPV6, IPV6_MTU))
        return str(probe.getsockopt(socket.IPPROTO_IP, 14))  # IP_MTU
    except OSError:
        return "?"
    finally:
        probe.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("to")
    p.add_argument("-c", dest="count", type=int, default=3)
    p.add_argument("-i", dest="interval", type=float, default=0.2)
    p.add_argument("-W", dest="timeout", type=float, default=2.0, help="seconds each reply may take")
    p.add_argument("-s", dest="size", type=int, default=56)
    p.add_argument("-M", dest="pmtudisc", choices=["do"], help="do: set DF, never fragment")
    p.add_argument("-I", dest="source")
    a = p.parse_args(argv)
    try:
        return ping(a.to, a.count, a.interval, a.timeout, a.size, a.pmtudisc == "do", a.source)
    except KeyboardInterrupt:
        return 1


if __name__ == "__main__":
    sys.exit(main())
