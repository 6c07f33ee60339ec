"""Bootstrap CIs: the vectorised implementation against a slow reference loop, and known deltas."""

import numpy as np
import pytest

from lrmrepro.stats.bootstrap import batched_mean_cis, mean_ci, paired_delta_ci


def _slow_paired(variant, base, resamples, seed, level=0.95):
    """One resample at a time, from the same index draws."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(base), size=(resamples, len(base)))
    means = []
    for b in range(resamples):
        total = 0.0
        for i in idx[b]:
            total += variant[i] - base[i]
        means.append(total / len(base))
    means.sort()
    alpha = (1 - level) / 2
    return np.quantile(means, alpha), np.quantile(means, 1 - alpha)


def test_paired_delta_matches_the_slow_reference():
    rng = np.random.default_rng(5)
    base = (rng.random(120) < 0.6).astype(float)
    variant = np.where(rng.random(120) < 0.2, 1 - base, base)
    ci = paired_delta_ci(variant, base, resamples=1500, seed=11)
    low, high = _slow_paired(variant, base, 1500, 11)
    assert (ci.low, ci.high) == pytest.approx((low, high), abs=1e-12)
    assert ci.estimate == pytest.approx((variant - base).mean())


def test_known_delta_has_the_expected_interval():
    """30 of 100 problems gained, none lost: delta 0.30; the bootstrap CI is close to the normal one,
    0.30 +- 1.96 * sqrt(0.3 * 0.7 / 100) = [0.21, 0.39]."""
    base = np.zeros(100)
    variant = np.zeros(100)
    variant[:30] = 1
    ci = paired_delta_ci(variant, base, resamples=4000, seed=0)
    assert ci.estimate == pytest.approx(0.30)
    assert ci.low == pytest.approx(0.21, abs=0.02) and ci.high == pytest.approx(0.39, abs=0.02)
    assert ci.excludes_zero()


def test_pairing_cancels_shared_difficulty():
    """Two runs that differ on 2 of 200 problems: the paired CI is tight around 0.01, while the difference of
    two independent accuracy CIs would be wide."""
    rng = np.random.default_rng(1)
    base = (rng.random(200) < 0.5).astype(float)
    variant = base.copy()
    flip = np.nonzero(base == 0)[0][:2]
    variant[flip] = 1
    ci = paired_delta_ci(variant, base, seed=3)
    assert ci.estimate == pytest.approx(0.01)
    assert ci.high - ci.low < 0.04
    a, b = mean_ci(variant, seed=3), mean_ci(base, seed=4)
    assert (a.high - a.low) > 0.1 and (b.high - b.low) > 0.1


def test_identical_runs_give_a_zero_width_interval():
    x = np.array([1, 0, 1, 1, 0], float)
    ci = paired_delta_ci(x, x)
    assert (ci.estimate, ci.low, ci.high) == (0.0, 0.0, 0.0) and not ci.excludes_zero()


def test_batched_cis_equal_one_at_a_time():
    rng = np.random.default_rng(2)
    scores = (rng.random((20, 64)) < 0.4).astype(float)
    cis = batched_mean_cis(scores, resamples=800, seed=9)
    for r in range(20):
        one = mean_ci(scores[r], resamples=800, seed=9)
        assert cis[r] == pytest.approx([one.low, one.high])


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="same problems"):
        paired_delta_ci(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="at least one problem"):
        mean_ci(np.zeros(0))
