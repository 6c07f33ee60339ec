"""Nondeterminism of compressed models (lrmrepro.figures.compressed_nondeterminism): the per-compression table and
its pooled rows on constructed stats artifacts with known answers."""

import polars as pl
import pytest

from lrmrepro.figures.compressed_nondeterminism import (compressed_table, diverging_share_figure, wilson_interval,
                                                        write_table)
from lrmrepro.stats.divergence import EXPOSURE_SCHEMA, POINTS_SCHEMA
from lrmrepro.stats.nondeterminism import METRICS_SCHEMA


def test_wilson_interval_known_values():
    # 0 of 32: [0, z^2 / (n + z^2)] = [0, 0.1072]; 8 of 32 (by hand, z = 1.96): centre (0.25 + 0.0600) / 1.1200 =
    # 0.2768, half-width 1.96 * sqrt(0.1875 / 32 + 3.8415 / 4096) / 1.1200 = 0.1443: [0.1325, 0.4211]
    assert wilson_interval(0, 32) == pytest.approx((0.0, 0.10718), abs=1e-4)
    assert wilson_interval(8, 32) == pytest.approx((0.13252, 0.42106), abs=1e-4)
    assert wilson_interval(32, 32)[1] == 1.0 and wilson_interval(0, 0) == (None, None)
    # exactly 0 and 1 at the ends, for every n (computed, 0 / 24 gave a lower bound of 1e-17 above 0, and the
    # figure's error bar, share − lower bound, came out negative: matplotlib refused to draw it)
    assert all(wilson_interval(0, n)[0] == 0.0 and wilson_interval(n, n)[1] == 1.0 for n in range(1, 500))


def _metrics(rows):
    base = {k: None for k in METRICS_SCHEMA}
    out = []
    for r in rows:
        out.append({**base, "model": "m", "decoding": "greedy", "n_configs": 2, "ddof": 1, "n_samples": r["n_problems"],
                    "acc_mean": 0.5, "pass1_mean": 0.5, "pass1_std": 0.0, "mean_output_length": 80.0,
                    "n_identical": r["n_problems"] - r["n_diverging"], **r})
    return pl.DataFrame(out, schema=METRICS_SCHEMA)


def _points(flips):
    """One reference point per (compression, precision, task, flip class)."""
    rows = []
    for (comp, prec, task), classes in flips.items():
        for i, flip in enumerate(classes):
            rows.append({"model": "m", "compression": comp, "task": task, "precision": prec, "decoding": "greedy",
                         "id": f"{task}-{i}", "div_index": 3, "backend": "transformers", "parallel": 1,
                         "batch_size": 16, "hardware": "cpu-x", "reference": True, "token": 1, "top1_logprob": -0.1,
                         "top2_logprob": -0.2, "margin": 0.1, "in_all_top5": True, "noise_sigma": 0.01,
                         "threshold": 0.03, "flip": flip})
    return pl.DataFrame(rows, schema=POINTS_SCHEMA)


def _exposure(groups, backend="transformers"):
    rows = []
    for comp, prec, task in groups:
        for bs in (16, 32):
            rows.append({"model": "m", "compression": comp, "task": task, "precision": prec, "decoding": "greedy",
                         "backend": backend if comp != "none" else "transformers", "parallel": 1, "batch_size": bs,
                         "hardware": "cpu-x"})
    frame = pl.DataFrame(rows)
    return frame.with_columns(*[pl.lit(None, dtype=t).alias(k) for k, t in EXPOSURE_SCHEMA.items()
                                if k not in frame.columns]).select(list(EXPOSURE_SCHEMA)).cast(EXPOSURE_SCHEMA)


def _case():
    m = [
        {"compression": "none", "precision": "bf16", "task": "a", "n_problems": 32, "n_diverging": 8, "std_acc": 0.02,
         "avg_std_output_length": 1.0, "div_index_mean": 10.0, "div_index_median": 9.0, "avg_std_top1_prob": 1e-4},
        {"compression": "none", "precision": "bf16", "task": "b", "n_problems": 32, "n_diverging": 0, "std_acc": 0.0,
         "avg_std_output_length": 0.0, "div_index_mean": None, "div_index_median": None, "avg_std_top1_prob": 3e-5},
        {"compression": "w8", "precision": "bf16", "task": "a", "n_problems": 32, "n_diverging": 4, "std_acc": 0.04,
         "avg_std_output_length": 3.0, "div_index_mean": 30.0, "div_index_median": 30.0, "avg_std_top1_prob": 2e-4},
        {"compression": "w8", "precision": "bf16", "task": "b", "n_problems": 32, "n_diverging": 12, "std_acc": 0.0,
         "avg_std_output_length": 1.0, "div_index_mean": 10.0, "div_index_median": 8.0, "avg_std_top1_prob": 1e-4},
        {"compression": "w8", "precision": "fp32", "task": "a", "n_problems": 32, "n_diverging": 0, "std_acc": 0.0,
         "avg_std_output_length": 0.0, "div_index_mean": None, "div_index_median": None, "avg_std_top1_prob": 1e-8},
        {"compression": "w8", "precision": "fp32", "task": "b", "n_problems": 32, "n_diverging": 0, "std_acc": 0.0,
         "avg_std_output_length": 0.0, "div_index_mean": None, "div_index_median": None, "avg_std_top1_prob": 1e-8},
    ]
    flips = {("none", "bf16", "a"): ["near_tie"] * 7 + ["confident"], ("w8", "bf16", "a"): ["near_tie"] * 4,
             ("w8", "bf16", "b"): ["near_tie"] * 10 + ["confident"] * 2}
    groups = [(r["compression"], r["precision"], r["task"]) for r in m]
    return _metrics(m), _points(flips), _exposure(groups, backend="vllm")


