"""Check every recorded artifact of a results folder against its producer's record.

``python -m lrmrepro.verify [results]`` (``make verify``): every table the workflow wrote has a record beside it
(``.<name>.record.json``: sha256, size, rows, producing rule; :mod:`lrmrepro.io`). A file changed behind
Snakemake's back (edited, truncated, restored with ``cp -p`` or ``touch -r``, which keep the timestamps Snakemake
looks at) is listed with the command that rebuilds it and everything made from it; exit status 1 when any is.
Files without a record (made before records existed) are counted, not judged.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from .io import ArtifactError, check_artifact

RECORD_GLOB = ".*.record.json"


def artifacts(results: str | Path) -> list[Path]:
    """The recorded artifacts under ``results`` (from their records; temporaries of unfinished writes excluded)."""
    out = []
    for rec in sorted(Path(results).rglob(RECORD_GLOB)):
        if rec.name.endswith(".tmp"):
            continue
        out.append(rec.with_name(rec.name[1:-len(".record.json")]))
    return out


def verify(results: str | Path) -> tuple[list[Path], list[str]]:
    """(artifacts checked, problems: one message per artifact that is missing or differs from its record)."""
    checked, problems = [], []
    for path in artifacts(results):
        checked.append(path)
        try:
            check_artifact(path)
        except ArtifactError as e:
            problems.append(str(e))
    return checked, problems


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lrmrepro.verify", description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="?", default="results", help="the results folder (default: results)")
    args = ap.parse_args(argv)
    if not Path(args.results).is_dir():
        print(f"{args.results}: no such folder", file=sys.stderr)
        return 2
    checked, problems = verify(args.results)
    unrecorded = sum(1 for p in Path(args.results).rglob("*.parquet") if not p.name.startswith(".")) - \
        sum(1 for p in checked if p.suffix == ".parquet")
    for msg in problems:
        print(msg)
    print(f"{len(checked)} recorded artifacts checked under {args.results}/: {len(problems)} differ from their "
          f"producer's record or are missing" + (f"; {unrecorded} parquet files have no record (made before "
                                                   "records)" if unrecorded > 0 else ""))
    if problems:
        paths = " ".join(m.split(" ", 1)[0] for m in problems)
        print(f"rebuild them and what was made from them: snakemake --cores all --forcerun {paths}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
