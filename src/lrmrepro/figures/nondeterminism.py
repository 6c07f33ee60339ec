"""Tables 3, 4, 5 and Figures 4, 5 of "Give Me FP32 or Give Me Death?" from the stats parquet files only.

- Table 3: Std@Acc (%) of greedy groups; Table 4: Avg_Std@Output_Length of greedy groups; Table 5: std of Pass@1 (%)
  of sampling groups. Rows: model (``model / compression`` when the compression is not ``none``); columns:
  task/precision (Table 5: ``task (n=<samples per problem>, <C> configs)/precision``: a std is only as good as
  the number of configurations it is computed from). Markdown + CSV.
- Figure 4: Avg_Std@top1_prob per precision, one bar per task (one panel per model).
- Figure 5: distribution of Div_Index per precision (one panel per model / compression / task), the count of
  identical problems in the legend.
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
from .accuracy import save_figure  # noqa: E402

TABLES = {
    "table3": ("std_acc", "greedy", 100.0, "Std@Acc (%) of greedy decoding across runtime configurations"),
    "table4": ("avg_std_output_length", "greedy", 1.0,
               "Avg_Std@Output_Length (tokens) of greedy decoding across runtime configurations"),
    "table5": ("pass1_std", "sampling", 100.0, "Std of Pass@1 (%) under random sampling across runtime configurations"),
}


def _precision_order(values) -> list[str]:
    known = [p for p in PRECISIONS if p in values]
    return known + sorted(v for v in values if v not in PRECISIONS)


def _row_label(df: pl.DataFrame) -> pl.DataFrame:
    return df.with_columns(
        pl.when(pl.col("compression") == "none").then(pl.col("model"))
        .otherwise(pl.col("model") + " / " + pl.col("compression")).alias("row"))


def metric_table(metrics: pl.DataFrame, metric: str, kind: str, scale: float = 1.0) -> pl.DataFrame:
    """Wide table: one row per model (/ compression), one column per ``task/precision``.

    ``kind`` selects greedy groups (one sample per problem) or sampling groups (more than one)."""
    if kind not in ("greedy", "sampling"):
        raise ValueError(f"kind must be 'greedy' or 'sampling', got {kind!r}")
    if metric not in metrics.columns:
        raise ValueError(f"metrics frame has no column {metric!r}")
    df = metrics.filter(pl.col("n_samples") == 1 if kind == "greedy" else pl.col("n_samples") > 1)
    df = _row_label(df)
    if kind == "sampling":
        df = df.with_columns((pl.col("task") + " (n=" + pl.col("n_samples").cast(pl.String) + ", "
                              + pl.col("n_configs").cast(pl.String) + " configs)").alias("task"))
    if df.height == 0:
        return pl.DataFrame({"model": []}, schema={"model": pl.String})
    dup = df.group_by(["row", "task", "precision"]).len().filter(pl.col("len") > 1)
    if dup.height:
        raise ValueError(f"several decodings per (model, task, precision) in the {kind} groups: {dup.rows()[:3]}")
    df = df.with_columns((pl.col(metric) * scale).alias("value"),
                         (pl.col("task") + "/" + pl.col("precision")).alias("col"))
    tasks = sorted(df.get_column("task").unique().to_list())
    precs = _precision_order(df.get_column("precision").unique().to_list())
    cols = [f"{t}/{p}" for t in tasks for p in precs]
    wide = df.pivot(on="col", index="row", values="value").rename({"row": "model"})
    for c in cols:
        if c not in wide.columns:
            wide = wide.with_columns(pl.lit(None, pl.Float64).alias(c))
    wide = wide.select(["model", *cols]).sort("model")
    if "mixed_environment" in df.columns and (df.get_column("mixed_environment").fill_null("") != "").any():
        # statistics.allow_mixed_environments: say, per row, which groups pooled what (lrmrepro.stats.pooling)
        mixed = (df.filter(pl.col("mixed_environment").fill_null("") != "")
                 .group_by("row").agg((pl.col("col") + ": " + pl.col("mixed_environment")).sort().str.join("; "))
                 .rename({"row": "model", "col": "mixed_environment"}))
        wide = wide.join(mixed, on="model", how="left").with_columns(pl.col("mixed_environment").fill_null(""))
    return wide


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "–"
    if v == 0:
        return "0"
    if abs(v) < 1e-3:
        return f"{v:.3g}"
    return f"{v:.4g}" if abs(v) < 100 else f"{v:.2f}"


def table_markdown(wide: pl.DataFrame, title: str) -> str:
    cols = wide.columns
    lines = [f"**{title}**", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in wide.iter_rows():
        lines.append("| " + " | ".join([str(row[0])] + [v if isinstance(v, str) else _fmt(v) for v in row[1:]]) + " |")
    return "\n".join(lines) + "\n"


def write_table(metrics: pl.DataFrame, name: str, csv: str | Path, md: str | Path) -> pl.DataFrame:
    if name not in TABLES:
        raise ValueError(f"unknown table {name!r}; allowed: {sorted(TABLES)}")
    metric, kind, scale, title = TABLES[name]
    wide = metric_table(metrics, metric, kind, scale)
    with io.atomic_path(csv, ".csv") as tmp:
        wide.write_csv(tmp)
    io.write_text(table_markdown(wide, title), md)
    return wide


def value_axis_scale(values: np.ndarray, decades: float = 2.0) -> str:
    """"log" when the positive values span more than `decades` orders of magnitude, else "linear". BF16 and FP32
    top-1 probability stds differ by three to four orders: a linear axis draws FP32 and LayerCast as nothing."""
    positive = values[values > 0]
    return "log" if positive.size and positive.max() / positive.min() > 10**decades else "linear"


def figure4(metrics: pl.DataFrame, outputs: Sequence[str | Path]) -> None:
    """Avg_Std@top1_prob by precision, one bar per task, one panel per model (/ compression); greedy groups."""
    df = _row_label(metrics.filter(pl.col("n_samples") == 1))
    if df.height == 0:
        raise ValueError("figure4: no greedy groups in the metrics table")
    models = sorted(df.get_column("row").unique().to_list())
    tasks = sorted(df.get_column("task").unique().to_list())
    precs = _precision_order(df.get_column("precision").unique().to_list())
    fig, axes = plt.subplots(1, len(models), figsize=(max(4, 1.2 * len(precs) * 1.3) * len(models), 3.5),
                             squeeze=False, sharey=True)
    width = 0.8 / max(1, len(tasks))
    x = np.arange(len(precs))
    log_scale = value_axis_scale(df.get_column("avg_std_top1_prob").drop_nulls().to_numpy()) == "log"
    for ax, model in zip(axes[0], models):
        sub = df.filter(pl.col("row") == model)
        val = {(r["task"], r["precision"]): r["avg_std_top1_prob"] for r in sub.iter_rows(named=True)}
        for i, task in enumerate(tasks):
            h = [val.get((task, p)) for p in precs]
            ax.bar(x + (i - (len(tasks) - 1) / 2) * width, [np.nan if v is None else v for v in h], width,
                   label=task)
        ax.set_xticks(x, precs)
        ax.set_title(model, fontsize=9)
        ax.set_xlabel("precision")
        if log_scale:
            ax.set_yscale("log")
    axes[0][0].set_ylabel("Avg_Std@top1_prob" + (" (log scale; 0 not drawn)" if log_scale else ""))
    axes[0][-1].legend(fontsize=7, title="task", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle("Std of top-1 token probability across runtime configurations (before Div_Index)", fontsize=10)
    save_figure(fig, outputs)


def figure5(divergence: pl.DataFrame, outputs: Sequence[str | Path], bins: int = 30) -> None:
    """Distribution of Div_Index per precision (filled, translucent histograms with an outline, so neighbouring
    bins stay apart), one panel per (model / compression, task)."""
    if divergence.height == 0:
        raise ValueError("figure5: the divergence table is empty")
    df = _row_label(divergence).with_columns((pl.col("row") + " · " + pl.col("task")).alias("panel"))
    panels = sorted(df.get_column("panel").unique().to_list())
    precs = _precision_order(df.get_column("precision").unique().to_list())
    fig, axes = plt.subplots(len(panels), 1, figsize=(6.5, 2.8 * len(panels)), squeeze=False)
    for ax, panel in zip(axes[:, 0], panels):
        sub = df.filter(pl.col("panel") == panel)
        div_all = sub.get_column("div_index").drop_nulls().to_numpy()
        edges = np.histogram_bin_edges(div_all if div_all.size else np.array([0, 1]), bins=bins)
        for k, prec in enumerate(precs):
            s = sub.filter(pl.col("precision") == prec)
            if s.height == 0:
                continue
            div = s.get_column("div_index").drop_nulls().to_numpy()
            n_id = int(s.get_column("identical").sum())
            colour = f"C{k}"
            ax.hist(div, bins=edges, histtype="stepfilled", alpha=0.3, color=colour,
                    label=f"{prec}: {div.size} diverging, {n_id} identical")
            ax.hist(div, bins=edges, histtype="bar", rwidth=0.9, fill=False, edgecolor=colour, linewidth=0.8)
        ax.set_title(panel, fontsize=9)
        ax.set_xlabel("Div_Index (first divergent token position)")
        ax.set_ylabel("problems")
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, outputs)
