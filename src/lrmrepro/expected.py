"""The default run's expected tables, per hardware label: record them from a finished run, compare a run with them.

``docs/results/<hardware label>/`` holds the Markdown tables of a documented ``make run`` (``results/tables/**/*.md``
and ``results/summary/accuracy.md``). With the embedded model's weights fixed, a run on the same kind of machine
must reproduce them byte for byte; ``make check-results`` says which files differ (and where) when it does not.

  python -m lrmrepro.expected record [--results results] [--label LABEL]   # after a documented run
  python -m lrmrepro.expected compare [--results results] [--label LABEL]  # exit 1 on any difference
"""

from __future__ import annotations

import argparse
import difflib
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = ROOT / "docs" / "results"
#: the tables a run is compared by (relative to results/): every table the figures stage writes, and the accuracy summary
PATTERNS = ("tables/**/*.md", "summary/accuracy.md")


def tables(results: str | Path) -> list[Path]:
    """The compared tables of a results folder, relative to it, sorted."""
    results = Path(results)
    return sorted({p.relative_to(results) for pattern in PATTERNS for p in results.glob(pattern) if p.is_file()})


def record(results: str | Path, dest: str | Path) -> list[Path]:
    """Copy the tables of ``results`` to ``dest`` (replacing what was there)."""
    results, dest = Path(results), Path(dest)
    found = tables(results)
    if not found:
        raise FileNotFoundError(f"no tables under {results} (patterns {', '.join(PATTERNS)}): run the workflow first")
    if dest.exists():
        shutil.rmtree(dest)
    for rel in found:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(results / rel, dest / rel)
    return found


def compare(results: str | Path, expected: str | Path) -> list[str]:
    """What differs between the tables of ``results`` and the recorded ``expected`` ones: one entry per missing,
    extra or different file (with a unified diff). Empty: byte-identical."""
    results, expected = Path(results), Path(expected)
    if not expected.is_dir():
        raise FileNotFoundError(f"no expected tables at {expected}: this hardware label has no documented run")
    have, want = set(tables(results)), set(tables(expected))
    out = [f"missing from {results}: {rel}" for rel in sorted(want - have)]
    out += [f"not in the expected tables: {rel}" for rel in sorted(have - want)]
    for rel in sorted(have & want):
        a, b = (expected / rel).read_bytes(), (results / rel).read_bytes()
        if a != b:
            diff = difflib.unified_diff(a.decode().splitlines(), b.decode().splitlines(), f"expected/{rel}",
                                        f"results/{rel}", lineterm="", n=0)
            out.append(f"differs: {rel}\n" + "\n".join(diff))
    return out


def main(argv: list[str] | None = None) -> int:
    from .provenance import hardware_label

    p = argparse.ArgumentParser(prog="python -m lrmrepro.expected", description=__doc__.split("\n\n")[0])
    p.add_argument("cmd", choices=["record", "compare"])
    p.add_argument("--results", default="results")
    p.add_argument("--label", default=None, help="hardware label (default: this machine's)")
    args = p.parse_args(argv)
    label = args.label or hardware_label()
    dest = EXPECTED / label
    if args.cmd == "record":
        found = record(args.results, dest)
        print(f"recorded {len(found)} tables of {args.results} as {dest}")
        return 0
    diffs = compare(args.results, dest)
    if diffs:
        print(f"{len(diffs)} of the tables differ from {dest}:\n" + "\n".join(diffs))
        return 1
    print(f"all {len(tables(dest))} tables of {args.results} equal {dest} byte for byte")
    return 0


if __name__ == "__main__":
    sys.exit(main())
