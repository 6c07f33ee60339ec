"""Code fingerprints come from the real import closure of each rule's script: editing any package module a rule
imports changes its fingerprint, editing any other leaves it unchanged."""

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lrmrepro.fingerprint import code_of, import_closure

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "workflow_scripts").glob("*.py"))


@pytest.fixture
def package_copy(tmp_path):
    """A copy of src/lrmrepro and workflow_scripts to edit."""
    pkg = tmp_path / "src" / "lrmrepro"
    shutil.copytree(ROOT / "src" / "lrmrepro", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    scripts = tmp_path / "workflow_scripts"
    shutil.copytree(ROOT / "workflow_scripts", scripts, ignore=shutil.ignore_patterns("__pycache__"))
    return pkg, scripts


def _all_codes(pkg, scripts):
    return {s.name: code_of(s, root=pkg) for s in sorted(scripts.glob("*.py"))}


def test_editing_a_module_changes_exactly_the_rules_that_import_it(package_copy):
    pkg, scripts = package_copy
    closures = {s.name: set(import_closure(s, root=pkg)) for s in sorted(scripts.glob("*.py"))}
    before = _all_codes(pkg, scripts)
    modules = sorted(pkg.rglob("*.py"))
    assert len(modules) > 40
    for module in modules:
        original = module.read_text()
        module.write_text(original + "\nx = 1\n")
        try:
            after = _all_codes(pkg, scripts)
        finally:
            module.write_text(original)
        for script, closure in closures.items():
            changed = after[script] != before[script]
            assert changed == (module.resolve() in closure), (
                f"{module.relative_to(pkg)} edited: fingerprint of {script} "
                f"{'changed' if changed else 'unchanged'}, but the module is "
                f"{'in' if module.resolve() in closure else 'not in'} its import closure")
    assert _all_codes(pkg, scripts) == before


def test_editing_the_script_itself_changes_its_fingerprint(package_copy):
    pkg, scripts = package_copy
    before = _all_codes(pkg, scripts)
    script = scripts / "score.py"
    script.write_text(script.read_text() + "\n# edited\n")
    after = _all_codes(pkg, scripts)
    assert [name for name in before if before[name] != after[name]] == ["score.py"]


@pytest.mark.parametrize("script, module", [
    ("lrmrepro.generate.vllm_cli", "vllm_layercast/method.py"),      # imported lazily inside the vLLM backend
    ("lrmrepro.generate.vllm_cli", "vllm_layercast/worker_ext.py"),  # named as a string (vLLM worker extension)
    ("prepare_task.py", "tasks/heldout.py"),               # decides which questions are held out
    ("importance_change.py", "importance/ranking.py"),
    ("compression_info.py", "compress/inspect.py"),
    ("score.py", "sandbox.py"),
])
def test_closures_hold_the_modules_that_were_missed_by_hand(script, module):
    closure = import_closure(script if script.startswith("lrmrepro.") else ROOT / "workflow_scripts" / script)
    assert (ROOT / "src" / "lrmrepro" / module).resolve() in closure


def test_closure_does_not_hold_unrelated_stages():
    closure = {p.relative_to(ROOT / "src" / "lrmrepro").as_posix()
               for p in import_closure(ROOT / "workflow_scripts" / "score.py") if "src" in p.parts}
    assert not any(p.startswith(("generate/", "models/", "compress/", "importance/")) for p in closure), closure


def test_what_a_script_imports_at_run_time_is_in_its_closure():
    """Cross-check of the static reading: run each script's top-level package imports (in a forked interpreter)
    and compare the package modules Python actually loaded with the closure."""
    groups = []
    for script in SCRIPTS:
        tree = ast.parse(script.read_text())
        groups.append([ast.unparse(node) for node in tree.body
                       if isinstance(node, (ast.Import, ast.ImportFrom)) and "lrmrepro" in ast.unparse(node)])
    assert sum(map(len, groups)) > 20
    out = subprocess.run([sys.executable, str(ROOT / "tests" / "fixtures" / "import_probe.py")], input=json.dumps(groups),
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    for script, loaded in zip(SCRIPTS, json.loads(out.stdout)):
        loaded = {Path(p).resolve() for p in loaded}
        closure = set(import_closure(script))
        assert loaded, script.name
        assert loaded <= closure, f"{script.name}: loaded but not in the closure: {sorted(map(str, loaded - closure))}"


def test_every_rule_fingerprints_its_own_script():
    """`params: code=code_of("<x>.py")` of each rule (named, or defined in a loop with `name:`) names the script or
    module the rule runs."""
    checked = 0
    for smk in sorted((ROOT / "rules").glob("*.smk")):
        for block in re.split(r"(?m)^(?=[ \t]*rule[ :])", smk.read_text())[1:]:
            m = re.match(r"[ \t]*rule (\w+)", block) or re.search(r"name:\s*\n\s*(f?\"[^\"]+\"|[\w.]+)", block)
            name = m.group(1)
            codes = re.findall(r'code=(?:code_of|module_code)\("([\w.]+)"\)', block)
            script = re.search(r'script:\s*\n\s*"\.\./workflow_scripts/([\w.]+)"', block)
            shell = re.search(r"-m ([\w.]+)", block)
            # a `run:` block that calls one package module: `from <module> import ...`
            run = re.search(r"run:\s*\n\s*from ([\w.]+) import", block)
            if name == "all" or not (script or shell or "run:" in block):
                continue  # a target rule (all, preflight): it runs no code
            assert len(codes) == 1, f"rule {name} in {smk.name}: needs exactly one code=code_of(...) param"
            ran = script.group(1) if script else (shell.group(1) if shell else (run.group(1) if run else None))
            assert ran == codes[0], f"rule {name}: runs {ran} but fingerprints {codes[0]}"
            checked += 1
    assert checked >= 22
