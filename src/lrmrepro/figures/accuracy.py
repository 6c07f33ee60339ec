"""Accuracy heatmap from the summary table: one row per (model, compression, precision, decoding), one column per
task; each cell the mean accuracy over the runtime configurations and, below it, their population std (ddof=0).
A heatmap stays legible at any grid size (22 variants were 22 bars per task with a 10-colour cycle before)."""

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
    several_models = frame.get_column("model").n_unique() > 1
    several_decodings = frame.get_column("decoding").n_unique() > 1
    cells = {(r["model"], r["compression"], r["precision"], r["decoding"], r["task"]): r
             for r in frame.iter_rows(named=True)}
    grid = np.full((len(series), len(tasks)), np.nan)
    for i, key in enumerate(series):
        for j, t in enumerate(tasks):
            if (*key, t) in cells:
                grid[i, j] = 100 * cells[(*key, t)]["mean"]
    labels = [" / ".join([*([m] if several_models else []), c, p, *([d] if several_decodings else [])])
              for m, c, p, d in series]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(tasks) + 3.0), 0.42 * len(series) + 1.8),
                           layout="constrained")
    im = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0, vmax=100)
    for i, key in enumerate(series):
        for j, t in enumerate(tasks):
            r = cells.get((*key, t))
            if r is None:
                continue
            std = "" if r["n_configs"] < 2 else f"\n±{100 * (r['std'] or 0):.1f}"
            ax.text(j, i, f"{100 * r['mean']:.1f}{std}", ha="center", va="center", fontsize=7,
                    color="white" if grid[i, j] < 55 else "black")
    ax.set_xticks(range(len(tasks)), tasks, fontsize=8)
    ax.xaxis.tick_top()
    ax.set_yticks(range(len(series)), labels, fontsize=8)
    ax.set_ylabel("compression / precision" + (" / decoding" if several_decodings else ""))
    fig.colorbar(im, ax=ax, shrink=0.8, label="accuracy (%)")
    ax.set_title("Accuracy per task (%): mean over runtime configurations, ± their std", fontsize=9)
    save_figure(fig, outputs)
    return frame
