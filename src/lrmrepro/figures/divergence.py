"""Why outputs diverge (docs/metrics.md, "Divergence diagnostics"): the table per precision and the figure of the
margin at the divergence point, from ``divergence_points.parquet`` and ``divergence_exposure.parquet`` only.

- Table: per (model, compression, task, precision): diverging problems, near-tie and confident flips, the share of
  common positions where the configurations differ at all, quantiles of
  the reference configuration's margin at the divergence point, the near-tie threshold, the share of diverging
  problems whose chosen tokens are all in every configuration's top-5, and the exposure (mean over
  configurations of the share of generated positions whose margin was below the threshold, and of the share of
  problems with at least one such position).
- Figure: the margin (top-1 − top-2 log-probability, nats, log scale) at the divergence point of every diverging
  problem, one column per precision and one marker colour per task, with each group's near-tie threshold.
"""

from __future__ import annotations

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
from ..stats.labels import GROUP_KEYS  # noqa: E402
from .accuracy import save_figure  # noqa: E402
from .compression import to_markdown  # noqa: E402

KEYS = ["model", "compression", "task", "precision"]


def _precision_rank(col: str = "precision") -> pl.Expr:
    return pl.col(col).replace_strict({p: i for i, p in enumerate(PRECISIONS)}, default=len(PRECISIONS))


def diagnostics_table(points: pl.DataFrame, exposure: pl.DataFrame) -> pl.DataFrame:
    flips = flip_summary(points).drop("decoding")
    exp = exposure.group_by(GROUP_KEYS).agg(
        pl.col("threshold").first().alias("near_tie_threshold"),
        (100 * pl.col("noise_active_share").first()).alias("noisy_positions_pct"),
        (100 * pl.col("near_tie_rate").mean()).alias("near_tie_positions_pct"),
        (100 * (pl.col("problems_with_near_tie") / pl.col("problems")).mean()).alias("problems_with_near_tie_pct"),
        pl.col("problems").first(),
    ).drop("decoding")
    table = exp.join(flips.drop("threshold"), on=KEYS, how="left").with_columns(
        pl.col(c).fill_null(0).cast(pl.Int64) for c in ("diverging", "near_tie_flips", "confident_flips"))
    cols = ["model", "compression", "task", "precision", "problems", "diverging", "near_tie_flips", "confident_flips",
            "noisy_positions_pct", "near_tie_threshold", "margin_q10", "margin_median", "margin_q90", "share_in_all_top5",
            "near_tie_positions_pct", "problems_with_near_tie_pct"]
    return table.select(cols).sort(["model", "compression", "task", _precision_rank()])


def write_diagnostics(points: pl.DataFrame, exposure: pl.DataFrame, markdown: str | Path, csv: str | Path) -> pl.DataFrame:
    table = diagnostics_table(points, exposure)
    header = ("Divergence diagnostics: per group, diverging problems by flip class (near-tie: the reference "
              "configuration's margin at the divergence point below the near-tie threshold = near_tie_sigmas x the "
              "group's noise where it acts), the share of common positions where the configurations' top-1 "
              "log-probabilities differ at all (noisy_positions_pct), margin quantiles (nats), and the exposure to "
              "near-ties of the configurations.\n\n")
    io.write_text(header + to_markdown(table, digits=3), markdown)
    with io.atomic_path(csv, ".csv") as tmp:
        table.write_csv(tmp)
    return table


def margin_figure(points: pl.DataFrame, outputs: Sequence[str | Path]) -> None:
    ref = points.filter(pl.col("reference") & pl.col("margin").is_not_null())
    precisions = [p for p in PRECISIONS if p in set(points.get_column("precision").to_list())] or list(PRECISIONS)
    fig, ax = plt.subplots(figsize=(1.8 + 1.4 * len(precisions), 4))
    tasks = sorted(set(ref.get_column("task").to_list()))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    rng = np.random.default_rng(0)
    for t_i, task in enumerate(tasks):
        sub = ref.filter(pl.col("task") == task)
        xs = [precisions.index(p) for p in sub.get_column("precision").to_list()]
        jitter = rng.uniform(-0.25, 0.25, len(xs))
        margins = np.maximum(sub.get_column("margin").to_numpy(), 1e-9)
        ax.scatter(np.array(xs) + jitter, margins, s=12, color=colors[t_i % len(colors)], label=task, alpha=0.8)
    for p_i, p in enumerate(precisions):
        th = points.filter(pl.col("precision") == p).get_column("threshold")
        for value in sorted(set(th.to_list())):
            if value and value > 0:
                ax.hlines(value, p_i - 0.4, p_i + 0.4, colors="black", linestyles="dashed", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(precisions)), precisions)
    ax.set_xlim(-0.6, len(precisions) - 0.4)
    ax.set_ylabel("margin at divergence (top-1 − top-2 logprob, nats)")
    ax.set_title("Where greedy outputs part: margin at the divergence point\n(dashed: near-tie threshold)")
    if tasks:
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no diverging problem", transform=ax.transAxes, ha="center")
    save_figure(fig, outputs)
