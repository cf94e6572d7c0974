"""Running a scenario: build its topology, start its gateways and taps, run its steps in order,
evaluate its checks (each retried until its timeout), tear everything down, and leave a run
folder that every later tool reads:

    DIR/report.md        pass/fail table, each check with what it saw, links to files and figures
    DIR/result.json      the same, for programs
    DIR/topology.json    nodes, links, addresses, NAT boxes, taps
    DIR/trace.jsonl      every gateway of ours, one stream ordered by wall-clock time
    DIR/captures/*.pcap  one per tap (both sides of every NAT box by default)
    DIR/keys/            Wireshark's ikev2_decryption_table and esp_sa (also keys/wireshark/)
    DIR/logs/            our daemons' logs, charon's logs (millisecond timestamps)
    DIR/nodes/<node>/    each gateway's working files (swanctl.conf, sockets while it runs)
    DIR/figures/         drawn later from the files above (lab.viz)

`run(scenario, out)` returns a RunResult; passed iff every step went as expected and every
check held. Ctrl-C and SIGTERM end the run with total teardown (RunInterrupted).
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import charon_keys, report
from .lab import Lab, LabError
from .nodes import NatBox, NodeError
from .peers import IkeSaInfo, Peer, PeerError, describe, make_peer
from .scenario import Check, Scenario, Step, owner_of

REPO = Path(__file__).resolve().parents[2]
MAX_SOCKET_PATH = 100


class StepFailed(Exception):
    """A step did not do what it should; the message says what was seen."""


class RunInterrupted(BaseException):
    """Ctrl-C (SIGINT) or SIGTERM during a run; `signal` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass
class StepResult:
    index: int
    kind: str
    text: str
    expect: str
    ok: bool
    detail: str
    started: float
    ended: float
    skipped: bool = False
    line: int = 0


@dataclass
class CheckResult:
    index: int
    text: str
    ok: bool
    saw: str
    line: int
    tries: int = 1
    seconds: float = 0.0
    at_step: int | None = None


