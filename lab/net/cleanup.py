"""What a lab run started, written down while it runs, so that everything of ours and only
that can be removed: by the run itself, by the tests, and by `ipsec-lab clean` after a crash.

One lab at a time owns the lab lock (/run/ipsec-lab.lock, an flock): the machine's for a lab
built on the host itself (`--host`), its world's for a lab in a world of its own
(lab.net.world: each world has its own /run, so worlds do not wait for each other). While it
runs it keeps a record in /run/ipsec-lab/labs/<pid>.json: the network namespace of each of
its nodes (by inode), the node shells, the veth names it created and the processes it
started (by PID and start time: a daemon that renames itself, as ocserv does to ocserv-main, is
still known). `remove(record)` kills every process inside those namespaces (which deletes the
namespaces and their interfaces), deletes any of the links still in the root namespace and
drops the record. A record whose owner is still alive is never touched.
"""
from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

LOCK_PATH = Path("/run/ipsec-lab.lock")
RECORDS = Path("/run/ipsec-lab/labs")


class LabBusy(RuntimeError):
    """Another lab holds the lock."""


# ------------------------------------------------------------------ the lock


def _lock_holders(path: Path) -> list[int]:
    """PIDs holding an flock on `path` (from /proc/locks)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return []
    wanted = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    holders = []
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        parts = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 00:1a:5678 0 EOF"; blocked waiters carry "->"
        if "->" in parts or len(parts) < 6 or parts[1] != "FLOCK":
            continue
        if parts[5] == wanted:
            holders.append(int(parts[4]))
    return holders


def _ancestors(pid: int | None = None) -> set[int]:
    pid = os.getpid() if pid is None else pid
    seen = set()
    while pid > 1 and pid not in seen:
        seen.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return seen


def describe_pid(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return f"pid {pid}"
    text = " ".join(" ".join(a.decode(errors="replace") for a in argv if a).split())  # `python -c` code on one line
    try:  # a daemon that renamed itself (ocserv's ocserv-main, ocserv-sm) is named as ps shows it
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        comm = ""
    if comm and argv and not text.startswith(comm) and not os.path.basename(
            argv[0].decode(errors="replace")).startswith(comm):  # nginx's title already starts with its name
        text = f"{comm}: {text}"
    return f"pid {pid} ({text[:80]})" if text else f"pid {pid}"


class LabLock:
    """The machine-wide lab lock. Taken already by an ancestor (a test run under
    `flock /run/ipsec-lab.lock ...`) counts as ours."""

    def __init__(self, path: Path = LOCK_PATH) -> None:
        self.path = path
        self.fd: int | None = None
        self.nested = False

    def acquire(self, wait: bool = True, say: Callable[[str], object] | None = None) -> LabLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self.fd = fd
                return self
            except BlockingIOError:
                holders = _lock_holders(self.path)
                if holders and set(holders) & _ancestors():
                    os.close(fd)
                    self.nested = True
                    return self
                if not wait:
                    os.close(fd)
                    who = ", ".join(describe_pid(p) for p in holders) or "another process"
                    raise LabBusy(f"another lab is running ({who}); wait for it to end or stop it") from None
                if not told and say is not None:
                    who = ", ".join(describe_pid(p) for p in holders) or "another process"
                    say(f"waiting for the lab run by {who} to end ...")
                    told = True
                time.sleep(0.2)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the last descriptor drops the flock
            self.fd = None
        self.nested = False

    def __enter__(self) -> LabLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


# ------------------------------------------------------------------ the record of a run


def netns_inode(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def protected_netns() -> set[int]:
    """Namespaces never to empty: ours, our parent's and init's (where readable: PID 1's is not
    always). A lab's nodes live in namespaces of their own; the lab itself never does."""
    return {i for i in (netns_inode(1), netns_inode(os.getpid()), netns_inode(os.getppid())) if i}


ROOT_NETNS = netns_inode(os.getpid())  # the machine's namespace, where the lab runs


_SAVE_LOCK = threading.RLock()


