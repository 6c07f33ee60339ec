"""Compression results from the accuracy summary: the main results table, the sparsity sweep figure and the
bits-vs-accuracy figure ("When Reasoning Meets Compression", Zhang et al. 2025).

Inputs: the summary (``results/summary/accuracy.parquet``) and a compression-info frame with one row per
compression name: ``compression, method, bits, sparsity, effective_bits`` (built by :func:`compression_info` from the
checkpoints' meta.json; ``none`` is the uncompressed model: method ``none``, sparsity 0, bits = its storage bits),
and ``decoder_weights``: the non-zero weights of the decoder layers' linear modules (a pruned variant counts its
non-zeros, a distilled student its own layers, a quantized variant all of the teacher's), the weight count of
finding (1) of the paper (:mod:`lrmrepro.figures.weight_count`).

Aggregation (a choice, stated here): a cell is the mean over every summary row of that (model, compression, task),
i.e. over precisions, backends, runtime configurations and decodings present in the summary; filter the summary
first to restrict it. Tasks whose rows carry EM/F1 (``short_text`` tasks) get EM and F1 columns instead of an
accuracy column; ``average`` is the unweighted mean over the other (accuracy) tasks; ``truncated`` (when the summary
has ``truncated_fraction``) is the share of outputs that hit max_new_tokens, over all tasks of the row, so a variant
that makes outputs loop is visible as such. Values are in percent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402

from .. import io  # noqa: E402
from .accuracy import save_figure  # noqa: E402

INFO_COLUMNS = ("compression", "method", "bits", "sparsity", "effective_bits", "decoder_weights")
SUMMARY_COLUMNS = ("model", "compression", "task", "accuracy", "em", "f1")


def compression_info(metas: Mapping[str, Mapping[str, Any]], base_bits: float = 16.0,
                     base_weights: int | None = None) -> pl.DataFrame:
    """Info frame from ``{compression name: meta.json of its checkpoint}``; adds ``none`` when missing
    (``base_weights``: its decoder linear weight count, when known)."""
    rows = []
    for name, meta in metas.items():
        info = meta.get("recipe_info", {})
        sparsity = meta.get("sparsity")
        if sparsity is None:
            sparsity = info.get("sparsity")
        rows.append({"compression": name, "method": info.get("method"), "bits": info.get("weight_bits"),
                     "sparsity": float(sparsity) if sparsity is not None else None,
                     "effective_bits": meta.get("effective_bits"), "decoder_weights": _nonzero_weights(meta)})
    if "none" not in metas:
        rows.append({"compression": "none", "method": "none", "bits": int(base_bits), "sparsity": 0.0,
                     "effective_bits": float(base_bits), "decoder_weights": base_weights})
    return pl.DataFrame(rows, schema={"compression": pl.String, "method": pl.String, "bits": pl.Int64,
                                      "sparsity": pl.Float64, "effective_bits": pl.Float64,
                                      "decoder_weights": pl.Int64})


def _nonzero_weights(meta: Mapping[str, Any]) -> int | None:
    """Decoder linear weights minus the exact zeros measured among those stored dense (None when not recorded)."""
    n = meta.get("linear_weight_elements")
    if n is None:
        return None
    return int(round(n * (1 - (meta.get("measured_sparsity_dense") or 0.0))))


def _check(summary: pl.DataFrame, info: pl.DataFrame) -> None:
    missing = [c for c in SUMMARY_COLUMNS if c not in summary.columns]
    if missing:
        raise ValueError(f"summary: missing columns {missing} (has {summary.columns})")
    missing = [c for c in INFO_COLUMNS if c not in info.columns]
    if missing:
        raise ValueError(f"compression info: missing columns {missing} (needs {list(INFO_COLUMNS)})")
    unknown = sorted(set(summary.get_column("compression").unique()) - set(info.get_column("compression")))
    if unknown:
        raise ValueError(f"compression info has no row for compressions {unknown}")
    if summary.height == 0:
        raise ValueError("summary is empty")


def task_means(summary: pl.DataFrame) -> pl.DataFrame:
    """(model, compression, task) -> accuracy/em/f1 in percent, and whether the task is short-text (EM/F1)."""
    return (summary.group_by(["model", "compression", "task"])
            .agg((100 * pl.col("accuracy").mean()).alias("accuracy"), (100 * pl.col("em").mean()).alias("em"),
                 (100 * pl.col("f1").mean()).alias("f1"), pl.col("em").is_not_null().any().alias("short_text"),
                 pl.len().alias("n_rows"))
            .sort(["model", "compression", "task"]))


def main_results_table(summary: pl.DataFrame, info: pl.DataFrame) -> pl.DataFrame:
    _check(summary, info)
    means = task_means(summary)
    short = sorted(means.filter(pl.col("short_text")).get_column("task").unique().to_list())
    acc_tasks = sorted(set(means.get_column("task").unique()) - set(short))
    keys = means.select(["model", "compression"]).unique().sort(["model", "compression"])
    table = keys.join(info.select(INFO_COLUMNS), on="compression", how="left")
    for t in acc_tasks:
        col = means.filter(pl.col("task") == t).select("model", "compression", pl.col("accuracy").alias(t))
        table = table.join(col, on=["model", "compression"], how="left")
    if acc_tasks:
        table = table.with_columns(pl.mean_horizontal(acc_tasks).alias("average"))
    for t in short:
        col = means.filter(pl.col("task") == t).select("model", "compression", pl.col("em").alias(f"{t} EM"),
                                                       pl.col("f1").alias(f"{t} F1"))
        table = table.join(col, on=["model", "compression"], how="left")
    if "truncated_fraction" in summary.columns:  # outputs cut at max_new_tokens: a variant that loops shows here
        trunc = (summary.group_by(["model", "compression"])
                 .agg((100 * pl.col("truncated_fraction").mean()).alias("truncated")))
        table = table.join(trunc, on=["model", "compression"], how="left")
    # uncompressed first, then by method and bits
    order = pl.when(pl.col("compression") == "none").then(0).otherwise(1)
    return table.sort([pl.col("model"), order, "method", pl.col("bits").fill_null(99).neg(), "sparsity",
                       "compression"], nulls_last=True)


def to_markdown(table: pl.DataFrame, digits: int = 1) -> str:
    """Markdown table; percentages with ``digits`` decimals, sparsity and effective bits with 2."""
    cols = table.columns

    def fmt(col: str, v: Any) -> str:
        if v is None:
            return "–"
        if isinstance(v, float):
            d = 2 if col in ("sparsity", "effective_bits") else digits
            return f"{v:.{d}f}" if v == v else "–"
        return str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(fmt(c, v) for c, v in zip(cols, row)) + " |" for row in table.iter_rows()]
    return "\n".join(lines) + "\n"


EFFECT_COLUMNS = ["delta", "ci_low", "ci_high", "runtime_std_acc", "verdict"]


def effects_table(effects: pl.DataFrame) -> pl.DataFrame:
    """The compression effect vs runtime noise, one row per (model, compression, task or average, precision,
    runtime, decoding), in percent (``lrmrepro.stats.compression_effect``)."""
    pct = ["base_accuracy", "accuracy", "delta", "ci_low", "ci_high", "runtime_std_acc"]
    return effects.select(
        "model", "compression", "task", "precision", "batch_size", "parallel", "decoding", "n_problems",
        *[(100 * pl.col(c)).alias(c) for c in pct], "runtime_configs", "verdict")


def write_main_results(summary: pl.DataFrame, info: pl.DataFrame, markdown: str | Path, csv: str | Path,
                       effects: pl.DataFrame | None = None) -> pl.DataFrame:
    """The paper-style main table (one row per variant, one column per task); with ``effects``, the CSV is the long
    table of every variant × task with the effect columns (``delta``, ``ci_low``, ``ci_high``,
    ``runtime_std_acc``, ``verdict``; percent) and the markdown shows both tables."""
    table = main_results_table(summary, info)
    text = to_markdown(table)
    out = table
    if effects is not None and effects.height:
        long = effects_table(effects)
        info_cols = info.select(INFO_COLUMNS)
        out = long.join(info_cols, on="compression", how="left").select(
            "model", "compression", "method", "bits", "effective_bits", "sparsity", "decoder_weights",
            *[c for c in long.columns if c not in ("model", "compression")])
        text += ("\n**Compression effect vs runtime noise** (percentage points; `delta` = variant − uncompressed on the "
                 "same problems, 95 % paired bootstrap CI over problems; `runtime_std_acc` = Std@Acc of the "
                 "uncompressed model across the runtime grid named by `noise_from`; verdict `beyond runtime noise` "
                 "when the CI excludes 0 and |delta| > 2 × runtime Std@Acc):\n\n" + to_markdown(long))
    write_table(text, markdown, out, csv)
    return out


def write_table(text: str, markdown: str | Path, frame: pl.DataFrame, csv: str | Path) -> None:
    """A table's markdown text and its frame as CSV, each written atomically."""
    io.write_text(text, markdown)
    with io.atomic_path(csv, ".csv") as tmp:
        frame.write_csv(tmp)