@dataclass
class RunResult:
    scenario: str
    title: str
    folder: str
    out: str
    passed: bool
    started: float
    duration: float = 0.0
    steps: list[StepResult] = field(default_factory=list)
    checks: list[CheckResult] = field(default_factory=list)
    nodes: dict[str, str] = field(default_factory=dict)
    interrupted: str | None = None
    error: str | None = None
    teardown: list[str] = field(default_factory=list)
    files: dict[str, list[str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Progress:
    """What the trainer sees while a scenario runs: one line per step with its time; a live
    spinner with the elapsed time on a terminal (rich)."""

    def __init__(self, stream=None, live: bool | None = None) -> None:
        from rich.console import Console

        self.console = Console(file=stream or sys.stderr, highlight=False, soft_wrap=True)
        self.live = self.console.is_terminal if live is None else live
        self.started = time.monotonic()

    def line(self, text: str) -> None:
        self.console.print(text, markup=False)

    def begin(self, label: str) -> Callable[[bool, str], None]:
        started = time.monotonic()
        status = None
        if self.live:
            status = self.console.status(f"{label}  ...", spinner="dots")
            status.start()
            stop = threading.Event()

            def tick() -> None:
                while not stop.wait(0.5):
                    status.update(f"{label}  ({time.monotonic() - started:.1f} s)")

            ticker = threading.Thread(target=tick, daemon=True)
            ticker.start()

        def end(ok: bool, detail: str) -> None:
            if status is not None:
                stop.set()
                status.stop()
            mark = "ok " if ok else "FAIL"
            tail = f" - {detail}" if detail else ""
            self.line(f"  [{mark}] {label}{tail}  ({time.monotonic() - started:.1f} s)")

        return end


class _Signals:
    """SIGINT and SIGTERM raise RunInterrupted in the main thread while the run goes on."""

    def __enter__(self) -> "_Signals":
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.previous[signum] = signal.signal(signum, self._raise)
        return self

    @staticmethod
    def _raise(signum: int, _frame: Any) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise RunInterrupted(signum)

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


class Runner:
    def __init__(self, scenario: Scenario, out: str | Path, progress: Progress | None = None,
                 say: Callable[[str], None] | None = None, keep_open: Callable[["Runner"], None] | None = None,
                 after_step: Callable[["Runner", Step, "StepResult"], None] | None = None) -> None:
        self.scenario = scenario
        self.out = Path(out).absolute()
        self.progress = progress or Progress()
        self.say = say or self.progress.line
        self.keep_open = keep_open
        self.after_step = after_step  # e.g. narration: it may read the peers' logs and traces so far
        self.lab: Lab | None = None
        self.peers: dict[str, Peer] = {}
        self.snapshots: dict[str, dict[str, list[IkeSaInfo]]] = {}
        self.result = RunResult(scenario=scenario.name, title=scenario.title, folder=str(scenario.folder),
                                out=str(self.out), passed=False, started=time.time(), nodes=dict(scenario.gateways))
        self.check_index = 0
        self.failed_step = False
        self.background: dict[str, tuple[threading.Thread, dict[str, Any]]] = {}
        self.charon_sas: dict[str, dict[int, dict[str, str]]] = {}  # node -> IKE SA number -> VICI fields

    # ------------------------------------------------------------ the run

    def run(self) -> RunResult:
        _prepare_out(self.out)
        t0 = time.monotonic()
        self.say(f"== {self.scenario.name}: {self.scenario.title}")
        try:
            with _Signals():
                try:
                    self._build()
                    self._run_steps()
                    self._run_checks(self.scenario.checks, final=True)
                    if self.keep_open is not None:
                        self.keep_open(self)
                finally:
                    self._teardown()
        except RunInterrupted as err:
            self.result.interrupted = str(err)
            self._teardown()
        except (LabError, PeerError, NodeError, OSError) as err:
            self.result.error = str(err)
            self._teardown()
        self.result.duration = round(time.monotonic() - t0, 1)
        self.result.passed = (not self.result.interrupted and not self.result.error
                              and all(s.ok for s in self.result.steps) and all(c.ok for c in self.result.checks)
                              and not self.result.teardown)
        self._write_folder()
        return self.result

    def _build(self) -> None:
        scenario = self.scenario
        end = self.progress.begin(f"build topology {scenario.topology_name} {_params(scenario.params)}")
        try:
            self.lab = Lab(scenario.build_topology(), self.out, scenario.name, say=self.say)
            self.lab.start()
        except BaseException as err:
            end(False, str(err) if not isinstance(err, RunInterrupted) else "interrupted")
            raise
        self.lab.software.update(scenario.gateways)
        for node, software in scenario.gateways.items():
            workdir = self.out / "nodes" / node
            if len(str(workdir / "charon.vici")) > MAX_SOCKET_PATH:
                # a Unix socket path has at most 107 bytes; not /run: gateways have a private one
                workdir = Path(tempfile.gettempdir()) / f"ipsec-lab-{os.getpid()}" / scenario.name / node
            options = dict(scenario.gateway_options.get(node, {}))
            if software == "strongswan":
                options = {"export_keys": True}
            peer = make_peer(software, self.lab.node(node), workdir, node, **options)
            peer.load(scenario.host_folder(node))
            self.peers[node] = peer
            self.lab.on_stop(peer.stop)
        self._shell_environment()
        for tap in scenario.taps:
            self.lab.tap(tap.name, tap.node, tap.intf, self.out / "captures" / f"{tap.name}.pcap", tap.filter,
                         self.out / "logs" / f"tap-{tap.name}.txt")
        end(True, f"{len(self.lab.nodes)} nodes, taps: {', '.join(t.name for t in scenario.taps) or 'none'}")

    def _shell_environment(self) -> None:
        """So that `gwa ipsec-lab ctl list-sas` and `gwb swanctl --list-sas` work in the
        Mininet CLI (ipsec-lab up)."""
        assert self.lab is not None
        path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
        for name, node in self.lab.nodes.items():
            exports = [f"PATH={shlex.quote(path)}"]
            peer = self.peers.get(name)
            if peer is not None and peer.software == "ours":
                exports.append(f"IPSEC_LAB_CONTROL={shlex.quote(str(peer.control_path))}")
            elif peer is not None:
                exports += [f"STRONGSWAN_CONF={shlex.quote(str(peer.conf_path))}",
                            f"SWANCTL_DIR={shlex.quote(str(peer.swanctl_dir))}"]
            node.cmd("export " + " ".join(exports))

    def _remember_charon_sas(self) -> None:
        """The IKE SPIs and algorithms of strongSwan's SAs so far (the log has their keys, not
        their SPIs); read after every step and before teardown."""
        for node, peer in self.peers.items():
            if peer.software != "strongswan" or not peer.running:
                continue
            try:
                sas = peer.raw_sas()  # type: ignore[attr-defined]
            except (PeerError, OSError):
                continue
            known = self.charon_sas.setdefault(node, {})
            for sa in sas:
                if sa.get("uniqueid", "").isdigit() and sa.get("responder-spi", "0" * 16) != "0" * 16:
                    known[int(sa["uniqueid"])] = {k: sa.get(k, "") for k in (
                        "initiator-spi", "responder-spi", "encr-alg", "encr-keysize", "integ-alg")}

    def _key_tables(self) -> dict[str, list[str]]:
        """Wireshark's two tables for every SA of the run so far: what our daemons exported and
        what charon's logs hold (lab.net.charon_keys)."""
        tables: dict[str, list[str]] = {"ikev2_decryption_table": [], "esp_sa": []}

        def add(table: str, lines: list[str]) -> None:
            tables[table] += [line for line in lines if line and line not in tables[table]]

        for node, peer in self.peers.items():
            if peer.software == "ours":
                for table in tables:
                    source = Path(peer.keys_dir) / table  # type: ignore[attr-defined]
                    if source.exists():
                        add(table, source.read_text().splitlines())
            elif Path(peer.log_path).exists():
                found = charon_keys.parse(Path(peer.log_path).read_text(errors="replace"))
                add("ikev2_decryption_table", charon_keys.ike_lines(found, self.charon_sas.get(node, {})))
                add("esp_sa", charon_keys.esp_lines(found))
        return tables

    def _teardown(self) -> None:
        if self.lab is None:
            return
        self._remember_charon_sas()
        lab, self.lab = self.lab, None
        end = self.progress.begin("tear down (daemons, taps, namespaces)")
        problems = lab.stop()
        self.result.teardown = problems
        end(not problems, "; ".join(problems) or "nothing left behind")

    # ------------------------------------------------------------ steps

    def _run_steps(self) -> None:
        total = len(self.scenario.steps)
        for step in self.scenario.steps:
            label = f"[{step.index}/{total}] {step.text}"
            if self.failed_step:
                self.result.steps.append(StepResult(step.index, step.kind, step.text, step.expect, False,
                                                    "skipped: an earlier step failed", time.time(), time.time(),
                                                    skipped=True, line=step.line))
                self.progress.line(f"  [skip] {label}")
                continue
            end = self.progress.begin(label)
            started = time.time()
            try:
                detail = self._step(step) or ""
                failed, reason = False, detail
            except (StepFailed, PeerError, NodeError, LabError, subprocess.TimeoutExpired, OSError) as err:
                failed, reason = True, str(err).strip() or type(err).__name__
            except RunInterrupted:
                end(False, "interrupted")
                raise
            ok = failed == (step.expect == "fail")
            if step.args.get("background"):
                ok, detail = not failed, reason  # its outcome is judged where it is joined
            elif step.expect == "fail":
                detail = f"failed as expected: {reason}" if failed else f"should have failed but worked: {reason}"
            else:
                detail = reason
            end(ok, _short(detail))
            result = StepResult(step.index, step.kind, step.text, step.expect, ok, detail, started, time.time(),
                                line=step.line)
            self.result.steps.append(result)
            if self.after_step is not None:
                self.after_step(self, step, result)
            if step.name:
                self.snapshots[step.name] = {n: self._sas(n) for n in self.peers}
            self._remember_charon_sas()
            if not ok:
                self.failed_step = True

    def _step(self, step: Step) -> str:
        a = step.args
        lab = self.lab
        assert lab is not None
        kind = step.kind
        if a.get("background"):
            box: dict[str, Any] = {"step": step}

            def work() -> None:
                try:
                    box["detail"] = {"ping": self._ping, "iperf3": self._iperf3, "transfer": self._transfer}[kind](a)
                except (StepFailed, PeerError, NodeError, LabError, OSError, subprocess.TimeoutExpired) as err:
                    box["error"] = str(err).strip()
            thread = threading.Thread(target=work, name=f"step-{step.name}", daemon=True)
            self.background[step.name] = (thread, box)
            thread.start()
            return f"started in the background (joined by name '{step.name}')"
        if kind == "start":
            for node in a["nodes"]:
                self.peers[node].start()
            return f"started {', '.join(f'{n} ({self.peers[n].software})' for n in a['nodes'])}"
        if kind == "stop":
            for node in a["nodes"]:
                self.peers[node].stop()
            return "stopped"
        if kind == "kill":
            for node in a["nodes"]:
                _kill(self.peers[node])
            return "killed without a chance to say goodbye"
        if kind == "restart":
            for node in a["nodes"]:
                peer = self.peers[node]
                peer.stop()
                if "options" in a:
                    peer.extra_args = tuple(a["options"])  # type: ignore[attr-defined]
                peer.start()
            return "restarted" + (f" with {' '.join(a['options'])}" if a.get("options") else "")
        if kind == "load":
            peer = self.peers[a["node"]]
            peer.write_config(Path(a["file"]).read_text())
            if peer.running:
                peer.reload()
            return f"{a['node']} now runs {Path(a['file']).name}"
        if kind == "set":
            knobs = {k: v for k, v in a.items() if k != "node"}
            lab.node(a["node"]).set(**knobs)
            return ", ".join(f"{k} = {'off' if v is None else v}" for k, v in knobs.items())
        if kind == "join":
            return self._join(a["step"])
        if kind == "initiate":
            peer = self.peers[a["node"]]
            peer.initiate(child=a.get("child"), ike=a.get("ike"), timeout=float(a.get("timeout", 20)))
            sas = self._sas(a["node"])
            return describe([sa for sa in sas if sa.state == "ESTABLISHED"]) if sas else "up"
        if kind == "terminate":
            self.peers[a["node"]].terminate(ike=a.get("ike"), child=a.get("child"))
            return "deleted"
        if kind == "rekey":
            return self._rekey(a) if len(a["nodes"]) == 1 else self._rekey_together(a)
        if kind == "ping":
            return self._ping(a)
        if kind == "iperf3":
            return self._iperf3(a)
        if kind == "transfer":
            return self._transfer(a)
        if kind == "wait":
            time.sleep(float(a["seconds"]))
            return ""
        if kind == "nat":
            box = lab.node(a["node"])
            assert isinstance(box, NatBox)
            knobs = {k: v for k, v in a.items() if k not in ("node", "rebind", "reboot")}
            if knobs:
                box.set(**knobs)
            if a.get("rebind"):
                box.rebind()
                return "mappings dropped; flows get new source ports"
            if a.get("reboot"):
                box.reboot()
                return "every mapping dropped"
            return ", ".join(f"{k} = {v}" for k, v in knobs.items())
        if kind == "mtu":
            lab.node(a["node"]).set_mtu(a["intf"], int(a["mtu"]))
            return ""
        if kind == "run":
            return self._run_command(a)
        if kind == "check":
            result = self._check(a["check"], at_step=step.index)
            if not result.ok:
                raise StepFailed(result.saw)
            return result.saw
        raise StepFailed(f"unknown step {kind}")

    def _sas(self, node: str) -> list[IkeSaInfo]:
        peer = self.peers[node]
        if not peer.running:
            return []
        try:
            return peer.list_sas()
        except (PeerError, OSError, ConnectionError):
            return []

    def _rekey_together(self, a: dict[str, Any]) -> str:
        """Both ends rekey at once (RFC 7296 §2.8.1): each must end with exactly one new SA."""
        child, ike = a.get("child"), a.get("ike")
        timeout = float(a.get("timeout", 15))
        before = {node: self._sas(node) for node in a["nodes"]}
        for node in a["nodes"]:
            self.peers[node].rekey(child=child, ike=ike)
        seen = []
        for node in a["nodes"]:
            if child:
                old = {c.spi_in for sa in before[node] for c in sa.children if c.name == child}

                def done(sas: list[IkeSaInfo], old=old) -> bool:
                    now = [c for sa in sas for c in sa.children if c.name == child and c.state == "INSTALLED"]
                    return len(now) == 1 and now[0].spi_in not in old
                sas = self.peers[node].wait_for(done, timeout, f"one CHILD_SA {child} with new SPIs")
                seen.append(f"{node}: {child} {' '.join(c.spi_in for sa in sas for c in sa.children if c.state == 'INSTALLED')}")
            else:
                old_spis = {(sa.spi_i, sa.spi_r) for sa in before[node]}

                def ike_done(sas: list[IkeSaInfo], old_spis=old_spis) -> bool:
                    now = [sa for sa in sas if sa.name == ike and sa.state == "ESTABLISHED"]
                    return len(now) == 1 and (now[0].spi_i, now[0].spi_r) not in old_spis
                sas = self.peers[node].wait_for(ike_done, timeout, f"one IKE SA {ike} with new SPIs")
                seen.append(f"{node}: {ike} {sas[0].spi_i}/{sas[0].spi_r}")
        return "; ".join(seen)

    def _join(self, name: str) -> str:
        thread, box = self.background.pop(name)
        thread.join()
        step = box["step"]
        if box.get("error") is not None:
            failed, reason = True, box["error"]
        else:
            failed, reason = False, box.get("detail", "")
        if failed == (step.expect == "fail"):
            return (f"'{name}': failed as expected: {reason}" if failed else f"'{name}': {reason}")
        raise StepFailed(f"'{name}' should have failed but worked: {reason}" if not failed else f"'{name}': {reason}")

    def _rekey(self, a: dict[str, Any]) -> str:
        node, child, ike = a["nodes"][0], a.get("child"), a.get("ike")
        before = self._sas(node)
        timeout = float(a.get("timeout", 15))
        if child:
            old = {c.spi_in for sa in before for c in sa.children if c.name == child and c.state == "INSTALLED"}
            if not old:
                raise StepFailed(f"{node} has no INSTALLED CHILD_SA {child} to rekey ({describe(before)})")
            self.peers[node].rekey(child=child)

            def done(sas: list[IkeSaInfo]) -> bool:
                now = {c.spi_in for sa in sas for c in sa.children if c.name == child and c.state == "INSTALLED"}
                return bool(now) and not now & old
            sas = self.peers[node].wait_for(done, timeout, f"CHILD_SA {child} with new SPIs")
            new = [c for sa in sas for c in sa.children if c.name == child and c.state == "INSTALLED"]
            return f"{child}: {', '.join(sorted(old))} -> {', '.join(c.spi_in for c in new)}"
        old_ike = {(sa.spi_i, sa.spi_r) for sa in before if sa.name == ike and sa.state == "ESTABLISHED"}
        if not old_ike:
            raise StepFailed(f"{node} has no ESTABLISHED IKE SA {ike} to rekey ({describe(before)})")
        self.peers[node].rekey(ike=ike)

        def ike_done(sas: list[IkeSaInfo]) -> bool:
            now = {(sa.spi_i, sa.spi_r) for sa in sas if sa.name == ike and sa.state == "ESTABLISHED"}
            return bool(now) and not now & old_ike
        sas = self.peers[node].wait_for(ike_done, timeout, f"IKE SA {ike} with new SPIs")
        new = [sa for sa in sas if sa.name == ike and sa.state == "ESTABLISHED"]
        return f"{ike}: {'/'.join(next(iter(old_ike)))} -> {'/'.join((new[0].spi_i, new[0].spi_r))}"

    def _address(self, target: str) -> str:
        """An address for a node name (its first interface address), or the address itself."""
        assert self.lab is not None
        if target not in self.lab.nodes:
            return target
        for spec in self.lab.topo.interfaces(target).values():
            for address in spec.get("addrs", []):
                return address.split("/")[0]
        raise StepFailed(f"{target} has no address to reach it by")

    def _ping(self, a: dict[str, Any]) -> str:
        assert self.lab is not None
        to = self._address(a["to"])
        options = f"-n -c {a['count']} -i {a['interval']} -W 2"
        if "size" in a:
            options += f" -s {int(a['size'])} -M do"
        if "source" in a:
            options += f" -I {a['source']}"
        out = _output(self.lab.node(a["from"]), ["ping", *options.split(), to],
                      timeout=a["count"] * a["interval"] + 10)
        match = re.search(r"(\d+) packets transmitted, (\d+) received", out)
        received = int(match.group(2)) if match else 0
        detail = f"{received}/{a['count']} replies from {to}, {a['count'] - received} lost"
        if received < a["min"]:
            error = next((line.strip() for line in out.splitlines() if "error" in line.lower() or "too long" in line
                          or "Frag needed" in line), "")
            raise StepFailed(detail + (f" ({error})" if error else ""))
        return detail

    def _iperf3(self, a: dict[str, Any]) -> str:
        assert self.lab is not None
        to = self._address(a["to"])
        server_node = a["server"] or owner_of(self.lab.topo, to)
        server = self.lab.node(server_node).start_process(["iperf3", "-s", "-1", "-B", to],
                                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.3)
            seconds = a["seconds"]
            out = _output(self.lab.node(a["from"]), ["iperf3", "-c", to, "-t", f"{seconds:g}", "-J"], seconds + 20)
            try:
                result = json.loads(out[out.index("{"):])
            except ValueError:
                raise StepFailed(f"iperf3 gave no result: {_short(out)}") from None
            if "error" in result:
                raise StepFailed(f"iperf3: {result['error']}")
            mbps = result["end"]["sum_received"]["bits_per_second"] / 1e6
            if mbps <= 0 or mbps < float(a.get("min_mbps", 0)):
                raise StepFailed(f"{mbps:.1f} Mbit/s")
            return f"{mbps:.1f} Mbit/s TCP {a['from']} -> {to}"
        finally:
            if server.poll() is None:
                server.kill()
            server.wait()

    def _transfer(self, a: dict[str, Any]) -> str:
        assert self.lab is not None
        to = self._address(a["to"])
        server_node = a["server"] or owner_of(self.lab.topo, to)
        python = [sys.executable, "-m", "lab.net.transfer"]
        receiver = self.lab.node(server_node).start_process(
            python + ["receive", "--bind", to, "--port", str(a["port"]), "--timeout", str(a["timeout"])],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=str(REPO))
        try:
            first = receiver.stdout.readline().decode().strip()
            if first != "listening":
                raise StepFailed(f"the receiver on {server_node} did not start: {first}")
            seed = int(time.time())
            out = _output(self.lab.node(a["from"]), python + [
                "send", "--to", to, "--port", str(a["port"]), "--bytes", str(a["bytes"]), "--seed", str(seed),
                "--timeout", str(a["timeout"]), "--rate-mbps", str(a.get("mbps", 0))], a["timeout"] + 10)
            sent = _last_json(out)
            try:
                got = _last_json(receiver.communicate(timeout=a["timeout"] + 10)[0].decode())
            except subprocess.TimeoutExpired:
                raise StepFailed("the receiver did not finish") from None
        finally:
            if receiver.poll() is None:
                receiver.kill()
                receiver.wait()
        if "error" in sent or "error" in got:
            raise StepFailed(f"sender: {sent.get('error', 'ok')}; receiver: {got.get('error', 'ok')}")
        if sent["sha256"] != got["sha256"] or got["bytes"] != a["bytes"]:
            raise StepFailed(f"sent {sent['bytes']} bytes, received {got['bytes']}; SHA-256 "
                             f"{sent['sha256'][:16]}... vs {got['sha256'][:16]}...")
        rate = got["bytes"] * 8 / max(got["seconds"], 1e-6) / 1e6
        return f"{got['bytes']} bytes arrived intact (SHA-256 {got['sha256'][:16]}...), {rate:.0f} Mbit/s"

    def _run_command(self, a: dict[str, Any]) -> str:
        assert self.lab is not None
        timeout = int(a.get("timeout", 30))
        out = self.lab.node(a["node"]).cmd(f"timeout {timeout} sh -c {shlex.quote(a['cmd'])} 2>&1; echo __rc=$?")
        body, _, rc = out.rpartition("__rc=")
        if rc.strip() != "0":
            raise StepFailed(f"exit {rc.strip()}: {_short(body)}")
        return _short(body)

    # ------------------------------------------------------------ checks

    def _run_checks(self, checks: list[Check], final: bool) -> None:
        if not checks:
            return
        self.progress.line(f"== checks ({len(checks)})")
        for check in checks:
            if self.failed_step:
                check = Check(check.kind, check.args, check.line, timeout=0, say=check.say)
            self._check(check)

    def _check(self, check: Check, at_step: int | None = None) -> CheckResult:
        index = 0
        if at_step is None:
            self.check_index += 1
            index = self.check_index
        label = f"check {index}: {check.text}"
        end = self.progress.begin(label) if at_step is None else None
        started = time.monotonic()
        deadline = started + check.timeout
        tries = 0
        while True:
            tries += 1
            try:
                ok, saw = self._evaluate(check)
            except (PeerError, NodeError, OSError, ConnectionError) as err:
                ok, saw = False, f"could not check: {err}"
            if ok or time.monotonic() >= deadline:
                break
            time.sleep(0.3)
        result = CheckResult(index, check.text, ok, saw, check.line, tries, round(time.monotonic() - started, 1),
                             at_step)
        if at_step is None:
            self.result.checks.append(result)
        if end is not None:
            end(ok, _short(saw))
        return result

    def _evaluate(self, check: Check) -> tuple[bool, str]:
        a = check.args
        kind = check.kind
        if kind == "cmd":
            assert self.lab is not None
            out = self.lab.node(a["node"]).cmd(f"{a['cmd']} 2>&1")
            return _expect(out, a["match"], a["expect"], f"`{a['cmd']}`")
        if kind == "log":
            path = self.peers[a["node"]].log_path
            text = path.read_text(errors="replace") if path.exists() else ""
            return _expect(text, a["match"], a["expect"], f"{a['node']}'s log")
        if kind == "tap":
            return self._tap_check(a)
        if kind == "sa":
            return self._sa_check(a)
        if kind == "trace":
            return self._trace_check(a)
        if kind == "counter":
            counters = self.peers[a["node"]].counters()
            value = counters.get(a["name"], 0)
            return _bounds_ok(value, a), f"{a['name']} = {value}"
        return False, f"unknown check {kind}"

    def _tap_check(self, a: dict[str, Any]) -> tuple[bool, str]:
        assert self.lab is not None
        tap = self.lab.taps.get(a["on"])
        path = self.out / "captures" / f"{a['on']}.pcap"
        if tap is not None:
            tap.flush()
        if "before" in a:
            first, then = (_timestamps(path, f) for f in a["before"])
            if not first:
                return False, f"no '{a['before'][0]}' packet at all"
            if not then:
                return False, f"{len(first)} '{a['before'][0]}' packets, but no '{a['before'][1]}' packet"
            late = [t for t in first if t > then[0]]
            if late:
                return False, (f"{len(late)} '{a['before'][0]}' packet(s) after the first '{a['before'][1]}' "
                               f"(at +{late[0] - first[0]:.2f} s)")
            return True, f"{len(first)} '{a['before'][0]}', then {len(then)} '{a['before'][1]}'"
        if "display" in a:
            count = self._display_count(path, a.get("filter", ""), a["display"], bool(a.get("decrypt")))
        else:
            count = len(_timestamps(path, a.get("filter", "")))
        what = " and ".join(f"'{x}'" for x in (a.get("filter"), a.get("display")) if x) or "'any'"
        return _bounds_ok(count, a), f"{count} packets of {what}" + (" (decrypted)" if a.get("decrypt") else "")

    def _display_count(self, pcap: Path, bpf: str, display: str, decrypt: bool) -> int:
        """Packets of `pcap` that tshark's display filter matches (with the keys our gateways
        exported so far, if `decrypt`)."""
        if not pcap.exists() or pcap.stat().st_size == 0:
            return 0
        with tempfile.TemporaryDirectory() as home:
            if bpf:  # tshark reads no BPF: tcpdump picks the packets first
                picked = Path(home) / "picked.pcap"
                subprocess.run(["tcpdump", "-r", str(pcap), "-w", str(picked), *shlex.split(bpf)],
                               capture_output=True, timeout=60)
                pcap = picked
            argv = ["tshark", "-r", str(pcap), "-n", "-T", "fields", "-e", "frame.number", "-Y", display,
                    "-o", "esp.enable_null_encryption_decode_heuristic:TRUE"]
            env = dict(os.environ, HOME=home, XDG_CONFIG_HOME=home)
            if decrypt:
                wireshark = Path(home) / "wireshark"
                wireshark.mkdir()
                self._remember_charon_sas()
                for table, lines in self._key_tables().items():
                    (wireshark / table).write_text("\n".join(lines) + "\n")
                argv += ["-o", "esp.enable_encryption_decode:TRUE"]
            run = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
        if run.returncode != 0:
            raise PeerError(f"tshark cannot read {pcap.name} with display filter '{display}': {run.stderr.strip()}")
        return len([line for line in run.stdout.splitlines() if line.strip()])

    def _sa_check(self, a: dict[str, Any]) -> tuple[bool, str]:
        sas = self._sas(a["node"])
        matching = [sa for sa in sas if not a.get("ike") or sa.name == a["ike"]]
        if "count" in a:
            ike_state = a.get("state", "ESTABLISHED") if not a.get("child") else "ESTABLISHED"
            counted = [sa for sa in matching if sa.state == ike_state]
            if len(counted) != a["count"]:
                return False, f"{len(counted)} IKE SA(s) {ike_state}: {describe(sas)}"
            if not set(a) - {"node", "ike", "state", "count"}:
                return True, f"{len(counted)} IKE SA(s) {ike_state}" + (f": {describe(counted)}" if counted else "")
        want_state = a.get("state", "INSTALLED" if a.get("child") else "ESTABLISHED")
        problems = []
        for sa in matching:
            if a.get("child"):
                children = [c for c in sa.children if c.name == a["child"] and c.state == want_state]
                if not children:
                    problems.append(f"#{sa.unique_id} has no {a['child']} {want_state}")
                    continue
                if "children" in a and len(children) != a["children"]:
                    problems.append(f"{len(children)} {a['child']} CHILD_SAs, not {a['children']}")
                    continue
                child = children[-1]
                facts = {"encap": child.encap, "mode": child.mode, "protocol": child.protocol}
                wrong = [f"{k} is {facts[k]}" for k in ("encap", "mode", "protocol")
                         if k in a and str(facts[k]).upper() != str(a[k]).upper()]
                if "esp_algorithms" in a and not re.search(str(a["esp_algorithms"]), child.algorithms):
                    wrong.append(f"algorithms are {child.algorithms}")
                if "spi_changed_since" in a:
                    then = self.snapshots.get(a["spi_changed_since"], {}).get(a["node"], [])
                    old = {c.spi_in for s in then for c in s.children if c.name == a["child"]}
                    if child.spi_in in old:
                        wrong.append(f"SPI {child.spi_in} is the one from step {a['spi_changed_since']!r}")
                if "spi_kept_since" in a:
                    then = self.snapshots.get(a["spi_kept_since"], {}).get(a["node"], [])
                    old = {c.spi_in for s in then for c in s.children if c.name == a["child"]}
                    if child.spi_in not in old:
                        wrong.append(f"SPI {child.spi_in} is not the one from step {a['spi_kept_since']!r} "
                                     f"({', '.join(sorted(old)) or 'none'})")
            else:
                if sa.state != want_state:
                    problems.append(f"#{sa.unique_id} is {sa.state}")
                    continue
                wrong = []
                if "children" in a:
                    n = len([c for c in sa.children if c.state == "INSTALLED"])
                    if n != a["children"]:
                        wrong.append(f"{n} CHILD_SAs installed")
                if "spi_changed_since" in a:
                    then = self.snapshots.get(a["spi_changed_since"], {}).get(a["node"], [])
                    if any((s.spi_i, s.spi_r) == (sa.spi_i, sa.spi_r) for s in then):
                        wrong.append(f"SPIs {sa.spi_i}/{sa.spi_r} are those from step {a['spi_changed_since']!r}")
                if "spi_kept_since" in a:
                    then = self.snapshots.get(a["spi_kept_since"], {}).get(a["node"], [])
                    if not any((s.spi_i, s.spi_r) == (sa.spi_i, sa.spi_r) for s in then):
                        wrong.append(f"SPIs {sa.spi_i}/{sa.spi_r} are not those from step {a['spi_kept_since']!r}")
            facts = {"nat_local": sa.nat_local, "nat_remote": sa.nat_remote, "remote_port": sa.remote_port,
                     "local_port": sa.local_port}
            wrong += [f"{k} is {facts[k]}" for k in facts if k in a and facts[k] != a[k]]
            if "algorithms" in a and not re.search(str(a["algorithms"]), sa.algorithms):
                wrong.append(f"algorithms are {sa.algorithms}")
            if "vip" in a and not any(re.search(str(a["vip"]), v) for v in sa.local_vips):
                wrong.append(f"virtual IPs are {', '.join(sa.local_vips) or 'none'}")
            if "remote_vip" in a and not any(re.search(str(a["remote_vip"]), v) for v in sa.remote_vips):
                wrong.append(f"virtual IPs handed out: {', '.join(sa.remote_vips) or 'none'}")
            if not wrong:
                return True, describe([sa])
            problems.append(f"#{sa.unique_id}: " + ", ".join(wrong))
        if not matching:
            return False, f"no IKE SA {a.get('ike') or ''}: {describe(sas)}".replace("  ", " ")
        return False, "; ".join(problems)

    def _trace_check(self, a: dict[str, Any]) -> tuple[bool, str]:
        path = getattr(self.peers[a["node"]], "trace_path", None)
        count = 0
        if path is not None and Path(path).exists():
            pattern = re.compile(str(a["match"])) if a.get("match") else None
            for line in Path(path).read_text(errors="replace").splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if a.get("kind") and record.get("kind") != a["kind"]:
                    continue
                if a.get("event") and record.get("event") != a["event"]:
                    continue
                if pattern is not None and not pattern.search(line):
                    continue
                count += 1
        what = a.get("event") or a.get("kind")
        return _bounds_ok(count, a), f"{count} {what} record(s)"

    # ------------------------------------------------------------ the run folder

    def _write_folder(self) -> None:
        out = self.out
        for sub in ("logs", "keys", "captures", "figures"):
            (out / sub).mkdir(parents=True, exist_ok=True)
        traces = []
        for node, peer in self.peers.items():
            if peer.software == "ours":
                _copy(peer.log_path, out / "logs" / f"{node}.log")
                traces.append((node, Path(peer.trace_path)))
            else:
                _copy(peer.log_path, out / "logs" / f"{node}-charon.log")
                _copy(peer.out_path, out / "logs" / f"{node}-charon.out")
        for table, lines in self._key_tables().items():
            _append_lines(lines, out / "keys" / table)
        if (out / "keys" / "ikev2_decryption_table").exists() or (out / "keys" / "esp_sa").exists():
            (out / "keys" / "wireshark").mkdir(exist_ok=True)
            for table in ("ikev2_decryption_table", "esp_sa"):
                if (out / "keys" / table).exists():
                    shutil.copy2(out / "keys" / table, out / "keys" / "wireshark" / table)
        merge_traces(traces, out / "trace.jsonl")
        elsewhere = set()
        for node, peer in self.peers.items():
            workdir = Path(peer.workdir)
            if out not in workdir.parents:  # the short folder for long --out paths: keep it in the run folder
                shutil.copytree(workdir, out / "nodes" / node, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("*.vici", "*.ctl"))
                elsewhere.add(workdir.parent)
        for folder in elsewhere:
            shutil.rmtree(folder, ignore_errors=True)
            try:
                folder.parent.rmdir()
            except OSError:
                pass
        if self.scenario.merge_captures:
            pcaps = sorted(str(p) for p in (out / "captures").glob("*.pcap"))
            if pcaps and shutil.which("mergecap"):
                subprocess.run(["mergecap", "-F", "pcapng", "-w", str(out / "captures" / "all.pcapng"), *pcaps],
                               capture_output=True)
        if self.lab is None:
            topology = self.scenario.build_topology().describe()
            for entry in topology["nodes"]:
                entry["software"] = self.scenario.gateways.get(entry["name"])
        else:
            topology = self.lab.describe()
        topology["scenario"] = self.scenario.name
        topology["taps"] = [{"name": t.name, "node": t.node, "intf": t.intf, "file": f"captures/{t.name}.pcap",
                             "filter": t.filter} for t in self.scenario.taps]
        (out / "topology.json").write_text(json.dumps(topology, indent=1))
        _copy(self.scenario.folder / "scenario.yaml", out / "scenario.yaml")  # as run (diagnose reads its knobs)
        self.result.files = {sub: sorted(str(p.relative_to(out)) for p in (out / sub).rglob("*") if p.is_file())
                             for sub in ("captures", "keys", "logs", "figures")}
        (out / "result.json").write_text(json.dumps(self.result.to_json(), indent=1))
        (out / "report.md").write_text(report.render(self.scenario, self.result))


def run(scenario: Scenario, out: str | Path, progress: Progress | None = None, **options: Any) -> RunResult:
    return Runner(scenario, out, progress, **options).run()


# ------------------------------------------------------------------ helpers


def _output(node: Any, argv: list[str], timeout: float) -> str:
    """Run argv in `node` as its own process (not through the node's shell, so that several
    can run at once, e.g. a background ping while a rekey step runs); stdout and stderr."""
    proc = node.start_process(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=str(REPO))
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise StepFailed(f"{' '.join(argv[:2])} did not finish within {timeout:g} s") from None
    return out.decode(errors="replace")


def _prepare_out(out: Path) -> None:
    """An empty run folder. An earlier run folder there is replaced; anything else is kept and
    the run refused, so no one's files are lost."""
    if out.exists():
        if not out.is_dir():
            raise LabError(f"{out} exists and is not a folder: choose another --out")
        entries = list(out.iterdir())
        if entries and not (out / "result.json").exists() and not (out / "report.md").exists():
            raise LabError(f"{out} is not empty and holds no earlier run (no report.md): choose another --out, "
                           f"or empty it")
        shutil.rmtree(out)
    (out / "captures").mkdir(parents=True)
    (out / "result.json").write_text('{"running": true}\n')  # marks the folder as a run folder


def _params(params: dict[str, Any]) -> str:
    return "(" + ", ".join(f"{k}={v}" for k, v in params.items()) + ")" if params else ""


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _last_json(text: str) -> dict[str, Any]:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                break
    return {"error": f"no result: {_short(text)}"}


def _expect(text: str, pattern: str, expect: str, what: str) -> tuple[bool, str]:
    found = re.findall(pattern, text, re.MULTILINE) if pattern else [text] if text.strip() else []
    n = len(found)
    if expect == "YES":
        ok = n > 0
    elif expect == "NO":
        ok = n == 0
    else:
        ok = n == int(expect)
    sample = ""
    if pattern and n:
        line = next((line for line in text.splitlines() if re.search(pattern, line)), "")
        sample = f": {_short(line, 100)}"
    return ok, f"{what}: {n} match(es) of /{pattern}/{sample}"


def _bounds_ok(value: int, a: dict[str, Any]) -> bool:
    if "count" in a and value != a["count"]:
        return False
    if "equal" in a and value != a["equal"]:
        return False
    if "min" in a and value < a["min"]:
        return False
    if "max" in a and value > a["max"]:
        return False
    if not any(k in a for k in ("count", "equal", "min", "max")):
        return value >= 1
    return True


def _timestamps(pcap: Path, bpf: str) -> list[float]:
    """Packet times of `pcap` that match the BPF filter (tcpdump reads it)."""
    if not pcap.exists() or pcap.stat().st_size == 0:
        return []
    argv = ["tcpdump", "-r", str(pcap), "-n", "-tt", "-q"] + (shlex.split(bpf) if bpf else [])
    run = subprocess.run(argv, capture_output=True, text=True)
    if run.returncode != 0 and "truncated" not in run.stderr:
        raise PeerError(f"tcpdump cannot read {pcap.name} with filter '{bpf}': {run.stderr.strip()}")
    times = []
    for line in run.stdout.splitlines():
        head = line.split(" ", 1)[0]
        try:
            times.append(float(head))
        except ValueError:
            continue
    return times


def _kill(peer: Peer) -> None:
    process = getattr(peer, "process", None)
    if process is None or process.poll() is not None:
        raise StepFailed(f"{peer.name} is not running")
    process.kill()
    process.wait(5)
    peer.process = None  # type: ignore[attr-defined]


def _copy(src: Path, dst: Path) -> None:
    try:
        shutil.copy2(src, dst)
    except FileNotFoundError:
        pass


def _append_lines(new: list[str], dst: Path) -> None:
    """Add the lines to the table `dst` that it lacks (ours and charon's name the same SAs)."""
    if not new:
        return
    lines = dst.read_text().splitlines() if dst.exists() else []
    for line in new:
        if line and line not in lines:
            lines.append(line)
    dst.write_text("\n".join(lines) + "\n")


def merge_traces(traces: list[tuple[str, Path]], out: Path) -> int:
    """Every trace record of our gateways in one file, each with "node", ordered by "wall"
    (wall-clock time) where the records have it, else by file order."""
    records = []
    for node, path in traces:
        if not path.exists():
            continue
        for order, line in enumerate(path.read_text(errors="replace").splitlines()):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            record["node"] = node
            records.append((record.get("wall", 0.0), node, order, record))
    records.sort(key=lambda item: (item[0], item[1], item[2]))
    with open(out, "w") as f:
        for *_keys, record in records:
            f.write(json.dumps(record) + "\n")
    return len(records)
