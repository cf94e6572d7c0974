"""A fork server: one pre-imported Python process per lab from which our gateway daemons are forked.

A fresh `python -m lab.cli daemon` takes its imports at start (about a second of CPU each) and
holds its own copy of every module (about 40 MB). The lab starts this process once instead
(`python -m lab.net.forkserver FD`): it imports what the daemon imports, runs a few IKE exchanges
in memory (so that Python specialises that code here, once), freezes those objects (gc.freeze(),
so the collector never writes to their pages) and waits. For each gateway it
forks; the child enters the node's network namespace (setns on /proc/<node's shell>/ns/net) and
its mount namespace if the node has one of its own (mnexec -a does the same), starts a session of
its own (mnexec -d), puts the gateway's log on stdout and stderr and runs `lab.cli`'s main() with
the daemon's arguments, as `python -m lab.cli` does. The pages of the imported modules stay shared, copy-on-write, between the
server and every gateway.

Each request comes over the lab's socket (SOCK_SEQPACKET) with two descriptors: the requester's
end of a new socket pair, on which the server answers with the child's PID and a pidfd (or why the
child could not start) and later its exit status, and the log. When the lab closes its socket
(it ended, even by SIGKILL) or sends SIGTERM, the server exits. The gateways are the lab's
processes like any other, as fresh ones were: the lab stops them, lab.net.lab records them and
lab.net.cleanup finds them in the nodes' namespaces after a crash; the server is in the record too.

    server = ForkServer(log=path).start()          # None (and .reason) if it could not start
    proc = server.spawn(node.pid, argv, env, cwd, log_fd)   # a Popen-like ForkedProcess

A gateway host (ForkServer(threads=True); a lab asks for one when it runs more than THREADS_ABOVE
of our gateways, or always with Lab(gateway_threads=True) or IPSEC_LAB_GATEWAY_THREADS=1, never
with IPSEC_LAB_GATEWAY_THREADS=0):
one process, forked once from the server, runs every gateway of the lab in a thread of its own.
Each thread enters its node's network namespace (setns acts on the calling thread alone), so the
sockets, TUN device and commands (`ip`, updown scripts) it makes are that node's; the host's
pages, shared or written, are paid for once instead of once per gateway (a forked gateway
writes about 10 MB of shared pages, mostly CPython's reference counts). What a hosted gateway
gives up: a PID of its own (its `pid` is the host's, shared), real signals (SIGTERM and SIGINT
are requests to the host, which stops it as the signal would; SIGKILL stops it with no goodbye
to its peers, but its TUN device, routes and sockets are removed as on SIGTERM; a thread cannot
be frozen or killed), crash isolation (a fault that ends the process ends every gateway in it;
an exception ends only its thread, as it would end its process) and a core of its own (the
threads share one interpreter lock), and the node's mount namespace (a thread cannot enter one:
a hosted gateway and the commands it runs see the lab's file system, not the node's private
/var/run, which only charon uses). Its log, control socket, trace and exit status are its own,
as for a forked gateway. The host ends its gateways (as on SIGTERM) and itself when the
lab closes its socket, ends, or sends it SIGTERM; it is in the lab's record like the server.
"""
from __future__ import annotations

import ctypes
import gc
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

CLONE_NEWNS, CLONE_NEWNET = 0x00020000, 0x40000000
REPO = Path(__file__).resolve().parents[2]
MODULE = "lab.cli"  # what a child runs: `python -m lab.cli ARGS`, as lab.net.gateway asks
# what the daemon imports, at start and on its way up (measured with sys.modules)
WARM = ("lab.cli", "lab.daemon.gateway", "lab.conf.swanctl", "lab.net.world", "lab.net.watch", "lab.viz.cli",
        "cryptography.hazmat.backends.openssl.backend", "ctypes", "tempfile", "shutil", "bz2", "lzma")
PACKAGES = ("lab.ike", "lab.esp", "lab.daemon", "lab.conf")
TITLE_ROOM = 4096


class ForkServerError(RuntimeError):
    """The fork server cannot start or fork a gateway; the message says why."""


# ------------------------------------------------------------------ the lab's side


