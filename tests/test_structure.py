"""What the workflow says about itself is true: the rule files are the Snakefile's numbered stages, and the package
names that the docs, the report pages and the recipe headers mention exist."""

import ast
import re
from pathlib import Path

import pytest

from lrmrepro.fingerprint import module_path

ROOT = Path(__file__).resolve().parents[1]


def test_rule_files_are_the_snakefiles_stages():
    stages = {name: int(n) for n, name in re.findall(r"(?m)^#\s+(\d+)\.\s+(\w+)\s", (ROOT / "Snakefile").read_text())}
    assert len(stages) == 9 and sorted(stages.values()) == list(range(1, 10))
    files = {p.stem for p in (ROOT / "rules").glob("*.smk")} - {"common"}
    assert files == set(stages)
    for name, n in stages.items():
        first = (ROOT / "rules" / f"{name}.smk").read_text().splitlines()[0]
        assert first.startswith(f"# {n}. {name}:"), f"rules/{name}.smk opens with {first!r}, the Snakefile says {n}."


def _defined(path: Path) -> dict[str, set[str] | None]:
    """Top-level names of a module; for a class, the names defined in its body."""
    out: dict[str, set[str] | None] = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out[node.name] = None
        elif isinstance(node, ast.ClassDef):
            out[node.name] = {n.name for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))} | {
                t.id for n in node.body if isinstance(n, (ast.Assign, ast.AnnAssign))
                for t in (n.targets if isinstance(n, ast.Assign) else [n.target]) if isinstance(t, ast.Name)}
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            out.update({t.id: None for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
                        if isinstance(t, ast.Name)})
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            out.update({(a.asname or a.name).split(".")[0]: None for a in node.names})
    return out


TEXTS = sorted([*ROOT.glob("recipes/*.yaml"), *ROOT.glob("docs/*.md"), *ROOT.glob("docs/report/*.rst"),
                ROOT / "README.md"])


@pytest.mark.parametrize("text", TEXTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_named_package_code_exists(text):
    """`lrmrepro.a.b.name` (a module, a function or class of it, or a class attribute) and `src/lrmrepro/...py`."""
    content = text.read_text()
    for dotted in set(re.findall(r"\blrmrepro(?:\.[A-Za-z_]\w*)+", content)):
        parts = dotted.split(".")
        end = next(e for e in range(len(parts), 0, -1) if module_path(".".join(parts[:e])) or e == 1)
        assert module_path(".".join(parts[:end])), f"{dotted}: no such module"
        rest = parts[end:]
        if rest:
            names = _defined(module_path(".".join(parts[:end])))
            members = names.get(rest[0])
            assert rest[0] in names and (len(rest) == 1 or (len(rest) == 2 and members and rest[1] in members)), (
                f"{dotted}: {'.'.join(parts[:end])} defines no {'.'.join(rest)}")
    for path in set(re.findall(r"\bsrc/lrmrepro/[\w/]+\.py\b", content)):
        assert (ROOT / path).is_file(), f"{path}: no such file"
