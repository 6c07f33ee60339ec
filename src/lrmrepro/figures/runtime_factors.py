"""How each runtime factor moves accuracy and output length (the reproducibility paper's runtime-factor figure), from
an experiment's summary table alone: for every factor that varies in the grid (batch size, GPU count / threads,
hardware, engine configuration), a column of panels per model (/ compression) × task, the factor's values on the x
axis, one line per precision: the mean over the grid's other runtime factors, the bar from their lowest to their
highest value. Greedy runs only (sampled runs have their own spread: Table 5)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from .accuracy import save_figure  # noqa: E402
from .nondeterminism import _precision_order  # noqa: E402

#: the runtime labels a grid varies, as the figure names them
FACTORS = {"batch_size": "batch size", "parallel": "parallel size (GPUs / threads)", "hardware": "hardware",
           "backend": "engine configuration"}
METRICS = {"accuracy": ("accuracy (%)", 100.0), "mean_output_length": ("mean output length (tokens)", 1.0)}


def varying_factors(summary: pl.DataFrame) -> list[str]:
    return [f for f in FACTORS if summary.get_column(f).n_unique() > 1]


def runtime_factor_figure(summary: pl.DataFrame, outputs: Sequence[str | Path]) -> list[str]:
    """Draw the figure of ``summary`` (one experiment's summary rows) into ``outputs``; returns the factors drawn.
    Raises ValueError when no greedy run or no factor varies."""
    df = summary.filter(pl.col("n_samples") == pl.col("n_items"))
    if df.height == 0:
        raise ValueError("runtime_factor_figure: no greedy runs in the summary")
    factors = varying_factors(df)
    if not factors:
        raise ValueError("runtime_factor_figure: the grid has one runtime configuration")
    df = df.with_columns(pl.when(pl.col("compression") == "none").then(pl.col("model"))
                         .otherwise(pl.col("model") + " / " + pl.col("compression")).alias("row"))
    cells = df.select("row", "task").unique().sort(["row", "task"]).rows()
    precisions = _precision_order(df.get_column("precision").unique().to_list())
    n_rows, n_cols = len(factors) * len(METRICS), len(cells)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(max(3.2 * n_cols, 5), 2.4 * n_rows), squeeze=False,
                             constrained_layout=True)
    for fi, factor in enumerate(factors):
        values = sorted(df.get_column(factor).unique().to_list(), key=lambda v: (isinstance(v, str), v))
        x = np.arange(len(values))
        for mi, (metric, (label, scale)) in enumerate(METRICS.items()):
            r = fi * len(METRICS) + mi
            for c, (row, task) in enumerate(cells):
                ax = axes[r][c]
                sub = df.filter((pl.col("row") == row) & (pl.col("task") == task))
                for p in precisions:
                    agg = (sub.filter(pl.col("precision") == p).group_by(factor)
                           .agg((pl.col(metric) * scale).mean().alias("mean"), (pl.col(metric) * scale).min().alias("lo"),
                                (pl.col(metric) * scale).max().alias("hi")))
                    got = {v: (m, lo, hi) for v, m, lo, hi in agg.iter_rows()}
                    mean = np.array([got.get(v, (np.nan,) * 3)[0] for v in values], dtype=float)
                    lo = np.array([got.get(v, (np.nan,) * 3)[1] for v in values], dtype=float)
                    hi = np.array([got.get(v, (np.nan,) * 3)[2] for v in values], dtype=float)
                    if np.isnan(mean).all():
                        continue
                    ax.errorbar(x, mean, yerr=[mean - lo, hi - mean], marker="o", ms=3, capsize=2, lw=1, label=p)
                ax.set_xticks(x, [str(v) for v in values], fontsize=7, rotation=30 if factor in ("hardware", "backend") else 0)
                ax.tick_params(axis="y", labelsize=7)
                if r == 0:
                    ax.set_title(f"{row}\n{task}", fontsize=8)
                if c == 0:
                    ax.set_ylabel(label, fontsize=7)
                if mi == len(METRICS) - 1:
                    ax.set_xlabel(FACTORS[factor], fontsize=7)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside upper right", fontsize=7, title="precision", title_fontsize=7)
    save_figure(fig, outputs)
    return factors
