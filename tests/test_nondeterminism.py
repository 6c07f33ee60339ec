"""Nondeterminism metrics on hand-built runs with known answers."""

import itertools
import math

import numpy as np
import polars as pl
import pytest

from lrmrepro.stats.nondeterminism import (
    RUNS_SCHEMA,
    compute_group_metrics,
    load_runs,
    nondeterminism_tables,
    pass_at_k,
    pass_at_k_table,
    per_problem_divergence,
)
from lrmrepro.stats.noise_floor import noise_floor

GROUP = {"model": "m", "compression": "none", "task": "t", "precision": "bf16", "decoding": "greedy"}


def runs_frame(per_config, group=GROUP):
    """per_config: list (one per configuration) of dicts id -> (tokens, top1_probs, correct) or
    id -> list of samples for sampling."""
    rows = []
    for ci, problems in enumerate(per_config):
        cfg = {"backend": "transformers", "parallel": 1 + ci % 2, "batch_size": 8 * (1 + ci), "hardware": "cpu-x"}
        for pid, samples in problems.items():
            if isinstance(samples, tuple):
                samples = [samples]
            for si, (tokens, probs, correct) in enumerate(samples):
                probs = probs if probs is not None else [0.5] * len(tokens)
                rows.append({**group, **cfg, "id": pid, "sample_idx": si, "output_length": len(tokens),
                             "correct": correct, "token_ids": list(tokens),
                             "top1_logprob": [float(np.log(p)) for p in probs]})
    return pl.DataFrame(rows, schema=RUNS_SCHEMA)


def test_identical_sequences_are_counted_not_indexed():
    cfgs = [{"a": ([1, 2, 3], [0.9, 0.8, 0.7], True), "b": ([4, 5], [0.6, 0.6], False)} for _ in range(3)]
    m = compute_group_metrics(runs_frame(cfgs)).row(0, named=True)
    assert m["n_configs"] == 3 and m["n_problems"] == 2
    assert m["n_identical"] == 2 and m["n_diverging"] == 0
    assert m["div_index_mean"] is None and m["div_index_median"] is None
    assert m["std_acc"] == 0 and m["avg_std_output_length"] == 0
    assert m["avg_std_top1_prob"] == pytest.approx(0.0, abs=1e-7)
    div = per_problem_divergence(runs_frame(cfgs))
    assert div.get_column("identical").to_list() == [True, True]
    assert div.get_column("div_index").to_list() == [None, None]
    assert div.get_column("top1_positions").to_list() == [3, 2]


def test_divergence_at_known_position_and_top1_std_before_it():
    # problem a: configs agree on positions 0,1 then config 2 differs at position 2
    # problem b: one config's sequence is a strict prefix of the others -> diverges at its length 3
    # problem c: identical
    cfgs = []
    pa = [[0.9, 0.5, 0.3, 0.3], [0.7, 0.5, 0.3, 0.3], [0.8, 0.5, 0.9, 0.9]]
    for ci in range(3):
        b_tokens = [7, 7, 7] if ci == 1 else [7, 7, 7, 8, 9]
        cfgs.append({
            "a": ([1, 2, 3 if ci < 2 else 99, 4], pa[ci], True),
            "b": (b_tokens, [0.5] * len(b_tokens), ci == 0),
            "c": ([5, 6], [0.4, 0.2 + 0.1 * ci], False),
        })
    runs = runs_frame(cfgs)
    div = per_problem_divergence(runs).sort("id")
    assert div.get_column("div_index").to_list() == [2, 3, None]
    assert div.get_column("identical").to_list() == [False, False, True]
    assert div.get_column("top1_positions").to_list() == [2, 3, 2]
    # a: positions 0 and 1 only: std(0.9,0.7,0.8, ddof=1)=0.1 and 0 -> mean 0.05
    a_std = div.filter(pl.col("id") == "a").get_column("std_top1_prob")[0]
    assert a_std == pytest.approx(0.05, rel=1e-6)
    # c (identical, all positions): std(0.2,0.3,0.4)=0.1 at pos 1, 0 at pos 0 -> 0.05
    c_std = div.filter(pl.col("id") == "c").get_column("std_top1_prob")[0]
    assert c_std == pytest.approx(0.05, rel=1e-6)
    m = compute_group_metrics(runs).row(0, named=True)
    assert m["n_identical"] == 1 and m["n_diverging"] == 2
    assert m["div_index_mean"] == 2.5 and m["div_index_median"] == 2.5
    assert m["avg_std_top1_prob"] == pytest.approx((0.05 + 0.0 + 0.05) / 3, rel=1e-6)
    # output lengths: a (4,4,4) std 0; b (5,3,5) std(ddof=1)=sqrt(4/3); c 0
    assert m["avg_std_output_length"] == pytest.approx(math.sqrt(4 / 3) / 3)
    # accuracy per config: (2/3, 1/3, 1/3)
    assert m["std_acc"] == pytest.approx(np.std([2 / 3, 1 / 3, 1 / 3], ddof=1))
    m0 = compute_group_metrics(runs, ddof=0).row(0, named=True)
    assert m0["ddof"] == 0
    assert m0["std_acc"] == pytest.approx(np.std([2 / 3, 1 / 3, 1 / 3], ddof=0))
    assert m0["avg_std_output_length"] == pytest.approx(math.sqrt(8 / 9) / 3)


