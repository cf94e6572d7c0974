"""The layers of docs/ARCHITECTURE.md, one direction of dependency: no module imports a higher
layer or a sibling, function-level imports included; every module of lab/ belongs to a layer."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

LAB = Path(__file__).resolve().parents[2] / "lab"

# what each package may import from lab (besides itself)
ALLOWED = {
    "lab": set(),
    "lab.iana": set(),
    "lab.runfolder": set(),
    "lab.esp": {"lab.iana"},
    "lab.ike": {"lab.iana"},
    "lab.conf": {"lab.iana", "lab.ike"},
    "lab.daemon": {"lab.iana", "lab.ike", "lab.esp", "lab.conf"},
    "lab.net": {"lab.iana", "lab.ike", "lab.esp", "lab.conf", "lab.daemon", "lab.runfolder"},
    "lab.viz": {"lab.iana", "lab.ike", "lab.esp", "lab.conf", "lab.runfolder"},
    "lab.cli": {"lab.iana", "lab.ike", "lab.esp", "lab.conf", "lab.daemon", "lab.net", "lab.viz", "lab.runfolder"},
}


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _imports(path: Path) -> set[str]:
    module = ".".join(path.relative_to(LAB.parent).with_suffix("").parts)
    if module.endswith(".__init__"):
        module = module[: -len(".__init__")]
        base = module.split(".")
    else:
        base = module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                prefix = base[: len(base) - node.level + 1]
                found.add(".".join(prefix + ([node.module] if node.module else [])))
            elif node.module:
                found.add(node.module)
    return {name for name in found if name == "lab" or name.startswith("lab.")}


def _modules(package: str) -> list[Path]:
    if package == "lab":
        return [LAB / "__init__.py"]
    path = LAB.parent / package.replace(".", "/")
    return sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]


def test_every_module_belongs_to_a_layer():
    covered = {p for package in ALLOWED for p in _modules(package)}
    assert sorted(str(p.relative_to(LAB)) for p in set(LAB.rglob("*.py")) - covered) == []


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_no_upward_or_sideways_imports(package):
    wrong = {}
    for path in _modules(package):
        bad = {name for name in _imports(path) if _package(name) not in ALLOWED[package] | {package, "lab"}}
        if bad:
            wrong[str(path.relative_to(LAB.parent))] = sorted(bad)
    assert not wrong, wrong


def test_the_checker_sees_relative_and_function_level_imports():
    assert "lab.ike.const" in _imports(LAB / "ike" / "proposals.py")
    assert "lab.conf.swanctl" in _imports(LAB / "daemon" / "gateway.py")  # imported inside run_gateway
