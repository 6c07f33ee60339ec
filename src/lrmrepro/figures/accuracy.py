"""Accuracy bar chart from the summary table: tasks on the x axis, one bar per (model, compression, precision, decoding),
height = mean accuracy over the runtime configurations, error bar = their population std (ddof=0)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from .. import io  # noqa: E402


def accuracy_frame(summary: pl.DataFrame, decoding: str | None = None) -> pl.DataFrame:
    df = summary if decoding is None else summary.filter(pl.col("decoding") == decoding)
    return (
        df.group_by(["model", "compression", "precision", "decoding", "task"])
        .agg(pl.col("accuracy").mean().alias("mean"), pl.col("accuracy").std(ddof=0).alias("std"),
             pl.len().alias("n_configs"))
        .sort(["model", "compression", "precision", "decoding", "task"])
    )


def save_figure(fig, outputs: Sequence[str | Path]) -> None:
    for out in outputs:
        suffix = Path(out).suffix
        with io.atomic_path(out, suffix) as tmp:
            fig.savefig(tmp, format=suffix.lstrip("."), bbox_inches="tight", dpi=150)
    plt.close(fig)


def accuracy_figure(summary: pl.DataFrame, outputs: Sequence[str | Path]) -> pl.DataFrame:
    if summary.height == 0:
        raise ValueError("accuracy_figure: the summary table is empty")
    frame = accuracy_frame(summary)
    tasks = sorted(frame.get_column("task").unique().to_list())
    series = frame.select(["model", "compression", "precision", "decoding"]).unique(maintain_order=True).rows()
    several_decodings = frame.get_column("decoding").n_unique() > 1
    width = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(tasks) + 0.25 * len(series)), 4))
    x = np.arange(len(tasks))
    for i, (model, comp, prec, dec) in enumerate(series):
        sub = frame.filter((pl.col("model") == model) & (pl.col("compression") == comp) & (pl.col("precision") == prec)
                           & (pl.col("decoding") == dec))
        by_task = {r["task"]: r for r in sub.iter_rows(named=True)}
        means = [100 * by_task[t]["mean"] if t in by_task else np.nan for t in tasks]
        stds = [100 * (by_task[t]["std"] or 0) if t in by_task else 0 for t in tasks]
        ax.bar(x + (i - (len(series) - 1) / 2) * width, means, width, yerr=stds, capsize=2,
               label=f"{model} / {comp} / {prec}" + (f" / {dec}" if several_decodings else ""))
    ax.set_xticks(x, tasks)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Accuracy per task (mean ± std over runtime configurations)")
    ax.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    save_figure(fig, outputs)
    return frame
