"""Nondeterminism of compressed models (docs/metrics.md, "Nondeterminism of compressed models"): the table per
compression and the figure of the diverging share per compression × precision, from the stats stage's
``metrics.parquet``, ``divergence_points.parquet`` and ``divergence_exposure.parquet`` only.

- Table: per (model, compression, precision, task), and an ``all`` row per (model, compression, precision) pooled
  over tasks: the engine that produced the runs (their ``backend`` label), configurations, problems, diverging
  problems and their share with a Wilson score interval, Std@Acc, Avg_Std@Output_Length, Div_Index mean / median,
  Avg_Std@top1_prob, and the divergence diagnostics (near-tie and confident flips of the first divergence). The
  ``all`` row sums problems, diverging problems and flips and averages the other metrics over tasks (weighted by
  problems; Div_Index mean weighted by diverging problems, its median left out).
- Figure: diverging share (%) per compression (x) and precision (bars), pooled over tasks, with the Wilson
  interval; one marker per task.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from .. import io  # noqa: E402
from ..precision import PRECISIONS  # noqa: E402
from ..stats.divergence import flip_summary  # noqa: E402
from .accuracy import save_figure  # noqa: E402
from .compression import to_markdown  # noqa: E402

KEYS = ["model", "compression", "precision", "task"]
Z95 = 1.959963984540054


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float | None, float | None]:
    """Wilson score interval of a proportion k / n (None, None for n = 0)."""
    if n <= 0:
        return None, None
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # the bounds at k = 0 and k = n are exactly 0 and 1; computed, they miss by an ulp for some n (n = 24: 1e-17)
    return (0.0 if k == 0 else centre - half), (1.0 if k == n else centre + half)


def _engines(exposure: pl.DataFrame) -> pl.DataFrame:
    return exposure.group_by(["model", "compression", "precision", "task"]).agg(
        pl.col("backend").unique().sort().str.join("+").alias("engine"))


def compressed_table(metrics: pl.DataFrame, points: pl.DataFrame, exposure: pl.DataFrame,
                     order: Sequence[str] | None = None) -> pl.DataFrame:
    """The table of the module docstring; ``order``: the compressions in the experiment's order."""
    greedy = metrics.filter(pl.col("n_diverging").is_not_null())
    flips = flip_summary(points).select(KEYS + ["decoding", "near_tie_flips", "confident_flips"])
    per_task = (greedy.join(flips, on=KEYS + ["decoding"], how="left")
                .join(_engines(exposure), on=KEYS, how="left")
                .with_columns(pl.col("near_tie_flips").fill_null(0), pl.col("confident_flips").fill_null(0),
                              pl.col("engine").fill_null("?")))
    pooled = per_task.group_by(["model", "compression", "precision", "decoding"]).agg(
        pl.lit("all").alias("task"),
        pl.col("engine").unique().sort().str.join("+"),
        pl.col("n_configs").max(), pl.col("n_problems").sum(), pl.col("n_diverging").sum(),
        *[((pl.col(c) * pl.col("n_problems")).sum() / pl.col("n_problems").sum()).alias(c)
          for c in ("acc_mean", "std_acc", "avg_std_output_length", "avg_std_top1_prob")],
        ((pl.col("div_index_mean").fill_null(0) * pl.col("n_diverging")).sum()
         / pl.col("n_diverging").sum()).alias("div_index_mean"),
        pl.lit(None, dtype=pl.Float64).alias("div_index_median"),
        pl.col("near_tie_flips").sum(), pl.col("confident_flips").sum(),
    ).with_columns(pl.when(pl.col("n_diverging") > 0).then(pl.col("div_index_mean")).alias("div_index_mean"))
    cols = ["model", "compression", "precision", "task", "decoding", "engine", "n_configs", "n_problems",
            "n_diverging", "acc_mean", "std_acc", "avg_std_output_length", "div_index_mean", "div_index_median",
            "avg_std_top1_prob", "near_tie_flips", "confident_flips"]
    table = pl.concat([per_task.select(cols), pooled.select(cols)], how="vertical_relaxed")
    bounds = [wilson_interval(int(k), int(n)) for k, n in table.select("n_diverging", "n_problems").rows()]
    table = table.with_columns(
        (100 * pl.col("n_diverging") / pl.col("n_problems")).alias("diverging_pct"),
        pl.Series("diverging_low_pct", [None if lo is None else 100 * lo for lo, _ in bounds], dtype=pl.Float64),
        pl.Series("diverging_high_pct", [None if hi is None else 100 * hi for _, hi in bounds], dtype=pl.Float64),
        (100 * pl.col("acc_mean")).alias("acc_mean"), (100 * pl.col("std_acc")).alias("std_acc"))
    comps = list(order or []) + sorted(set(table.get_column("compression")) - set(order or []))
    ranks = {"compression": {c: i for i, c in enumerate(comps)},
             "precision": {p: i for i, p in enumerate(PRECISIONS)}}
    table = table.with_columns(
        pl.col("compression").replace_strict(ranks["compression"], default=len(comps)).alias("_c"),
        pl.col("precision").replace_strict(ranks["precision"], default=len(PRECISIONS)).alias("_p"),
        (pl.col("task") == "all").alias("_all"))
    out = ["model", "compression", "precision", "task", "engine", "n_configs", "n_problems", "n_diverging",
           "diverging_pct", "diverging_low_pct", "diverging_high_pct", "near_tie_flips", "confident_flips",
           "acc_mean", "std_acc", "avg_std_output_length", "div_index_mean", "div_index_median", "avg_std_top1_prob",
           "decoding"]
    return table.sort(["model", "_c", "_p", "_all", "task"]).select(out)


