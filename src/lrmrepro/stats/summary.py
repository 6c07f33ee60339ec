"""Accuracy summary: one row per run (model, compression, task, precision, runtime configuration, decoding).

Columns: the run labels, ``n_items`` (problems), ``n_samples`` (generations), ``accuracy`` (mean of ``correct``
over all generations) with ``accuracy_ci_low`` / ``accuracy_ci_high`` (percentile bootstrap over problems,
:mod:`lrmrepro.stats.bootstrap`: 1,000 resamples, seed 0, 95 %, per-problem score = the mean of ``correct`` over its
samples), ``em`` / ``f1`` (means, short-text tasks only, else null), ``mean_output_length`` (tokens),
``truncated_fraction`` (share of generations that hit max_new_tokens: the scores' ``truncated`` column). Outputs that
loop until the token limit thus show as truncation, not only as lost accuracy (docs/tasks.md, "Truncated outputs").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import polars as pl

from .. import io
from .bootstrap import LEVEL, RESAMPLES, SEED, mean_ci
from .labels import LABEL_SCHEMA, LABELS


def summary_row(labels: dict[str, Any], scores: pl.DataFrame, gens: pl.DataFrame | None, *,
                resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL) -> dict[str, Any]:
    """One summary row from a run's scores (and generations, for the output length; without them it is null).
    ``truncated_fraction``: the scores' ``truncated`` column (unknown counts as not truncated), else the
    generations' finish reasons."""
    n = scores.height
    ci = None
    if n:
        per_problem = scores.group_by("id").agg(pl.col("correct").cast(pl.Float64).mean()).sort("id")
        ci = mean_ci(per_problem.get_column("correct").to_numpy(), resamples=resamples, seed=seed, level=level)
    if "truncated" in scores.columns:
        truncated = float(scores.get_column("truncated").fill_null(False).cast(pl.Float64).mean()) if n else None
    elif gens is not None:
        truncated = float((gens.get_column("finish_reason") == "length").mean())
    else:
        truncated = None
    return {
        **{k: labels.get(k) for k in LABELS},
        "n_items": scores.get_column("id").n_unique(),
        "n_samples": n,
        "accuracy": float(scores.get_column("correct").cast(pl.Float64).mean()) if n else None,
        "accuracy_ci_low": ci.low if ci else None,
        "accuracy_ci_high": ci.high if ci else None,
        "em": scores.get_column("em").cast(pl.Float64).mean() if "em" in scores.columns else None,
        "f1": scores.get_column("f1").cast(pl.Float64).mean() if "f1" in scores.columns else None,
        "mean_output_length": float(gens.get_column("output_length").mean()) if gens is not None else None,
        "truncated_fraction": truncated,
    }


def summarize_run(ref: dict[str, Any], **ci: Any) -> dict[str, Any]:
    scores = io.read_parquet(ref["scores"])
    gens = io.read_parquet(ref["generations"], columns=["id", "sample_idx", "output_length", "finish_reason"])
    return summary_row(ref, scores, gens, **ci)


SUMMARY_SCHEMA = {
    **LABEL_SCHEMA,
    "n_items": pl.Int64, "n_samples": pl.Int64, "accuracy": pl.Float64, "accuracy_ci_low": pl.Float64,
    "accuracy_ci_high": pl.Float64, "em": pl.Float64, "f1": pl.Float64,
    "mean_output_length": pl.Float64, "truncated_fraction": pl.Float64,
}


def summarize_runs(refs: Sequence[dict[str, Any]], *, resamples: int = RESAMPLES, seed: int = SEED,
                   level: float = LEVEL) -> pl.DataFrame:
    return pl.DataFrame([summarize_run(r, resamples=resamples, seed=seed, level=level) for r in refs],
                        schema=SUMMARY_SCHEMA).sort(LABELS)


def to_markdown(df: pl.DataFrame, float_digits: int = 4) -> str:
    cols = df.columns
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.iter_rows():
        cells = []
        for v in row:
            if v is None:
                cells.append("")
            elif isinstance(v, float):
                cells.append(f"{v:.{float_digits}g}")
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def experiment_markdown(df: pl.DataFrame, experiment: str) -> str:
    """One experiment's accuracy table with only the columns that apply: run labels that are the same for every
    run are said once above the table, measures that no run has (``em``/``f1`` without short-text tasks) are left
    out; accuracy and its interval in percent."""
    from .labels import LABELS

    if df.height == 0:
        return f"# {experiment}: accuracy\n\nNo runs.\n"
    constant = [c for c in LABELS if c in df.columns and df.get_column(c).n_unique() == 1]
    empty = [c for c in df.columns if c not in LABELS and df.get_column(c).null_count() == df.height]
    shown = df.drop(constant + empty).sort([c for c in LABELS if c in df.columns and c not in constant])
    pct = [c for c in ("accuracy", "accuracy_ci_low", "accuracy_ci_high", "em", "f1", "truncated_fraction")
           if c in shown.columns]
    shown = shown.with_columns([(pl.col(c) * 100).round(1) for c in pct])
    shown = shown.with_columns(pl.col("mean_output_length").round(1)) if "mean_output_length" in shown.columns \
        else shown
    same = ", ".join(f"{c} `{df.get_column(c)[0]}`" for c in constant)
    note = (f"{df.height} runs. The same for every run: {same}." if same else f"{df.height} runs.")
    left_out = f" Not measured for these tasks, so not shown: {', '.join(empty)}." if empty else ""
    return (f"# {experiment}: accuracy\n\n{note}{left_out} Accuracy, its 95 % bootstrap interval over problems "
            f"(`accuracy_ci_low`, `accuracy_ci_high`) and the truncated share in percent.\n\n"
            + to_markdown(shown, float_digits=6))


def write_summary(df: pl.DataFrame, parquet: str | Path, csv: str | Path, md: str | Path) -> None:
    io.write_parquet(df, parquet)
    with io.atomic_path(csv, ".csv") as tmp:
        df.write_csv(tmp)
    io.write_text(to_markdown(df), md)
