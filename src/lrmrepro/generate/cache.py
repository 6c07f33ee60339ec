"""The generation cache: finished runs and finished chunks, kept outside Snakemake's outputs, read by every engine.

Every engine generates through :func:`lrmrepro.generate.loop.generate_chunks`, which keeps each chunk and each
finished table of a run in ``<cache>/generations/<key>/`` (:class:`lrmrepro.generate.common.ChunkStore`: the key
hashes the checkpoint's identity, the prompts, decoding and runtime settings, the generation code's fingerprint,
the engine's package versions and this machine's numerics identity). Snakemake deletes every output of a failed
job; the cache is not an output, so a job killed after k of its n runs (a SLURM time limit, an out-of-memory kill,
a preemption) copies those k tables and resumes the run it was in, and a job rerun because its grid grew (another
batch size, task or precision of the same engine) generates only the new runs.

The workflow's cache is ``$LRMREPRO_CACHE``, else ``.lrmrepro-cache/`` in the working directory (set by
``rules/common.smk``; a cluster's shared scratch folder can serve several studies and checkouts: the key says
everything a result depends on). Without the variable (the package used on its own) nothing is cached, and an
interrupted run resumes from chunks kept beside its output.

  python -m lrmrepro.generate.cache list  [--cache DIR]               # every entry: finished or not, rows, size
  python -m lrmrepro.generate.cache prune [--cache DIR] [--unfinished] [--older-than DAYS] [--dry-run]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

#: the environment variable naming the cache folder
ENV_VAR = "LRMREPRO_CACHE"
#: the workflow's default, relative to its working directory
DEFAULT = ".lrmrepro-cache"
#: ``generate_chunks``'s default: take the cache from the environment
FROM_ENVIRONMENT = object()


def cache_dir() -> Path | None:
    """The cache folder of this process (``$LRMREPRO_CACHE``), None when unset or empty."""
    value = os.environ.get(ENV_VAR, "")
    return Path(value) if value else None


def entries(cache: str | Path) -> list[dict[str, Any]]:
    """One description per cache entry: key, finished (a table is kept), chunks, size in bytes, last change, and
    what it is (the run's labels of the first output it was made for)."""
    out = []
    root = Path(cache) / "generations"
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if not folder.is_dir():
            continue
        files = [p for p in folder.iterdir() if p.is_file()]
        key = json.loads((folder / "key.json").read_text()) if (folder / "key.json").exists() else {}
        run = key.get("run", {})
        out.append({"key": folder.name, "finished": (folder / "table.parquet").exists(),
                    "chunks": len([p for p in files if p.name.startswith("chunk-")]),
                    "bytes": sum(p.stat().st_size for p in files),
                    "modified": max((p.stat().st_mtime for p in files), default=folder.stat().st_mtime),
                    "first_output": key.get("first_output"),
                    "what": {k: run.get(k) for k in ("precision", "backend", "parallel", "batch_size", "device")}})
    return out


def prune(cache: str | Path, *, unfinished: bool = False, older_than_days: float | None = None,
          dry_run: bool = False) -> list[dict[str, Any]]:
    """Remove the entries that are unfinished (``unfinished``) and/or older than ``older_than_days``; with neither,
    every entry. Returns the removed (or, with ``dry_run``, the selected) entries."""
    now = time.time()
    chosen = []
    for entry in entries(cache):
        if unfinished and entry["finished"]:
            continue
        if older_than_days is not None and now - entry["modified"] < older_than_days * 86400:
            continue
        chosen.append(entry)
        if not dry_run:
            shutil.rmtree(Path(cache) / "generations" / entry["key"], ignore_errors=True)
    return chosen


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lrmrepro.generate.cache", description=__doc__.split("\n\n")[0])
    p.add_argument("cmd", choices=["list", "prune"])
    p.add_argument("--cache", default=None, help=f"the cache folder (default: ${ENV_VAR}, else {DEFAULT})")
    p.add_argument("--unfinished", action="store_true", help="prune: only entries without a finished table")
    p.add_argument("--older-than", type=float, default=None, metavar="DAYS", help="prune: only entries older than this")
    p.add_argument("--dry-run", action="store_true", help="prune: say what would be removed, remove nothing")
    args = p.parse_args(argv)
    cache = Path(args.cache) if args.cache else (cache_dir() or Path(DEFAULT))
    if args.cmd == "list":
        found = entries(cache)
        for e in found:
            state = "finished" if e["finished"] else f"{e['chunks']} chunks"
            print(f"{e['key']}  {state:>12}  "
                  f"{e['bytes'] / 1e6:9.2f} MB  {time.strftime('%Y-%m-%d %H:%M', time.localtime(e['modified']))}  "
                  f"{e['first_output']}")
        total = sum(e["bytes"] for e in found)
        print(f"{len(found)} entries ({sum(e['finished'] for e in found)} finished), {total / 1e6:.2f} MB in {cache}")
        return 0
    removed = prune(cache, unfinished=args.unfinished, older_than_days=args.older_than, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    print(f"{verb} {len(removed)} entries ({sum(e['bytes'] for e in removed) / 1e6:.2f} MB) of {cache}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