def write_table(table: pl.DataFrame, markdown: str | Path, csv: str | Path) -> None:
    header = ("Nondeterminism of compressed models across runtime configurations (batch sizes): per compression, "
              "precision and task, and pooled over tasks (`all`). engine: the backend label of the runs "
              "(transformers dequantises compressed-tensors weights to dense ones and fake-quantizes W8A8 / FP8 "
              "activations per token in the compute dtype, compressed-tensors' forward; vllm runs W8A8 / FP8 in "
              "its int8 / fp8 kernels). diverging_pct: share of "
              "problems whose greedy outputs are not identical in every configuration, with a 95 % Wilson interval; "
              "near_tie / confident flips: the first divergence's class (docs/metrics.md). acc_mean and Std@Acc in "
              "%, Avg_Std@top1_prob as a probability.\n\n")
    fmt = table.with_columns(pl.col("avg_std_top1_prob").map_elements(lambda v: f"{v:.1e}", return_dtype=pl.String))
    io.write_text(header + to_markdown(fmt, digits=2), markdown)
    table.write_csv(csv)


def diverging_share_figure(table: pl.DataFrame, outputs: Sequence[str | Path]) -> None:
    pooled = table.filter(pl.col("task") == "all")
    if pooled.height == 0:
        raise ValueError("diverging_share_figure: no greedy groups")
    models = pooled.get_column("model").unique(maintain_order=True).to_list()
    comps = pooled.get_column("compression").unique(maintain_order=True).to_list()
    precs = [p for p in PRECISIONS if p in set(pooled.get_column("precision"))]
    tasks = sorted(set(table.get_column("task")) - {"all"})
    markers = "osD^vP*X"
    fig, axes = plt.subplots(1, len(models), figsize=(max(5.0, 1.2 * len(comps) * max(1, len(precs)) / 2 + 2), 3.6),
                             squeeze=False)
    width = 0.8 / max(1, len(precs))
    for ax, model in zip(axes[0], models):
        for j, prec in enumerate(precs):
            xs, ys, lo, hi = [], [], [], []
            for i, comp in enumerate(comps):
                row = pooled.filter((pl.col("model") == model) & (pl.col("compression") == comp)
                                    & (pl.col("precision") == prec))
                if row.height == 0:
                    continue
                r = row.row(0, named=True)
                xs.append(i - 0.4 + width * (j + 0.5))
                ys.append(r["diverging_pct"])
                lo.append(r["diverging_pct"] - r["diverging_low_pct"])
                hi.append(r["diverging_high_pct"] - r["diverging_pct"])
                for t, task in enumerate(tasks):
                    tr = table.filter((pl.col("model") == model) & (pl.col("compression") == comp)
                                      & (pl.col("precision") == prec) & (pl.col("task") == task))
                    if tr.height:
                        ax.plot(xs[-1], tr.get_column("diverging_pct")[0], markers[t % len(markers)], color="black",
                                markersize=3, alpha=0.6, label=task if (i == 0 and j == 0) else None)
            ax.bar(xs, ys, width=width, yerr=np.array([lo, hi]), capsize=2, label=prec, alpha=0.8)
        ax.set_xticks(range(len(comps)))
        ax.set_xticklabels(comps, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("diverging problems (%)")
        ax.set_title(f"{model}: outputs that change with the batch size", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, outputs)
