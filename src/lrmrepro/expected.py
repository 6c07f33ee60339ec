"""The default run's expected tables, per hardware label: record them from a finished run, compare a run with them.

``docs/results/<hardware label>/`` holds the Markdown tables of a documented ``make run`` (``results/tables/**/*.md``
and ``results/summary/accuracy.md``). With the embedded model's weights fixed, a run on the same kind of machine
must reproduce them byte for byte; ``make check-results`` says which files differ (and where) when it does not.

  python -m lrmrepro.expected record [--results results] [--label LABEL]   # after a documented run
  python -m lrmrepro.expected compare [--results results] [--label LABEL]  # exit 1 on any difference

A recorded folder also holds ``study.json``: the sha256 of the ``config.yaml`` it was recorded with. Tables recorded
for another version of the default study (more experiments, other variants) cannot match; ``compare`` then says so
first, so that a difference is not mistaken for a numerical one.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = ROOT / "docs" / "results"
#: the tables a run is compared by (relative to results/): every table the figures stage writes, and the accuracy summary
PATTERNS = ("tables/**/*.md", "summary/accuracy.md")
#: the recorded study's identity, beside its tables
STUDY = "study.json"


def study_of(config: str | Path) -> dict[str, str]:
    """What identifies the study a run was made from: its config file's sha256."""
    return {"config": Path(config).name, "config_sha256": hashlib.sha256(Path(config).read_bytes()).hexdigest()}


def study_mismatch(expected: str | Path, config: str | Path) -> str | None:
    """A sentence when ``expected`` was recorded for another version of the study ``config`` (None: the same, or
    not recorded)."""
    path = Path(expected) / STUDY
    if not path.is_file():
        return None
    recorded, now = json.loads(path.read_text()), study_of(config)
    if recorded.get("config_sha256") == now["config_sha256"]:
        return None
    return (f"the tables of {Path(expected).name} were recorded for another version of the default study "
            f"({recorded.get('config')} sha256 {recorded.get('config_sha256', '?')[:12]}, "
            f"{recorded.get('note', 'no note')}; this checkout's: {now['config_sha256'][:12]}): rows of experiments "
            "or variants added since differ without any numerical cause; re-record them on that kind of machine")


def tables(results: str | Path) -> list[Path]:
    """The compared tables of a results folder, relative to it, sorted."""
    results = Path(results)
    return sorted({p.relative_to(results) for pattern in PATTERNS for p in results.glob(pattern) if p.is_file()})


def record(results: str | Path, dest: str | Path, config: str | Path | None = None) -> list[Path]:
    """Copy the tables of ``results`` to ``dest`` (replacing what was there); with ``config``, its identity too."""
    results, dest = Path(results), Path(dest)
    found = tables(results)
    if not found:
        raise FileNotFoundError(f"no tables under {results} (patterns {', '.join(PATTERNS)}): run the workflow first")
    if dest.exists():
        shutil.rmtree(dest)
    for rel in found:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(results / rel, dest / rel)
    if config is not None:
        (dest / STUDY).write_text(json.dumps(study_of(config), indent=1) + "\n")
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
    p.add_argument("--config", default="config.yaml", help="the study the run was made from (default: config.yaml)")
    args = p.parse_args(argv)
    label = args.label or hardware_label()
    dest = EXPECTED / label
    if args.cmd == "record":
        found = record(args.results, dest, args.config)
        print(f"recorded {len(found)} tables of {args.results} as {dest}")
        return 0
    diffs = compare(args.results, dest)
    mismatch = study_mismatch(dest, args.config)
    if mismatch:
        print(f"note: {mismatch}")
    if diffs:
        print(f"{len(diffs)} of the tables differ from {dest}:\n" + "\n".join(diffs))
        return 1
    print(f"all {len(tables(dest))} tables of {args.results} equal {dest} byte for byte")
    return 0


if __name__ == "__main__":
    sys.exit(main())
