"""strongSwan 6 as a peer beside the system's strongSwan 5.9.8 (`gateways: {gwb: strongswan6}`).

Debian 12 has strongSwan 5.9.8 only; Debian 13 has 6.0.1 (RFC 9242 IKE_INTERMEDIATE and RFC 9370
additional key exchanges, `ke1_` ... `ke7_` in proposals). scripts/setup.sh builds a root file
system of Debian 13's packages with mmdebstrap (STRONGSWAN6_ROOT, nothing of the system's
strongSwan changes); on a machine whose own strongSwan is 6 already, that one is used as it is.

`StrongSwan6` is lab.net.strongswan.StrongSwan with charon and swanctl run from that root:
charon starts in the node's network namespace in a mount namespace of its own
(`unshare --mount --propagation private`), which gets a tmpfs on <root>/run (charon.pid, its
own per instance), the instance's workdir on <root>/mnt (strongswan.conf, swanctl/, the vici
socket and the log: the same files the host sees in workdir), proc on <root>/proc and the
node's /dev on <root>/dev (kernel-libipsec opens /dev/net/tun), then chroots into the root.
swanctl enters charon's mount namespace (nsenter) and the same chroot. The mounts exist only in
that mount namespace: they go when charon ends, by stop, kill, a failed run or Ctrl-C, and none
is ever visible on the host. lab.net.cleanup reports a mount below the root found in its own
mount namespace (which a correct run never makes) and unmounts it.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .cleanup import STRONGSWAN6_ROOT, mounts_below, unmount  # noqa: F401  (re-exported)
from .peers import PeerNode
from .strongswan import (
    CHARON,
    PLUGIN_DIR,
    SWANCTL,
    SWANCTL_PLUGINS,
    StrongSwan,
    StrongSwanError,
    available_plugins,
    check_installed,
)

STAMP = ".ipsec-lab-strongswan6"  # written by scripts/setup.sh once the root is complete
WORKDIR_INSIDE = "/mnt"           # where an instance's workdir appears inside the root

# in the new mount namespace: the mounts, then charon in the chroot ($1 root, $2 workdir, then argv)
_ENTER = ('r="$1"; w="$2"; shift 2; '
          'mount -t tmpfs -o mode=0755 ipsec-lab-strongswan6 "$r/run"; '
          f'mount --bind "$w" "$r{WORKDIR_INSIDE}"; '
          'mount -t proc proc "$r/proc"; '
          'mount --bind /dev "$r/dev"; '
          'exec chroot "$r" "$@"')


def _package_version(root: Path) -> str | None:
    """strongswan-charon's version in the dpkg database under `root` (None: not installed)."""
    try:
        status = (root / "var/lib/dpkg/status").read_text(errors="replace")
    except OSError:
        return None
    for block in status.split("\n\n"):
        lines = block.splitlines()
        if "Package: strongswan-charon" in lines and any(line.startswith("Status: install ok installed")
                                                       for line in lines):
            for line in lines:
                if line.startswith("Version: "):
                    return line.split(" ", 1)[1]
    return None


def _major(version: str | None) -> int:
    head = (version or "").split(":")[-1].split(".")[0]
    return int(head) if head.isdigit() else 0


def find_root(root: Path | None = None, system: Path = Path("/")) -> Path:
    """The root file system strongSwan 6 runs from: `system` when the system's own charon is 6
    or newer (Debian 13), else the one scripts/setup.sh built; StrongSwanError saying what to run
    if there is none."""
    if _major(_package_version(system)) >= 6:
        return system
    root = STRONGSWAN6_ROOT if root is None else Path(root)
    if not (root / STAMP).exists() or not (root / CHARON.lstrip("/")).exists():
        raise StrongSwanError(
            f"strongSwan 6 is not installed: there is no root file system with it in {root} (and the system's "
            "strongSwan is older); run scripts/setup.sh, which builds it from Debian 13's packages with mmdebstrap")
    if _major(_package_version(root)) < 6:
        raise StrongSwanError(f"{root} holds strongSwan {_package_version(root)}, not 6: remove {root} and run "
                              "scripts/setup.sh again")
    return root


def version(root: Path | None = None) -> str:
    """The Debian version of strongSwan 6's charon, e.g. 6.0.1-6+deb13u7."""
    return _package_version(find_root(root)) or "?"


class StrongSwan6(StrongSwan):
    """strongSwan 6's charon in a node: StrongSwan with charon and swanctl from STRONGSWAN6_ROOT
    (chroot, in a mount namespace of their own), or the system's own when that is 6 already."""

    software = "strongswan6"

    def __init__(self, node: PeerNode, workdir: str | os.PathLike[str], name: str | None = None, *,
                 root: str | os.PathLike[str] | None = None, **options: Any) -> None:
        self.requested_root = Path(root) if root is not None else None
        self._root: Path | None = None
        super().__init__(node, workdir, name, **options)

    @property
    def root(self) -> Path:
        if self._root is None:
            self._root = find_root(self.requested_root)
        return self._root

    @property
    def chrooted(self) -> bool:
        return self.root != Path("/")

    @property
    def needs_private_run(self) -> bool:
        return not self.chrooted

    def _inside(self, path: Path) -> str:
        if not self.chrooted:
            return str(path)
        relative = Path(path).absolute().relative_to(self.workdir)
        return str(Path(WORKDIR_INSIDE) / relative)

    def _plugin_dir(self) -> str:
        return str(self.root / os.path.dirname(CHARON).lstrip("/") / "plugins")

    def _check_installed(self) -> None:
        root = self.root
        check_installed(str(root / CHARON.lstrip("/")), str(root / SWANCTL.lstrip("/")), self._plugin_dir())

    def _charon_argv(self) -> list[str]:
        if not self.chrooted:
            return [CHARON]
        return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-ec", _ENTER, "sh",
                str(self.root), str(self.workdir), CHARON]

    def _swanctl_argv(self, args: Sequence[str]) -> list[str]:
        if not self.chrooted:
            return [SWANCTL, *args]
        if not self.running:
            raise StrongSwanError(f"strongSwan 6 on {self.name} is not running: swanctl needs its charon")
        return ["nsenter", f"--target={self.pid}", "--mount", "--", "chroot", str(self.root), SWANCTL, *args]

    def _write_strongswan_conf(self) -> None:
        super()._write_strongswan_conf()
        # for the node's shell (ipsec-lab up): the system's swanctl talks VICI to this charon
        have = available_plugins(PLUGIN_DIR)
        load = " ".join(p for p in SWANCTL_PLUGINS if p in have)
        self.host_conf_path.write_text(f"swanctl {{\n  load = {load}\n  socket = unix://{self.vici_socket}\n}}\n")

    @property
    def host_conf_path(self) -> Path:
        return self.workdir / "strongswan-host.conf"

    def shell_exports(self) -> dict[str, str]:
        if not self.chrooted:
            return super().shell_exports()
        return {"STRONGSWAN_CONF": str(self.host_conf_path), "SWANCTL_DIR": str(self.swanctl_dir)}
