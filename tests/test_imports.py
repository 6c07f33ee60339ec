"""The package's structure: its imports form no cycle (module-level and lazy, function-level imports alike), and the
task stage does not depend on the model stage (the held-out questions of the synthetic tasks are computed in
lrmrepro.tasks.heldout, which the trainer uses)."""

import ast
from pathlib import Path

from lrmrepro.fingerprint import PACKAGE_ROOT, module_path

MODULES = {p: ".".join(["lrmrepro", *p.relative_to(PACKAGE_ROOT).with_suffix("").parts]).removesuffix(".__init__")
           for p in sorted(PACKAGE_ROOT.rglob("*.py"))}


def _statements(tree: ast.Module, module_level: bool):
    """Import statements of a file: all of them, or those run when it is imported (not inside a function)."""
    if not module_level:
        yield from (n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)))
        return
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            todo.extend(ast.iter_child_nodes(node))


def imports(path: Path, module_level: bool) -> set[str]:
    """Package modules a file imports (``from pkg import name`` counts ``pkg.name`` when that is a module)."""
    name = MODULES[path]
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in _statements(ast.parse(path.read_text()), module_level):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        base = ".".join(package[: len(package) - (node.level - 1)] + ([node.module] if node.module else [])) \
            if node.level else node.module
        found.add(base)
        found.update(f"{base}.{alias.name}" for alias in node.names)
    return {m for m in found if m.startswith("lrmrepro") and module_path(m) is not None and m != name}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the import graph (as a path that returns to its start), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for dep in sorted(graph.get(module, ())):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def package_graph(module_level: bool) -> dict[str, set[str]]:
    return {MODULES[p]: imports(p, module_level) for p in MODULES}


def test_no_import_cycle():
    for module_level in (True, False):
        graph = package_graph(module_level)
        assert len(graph) > 60
        cycle = find_cycle(graph)
        assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_check_would_see_the_old_circle():
    """tasks.prepare imports tasks.loaders; loaders importing prepare again (as it once did, for the item schema now
    in tasks.items) would close a circle."""
    graph = package_graph(module_level=True)
    assert "lrmrepro.tasks.loaders" in graph["lrmrepro.tasks.prepare"]
    graph["lrmrepro.tasks.loaders"] = graph["lrmrepro.tasks.loaders"] | {"lrmrepro.tasks.prepare"}
    assert find_cycle(graph) == ["lrmrepro.tasks.loaders", "lrmrepro.tasks.prepare", "lrmrepro.tasks.loaders"]


def test_the_task_stage_does_not_import_the_model_stage():
    tasks = [p for p in MODULES if MODULES[p].startswith("lrmrepro.tasks")]
    assert len(tasks) >= 5
    for p in tasks:
        models = sorted(m for m in imports(p, module_level=False) if m.startswith("lrmrepro.models"))
        assert not models, f"{MODULES[p]} imports {models}"
