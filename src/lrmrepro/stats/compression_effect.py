"""Is a compression's accuracy change larger than runtime noise? (docs/metrics.md, "Compression effect vs runtime
noise")

For every compressed variant of a compression experiment, per (task, precision, runtime configuration, decoding):
the accuracy change against the uncompressed model on the same problems (``delta``), its paired bootstrap CI over
problems (:func:`lrmrepro.stats.bootstrap.paired_delta_ci`), and, where an experiment with a runtime-configuration
grid for the same model, task and precision names itself as the noise source (``experiments.<name>.noise_from``),
that grid's Std@Acc of the uncompressed model (``runtime_std_acc``, sample std over its configurations).

Verdict: ``beyond runtime noise`` when the CI excludes 0 and ``|delta| > 2 × runtime_std_acc``; ``within noise``
otherwise. Without a runtime grid only the CI can speak: ``beyond sampling noise (no runtime grid)`` /
``within sampling noise (no runtime grid)``.

A per-problem score is the mean of ``correct`` over the problem's samples (0/1 for greedy decoding). The
``average`` rows average the non-short-text tasks (as the main results table does): the task deltas are averaged,
and the bootstrap resamples problems within each task (a stratified paired bootstrap), so the interval is that of
the average of task deltas.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np
import polars as pl

from .bootstrap import LEVEL, RESAMPLES, SEED, _indices, _percentiles
from .labels import CONFIG_KEYS, LABEL_SCHEMA, LABELS
from .nondeterminism import std
from .. import io

AVERAGE = "average"

SCHEMA = {
    **LABEL_SCHEMA,
    "n_problems": pl.Int64, "base_accuracy": pl.Float64, "accuracy": pl.Float64, "delta": pl.Float64,
    "ci_low": pl.Float64, "ci_high": pl.Float64, "resamples": pl.Int64, "level": pl.Float64,
    "noise_experiment": pl.String, "runtime_configs": pl.Int64, "runtime_std_acc": pl.Float64, "verdict": pl.String,
}


def per_problem_scores(ref: Mapping[str, Any]) -> tuple[pl.DataFrame, bool]:
    """(id -> score) of one run, sorted by id, and whether it is a short-text task (EM/F1 scored)."""
    scores = io.read_parquet(ref["scores"])
    short = "em" in scores.columns and scores.get_column("em").is_not_null().any()
    per = scores.group_by("id").agg(pl.col("correct").cast(pl.Float64).mean().alias("score")).sort("id")
    return per, bool(short)


def runtime_noise(noise_summary: pl.DataFrame | None, tasks: Iterable[str], ddof: int = 1) -> pl.DataFrame:
    """Std@Acc of the uncompressed model over the runtime configurations of a grid's summary, per (model, task,
    precision, decoding), plus the ``average`` task (per configuration the mean over ``tasks``, then the std)."""
    schema = {"model": pl.String, "task": pl.String, "precision": pl.String, "decoding": pl.String,
              "runtime_configs": pl.Int64, "runtime_std_acc": pl.Float64}
    if noise_summary is None or noise_summary.height == 0:
        return pl.DataFrame(schema=schema)
    base = noise_summary.filter(pl.col("compression") == "none")
    rows = []
    for (model, task, prec, dec), g in base.group_by(["model", "task", "precision", "decoding"]):
        rows.append({"model": model, "task": task, "precision": prec, "decoding": dec, "runtime_configs": g.height,
                     "runtime_std_acc": float(std(g.get_column("accuracy").to_numpy(), ddof))})
    tasks = list(tasks)
    for (model, prec, dec), g in base.filter(pl.col("task").is_in(tasks)).group_by(["model", "precision", "decoding"]):
        per_config = g.group_by(CONFIG_KEYS).agg(pl.col("accuracy").mean(), pl.col("task").n_unique().alias("n"))
        per_config = per_config.filter(pl.col("n") == len(tasks))
        if per_config.height:
            rows.append({"model": model, "task": AVERAGE, "precision": prec, "decoding": dec,
                         "runtime_configs": per_config.height,
                         "runtime_std_acc": float(std(per_config.get_column("accuracy").to_numpy(), ddof))})
    return pl.DataFrame(rows, schema=schema)


def _verdict(low: float, high: float, delta: float, noise: float | None) -> str:
    excludes = low > 0 or high < 0
    if noise is None or np.isnan(noise):
        return "beyond sampling noise (no runtime grid)" if excludes else "within sampling noise (no runtime grid)"
    return "beyond runtime noise" if excludes and abs(delta) > 2 * noise else "within noise"


def compression_effects(run_refs: Iterable[Mapping[str, Any]], noise_summary: pl.DataFrame | None = None,
                        noise_experiment: str | None = None, *, resamples: int = RESAMPLES, seed: int = SEED,
                        level: float = LEVEL) -> pl.DataFrame:
    """One row per (compressed variant, task or ``average``, precision, runtime configuration, decoding) of the
    runs (run refs with labels and a ``scores`` path); see the module docstring. Runs whose uncompressed
    counterpart is not among the refs are skipped."""
    refs = list(run_refs)
    loaded = {tuple(r[k] for k in LABELS): per_problem_scores(r) for r in refs}
    short_tasks = {key[2] for key, (_, short) in loaded.items() if short}
    acc_tasks = sorted({key[2] for key in loaded} - short_tasks)
    noise = runtime_noise(noise_summary, acc_tasks)
    noise_of = {(r["model"], r["task"], r["precision"], r["decoding"]): (r["runtime_configs"], r["runtime_std_acc"])
                for r in noise.iter_rows(named=True)}
    rows = []
    pairs: dict[tuple, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for key, (per, _) in loaded.items():
        labels = dict(zip(LABELS, key))
        if labels["compression"] == "none":
            continue
        base_key = tuple("none" if k == "compression" else labels[k] for k in LABELS)
        if base_key not in loaded:
            continue
        base = loaded[base_key][0]
        if base.get_column("id").to_list() != per.get_column("id").to_list():
            raise ValueError(f"run {labels}: not the same problems as its uncompressed counterpart")
        v, b = per.get_column("score").to_numpy(), base.get_column("score").to_numpy()
        task_seed = seed + sum(map(ord, labels["task"]))  # one independent stream per task (stratified average)
        idx = _indices(v.size, resamples, task_seed)
        means = (v - b)[idx].mean(axis=1)
        low, high = _percentiles(means, level)
        if labels["task"] in acc_tasks:
            group = tuple(labels[k] for k in LABELS if k != "task")
            pairs.setdefault(group, {})[labels["task"]] = (means, np.array([b.mean(), v.mean()]))
        rows.append(_row(labels, v.size, b.mean(), v.mean(), low, high, resamples, level, noise_experiment,
                         noise_of.get((labels["model"], labels["task"], labels["precision"], labels["decoding"]))))
    for group, by_task in pairs.items():
        if sorted(by_task) != acc_tasks:
            continue
        labels = dict(zip([k for k in LABELS if k != "task"], group)) | {"task": AVERAGE}
        means = np.mean([m for m, _ in by_task.values()], axis=0)  # average of task deltas, per resample
        accs = np.mean([a for _, a in by_task.values()], axis=0)
        low, high = _percentiles(means, level)
        n = None
        rows.append(_row(labels, n, accs[0], accs[1], low, high, resamples, level, noise_experiment,
                         noise_of.get((labels["model"], AVERAGE, labels["precision"], labels["decoding"]))))
    return pl.DataFrame(rows, schema=SCHEMA).sort(["model", "compression", "precision", "decoding", "task"])


def _row(labels, n, base_acc, acc, low, high, resamples, level, noise_experiment, noise) -> dict[str, Any]:
    configs, runtime_std = noise if noise else (None, None)
    delta = float(acc - base_acc)
    return {**labels, "n_problems": n, "base_accuracy": float(base_acc), "accuracy": float(acc), "delta": delta,
            "ci_low": low, "ci_high": high, "resamples": resamples, "level": level,
            "noise_experiment": noise_experiment if noise else None, "runtime_configs": configs,
            "runtime_std_acc": runtime_std, "verdict": _verdict(low, high, delta, runtime_std)}
