"""tcpdump inside a Mininet host, writing a complete pcap file."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from .peers import PeerNode

# tcpdump's kernel buffer, in KiB (-B). With --immediate-mode libpcap uses TPACKET_V2, whose ring
# has one fixed-size slot per packet, sized for the largest packet the interface may hand over (with
# a veth's segmentation offloads, far more than its MTU): the default 2 MiB holds few of them, and a
# bulk transfer lost a quarter to a third (net2net: 27,000-41,000 of 108,000-117,000 packets,
# "dropped by kernel"; the ring is kernel memory, 32 MiB per tap while it runs).
# With 32 MiB none were lost in the same runs, also with the machine loaded; 16 MiB still lost 1 %.
BUFFER_KIB = 32768


class Capture:
    """`tcpdump -i INTF -w PATH FILTER` in `node`. `start()` returns once tcpdump listens;
    `stop()` waits until the file stops growing, then ends tcpdump with SIGINT so that the
    last packets are written."""

    def __init__(self, node: PeerNode, intf: str, path: str | Path, bpf: str = "", err_path: str | Path | None = None) -> None:
        self.node, self.intf, self.path, self.bpf = node, intf, Path(path), bpf
        self.err_path = Path(err_path) if err_path is not None else self.path.with_suffix(".tcpdump.txt")
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> Capture:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.err_path.parent.mkdir(parents=True, exist_ok=True)
        argv = ["tcpdump", "-i", self.intf, "-n", "--immediate-mode", "-U", "-B", str(BUFFER_KIB), "-Z", "root",
                "-w", str(self.path)]
        if self.bpf:
            argv.append(self.bpf)
        with open(self.err_path, "wb") as err:
            self.process = self.node.popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + timeout
        while "listening on" not in self.err_path.read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"tcpdump on {self.intf} did not start: {self.err_path.read_text().strip()}")
            time.sleep(0.05)
        return self

    def _settle(self, quiet: float = 0.3, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        size, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            now = self.path.stat().st_size if self.path.exists() else 0
            if now != size:
                size, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return
            time.sleep(0.05)

    def flush(self) -> None:
        """Wait briefly until what tcpdump saw is in the file (it writes each packet, -U)."""
        if self.process is not None:
            self._settle(quiet=0.15, timeout=1.0)

    def stop(self, timeout: float = 10.0) -> str:
        """Stop tcpdump; returns what it printed (its packet counts)."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            self._settle()
            os.kill(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        return self.err_path.read_text(errors="replace") if self.err_path.exists() else ""
