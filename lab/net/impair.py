"""Delay, jitter, reordering and duplication for a NAT box, since this kernel has no netem.

    python -m lab.net.impair --queue 0 --delay-ms 50 --jitter-ms 10 --reorder 0.1 --duplicate 0.05

Runs inside the box's namespace; iptables sends forwarded packets to NFQUEUE `--queue`
(lab.net.nodes.NatBox puts the rule there, with --queue-bypass so that packets flow
unimpaired if this process is gone). Each packet is held for delay +- jitter and then
accepted; with probability `reorder` it is held one delay longer, so later packets overtake
it; with probability `duplicate` a copy is sent again through a raw socket. Prints "ready"
on stderr once bound, and counts on stderr when it ends (SIGTERM).
"""
from __future__ import annotations

import argparse
import heapq
import random
import select
import signal
import socket
import sys
import time
from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from netfilterqueue import Packet


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.net.impair")
    parser.add_argument("--queue", type=int, default=0)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument("--reorder", type=float, default=0.0)
    parser.add_argument("--duplicate", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        from netfilterqueue import NetfilterQueue
    except ImportError:
        print("the netfilterqueue package is missing: run scripts/setup.sh", file=sys.stderr, flush=True)
        return 1
    rng = random.Random(args.seed)
    held: list[tuple[float, int, Packet]] = []
    counts: Counter[str] = Counter()
    order = 0
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    base = args.delay_ms / 1000
    jitter = args.jitter_ms / 1000

    def on_packet(packet: Packet) -> None:
        nonlocal order
        counts["packets"] += 1
        wait = max(0.0, base + rng.uniform(-jitter, jitter))
        if args.reorder and rng.random() < args.reorder:
            wait += max(base, 0.010)
            counts["reordered"] += 1
        if args.duplicate and rng.random() < args.duplicate:
            payload = packet.get_payload()
            try:
                raw.sendto(payload, (socket.inet_ntoa(payload[16:20]), 0))
                counts["duplicated"] += 1
            except OSError:
                counts["duplicate_failed"] += 1
        if wait <= 0:
            packet.accept()
            return
        packet.retain()
        order += 1
        heapq.heappush(held, (time.monotonic() + wait, order, packet))

    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    queue = NetfilterQueue()
    try:
        queue.bind(args.queue, on_packet, max_len=4096)
    except OSError as err:
        print(f"cannot bind NFQUEUE {args.queue}: {err}", file=sys.stderr, flush=True)
        return 1
    fd = queue.get_fd()
    print("ready", file=sys.stderr, flush=True)
    try:
        while not stopping:
            timeout = max(0.0, held[0][0] - time.monotonic()) if held else 0.5
            try:
                readable, _, _ = select.select([fd], [], [], timeout)
            except InterruptedError:
                continue
            if readable:
                queue.run(block=False)
            now = time.monotonic()
            while held and held[0][0] <= now:
                _, _, packet = heapq.heappop(held)
                packet.accept()
    finally:
        while held:
            heapq.heappop(held)[2].accept()
        queue.unbind()
        print(" ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "packets=0", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
