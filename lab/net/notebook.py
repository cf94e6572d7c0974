"""What the notebooks (notebooks/02-09) need from the lab: run a scenario of the library, of
notebooks/scenarios/ or a changed copy, and get its run folder; lab.viz then reads it.

    out = run_scenario("net2net-nat")                     # -> out/notebooks/net2net-nat (root)
    folder = copy_scenario("mtu-blackhole", "/tmp/x", steps=lambda steps: steps[:5])
    out = run_scenario(folder, name="mtu-blackhole-unfixed")

A run goes into a world of its own (lab.net.world: `ipsec-lab run` in its own namespaces), so
JupyterLab runs as a normal user and several trainees' notebooks run side by side. Where no world
can be made (no uidmap for a user without root) a run folder left by an earlier run
(`ipsec-lab run NAME --out out/notebooks/NAME`) is read instead.
"""
from __future__ import annotations

import datetime
import os
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from . import world
from .runner import Progress, RunResult, run
from .scenario import LIBRARY, load, read_yaml

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK_SCENARIOS = REPO / "notebooks" / "scenarios"


class NotebookError(RuntimeError):
    """A scenario a notebook cannot run (not root and no earlier run folder); says what to do."""


def out_base() -> Path:
    return Path(os.environ.get("IPSEC_LAB_NOTEBOOK_OUT", REPO / "out" / "notebooks"))


def scenario_folder(name: str | Path) -> Path:
    """A library scenario, one of notebooks/scenarios/, or a folder."""
    path = Path(name)
    if path.is_dir():
        return path
    for base in (LIBRARY, NOTEBOOK_SCENARIOS):
        if (base / str(name)).is_dir():
            return base / str(name)
    raise NotebookError(f"no scenario {name!r} in scenarios/ or notebooks/scenarios/")


def run_scenario(name: str | Path, label: str | None = None, out: str | Path | None = None,
                 quiet: bool = False, after_step: Callable | None = None, figures: bool = True) -> Path:
    """Run the scenario (each step printed as it ends; `after_step` as the runner's hook, e.g.
    lab.viz.narrate.Narrator()) and return its run folder. Without root, or with
    IPSEC_LAB_NOTEBOOK_REUSE=1, the folder of an earlier run is returned if there is one.
    `figures=False`: the run draws none of its figures (`ipsec-lab run --no-figures`), for a
    notebook that reads only its results."""
    folder = scenario_folder(name)
    label = label or folder.name
    target = Path(out) if out else out_base() / label
    reuse = os.environ.get("IPSEC_LAB_NOTEBOOK_REUSE") == "1"
    if reuse and (target / "result.json").is_file() and "running" not in (target / "result.json").read_text():
        print(f"(IPSEC_LAB_NOTEBOOK_REUSE=1: reading the run folder {target} of an earlier run)")
        return target
    option = getattr(after_step, "cli_option", None) if after_step is not None else None
    if not world.inside() and os.environ.get(world.HOST) != "1" and (after_step is None or option):
        reason = world.unavailable()
        if reason is None:
            return _run_in_world(folder, label, target, quiet,
                                 ([option] if option else []) + ([] if figures else ["--no-figures"]))
    else:
        reason = "it needs root (network namespaces)"
    if os.geteuid() != 0:
        if (target / "result.json").is_file():
            print(f"(cannot run here: reading the run folder {target} left by an earlier run)")
            return target
        raise NotebookError(f"running {label}: {reason}; or run it once with "
                            f"`.venv/bin/ipsec-lab run {folder} --out {target}`")
    scenario = load(folder)
    stream = open(os.devnull, "w") if quiet else sys.stdout
    options = {"after_step": after_step} if after_step is not None else {}
    progress = Progress(stream=stream, live=False)
    from rich.console import Console

    # plain lines in the notebook, not rich's HTML (the cell's text is what a test reads)
    progress.console = Console(file=stream, highlight=False, soft_wrap=True, force_jupyter=False)
    result: RunResult = run(scenario, target, progress, **options)
    verdict = "passed" if result.passed else "FAILED"
    print(f"{label}: {verdict} in {result.duration:g} s -> {target}")
    return target


