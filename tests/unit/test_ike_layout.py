"""The IKE core's shape: its modules import each other without a circle (TYPE_CHECKING-only
imports aside), never from inside a function, and the SA, its task manager and its tasks see
the endpoint only through lab.ike.interface."""
from __future__ import annotations

import ast
from pathlib import Path

import lab.ike

IKE = Path(lab.ike.__file__).resolve().parent


def module_name(path: Path) -> str:
    parts = ["lab", "ike", *path.relative_to(IKE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def resolve(current: str, is_package: bool, node: ast.ImportFrom | ast.Import) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = current.split(".") if is_package else current.split(".")[:-1]
    if node.level:
        base = base[:len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    out = []
    for alias in node.names:
        sub = f"{target}.{alias.name}"
        if (IKE.parent.parent / Path(*sub.split("."))).with_suffix(".py").exists() or \
                (IKE.parent.parent / Path(*sub.split(".")) / "__init__.py").exists():
            out.append(sub)
        else:
            out.append(target)
    return out


def _type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def imports() -> tuple[dict[str, set[str]], dict[str, set[str]], list[str]]:
    """Runtime edges, TYPE_CHECKING edges, and function-level imports, among lab.ike modules."""
    runtime: dict[str, set[str]] = {}
    typing_only: dict[str, set[str]] = {}
    in_functions: list[str] = []
    for path in sorted(IKE.rglob("*.py")):
        name = module_name(path)
        tree = ast.parse(path.read_text())
        runtime[name], typing_only[name] = set(), set()
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                runtime[name].update(t for t in resolve(name, path.name == "__init__.py", node)
                                     if t.startswith("lab.ike"))
            elif isinstance(node, ast.If) and _type_checking(node):
                for inner in node.body:
                    if isinstance(inner, (ast.Import, ast.ImportFrom)):
                        typing_only[name].update(t for t in resolve(name, path.name == "__init__.py", inner)
                                                 if t.startswith("lab.ike"))
        for func in ast.walk(tree):
            if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(func):
                    if isinstance(inner, (ast.Import, ast.ImportFrom)):
                        targets = [t for t in resolve(name, path.name == "__init__.py", inner) if t.startswith("lab")]
                        if targets:
                            in_functions.append(f"{name}.{func.name}: {', '.join(targets)}")
    return runtime, typing_only, in_functions


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if nxt == node:
                continue
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_no_import_cycle_in_lab_ike():
    runtime, _, _ = imports()
    assert "lab.ike.sa" in runtime and "lab.ike.tasks.child_create" in runtime
    assert cycles(runtime) == []


def test_no_import_inside_a_function():
    _, _, in_functions = imports()
    assert in_functions == []


def test_the_sa_sees_the_endpoint_through_the_interface():
    runtime, typing_only, _ = imports()
    for name in runtime:
        if name in ("lab.ike.sa", "lab.ike.task_manager", "lab.ike.interface") or name.startswith("lab.ike.tasks"):
            assert "lab.ike.endpoint" not in runtime[name] | typing_only[name], name
    assert "lab.ike.interface" in typing_only["lab.ike.sa"]


def test_the_authenticators_sit_below_the_tasks():
    # as libcharon's sa/ikev2/authenticators: the IKE_AUTH task uses them, they never use a task
    runtime, typing_only, _ = imports()
    authenticators = [name for name in runtime if name.startswith("lab.ike.authenticators")]
    assert "lab.ike.authenticators.eap" in authenticators
    for name in authenticators:
        above = {t for t in runtime[name] | typing_only[name]
                 if t.startswith(("lab.ike.tasks", "lab.ike.task_manager", "lab.ike.endpoint"))}
        assert not above, name
    assert "lab.ike.authenticators" in runtime["lab.ike.tasks.ike_auth"]


def test_the_checks_can_fail():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) != []
    assert cycles({"a": {"b"}, "b": {"c"}}) == []


def test_endpoint_implements_the_interface():
    from lab.ike.endpoint import IkeEndpoint
    from lab.ike.interface import Endpoint
    members = [m for m in vars(Endpoint) if not m.startswith("_")] + list(Endpoint.__annotations__)
    endpoint = IkeEndpoint(__import__("lab.ike.config", fromlist=["Config"]).Config())
    missing = [m for m in members if not hasattr(endpoint, m)]
    assert missing == []
