"""Peer.load copies a host folder into the peer's swanctl folder: swanctl.conf through
write_config, every other file and folder as it is (another configuration for a `load` step,
x509/, private/, ...), also when the swanctl folder does not exist yet."""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from lab.net.peers import Peer
from lab.net.software import SOFTWARE


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

    # the rest of the interface, which load() does not use
    def reload(self): raise AssertionError("not running: nothing to reload")
    def start(self): raise NotImplementedError
    def stop(self): raise NotImplementedError
    def initiate(self, child=None, ike=None, timeout=20): raise NotImplementedError
    def terminate(self, ike=None, child=None): raise NotImplementedError
    def rekey(self, child=None, ike=None): raise NotImplementedError
    def list_sas(self): raise NotImplementedError
    def counters(self): raise NotImplementedError
    def log_tail(self, lines=25): raise NotImplementedError


def test_a_kind_of_software_that_misses_a_command_cannot_be_made(tmp_path):
    body = {name: value for name, value in vars(FakePeer).items() if name != "list_sas"}
    partial = type(FakePeer)("Partial", (Peer,), body)  # FakePeer without list_sas
    with pytest.raises(TypeError, match="list_sas"):
        partial(tmp_path)
    FakePeer(tmp_path)  # with it, it can


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


@pytest.mark.parametrize("software", sorted(SOFTWARE))
def test_every_kind_of_gateway_software_implements_the_whole_interface(software):
    module, _, name = SOFTWARE[software].peer.partition(":")
    peer_class = getattr(importlib.import_module(module, "lab.net"), name)
    assert issubclass(peer_class, Peer) and not peer_class.__abstractmethods__
