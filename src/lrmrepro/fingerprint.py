"""Code fingerprints: a hash of the code a rule runs, computed from the real import closure of its script.

Snakemake reruns a job when its script changes (mtime), but not when a package module the script imports changes.
Every rule therefore carries ``params: code=code_of("<its script>")``: the hash of the script and of every
``lrmrepro`` module it imports, directly or transitively. With Snakemake's default ``--rerun-triggers`` (which
include ``params``), editing a scorer reruns scoring and everything downstream of it, but never generation; nobody
maintains a list of which modules a stage uses.

The closure is read from the source with :mod:`ast`, without importing anything:

- every ``import lrmrepro.x`` / ``from lrmrepro.x import y`` / relative ``from ..x import y`` anywhere in a file
  (function-level imports included, so lazily imported modules count too); ``from pkg import name`` counts
  ``pkg.name`` when that is a module;
- a string literal naming a package module (``"lrmrepro.vllm_layercast.worker_ext.DescribeExtension"``,
  ``"lrmrepro.vllm_layercast:register"``): such modules are imported by name at run time (vLLM worker extensions,
  entry points);
- the ``__init__.py`` of every package on the way (importing ``lrmrepro.a.b`` runs ``lrmrepro/__init__.py`` and
  ``lrmrepro/a/__init__.py``).

This over-approximates what a given run executes (a module imported in a branch that does not run still counts),
which is the safe direction: a stale result is worse than a needless rerun.
"""

from __future__ import annotations

import ast
import hashlib
import re
from functools import lru_cache
from pathlib import Path

PACKAGE = "lrmrepro"
PACKAGE_ROOT = Path(__file__).resolve().parent
_MODULE_STRING_RE = re.compile(rf"^{PACKAGE}(?:\.[A-Za-z_]\w*)+(?::\w+)?$")


def module_path(name: str, root: Path = PACKAGE_ROOT) -> Path | None:
    """The source file of package module ``name`` (``lrmrepro.a.b`` -> ``a/b.py`` or ``a/b/__init__.py``)."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = root.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_name(path: Path, root: Path) -> str | None:
    try:
        rel = path.resolve().relative_to(root)
    except ValueError:
        return None
    parts = list(rel.with_suffix("").parts)
    if parts and parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([PACKAGE, *parts])


def _longest_module(dotted: str, root: Path) -> str | None:
    """``lrmrepro.a.b.Cls`` -> ``lrmrepro.a.b`` (the longest prefix that is a module)."""
    parts = dotted.split(":")[0].split(".")
    for end in range(len(parts), 1, -1):
        name = ".".join(parts[:end])
        if module_path(name, root) is not None:
            return name
    return None


def _imports(path: Path, module: str | None, is_package: bool, root: Path) -> frozenset[str]:
    """Package modules named by one file (imports anywhere in it, and module-naming string literals)."""
    stat = path.stat()
    return _imports_cached(path, stat.st_mtime_ns, stat.st_size, module, is_package, root)


@lru_cache(maxsize=None)
def _imports_cached(path: Path, mtime_ns: int, size: int, module: str | None, is_package: bool,
                    root: Path) -> frozenset[str]:
    tree = ast.parse(path.read_bytes(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if module is None:
                    continue  # a relative import in a script outside the package: not ours
                package = module.split(".") if is_package else module.split(".")[:-1]
                base_parts = package[: len(package) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _MODULE_STRING_RE.match(node.value):
            longest = _longest_module(node.value, root)
            if longest:
                found.add(longest)
    out = set()
    for name in found:
        if name.split(".")[0] == PACKAGE and module_path(name, root) is not None:
            out.add(name)
    return frozenset(out)


def import_closure(entry: str | Path, root: Path = PACKAGE_ROOT) -> list[Path]:
    """Files a script (a path) or a package module (a dotted name) runs: itself, every package module it imports
    transitively, and the ``__init__.py`` of every package on the way. Sorted, absolute."""
    root = Path(root).resolve()
    if isinstance(entry, str) and not entry.endswith(".py"):
        first = module_path(entry, root)
        if first is None:
            raise FileNotFoundError(f"code fingerprint: no module {entry!r} under {root}")
        todo: list[tuple[Path, str | None]] = [(first, entry)]
    else:
        script = Path(entry).resolve()
        if not script.is_file():
            raise FileNotFoundError(f"code fingerprint: no script {str(entry)!r}")
        todo = [(script, _module_name(script, root))]
    seen: dict[Path, str | None] = {}
    while todo:
        path, name = todo.pop()
        if path in seen:
            continue
        seen[path] = name
        wanted: set[str] = set()
        if name is not None:  # the packages on the way are imported first
            parts = name.split(".")
            wanted.update(".".join(parts[:i]) for i in range(1, len(parts)))
        wanted |= _imports(path, name, path.name == "__init__.py", root)
        for mod in wanted:
            mp = module_path(mod, root)
            if mp is not None and mp.resolve() not in seen:
                todo.append((mp.resolve(), mod))
    return sorted(seen)


def fingerprint_files(files: list[Path], root: Path) -> str:
    h = hashlib.sha256()
    for f in files:
        try:
            label = str(f.relative_to(root.parent))
        except ValueError:
            label = f.name  # a script outside the package: its name, not where the checkout lives
        h.update(label.encode() + b"\0")
        h.update(f.read_bytes())
        h.update(b"\0")
    return h.hexdigest()[:16]


def code_of(entry: str | Path, root: Path = PACKAGE_ROOT) -> str:
    """The code fingerprint of a rule: of its script (a ``.py`` path) or of a package module (dotted name), with
    everything it imports from the package (see the module docstring)."""
    root = Path(root).resolve()
    return fingerprint_files(import_closure(entry, root), root)
