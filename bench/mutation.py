"""Mutation testing (cosmic-ray) of the code where a silent bug hurts most, with the unit tests.

Each target is mutated in a copy of the tree under --workdir (the worktree is never
touched); each mutant runs that target's unit tests, and a mutant the tests still pass
with "survived". Sessions are cosmic-ray sqlite files, so a run can be stopped and
continued. Slow (about 1.5 s a mutant on one core): not run in CI.

    .venv/bin/python bench/mutation.py                        # every target, every mutant
    .venv/bin/python bench/mutation.py --sample 300           # 300 mutants a target, seeded
    .venv/bin/python bench/mutation.py --targets esp.replay --report
    .venv/bin/python bench/mutation.py --rerun-survivors      # after new tests: run the survivors again

Writes <workdir>/<target>.survivors.txt (the diff of each survivor) and prints killed/total
per target. --rerun-survivors copies the current tests into the copy (the code under test
must not have changed since the first run, or the mutations point at the wrong places).
"""
from __future__ import annotations

import argparse
import ast
import functools
import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Target:
    name: str
    modules: tuple[str, ...]
    tests: tuple[str, ...]
    # only mutations inside these functions (None: the whole module)
    functions: frozenset[str] | None = None


ESP_PROTECT = frozenset({
    "_zero_ipv4_mutable", "_zero_ipv6_mutable", "_take_seq", "protect", "protect_payload", "seal_payload",
    "dummy_payload", "dummy", "_seal", "_inner_fields", "_esp_tunnel", "_outer", "_transport_split",
    "_esp_transport", "_ah_fields", "_ah_icv", "_ah_tunnel", "_ah_transport", "unprotect", "unprotect_datagram",
    "open_payload", "_outer_checks", "_check_seq", "_deliver", "_esp_open", "_esp_in", "_transport_header",
    "_ah_in"})

TARGETS = [
    Target("esp.replay", ("lab/esp/replay.py",), ("tests/unit/test_esp_replay.py", "tests/unit/test_esp_sa.py")),
    Target("esp.sa", ("lab/esp/sa.py",), ("tests/unit/test_esp_sa.py", "tests/unit/test_esp_vectors.py",
                                          "tests/unit/test_esp_replay.py", "tests/unit/test_esp_scapy.py"), ESP_PROTECT),
    Target("ike.crypto", ("lab/ike/crypto",), tuple(f"tests/unit/test_crypto_{n}.py"
                                                    for n in ("prf", "keys", "dh", "sk", "auth"))),
    Target("ike.exchanges", ("lab/ike/sa.py", "lab/ike/task_manager.py", "lab/ike/tasks", "lab/ike/endpoint.py"),
           ("tests/unit/test_ike_exchanges.py", "tests/unit/test_ike_replay.py")),
]


def copy_tree(tree: Path, tests_only: bool = False) -> None:
    ignore = shutil.ignore_patterns(".git", ".venv", "__pycache__", "out", "*.pcap", ".hypothesis")
    if tests_only:
        shutil.rmtree(tree / "tests")
        shutil.copytree(ROOT / "tests", tree / "tests", ignore=ignore)
        return
    if tree.exists():
        shutil.rmtree(tree)
    shutil.copytree(ROOT, tree, ignore=ignore)


def module_files(tree: Path, target: Target) -> list[Path]:
    out = []
    for entry in target.modules:
        path = tree / entry
        out += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return [p.relative_to(tree) for p in out]