def test_divergence_at_position_zero_has_no_top1_positions():
    cfgs = [{"a": ([1, 2], [0.9, 0.9], True)}, {"a": ([3, 2], [0.1, 0.9], True)}]
    div = per_problem_divergence(runs_frame(cfgs))
    assert div.get_column("div_index").to_list() == [0]
    assert div.get_column("std_top1_prob").to_list() == [None]
    assert compute_group_metrics(runs_frame(cfgs)).get_column("avg_std_top1_prob").to_list() == [None]


def test_std_acc_reproduces_the_papers_tiny_values():
    """12 configurations with the same accuracy 3/30: numpy's std is not exactly 0 because the mean is rounded.
    The paper's 1.45e-17 (Table 3, Qwen2.5-7B-Instruct AIME'24) is the sample std (ddof=1); ddof=0 gives 1.39e-17."""
    cfgs = [{f"p{i:02d}": ([1], None, i < 3) for i in range(30)} for _ in range(12)]
    runs = runs_frame(cfgs)
    s1 = compute_group_metrics(runs, ddof=1).get_column("std_acc")[0]
    s0 = compute_group_metrics(runs, ddof=0).get_column("std_acc")[0]
    assert f"{s1:.3g}" == "1.45e-17"
    assert f"{s0:.3g}" == "1.39e-17"


def test_bad_input_is_refused():
    cfgs = [{"a": ([1], None, True), "b": ([1], None, True)}, {"a": ([1], None, True), "c": ([1], None, True)}]
    with pytest.raises(ValueError, match="does not have the same"):
        compute_group_metrics(runs_frame(cfgs))
    with pytest.raises(ValueError, match="ddof must be 0"):
        compute_group_metrics(runs_frame(cfgs[:1]), ddof=2)
    with pytest.raises(ValueError, match="lacks column"):
        compute_group_metrics(pl.DataFrame({"id": ["a"]}))
    with pytest.raises(ValueError, match="lacks key"):
        load_runs([{"model": "m"}])


def test_pass_at_k_matches_brute_force_over_subsets():
    for n in range(1, 8):
        for c in range(n + 1):
            for k in range(1, n + 1):
                subsets = list(itertools.combinations([1] * c + [0] * (n - c), k))
                brute = np.mean([any(s) for s in subsets])
                assert pass_at_k(n, c, k) == pytest.approx(brute, abs=1e-12), (n, c, k)
    assert pass_at_k(np.array([4, 4, 4]), np.array([0, 1, 4]), 1) == pytest.approx([0, 0.25, 1])
    with pytest.raises(ValueError, match="at least k samples"):
        pass_at_k(2, 1, 3)


def test_sampling_pass1_std_and_pass_at_k_table():
    # 3 configs, 2 problems, n = 4 samples
    correct = [[[1, 0, 0, 0], [1, 1, 1, 1]], [[1, 1, 0, 0], [1, 1, 1, 0]], [[0, 0, 0, 0], [1, 1, 1, 1]]]
    cfgs = [{pid: [([1, 2], None, bool(x)) for x in correct[ci][pi]] for pi, pid in enumerate(["a", "b"])}
            for ci in range(3)]
    runs = runs_frame(cfgs, {**GROUP, "decoding": "sample"})
    m = compute_group_metrics(runs).row(0, named=True)
    pass1 = [np.mean([np.mean(p) for p in c]) for c in correct]
    assert m["n_samples"] == 4
    assert m["pass1_mean"] == pytest.approx(np.mean(pass1))
    assert m["pass1_std"] == pytest.approx(np.std(pass1, ddof=1))
    assert m["div_index_mean"] is None and m["n_identical"] is None  # token metrics are greedy-only
    tab = pass_at_k_table(runs, [1, 2, 8]).sort("k")
    assert tab.get_column("k").to_list() == [1, 2, 8]
    assert tab.get_column("pass_at_k_mean")[0] == pytest.approx(np.mean(pass1))
    p2 = [np.mean([np.mean([any(s) for s in itertools.combinations(p, 2)]) for p in c]) for c in correct]
    assert tab.get_column("pass_at_k_mean")[1] == pytest.approx(np.mean(p2))
    assert tab.get_column("pass_at_k_std")[1] == pytest.approx(np.std(p2, ddof=1))
    assert tab.get_column("pass_at_k_mean")[2] is None  # k > n


