"""A TCP transfer checked end to end by hash, for scenario steps (`transfer: {bytes: 10M}`).

    python -m lab.net.transfer receive --bind ADDR --port P          (prints "listening", then the result)
    python -m lab.net.transfer send --to ADDR --port P --bytes N --seed S [--rate-mbps R]

The sender streams N pseudo-random bytes (from the seed) and prints their SHA-256; the
receiver prints the SHA-256 and count of what arrived. Both print one JSON line at the end.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import socket
import sys
import time

CHUNK = 64 * 1024


def _receive(bind: str, port: int, timeout: float) -> dict:
    server = socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((bind, port))
    server.listen(1)
    server.settimeout(timeout)
    print("listening", flush=True)
    conn, peer = server.accept()
    conn.settimeout(timeout)
    digest, count = hashlib.sha256(), 0
    started = time.monotonic()
    while True:
        data = conn.recv(CHUNK)
        if not data:
            break
        digest.update(data)
        count += len(data)
    conn.close()
    server.close()
    return {"bytes": count, "sha256": digest.hexdigest(), "peer": peer[0], "seconds": time.monotonic() - started}


def _send(to: str, port: int, size: int, seed: int, timeout: float, rate_mbps: float = 0.0) -> dict:
    rng = random.Random(seed)
    digest = hashlib.sha256()
    sock = socket.create_connection((to, port), timeout=timeout)
    sent = 0
    started = time.monotonic()
    while sent < size:
        chunk = rng.randbytes(min(CHUNK, size - sent))
        sock.sendall(chunk)
        digest.update(chunk)
        sent += len(chunk)
        if rate_mbps:
            ahead = sent * 8 / (rate_mbps * 1e6) - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    sock.shutdown(socket.SHUT_WR)
    sock.recv(1)
    sock.close()
    return {"bytes": sent, "sha256": digest.hexdigest(), "seconds": time.monotonic() - started}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.net.transfer")
    parser.add_argument("mode", choices=["send", "receive"])
    parser.add_argument("--to", default="")
    parser.add_argument("--bind", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=5201)
    parser.add_argument("--bytes", type=int, default=1 << 20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--rate-mbps", type=float, default=0.0, help="pace the sender (0: as fast as it goes)")
    args = parser.parse_args(argv)
    try:
        if args.mode == "receive":
            result = _receive(args.bind, args.port, args.timeout)
        else:
            result = _send(args.to, args.port, args.bytes, args.seed, args.timeout, args.rate_mbps)
    except OSError as err:
        print(json.dumps({"error": f"{type(err).__name__}: {err}"}), flush=True)
        return 1
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
