"""Worlds: each lab in namespaces of its own, so that any number run side by side, without root.

A command of ours that builds a lab (`ipsec-lab run`, `up`, `demo`, a notebook's run) re-runs
itself inside a *world*: new mount, network and PID namespaces made by util-linux's unshare(1),
and for a user without root a user namespace too, in which the caller is root (its other IDs
map to the caller's subordinate IDs in /etc/subuid and /etc/subgid, through Debian's uidmap, so
that tcpdump may change its groups). In the world /run is an empty tmpfs (the lab lock and the
records of lab.net.cleanup, charon's PID file) and loopback is up; Mininet, our daemons, charon
and tcpdump run there and see only that world's interfaces. Nothing on the host changes: the
world's PID 1 is the command, and when it ends the kernel ends everything left in the world
with it, its network namespaces and interfaces too. Node names stay those of the scenario.

    if not world.inside():
        return world.run_command(["run", "net2net-nat"])   # the same command, in a world

The run folder is written where the caller asked (the file system is shared); in a user
namespace the world's root is the caller, so the folder is the caller's. How many worlds run at
once on the machine is limited by slots: flocks on files in a directory shared by every user
(IPSEC_LAB_SLOTS, default /tmp/ipsec-lab-slots), IPSEC_LAB_MAX_LABS of them (default: the number
of CPUs, at least 2; 0: no limit). A world that finds them all taken says so, waits, and says
how long it waited. The limit is a courtesy between trainees, not a security boundary.
"""
from __future__ import annotations

import ctypes
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .cleanup import _lock_holders, describe_pid

MARKER = "IPSEC_LAB_WORLD"          # set inside a world: the host PID of the process that made it
USERNS = "IPSEC_LAB_WORLD_USERNS"   # "1" inside a world with a user namespace of its own
HOST = "IPSEC_LAB_HOST"             # "1": commands build their labs on the host itself, as --host
SLOTS_ENV, LIMIT_ENV = "IPSEC_LAB_SLOTS", "IPSEC_LAB_MAX_LABS"
DEFAULT_SLOTS = Path("/tmp/ipsec-lab-slots")

# what the world's PID 1 does before the command: its own /run, loopback up
SETUP = ("mount -t tmpfs -o mode=0755 ipsec-lab-world /run && mkdir -p /run/lock && chmod 1777 /run/lock"
         " && ip link set lo up && exec \"$@\"")


class WorldError(RuntimeError):
    """A world cannot be made here; the message says why and what to install or do."""


def inside() -> bool:
    """True inside a world (or in a process started from one)."""
    return bool(os.environ.get(MARKER))


def tag(pid: int | None = None) -> str:
    """A name unique on the host for process `pid` of this world (default: this process), for
    paths outside /run (such as /tmp): the PID, and inside a world also the world's, since PIDs
    there start again at 1."""
    world = os.environ.get(MARKER)
    pid = os.getpid() if pid is None else pid
    return f"{world}-{pid}" if world else str(pid)


def unavailable() -> str | None:
    """Why a world cannot be made by this user here (None: it can)."""
    if shutil.which("unshare") is None:
        return "unshare is missing: apt-get install util-linux"
    if os.geteuid() == 0:
        return None
    if shutil.which("newuidmap") is None or shutil.which("newgidmap") is None:
        return ("a lab without root needs Debian's uidmap (newuidmap, newgidmap): ask the machine's administrator "
                "to run scripts/setup.sh (or apt-get install uidmap)")
    import pwd

    user = pwd.getpwuid(os.geteuid()).pw_name
    for path in ("/etc/subuid", "/etc/subgid"):
        try:
            lines = Path(path).read_text().splitlines()
        except OSError:
            lines = []
        if not any(line.split(":")[0] in (user, str(os.geteuid())) for line in lines if ":" in line):
            return (f"a lab without root needs subordinate IDs for {user} in {path}: ask the machine's administrator "
                    f"(usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user})")
    return None


def unshare_argv() -> list[str]:
    """unshare(1) with the namespaces of a world (and a user namespace when we are not root)."""
    argv = ["unshare"]
    if os.geteuid() != 0:
        argv += ["--map-root-user", "--map-auto"]
    return argv + ["--mount", "--net", "--pid", "--fork", "--mount-proc", "--propagation", "private",
                   "--kill-child=SIGTERM", "--", "sh", "-c", SETUP, "ipsec-lab-world"]


