"""Importance figures: per-behaviour heatmaps (layer × module type), importance change base vs compressed, and the
protection bar chart (uncompressed vs unprotected vs protected accuracy per task)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from ..importance.behaviours import LABELS  # noqa: E402
from ..importance.hooks import MODULE_TYPES  # noqa: E402
from ..importance.ranking import importance_change  # noqa: E402
from .accuracy import save_figure  # noqa: E402


def _frame(t) -> pl.DataFrame:
    return t if isinstance(t, pl.DataFrame) else pl.from_arrow(t)


def heatmap_grid(scores: pl.DataFrame, value: str, behaviour: str) -> tuple[np.ndarray, list[int], list[str]]:
    """Matrix [layer, module type] of ``value`` for one behaviour (NaN where missing)."""
    df = scores.filter(pl.col("behaviour") == behaviour)
    layers = sorted(scores["layer"].unique().to_list())
    found = scores["module_type"].unique().to_list()
    types = [t for t in MODULE_TYPES if t in found] + sorted(t for t in found if t not in MODULE_TYPES)
    grid = np.full((len(layers), len(types)), np.nan)
    for r in df.iter_rows(named=True):
        if r[value] is not None:
            grid[layers.index(r["layer"]), types.index(r["module_type"])] = r[value]
    return grid, layers, types


def _heatmaps(scores: pl.DataFrame, value: str, outputs: Sequence[str | Path], title: str, cmap: str,
              symmetric: bool) -> None:
    behaviours = [b for b in LABELS if b in scores["behaviour"].unique().to_list()]
    if not behaviours:
        raise ValueError(f"importance heatmap: no rows for any behaviour of {LABELS}")
    fig, axes = plt.subplots(1, len(behaviours), figsize=(3.2 * len(behaviours) + 1, 0.35 * scores["layer"].n_unique() + 2),
                             squeeze=False)
    for ax, b in zip(axes[0], behaviours):
        grid, layers, types = heatmap_grid(scores, value, b)
        kw = {}
        if symmetric:
            lim = np.nanmax(np.abs(grid)) if np.isfinite(grid).any() else 1.0
            kw = {"vmin": -lim, "vmax": lim}
        im = ax.imshow(grid, aspect="auto", cmap=cmap, origin="lower", **kw)
        ax.set_xticks(range(len(types)), [t.removesuffix("_proj") for t in types], rotation=45, fontsize=7)
        ax.set_yticks(range(len(layers)), layers, fontsize=7)
        ax.set_title(b.replace("_", " "), fontsize=9)
        ax.set_xlabel("module")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    axes[0][0].set_ylabel("layer")
    fig.suptitle(title, fontsize=10)
    save_figure(fig, outputs)


def importance_heatmaps(scores, outputs: Sequence[str | Path], value: str = "attribution", title: str | None = None) -> None:
    """One panel per behaviour: layers (rows) × module types (columns), colour = ``value``."""
    df = _frame(scores)
    if value not in df.columns:
        raise ValueError(f"importance heatmap: no column {value!r} (have {df.columns})")
    _heatmaps(df, value, outputs, title or f"Importance ({value}) per behaviour", "viridis", symmetric=False)


def importance_change_heatmaps(base, compressed, outputs: Sequence[str | Path], value: str = "attribution",
                               title: str | None = None) -> pl.DataFrame:
    """Change of importance (compressed − base) per behaviour, diverging colour map centred at 0."""
    change = importance_change(_frame(base), _frame(compressed), value)
    _heatmaps(change, "change", outputs, title or f"Importance change ({value}): compressed − base", "RdBu_r",
              symmetric=True)
    return change


def protection_figure(accuracy, outputs: Sequence[str | Path], *, uncompressed: str = "none", unprotected: str,
                      protected: str | Sequence[str], model: str | None = None) -> pl.DataFrame:
    """Grouped bars per task: accuracy (%) of the uncompressed, unprotected and protected compressions.

    ``accuracy``: a frame with columns model, compression, task, accuracy (one row per run configuration; the bar
    is the mean over rows, the error bar their population std, ddof=0)."""
    df = _frame(accuracy)
    for col in ("model", "compression", "task", "accuracy"):
        if col not in df.columns:
            raise ValueError(f"protection figure: accuracy frame lacks column {col!r}")
    if model is not None:
        df = df.filter(pl.col("model") == model)
    series = [uncompressed, unprotected, *([protected] if isinstance(protected, str) else protected)]
    missing = [s for s in series if s not in df["compression"].unique().to_list()]
    if missing:
        raise ValueError(f"protection figure: no accuracy rows for compressions {missing} "
                         f"(have {sorted(df['compression'].unique().to_list())})")
    frame = (df.filter(pl.col("compression").is_in(series))
               .group_by(["compression", "task"])
               .agg(pl.col("accuracy").mean().alias("mean"), pl.col("accuracy").std(ddof=0).fill_null(0).alias("std"))
               .sort(["compression", "task"]))
    tasks = sorted(frame["task"].unique().to_list())
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(5, 1.5 * len(tasks) + 1), 3.8))
    x = np.arange(len(tasks))
    for i, comp in enumerate(series):
        sub = {r["task"]: r for r in frame.filter(pl.col("compression") == comp).iter_rows(named=True)}
        ax.bar(x + (i - (len(series) - 1) / 2) * width, [100 * sub[t]["mean"] if t in sub else np.nan for t in tasks],
               width, yerr=[100 * sub[t]["std"] if t in sub else 0 for t in tasks], capsize=2,
               label=comp + (" (uncompressed)" if comp == uncompressed else " (unprotected)" if comp == unprotected
                             else " (protected)"))
    ax.set_xticks(x, tasks)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Protecting the most important modules")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    save_figure(fig, outputs)
    return frame
