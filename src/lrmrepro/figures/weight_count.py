"""Finding (1) of "When Reasoning Meets Compression" in miniature: does the weight count matter more for knowledge
than for reasoning? Accuracy change against the decoder's weight count, for the variants that remove weights:
pruning (SparseGPT, non-zero weights) and distillation (the student's weights).

Knowledge and reasoning: the tasks whose records say so (``skill`` of :class:`lrmrepro.tasks.record.TaskRecord`:
``multihop``, facts memorised in training and scored by exact match; ``arith``, ``logic`` and ``timeline``), as
:meth:`lrmrepro.study.Study.task_groups` tells the workflow; reasoning is the mean over its tasks. Each change is the one
of :func:`lrmrepro.stats.compression_effect.compression_effects` (the variant minus the uncompressed model on the
same problems, the 95 % paired bootstrap CI over problems, stratified by task for the reasoning mean), computed on
those tasks alone, with the uncompressed model's runtime noise (Std@Acc over the ``noise_from`` grid) of the same
quantity, so the verdict reads as in the compression table.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

if TYPE_CHECKING:
    import polars as pl

# polars, matplotlib and the statistics are imported where they are used

#: compression-info methods that remove weights, and how the figure names them
METHODS = {"sparsegpt": "pruning", "distill": "distillation"}


def weight_count_effects(run_refs: Iterable[Mapping[str, Any]], info: pl.DataFrame, knowledge: Sequence[str],
                         reasoning: Sequence[str], noise_summary: pl.DataFrame | None = None,
                         noise_experiment: str | None = None, **bootstrap: Any) -> pl.DataFrame:
    """One row per (model, weight-removing variant, group, precision, runtime configuration, decoding): the
    variant's decoder weights (and their share of the uncompressed model's), the group's accuracy change with CI
    and runtime noise, in fractions (not percent)."""
    import polars as pl

    from ..stats.compression_effect import AVERAGE, compression_effects

    sel = info.filter(pl.col("method").is_in(list(METHODS)))
    names = set(sel.get_column("compression").to_list())
    refs = [r for r in run_refs if r["compression"] in names | {"none"}]
    base = info.filter(pl.col("compression") == "none").get_column("decoder_weights")
    base_weights = base.item() if base.len() else None
    parts = []
    for group, tasks in (("knowledge", list(knowledge)), ("reasoning", list(reasoning))):
        group_refs = [r for r in refs if r["task"] in tasks]
        if not group_refs or not tasks:
            continue
        eff = compression_effects(group_refs, noise_summary, noise_experiment, **bootstrap)
        # one task: its own rows; several: the stratified average over them
        eff = eff.filter(pl.col("task") == (tasks[0] if len(tasks) == 1 else AVERAGE))
        parts.append(eff.with_columns(pl.lit(group).alias("group"), pl.lit(", ".join(tasks)).alias("tasks")))
    if not parts:
        raise ValueError("weight count: the experiment has no knowledge or reasoning task (the task records' skill)")
    effects = pl.concat(parts)
    out = effects.join(sel.select("compression", "method", "sparsity", "decoder_weights"), on="compression",
                       how="inner")
    frac = (pl.col("decoder_weights") / base_weights) if base_weights else pl.lit(None, pl.Float64)
    return (out.with_columns(pl.col("method").replace_strict(METHODS, default=None).alias("kind"),
                             frac.alias("weight_fraction"))
            .select("model", "compression", "kind", "sparsity", "decoder_weights", "weight_fraction", "group",
                    "tasks", "precision", "batch_size", "parallel", "decoding", "base_accuracy", "accuracy", "delta",
                    "ci_low", "ci_high", "runtime_std_acc", "verdict")
            .sort(["model", "kind", pl.col("weight_fraction").neg(), "compression", "group"]))


def weight_count_table(effects: pl.DataFrame) -> pl.DataFrame:
    """The wide table: one row per variant, knowledge and reasoning side by side (percent / percentage points)."""
    import polars as pl

    keys = ["model", "compression", "kind", "decoder_weights", "weight_fraction"]
    wide = effects.select(keys).unique(maintain_order=True).with_columns((100 * pl.col("weight_fraction")).alias(
        "weight_fraction"))
    for group in ("knowledge", "reasoning"):
        g = effects.filter(pl.col("group") == group).select(
            *keys[:2], (100 * pl.col("base_accuracy")).alias(f"{group} base"),
            (100 * pl.col("delta")).alias(f"{group} Δ"),
            pl.format("[{}, {}]", (100 * pl.col("ci_low")).round(1), (100 * pl.col("ci_high")).round(1))
            .alias(f"{group} 95% CI"), (100 * pl.col("runtime_std_acc")).alias(f"{group} runtime std"),
            pl.col("verdict").alias(f"{group} verdict"))
        if g.height:
            wide = wide.join(g, on=keys[:2], how="left")
    if {"knowledge Δ", "reasoning Δ"} <= set(wide.columns):
        wide = wide.with_columns((pl.col("knowledge Δ") - pl.col("reasoning Δ")).alias("knowledge Δ − reasoning Δ"))
    return wide.rename({"weight_fraction": "weights (% of uncompressed)"})


def write_weight_count(effects: pl.DataFrame, markdown: str | Path, csv: str | Path) -> pl.DataFrame:
    from .compression import to_markdown, write_table

    table = weight_count_table(effects)
    text = ("Accuracy change against the decoder's weight count (finding (1) of \"When Reasoning Meets "
            "Compression\"): `decoder_weights` = non-zero weights of the decoder layers' linear modules; knowledge = "
            "the multihop task, reasoning = the mean over arith, logic and timeline; Δ = variant − uncompressed on "
            "the same problems (percentage points), 95 % paired bootstrap CI over problems; runtime std = Std@Acc "
            "of the uncompressed model across the runtime grid (the same quantity); verdict as in the compression "
            "table.\n\n" + to_markdown(table))
    write_table(text, markdown, effects, csv)
    return table


def weight_count_figure(effects: pl.DataFrame, outputs: Sequence[str | Path]) -> None:
    """One panel per model: accuracy change (points, 95 % CI) against the weights kept (% of the uncompressed
    model's); colour = knowledge / reasoning, marker and line = pruning / distillation (each line starts at the
    uncompressed model, 100 %, change 0); bands: ±2 × the runtime Std@Acc of each group."""
    import polars as pl

    from .accuracy import save_figure
    import matplotlib.pyplot as plt  # Agg: set by lrmrepro.figures.accuracy

    if effects.height == 0:
        raise ValueError("weight_count_figure: no effect to draw")
    models = effects.get_column("model").unique().sort().to_list()
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4.2), squeeze=False)
    colours = {"knowledge": "tab:red", "reasoning": "tab:blue"}
    markers = {"pruning": ("o", "-"), "distillation": ("s", "--")}
    for ax, model in zip(axes[0], models):
        sub = effects.filter(pl.col("model") == model)
        for group, colour in colours.items():
            noise = sub.filter(pl.col("group") == group).get_column("runtime_std_acc").drop_nulls()
            if noise.len():
                band = 200 * float(noise.max())
                ax.axhspan(-band, band, color=colour, alpha=0.08, zorder=0)
            for kind, (marker, line) in markers.items():
                g = sub.filter((pl.col("group") == group) & (pl.col("kind") == kind)).sort("weight_fraction",
                                                                                          descending=True)
                if g.height == 0:
                    continue
                shift = -1.0 if kind == "distillation" else 0.0  # side by side where both kinds keep as many
                x = [100.0] + [100 * w + shift for w in g.get_column("weight_fraction").to_list()]
                y = [0.0] + (100 * g.get_column("delta")).to_list()
                low = (100 * (g.get_column("delta") - g.get_column("ci_low"))).to_list()
                high = (100 * (g.get_column("ci_high") - g.get_column("delta"))).to_list()
                ax.plot(x, y, line, color=colour, linewidth=1, alpha=0.7)
                ax.errorbar(x[1:], y[1:], yerr=[low, high], fmt=marker, color=colour, capsize=2, markersize=5,
                            label=f"{group}, {kind}")
                for xi, yi, name in zip(x[1:], y[1:], g.get_column("compression").to_list()):
                    ax.annotate(name, (xi, yi), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_xlim(105, 0)
        ax.set_xlabel("decoder weights kept (% of the uncompressed model's non-zero weights)")
        ax.set_ylabel("accuracy change vs uncompressed (points)")
        ax.set_title(f"{model}: weight count, knowledge vs reasoning")
        ax.legend(fontsize=7, loc="lower left")
    fig.suptitle("Accuracy change with 95 % CI; bands: ±2 × runtime Std@Acc (knowledge red, reasoning blue)",
                 fontsize=9)
    save_figure(fig, outputs)