@functools.lru_cache(maxsize=None)
def annotations_of(tree: Path, module: Path) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Spans of every annotation: under `from __future__ import annotations` none is evaluated,
    so a mutant inside one is equivalent."""
    spans = []
    for node in ast.walk(ast.parse((tree / module).read_text())):
        found = []
        if isinstance(node, ast.arg) and node.annotation is not None:
            found.append(node.annotation)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
            found.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            found.append(node.annotation)
        spans += [((a.lineno, a.col_offset), (a.end_lineno, a.end_col_offset)) for a in found]
    return spans


@functools.lru_cache(maxsize=None)
def functions_of(tree: Path, module: Path) -> dict[str, list[tuple[int, int]]]:
    spans: dict[str, list[tuple[int, int]]] = {}
    for node in ast.walk(ast.parse((tree / module).read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            spans.setdefault(node.name, []).append((node.lineno, node.end_lineno or node.lineno))
    return spans


def init_session(tree: Path, target: Target, session: Path):
    import cosmic_ray.commands
    from cosmic_ray.work_db import WorkDB, use_db
    if session.exists():
        return
    os.chdir(tree)
    with use_db(str(session), WorkDB.Mode.create) as db:
        cosmic_ray.commands.init(module_files(tree, target), db, {})


def in_annotation(tree: Path, mutation) -> bool:
    at = tuple(mutation.start_pos)
    return any(start <= at < end for start, end in annotations_of(tree, Path(mutation.module_path)))


def wanted(tree: Path, target: Target, item, annotations: bool = False) -> bool:
    mutation = item.mutations[0]
    if mutation.operator_name.endswith("_Pow"):
        return False  # `a | b` made `a ** b` mostly computes for minutes or takes all memory: no news, much time
    if not annotations and in_annotation(tree, mutation):
        return False
    if target.functions is None:
        return True
    spans = functions_of(tree, Path(mutation.module_path))
    line = mutation.start_pos[0]
    return any(start <= line <= end for name in target.functions for start, end in spans.get(name, []))


# at most 3 GiB a mutant; hypothesis without shrinking: a mutant is killed by the first failing example, not the smallest
PLUGIN = """import resource

from hypothesis import Phase, settings

# a mutant such as `x ** 2**32` must fail with MemoryError, not take the machine's memory
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
settings.register_profile("mutation", phases=[Phase.explicit, Phase.reuse, Phase.generate], deadline=None)
settings.load_profile("mutation")
"""


def test_command(target: Target) -> str:
    return f"{sys.executable} -m pytest -x -q -p no:cacheprovider -p mutation_profile {' '.join(target.tests)}"


def baseline(target: Target) -> None:
    """The tests must pass on the unmutated copy, or every mutant would look killed."""
    done = subprocess.run(test_command(target).split(), capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join(done.stdout.splitlines()[-15:])
        sys.exit(f"{target.name}: the tests fail on the unmutated code, no score possible:\n{tail}")


def sampled(tree: Path, target: Target, items, sample: int | None, seed: int, annotations: bool = False) -> list:
    items = sorted((item for item in items if wanted(tree, target, item, annotations)), key=lambda i: i.job_id)
    if sample is not None and sample < len(items):
        items = random.Random(seed).sample(items, sample)
    return items


def replay_survivors(tree: Path, old_workdir: Path, target: Target, timeout: float, sample: int | None,
                     seed: int, annotations: bool) -> tuple[int, int, int, int]:
    """The survivors of an earlier run, each applied as its diff to the current code and tested:
    (killed, still surviving, no longer applicable because the code changed there, inside an
    annotation: equivalent)."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome
    session = old_workdir / f"{target.name}.sqlite"
    os.chdir(tree)
    os.environ["PYTHONPATH"] = str(tree)
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
    baseline(target)
    killed = surviving = gone = equivalent = 0
    old_tree = old_workdir / "tree"
    with use_db(str(session), WorkDB.Mode.open) as db, \
            open(old_workdir / f"{target.name}.still-surviving.txt", "w") as out:
        # the same sample as the earlier run scored (its tree, its sample size and seed)
        items = {item.job_id: item for item in sampled(old_tree, target, db.work_items, sample, seed, annotations)}
        for job_id, result in db.results:
            if job_id not in items or result.test_outcome != TestOutcome.SURVIVED or not result.diff:
                continue
            if in_annotation(old_tree, items[job_id].mutations[0]):
                equivalent += 1
                continue
            patch = "\n".join(line for line in result.diff.splitlines() if not line.startswith("--- mutation diff"))
            patch += "\n"
            check = subprocess.run(["patch", "-p1", "--dry-run", "-s", "-f"], input=patch, text=True,
                                   capture_output=True)
            if check.returncode != 0:
                gone += 1
                continue
            subprocess.run(["patch", "-p1", "-s", "-f"], input=patch, text=True, check=True, capture_output=True)
            try:
                run = subprocess.run(test_command(target).split(), capture_output=True, timeout=timeout)
                dead = run.returncode != 0
            except subprocess.TimeoutExpired:
                dead = True
            finally:
                subprocess.run(["patch", "-p1", "-R", "-s", "-f"], input=patch, text=True, check=True,
                               capture_output=True)
            if dead:
                killed += 1
            else:
                surviving += 1
                out.write(f"### job {job_id}\n{result.diff}\n\n")
    return killed, surviving, gone, equivalent


