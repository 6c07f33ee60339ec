"""Benchmark of the nondeterminism statistics on a synthetic paper-sized group.

12 configurations x 500 problems x 4,096 tokens (greedy): random token ids shared by all configurations up to a
planted divergence point per problem (a quarter of the problems identical everywhere), random top-1 logprobs.
Times ``compute_group_metrics`` and prints seconds and peak memory (process RSS and tracemalloc-visible numpy
allocations). Goal: < 10 s on 2 cores.

    python benchmarks/stats.py [--configs 12] [--problems 500] [--tokens 4096]
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

import numpy as np
import polars as pl
import pyarrow as pa

from lrmrepro.stats.nondeterminism import RUNS_SCHEMA, compute_group_metrics, per_problem_divergence


def synthetic_runs(n_configs: int, n_problems: int, n_tokens: int, seed: int = 0) -> tuple[pl.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 150_000, size=(n_problems, n_tokens), dtype=np.int32)
    planted = rng.integers(0, n_tokens, size=n_problems)
    planted[rng.random(n_problems) < 0.25] = -1  # identical problems
    frames = []
    for c in range(n_configs):
        tok = base.copy()
        if c > 0:  # config c differs from config 0 at the planted position of the problems it "owns"
            owners = (np.arange(n_problems) % (n_configs - 1)) + 1 == c
            rows = np.nonzero(owners & (planted >= 0))[0]
            tok[rows, planted[rows]] += 1
        logp = np.log(rng.uniform(0.3, 1.0, size=(n_problems, n_tokens))).astype(np.float32)
        offsets = pa.array(np.arange(0, (n_problems + 1) * n_tokens, n_tokens, dtype=np.int32))
        tokens = pa.ListArray.from_arrays(offsets, pa.array(tok.reshape(-1)))
        top1 = pa.ListArray.from_arrays(offsets, pa.array(logp.reshape(-1)))
        frames.append(pl.DataFrame({
            "model": "synthetic", "compression": "none", "task": "bench", "precision": "bf16", "decoding": "greedy",
            "backend": "transformers", "parallel": c % 2 + 1, "batch_size": 8 * (c // 2 + 1), "hardware": "cpu",
            "id": [f"p{i:04d}" for i in range(n_problems)], "sample_idx": 0,
            "output_length": n_tokens, "correct": rng.random(n_problems) < 0.5,
            "token_ids": pl.from_arrow(tokens), "top1_logprob": pl.from_arrow(top1),
        }).select([pl.col(k).cast(t) for k, t in RUNS_SCHEMA.items()]))
    return pl.concat(frames), planted


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", type=int, default=12)
    ap.add_argument("--problems", type=int, default=500)
    ap.add_argument("--tokens", type=int, default=4096)
    args = ap.parse_args()
    t0 = time.perf_counter()
    runs, planted = synthetic_runs(args.configs, args.problems, args.tokens)
    build = time.perf_counter() - t0
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tracemalloc.start()
    t0 = time.perf_counter()
    metrics = compute_group_metrics(runs)
    seconds = time.perf_counter() - t0
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    div = per_problem_divergence(runs).sort("id")
    got = div.get_column("div_index").fill_null(-1).to_numpy()
    assert (got == planted).all(), "Div_Index does not recover the planted divergence points"
    row = metrics.row(0, named=True)
    print(f"synthetic runs: {args.configs} configs x {args.problems} problems x {args.tokens} tokens "
          f"({runs.height} rows, built in {build:.1f} s, frame {runs.estimated_size() / 2**20:.0f} MiB)")
    print(f"compute_group_metrics: {seconds:.2f} s (goal < 10 s)")
    print(f"peak RSS: {rss_after:.0f} MiB (before the call {rss_before:.0f} MiB); "
          f"tracemalloc peak during the call (numpy/python allocations): {traced_peak / 2**20:.0f} MiB")
    print(f"n_identical={row['n_identical']} n_diverging={row['n_diverging']} "
          f"div_index_mean={row['div_index_mean']:.1f} avg_std_top1_prob={row['avg_std_top1_prob']:.4f}")
    print("planted divergence points recovered exactly")


if __name__ == "__main__":
    main()