class ForkedProcess:
    """A gateway forked by the server, with what lab.net.gateway and lab.net.lab use of a Popen:
    pid, args, returncode, poll, wait, send_signal, terminate, kill. Signals go through a pidfd,
    so a PID used again after the gateway ended is never hit."""

    def __init__(self, pid: int, pidfd: int, conn: socket.socket, args: list[str]) -> None:
        self.pid, self.args = pid, args
        self.returncode: int | None = None
        self._pidfd: int | None = pidfd
        self._conn: socket.socket | None = conn
        self._lock = threading.Lock()

    def _collect(self, timeout: float | None) -> None:
        """Take the exit status if the gateway ended within `timeout` (0: do not wait)."""
        with self._lock:
            if self.returncode is not None:
                return
            if self._conn is None:  # the server is gone: only the pidfd tells when the gateway ends
                if select.select([self._pidfd], [], [], timeout)[0]:  # type: ignore[type-var]  # no None: returncode is None
                    self._done(255)  # its status went with the server
                return
            ready = select.select([self._conn, self._pidfd], [], [], timeout)[0]  # type: ignore[type-var]  # as above
            if not ready:
                return
            if self._conn not in ready:
                # it ended; the server reports its status in a moment
                select.select([self._conn], [], [], 2.0)
            try:
                data = self._conn.recv(4096) if select.select([self._conn], [], [], 0)[0] else b""
            except OSError:
                data = b""
            if data:
                self._done(int(json.loads(data)["exit"]))
                return
            self._conn.close()
            self._conn = None
            if select.select([self._pidfd], [], [], 0)[0]:  # type: ignore[type-var]  # no None: returncode is None
                self._done(255)

    def _done(self, code: int) -> None:
        self.returncode = code
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    def poll(self) -> int | None:
        self._collect(0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(self.args, timeout)  # type: ignore[arg-type]  # not None: left is set
            self._collect(left)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        with self._lock:
            if self._pidfd is None:
                return
            try:
                signal.pidfd_send_signal(self._pidfd, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class HostedGateway(ForkedProcess):
    """A gateway running as a thread of the lab's gateway host, Popen-like as a ForkedProcess:
    `pid` is the host's; a signal is a request to the host (see the module's docstring). If the
    host ends without reporting this gateway's end (a crash of the process: a fault, SIGKILL), the
    gateway's log says so and its returncode is the host's (-N for signal N, as Popen's)."""

    def __init__(self, pid: int, conn: socket.socket, args: list[str], host: ForkedProcess | None = None,
                 log_fd: int = -1) -> None:
        super().__init__(pid, -1, conn, args)
        self._pidfd = None
        self._host = host
        self._log_fd = log_fd  # our own copy of the gateway's log, to say there that the host ended

    def _collect(self, timeout: float | None) -> None:
        with self._lock:
            if self.returncode is not None:
                return
            if self._conn is not None and not select.select([self._conn], [], [], timeout)[0]:
                return
            try:
                data = self._conn.recv(4096) if self._conn is not None else b""
            except OSError:
                data = b""
            self._done(int(json.loads(data)["exit"]) if data else self._host_ended())

    def _host_ended(self) -> int:
        """No answer: the host ended without reporting this gateway's end. Say so in its log."""
        code = None
        if self._host is not None:
            try:
                code = self._host.wait(5)
            except subprocess.TimeoutExpired:
                pass
        how = ("its status is not known" if code is None or code == 255 else
               f"killed by {signal_name(-code)}" if code < 0 else f"exit status {code}")
        self._say(f"ipsec-lab: the gateway host (pid {self.pid}) that ran this gateway as a thread ended ({how}), "
                  "and this gateway with it: no goodbye to its peers. Each gateway of that host says so in its log.")
        return code if code is not None and code != 0 else 255

    def _say(self, line: str) -> None:
        if self._log_fd >= 0:
            try:
                os.write(self._log_fd, f"{line}\n".encode())
            except OSError:
                pass

    def _done(self, code: int) -> None:
        super()._done(code)
        if self._log_fd >= 0:
            os.close(self._log_fd)
            self._log_fd = -1

    def send_signal(self, sig: int) -> None:
        with self._lock:
            if self._conn is None:
                return
            try:
                self._conn.send(json.dumps({"signal": int(sig)}).encode())
            except OSError:
                pass


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class ForkServer:
    """The lab's end of a fork server. `start()` returns self, or None with `reason` set. With
    `threads`, spawn() runs gateways as threads of one gateway host (`track` is told of its
    process), and forks them as usual if the host cannot start."""

    def __init__(self, log: str | Path | None = None, start_timeout: float = 60.0, *, threads: bool = False,
                 track: Any = None) -> None:
        self.log = Path(log) if log else None
        self.start_timeout = start_timeout
        self.process: subprocess.Popen | None = None
        self.reason = ""
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self.threads = threads
        self.host_process: ForkedProcess | None = None
        self.host_unavailable = ""  # why gateways are forked instead ("": not known yet)
        self._track = track
        self._host_sock: socket.socket | None = None
        self._host_lock = threading.Lock()

    @property
    def argv(self) -> list[str]:
        return [sys.executable, "-u", "-m", "lab.net.forkserver"]

    def command(self, fd: int) -> list[str]:
        # the last argument is room for each child to write its own command line into (ps, pgrep -f)
        return self.argv + [str(fd), " " * TITLE_ROOM]

    def start(self, popen: Any = subprocess.Popen) -> ForkServer | None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL
        try:
            # a session of its own: a terminal's Ctrl-C reaches the lab, which stops the gateways
            self.process = popen(self.command(theirs.fileno()), pass_fds=[theirs.fileno()],
                                 stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                 cwd=str(REPO), env=dict(os.environ, PYTHONUNBUFFERED="1"), start_new_session=True)
        except OSError as err:
            self.reason = f"cannot run {sys.executable}: {err}"
            ours.close()
            return None
        finally:
            theirs.close()
            if out is not subprocess.DEVNULL:
                out.close()  # type: ignore[union-attr]  # not DEVNULL: the log file opened above
        ready = select.select([ours], [], [], self.start_timeout)[0]
        answer = ours.recv(4096) if ready else b""
        if answer != b"ready":
            ours.close()
            self.stop()
            self.reason = (answer.decode(errors="replace") if answer.startswith(b"error")
                           else "it did not answer" if not ready else "it ended while starting")
            self.reason += f" (see {self.log})" if self.log else ""
            return None
        self._sock = ours
        return self

    @property
    def running(self) -> bool:
        return self._sock is not None and self.process is not None and self.process.poll() is None

    def spawn(self, node_pid: int, argv: list[str], env: dict[str, str], cwd: str, log_fd: int,
              timeout: float = 10.0) -> ForkedProcess:
        """Fork `python -m lab.cli ARGS` (argv as for a fresh process) into the namespaces of the
        process `node_pid`, with `log_fd` as its stdout and stderr."""
        if argv[1:3] != ["-m", MODULE]:
            raise ForkServerError(f"the fork server runs only `python -m {MODULE} ...`, not {argv[:3]}")
        if not self.running:
            raise ForkServerError("the fork server is not running")
        request = {"node": node_pid, "module": argv[2], "args": argv[3:], "argv": argv, "env": env, "cwd": cwd}
        if self.threads and argv[3:4] == ["daemon"]:
            hosted = self._spawn_hosted(request, log_fd, timeout)
            if hosted is not None:
                return hosted
        answer, fds, mine = self._ask(self._sock, self._lock, "the fork server", request, [log_fd], timeout)
        if "pid" not in answer or not fds:
            mine.close()
            for fd in fds:
                os.close(fd)
            raise ForkServerError(answer.get("error", "no answer"))
        return ForkedProcess(int(answer["pid"]), fds[0], mine, list(argv))

    @staticmethod
    def _ask(sock: socket.socket | None, lock: threading.Lock, who: str, request: dict, fds: list[int],
             timeout: float) -> tuple[dict, list[int], socket.socket]:
        """Send `request` with a new socket pair's end and `fds`; the answer, the descriptors that
        came with it, and our end of the pair (on which the exit status comes later)."""
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            if sock is None:
                raise OSError("it is not running")
            with lock:
                socket.send_fds(sock, [json.dumps(request).encode()], [theirs.fileno(), *fds])
        except OSError as err:
            mine.close()
            raise ForkServerError(f"{who} does not take requests: {err}") from None
        finally:
            theirs.close()
        if not select.select([mine], [], [], timeout)[0]:
            mine.close()
            raise ForkServerError(f"{who} did not answer within {timeout:g} s")
        data, got, _flags, _addr = socket.recv_fds(mine, 65536, 1)
        return (json.loads(data) if data else {"error": f"{who} ended"}), got, mine

    def _spawn_hosted(self, request: dict, log_fd: int, timeout: float) -> HostedGateway | None:
        """The gateway as a thread of the gateway host (started the first time); None if there is
        no host (it is forked instead)."""
        with self._host_lock:
            if self._host_sock is None and not self.host_unavailable:
                self._start_host(timeout)
            sock = self._host_sock
        if sock is None:
            return None
        answer, fds, mine = self._ask(sock, self._lock, "the gateway host", request, [log_fd], timeout)
        for fd in fds:
            os.close(fd)
        if "pid" in answer:
            return HostedGateway(int(answer["pid"]), mine, list(request["argv"]), self.host_process, os.dup(log_fd))
        mine.close()
        raise ForkServerError(answer.get("error", "no answer"))

    def _start_host(self, timeout: float) -> None:
        requests, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        argv = [sys.executable, "-m", "lab.net.forkserver", "--gateway-host"]
        out = os.open(self.log if self.log else os.devnull, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            answer, fds, mine = self._ask(self._sock, self._lock, "the fork server",
                                          {"host": True, "node": 0, "argv": argv, "env": dict(os.environ),
                                           "cwd": str(REPO)}, [out, theirs.fileno()], timeout)
        except ForkServerError as err:
            requests.close()
            self.host_unavailable = str(err)
            return
        finally:
            os.close(out)
            theirs.close()
        if "pid" not in answer or not fds:
            requests.close()
            mine.close()
            self.host_unavailable = answer.get("error", "no answer")
            return
        self.host_process = ForkedProcess(int(answer["pid"]), fds[0], mine, argv)
        self._host_sock = requests
        if self._track is not None:
            self._track(self.host_process, argv)

    def stop(self, timeout: float = 10.0) -> None:
        """End the server (not the gateways it forked: the lab stops those) and the gateway host
        (which stops the gateways it still runs, as SIGTERM would)."""
        with self._host_lock:
            host_sock, self._host_sock = self._host_sock, None
            self.host_unavailable = self.host_unavailable or "the fork server stopped"
        if host_sock is not None:
            host_sock.close()  # end of file: the host stops its gateways and ends
        if self.host_process is not None:
            try:
                self.host_process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.host_process.kill()
                self.host_process.wait(5)
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()  # end of file: the server stops
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def enabled() -> bool:
    """IPSEC_LAB_FORK=0 starts every gateway as a fresh process, as before the fork server."""
    return os.environ.get("IPSEC_LAB_FORK", "1").strip() not in ("0", "no", "false", "off")


# a lab that runs more of our gateways than this runs them as threads of one gateway host unless
# told otherwise (bench/README.md, scale.py: from 3 gateways on they take a third less memory than
# forked ones, from 25 on a sixth, and come up as fast); labs of two stay as they were tested longest
THREADS_ABOVE = 2


def threads_setting() -> bool | None:
    """IPSEC_LAB_GATEWAY_THREADS: 1 runs our gateways as threads of one gateway host, 0 forks each;
    unset (or `auto`): None, the lab decides by how many it runs (threads_for)."""
    text = os.environ.get("IPSEC_LAB_GATEWAY_THREADS", "").strip().lower()
    if text in ("1", "yes", "true", "on"):
        return True
    if text in ("0", "no", "false", "off"):
        return False
    return None


def threads_for(gateways: int) -> bool:
    """The default for a lab of `gateways` of our gateways: threads above THREADS_ABOVE."""
    return gateways > THREADS_ABOVE


# ------------------------------------------------------------------ the server


_libc = ctypes.CDLL(None, use_errno=True)


def _setns(path: str, nstype: int) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, nstype) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


def enter_namespaces(node_pid: int) -> None:
    """Into the network namespace of `node_pid`, and its mount namespace if it differs from ours."""
    _setns(f"/proc/{node_pid}/ns/net", CLONE_NEWNET)
    if os.stat(f"/proc/{node_pid}/ns/mnt").st_ino != os.stat("/proc/self/ns/mnt").st_ino:
        _setns(f"/proc/{node_pid}/ns/mnt", CLONE_NEWNS)


def set_command_line(argv: list[str]) -> None:
    """Write `argv` over this process's command line (/proc/self/cmdline, what ps and pgrep -f
    show), as far as the room of the server's own command line allows."""
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end (proc(5): fields 48 and 49)
    text = b"\0".join(a.encode() for a in argv)[:end - start - 1]
    ctypes.memmove(start, text.ljust(end - start, b"\0"), end - start)


def _child(request: dict, log_fd: int, report: int, inherited: list, host_fd: int = -1) -> None:
    """In the forked child: become the gateway (or, with `host_fd`, the gateway host), then exit
    (never returns)."""
    code = 1
    try:
        for thing in inherited:  # the server's sockets and pidfds: only the server holds them
            thing.close() if hasattr(thing, "close") else os.close(thing)
        os.setsid()
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        if host_fd < 0:
            enter_namespaces(request["node"])
        os.chdir(request["cwd"])
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        os.environ.clear()
        os.environ.update(request["env"])
        import atexit
        import importlib

        atexit._clear()
        if host_fd >= 0:
            set_command_line(request["argv"])
            os.write(report, b"ok")
            os.close(report)
            report = -1
            code = serve_gateways(socket.socket(fileno=host_fd))
        else:
            # `python -m MODULE ARGS` is `sys.exit(MODULE.main())` with sys.argv[1:] = ARGS; the module
            # (lab.cli) is imported here already, its pages shared
            module = importlib.import_module(request["module"])
            sys.argv = [module.__file__, *request["args"]]  # type: ignore[list-item]  # imported from a file: it has one
            set_command_line(request["argv"])
            os.write(report, b"ok")
            os.close(report)
            report = -1
            code = _run_main(module, None)
        atexit._run_exitfuncs()
    except BaseException as err:  # whatever happens, the child must not return
        if report >= 0:
            try:
                os.write(report, f"{type(err).__name__}: {err}".encode())
            except OSError:
                pass
        else:
            import traceback

            traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code if isinstance(code, int) and 0 <= code < 256 else 1)


def _run_main(module: Any, args: list[str] | None, hosted: bool = False) -> int:
    """`module.main(args)` as `python -m` runs it: its exit status, whatever it raises. `hosted`:
    in a thread of the gateway host, whose other gateways an exception here does not end."""
    try:
        code = module.main(args) if args is not None else module.main()
    except SystemExit as end:
        code = end.code if isinstance(end.code, int) else (0 if end.code is None else 1)
        if not isinstance(end.code, (int, type(None))):
            print(end.code, file=sys.stderr)
    except BaseException:  # what `python -m` does with an exception nobody caught
        import traceback

        traceback.print_exc()
        if hosted:
            print(f"ipsec-lab daemon: ended by the exception above (exit status 1); it ran as a thread of the gateway "
                  f"host (pid {os.getpid()}), whose other gateways run on", file=sys.stderr)
        code = 1
    return code if isinstance(code, int) else 1


class _ThreadOutput:
    """sys.stdout or sys.stderr of a gateway host: what a gateway's thread writes goes to that
    gateway's log; anything else to the host's own output."""

    def __init__(self, default: Any, streams: dict[int, Any]) -> None:
        self._default, self._streams = default, streams

    def _target(self) -> Any:
        return self._streams.get(threading.get_ident(), self._default)

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        self._target().flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target(), name)


