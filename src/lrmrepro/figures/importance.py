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
    save_figure(heatmap_figure(scores, value, title, cmap, symmetric), outputs)


def heatmap_figure(scores: pl.DataFrame, value: str, title: str, cmap: str = "viridis", symmetric: bool = False):
    """The figure of :func:`importance_heatmaps` (one panel per behaviour, a colour bar each), not yet saved."""
    behaviours = [b for b in LABELS if b in scores["behaviour"].unique().to_list()]
    if not behaviours:
        raise ValueError(f"importance heatmap: no rows for any behaviour of {LABELS}")
    # constrained layout gives each colour bar its own room: no tick label runs into the next panel
    fig, axes = plt.subplots(1, len(behaviours), figsize=(3.8 * len(behaviours) + 1, 0.35 * scores["layer"].n_unique() + 2),
                             squeeze=False, layout="constrained")
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
        bar = fig.colorbar(im, ax=ax, shrink=0.9)
        bar.ax.tick_params(labelsize=7)
        bar.formatter.set_powerlimits((-2, 3))  # 1e-5-sized scores as "×10⁻⁵" once, not five-digit tick labels
        bar.update_ticks()
    axes[0][0].set_ylabel("layer")
    fig.suptitle(title, fontsize=10)
    return fig


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


def rank_stability_figure(stability, outputs: Sequence[str | Path], *, score: str = "attribution",
                          formulation: str = "project", max_modules: int = 30, title: str | None = None) -> None:
    """Ranking with bootstrap intervals: one panel per behaviour (``mean`` first); modules on the x axis in the
    order of ``formulation``'s full-sample ``mean`` ranking (its best ``max_modules``); per formulation the median
    rank with its interval (error bar) and the full-sample rank (cross); the protected modules are marked."""
    df = _frame(stability).filter(pl.col("score") == score)
    if df.height == 0:
        raise ValueError(f"rank stability figure: no rows for score {score!r}")
    behaviours = ["mean"] + [b for b in LABELS if b in df["behaviour"].unique().to_list()]
    forms = df["formulation"].unique(maintain_order=True).to_list()
    base = df.filter((pl.col("formulation") == formulation) & (pl.col("behaviour") == "mean")).sort("rank")
    order = base["module"].to_list()[:max_modules]
    protected = set(base.filter(pl.col("protected"))["module"].to_list())
    labels = [m.removeprefix("model.").removeprefix("layers.").replace("self_attn.", "").replace("mlp.", "")
              .replace("_proj", "") for m in order]
    fig, axes = plt.subplots(len(behaviours), 1, figsize=(max(6, 0.32 * len(order) + 2), 2.3 * len(behaviours)),
                             squeeze=False, sharex=True)
    x = np.arange(len(order))
    width = 0.8 / max(len(forms), 1)
    for ax, b in zip(axes[:, 0], behaviours):
        for i, f in enumerate(forms):
            sub = {r["module"]: r for r in df.filter((pl.col("formulation") == f) & (pl.col("behaviour") == b))
                   .iter_rows(named=True)}
            if not sub:
                continue
            xs = x + (i - (len(forms) - 1) / 2) * width
            med = np.array([sub[m]["rank_median"] if m in sub else np.nan for m in order])
            lo = np.array([sub[m]["rank_lo"] if m in sub else np.nan for m in order])
            hi = np.array([sub[m]["rank_hi"] if m in sub else np.nan for m in order])
            full = np.array([sub[m]["rank"] if m in sub else np.nan for m in order])
            ax.errorbar(xs, med, yerr=[med - lo, hi - med], fmt="o", ms=3, capsize=2, label=f"{f} (median, interval)")
            ax.plot(xs, full, "x", ms=4, color=f"C{i}", alpha=0.7)
        k = int(df["k"][0])
        ax.axhline(k + 0.5, color="grey", lw=0.6, ls="--")
        ax.invert_yaxis()
        ax.set_ylabel("rank")
        ax.set_title(b.replace("_", " "), fontsize=9)
    axes[0, 0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax = axes[-1, 0]
    ax.set_xticks(x, labels, rotation=60, fontsize=7)
    for t, m in zip(ax.get_xticklabels(), order):
        if m in protected:
            t.set_fontweight("bold")
    lv = float(df["level"][0])
    fig.suptitle(title or f"Module ranks ({score}): median and {100 * lv:.0f}% bootstrap interval over traces "
                 f"({int(df['n_resamples'][0])} resamples; x = full sample; bold = protected; dashed = top-{k})",
                 fontsize=9)
    save_figure(fig, outputs)


def stability_markdown(stability, comparison, *, score: str = "attribution", behaviour: str = "mean",
                       formulation: str = "project", top: int = 10) -> str:
    """The stability table of the report: the top modules of the protection's ranking with their bootstrap
    rank interval and top-k / protection probabilities under both formulations, the probability of the same
    protected set, and the agreement of the rankings (Spearman ρ, top-k overlap)."""
    st = _frame(stability)
    cmp_ = _frame(comparison)
    sel = st.filter((pl.col("score") == score) & (pl.col("behaviour") == behaviour))
    forms = sel["formulation"].unique(maintain_order=True).to_list()
    own = sel.filter(pl.col("formulation") == formulation).sort("rank")
    k, R, lv = int(own["k"][0]), int(own["n_resamples"][0]), float(own["level"][0])
    by = {(r["formulation"], r["module"]): r for r in sel.iter_rows(named=True)}
    head = ["module"] + [c for f in forms for c in (f"{f} rank", f"{f} median [{100 * lv:.0f}%]", f"{f} P(top-{k})",
                                                     f"{f} P(protected)")]
    lines = [f"### Rank stability: `{score}`, behaviour `{behaviour}` ({R} bootstrap resamples over traces)", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def fmt(v: float, d: int = 2) -> str:
        return "–" if v is None or v != v else f"{v:.{d}f}"

    for r in own.head(top).iter_rows(named=True):
        cells = [f"`{r['module'].removeprefix('model.')}`" + (" (protected)" if r["protected"] else "")]
        for f in forms:
            o = by.get((f, r["module"]))
            cells += [fmt(o["rank"], 0), f"{fmt(o['rank_median'], 1)} [{fmt(o['rank_lo'], 0)}, {fmt(o['rank_hi'], 0)}]",
                      fmt(o["p_top_k"]), fmt(o["p_protected"])] if o else ["–"] * 4
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for f in forms:
        p = sel.filter(pl.col("formulation") == f)["p_same_set"][0]
        chosen = sorted(sel.filter((pl.col("formulation") == f) & pl.col("protected"))["module"].to_list())
        lines.append(f"- {f}: protects {', '.join('`' + m.removeprefix('model.') + '`' for m in chosen) or 'nothing'}; "
                     f"P(the same set on a resample) = {fmt(p)}")
    lines += ["", f"### Agreement of the rankings (Spearman ρ / top-{k} overlap)", ""]
    behs = cmp_["behaviour"].unique(maintain_order=True).to_list()
    lines += ["| a | b | " + " | ".join(behs) + " |", "|" + "---|" * (2 + len(behs))]
    pairs = cmp_.select("a_formulation", "a_score", "b_formulation", "b_score").unique(maintain_order=True)
    for a_f, a_s, b_f, b_s in pairs.iter_rows():
        if "dom_norm" in (a_s, b_s):
            continue
        if a_f != b_f and a_s != b_s and not (a_s == score or b_s == score):
            continue
        sub = {r["behaviour"]: r for r in cmp_.filter((pl.col("a_formulation") == a_f) & (pl.col("a_score") == a_s)
                                                       & (pl.col("b_formulation") == b_f) & (pl.col("b_score") == b_s))
               .iter_rows(named=True)}
        cells = [f"{fmt(sub[b]['spearman'])} / {sub[b]['top_k_overlap']}" if b in sub else "–" for b in behs]
        lines.append(f"| {a_f}:{a_s} | {b_f}:{b_s} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
