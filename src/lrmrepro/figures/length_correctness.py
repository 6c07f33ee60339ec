"""Output length against correctness (docs/metrics.md): the table and the figure, from the stats stage's
``length_correctness.parquet`` and ``length_samples.parquet`` only.

- Table: per (model, compression, task, precision, backend, decoding): samples, correct / wrong, mean and median
  length of each, the difference wrong − correct with its bootstrap CI, the verdict, the share of truncated outputs
  among the wrong ones, and the difference over untruncated samples.
- Figure: one panel per task; per (compression, precision, decoding) the length distributions of correct (left box)
  and wrong (right box) samples, the mean of each as a dot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402

from .. import io  # noqa: E402
from ..precision import PRECISIONS  # noqa: E402
from .accuracy import save_figure  # noqa: E402
from .compression import to_markdown  # noqa: E402

COLUMNS = ["model", "compression", "task", "precision", "backend", "decoding", "n_configs", "n_problems", "n_samples",
           "n_correct", "n_wrong", "mean_len_correct", "mean_len_wrong", "median_len_correct", "median_len_wrong",
           "delta_mean", "delta_low", "delta_high", "verdict", "wrong_truncated", "wrong_truncated_pct",
           "delta_mean_untruncated", "delta_untruncated_low", "delta_untruncated_high"]


def _order(frame: pl.DataFrame) -> pl.DataFrame:
    rank = pl.col("precision").replace_strict({p: i for i, p in enumerate(PRECISIONS)}, default=len(PRECISIONS))
    return frame.with_columns(rank.alias("_p")).sort(["model", "task", "compression", "_p", "decoding"]).drop("_p")


def length_table(table: pl.DataFrame) -> pl.DataFrame:
    return _order(table.with_columns((100 * pl.col("wrong_truncated_share")).alias("wrong_truncated_pct"))).select(
        COLUMNS)


def write_table(table: pl.DataFrame, markdown: str | Path, csv: str | Path) -> pl.DataFrame:
    out = length_table(table)
    level = table.get_column("level")[0] if table.height else 0.95
    resamples = table.get_column("resamples")[0] if table.height else 0
    header = (f"Output length (tokens) of correct vs wrong answers, runtime configurations pooled (n_configs). "
              f"delta = mean wrong − mean correct, {100 * level:.0f} % bootstrap CI over problems ({resamples} "
              "resamples); wrong_truncated: wrong outputs that hit max_new_tokens; delta_mean_untruncated: the same "
              "difference without truncated outputs.\n\n")
    io.write_text(header + to_markdown(out), markdown)
    out.write_csv(csv)
    return out


def length_figure(samples: pl.DataFrame, outputs: Sequence[str | Path]) -> None:
    if samples.height == 0:
        raise ValueError("length_figure: no samples")
    tasks = sorted(samples.get_column("task").unique().to_list())
    several_models = samples.get_column("model").n_unique() > 1
    several_decodings = samples.get_column("decoding").n_unique() > 1
    keys = ["model", "compression", "precision", "decoding"]
    series = _order(samples.select(keys + ["task"]).unique()).select(keys).unique(maintain_order=True).rows()
    fig, axes = plt.subplots(len(tasks), 1, figsize=(max(6.0, 0.7 * len(series) + 2), 2.6 * len(tasks)),
                             squeeze=False)
    for ax, task in zip(axes[:, 0], tasks):
        rows = samples.filter(pl.col("task") == task)
        labels = []
        for i, (model, comp, prec, dec) in enumerate(series):
            s = rows.filter((pl.col("model") == model) & (pl.col("compression") == comp) & (pl.col("precision") == prec)
                            & (pl.col("decoding") == dec))
            label = "/".join([*([model] if several_models else []), comp, prec, *([dec] if several_decodings else [])])
            labels.append(label)
            for offset, flag, colour in ((-0.18, True, "tab:blue"), (0.18, False, "tab:red")):
                values = s.filter(pl.col("correct") == flag).get_column("output_length").to_numpy()
                if values.size == 0:
                    continue
                bp = ax.boxplot([values], positions=[i + offset], widths=0.3, patch_artist=True, showfliers=True,
                                flierprops={"markersize": 2})
                for patch in bp["boxes"]:
                    patch.set_facecolor(colour)
                    patch.set_alpha(0.45)
                ax.plot([i + offset], [values.mean()], "o", color=colour, markersize=3)
        ax.set_xticks(range(len(series)))
        ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=7)
        ax.set_ylabel("output length (tokens)")
        ax.set_title(task, fontsize=9)
        ax.set_xlim(-0.6, len(series) - 0.4)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c, alpha=0.45) for c in ("tab:blue", "tab:red")]
    axes[0, 0].legend(handles, ["correct", "wrong"], loc="best", fontsize=7)
    fig.suptitle("Output length of correct vs wrong answers (runtime configurations pooled; dot: mean)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, outputs)