def serve_gateways(requests: socket.socket) -> int:
    """The gateway host: a thread for each gateway asked for on `requests` (as the server is
    asked to fork one), and a signal sent to one passed to its gateway (lab.daemon.gateway's
    signal_thread). Ends, having stopped its gateways as SIGTERM does, when the lab closes
    `requests` or ends, or on SIGTERM."""
    import resource
    import selectors

    from lab.daemon.gateway import signal_thread

    # a gateway holds a dozen descriptors (sockets, TUN device, log, trace): a hundred pass 1024,
    # the usual soft limit, and select()'s
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    streams: dict[int, Any] = {}
    sys.stdout = _ThreadOutput(sys.stdout, streams)
    sys.stderr = _ThreadOutput(sys.stderr, streams)
    gateways: dict[socket.socket, threading.Thread] = {}  # connection -> the gateway's thread

    def stop(_signum: int = 0, _frame: object = None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # a signal may land in a gateway's thread; this wakes the main thread's select to run the handler
    wake_r, wake_w = socket.socketpair()
    wake_w.setblocking(False)
    signal.set_wakeup_fd(wake_w.fileno())
    watched = selectors.DefaultSelector()
    watched.register(requests, selectors.EVENT_READ)
    watched.register(wake_r, selectors.EVENT_READ)
    try:
        while True:
            for key, _events in watched.select():
                ready = key.fileobj
                if ready is wake_r:
                    wake_r.recv(4096)
                    continue
                if ready is requests:
                    data, fds, _flags, _addr = socket.recv_fds(requests, 65536, 2)
                    if not data:
                        return 0  # the lab closed its end or ended
                    if len(fds) != 2:
                        for fd in fds:
                            os.close(fd)
                        continue
                    conn = socket.socket(fileno=fds[0])
                    thread = threading.Thread(target=_hosted_gateway, args=(json.loads(data), conn, fds[1], streams),
                                              daemon=True)
                    thread.start()
                    gateways[conn] = thread
                    watched.register(conn, selectors.EVENT_READ)
                    continue
                assert isinstance(ready, socket.socket)
                try:
                    data = ready.recv(4096)
                except OSError:
                    data = b""
                if not data:  # the lab took the exit status, or is gone
                    del gateways[ready]
                    watched.unregister(ready)
                    ready.close()
                    continue
                signum = json.loads(data).get("signal")
                if isinstance(signum, int) and gateways[ready].ident is not None:
                    signal_thread(gateways[ready].ident, signum)  # type: ignore[arg-type]  # not None: tested above
    except SystemExit:
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        running = [thread for thread in gateways.values() if thread.is_alive()]
        for thread in running:
            if thread.ident is not None:
                signal_thread(thread.ident, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for thread in running:
            thread.join(max(0.0, deadline - time.monotonic()))


def _hosted_gateway(request: dict, conn: socket.socket, log_fd: int, streams: dict[int, Any]) -> None:
    """A gateway host's thread: into the node's network namespace, then `lab.cli daemon ...`
    with its output in its log; its exit status to the lab at the end."""
    import importlib

    from lab.daemon.gateway import forget_thread

    ident = threading.get_ident()
    log = None
    answered = False
    code = 1
    try:
        try:
            if request.get("args", [])[:1] != ["daemon"]:
                raise ForkServerError("a gateway host runs only `lab.cli daemon ...`")
            # the network namespace only: a thread of a process cannot enter a mount namespace
            _setns(f"/proc/{int(request['node'])}/ns/net", CLONE_NEWNET)  # this thread's alone
            log = open(log_fd, "w", encoding="utf-8", errors="replace", buffering=1, closefd=True)
            log_fd = -1
        except (OSError, ValueError, ForkServerError) as err:
            conn.send(json.dumps({"error": f"{type(err).__name__}: {err}"}).encode())
            return
        streams[ident] = log
        conn.send(json.dumps({"pid": os.getpid()}).encode())
        answered = True
        code = _run_main(importlib.import_module(request["module"]), list(request["args"]), hosted=True)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        forget_thread(ident)
        streams.pop(ident, None)
        if log is not None:
            log.close()
        elif log_fd >= 0:
            os.close(log_fd)
        if answered:
            try:
                conn.send(json.dumps({"exit": code if 0 <= code < 256 else 1}).encode())
            except OSError:
                pass


def _warm() -> None:
    import importlib
    import pkgutil

    for name in WARM:
        try:
            importlib.import_module(name)
        except Exception:  # a module we cannot import now, the daemon imports itself
            pass
    for package in PACKAGES:
        module = importlib.import_module(package)
        for info in pkgutil.walk_packages(module.__path__, package + "."):
            try:
                importlib.import_module(info.name)
            except Exception:
                pass


def warm_up(rounds: int = 10) -> None:
    """Run the IKE core's common paths a few times here, before forking: Python specialises the
    bytecode a function runs often, in its code object; done here, that happens once in pages
    every gateway shares instead of in each gateway's own copy."""
    from lab.ike.memnet import make_net, pair_configs

    for _ in range(rounds):
        net = make_net(*pair_configs())
        net.endpoints["a"].initiate("s2s", net.now)
        net.settle()


def serve(sock: socket.socket) -> None:
    children: dict[int, tuple[int, socket.socket]] = {}  # pidfd -> (pid, connection)

    def stop(_signum: int = 0, _frame: object = None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _warm()
        warm_up()
        gc.collect()
        gc.freeze()  # the collector never touches the imported objects: their pages stay shared
        sock.send(b"ready")
    except BaseException as err:
        sock.send(f"error: the fork server could not import the daemon: {type(err).__name__}: {err}".encode())
        raise
    try:
        while True:
            readable: list[Any] = select.select([sock, *children], [], [])[0]  # type: ignore[type-var]  # a socket, ints
            for ready in readable:
                if ready is sock:
                    data, fds, _flags, _addr = socket.recv_fds(sock, 65536, 3)
                    if not data:
                        return  # the lab closed its end or ended
                    _fork(json.loads(data), fds, sock, children)
                else:
                    pid, conn = children.pop(ready)
                    _pid, status = os.waitpid(pid, 0)
                    os.close(ready)
                    try:
                        conn.send(json.dumps({"exit": os.waitstatus_to_exitcode(status)}).encode())
                    except OSError:
                        pass
                    conn.close()
    finally:
        # the gateways live on as they would as fresh processes: the lab stops them (or, after a
        # crash, lab.net.cleanup finds them in its nodes' namespaces)
        for pidfd, (_pid, conn) in children.items():
            os.close(pidfd)
            conn.close()


def _fork(request: dict, fds: list[int], sock: socket.socket, children: dict) -> None:
    if len(fds) != (3 if request.get("host") else 2):
        for fd in fds:
            os.close(fd)
        return
    conn, log_fd = socket.socket(fileno=fds[0]), fds[1]
    host_fd = fds[2] if len(fds) == 3 else -1  # the gateway host's requests
    report_r, report_w = os.pipe()
    inherited = [sock, report_r, *children, *(c for _pid, c in children.values()), conn]
    pid = os.fork()
    if pid == 0:
        _child(request, log_fd, report_w, inherited, host_fd)
    os.close(report_w)
    os.close(log_fd)
    if host_fd >= 0:
        os.close(host_fd)
    said = b""
    while True:
        chunk = os.read(report_r, 4096)  # "ok", or why the child could not start; ends when it closes
        if not chunk:
            break
        said += chunk
        if said == b"ok":
            break
    os.close(report_r)
    try:
        if said == b"ok":
            try:
                pidfd = os.pidfd_open(pid)  # Linux 5.3
            except OSError as err:
                os.kill(pid, signal.SIGKILL)  # a gateway the lab cannot watch must not run
                said = f"pidfd_open: {err.strerror}".encode()
            else:
                socket.send_fds(conn, [json.dumps({"pid": pid}).encode()], [pidfd])
                children[pidfd] = (pid, conn)
                return
        os.waitpid(pid, 0)
        conn.send(json.dumps({"error": said.decode(errors="replace") or "the child ended at once"}).encode())
    except OSError:
        pass
    conn.close()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    sock = socket.socket(fileno=int(args[0]))
    try:
        serve(sock)
    except SystemExit:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
