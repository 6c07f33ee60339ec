"""Where a finished run spent its time: the rules' own benchmark files (`results/benchmarks/<rule>/...tsv`, every rule
has `benchmark:`), summed per stage, against the `make run` budget.

Goal: `make run` <= 20 min from a fresh clone on a 2-core AVX2-only CPU (issue 25), including the environment set-up,
which this script cannot see: give the measured wall time of `make run` with --wall (seconds) to print the ratio.
Job seconds are wall seconds of each job; with 2 cores two jobs run at once, so the stages' sum is about twice the
Snakemake wall time.
    .venv/bin/python benchmarks/stages.py [--results results] [--wall 1080] [--budget 1200]
"""

from __future__ import annotations

import argparse
import csv
import platform
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def stage_of(rule_dir: str, name: str) -> str:
    """The stage a benchmark file belongs to: generate engines by precision and compression, others by rule."""
    if rule_dir == "generate":
        m = re.match(r"(?P<model>[^_]+)_(?P<compression>.+?)_(?P<precision>bf16|fp16|fp32|layercast)_", name)
        if m:
            kind = "uncompressed" if m["compression"] == "none" else "compressed"
            return f"generate ({kind}, {m['precision']})"
    return rule_dir


def collect(results: Path) -> dict[str, list[float]]:
    out: dict[str, list[float]] = defaultdict(list)
    for tsv in sorted((results / "benchmarks").rglob("*.tsv")):
        rule_dir = tsv.relative_to(results / "benchmarks").parts[0]
        with open(tsv) as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        if rows:
            out[stage_of(rule_dir, tsv.stem)].append(float(rows[-1]["s"]))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default=str(ROOT / "results"))
    p.add_argument("--wall", type=float, default=None, help="measured wall seconds of `make run` (with `time`)")
    p.add_argument("--budget", type=float, default=1200.0)
    args = p.parse_args()
    stages = collect(Path(args.results))
    if not stages:
        raise SystemExit(f"no benchmark files under {args.results}/benchmarks: run the workflow first")
    total = sum(sum(v) for v in stages.values())
    print(f"CPU: {cpu_model()}, {len(stages)} stages, {sum(len(v) for v in stages.values())} jobs")
    print(f"{'stage':<40} {'jobs':>5} {'sum s':>9} {'max s':>8} {'share':>6}")
    for name, secs in sorted(stages.items(), key=lambda kv: -sum(kv[1])):
        print(f"{name:<40} {len(secs):>5} {sum(secs):>9.1f} {max(secs):>8.1f} {sum(secs) / total:>6.1%}")
    print(f"{'all jobs':<40} {'':>5} {total:>9.1f}")
    if args.wall is not None:
        print(f"make run wall {args.wall:.0f} s = {args.wall / 60:.1f} min; budget {args.budget:.0f} s; "
              f"ratio {args.wall / args.budget:.2f} ({'met' if args.wall <= args.budget else 'MISSED'})")


if __name__ == "__main__":
    main()