def run_target(tree: Path, workdir: Path, target: Target, sample: int | None, seed: int, rerun: bool,
               report_only: bool, timeout: float) -> tuple[int, int]:
    from cosmic_ray.mutating import mutate_and_test
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome
    session = workdir / f"{target.name}.sqlite"
    init_session(tree, target, session)
    os.chdir(tree)
    os.environ["PYTHONPATH"] = str(tree)
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"  # a mutant never runs from a stale .pyc
    if not report_only:
        baseline(target)
    with use_db(str(session), WorkDB.Mode.open) as db:
        items = sampled(tree, target, db.work_items, sample, seed)
        chosen = {i.job_id for i in items}
        results = {job_id: result for job_id, result in db.results if job_id in chosen}
        if rerun:
            todo = [i for i in items if i.job_id in results and results[i.job_id].test_outcome == TestOutcome.SURVIVED]
        else:
            todo = [i for i in items if i.job_id not in results]
        if not report_only:
            started = time.monotonic()
            for n, item in enumerate(todo, 1):
                result = mutate_and_test(item.mutations, test_command(target), timeout)
                db.set_result(item.job_id, result)
                results[item.job_id] = result
                if n % 25 == 0 or n == len(todo):
                    print(f"  {target.name}: {n}/{len(todo)} mutants run, {time.monotonic() - started:.0f} s",
                          flush=True)
        done = [results[i.job_id] for i in items if i.job_id in results and results[i.job_id].test_outcome
                in (TestOutcome.KILLED, TestOutcome.SURVIVED)]
        survivors = [(i, results[i.job_id]) for i in items if i.job_id in results
                     and results[i.job_id].test_outcome == TestOutcome.SURVIVED]
        with open(workdir / f"{target.name}.survivors.txt", "w") as out:
            for item, result in sorted(survivors, key=lambda s: (str(s[0].mutations[0].module_path),
                                                                   s[0].mutations[0].start_pos)):
                m = item.mutations[0]
                out.write(f"### {m.module_path}:{m.start_pos[0]} {m.definition_name} {m.operator_name} "
                          f"(job {item.job_id})\n{result.diff}\n\n")
        killed = sum(1 for r in done if r.test_outcome == TestOutcome.KILLED)
        return killed, len(done)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", nargs="*", default=[t.name for t in TARGETS],
                        help=f"of {', '.join(t.name for t in TARGETS)}")
    parser.add_argument("--sample", type=int, help="mutants a target (seeded sample; default: all)")
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument("--workdir", type=Path, default=ROOT / "out" / "mutation")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds a mutant's tests may take")
    parser.add_argument("--rerun-survivors", action="store_true")
    parser.add_argument("--report", action="store_true", help="print the scores, run nothing")
    parser.add_argument("--sampled-with-annotations", action="store_true",
                        help="the earlier run sampled mutants inside annotations too (before they were left out)")
    parser.add_argument("--replay-survivors", type=Path, metavar="OLD_WORKDIR",
                        help="apply the survivors of an earlier run (their diffs) to the current code and test them")
    args = parser.parse_args()
    unknown = set(args.targets) - {t.name for t in TARGETS}
    if unknown:
        parser.error(f"unknown target(s) {', '.join(sorted(unknown))}")
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    tree = workdir / "tree"
    if not tree.exists():
        copy_tree(tree)
    elif args.rerun_survivors:
        copy_tree(tree, tests_only=True)
    (tree / "mutation_profile.py").write_text(PLUGIN)
    if args.replay_survivors is not None:
        old = args.replay_survivors.resolve()
        print(f"{'target':16} killed  surviving  gone  equivalent (of the survivors in {old})")
        for target in TARGETS:
            if target.name in args.targets and (old / f"{target.name}.sqlite").exists():
                killed, surviving, gone, equivalent = replay_survivors(tree, old, target, args.timeout, args.sample,
                                                                       args.seed, args.sampled_with_annotations)
                print(f"{target.name:16} {killed:6}  {surviving:9}  {gone:4}  {equivalent:10}", flush=True)
        return 0
    scores = []
    for target in TARGETS:
        if target.name in args.targets:
            killed, total = run_target(tree, workdir, target, args.sample, args.seed, args.rerun_survivors,
                                       args.report, args.timeout)
            scores.append((target.name, killed, total))
    print(f"{'target':16} killed/total  score")
    for name, killed, total in scores:
        print(f"{name:16} {killed:6}/{total:<6} {100 * killed / total if total else 0:5.1f}%")
    print(f"survivors' diffs: {workdir}/<target>.survivors.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