@dataclass
class LabRecord:
    """What one lab run created. Saved on every change, so a crash leaves it behind."""

    owner: int = field(default_factory=os.getpid)
    owner_start: int = field(default_factory=lambda: _start_time(os.getpid()))
    name: str = ""
    out: str = ""                                               # the run folder, if any
    netns: dict[str, int] = field(default_factory=dict)       # node -> network namespace inode
    shells: dict[str, int] = field(default_factory=dict)      # node -> PID of its Mininet shell
    links: list[str] = field(default_factory=list)            # veth names the lab created
    processes: dict[str, list] = field(default_factory=dict)  # "pid" -> [node, argv0, start time]
    started: float = field(default_factory=time.time)

    @property
    def path(self) -> Path:
        return RECORDS / f"{self.owner}.json"

    def save(self) -> None:
        # Steps run in threads (background, parallel joins) and each may add a process: one
        # writer at a time, each with its own temporary file, so no rename finds its file gone.
        with _SAVE_LOCK:
            RECORDS.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".{threading.get_ident()}.tmp")
            tmp.write_text(json.dumps(self.__dict__, indent=1))
            tmp.replace(self.path)

    def add_node(self, name: str, shell_pid: int) -> None:
        self.shells[name] = shell_pid
        inode = netns_inode(shell_pid)
        if inode is not None and inode not in protected_netns():
            self.netns[name] = inode

    def add_process(self, node: str, pid: int, argv0: str) -> None:
        with _SAVE_LOCK:
            self.processes[str(pid)] = [node, os.path.basename(argv0), _start_time(pid)]
            self.save()

    def drop(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    @classmethod
    def load(cls, path: Path) -> LabRecord | None:
        try:
            data = json.loads(path.read_text())
            return cls(**data)
        except (OSError, ValueError, TypeError):
            return None


def records() -> Iterator[LabRecord]:
    if not RECORDS.is_dir():
        return
    for path in sorted(RECORDS.glob("*.json")):
        record = LabRecord.load(path)
        if record is not None:
            yield record


def _start_time(pid: int) -> int:
    """The process's start time in clock ticks since boot (tells a reused PID apart)."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return -1


def owner_alive(record: LabRecord) -> bool:
    return _alive(record.owner) and _start_time(record.owner) == record.owner_start


def _alive(pid: int) -> bool:
    """The process exists and has not exited. A zombie has (it waits only to be reaped: in a
    world, whose first process reaps nobody, a killed run's gateways stay zombies) and is
    nothing to clean."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return not _zombie(pid)


def _ours(pid: int, entry: list) -> bool:
    """Is `pid` still the process the record names? By its start time (a PID reused since has
    another); a daemon may rename itself (ocserv becomes ocserv-main), so its name does not tell.
    Records written before start times were kept compare the name."""
    if not _alive(pid):
        return False
    if len(entry) > 2 and entry[2] != -1:
        return _start_time(pid) == entry[2]
    return _argv0(pid) == entry[1]


def _argv0(pid: int) -> str:
    try:
        return os.path.basename(Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace"))
    except (OSError, IndexError):
        return ""


def processes_in(inodes: set[int]) -> list[int]:
    """PIDs of every process whose network namespace is one of `inodes` (never the root one)."""
    inodes = {i for i in inodes if i} - protected_netns()
    if not inodes:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid() and netns_inode(int(entry)) in inodes:
            found.append(int(entry))
    return found


def _root_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    names = set()
    for line in out.splitlines():
        parts = line.split(":", 2)
        if len(parts) >= 2:
            names.add(parts[1].strip().split("@")[0])
    return names


def leftovers(record: LabRecord) -> list[str]:
    """What of `record` still exists: processes in its namespaces, its processes by PID, its
    shells, its links in the root namespace, and mounts below strongSwan 6's root file system."""
    found = [f"process {describe_pid(pid)} in a lab namespace" for pid in processes_in(set(record.netns.values()))]
    pids_seen = {int(s.split()[1]) for s in found if s.split()[1].isdigit()}
    for pid_text, entry in record.processes.items():
        if int(pid_text) not in pids_seen and _ours(int(pid_text), entry):
            found.append(f"process {describe_pid(int(pid_text))} started on {entry[0]}")
    for node, pid in record.shells.items():
        if pid not in pids_seen and _alive(pid) and f"mininet:{node}".encode() in _cmdline(pid):
            found.append(f"shell of {node} ({describe_pid(pid)})")
    present = _root_links()
    found += [f"link {name}" for name in record.links if name in present]
    found += [f"mount {point} (strongSwan 6's root file system)" for point in _root_fs_mounts()]
    return found


# strongSwan 6's root file system (scripts/setup.sh builds it; lab.net.strongswan6 runs charon in it)
STRONGSWAN6_ROOT = Path(os.environ.get("IPSEC_LAB_STRONGSWAN6_ROOT", "/var/lib/ipsec-lab/strongswan6"))


def _root_fs_mounts() -> list[str]:
    """Mounts below strongSwan 6's root file system in our mount namespace: a run makes them in
    charon's own mount namespace only (lab.net.strongswan6), so one here is a leftover."""
    return mounts_below()


def mounts_below(root: Path = STRONGSWAN6_ROOT, mountinfo: str = "/proc/self/mountinfo") -> list[str]:
    """Mount points below `root` in a mount namespace (default: ours); a run makes its mounts in
    charon's own namespace, so any found in ours is a leftover."""
    try:
        text = Path(mountinfo).read_text()
    except OSError:
        return []
    prefix = str(root).rstrip("/") + "/"
    found = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) > 4:
            point = fields[4].replace("\\040", " ")
            if point.startswith(prefix) or point == str(root):
                found.append(point)
    return found


def unmount(points: list[str]) -> None:
    """Unmount (lazily, deepest first) mount points found by mounts_below."""
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def remove(record: LabRecord, timeout: float = 5.0) -> list[str]:
    """Remove everything `record` names; returns what was found (empty: it was clean)."""
    found = leftovers(record)
    targets = set(processes_in(set(record.netns.values())))
    for pid_text, entry in record.processes.items():
        if _ours(int(pid_text), entry):
            targets.add(int(pid_text))
    for node, pid in record.shells.items():
        if _alive(pid) and f"mininet:{node}".encode() in _cmdline(pid):
            targets.add(pid)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in targets:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + (timeout if sig == signal.SIGTERM else 2 * timeout)
        while time.monotonic() < deadline and any(_alive(p) and not _zombie(p) for p in targets):
            time.sleep(0.05)
        targets = {p for p in targets if _alive(p) and not _zombie(p)}
        if not targets:
            break
    present = _root_links()
    for name in record.links:
        if name in present:
            subprocess.run(["ip", "link", "del", name], capture_output=True)
    unmount(_root_fs_mounts())
    record.drop()
    return found


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


def clean(say: Callable[[str], object] = print) -> list[str]:
    """Remove what crashed lab runs left (their owners are gone); a running lab is left alone."""
    found = []
    for record in records():
        if record.owner != os.getpid() and owner_alive(record):
            say(f"a lab is running ({describe_pid(record.owner)}): left alone")
            continue
        left = remove(record)
        found += left
    return found
