"""lab.net.strongswan6 without root: which root file system strongSwan 6 runs from, what it is
told when there is none, the paths charon sees inside it, and the mounts cleanup looks for."""
from __future__ import annotations

from pathlib import Path

import pytest

from lab.net import cleanup
from lab.net.strongswan import StrongSwanError
from lab.net.strongswan6 import STAMP, StrongSwan6, find_root


def fake_root(path: Path, version: str | None, stamp: bool = True) -> Path:
    (path / "var/lib/dpkg").mkdir(parents=True)
    status = "Package: libc6\nStatus: install ok installed\nVersion: 2.41-12\n"
    if version:
        status += f"\nPackage: strongswan-charon\nStatus: install ok installed\nVersion: {version}\n"
    (path / "var/lib/dpkg/status").write_text(status)
    (path / "usr/lib/ipsec").mkdir(parents=True)
    (path / "usr/lib/ipsec/charon").write_text("")
    if stamp:
        (path / STAMP).write_text("trixie ...")
    return path


def test_debian_12_runs_the_root_file_system_setup_built(tmp_path):
    system = fake_root(tmp_path / "system", "5.9.8-5+deb12u2")
    root = fake_root(tmp_path / "ss6", "6.0.1-6+deb13u7")
    assert find_root(root, system) == root


def test_debian_13_runs_its_own_strongswan_6(tmp_path):
    system = fake_root(tmp_path / "system", "6.0.1-6+deb13u7")
    assert find_root(tmp_path / "absent", system) == system


@pytest.mark.parametrize("stamp, version", [(False, "6.0.1-6"), (True, None)])
def test_no_strongswan_6_says_to_run_setup(tmp_path, stamp, version):
    system = fake_root(tmp_path / "system", "5.9.8-5")
    root = fake_root(tmp_path / "ss6", version, stamp=stamp)
    if version is None:
        (root / "usr/lib/ipsec/charon").unlink()
    with pytest.raises(StrongSwanError, match="run scripts/setup.sh"):
        find_root(root, system)


def test_a_root_with_another_strongswan_is_refused(tmp_path):
    system = fake_root(tmp_path / "system", "5.9.8-5")
    root = fake_root(tmp_path / "ss6", "5.9.8-5")
    with pytest.raises(StrongSwanError, match="not 6"):
        find_root(root, system)


def test_charon_sees_its_files_below_mnt_and_runs_in_a_mount_namespace_of_its_own(tmp_path):
    root = fake_root(tmp_path / "ss6", "6.0.1-6")
    swan = StrongSwan6(object(), tmp_path / "gwb", "gwb", root=root)
    swan._root = root  # as find_root would answer on Debian 12
    assert swan._inside(swan.vici_socket) == "/mnt/charon.vici"
    assert swan._inside(swan.swanctl_dir) == "/mnt/swanctl"
    assert swan.env["STRONGSWAN_CONF"] == "/mnt/strongswan.conf"
    argv = swan._charon_argv()
    assert argv[:5] == ["unshare", "--mount", "--propagation", "private", "--"]
    assert argv[-3:] == [str(root), str(tmp_path / "gwb"), "/usr/lib/ipsec/charon"]
    assert not swan.needs_private_run
    with pytest.raises(StrongSwanError, match="not running"):
        swan._swanctl_argv(["--list-sas"])


def test_cleanup_reads_mount_points_below_the_root(tmp_path):
    info = tmp_path / "mountinfo"
    info.write_text(
        "22 1 254:0 / / rw - ext4 /dev/vda rw\n"
        "142 22 0:46 / /var/lib/ipsec-lab/strongswan6/run rw - tmpfs x rw\n"
        "143 22 254:0 /tmp/a\\040b /var/lib/ipsec-lab/strongswan6/mnt rw - ext4 /dev/vda rw\n"
        "144 22 0:47 / /var/lib/ipsec-lab/strongswan6-other/proc rw - proc proc rw\n")
    assert cleanup.mounts_below(Path("/var/lib/ipsec-lab/strongswan6"), str(info)) == [
        "/var/lib/ipsec-lab/strongswan6/run", "/var/lib/ipsec-lab/strongswan6/mnt"]
