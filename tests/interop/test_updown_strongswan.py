"""updown scripts: our daemon gives a script the same PLUTO_* environment as charon 5.9.8 gives it
for the same tunnel. A script that dumps its environment runs on CHILD_SA up and down; the tunnel
is set up once between two charons and once with our daemon in place of one of them, and the
dumps of the two runs on that gateway are compared."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import GATEWAYS, S2SLab, render_conf

CHILD = "net"
DUMP = '#!/bin/sh\nenv | grep "^PLUTO_" | LC_ALL=C sort > "{folder}/$PLUTO_VERB"\necho "$PLUTO_VERB dumped"\n'


def _script(lab: S2SLab, run: str, gateway: str) -> tuple[str, Path]:
    folder = lab.workdir / f"env-{run}-{gateway}"
    folder.mkdir()
    script = lab.workdir / f"updown-{run}-{gateway}.sh"
    script.write_text(DUMP.format(folder=folder))
    os.chmod(script, 0o755)
    return str(script), folder


def _wait_file(path: Path, timeout: float = 15.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size:
            time.sleep(0.1)
            return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
        time.sleep(0.1)
    pytest.fail(f"the updown script did not write {path}", pytrace=False)


def _run(lab: S2SLab, run: str, ours_on: str | None) -> dict[str, dict[str, dict[str, str]]]:
    """One tunnel swgwa (initiator) - swgwb, both with the dumping updown script; charon on both
    gateways, or our daemon on `ours_on`. Returns {gateway: {verb: environment}}."""
    folders: dict[str, Path] = {}
    gateways: dict[str, Any] = {}
    for name in GATEWAYS:
        script, folders[name] = _script(lab, run, name)
        conf = render_conf(name, initiator=name == "swgwa", child={"updown": script})
        if name == ours_on:
            gateways[name] = lab.use_ours(name, conf)
        else:
            lab.swans.pop(name, None)
            gateways[name] = lab.use_strongswan(name, conf)
    for name in ("swgwb", "swgwa"):
        gateways[name].start()
        if name not in lab.ours:
            gateways[name].load_all()
    gateways["swgwa"].initiate(child=CHILD)
    up = {name: _wait_file(folders[name] / "up-client") for name in GATEWAYS}
    gateways["swgwa"].terminate(ike="s2s")
    down = {name: _wait_file(folders[name] / "down-client") for name in GATEWAYS}
    for name, gateway in gateways.items():
        gateway.stop()
        lab.swans.pop(name, None)
        lab.ours.pop(name, None)
    return {name: {"up-client": up[name], "down-client": down[name]} for name in GATEWAYS}


@pytest.mark.parametrize("ours_on", ["swgwa", "swgwb"], ids=["ours-initiator", "ours-responder"])
def test_updown_environment_equals_charons(interop_lab, ours_on):
    charon = _run(interop_lab, "charon", None)
    ours = _run(interop_lab, "ours", ours_on)
    assert charon[ours_on]["up-client"]["PLUTO_VERB"] == "up-client"
    assert charon[ours_on]["up-client"]["PLUTO_MY_CLIENT"] == GATEWAYS[ours_on]["local_ts"]
    for verb in ("up-client", "down-client"):
        assert ours[ours_on][verb] == charon[ours_on][verb], verb
    # charon on the other gateway saw the same as with a charon peer
    other = "swgwb" if ours_on == "swgwa" else "swgwa"
    assert ours[other]["up-client"] == charon[other]["up-client"]
