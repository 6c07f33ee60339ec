"""Benchmark of the nondeterminism statistics on a synthetic paper-sized group.

12 configurations x 500 problems x 4,096 tokens (greedy): random token ids shared by all configurations up to a
planted divergence point per problem (a quarter of the problems identical everywhere), random top-1 logprobs.
Times ``compute_group_metrics`` and prints seconds and peak memory (process RSS and tracemalloc-visible numpy
allocations). Goal: < 10 s on 2 cores. Then times what the stats_nondeterminism rule computes,
``nondeterminism_tables`` (metrics, per-problem divergence and pass@k in one pass over the groups).

Then the diagnostics beyond the papers (issue 15) on the same group, written as 12 generation parquet files with
top-5 ids and log-probabilities per token (the stats_divergence rule's input): ``divergence_points`` (divergence
points, margins, near-tie exposure) and the bootstrap CIs of the summary and compression-effect tables (accuracy
CI of every configuration, paired delta CI of every configuration against the first, 1,000 resamples each). That
part runs in a child process of its own, so its peak RSS is its own. Goal: < 10 s and < 2 GB on 2 cores.

    python benchmarks/stats.py [--configs 12] [--problems 500] [--tokens 4096] [--skip-diagnostics]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet  # noqa: F401  (pa.parquet)

from lrmrepro.stats.nondeterminism import RUNS_SCHEMA, compute_group_metrics, nondeterminism_tables


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


TOP_K = 5
GOAL_SECONDS, GOAL_GB = 10.0, 2.0


def write_generation_files(runs: pl.DataFrame, directory: Path, seed: int = 1) -> list[dict]:
    """One generations parquet per configuration of ``runs`` (token ids plus top-5 ids and log-probabilities per
    token, as the generate stage writes them) and the run refs that point at them."""
    rng = np.random.default_rng(seed)
    refs = []
    for (parallel, batch_size), part in runs.sort("id").group_by(["parallel", "batch_size"], maintain_order=True):
        n_problems = part.height
        tokens = part.get_column("token_ids").explode().to_numpy().astype(np.int64)
        n_tokens = tokens.size // n_problems
        top1 = part.get_column("top1_logprob").explode().to_numpy().astype(np.float32)
        # the chosen token is top-1; four other candidates below it (random gaps: some near-ties)
        gaps = rng.exponential(0.5, size=(tokens.size, TOP_K - 1)).astype(np.float32).cumsum(axis=1)
        lps = np.concatenate([top1[:, None], top1[:, None] - gaps], axis=1)
        ids = np.concatenate([tokens[:, None], (tokens[:, None] + np.arange(1, TOP_K)) % 150_000], axis=1)
        outer = pa.array(np.arange(0, tokens.size + 1, n_tokens, dtype=np.int32))
        inner = pa.array(np.arange(0, tokens.size * TOP_K + 1, TOP_K, dtype=np.int32))
        topk_ids = pa.ListArray.from_arrays(outer, pa.ListArray.from_arrays(inner, pa.array(ids.reshape(-1))))
        topk_lps = pa.ListArray.from_arrays(outer, pa.ListArray.from_arrays(inner, pa.array(lps.reshape(-1))))
        token_ids = pa.ListArray.from_arrays(outer, pa.array(tokens))
        path = directory / f"p{parallel}-bs{batch_size}.parquet"
        pa.parquet.write_table(pa.table({
            "id": part.get_column("id").to_arrow(), "sample_idx": pa.array(np.zeros(n_problems, dtype=np.int64)),
            "token_ids": token_ids, "topk_ids": topk_ids, "topk_logprobs": topk_lps,
        }), path)
        labels = part.row(0, named=True)
        refs.append({k: labels[k] for k in ("model", "compression", "task", "precision", "decoding", "backend",
                                            "parallel", "batch_size", "hardware")} | {"generations": str(path)})
    return refs


def diagnostics_child(refs_file: str) -> None:
    """Run in a child process: time divergence_points and the bootstrap CIs; print one JSON line."""
    from lrmrepro.stats.bootstrap import batched_mean_cis, paired_delta_ci
    from lrmrepro.stats.divergence import divergence_points

    spec = json.loads(Path(refs_file).read_text())
    correct = np.asarray(spec["correct"], dtype=np.float64)  # (configs, problems)
    t0 = time.perf_counter()
    points, exposure = divergence_points(spec["refs"])
    t_div = time.perf_counter() - t0
    t0 = time.perf_counter()
    cis = batched_mean_cis(correct)
    deltas = [paired_delta_ci(correct[c], correct[0]) for c in range(1, correct.shape[0])]
    t_boot = time.perf_counter() - t0
    print(json.dumps({
        "divergence_seconds": t_div, "bootstrap_seconds": t_boot,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "points": points.height, "diverging_problems": points.filter(pl.col("reference")).height,
        "near_tie_flips": points.filter(pl.col("reference") & (pl.col("flip") == "near_tie")).height,
        "exposure_rows": exposure.height, "ci_rows": int(cis.shape[0]), "delta_cis": len(deltas),
    }))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", type=int, default=12)
    ap.add_argument("--problems", type=int, default=500)
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--skip-diagnostics", action="store_true")
    ap.add_argument("--diagnostics-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.diagnostics_child:
        diagnostics_child(args.diagnostics_child)
        return
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
    t0 = time.perf_counter()
    tables = nondeterminism_tables(runs, [1])
    stage_seconds = time.perf_counter() - t0
    div = tables.divergence.sort("id")
    got = div.get_column("div_index").fill_null(-1).to_numpy()
    assert (got == planted).all(), "Div_Index does not recover the planted divergence points"
    row = metrics.row(0, named=True)
    print(f"synthetic runs: {args.configs} configs x {args.problems} problems x {args.tokens} tokens "
          f"({runs.height} rows, built in {build:.1f} s, frame {runs.estimated_size() / 2**20:.0f} MiB)")
    print(f"compute_group_metrics: {seconds:.2f} s (goal < 10 s)")
    print(f"nondeterminism_tables (the stats_nondeterminism stage: metrics, divergence, pass@k): {stage_seconds:.2f} s")
    print(f"peak RSS: {rss_after:.0f} MiB (before the call {rss_before:.0f} MiB); "
          f"tracemalloc peak during the call (numpy/python allocations): {traced_peak / 2**20:.0f} MiB")
    print(f"n_identical={row['n_identical']} n_diverging={row['n_diverging']} "
          f"div_index_mean={row['div_index_mean']:.1f} avg_std_top1_prob={row['avg_std_top1_prob']:.4f}")
    print("planted divergence points recovered exactly")
    if args.skip_diagnostics:
        return

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        refs = write_generation_files(runs, Path(tmp))
        correct = [part.sort("id").get_column("correct").cast(pl.Float64).to_list()
                   for _, part in runs.group_by(["parallel", "batch_size"], maintain_order=True)]
        spec = Path(tmp) / "refs.json"
        spec.write_text(json.dumps({"refs": refs, "correct": correct}))
        size = sum(Path(r["generations"]).stat().st_size for r in refs) / 2**20
        print(f"diagnostics input: {len(refs)} generation files with top-{TOP_K} ids and logprobs per token, "
              f"{size:.0f} MiB on disk (written in {time.perf_counter() - t0:.1f} s)")
        del runs
        out = subprocess.run([sys.executable, __file__, "--diagnostics-child", str(spec)], capture_output=True,
                             text=True, check=True)
        got = json.loads(out.stdout.strip().splitlines()[-1])
    total = got["divergence_seconds"] + got["bootstrap_seconds"]
    print(f"divergence_points: {got['divergence_seconds']:.2f} s ({got['diverging_problems']} diverging problems, "
          f"{got['near_tie_flips']} near-tie flips, {got['exposure_rows']} exposure rows)")
    print(f"bootstrap: {got['bootstrap_seconds']:.2f} s ({got['ci_rows']} accuracy CIs, {got['delta_cis']} paired "
          f"delta CIs, 1,000 resamples each)")
    print(f"diagnostics + bootstrap: {total:.2f} s (goal < {GOAL_SECONDS:.0f} s); peak RSS of that process "
          f"{got['peak_rss_mib']:.0f} MiB (goal < {GOAL_GB * 1024:.0f} MiB)")


if __name__ == "__main__":
    main()
