"""DAG construction time: `snakemake -n` on a generated config with about 10,000 jobs, and a no-op rerun.

Goals: dry run < 30 s, no-op rerun (every output present) < 5 s. Prints seconds and job counts, and the same
no-op rerun of a bare two-rule Snakefile with the same artifact paths (shell rules, no input functions, no
params): the floor that Snakemake itself sets for a DAG of this size on this machine.
    .venv/bin/python benchmarks/dag.py [--tasks 10 --hardware 5]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from lrmrepro.config import validate_config  # noqa: E402
from lrmrepro.runs import Run, expand_runs  # noqa: E402


def make_config(n_tasks: int, n_hw: int) -> dict:
    gens = ["arith", "timeline", "logic", "multihop"]
    tasks = {f"t{i}": {"source": "synthetic", "generator": gens[i % 4], "n": 8} for i in range(n_tasks)}
    return {
        "models": {"default": {"source": "train"}},
        "tasks": tasks,
        "decoding": {"greedy": {"temperature": 0}},
        "experiments": {
            "grid": {
                "models": ["default"], "tasks": list(tasks), "precisions": ["bf16", "fp16", "fp32", "layercast"],
                "parallel": [1, 2, 4, 8, 16], "batch_sizes": [1, 4, 8, 16, 32],
                "hardware": [f"hw{i}" for i in range(n_hw)], "decoding": ["greedy"],
            }
        },
    }


def snakemake(workdir: Path, *args: str) -> tuple[float, str]:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--cores", "1", "-n", "--quiet", "rules", *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(proc.stdout[-2000:] + proc.stderr[-4000:])
    return seconds, proc.stdout


def total_jobs(out: str) -> int:
    m = re.search(r"^total\s+(\d+)", out, re.M)
    return int(m.group(1)) if m else 0


def touch_all(workdir: Path, cfg: dict) -> None:
    """Create every output (empty files, in DAG order by mtime), as after a finished run."""
    runs = expand_runs(validate_config(cfg))
    paths = [workdir / "results/models/default/none/config.json"]
    paths += [workdir / f"results/tasks/{t}.{ext}" for t in cfg["tasks"] for ext in ("parquet", "meta.json")]
    paths += [workdir / p for r in runs for p in (r.generations, r.generations.replace(".parquet", ".meta.json"))]
    paths += [workdir / p for r in runs for p in (r.scores, r.scores.replace(".parquet", ".meta.json"))]
    paths += [workdir / f"results/summary/accuracy.{e}" for e in ("parquet", "csv", "md", "meta.json")]
    paths += [workdir / f"results/figures/accuracy.{e}" for e in ("png", "pdf")]
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.touch()
        time.sleep(0)  # monotonic creation order is enough for mtime ordering on most filesystems


BARE_SNAKEFILE = """
import json
RUNS = json.load(open("runs.json"))
F = "@PATTERN@"
rule all:
    input: RUNS
rule generate:
    input: "results/models/{model}/{compression}/config.json"
    output: "results/generations/" + F + "/generations.parquet"
    log: "logs/generate/" + F + ".log"
    shell: "touch {output}"
rule score:
    input: "results/generations/" + F + "/generations.parquet"
    output: "results/generations/" + F + "/scores.parquet"
    log: "logs/score/" + F + ".log"
    shell: "touch {output}"
"""


def bare_floor(cfg: dict) -> tuple[float, int]:
    """No-op rerun of a bare Snakefile with the same generate -> score paths (Snakemake's own cost)."""
    import json

    runs = expand_runs(validate_config(cfg))
    work = Path(tempfile.mkdtemp(prefix="lrmrepro-dag-bare-"))
    try:
        (work / "Snakefile").write_text(BARE_SNAKEFILE.replace("@PATTERN@", Run.PATTERN))
        (work / "runs.json").write_text(json.dumps([r.scores for r in runs]))
        paths = [work / "results/models/default/none/config.json"]
        paths += [work / p for r in runs for p in (r.generations, r.scores)]
        for p in paths:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.touch()
        cmd = [sys.executable, "-m", "snakemake", "-s", str(work / "Snakefile"), "--directory", str(work),
               "--cores", "1", "-n", "--quiet", "rules", "--rerun-triggers", "mtime"]
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, text=True, check=True)
        return time.perf_counter() - t0, 2 * len(runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=10)
    ap.add_argument("--hardware", type=int, default=5)
    args = ap.parse_args()
    cfg = make_config(args.tasks, args.hardware)
    work = Path(tempfile.mkdtemp(prefix="lrmrepro-dag-"))
    try:
        (work / "config.yaml").write_text(yaml.safe_dump(cfg))
        seconds, out = snakemake(work)
        jobs = total_jobs(out)
        print(f"dry run: {jobs} jobs planned in {seconds:.1f} s (goal < 30 s)")
        touch_all(work, cfg)
        seconds2, out2 = snakemake(work, "--rerun-triggers", "mtime")
        print(f"no-op rerun (all outputs present): {total_jobs(out2)} jobs planned in {seconds2:.1f} s (goal < 5 s)")
        floor, n_bare = bare_floor(cfg)
        print(f"floor: bare two-rule Snakefile, same {n_bare} generate/score paths, no-op rerun {floor:.1f} s; "
              f"workflow / floor = {seconds2 / floor:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