def _run_in_world(folder: Path, label: str, target: Path, quiet: bool, options: list[str]) -> Path:
    """`ipsec-lab run FOLDER --out TARGET` in a world of its own, its lines printed in the cell."""
    lines: list[str] = []
    # Jupyter's kernel sets FORCE_COLOR and CLICOLOR_FORCE: without them the run, writing into a
    # pipe, prints one plain line per step instead of a spinner redrawn twice a second
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "CLICOLOR_FORCE", "TTY_COMPATIBLE")}
    code = world.run_command(["run", str(folder), "--out", str(target), *options], env=env,
                             lines=lines.append if quiet else (lambda line: print(line, flush=True)))
    if code not in (0, 1):  # 1: the run failed, and its folder says how
        tail = "\n".join(lines[-20:])
        raise NotebookError(f"running {label} did not finish (exit status {code}){': ' + tail if tail else ''}")
    result = (target / "result.json").read_text() if (target / "result.json").is_file() else ""
    verdict = "passed" if '"passed": true' in result else "FAILED"
    print(f"{label}: {verdict} -> {target}")
    return target


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def copy_scenario(name: str | Path, dest: str | Path, steps: Callable[[list], list] | None = None,
                  edit: Callable[[dict], None] | None = None, checks: bool = True) -> Path:
    """A copy of a scenario folder in `dest` whose steps `steps(list)` returns (and whose
    scenario.yaml `edit(dict)` may change), for a variant a notebook runs."""
    src = scenario_folder(name)
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest)
    data = _plain(read_yaml(dest / "scenario.yaml"))
    if steps is not None:
        data["steps"] = steps(data["steps"])
    if not checks:
        data["checks"] = []
    if edit is not None:
        edit(data)
    (dest / "scenario.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return dest


def install_lab_certificates(folder: str | Path, nodes: list[str], bits: int = 3072) -> None:
    """A lab CA and one certificate per gateway (subjectAltName <node>.lab), valid 30 days, into
    hosts/<node>/x509ca, x509, private; its swanctl.conf switched from psk to pubkey."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    folder = Path(folder)
    ca_key = rsa.generate_private_key(65537, bits)
    ca = (x509.CertificateBuilder().subject_name(name("ipsec-lab CA")).issuer_name(name("ipsec-lab CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True).sign(ca_key, hashes.SHA256()))
    for node in nodes:
        key = rsa.generate_private_key(65537, bits)
        cert = (x509.CertificateBuilder().subject_name(name(f"{node}.lab")).issuer_name(name("ipsec-lab CA"))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(f"{node}.lab")]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        host = folder / "hosts" / node
        for sub, filename, data in (
                ("x509ca", "ca.pem", ca.public_bytes(serialization.Encoding.PEM)),
                ("x509", "gw.pem", cert.public_bytes(serialization.Encoding.PEM)),
                ("private", "gw.key", key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))):
            (host / sub).mkdir(exist_ok=True)
            (host / sub / filename).write_bytes(data)
            if sub == "private":
                os.chmod(host / sub / filename, 0o600)
        conf = host / "swanctl.conf"
        text = conf.read_text().replace(f"auth = psk\n      id = {node}.lab",
                                        f"auth = pubkey\n      certs = gw.pem\n      id = {node}.lab")
        conf.write_text(re.sub(r"remote \{\n      auth = psk", "remote {\n      auth = pubkey", text))


def table(header: list[str], rows: list[list[Any]]) -> str:
    """A plain-text table whose columns are as wide as their widest cell (header included):
    columns of numbers right-aligned, text left-aligned, two spaces between columns, a rule under the header.
    Plain text, so a notebook's cell output (what tests/lab/test_notebooks.py reads) holds it."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells if i < len(row)) for i in range(len(header))]
    numeric = [bool(rows) and all(re.fullmatch(r"[+-]?\d[\d.,-]*", row[i]) for row in cells[1:] if i < len(row))
               for i in range(len(header))]   # numbers and ranges ("54-57") right-aligned

    def line(row: list[str]) -> str:
        parts = [cell.rjust(w) if num else cell.ljust(w) for cell, w, num in zip(row, widths, numeric)]
        return "  ".join(parts).rstrip()

    return "\n".join([line(cells[0]), "  ".join("-" * w for w in widths)] + [line(row) for row in cells[1:]])


__all__ = ["NotebookError", "copy_scenario", "install_lab_certificates", "out_base", "run_scenario",
           "scenario_folder", "table"]
