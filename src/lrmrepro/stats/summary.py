"""Accuracy summary: one row per run (model, compression, task, precision, runtime configuration, decoding).

Columns: the run labels, ``n_items`` (problems), ``n_samples`` (generations), ``accuracy`` (mean of ``correct``
over all generations), ``em`` / ``f1`` (means, short-text tasks only, else null), ``mean_output_length`` (tokens),
``truncated_fraction`` (share of generations that hit max_new_tokens).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import polars as pl

from .. import io

LABELS = ["model", "compression", "task", "precision", "backend", "parallel", "batch_size", "hardware", "decoding"]


def summarize_run(ref: dict[str, Any]) -> dict[str, Any]:
    scores = pl.read_parquet(ref["scores"])
    gens = pl.read_parquet(ref["generations"], columns=["id", "sample_idx", "output_length", "finish_reason"])
    return {
        **{k: ref[k] for k in LABELS},
        "n_items": scores.get_column("id").n_unique(),
        "n_samples": scores.height,
        "accuracy": float(scores.get_column("correct").cast(pl.Float64).mean()),
        "em": scores.get_column("em").cast(pl.Float64).mean() if "em" in scores.columns else None,
        "f1": scores.get_column("f1").cast(pl.Float64).mean() if "f1" in scores.columns else None,
        "mean_output_length": float(gens.get_column("output_length").mean()),
        "truncated_fraction": float((gens.get_column("finish_reason") == "length").mean()),
    }


SUMMARY_SCHEMA = {
    "model": pl.String, "compression": pl.String, "task": pl.String, "precision": pl.String, "backend": pl.String,
    "parallel": pl.Int64, "batch_size": pl.Int64, "hardware": pl.String, "decoding": pl.String,
    "n_items": pl.Int64, "n_samples": pl.Int64, "accuracy": pl.Float64, "em": pl.Float64, "f1": pl.Float64,
    "mean_output_length": pl.Float64, "truncated_fraction": pl.Float64,
}


def summarize_runs(refs: Sequence[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame([summarize_run(r) for r in refs], schema=SUMMARY_SCHEMA).sort(LABELS)


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


def write_summary(df: pl.DataFrame, parquet: str | Path, csv: str | Path, md: str | Path) -> None:
    io.write_parquet(df, parquet)
    with io.atomic_path(csv, ".csv") as tmp:
        df.write_csv(tmp)
    io.write_text(to_markdown(df), md)
