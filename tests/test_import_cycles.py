"""No import cycles among the project's modules, counting imports inside functions too.

The project's folders install as `edgepad.*` (pyproject's package-dir); every module's imports are read with `ast`
(relative ones resolved), giving a graph of module → project module it imports. A cycle in that graph fails the test
with the cycle spelled out. Imports inside functions count: they only postpone a cycle, they do not remove it.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Folder of the repository → the package it installs as (pyproject.toml's [tool.setuptools] package-dir).
PACKAGES = {"edgepad": "edgepad", "convert": "edgepad.convert", "runtime": "edgepad.runtime",
            "deploy": "edgepad.deploy", "data": "edgepad.data"}


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    """Installed module name → source file, for every .py file of the project's packages."""
    modules = {}
    for folder, package in PACKAGES.items():
        for path in sorted((root / folder).rglob("*.py")):
            parts = path.relative_to(root / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join((package, *parts))] = path
    return modules


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute name of `from <level dots><name> import ...` written in `module`."""
    if level == 0:
        return name or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _project_target(name: str, modules: dict[str, Path]) -> str | None:
    """The deepest project module that `name` (a module or a module.attribute) lies in."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module → the project modules it imports anywhere in its body (top level, functions, TYPE_CHECKING blocks)."""
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                source = _resolve(module, is_package, node.level, node.module)
                # `from package import submodule` imports the submodule; `from module import name` the module.
                names = [f"{source}.{alias.name}" for alias in node.names if alias.name != "*"] or [source]
            else:
                continue
            edges.update(t for t in (_project_target(n, modules) for n in names) if t and t != module)
        graph[module] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a → b → … → a) per knot of modules that import each other."""
    return [_cycle_through(component, graph) for component in knots(graph)]


def knots(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        # Iterative Tarjan, so a deep graph cannot hit the recursion limit.
        work = [(node, iter(sorted(graph[node])))]
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        while work:
            current, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    break
                if successor in on_stack:
                    low[current] = min(low[current], index[successor])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[current])
                if low[current] == index[current]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == current:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(components)


def _cycle_through(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest cycle from the component's first module back to itself, staying inside the component."""
    members = set(component)
    start = component[0]
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        next_frontier = []
        for node in frontier:
            for successor in sorted(graph[node] & members):
                if successor == start:
                    return paths[node] + [start]
                if successor not in paths:
                    paths[successor] = paths[node] + [successor]
                    next_frontier.append(successor)
        frontier = next_frontier
    raise AssertionError(f"no cycle through {start} in {component}")  # Tarjan said there is one


def test_the_project_has_no_import_cycles():
    modules = project_modules()
    assert len(modules) > 90, f"read only {len(modules)} modules: is PACKAGES still the package layout?"
    graph = import_graph(modules)
    found = knots(graph)
    lines = []
    for knot in found:
        cycle = _cycle_through(knot, graph)
        rest = sorted(set(knot) - set(cycle))
        lines.append(" -> ".join(cycle) + (f"  (same knot: {', '.join(rest)})" if rest else ""))
    assert not found, (f"{len(found)} import cycle(s) among the project's modules; move what both sides need "
                       "into a module they both import:\n" + "\n".join(lines))


def private_imports(modules: dict[str, Path]) -> list[str]:
    """`module: from other import _name` for every private name a project module takes from another one."""
    found = []
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.ImportFrom):
                continue
            source = _resolve(module, path.name == "__init__.py", node.level, node.module)
            if _project_target(source, modules) is None:
                continue
            found += [f"{module}: from {source} import {alias.name}" for alias in node.names
                      if alias.name.startswith("_") and not alias.name.startswith("__")]
    return found


def test_no_module_imports_another_ones_private_names():
    """A name with a leading underscore is its module's own: what others need gets a public name."""
    found = private_imports(project_modules())
    assert not found, "private names imported across modules:\n" + "\n".join(found)


def test_the_checker_sees_cycles_through_relative_and_function_level_imports(tmp_path):
    """The checker itself: a cycle made by an import inside a function and a relative import is found."""
    package = tmp_path / "data"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "scorers.py").write_text("def make():\n    from .board_scorer import BoardScorer\n    return "
     "BoardScorer\n")
    (package / "board_scorer.py").write_text("from edgepad.data.scorers import make\n")
    (package / "plain.py").write_text("import edgepad.data.board_scorer\n")
    graph = import_graph(project_modules(tmp_path))
    assert graph["edgepad.data.scorers"] == {"edgepad.data.board_scorer"}
    assert graph["edgepad.data.plain"] == {"edgepad.data.board_scorer"}
    assert cycles(graph) == [["edgepad.data.board_scorer", "edgepad.data.scorers", "edgepad.data.board_scorer"]]


def test_the_checker_resolves_from_package_import_submodule(tmp_path):
    (tmp_path / "runtime" / "backends").mkdir(parents=True)
    (tmp_path / "runtime" / "__init__.py").write_text("")
    (tmp_path / "runtime" / "npu_loader.py").write_text("")
    (tmp_path / "runtime" / "backends" / "__init__.py").write_text("from .base import X\n")
    (tmp_path / "runtime" / "backends" / "base.py").write_text("X = 1\n")
    (tmp_path / "runtime" / "backends" / "ksnn.py").write_text("def f():\n    from .. import npu_loader\n")
    graph = import_graph(project_modules(tmp_path))
    assert graph["edgepad.runtime.backends"] == {"edgepad.runtime.backends.base"}
    assert graph["edgepad.runtime.backends.ksnn"] == {"edgepad.runtime.npu_loader"}
    assert cycles(graph) == []


def test_the_checker_sees_private_names_taken_from_project_modules_only(tmp_path):
    (tmp_path / "edgepad").mkdir()
    (tmp_path / "edgepad" / "__init__.py").write_text("")
    (tmp_path / "edgepad" / "hashing.py").write_text("def _digest():\n    pass\n")
    (tmp_path / "edgepad" / "cli.py").write_text(
        "from __future__ import annotations\nfrom os import _exit\n\ndef f():\n    from .hashing import _digest\n")
    assert private_imports(project_modules(tmp_path)) == ["edgepad.cli: from edgepad.hashing import _digest"]