def effects_figure(effects: pl.DataFrame, outputs: Sequence[str | Path]) -> None:
    """Per task: each variant's accuracy change with its 95 % CI (percentage points), and the band ±2 × the runtime
    Std@Acc of the uncompressed model (grey; absent without a runtime grid)."""
    data = effects_table(effects)
    tasks = sorted(set(data.get_column("task").to_list()) - {"average"}) + (
        ["average"] if "average" in set(data.get_column("task").to_list()) else [])
    if not tasks:
        raise ValueError("effects_figure: no compression effect to draw")
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks) + 1, 4), squeeze=False, sharey=True)
    for ax, task in zip(axes[0], tasks):
        sub = data.filter(pl.col("task") == task).sort("compression")
        names = sub.get_column("compression").to_list()
        x = list(range(len(names)))
        delta = sub.get_column("delta").to_numpy()
        err = [delta - sub.get_column("ci_low").to_numpy(), sub.get_column("ci_high").to_numpy() - delta]
        noise = sub.get_column("runtime_std_acc").drop_nulls()
        if noise.len():
            band = 2 * float(noise.max())
            ax.axhspan(-band, band, color="0.85", zorder=0, label="±2 × runtime Std@Acc")
        ax.axhline(0, color="black", linewidth=0.6)
        beyond = ["beyond" in v for v in sub.get_column("verdict").to_list()]
        ax.errorbar(x, delta, yerr=err, fmt="none", ecolor="0.3", capsize=2)
        ax.scatter(x, delta, c=["tab:red" if b else "tab:blue" for b in beyond], zorder=3, s=18)
        ax.set_xticks(x, names, rotation=60, ha="right", fontsize=6)
        ax.set_title(task)
        if noise.len():
            ax.legend(fontsize=6, loc="lower left")
    axes[0][0].set_ylabel("accuracy change vs uncompressed (points)")
    fig.suptitle("Compression effect with 95 % CI; red: beyond runtime noise", fontsize=9)
    save_figure(fig, outputs)


