"""Do wrong answers think longer? Output length of correct against incorrect answers (docs/metrics.md,
"Output length against correctness").

Computed from a run's scores and generations only (no new generation). A *group* is one (model, compression, task,
precision, backend, decoding): the runs of an experiment that differ only in their runtime configuration (parallel,
batch size, hardware) are pooled, so a problem contributes one sample per configuration and decoding sample.

Per group:

- ``mean_len_correct`` / ``mean_len_wrong``, ``median_len_correct`` / ``median_len_wrong``: output length (generated
  tokens) of the correct and of the incorrect samples.
- ``delta_mean`` = mean_len_wrong − mean_len_correct (positive: wrong answers are longer), with a percentile
  bootstrap CI (``delta_low``, ``delta_high``) over *problems*: a resample draws problems with replacement and keeps
  all samples of a drawn problem (its configurations and decoding samples are not independent draws), then takes the
  two means over the drawn samples. A resample in which one class is empty has no difference; the CI is taken over
  the others, ``undefined_resamples`` counts them, and the CI is null when more than half are undefined or when a
  class comes from a single problem (``MIN_PROBLEMS``).
- ``delta_median`` = median_len_wrong − median_len_correct (point estimate only).
- ``wrong_truncated`` / ``wrong_truncated_share``: incorrect samples that hit ``max_new_tokens`` (finish reason
  ``length``), and their share; ``correct_truncated_share`` the same among correct ones. Under the strict scoring
  policy a truncated output without ``</think>`` has no answer, so truncation alone makes wrong answers longer:
  ``delta_mean_untruncated`` (with its CI) is the same difference over the samples that were not truncated.
- ``verdict``: ``wrong longer`` / ``wrong shorter`` when the CI excludes 0, ``no difference beyond resampling`` when
  it contains it, ``undefined`` when a class is empty or the CI is null.

The draws come from ``numpy.random.default_rng(seed)`` as in :mod:`lrmrepro.stats.bootstrap` (one
``integers(0, P, size=(resamples, P))`` call per group and subset), so every interval is reproducible from its seed.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np
import polars as pl

from .bootstrap import LEVEL, RESAMPLES, SEED, _indices, _percentiles
from .labels import CONFIG_KEYS, LABEL_SCHEMA, LABELS
from .. import io

#: what one table row pools over: the runtime configuration (but not the backend, the engine that ran it)
#: a class (correct / wrong) drawn from fewer problems gets no CI
MIN_PROBLEMS = 2

GROUP = [k for k in LABELS if k not in CONFIG_KEYS or k == "backend"]

SAMPLES_SCHEMA = {**LABEL_SCHEMA, "id": pl.String, "sample_idx": pl.Int32, "output_length": pl.Int64,
                  "correct": pl.Boolean, "truncated": pl.Boolean}

TABLE_SCHEMA = {
    **{k: LABEL_SCHEMA[k] for k in GROUP},
    "n_configs": pl.Int64, "n_problems": pl.Int64, "n_samples": pl.Int64, "n_correct": pl.Int64, "n_wrong": pl.Int64,
    "mean_len_correct": pl.Float64, "mean_len_wrong": pl.Float64,
    "median_len_correct": pl.Float64, "median_len_wrong": pl.Float64,
    "delta_mean": pl.Float64, "delta_low": pl.Float64, "delta_high": pl.Float64, "delta_median": pl.Float64,
    "undefined_resamples": pl.Int64,
    "wrong_truncated": pl.Int64, "wrong_truncated_share": pl.Float64, "correct_truncated_share": pl.Float64,
    "delta_mean_untruncated": pl.Float64, "delta_untruncated_low": pl.Float64, "delta_untruncated_high": pl.Float64,
    "resamples": pl.Int64, "level": pl.Float64, "verdict": pl.String,
}


def load_samples(run_refs: Iterable[Mapping[str, Any]]) -> pl.DataFrame:
    """One row per generated sample of every run: its labels, output length, correctness and truncation
    (``finish_reason == "length"``; the score's ``truncated`` flag where the finish reason is unknown)."""
    frames = []
    for i, ref in enumerate(run_refs):
        missing = [k for k in LABELS + ["generations", "scores"] if k not in ref]
        if missing:
            raise ValueError(f"run ref #{i} lacks key(s) {missing}")
        gens = io.read_parquet(ref["generations"], columns=["id", "sample_idx", "output_length", "finish_reason"])
        scores = io.read_parquet(ref["scores"])
        keep = ["id", "sample_idx", "correct"] + (["truncated"] if "truncated" in scores.columns else [])
        df = gens.join(scores.select(keep), on=["id", "sample_idx"], how="left", validate="1:1")
        if df.get_column("correct").null_count():
            raise ValueError(f"{ref['scores']}: no score for {df.get_column('correct').null_count()} generation "
                             f"row(s) of {ref['generations']}")
        by_reason = pl.when(pl.col("finish_reason").is_null()).then(None).otherwise(pl.col("finish_reason") == "length")
        truncated = pl.coalesce(by_reason, pl.col("truncated")) if "truncated" in df.columns else by_reason
        frames.append(df.select(
            *[pl.lit(ref[k]).cast(LABEL_SCHEMA[k]).alias(k) for k in LABELS],
            pl.col("id"), pl.col("sample_idx").cast(pl.Int32), pl.col("output_length").cast(pl.Int64),
            pl.col("correct").cast(pl.Boolean), truncated.cast(pl.Boolean).alias("truncated")))
    if not frames:
        return pl.DataFrame(schema=SAMPLES_SCHEMA)
    return pl.concat(frames, how="vertical").select(list(SAMPLES_SCHEMA))


def difference_ci(problem: np.ndarray, length: np.ndarray, correct: np.ndarray, *, resamples: int = RESAMPLES,
                  seed: int = SEED, level: float = LEVEL) -> tuple[float | None, float | None, float | None, int]:
    """mean(length | wrong) − mean(length | correct), and its problem-level bootstrap CI.

    ``problem``: a problem key per sample (samples of one problem are resampled together); returns (estimate, low,
    high, undefined resamples); the estimate is None when a class is empty, the CI None when a class comes from fewer
    than ``MIN_PROBLEMS`` problems or more than half of the resamples have an empty class."""
    problem = np.asarray(problem)
    length = np.asarray(length, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    if length.size == 0 or correct.all() or not correct.any():
        return None, None, None, resamples
    _, inverse = np.unique(problem, return_inverse=True)
    n_problems = int(inverse.max()) + 1
    per = np.zeros((4, n_problems))  # sum correct, n correct, sum wrong, n wrong
    np.add.at(per[0], inverse, np.where(correct, length, 0.0))
    np.add.at(per[1], inverse, correct.astype(np.float64))
    np.add.at(per[2], inverse, np.where(correct, 0.0, length))
    np.add.at(per[3], inverse, (~correct).astype(np.float64))
    estimate = per[2].sum() / per[3].sum() - per[0].sum() / per[1].sum()
    if min(int((per[1] > 0).sum()), int((per[3] > 0).sum())) < MIN_PROBLEMS:
        return float(estimate), None, None, resamples  # one problem's samples are not a distribution
    idx = _indices(n_problems, resamples, seed)
    drawn = per[:, idx].sum(axis=2)  # (4, resamples)
    with np.errstate(invalid="ignore", divide="ignore"):
        deltas = drawn[2] / drawn[3] - drawn[0] / drawn[1]
    defined = np.isfinite(deltas)
    undefined = int((~defined).sum())
    if defined.sum() * 2 < resamples:
        return float(estimate), None, None, undefined
    low, high = _percentiles(deltas[defined], level)
    return float(estimate), low, high, undefined


def _median(values: np.ndarray) -> float | None:
    return float(np.median(values)) if values.size else None


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None


def _verdict(estimate: float | None, low: float | None, high: float | None) -> str:
    if estimate is None or low is None or high is None:
        return "undefined"
    if low > 0:
        return "wrong longer"
    if high < 0:
        return "wrong shorter"
    return "no difference beyond resampling"


def length_correctness(samples: pl.DataFrame, *, resamples: int = RESAMPLES, seed: int = SEED,
                       level: float = LEVEL) -> pl.DataFrame:
    """The table of the module docstring, one row per group (``GROUP``), from :func:`load_samples`' rows."""
    rows = []
    if samples.height:
        for group in samples.sort(GROUP).partition_by(GROUP, maintain_order=True):
            labels = {k: group.get_column(k)[0] for k in GROUP}
            length = group.get_column("output_length").to_numpy().astype(np.float64)
            correct = group.get_column("correct").to_numpy().astype(bool)
            truncated = group.get_column("truncated").fill_null(False).to_numpy().astype(bool)
            problem = group.get_column("id").to_numpy()
            est, low, high, undefined = difference_ci(problem, length, correct, resamples=resamples, seed=seed,
                                                      level=level)
            keep = ~truncated
            est_u, low_u, high_u, _ = difference_ci(problem[keep], length[keep], correct[keep], resamples=resamples,
                                                    seed=seed, level=level)
            l_c, l_w = length[correct], length[~correct]
            med_c, med_w = _median(l_c), _median(l_w)
            configs = group.select([k for k in CONFIG_KEYS if k != "backend"]).unique().height
            n_wrong = int((~correct).sum())
            rows.append({
                **labels, "n_configs": configs, "n_problems": int(np.unique(problem).size),
                "n_samples": group.height, "n_correct": int(correct.sum()), "n_wrong": n_wrong,
                "mean_len_correct": _mean(l_c), "mean_len_wrong": _mean(l_w),
                "median_len_correct": med_c, "median_len_wrong": med_w,
                "delta_mean": est, "delta_low": low, "delta_high": high,
                "delta_median": None if med_c is None or med_w is None else med_w - med_c,
                "undefined_resamples": undefined,
                "wrong_truncated": int((truncated & ~correct).sum()),
                "wrong_truncated_share": float((truncated & ~correct).sum() / n_wrong) if n_wrong else None,
                "correct_truncated_share": (float((truncated & correct).sum() / correct.sum())
                                            if correct.any() else None),
                "delta_mean_untruncated": est_u, "delta_untruncated_low": low_u, "delta_untruncated_high": high_u,
                "resamples": resamples, "level": level, "verdict": _verdict(est, low, high),
            })
    return pl.DataFrame(rows, schema=TABLE_SCHEMA)
