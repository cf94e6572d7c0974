"""Running a scenario: build its topology, start its gateways and taps, run its steps in order,
evaluate its checks (each retried until its timeout), tear everything down, and leave a run
folder (lab.runfolder describes it; lab.net.folder writes it).

The runner is the lifecycle only: what each step and check does is its entry in
lab.net.steps.STEPS and lab.net.checks.CHECKS, what each kind of gateway software does is its
lab.net.peers.Peer. `run(scenario, out)` returns a RunResult; passed iff every step went as
expected and every check held. Ctrl-C and SIGTERM end the run with total teardown
(RunInterrupted).
"""
from __future__ import annotations

import os
import shlex
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from lab.runfolder import CheckResult, RunResult, StepResult

from . import folder, world
from .checks import CHECKS, Check
from .lab import Lab, LabError
from .listeners import ListenersError
from .nginx import NginxError
from .nodes import LabNode, NodeError
from .peers import IkeSaInfo, Peer, PeerError, defer_interrupt
from .radius import FreeRadiusError
from .scenario import Scenario
from .software import SERVICES, SOFTWARE, Server
from .steps import STEP_ERRORS, STEPS, Step, StepFailed, short
from .topology import LabTopo

REPO = Path(__file__).resolve().parents[2]
MAX_SOCKET_PATH = 100
ERRORS = (*STEP_ERRORS, NodeError, LabError)


