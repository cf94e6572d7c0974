"""Peer.load copies a host folder into the peer's swanctl folder: swanctl.conf through
write_config, every other file and folder as it is (another configuration for a `load` step,
x509/, private/, ...), also when the swanctl folder does not exist yet."""
from __future__ import annotations

from pathlib import Path

from lab.net.peers import Peer


class FakePeer(Peer):
    software = "fake"

    def __init__(self, workdir: Path) -> None:
        self.name = "gw"
        self.workdir = workdir
        self.swanctl_dir = workdir / "swanctl"
        self.written: list[str] = []

    def write_config(self, text: str) -> None:
        self.written.append(text)

    @property
    def running(self) -> bool:
        return False


def test_a_loose_file_is_copied_into_a_swanctl_folder_that_does_not_exist_yet(tmp_path):
    host = tmp_path / "hosts" / "gw"
    host.mkdir(parents=True)
    (host / "swanctl.conf").write_text("connections {}\n")
    (host / "fixed.conf").write_text("connections { fixed {} }\n")
    peer = FakePeer(tmp_path / "work")
    peer.load(host)
    assert peer.written == ["connections {}\n"]
    assert (peer.swanctl_dir / "fixed.conf").read_text() == "connections { fixed {} }\n"
    assert not (peer.swanctl_dir / "swanctl.conf").exists()  # written by write_config, not copied


def test_certificate_folders_are_copied(tmp_path):
    host = tmp_path / "hosts" / "gw"
    (host / "x509").mkdir(parents=True)
    (host / "swanctl.conf").write_text("connections {}\n")
    (host / "x509" / "gw.pem").write_text("cert\n")
    peer = FakePeer(tmp_path / "work")
    peer.load(host)
    assert (peer.swanctl_dir / "x509" / "gw.pem").read_text() == "cert\n"