def sparsity_sweep_figure(summary: pl.DataFrame, info: pl.DataFrame, outputs: Sequence[str | Path],
                          methods: Sequence[str] = ("sparsegpt",)) -> pl.DataFrame:
    """Accuracy (EM for short-text tasks: ``accuracy`` is exact match there) vs sparsity, one line per task and
    one panel per model. Points: ``none`` (0 %) and every compression of ``methods`` with a sparsity."""
    _check(summary, info)
    sel = info.filter((pl.col("compression") == "none")
                      | (pl.col("method").is_in(list(methods)) & pl.col("sparsity").is_not_null()))
    # a structured (2:4) variant has sparsity 0.5 too: keep one point per sparsity, the unstructured one first
    sel = sel.sort([pl.col("compression").str.contains("2of4|2:4"), "compression"]).unique("sparsity", keep="first")
    data = (task_means(summary).join(sel.select("compression", "sparsity"), on="compression", how="inner")
            .sort(["model", "task", "sparsity"]))
    if data.height == 0:
        raise ValueError("sparsity sweep: no compression with a sparsity (and no `none` baseline) in the summary")
    models = data.get_column("model").unique().sort().to_list()
    fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models):
        sub = data.filter(pl.col("model") == model)
        for task in sub.get_column("task").unique().sort().to_list():
            t = sub.filter(pl.col("task") == task)
            ax.plot(100 * t.get_column("sparsity").to_numpy(), t.get_column("accuracy").to_numpy(), marker="o",
                    label=task)
        ax.set_xlabel("sparsity (%)")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 100)
        ax.set_title(f"{model}: SparseGPT sparsity sweep")
        ax.legend(fontsize=8)
    save_figure(fig, outputs)
    return data


def bits_accuracy_figure(summary: pl.DataFrame, info: pl.DataFrame, outputs: Sequence[str | Path],
                         x: str = "effective_bits") -> pl.DataFrame:
    """Average accuracy over the accuracy tasks (as in the main table) vs bits per weight, for quantized variants
    and ``none``; one marker colour per method, each point labelled with its compression name."""
    if x not in ("effective_bits", "bits"):
        raise ValueError(f"bits_accuracy_figure: x must be 'effective_bits' or 'bits', got {x!r}")
    table = main_results_table(summary, info)
    if "average" not in table.columns:
        raise ValueError("bits_accuracy_figure: no accuracy (non-short-text) task in the summary")
    data = table.filter(pl.col(x).is_not_null() & (pl.col("sparsity").fill_null(0) == 0)
                        & pl.col("method").is_not_null() & (pl.col("method") != "distill"))
    if data.height == 0:
        raise ValueError(f"bits_accuracy_figure: no quantized compression with {x!r} in the info frame")
    models = data.get_column("model").unique().sort().to_list()
    fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models):
        sub = data.filter(pl.col("model") == model)
        for method in sub.get_column("method").unique().sort().to_list():
            m = sub.filter(pl.col("method") == method)
            ax.scatter(m.get_column(x).to_numpy(), m.get_column("average").to_numpy(), label=method, s=30)
            for row in m.iter_rows(named=True):
                ax.annotate(row["compression"], (row[x], row["average"]), fontsize=6, xytext=(3, 3),
                            textcoords="offset points")
        ax.set_xlabel("effective bits per weight" if x == "effective_bits" else "nominal weight bits")
        ax.set_ylabel("average accuracy (%)")
        ax.set_ylim(0, 100)
        ax.set_title(f"{model}: bits vs accuracy")
        ax.legend(fontsize=8)
    save_figure(fig, outputs)
    return data
