"""Running our own gateway daemon (`ipsec-lab daemon`) inside a Mininet host, the
counterpart of lab.net.strongswan for charon."""
from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import time
import weakref
from pathlib import Path
from typing import Any

from lab.daemon.control import ControlClient

_RUNNING: "weakref.WeakSet[OurGateway]" = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for gateway in list(_RUNNING):
        gateway.stop()


class GatewayProcessError(RuntimeError):
    """The daemon did not start or answer; the message carries the end of its log."""


class OurGateway:
    """`ipsec-lab daemon` in `node`, with its files under `workdir`: swanctl.conf (and the
    swanctl folders next to it), control socket, log, trace, exported keys."""

    def __init__(self, node: Any, workdir: str | Path, name: str | None = None, *, export_keys: bool = True,
                 start_timeout: float = 15.0, retransmit_timeout: float | None = None,
                 retransmit_tries: int | None = None, extra_args: tuple[str, ...] = ()) -> None:
        self.extra_args = tuple(extra_args)
        self.node = node
        self.retransmit_timeout = retransmit_timeout
        self.retransmit_tries = retransmit_tries
        self.workdir = Path(workdir)
        self.name = name or str(node)
        self.export_keys = export_keys
        self.start_timeout = start_timeout
        self.process: subprocess.Popen | None = None
        self.workdir.mkdir(parents=True, exist_ok=True)
        for sub in ("x509", "x509ca", "private"):
            (self.swanctl_dir / sub).mkdir(parents=True, exist_ok=True)

    swanctl_dir = property(lambda self: self.workdir / "swanctl")
    config_path = property(lambda self: self.swanctl_dir / "swanctl.conf")
    control_path = property(lambda self: self.workdir / "gateway.ctl")
    log_path = property(lambda self: self.workdir / "gateway.log")
    trace_path = property(lambda self: self.workdir / "trace.jsonl")
    keys_dir = property(lambda self: self.workdir / "keys")

    def write_config(self, swanctl_conf: str) -> None:
        self.config_path.write_text(swanctl_conf)

    def start(self) -> "OurGateway":
        if self.process is not None and self.process.poll() is None:
            return self
        argv = [sys.executable, "-m", "lab.cli", "daemon", "--config", str(self.config_path),
                "--control", str(self.control_path), "--trace", str(self.trace_path)]
        if self.export_keys:
            argv += ["--export-keys", str(self.keys_dir)]
        if self.retransmit_timeout is not None:
            argv += ["--retransmit-timeout", str(self.retransmit_timeout)]
        if self.retransmit_tries is not None:
            argv += ["--retransmit-tries", str(self.retransmit_tries)]
        argv += self.extra_args
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(self.log_path, "ab") as log:
            self.process = self.node.popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                           env=env, cwd=str(Path(__file__).resolve().parents[2]))
        _RUNNING.add(self)
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.process.poll() is not None:
                raise GatewayProcessError(f"ipsec-lab daemon on {self.name} exited with {self.process.returncode}:\n"
                                          + self.log_tail())
            if self.control_path.exists():
                try:
                    self.ctl("stats")
                    return self
                except (ConnectionError, OSError):
                    pass
            if time.monotonic() > deadline:
                self.stop()
                raise GatewayProcessError(f"ipsec-lab daemon on {self.name} did not answer within "
                                          f"{self.start_timeout:g} s:\n" + self.log_tail())
            time.sleep(0.05)

    def ctl(self, action: str, timeout: float = 30.0, **args: Any) -> dict[str, Any]:
        with ControlClient(str(self.control_path), timeout=timeout + 5) as client:
            return client.request(cmd=action, **args)

    def list_sas(self) -> list[dict[str, Any]]:
        return self.ctl("list-sas")["sas"]

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.process = self.process, None
        _RUNNING.discard(self)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def __enter__(self) -> "OurGateway":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
