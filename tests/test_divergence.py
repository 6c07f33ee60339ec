"""Divergence diagnostics on hand-built generation tables with known margins and known flips."""

import polars as pl
import pytest

from lrmrepro.generate.common import GENERATION_SCHEMA
from lrmrepro.stats.divergence import divergence_points, flip_summary

VOCAB = 50


def _row(pid, tokens, margins, noise, alts=None):
    """A generations row: at position i the chosen token gets logprob -0.5 + noise[i], the runner-up
    -0.5 - margins[i] (so the margin is margins[i] + noise[i]); the other top-5 entries are far below."""
    topk_ids, topk_lps = [], []
    for i, t in enumerate(tokens):
        second = (alts or {}).get(i, (t + 1) % VOCAB)
        rest = [x for x in range(VOCAB) if x not in (t, second)][:3]
        top1 = -0.5 + noise[i]
        topk_ids.append([t, second, *rest])
        topk_lps.append([top1, -0.5 - margins[i], -8.0, -9.0, -10.0])
    return {"id": pid, "sample_idx": 0, "chunk_idx": 0, "prompt": "p", "text": "t", "token_ids": tokens,
            "output_length": len(tokens), "finish_reason": "stop", "topk_ids": topk_ids, "topk_logprobs": topk_lps}


@pytest.fixture
def group(tmp_path):
    """3 configurations x 3 problems. Margins carry per-configuration noise of known size (+/-0.01 around the
    mean), so the group's noise sigma (std over configurations, ddof 1) is 0.01 at every common position.
    - p0: identical everywhere, margin about 1.0 (no divergence).
    - p1: configuration 2 takes the runner-up at position 3, where the reference margin is 0.004: a near-tie flip.
    - p2: configuration 1 takes another token at position 1, where the reference margin is 2.0: a confident flip;
      its token (7) is not among the reference's top-5 (8 is among its own)."""
    offsets = [-0.01, 0.0, 0.01]
    refs = []
    for c in range(3):
        noise = [offsets[c]] * 6
        p0 = _row("p0", [1, 2, 3, 4, 5, 6], [1.0] * 6, noise)
        t1 = [1, 2, 3, 4, 5, 6] if c != 2 else [1, 2, 3, 9, 5]
        p1 = _row("p1", t1, [1.0, 1.0, 1.0, 0.014, 1.0, 1.0], noise, alts={3: 9} if c != 2 else {3: 4})
        t2 = [3, 8, 8, 8] if c != 1 else [3, 7, 7]
        p2 = _row("p2", t2, [1.0, 2.01, 1.0, 1.0], noise)
        path = tmp_path / f"c{c}.parquet"
        pl.DataFrame([p0, p1, p2], schema=pl.Schema(GENERATION_SCHEMA)).write_parquet(path)
        refs.append({"model": "m", "compression": "none", "task": "t", "precision": "bf16", "decoding": "greedy",
                     "backend": "transformers", "parallel": 1, "batch_size": [1, 4, 8][c], "hardware": "cpu-x",
                     "generations": str(path)})
    return refs


def test_points_classify_near_tie_and_confident_flips(group):
    points, exposure = divergence_points(group)
    assert points.height == 2 * 3  # two diverging problems x three configurations
    ref = points.filter(pl.col("reference")).sort("id")
    assert ref["id"].to_list() == ["p1", "p2"]
    assert ref["div_index"].to_list() == [3, 1]
    assert ref["flip"].to_list() == ["near_tie", "confident"]
    assert ref["noise_sigma"][0] == pytest.approx(0.01, rel=1e-3)
    assert ref["threshold"][0] == pytest.approx(0.03, rel=1e-3)
    assert ref["margin"].to_list() == pytest.approx([0.004, 2.0], abs=1e-5)
    p1 = points.filter(pl.col("id") == "p1").sort("batch_size")
    assert p1["token"].to_list() == [4, 4, 9]
    assert p1["in_all_top5"].to_list() == [True, True, True]  # 4 and 9 are each other's runner-up
    p2 = points.filter(pl.col("id") == "p2").sort("batch_size")
    assert p2["token"].to_list() == [8, 7, 8]
    # 8 is configuration 1's runner-up (in its top-5); 7 is in neither other configuration's top-5
    assert p2["in_all_top5"].to_list() == [True, False, True]


