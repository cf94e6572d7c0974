"""Make tests/data/runs/: small run folders kept for the tests and notebooks that need no root.

    flock /run/ipsec-lab.lock .venv/bin/python tests/data/make_runs.py [NAME...]

Root (network namespaces). Each is one `ipsec-lab run`, trimmed to what lab.viz reads:
result.json, topology.json, scenario.yaml, trace.jsonl, captures/, keys/ (the two tables),
logs/ (our daemons' and charon's, charon's without its hex dumps of keys and messages),
nodes/<node>/swanctl/swanctl.conf, its x509/ and x509ca/ certificates and x509crl/ CRLs (no private
keys).

    net2net-nat      the default scenario, passing (narration, figures)
    wrong-psk ...    failing variants of tests/scenarios/variants.py (diagnose)
    psk-one-char ... mistakes trainers make, tests/scenarios/mistakes.py (diagnose)
"""
from __future__ import annotations

import re
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from lab.net import scenario as sc  # noqa: E402
from lab.net.runner import Progress, run  # noqa: E402
from tests.scenarios.mistakes import MISTAKES  # noqa: E402
from tests.scenarios.variants import VARIANTS  # noqa: E402

OUT = HERE / "runs"
KEPT_VARIANTS = ("wrong-psk", "ike-proposal", "selector", "udp-lost", "udp4500-blocked", "esp-blocked", "ike-fragments",
                 "nat-expiry", "pmtud", "windows-modp1024", "windows-no-eku", "certificate-expired-unfixed",
                 "certificate-expired-strongswan",
                 "certificate-revoked-ours", "certificate-revoked-strongswan", "missing-intermediate-unfixed",
                 "missing-intermediate-strongswan", "missing-intermediate-charon-gw", "overlapping-subnets-unfixed",
                 "dpd-flapping-unfixed")
KEPT_MISTAKES = tuple(m.name for m in MISTAKES)
# charon at log level 4 dumps keys, nonces and messages as hex rows: neither lab.viz nor a reader needs them
CHARON_DUMP = re.compile(r"\[\w+\] <[^>]*>\s+\d+: |=> \d+ bytes @")


def keep_report(run: Path, folder: str) -> None:
    """The kept report.md names its scenario folder and its own files inside the repository (the
    run's were a temporary or a developer's paths) and links only the files that were kept."""
    report = run / "report.md"
    text = re.sub(r"^Scenario folder: `[^`]*`", f"Scenario folder: {folder}", report.read_text(), flags=re.M)
    text = re.sub(rf"(?:/[^\s`/]+)+/out/{re.escape(run.name)}/", f"tests/data/runs/{run.name}/", text)
    text = re.sub(r"!?\[([^\]]*)\]\(([^)#:]+)\)",
                  lambda m: m.group(0) if (run / m.group(2)).exists() else f"{m.group(1)} (not kept)", text)
    report.write_text(text)


def trim(src: Path, dst: Path, folder: str) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for name in ("result.json", "topology.json", "scenario.yaml", "trace.jsonl", "report.md"):
        if (src / name).exists():
            shutil.copy2(src / name, dst / name)
    for sub, pattern in (("captures", "*.pcap"), ("keys", "ikev2_decryption_table"), ("keys", "esp_sa"),
                         ("logs", "*.log")):
        for path in (src / sub).glob(pattern):
            (dst / sub).mkdir(exist_ok=True)
            shutil.copy2(path, dst / sub / path.name)
            if path.name.endswith("-charon.log"):
                lines = path.read_text(errors="replace").splitlines(keepends=True)
                (dst / sub / path.name).write_text("".join(line for line in lines if not CHARON_DUMP.search(line)))
    for conf in [*src.glob("nodes/*/swanctl/swanctl.conf"), *src.glob("nodes/*/swanctl/x509/*.pem"),
                 *src.glob("nodes/*/swanctl/x509ca/*.pem"), *src.glob("nodes/*/swanctl/x509crl/*")]:
        target = dst / conf.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(conf, target)
    if (dst / "report.md").exists():
        keep_report(dst, folder)


def where(name: str) -> str:
    """The scenario folder of a kept run, as the repository has it."""
    variant = next((v for v in VARIANTS if v.name == name), None)
    if variant is None:
        return f"`scenarios/{name}`"
    return f"`scenarios/{variant.scenario}` with one thing broken (`{name}` in tests/scenarios/variants.py)"


def main(names: list[str]) -> int:
    wanted = names or ["net2net-nat", *KEPT_VARIANTS, *KEPT_MISTAKES]
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        for name in wanted:
            variant = next((v for v in [*VARIANTS, *MISTAKES] if v.name == name), None)
            folder = variant.make(work / "scenarios") if variant else sc.LIBRARY / name
            result = run(sc.load(folder), work / "out" / name, Progress(live=False))
            if variant is None and not result.passed or variant is not None and result.passed:
                print(f"{name}: unexpected outcome (passed={result.passed})", file=sys.stderr)
                return 1
            trim(work / "out" / name, OUT / name, where(name))
            print(f"{name}: {OUT / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