def test_pooled_rows_sum_problems_and_flips_and_weight_the_rest():
    table = compressed_table(*_case(), order=["none", "w8"])
    pooled = {(r["compression"], r["precision"]): r for r in table.filter(pl.col("task") == "all").iter_rows(named=True)}
    w8 = pooled[("w8", "bf16")]
    assert (w8["n_problems"], w8["n_diverging"], w8["diverging_pct"]) == (64, 16, 25.0)
    assert (w8["near_tie_flips"], w8["confident_flips"]) == (14, 2)
    assert w8["std_acc"] == pytest.approx(2.0)  # (4 % + 0 %) / 2
    assert w8["div_index_mean"] == pytest.approx((4 * 30 + 12 * 10) / 16)  # weighted by diverging problems
    assert w8["div_index_median"] is None
    assert (w8["diverging_low_pct"], w8["diverging_high_pct"]) == pytest.approx(
        tuple(100 * x for x in wilson_interval(16, 64)))
    assert pooled[("w8", "fp32")]["diverging_pct"] == 0.0 and pooled[("w8", "fp32")]["div_index_mean"] is None
    none = pooled[("none", "bf16")]
    assert (none["n_diverging"], none["near_tie_flips"], none["confident_flips"]) == (8, 7, 1)
    # the engine of every row is the runs' backend label
    assert none["engine"] == "transformers" and w8["engine"] == "vllm"


def test_rows_follow_the_experiment_order_then_precision_then_task():
    table = compressed_table(*_case(), order=["w8", "none"])
    keys = table.select("compression", "precision", "task").rows()
    assert keys[:6] == [("w8", "bf16", "a"), ("w8", "bf16", "b"), ("w8", "bf16", "all"),
                        ("w8", "fp32", "a"), ("w8", "fp32", "b"), ("w8", "fp32", "all")]
    assert keys[-1] == ("none", "bf16", "all")


def test_table_and_figure_are_written(tmp_path):
    table = compressed_table(*_case(), order=["none", "w8"])
    write_table(table, tmp_path / "t.md", tmp_path / "t.csv")
    diverging_share_figure(table, [tmp_path / "f.png"])
    text = (tmp_path / "t.md").read_text()
    assert "| m | w8 | bf16 | all | vllm |" in text and "engine" in text
    assert (tmp_path / "f.png").stat().st_size > 0


def test_figure_draws_groups_where_none_or_all_diverge(tmp_path):
    """24 problems, none diverging (vLLM's CPU build, batch-invariant on SmolLM2) or all of them: the error bars are
    0 on the closed side, never an ulp below it."""
    m = [{"compression": c, "precision": p, "task": "a", "n_problems": 24, "n_diverging": k, "std_acc": 0.0,
          "avg_std_output_length": 0.0, "div_index_mean": None if k == 0 else 1.0,
          "div_index_median": None if k == 0 else 1.0, "avg_std_top1_prob": 0.0}
         for c, p, k in (("none", "bf16", 0), ("none", "fp32", 0), ("w8", "bf16", 24), ("w8", "fp32", 0))]
    flips = {("w8", "bf16", "a"): ["near_tie"] * 24}
    groups = [(r["compression"], r["precision"], r["task"]) for r in m]
    table = compressed_table(_metrics(m), _points(flips), _exposure(groups, backend="vllm"), order=["none", "w8"])
    pooled = table.filter(pl.col("task") == "all")
    assert pooled.filter(pl.col("n_diverging") == 0).get_column("diverging_low_pct").to_list() == [0.0] * 3
    assert pooled.filter(pl.col("n_diverging") == 24).get_column("diverging_high_pct").to_list() == [100.0]
    diverging_share_figure(table, [tmp_path / "f.png"])
    assert (tmp_path / "f.png").stat().st_size > 0