def _gens(tokens, logprobs):
    return pl.DataFrame({
        "id": [f"p{i}" for i in range(len(tokens))], "sample_idx": [0] * len(tokens),
        "token_ids": tokens,
        "topk_ids": [[[t, t + 1] for t in seq] for seq in tokens],
        "topk_logprobs": logprobs,
    }, schema_overrides={"token_ids": pl.List(pl.Int32), "topk_ids": pl.List(pl.List(pl.Int32)),
                         "topk_logprobs": pl.List(pl.List(pl.Float32))})


def test_noise_floor():
    a = _gens([[1, 2, 3], [4, 5]], [[[-0.1, -2.0], [-0.2, -3.0], [-0.3, -4.0]], [[-0.5, -1.0], [-0.6, -1.5]]])
    same = noise_floor(a, a.reverse())
    assert same["tokens_identical"] and same["logprobs_identical"] and same["topk_ids_identical"]
    assert same["max_abs_delta_logprob"] == 0.0 and same["n_positions_compared"] == 5
    b = _gens([[1, 2, 3], [4, 5, 6]], [[[-0.1, -2.0], [-0.2, -3.0], [-0.3, -4.0]],
                                       [[-0.5, -1.0], [-0.6, -1.25], [-0.1, -0.2]]])
    diff = noise_floor(a, b)
    assert not diff["tokens_identical"] and diff["n_rows_tokens_differ"] == 1
    assert not diff["logprobs_identical"]
    assert diff["max_abs_delta_logprob"] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="same \\(id, sample_idx\\)"):
        noise_floor(a, a.head(1))


def test_load_runs_from_parquet(tmp_path):
    gens = _gens([[1, 2], [3]], [[[-0.1, -2.0], [-0.7, -3.0]], [[-0.5, -1.0]]]).with_columns(
        output_length=pl.col("token_ids").list.len().cast(pl.Int32))
    scores = pl.DataFrame({"id": ["p0", "p1"], "sample_idx": [0, 0], "correct": [True, False]})
    gens.write_parquet(tmp_path / "g.parquet")
    scores.write_parquet(tmp_path / "s.parquet")
    ref = {**GROUP, "backend": "transformers", "parallel": 1, "batch_size": 8, "hardware": "cpu-x",
           "generations": str(tmp_path / "g.parquet"), "scores": str(tmp_path / "s.parquet")}
    runs = load_runs([ref, {**ref, "batch_size": 16}])
    assert runs.height == 4 and set(RUNS_SCHEMA) <= set(runs.columns)
    assert runs.get_column("top1_logprob")[0].to_list() == pytest.approx([-0.1, -0.7])
    m = compute_group_metrics(runs).row(0, named=True)
    assert m["n_configs"] == 2 and m["n_identical"] == 2 and m["std_acc"] == 0


def test_one_pass_gives_the_three_tables_of_the_three_functions():
    """nondeterminism_tables (the stats stage: each group aligned once) returns exactly what compute_group_metrics,
    per_problem_divergence and pass_at_k_table return, for a greedy and a sampling group together."""
    greedy = runs_frame([{"a": ([1, 2, 3], [0.9, 0.8, 0.7], True), "b": ([4, 5 + ci], [0.6, 0.5], ci == 1)}
                         for ci in range(3)])
    sampled = runs_frame([{pid: [([1, 2], None, bool((ci + pi + s) % 2)) for s in range(4)]
                           for pi, pid in enumerate(["a", "b"])} for ci in range(3)], {**GROUP, "decoding": "sample"})
    runs = pl.concat([sampled, greedy])
    tables = nondeterminism_tables(runs, [2, 1, 2])
    assert tables.metrics.equals(compute_group_metrics(runs))
    assert tables.divergence.equals(per_problem_divergence(runs))
    assert tables.passk.equals(pass_at_k_table(runs, [1, 2]))
    assert tables.metrics.height == 2 and tables.divergence.height == 2 and tables.passk.height == 4
    with pytest.raises(ValueError, match="ks must be"):
        nondeterminism_tables(runs, [])
