"""Compression effect vs runtime noise on hand-built scores with known deltas."""

import numpy as np
import polars as pl
import pytest

from lrmrepro.stats.compression_effect import compression_effects, runtime_noise

LABELS = dict(model="m", precision="bf16", backend="transformers", parallel=1, batch_size=8, hardware="cpu-x",
              decoding="greedy")


def _scores(tmp_path, name, correct, short=False):
    n = len(correct)
    df = pl.DataFrame({"id": [f"q{i:03d}" for i in range(n)], "sample_idx": [0] * n, "extracted": ["x"] * n,
                       "correct": correct, "em": [float(c) for c in correct] if short else [None] * n,
                       "f1": [float(c) for c in correct] if short else [None] * n},
                      schema={"id": pl.String, "sample_idx": pl.Int32, "extracted": pl.String, "correct": pl.Boolean,
                              "em": pl.Float64, "f1": pl.Float64})
    path = tmp_path / f"{name}.parquet"
    df.write_parquet(path)
    return str(path)


@pytest.fixture
def refs(tmp_path):
    """Two accuracy tasks and one short-text task, 100 problems each. 'big' loses 40 points on task a (correct on
    the first 60 instead of 100) and nothing on b; 'tiny' loses 1 problem on a."""
    out = []
    base_a, base_b, base_s = [True] * 100, [i % 2 == 0 for i in range(100)], [i < 50 for i in range(100)]
    variants = {"none": (base_a, base_b, base_s),
                "big": ([i < 60 for i in range(100)], base_b, base_s),
                "tiny": ([i != 0 for i in range(100)], base_b, base_s)}
    for comp, (a, b, s) in variants.items():
        for task, corr, short in (("a", a, False), ("b", b, False), ("s", s, True)):
            out.append({**LABELS, "compression": comp, "task": task,
                        "scores": _scores(tmp_path, f"{comp}-{task}", corr, short)})
    return out


def _noise(std_a):
    """A runtime grid of the uncompressed model: 4 configurations; task a's accuracies spread with a known std."""
    rows = []
    accs = np.array([1.0, 1.0, 1.0, 1.0]) + std_a * np.array([-1.5, -0.5, 0.5, 1.5]) / np.std([-1.5, -0.5, 0.5, 1.5],
                                                                                                ddof=1)
    for c, acc in enumerate(accs):
        for task, a in (("a", acc), ("b", 0.5)):
            rows.append({**LABELS, "compression": "none", "task": task, "batch_size": 2 ** c, "accuracy": float(a)})
    return pl.DataFrame(rows)


def test_known_deltas_cis_and_verdicts(refs):
    eff = compression_effects(refs, _noise(0.05), "grid", resamples=2000, seed=0)
    row = {(r["compression"], r["task"]): r for r in eff.iter_rows(named=True)}
    big_a = row[("big", "a")]
    assert big_a["delta"] == pytest.approx(-0.40) and big_a["n_problems"] == 100
    assert big_a["ci_low"] < -0.40 < big_a["ci_high"] < 0
    assert big_a["runtime_std_acc"] == pytest.approx(0.05) and big_a["runtime_configs"] == 4
    assert big_a["verdict"] == "beyond runtime noise"
    tiny_a = row[("tiny", "a")]
    assert tiny_a["delta"] == pytest.approx(-0.01) and tiny_a["verdict"] == "within noise"
    assert row[("big", "b")]["delta"] == 0 and row[("big", "b")]["verdict"] == "within noise"
    # the average over the accuracy tasks (a, b; the short-text task s is left out, as in the main table)
    avg = row[("big", "average")]
    assert avg["delta"] == pytest.approx(-0.20) and avg["ci_low"] < -0.2 < avg["ci_high"] < 0
    assert ("big", "s") in row and row[("big", "s")]["delta"] == 0


def test_a_delta_inside_twice_the_runtime_std_is_within_noise(refs):
    eff = compression_effects(refs, _noise(0.25), "grid")
    big_a = eff.filter((pl.col("compression") == "big") & (pl.col("task") == "a")).row(0, named=True)
    assert big_a["ci_high"] < 0 and abs(big_a["delta"]) < 2 * 0.25
    assert big_a["verdict"] == "within noise"


def test_without_a_runtime_grid_the_verdict_says_so(refs):
    eff = compression_effects(refs)
    big_a = eff.filter((pl.col("compression") == "big") & (pl.col("task") == "a")).row(0, named=True)
    assert big_a["runtime_std_acc"] is None and big_a["verdict"] == "beyond sampling noise (no runtime grid)"


def test_runtime_noise_averages_tasks_per_configuration():
    noise = runtime_noise(_noise(0.05), ["a", "b"])
    avg = noise.filter(pl.col("task") == "average").row(0, named=True)
    assert avg["runtime_configs"] == 4 and avg["runtime_std_acc"] == pytest.approx(0.025)


def test_main_table_and_figure_carry_the_effects(refs, tmp_path):
    from lrmrepro.figures.compression import compression_info, effects_figure, write_main_results

    eff = compression_effects(refs, _noise(0.05), "grid", resamples=500)
    summary = pl.DataFrame([{"model": r["model"], "compression": r["compression"], "task": r["task"],
                             "accuracy": pl.read_parquet(r["scores"])["correct"].mean(), "em": None, "f1": None}
                            for r in refs if r["task"] != "s"])
    info = compression_info({"big": {"recipe_info": {"method": "rtn", "weight_bits": 4}, "effective_bits": 4.2},
                             "tiny": {"recipe_info": {"method": "rtn", "weight_bits": 8}, "effective_bits": 8.2}})
    out = write_main_results(summary, info, tmp_path / "t.md", tmp_path / "t.csv", eff)
    for col in ("delta", "ci_low", "ci_high", "runtime_std_acc", "verdict"):
        assert col in out.columns
    csv = pl.read_csv(tmp_path / "t.csv")
    big_a = csv.filter((pl.col("compression") == "big") & (pl.col("task") == "a")).row(0, named=True)
    assert big_a["delta"] == pytest.approx(-40.0) and big_a["verdict"] == "beyond runtime noise"
    assert "Compression effect vs runtime noise" in (tmp_path / "t.md").read_text()
    effects_figure(eff, [tmp_path / "e.png"])
    assert (tmp_path / "e.png").stat().st_size > 1000
