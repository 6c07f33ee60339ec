"""LiveCodeBench-style program scoring: extract the last fenced Python block and run it in the sandbox against the
item's test cases (``metadata["tests"]``: ``[{"input": str, "output": str, "testtype": "stdin"|"functional"}]``;
functional tests also need ``metadata["fn_name"]``). Correct = every test passes (pass@1 over all tests)."""

from __future__ import annotations

import json
import re
from typing import Any, Sequence

from ..sandbox import Limits, run_python

_FENCE_RE = re.compile(r"```[ \t]*(python3?|py)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)

# LiveCodeBench prepends a fixed import header to functional (LeetCode-style) solutions; this is a subset of it
FUNCTIONAL_HEADER = ("from typing import *\nimport math, collections, heapq, itertools, bisect, functools, string, re\n"
                     "from collections import *\nfrom functools import *\nfrom itertools import *\nfrom heapq import *\n"
                     "from bisect import *\n")

_FUNCTIONAL_DRIVER = """
import json as _json, sys as _sys
_args = [_json.loads(_l) for _l in _sys.stdin.read().splitlines() if _l.strip()]
_fn = getattr(Solution(), {fn!r}) if "Solution" in globals() else globals()[{fn!r}]
print(_json.dumps(_fn(*_args)))
"""


def extract_program(text: str) -> str | None:
    """The last ```python (or ```py / bare ```) fenced block after ``</think>`` if one is there, else in the whole
    text; None when there is no closed block (e.g. truncated output)."""
    from .extract import segments

    return extract_program_from(segments(text or ""))


def extract_program_from(segs: Sequence[str]) -> str | None:
    """The last ```python (or ```py / bare ```) fenced block of the first segment that has a non-empty one."""
    for seg in segs:
        blocks = _FENCE_RE.findall(seg)
        py = [b for lang, b in blocks if lang]
        chosen = py or [b for _, b in blocks]
        if chosen and chosen[-1].strip():
            return chosen[-1]
    return None


def _tokens_equal(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return abs(float(a) - float(b)) <= 1e-6 * max(1.0, abs(float(b)))
    except ValueError:
        return False


def outputs_match(got: str, expected: str) -> bool:
    """Line by line after stripping trailing blank lines; within a line whitespace-separated tokens must be equal,
    numbers within a relative tolerance of 1e-6."""
    g = [ln.split() for ln in got.strip().splitlines()]
    e = [ln.split() for ln in expected.strip().splitlines()]
    if len(g) != len(e):
        return False
    return all(len(x) == len(y) and all(_tokens_equal(s, t) for s, t in zip(x, y)) for x, y in zip(g, e))


def test_limits(metadata: dict[str, Any], allow_weak_isolation: bool = False) -> Limits:
    """Sandbox limits of one item's tests: 6 CPU seconds and 12 s wall per test unless the item says otherwise."""
    return Limits(cpu_seconds=int(metadata.get("cpu_seconds", 6)), wall_seconds=float(metadata.get("wall_seconds", 12)),
                  allow_weak_isolation=allow_weak_isolation)


def run_tests(code: str, metadata: dict[str, Any], limits: Limits | None = None) -> tuple[int, int]:
    """(passed, total); stops at the first failure (the remaining tests count as failed)."""
    tests = metadata.get("tests") or []
    limits = limits or test_limits(metadata)
    for i, t in enumerate(tests):
        if t.get("testtype", "stdin") == "functional":
            fn = metadata.get("fn_name")
            if not fn:
                return i, len(tests)
            res = run_python(FUNCTIONAL_HEADER + code + _FUNCTIONAL_DRIVER.format(fn=fn), t["input"], limits)
            try:
                ok = res.ok and json.loads(res.stdout.strip().splitlines()[-1]) == json.loads(t["output"])
            except (ValueError, IndexError):
                ok = False
        else:
            res = run_python(code, t["input"], limits)
            ok = res.ok and outputs_match(res.stdout, t["output"])
        if not ok:
            return i, len(tests)
    return len(tests), len(tests)


def score_program(segs: Sequence[str], metadata: dict[str, Any] | None,
                  allow_weak_isolation: bool = False) -> tuple[str | None, bool, str]:
    """``(code, correct, rule)``: the last fenced block (:func:`extract_program_from`, rule ``code_block``) run
    against the item's tests; no closed block -> ``(None, False, "none")``."""
    code = extract_program_from(segs)
    rule = "code_block" if code is not None else "none"
    tests = (metadata or {}).get("tests") or []
    if code is None or not tests:
        return code, False, rule
    passed, total = run_tests(code, metadata or {}, test_limits(metadata or {}, allow_weak_isolation))
    return code, passed == total, rule
