"""Running our own gateway daemon (`ipsec-lab daemon`) inside a Mininet host, the
counterpart of lab.net.strongswan for charon; both are lab.net.peers.Peer."""
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

from .forkserver import ForkServerError, signal_name
from .peers import ChildSaInfo, DaemonProcess, IkeSaInfo, Peer, PeerError, PeerNode

_RUNNING: weakref.WeakSet[OurGateway] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for gateway in list(_RUNNING):
        gateway.stop()


class GatewayProcessError(PeerError):
    """The daemon did not start or answer; the message carries the end of its log."""


class OurGateway(Peer):
    """`ipsec-lab daemon` in `node`, with its files under `workdir`: swanctl.conf (and the
    swanctl folders next to it), control socket, log, trace, exported keys."""

    software = "ours"

    def __init__(self, node: PeerNode, workdir: str | Path, name: str | None = None, *, export_keys: bool = True,
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
        self.process: DaemonProcess | None = None  # forked by the lab's fork server, or a Popen
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

    def set_options(self, options: tuple[str, ...]) -> None:
        self.extra_args = tuple(options)

    def trace_file(self) -> Path:
        return self.trace_path

    def key_tables(self) -> dict[str, list[str]]:
        """What the daemon exported (--export-keys)."""
        tables = {}
        for table in ("ikev2_decryption_table", "esp_sa"):
            source = self.keys_dir / table
            if source.exists():
                tables[table] = source.read_text().splitlines()
        return tables

    def shell_exports(self) -> dict[str, str]:
        return {"IPSEC_LAB_CONTROL": str(self.control_path)}

    def start(self) -> OurGateway:
        """Start the daemon and wait until its control socket answers."""
        return self.launch().wait_started()

    def launch(self) -> OurGateway:
        """Start the daemon without waiting (many gateways start side by side; then wait_started)."""
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
        cwd = str(Path(__file__).resolve().parents[2])
        self.process = None
        with open(self.log_path, "ab") as log:
            # in a lab: forked from its fork server (lab.net.forkserver), the daemon's imports shared
            fork = getattr(self.node, "fork_process", None)
            if fork is not None:
                try:
                    self.process = fork(argv, stdout=log, env=env, cwd=cwd)
                except ForkServerError as err:
                    log.write(f"ipsec-lab: {err}; this gateway starts as a fresh process\n".encode())
                    log.flush()
            if self.process is None:
                start = getattr(self.node, "start_process", None) or self.node.popen
                self.process = start(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                     cwd=cwd)
        self.launched = time.monotonic()
        _RUNNING.add(self)
        return self

    def wait_started(self) -> OurGateway:
        assert self.process is not None, "launch() first"
        deadline = self.launched + self.start_timeout
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
        """One control request; `timeout` is how long the daemon may take (initiate waits that
        long for the SA) and, with a margin, how long we wait for its answer."""
        with self._client(timeout + 5) as client:
            return client.request(cmd=action, timeout=timeout, **args)

    def _client(self, timeout: float) -> ControlClient:
        """A connection to the daemon's control socket; if the daemon has ended, the error says how
        (its exit status and the last line of its log) rather than only that nothing listens."""
        try:
            return ControlClient(str(self.control_path), timeout=timeout)
        except ConnectionError:
            process = self.process
            code = process.poll() if process is not None else None
            if code is None:
                raise
            how = f"killed by {signal_name(-code)}" if code < 0 else f"exit status {code}"
            last = self.log_tail(1).strip()
            raise ConnectionError(f"the ipsec-lab daemon on {self.name} has ended ({how})"
                                  + (f"; its log ends: {last}" if last else "")) from None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def reload(self) -> None:
        """Our daemon reads swanctl.conf when it starts: a reload is a restart."""
        self.stop()
        self.start()

    def _command(self, action: str, timeout: float = 30.0, **args: Any) -> dict[str, Any]:
        request = {k: v for k, v in args.items() if v is not None}
        if "wait" in request:
            request["timeout"] = request.pop("wait")
        with self._client(timeout + 5) as client:
            result = client.request(cmd=action, **request)
        if not result.get("ok"):
            raise PeerError(f"ipsec-lab ctl {action} on {self.name}: {result.get('error', 'failed')}")
        return result

    def initiate(self, child: str | None = None, ike: str | None = None, timeout: float = 20,
                 reuse: bool = False) -> dict[str, Any]:
        # the daemon waits `wait` seconds for the outcome; the control socket a little longer
        extra = {"reuse": True} if reuse else {}
        return self._command("initiate", timeout=timeout, ike=ike, child=child, wait=timeout, **extra)

    def terminate(self, ike: str | None = None, child: str | None = None) -> dict[str, Any]:
        return self._command("terminate", ike=ike, child=child)

    def rekey(self, child: str | None = None, ike: str | None = None) -> dict[str, Any]:
        return self._command("rekey", ike=ike, child=child)

    def raw_sas(self) -> list[dict[str, Any]]:
        """`ipsec-lab ctl list-sas --json` as it is."""
        return self.ctl("list-sas")["sas"]

    def list_sas(self) -> list[IkeSaInfo]:
        return [_ike_info(sa) for sa in self.raw_sas()]

    def counters(self) -> dict[str, int]:
        """The daemon's counters (`ctl stats`): IKE drops as "drop:<reason>", the data plane's as
        "esp:<name>" and its ESP/AH drops as "esp-drop:<reason>" (replay, icv, ...), the TCP
        transport's (RFC 9329) as "tcp:<name>"."""
        stats = self.ctl("stats")["stats"]
        out = dict(stats["counters"])
        out.update({f"drop:{k}": v for k, v in stats["drops"].items()})
        dataplane = stats.get("dataplane") or {}
        for key, value in dataplane.items():
            if isinstance(value, int) and not isinstance(value, bool):
                out[f"esp:{key}"] = value
        for key, value in (dataplane.get("drops") or {}).items():
            out[f"esp-drop:{key}"] = value  # ESP/AH packets dropped, by reason (replay, icv, ...)
        for policy in dataplane.get("policies") or []:
            if policy.get("name"):
                out[f"policy:{policy['name']}"] = policy.get("hits", 0)
        for key, value in (stats.get("tcp") or {}).items():
            if isinstance(value, int) and not isinstance(value, bool):
                out[f"tcp:{key}"] = value
        return out

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

    def __enter__(self) -> OurGateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def _ike_info(sa: dict[str, Any]) -> IkeSaInfo:
    local, remote = _host_port(sa["local"]), _host_port(sa["remote"])
    children = []
    for child in sa["children"]:
        traffic = child.get("traffic") or {}
        children.append(ChildSaInfo(
            name=child["name"], unique_id=child["id"], state=child["state"], protocol=child.get("protocol", "ESP"),
            mode=child["mode"].upper(), encap=bool(child["encap"]), spi_in=child["spi_in"], spi_out=child["spi_out"],
            algorithms=child["algorithms"], local_ts=tuple(child["local_ts"]), remote_ts=tuple(child["remote_ts"]),
            bytes_in=traffic.get("bytes_in", 0), bytes_out=traffic.get("bytes_out", 0),
            packets_in=traffic.get("packets_in", 0), packets_out=traffic.get("packets_out", 0)))
    return IkeSaInfo(
        name=sa["name"], unique_id=sa["id"], state=sa["state"], initiator=sa["initiator"], spi_i=sa["spi_i"],
        spi_r=sa["spi_r"], local_host=local[0], local_port=local[1], remote_host=remote[0], remote_port=remote[1],
        local_id=sa["local_id"], remote_id=sa["remote_id"] or "", nat_local=sa["nat"]["local"],
        nat_remote=sa["nat"]["remote"], algorithms=sa["algorithms"] or "",
        local_vips=tuple(sa.get("virtual_ips", ())), remote_vips=tuple(sa.get("assigned_ips", ())),
        children=tuple(children))
