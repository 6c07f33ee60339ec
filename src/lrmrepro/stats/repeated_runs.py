"""Repeated runs per cell, as the papers report them: the mean accuracy over a decoding's independent runs
(``decoding.<name>.runs``; run i has the label ``<name>_run<i>`` and seed ``seed + i - 1``), the std across runs,
and a 95 % CI of the mean (percentile bootstrap over problems of each problem's correctness averaged over the runs
and their samples: the runs share the problems, so problems are what is resampled). The compression paper's table
entries are such means (its AIME values are multiples of 1/90: 30 problems × 3 runs)."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np
import polars as pl

from .. import io
from ..runs import split_decoding
from .bootstrap import LEVEL, RESAMPLES, SEED, mean_ci
from .labels import LABELS

CELL = [k for k in LABELS if k != "decoding"]


def over_runs(run_refs: Iterable[Mapping[str, Any]], decodings: Mapping[str, Any], *, resamples: int = RESAMPLES,
              seed: int = SEED, level: float = LEVEL) -> pl.DataFrame:
    """One row per cell (a run's labels with the decoding's name in place of its run label) of the decodings with
    more than one run: runs, each run's accuracy, their mean and std (ddof 1), the CI of the mean."""
    cells: dict[tuple, list[tuple[int, pl.DataFrame]]] = {}
    for ref in run_refs:
        name, index = split_decoding(ref["decoding"], decodings)
        if int(decodings[name].get("runs", 1)) < 2:
            continue
        scores = io.read_parquet(ref["scores"], columns=["id", "correct"])
        cells.setdefault((*[ref[k] for k in CELL], name), []).append((index, scores))
    rows = []
    for key, runs in sorted(cells.items(), key=lambda kv: tuple(str(v) for v in kv[0])):
        runs.sort(key=lambda r: r[0])
        acc = [float(s.get_column("correct").cast(pl.Float64).mean()) for _, s in runs]
        pooled = (pl.concat([s.select("id", pl.col("correct").cast(pl.Float64)) for _, s in runs])
                  .group_by("id").agg(pl.col("correct").mean()).sort("id"))
        ci = mean_ci(pooled.get_column("correct").to_numpy(), resamples=resamples, seed=seed, level=level)
        rows.append({**dict(zip([*CELL, "decoding"], key)), "runs": len(runs), "run_accuracies": acc,
                     "accuracy_mean": float(np.mean(acc)), "accuracy_std": float(np.std(acc, ddof=1)) if len(acc) > 1
                     else float("nan"), "ci_low": ci.low, "ci_high": ci.high, "n_problems": pooled.height})
    return pl.DataFrame(rows)


def markdown(table: pl.DataFrame) -> str:
    lines = ["**Accuracy over independent runs** (mean over the runs of a cell, std across runs, 95 % bootstrap CI "
             "of the mean over problems; the papers' protocol: docs/metrics.md, \"Repeated runs\")", "",
             "| model | compression | task | precision | runtime | decoding | runs | accuracy per run (%) | mean (%) | "
             "std (pp) | 95 % CI (%) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in table.iter_rows(named=True):
        per_run = ", ".join(f"{100 * a:.1f}" for a in r["run_accuracies"])
        lines.append(f"| {r['model']} | {r['compression']} | {r['task']} | {r['precision']} | {r['backend']} "
                     f"p{r['parallel']} bs{r['batch_size']} {r['hardware']} | {r['decoding']} | {r['runs']} | "
                     f"{per_run} | {100 * r['accuracy_mean']:.1f} | {100 * r['accuracy_std']:.1f} | "
                     f"{100 * r['ci_low']:.1f}–{100 * r['ci_high']:.1f} |")
    if table.height == 0:
        lines.append("| (no decoding of this experiment has more than one run) |" + " |" * 10)
    return "\n".join(lines) + "\n"
