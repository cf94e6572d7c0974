"""A running lab: a topology built as Mininet nodes, the processes started in them, and the
captures (taps) on their links, torn down completely on stop, on errors and on Ctrl-C.

    with Lab(SiteToSite(nat="one"), workdir) as lab:
        lab.node("hosta").cmd("ping -c 1 10.2.0.10")

One lab at a time holds the lab lock of its /run, the host's or its world's (lab.net.cleanup); everything the lab creates
is written into its record before it exists, so a crash leaves nothing `ipsec-lab clean`
cannot find.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.runfolder import Topology

from . import cleanup, forkserver
from .capture import Capture
from .nodes import LabNode
from .peers import DaemonProcess
from .topology import LabTopo


class LabError(RuntimeError):
    """The lab could not be built or torn down; the message says what and where."""


def require_root(what: str = "the lab") -> None:
    if os.geteuid() != 0:
        raise LabError(f"{what} needs root (it creates network namespaces): run it with sudo or as root.")
    for tool, package in (("mnexec", "mininet"), ("ip", "iproute2"), ("iptables", "iptables"),
                          ("tcpdump", "tcpdump"), ("conntrack", "conntrack")):
        if shutil.which(tool) is None:
            raise LabError(f"{tool} is missing: run scripts/setup.sh (or apt-get install {package})")


class Lab:
    def __init__(self, topo: LabTopo, workdir: str | Path | None = None, name: str = "", *,
                 say: Callable[[str], None] | None = None, lock_wait: bool = True, fork: bool | None = None,
                 gateway_threads: bool | None = None) -> None:
        self.topo = topo
        self.workdir = Path(workdir).absolute() if workdir is not None else None
        self.name = name or topo.name
        self.say = say or (lambda line: None)
        self.lock_wait = lock_wait
        self.lock = cleanup.LabLock()
        self.record: cleanup.LabRecord | None = None
        self.net: Any = None
        self.nodes: dict[str, LabNode] = {}
        self.processes: list[tuple[str, DaemonProcess]] = []
        self.taps: dict[str, Capture] = {}
        self.stoppers: list[Callable[[], None]] = []
        self.software: dict[str, str] = {}
        # our gateways forked from a fork server (lab.net.forkserver); default: unless IPSEC_LAB_FORK=0
        self.fork = forkserver.enabled() if fork is None else fork
        # our gateways as threads of one gateway host forked from it: IPSEC_LAB_GATEWAY_THREADS=1 or 0;
        # None: when the lab runs more than forkserver.THREADS_ABOVE of them (gateways_expected)
        self.gateway_threads = forkserver.threads_setting() if gateway_threads is None else gateway_threads
        # how many of our gateways the lab will run (the runner knows); None: its topology's gateway nodes
        self.gateways_expected: int | None = None
        self.fork_server: forkserver.ForkServer | None = None
        self.fork_unavailable = ""  # why gateways start as fresh processes ("": not known yet)
        self._fork_lock = threading.Lock()

    # ------------------------------------------------------------ start and stop

    def start(self) -> Lab:
        require_root()
        self.lock.acquire(wait=self.lock_wait, say=self.say)
        try:
            found = cleanup.clean(say=self.say)
            if found:
                self.say(f"removed what an earlier lab run left: {', '.join(found)}")
            self.record = cleanup.LabRecord(name=self.name, links=self.topo.link_names(),
                                            out=str(self.workdir) if self.workdir else "")
            self.record.save()
            self._build()
        except BaseException:
            self.stop()
            raise
        return self

    def _build(self) -> None:
        from mininet.log import setLogLevel
        from mininet.net import Mininet

        setLogLevel("error")
        record = self.record
        assert record is not None

        def on_shell(node: LabNode) -> None:
            record.add_node(node.name, node.pid)
            record.save()

        LabNode.on_shell = on_shell
        LabNode.tracker = self._track
        LabNode.forker = self.forker
        try:
            self.net = Mininet(topo=self.topo, controller=None, build=False, autoSetMacs=False,
                               autoStaticArp=False, waitConnected=False)
            self.net.build()
        finally:
            LabNode.on_shell = None
        self.nodes = {host.name: host for host in self.net.hosts}

    def _track(self, node: str, proc: DaemonProcess, argv: list[str]) -> None:
        self.processes.append((node, proc))
        if self.record is not None:
            self.record.add_process(node, proc.pid, argv[0])

    def forker(self) -> forkserver.ForkServer:
        """The lab's fork server for our gateways, started the first time one is asked for;
        ForkServerError (saying why, once in the lab's output too) if it cannot start."""
        with self._fork_lock:
            if self.fork_server is not None and self.fork_server.running:
                return self.fork_server
            if not self.fork_unavailable:
                if self.fork_server is not None:
                    self.fork_unavailable = "the fork server ended"
                elif not self.fork:
                    self.fork_unavailable = "the fork server is turned off (IPSEC_LAB_FORK=0, or Lab(fork=False))"
                else:
                    server = forkserver.ForkServer(
                        threads=self.threads(), track=lambda proc, argv: self._track("(gateway host)", proc, argv))
                    self.fork_server = server.start(popen=self._start_fork_server)
                    if self.fork_server is not None:
                        return self.fork_server
                    self.fork_unavailable = f"the fork server could not start: {server.reason}"
                self.say(f"{self.fork_unavailable}; our gateways start as fresh processes")
            raise forkserver.ForkServerError(self.fork_unavailable)

    def threads(self) -> bool:
        """Whether our gateways run as threads of one gateway host (lab.net.forkserver)."""
        if self.gateway_threads is not None:
            return self.gateway_threads
        expected = self.gateways_expected
        if expected is None:
            expected = len(self.topo.nodes_of("gateway"))
        threads = forkserver.threads_for(expected)
        if threads:
            self.say(f"our {expected} gateways run as threads of one gateway host, to save memory "
                     f"(more than {forkserver.THREADS_ABOVE}; IPSEC_LAB_GATEWAY_THREADS=0: a process each)")
        return threads

    def _start_fork_server(self, argv: list[str], **popen: Any) -> subprocess.Popen:
        proc = subprocess.Popen(argv, **popen)
        self._track("(fork server)", proc, argv)
        return proc

    def on_stop(self, stopper: Callable[[], None]) -> None:
        """Call `stopper` first when the lab stops (daemons end gracefully before the kill)."""
        self.stoppers.append(stopper)

    def stop(self) -> list[str]:
        """Tear everything down; returns what had to be removed by force beyond the orderly stop
        (nothing, normally). Safe to call twice, and while a Ctrl-C is pending."""
        previous = ({sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
                    if _main_thread() else {})
        problems: list[str] = []
        try:
            for stopper in reversed(self.stoppers):
                try:
                    stopper()
                except Exception as err:  # keep tearing down
                    problems.append(f"stopping: {err}")
            self.stoppers = []
            if self.fork_server is not None:
                self.fork_server.stop()
                self.fork_server = None
            self.stop_taps()
            for _node, proc in self.processes:
                if proc.poll() is None:
                    proc.terminate()
            deadline = time.monotonic() + 5
            for _node, proc in self.processes:
                try:
                    proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
            self.processes = []
            if self.net is not None:
                # not net.stop(): it runs commands in the node shells, which a Ctrl-C may have
                # left mid-command; ending the shells ends the namespaces (cleanup.remove checks)
                for host in self.net.hosts:
                    try:
                        host.terminate()
                    except Exception as err:
                        problems.append(f"stopping {host.name}: {err}")
                self.net = None
            self.nodes = {}
            if self.record is not None:
                left = cleanup.remove(self.record)
                if left:
                    problems.append("removed by force: " + ", ".join(left))
                self.record = None
        finally:
            LabNode.tracker = None
            LabNode.forker = None
            self.lock.release()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return problems

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ nodes

    def node(self, name: str) -> LabNode:
        try:
            return self.nodes[name]
        except KeyError:
            raise LabError(f"no node {name!r} in topology {self.topo.name} (nodes: {', '.join(self.nodes)})") from None

    def kind(self, name: str) -> str:
        return self.topo.kind_of(name)

    # ------------------------------------------------------------ taps

    def tap(self, name: str, node: str, intf: str, path: Path, bpf: str = "", err_path: Path | None = None) -> Capture:
        """tcpdump on `node`'s interface `intf` into `path` (started before this returns); what
        tcpdump says goes to `err_path`."""
        if intf not in self.node(node).intfNames():
            raise LabError(f"no interface {intf!r} on {node} (it has: {', '.join(self.node(node).intfNames())})")
        capture = Capture(self.node(node), intf, path, bpf, err_path)
        capture.start()
        self.taps[name] = capture
        return capture

    def stop_taps(self) -> dict[str, str]:
        """Stop every tap (each writes its file complete); returns what tcpdump said per tap."""
        said = {}
        for name, capture in list(self.taps.items()):
            try:
                said[name] = capture.stop()
            except Exception as err:
                said[name] = f"tcpdump did not stop cleanly: {err}"
        self.taps = {}
        return said

    # ------------------------------------------------------------ describing

    def describe(self) -> Topology:
        """topology.json: nodes with kind, software and interfaces, links (the taps: lab.net.folder)."""
        description = self.topo.describe()
        for node in description.nodes:
            node.software = self.software.get(node.name)
        return description


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