# ------------------------------------------------------------------ slots: how many worlds at once


def limit() -> int:
    text = os.environ.get(LIMIT_ENV, "").strip()
    if text:
        try:
            return max(0, int(text))
        except ValueError:
            raise WorldError(f"{LIMIT_ENV}={text!r} is not a whole number of labs") from None
    return max(2, os.cpu_count() or 2)


def slots_dir() -> Path:
    return Path(os.environ.get(SLOTS_ENV) or DEFAULT_SLOTS)


class Slot:
    """One of the machine's lab slots, held (an flock) while a world lives. Every process of the
    world inherits the descriptor, so the slot stays taken until the world is gone."""

    def __init__(self, directory: Path | None = None, count: int | None = None) -> None:
        self.directory = directory or slots_dir()
        self.count = limit() if count is None else count
        self.fd: int | None = None
        self.index: int | None = None
        self.waited = 0.0

    def _open(self, path: Path) -> int:
        while True:
            try:
                return os.open(path, os.O_RDONLY)  # a file of another user: reading is enough to flock it
            except FileNotFoundError:
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o644)
                    os.fchmod(fd, 0o644)
                    return fd
                except FileExistsError:
                    continue

    def _try(self, index: int) -> bool:
        path = self.directory / f"slot-{index}"
        fd = self._open(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        try:
            same = os.fstat(fd).st_ino == path.stat().st_ino  # not a file someone deleted meanwhile
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            return False
        self.fd, self.index = fd, index
        return True

    def holders(self) -> list[int]:
        return sorted({pid for i in range(self.count) for pid in _lock_holders(self.directory / f"slot-{i}")})

    def acquire(self, say: Callable[[str], None] = lambda line: None) -> Slot:
        if self.count == 0:
            return self
        if not self.directory.is_dir():
            self.directory.mkdir(parents=True, exist_ok=True)
            try:
                os.chmod(self.directory, 0o1777)  # every user takes slots here; only the owner deletes
            except PermissionError:
                pass
        started, told = time.monotonic(), False
        while True:
            if any(self._try(i) for i in range(self.count)):
                self.waited = time.monotonic() - started
                if told:
                    say(f"ipsec-lab: a lab slot is free after {self.waited:.1f} s of waiting; starting")
                return self
            if not told:
                who = "; ".join(describe_pid(pid) for pid in self.holders()) or "other users' labs"
                say(f"ipsec-lab: {self.count} labs are running on this machine, as many as it allows at once "
                    f"({LIMIT_ENV}={self.count}): waiting for one of them to end ({who}) ...")
                told = True
            time.sleep(0.5)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = self.index = None

    def __enter__(self) -> Slot:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


# ------------------------------------------------------------------ running a command in a world


def _die_with_parent() -> None:
    """In the child before exec: end (SIGKILL) when the process that made the world dies, so that
    unshare's --kill-child ends the world with it."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


def run(argv: list[str], *, say: Callable[[str], None] | None = None, slot: bool = True,
        lines: Callable[[str], None] | None = None, **popen: Any) -> int:
    """Run `argv` in a new world and wait for it; returns its exit status (128+N if signal N
    ended it). SIGTERM, SIGHUP and SIGINT sent to this process go on to the command (a terminal's
    Ctrl-C reaches it directly: it stays in the terminal's foreground). `slot`: take one of the
    machine's lab slots first (waiting for one, as `say` tells). `lines`: called with each line
    the command prints (stdout and stderr), instead of the command writing to ours."""
    reason = unavailable()
    if reason:
        raise WorldError(reason)
    say = say or (lambda line: print(line, file=sys.stderr, flush=True))
    held = Slot()
    if slot:
        held.acquire(lines or say)
    env = dict(popen.pop("env", None) or os.environ)
    env[MARKER] = str(os.getpid())
    if os.geteuid() != 0:
        env[USERNS] = "1"
    else:
        env.pop(USERNS, None)
    forwarded = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
    proc: subprocess.Popen[Any] | None = None  # set below; forward() may come before
    received: list[int] = []

    foreground = _terminal_foreground()

    def forward(signum: int, _frame: object) -> None:
        if signum == signal.SIGINT and foreground:
            return  # the terminal's Ctrl-C reaches the world's processes too: once is enough
        received.append(signum)
        if proc is not None:
            for child in _children(proc.pid):  # the world's PID 1 (unshare itself ignores them)
                try:
                    os.kill(child, signum)
                except ProcessLookupError:
                    pass

    main = _main_thread()
    previous = {sig: signal.signal(sig, forward) for sig in forwarded} if main else {}
    try:
        fds = tuple(popen.pop("pass_fds", ())) + ((held.fd,) if held.fd is not None else ())
        if lines is not None:
            popen.update(stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
        proc = subprocess.Popen(unshare_argv() + list(argv), env=env, pass_fds=fds,
                                preexec_fn=_die_with_parent, **popen)
        held.release()  # the world holds it now
        if received:
            forward(received[-1], None)
        if lines is not None:
            assert proc.stdout is not None  # a pipe: asked for above
            for line in proc.stdout:
                lines(line.rstrip("\n"))
        while True:
            try:
                code = proc.wait()
                break
            except KeyboardInterrupt:  # pragma: no cover - only without our handler
                continue
    finally:
        held.release()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code if code >= 0 else 128 - code


def _terminal_foreground() -> bool:
    """True when we are in the foreground of a terminal (whose Ctrl-C reaches our whole group)."""
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)
    except OSError:
        return False
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False
    finally:
        os.close(fd)


def run_command(args: list[str], *, say: Callable[[str], None] | None = None, slot: bool = True, **popen: Any) -> int:
    """`ipsec-lab ARGS` (this Python, this lab package) in a new world."""
    return run([sys.executable, "-m", "lab.cli", *args], say=say, slot=slot, **popen)


def own(path: str | Path) -> None:
    """In a world with a user namespace: make everything under `path` the world's root's, which is
    the caller outside (a process that ran under another ID may have written there)."""
    if os.environ.get(USERNS) != "1" or os.geteuid() != 0:
        return
    root = Path(path)
    if not root.exists():
        return
    for base, dirs, files in os.walk(root):
        for name in [base, *(os.path.join(base, f) for f in dirs + files)]:
            try:
                st = os.lstat(name)
                if st.st_uid != 0 or st.st_gid != 0:
                    os.lchown(name, 0, 0)
            except OSError:
                pass


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def main(argv: list[str] | None = None) -> int:
    """`python -m lab.net.world [--no-slot] -- COMMAND...`: COMMAND in a new world (scripts/test.sh
    runs its groups of lab tests this way)."""
    args = list(sys.argv[1:] if argv is None else argv)
    slot = True
    if args[:1] == ["--no-slot"]:
        slot, args = False, args[1:]
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        print("usage: python -m lab.net.world [--no-slot] -- COMMAND...", file=sys.stderr)
        return 2
    try:
        return run(args, slot=slot)
    except WorldError as err:
        print(f"ipsec-lab: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())


# ------------------------------------------------------------------ entering a running world (watch)


def _environ(pid: int) -> dict[str, str]:
    data = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in data.decode(errors="replace").split("\0") if "=" in item)


def worlds() -> list[tuple[int, list]]:
    """The running worlds this user may enter, each as (the host PID of its PID 1, the lab records
    in its /run). Another user's are not readable, and not listed."""
    from .cleanup import LabRecord

    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        pid = int(entry)
        try:
            nspid = [line for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                     if line.startswith("NSpid:")]
            if not nspid or nspid[0].split()[-1] != "1" or len(nspid[0].split()) < 3:
                continue
            if MARKER not in _environ(pid):
                continue
            labs = [LabRecord.load(p) for p in sorted(Path(f"/proc/{pid}/root/run/ipsec-lab/labs").glob("*.json"))]
        except OSError:
            continue
        found.append((pid, [r for r in labs if r is not None]))
    return found


def enter_argv(pid: int) -> tuple[list[str], dict[str, str]]:
    """nsenter(1) into the world whose PID 1 is `pid` (its user namespace too, if it has its own),
    and the environment a command of ours takes there."""
    argv = ["nsenter", "-t", str(pid), "--mount", "--net", "--pid"]
    env = dict(os.environ)
    inner = _environ(pid)
    env[MARKER] = inner.get(MARKER, str(pid))
    if os.stat(f"/proc/{pid}/ns/user").st_ino != os.stat("/proc/self/ns/user").st_ino:
        argv.append("--user")  # root in the world's user namespace, as its maker is
        env[USERNS] = "1"
    return argv + ["--"], env