class RunInterrupted(BaseException):
    """Ctrl-C (SIGINT) or SIGTERM during a run; `signal` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Progress:
    """What the trainer sees while a scenario runs: one line per step with its time; a live
    spinner with the elapsed time on a terminal (rich)."""

    def __init__(self, stream: TextIO | None = None, live: bool | None = None) -> None:
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

    def __enter__(self) -> _Signals:
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.previous[signum] = signal.signal(signum, self._raise)
        return self

    @staticmethod
    def _raise(signum: int, _frame: Any) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        interrupt = RunInterrupted(signum)
        if defer_interrupt(interrupt):  # a short request to charon ends first (lab.net.peers)
            return
        raise interrupt

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


class Runner:
    """One run of a scenario. Steps and checks (lab.net.steps, lab.net.checks) use what it offers
    them: `lab`, `topo`, `peers`, `node()`, `sas()`, `address()`, `snapshots`, `check()`,
    `join()`, `flush_tap()`, `key_tables()`."""

    def __init__(self, scenario: Scenario, out: str | Path, progress: Progress | None = None,
                 say: Callable[[str], None] | None = None, keep_open: Callable[[Runner], None] | None = None,
                 after_step: Callable[[Runner, Step, StepResult], None] | None = None) -> None:
        self.scenario = scenario
        self.out = Path(out).absolute()
        self.progress = progress or Progress()
        self.say = say or self.progress.line
        self.keep_open = keep_open
        self.after_step = after_step  # e.g. narration: it may read the peers' logs and traces so far
        self.lab: Lab | None = None
        self.peers: dict[str, Peer] = {}
        self.services: dict[str, Server] = {}  # node -> its service's server (lab.net.software.SERVICES)
        self.snapshots: dict[str, dict[str, list[IkeSaInfo]]] = {}   # step name -> node -> SAs after it
        self.result = RunResult(scenario=scenario.name, title=scenario.title, folder=str(scenario.folder),
                                out=str(self.out), passed=False, started=time.time(), nodes=dict(scenario.gateways))
        self.check_index = 0
        self.step_index = 0
        self.failed_step = False
        self.background: dict[str, tuple[threading.Thread, dict[str, Any]]] = {}

    # ------------------------------------------------------------ the run

    def run(self) -> RunResult:
        folder.prepare(self.out)
        t0 = time.monotonic()
        self.say(f"== {self.scenario.name}: {self.scenario.title}")
        try:
            with _Signals():
                try:
                    self._build()
                    self._run_steps()
                    self._run_checks(self.scenario.checks)
                    if self.keep_open is not None:
                        self.keep_open(self)
                finally:
                    self._teardown()
        except RunInterrupted as err:
            self.result.interrupted = str(err)
            self._teardown()
        except (LabError, PeerError, NodeError, FreeRadiusError, ListenersError, NginxError, OSError) as err:
            self.result.error = str(err)
            self._teardown()
        self.result.duration = round(time.monotonic() - t0, 1)
        self.result.passed = (not self.result.interrupted and not self.result.error
                              and all(s.ok for s in self.result.steps) and all(c.ok for c in self.result.checks)
                              and not self.result.teardown)
        folder.write(self)
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
        for node, service in scenario.services.items():
            # started first: a gateway asks its server from its first login on
            server = SERVICES[service].make(self.lab.node(node), self.out / "nodes" / node, node)
            server.load(scenario.host_folder(node))
            self.services[node] = server
            self.lab.on_stop(server.stop)
            server.start()
        self.lab.software.update(scenario.gateways)
        self.lab.gateways_expected = sum(1 for software in scenario.gateways.values() if software == "ours")
        for node, software in scenario.gateways.items():
            workdir = self.out / "nodes" / node
            if len(str(workdir / "charon.vici")) > MAX_SOCKET_PATH:
                # a Unix socket path has at most 107 bytes; not /run: gateways have a private one
                workdir = Path(tempfile.gettempdir()) / f"ipsec-lab-{world.tag()}" / scenario.name / node
            kind = SOFTWARE[software]
            options = {**scenario.gateway_options.get(node, {}), **kind.run_options}
            peer = kind.make(self.lab.node(node), workdir, node, **options)
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
        Mininet CLI (ipsec-lab up), and `cmd` checks may name the scenario's files by $SCENARIO_DIR."""
        assert self.lab is not None
        path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
        for name, node in self.lab.nodes.items():
            exports = {"PATH": path, "SCENARIO_DIR": str(Path(self.scenario.folder).absolute())}
            peer = self.peers.get(name)
            if peer is not None:
                exports.update(peer.shell_exports())
            node.cmd("export " + " ".join(f"{key}={shlex.quote(value)}" for key, value in exports.items()))

    def observe(self) -> None:
        """Let every peer remember what the run folder needs later (after each step, before teardown)."""
        for peer in self.peers.values():
            peer.observe()

    def _teardown(self) -> None:
        if self.lab is None:
            return
        self.observe()
        lab, self.lab = self.lab, None
        end = self.progress.begin("tear down (daemons, taps, namespaces)")
        problems = lab.stop()
        self.result.teardown = problems
        end(not problems, "; ".join(problems) or "nothing left behind")

    # ------------------------------------------------------------ what steps and checks use

    @property
    def topo(self) -> LabTopo:
        assert self.lab is not None
        return self.lab.topo

    def node(self, name: str) -> LabNode:
        assert self.lab is not None
        return self.lab.node(name)

    def sas(self, node: str) -> list[IkeSaInfo]:
        """The SAs of a gateway now (none while it does not run or answer)."""
        peer = self.peers[node]
        if not peer.running:
            return []
        try:
            return peer.list_sas()
        except (PeerError, OSError, ConnectionError):
            return []

    def address(self, target: str) -> str:
        """An address for a node name (its first interface address), or the address itself."""
        assert self.lab is not None
        if target not in self.lab.nodes:
            return target
        for spec in self.lab.topo.interfaces(target).values():
            for address in spec.get("addrs", []):
                return address.split("/")[0]
        raise StepFailed(f"{target} has no address to reach it by")

    def flush_tap(self, name: str) -> Path:
        """A tap's capture file, with everything captured so far written."""
        assert self.lab is not None
        tap = self.lab.taps.get(name)
        if tap is not None:
            tap.flush()
        return self.out / "captures" / f"{name}.pcap"

    def key_tables(self) -> dict[str, list[str]]:
        """Wireshark's two tables for every SA of the run so far, from every peer."""
        self.observe()
        tables: dict[str, list[str]] = {"ikev2_decryption_table": [], "esp_sa": []}
        for peer in self.peers.values():
            for table, lines in peer.key_tables().items():
                tables[table] += [line for line in lines if line and line not in tables[table]]
        return tables

    def join(self, name: str) -> str:
        """Wait for the background step `name` and judge it by its own `expect`."""
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
            except ERRORS as err:
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
            end(ok, short(detail))
            result = StepResult(step.index, step.kind, step.text, step.expect, ok, detail, started, time.time(),
                                line=step.line)
            self.result.steps.append(result)
            if self.after_step is not None:
                self.after_step(self, step, result)
            if step.name:
                self.snapshots[step.name] = {n: self.sas(n) for n in self.peers}
            self.observe()
            if not ok:
                self.failed_step = True

    def _step(self, step: Step) -> str:
        assert self.lab is not None
        self.step_index = step.index
        kind = STEPS[step.kind]
        if step.args.get("background"):
            box: dict[str, Any] = {"step": step}

            def work() -> None:
                try:
                    box["detail"] = kind.run(self, step.args)
                except ERRORS as err:
                    box["error"] = str(err).strip()
            thread = threading.Thread(target=work, name=f"step-{step.name}", daemon=True)
            self.background[step.name] = (thread, box)
            thread.start()
            return f"started in the background (joined by name '{step.name}')"
        return kind.run(self, step.args)

    # ------------------------------------------------------------ checks

    def _run_checks(self, checks: list[Check]) -> None:
        if not checks:
            return
        self.progress.line(f"== checks ({len(checks)})")
        for check in checks:
            if self.failed_step:
                check = Check(check.kind, check.args, check.line, timeout=0, say=check.say)
            self.check(check)

    def check(self, check: Check, at_step: int | None = None) -> CheckResult:
        """Evaluate `check` until it holds or its timeout passes; a final check (not `at_step`)
        goes into the result."""
        index = 0
        if at_step is None:
            self.check_index += 1
            index = self.check_index
        label = f"check {index}: {check.text}"
        end = self.progress.begin(label) if at_step is None else None
        started = time.monotonic()
        deadline = started + check.timeout
        tries = 0
        kind = CHECKS[check.kind]
        while True:
            tries += 1
            try:
                ok, saw = kind.evaluate(self, check.args)
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
            end(ok, short(saw))
        return result


def run(scenario: Scenario, out: str | Path, progress: Progress | None = None, **options: Any) -> RunResult:
    return Runner(scenario, out, progress, **options).run()


def _params(params: dict[str, Any]) -> str:
    return "(" + ", ".join(f"{k}={v}" for k, v in params.items()) + ")" if params else ""


__all__ = ["Progress", "RunInterrupted", "RunResult", "Runner", "StepFailed", "run"]
