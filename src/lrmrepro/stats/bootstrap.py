"""Bootstrap confidence intervals over problems (docs/metrics.md, "Confidence intervals").

Problems are the unit of resampling: a benchmark's score is a mean over its problems, and the problems are what a
rerun of the benchmark would draw again. Percentile intervals from ``resamples`` resamples of the problems with
replacement, drawn with ``numpy.random.default_rng(seed)`` in one ``integers(0, P, size=(resamples, P))`` call,
so every interval is reproducible from its seed; vectorised (one gather and one mean over a resamples × P array).

- :func:`mean_ci`: the CI of a mean of per-problem scores (accuracy of one run; per-problem score = mean of
  ``correct`` over the problem's samples).
- :func:`paired_delta_ci`: the CI of the mean *difference* of two runs on the same problems (a compressed variant
  minus the uncompressed model): both runs are resampled with the same problem indices, so the variation the two
  runs share (easy and hard problems) cancels. That is the paired bootstrap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RESAMPLES = 1000
SEED = 0
LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    resamples: int
    level: float

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def _indices(n_problems: int, resamples: int, seed: int) -> np.ndarray:
    if n_problems < 1:
        raise ValueError("a bootstrap needs at least one problem")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    return np.random.default_rng(seed).integers(0, n_problems, size=(resamples, n_problems))


def _percentiles(stats: np.ndarray, level: float) -> tuple[float, float]:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    alpha = (1 - level) / 2
    low, high = np.quantile(stats, [alpha, 1 - alpha])
    return float(low), float(high)


def mean_ci(scores: np.ndarray, *, resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL) -> Interval:
    """Percentile bootstrap CI of ``scores.mean()`` (one score per problem)."""
    scores = np.asarray(scores, dtype=np.float64)
    idx = _indices(scores.size, resamples, seed)
    means = scores[idx].mean(axis=1)
    return Interval(float(scores.mean()), *_percentiles(means, level), resamples, level)


def paired_delta_ci(variant: np.ndarray, base: np.ndarray, *, resamples: int = RESAMPLES, seed: int = SEED,
                    level: float = LEVEL) -> Interval:
    """Paired percentile bootstrap CI of ``mean(variant - base)``: per-problem scores of two runs on the same
    problems, in the same order."""
    variant = np.asarray(variant, dtype=np.float64)
    base = np.asarray(base, dtype=np.float64)
    if variant.shape != base.shape:
        raise ValueError(f"paired bootstrap needs the same problems in both runs, got {variant.shape} and {base.shape}")
    delta = variant - base
    idx = _indices(delta.size, resamples, seed)
    means = delta[idx].mean(axis=1)
    return Interval(float(delta.mean()), *_percentiles(means, level), resamples, level)


def batched_mean_cis(scores: np.ndarray, *, resamples: int = RESAMPLES, seed: int = SEED,
                     level: float = LEVEL) -> np.ndarray:
    """CIs of many runs over the same number of problems at once: ``scores`` is (runs, P); returns (runs, 2) of
    (low, high), each run resampled with the same index draws as :func:`mean_ci` with this seed would use."""
    scores = np.asarray(scores, dtype=np.float64)
    idx = _indices(scores.shape[1], resamples, seed)
    alpha = (1 - level) / 2
    out = np.empty((scores.shape[0], 2))
    for start in range(0, scores.shape[0], 16):  # bounded memory: 16 x resamples x P at a time
        means = scores[start:start + 16][:, idx].mean(axis=2)  # (runs, resamples)
        out[start:start + 16] = np.quantile(means, [alpha, 1 - alpha], axis=1).T
    return out
