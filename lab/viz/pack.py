"""`ipsec-lab pack RUN_DIR... [-o FILE]`: the run folders in one archive to take home: each
folder as it is, its report.html (made now when the folder has none, or an older one) and a
README that says what is inside and how to open it. Opening it needs a browser, and
Wireshark for the captures; no root, no Python.

    pack(["out/net2net-nat", "out/wrong-psk"], "runs.tar.gz")
"""
from __future__ import annotations

import io
import tarfile
import time
import zipfile
from pathlib import Path

from lab import runfolder
from lab.runfolder import RunResult

from .html import REPORT_HTML, page_data, render_html


class PackError(Exception):
    """A folder that is not a run folder, or an archive that cannot be written."""


README = """\
ipsec-lab runs, packed {when}
{rule}

Each folder below is one run of a scenario, as `ipsec-lab run` left it. Open its report.html in
any web browser (no network, no server needed): the steps and checks, what happened in words,
the ladder of every IKE message (click one: its payloads decrypted with the run's keys, its
bytes), the figures. Keys on the page: -> next message or step, <- back, h decoded/hex,
p presenter mode.

{runs}

In each folder:
  report.html    the page above; report.md the same steps and checks as text
  captures/      the packets, one pcap per tap (open in Wireshark)
  keys/          the run's IKE and ESP keys, so Wireshark decrypts the captures:
                 XDG_CONFIG_HOME=<folder>/keys wireshark -o esp.enable_encryption_decode:TRUE
                     <folder>/captures/<tap>.pcap
  logs/          each gateway's log; trace.jsonl our gateways' messages and state changes
  topology.json, result.json, scenario.yaml: the lab, the result and the scenario as run
  figures/       the figures as PNG and SVG (where they were drawn)

These keys belong to a lab run and protect nothing else; they are here so the captures can be read.
"""


def _check(folder: Path) -> RunResult:
    if not folder.is_dir():
        raise PackError(f"{folder}: no such folder")
    path = folder / runfolder.RESULT
    if not path.is_file():
        raise PackError(f"{folder}: not a run folder (it has no {runfolder.RESULT}; `ipsec-lab run` makes them)")
    import json

    try:
        data = json.loads(path.read_text())
    except ValueError as err:
        raise PackError(f"{path}: not readable JSON ({err})") from None
    if runfolder.is_running(data):
        raise PackError(f"{folder}: its run has not finished (result.json says running); pack it afterwards")
    return RunResult.from_json(data)


def _names(folders: list[Path]) -> list[str]:
    """A name in the archive for each folder: its own, numbered where two share one."""
    names: list[str] = []
    for folder in folders:
        name = folder.resolve().name or "run"
        candidate, n = name, 2
        while candidate in names:
            candidate, n = f"{name}-{n}", n + 1
        names.append(candidate)
    return names


def _page(folder: Path) -> bytes:
    """The folder's report.html when it is newer than its result, else made now."""
    existing = folder / REPORT_HTML
    if existing.is_file() and existing.stat().st_mtime >= (folder / runfolder.RESULT).stat().st_mtime:
        return existing.read_bytes()
    return render_html(page_data(folder)).encode("utf-8")


def pack(folders: list[str | Path], out: str | Path) -> Path:
    """One archive (.tar.gz, .tgz or .zip by `out`'s name) of the run folders, their report.html and a README."""
    runs = [Path(f) for f in folders]
    out = Path(out)
    if not runs:
        raise PackError("name at least one run folder")
    kind = "zip" if out.name.endswith(".zip") else "tar" if out.name.endswith((".tar.gz", ".tgz")) else None
    if kind is None:
        raise PackError(f"{out}: the archive's name must end in .tar.gz, .tgz or .zip")
    results = [_check(f) for f in runs]
    names = _names(runs)
    top = out.name.removesuffix(".zip").removesuffix(".tar.gz").removesuffix(".tgz") or "ipsec-lab-runs"
    width = max(len(name) for name in names) + len("/report.html")
    lines = [f"  {(name + '/report.html').ljust(width)}  {result.scenario}: {result.title} - {result.verdict}"
             for name, result in zip(names, results)]
    when = time.strftime("%Y-%m-%d %H:%M")
    readme = README.format(when=when, rule="=" * (len(when) + 25), runs="\n".join(lines)).encode()
    members: list[tuple[str, Path | bytes]] = [(f"{top}/README.txt", readme)]
    for folder, name in zip(runs, names):
        for path in sorted(folder.rglob("*")):
            if path.is_symlink() or not path.is_file() or path.name == REPORT_HTML and path.parent == folder:
                continue
            if out.resolve() == path.resolve():
                continue
            members.append((f"{top}/{name}/{path.relative_to(folder).as_posix()}", path))
        members.append((f"{top}/{name}/{REPORT_HTML}", _page(folder)))
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".part")
    try:
        if kind == "zip":
            with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
                for arcname, source in members:
                    if isinstance(source, bytes):
                        archive.writestr(arcname, source)
                    else:
                        archive.write(source, arcname)
        else:
            with tarfile.open(partial, "w:gz") as archive:
                for arcname, source in members:
                    if isinstance(source, bytes):
                        info = tarfile.TarInfo(arcname)
                        info.size, info.mtime, info.mode = len(source), int(time.time()), 0o644
                        archive.addfile(info, io.BytesIO(source))
                    else:
                        info = archive.gettarinfo(str(source), arcname)
                        info.uid = info.gid = 0
                        info.uname = info.gname = ""
                        info.mode = 0o644
                        with open(source, "rb") as handle:
                            archive.addfile(info, handle)
        partial.replace(out)
    except OSError as err:
        partial.unlink(missing_ok=True)
        raise PackError(f"{out}: cannot write the archive ({err.strerror or err})") from None
    return out


__all__ = ["PackError", "pack"]