def test_exposure_counts_positions_below_the_threshold(group):
    _, exposure = divergence_points(group)
    assert exposure.height == 3
    # only p1 position 3 has margins (0.004, 0.014, 0.024) below 0.03 in every configuration
    assert exposure["near_tie_positions"].to_list() == [1, 1, 1]
    assert exposure["problems_with_near_tie"].to_list() == [1, 1, 1]
    assert exposure["positions"].to_list() == [6 + 6 + 4, 6 + 6 + 3, 6 + 5 + 4]
    assert exposure["near_tie_rate"][0] == pytest.approx(1 / 16)


def test_threshold_scales_with_sigmas_and_zero_noise_has_no_near_ties(group, tmp_path):
    points, _ = divergence_points(group, near_tie_sigmas=0.1)  # threshold 0.001 < 0.004: now confident
    assert points.filter(pl.col("reference"))["flip"].to_list() == ["confident", "confident"]
    same = [{**r, "generations": group[0]["generations"], "batch_size": b} for r, b in zip(group, [1, 4, 8])]
    points, exposure = divergence_points(same)
    assert points.height == 0 and exposure["noise_sigma"].to_list() == [0.0] * 3
    assert exposure["near_tie_positions"].to_list() == [0, 0, 0]


def test_flip_summary_counts_classes_and_margin_quantiles(group):
    points, _ = divergence_points(group)
    s = flip_summary(points)
    assert s.height == 1
    row = s.row(0, named=True)
    assert (row["diverging"], row["near_tie_flips"], row["confident_flips"]) == (2, 1, 1)
    assert row["margin_median"] == pytest.approx((0.004 + 2.0) / 2, abs=1e-4)


def test_sampling_groups_are_skipped(group, tmp_path):
    df = pl.read_parquet(group[0]["generations"]).with_columns(pl.lit(1, pl.Int32).alias("sample_idx"))
    path = tmp_path / "s.parquet"
    df.write_parquet(path)
    points, exposure = divergence_points([{**group[0], "generations": str(path)}])
    assert points.height == 0 and exposure.height == 0


def test_table_and_figure_from_the_stats_artifacts(group, tmp_path):
    from lrmrepro.figures.divergence import margin_figure, write_diagnostics

    points, exposure = divergence_points(group)
    table = write_diagnostics(points, exposure, tmp_path / "t.md", tmp_path / "t.csv")
    row = table.row(0, named=True)
    assert (row["problems"], row["diverging"], row["near_tie_flips"], row["confident_flips"]) == (3, 2, 1, 1)
    assert row["near_tie_positions_pct"] == pytest.approx(100 * (1 / 16 + 1 / 15 + 1 / 15) / 3)
    assert "near_tie_flips" in (tmp_path / "t.md").read_text()
    margin_figure(points, [tmp_path / "m.png"])
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"
    empty_points, exposure = divergence_points([{**r, "generations": group[0]["generations"]} for r in group])
    table = write_diagnostics(empty_points, exposure, tmp_path / "e.md", tmp_path / "e.csv")
    assert table["diverging"].to_list() == [0]
    margin_figure(empty_points, [tmp_path / "e.png"])


def test_sigma_is_the_noise_where_it_acts(tmp_path):
    """Noise at one of seven common positions (margin std 0.01 there, bit-identical elsewhere): sigma is 0.01, not
    the 0.0014 of an average over all positions, the share of noisy positions is reported, and a flip at margin
    0.02 is a near-tie."""
    refs = []
    for c, off in enumerate([-0.01, 0.0, 0.01]):
        noise = [0.0] * 10
        noise[4] = off
        tokens = list(range(1, 11)) if c != 2 else list(range(1, 8)) + [20]
        margins = [1.0] * 7 + [0.02] + [1.0] * 2
        rows = [_row("p0", tokens, margins, noise[:len(tokens)])]
        path = tmp_path / f"c{c}.parquet"
        pl.DataFrame(rows, schema=pl.Schema(GENERATION_SCHEMA)).write_parquet(path)
        refs.append({"model": "m", "compression": "none", "task": "t", "precision": "bf16", "decoding": "greedy",
                     "backend": "transformers", "parallel": 1, "batch_size": [1, 4, 8][c], "hardware": "cpu-x",
                     "generations": str(path)})
    points, exposure = divergence_points(refs)
    ref = points.filter(pl.col("reference"))
    assert ref["div_index"].to_list() == [7]
    assert ref["noise_sigma"][0] == pytest.approx(0.01, rel=1e-3)
    assert exposure["noise_active_share"][0] == pytest.approx(1 / 7)  # position 4 of the 7 common positions
    assert ref["flip"].to_list() == ["near_tie"]
