"""Output length against correctness (lrmrepro.stats.length_correctness): constructed inputs with known answers."""

import numpy as np
import polars as pl
import pytest

from lrmrepro import io
from lrmrepro.figures.length_correctness import length_figure, write_table
from lrmrepro.stats.length_correctness import GROUP, difference_ci, length_correctness, load_samples

LABELS = {"model": "m", "compression": "none", "task": "t", "precision": "bf16", "backend": "transformers",
          "parallel": 1, "batch_size": 8, "hardware": "cpu-x", "decoding": "greedy"}


def _samples(lengths, correct, truncated=None, ids=None, **labels):
    n = len(lengths)
    return pl.DataFrame({**{k: [v] * n for k, v in {**LABELS, **labels}.items()},
                         "id": ids or [f"p{i}" for i in range(n)], "sample_idx": [0] * n,
                         "output_length": lengths, "correct": correct,
                         "truncated": truncated or [False] * n})


def test_constant_lengths_give_the_exact_difference_and_a_point_interval():
    """Every correct answer 10 tokens, every wrong one 25: the difference is 15 in every resample."""
    est, low, high, undefined = difference_ci(np.arange(20), [10] * 10 + [25] * 10, [True] * 10 + [False] * 10,
                                              resamples=500, seed=3)
    assert (est, low, high) == (15.0, 15.0, 15.0)
    assert undefined == 0  # 10 problems per class: an empty class in a resample has probability ~1e-3 per draw
    table = length_correctness(_samples([10] * 10 + [25] * 10, [True] * 10 + [False] * 10), resamples=500)
    row = table.row(0, named=True)
    assert row["delta_mean"] == 15.0 and row["delta_median"] == 15.0 and row["verdict"] == "wrong longer"
    assert row["mean_len_correct"] == 10.0 and row["median_len_wrong"] == 25.0
    assert (row["n_correct"], row["n_wrong"], row["n_problems"]) == (10, 10, 20)


def test_no_difference_is_reported_as_such():
    """The same length distribution in both classes: the estimate is 0 and the CI contains it."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(50, 150, size=400)
    correct = np.arange(400) % 2 == 0
    lengths[~correct] = lengths[correct]  # identical multisets
    est, low, high, _ = difference_ci(np.arange(400), lengths, correct, resamples=1000, seed=0)
    assert est == 0.0 and low < 0 < high
    table = length_correctness(_samples(lengths.tolist(), correct.tolist()), resamples=1000)
    assert table.get_column("verdict").to_list() == ["no difference beyond resampling"]


def test_the_bootstrap_matches_a_slow_reference_and_resamples_whole_problems():
    """Two samples per problem (two configurations): a resample draws problems, with both of their samples."""
    rng = np.random.default_rng(1)
    problems = np.repeat(np.arange(30), 2)
    correct = rng.random(60) < 0.5
    lengths = rng.integers(20, 80, size=60).astype(float)
    est, low, high, undefined = difference_ci(problems, lengths, correct, resamples=300, seed=7)
    idx = np.random.default_rng(7).integers(0, 30, size=(300, 30))
    deltas = []
    for draw in idx:
        rows = np.concatenate([np.flatnonzero(problems == p) for p in draw])
        c, w = lengths[rows][correct[rows]], lengths[rows][~correct[rows]]
        if c.size and w.size:
            deltas.append(w.mean() - c.mean())
    assert est == pytest.approx(lengths[~correct].mean() - lengths[correct].mean())
    assert (low, high) == pytest.approx(tuple(np.quantile(deltas, [0.025, 0.975])), abs=1e-9)
    assert undefined == 300 - len(deltas)


def test_an_empty_class_or_a_single_wrong_problem_is_undefined():
    table = length_correctness(_samples([10, 20, 30], [True, True, True]), resamples=200)
    row = table.row(0, named=True)
    assert row["delta_mean"] is None and row["delta_low"] is None and row["verdict"] == "undefined"
    assert row["n_wrong"] == 0 and row["wrong_truncated_share"] is None
    # one problem wrong in all 3 configurations: an estimate, but no interval (one problem is not a distribution)
    frames = [_samples([10, 12, 50], [True, True, False], ids=["a", "b", "c"], batch_size=b) for b in (4, 8, 16)]
    row = length_correctness(pl.concat(frames), resamples=200).row(0, named=True)
    assert row["n_configs"] == 3 and row["n_wrong"] == 3 and row["delta_mean"] == 39.0
    assert row["delta_low"] is None and row["verdict"] == "undefined"


def test_truncated_share_among_wrong_answers_and_the_untruncated_difference():
    """4 wrong answers of which 2 hit max_new_tokens (length 100); without them wrong and correct are equal."""
    lengths = [40, 40, 40, 40, 40, 40, 100, 100]
    correct = [True, True, True, True, False, False, False, False]
    truncated = [False] * 6 + [True, True]
    row = length_correctness(_samples(lengths, correct, truncated), resamples=300).row(0, named=True)
    assert row["wrong_truncated"] == 2 and row["wrong_truncated_share"] == 0.5
    assert row["correct_truncated_share"] == 0.0
    assert row["delta_mean"] == 30.0  # (40 + 40 + 100 + 100) / 4 - 40
    assert row["delta_mean_untruncated"] == 0.0 and row["delta_untruncated_low"] == 0.0


def test_groups_pool_runtime_configurations_but_not_precisions():
    a = _samples([10, 20, 30, 40], [True, True, False, False], batch_size=8)
    b = _samples([10, 20, 30, 40], [True, True, False, False], batch_size=16)
    c = _samples([10, 20, 30, 40], [False, False, True, True], precision="fp32")
    table = length_correctness(pl.concat([a, b, c]), resamples=200).sort("precision")
    assert table.height == 2 and set(GROUP) <= set(table.columns) and "batch_size" not in table.columns
    assert table.get_column("n_configs").to_list() == [2, 1]
    assert table.get_column("delta_mean").to_list() == [20.0, -20.0]


def test_load_samples_reads_scores_and_generations(tmp_path):
    gens = pl.DataFrame({"id": ["a", "b", "c"], "sample_idx": [0, 0, 0], "output_length": [5, 7, 160],
                         "finish_reason": ["stop", "stop", "length"], "text": ["x", "y", "z"]})
    scores = pl.DataFrame({"id": ["c", "a", "b"], "sample_idx": [0, 0, 0], "correct": [False, True, False],
                           "truncated": [True, False, False]})
    io.write_parquet(gens, tmp_path / "g.parquet")
    io.write_parquet(scores, tmp_path / "s.parquet")
    ref = {**LABELS, "generations": str(tmp_path / "g.parquet"), "scores": str(tmp_path / "s.parquet")}
    samples = load_samples([ref]).sort("id")
    assert samples.get_column("truncated").to_list() == [False, False, True]
    assert samples.get_column("correct").to_list() == [True, False, False]
    row = length_correctness(samples, resamples=100).row(0, named=True)
    assert row["wrong_truncated"] == 1 and row["wrong_truncated_share"] == 0.5


def test_table_and_figure_are_written(tmp_path):
    samples = pl.concat([_samples([10, 20, 30, 40], [True, True, False, False], task=t) for t in ("t1", "t2")])
    table = length_correctness(samples, resamples=100)
    write_table(table, tmp_path / "t.md", tmp_path / "t.csv")
    length_figure(samples, [tmp_path / "f.png"])
    text = (tmp_path / "t.md").read_text()
    assert "delta_mean" in text and "wrong longer" in text and "| t1 |" in text
    assert (tmp_path / "f.png").stat().st_size > 0
