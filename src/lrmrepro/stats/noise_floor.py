"""The noise floor: the same configuration generated twice (rules generate and generate_repeat), compared bit for bit
(docs/metrics.md, "Noise floor")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from .nondeterminism import _padded
from .. import io


def _as_generations(gen: pl.DataFrame | str | Path) -> pl.DataFrame:
    if isinstance(gen, (str, Path)):
        gen = io.read_parquet(gen, columns=["id", "sample_idx", "token_ids", "topk_ids", "topk_logprobs"])
    return gen


def noise_floor(gen_a: pl.DataFrame | str | Path, gen_b: pl.DataFrame | str | Path) -> dict[str, Any]:
    """Compare two generations tables of the *same* configuration run twice.

    Returns ``tokens_identical`` (all token_ids equal), ``topk_ids_identical``, ``logprobs_identical`` (top-k
    logprobs bit-identical, compared as float32 bit patterns), ``max_abs_delta_logprob`` (max |Δ| of the top-k
    logprob at the same rank, over positions < min of the two lengths) and row counts."""
    a, b = _as_generations(gen_a), _as_generations(gen_b)
    keys = ["id", "sample_idx"]
    ka, kb = a.select(keys).sort(keys), b.select(keys).sort(keys)
    if not ka.equals(kb):
        raise ValueError("noise_floor: the two generations tables do not have the same (id, sample_idx) rows")
    if ka.is_duplicated().any():
        raise ValueError("noise_floor: duplicate (id, sample_idx) rows")
    a, b = a.sort(keys), b.sort(keys)
    n = a.height
    tok_a, len_a = _padded(a.get_column("token_ids"), n, -1, np.int64)
    tok_b, len_b = _padded(b.get_column("token_ids"), n, -1, np.int64)
    width = max(tok_a.shape[1], tok_b.shape[1])
    tok_a = np.pad(tok_a, ((0, 0), (0, width - tok_a.shape[1])), constant_values=-1)
    tok_b = np.pad(tok_b, ((0, 0), (0, width - tok_b.shape[1])), constant_values=-1)
    rows_tok_differ = (tok_a != tok_b).any(axis=1)

    def flat_topk(df: pl.DataFrame, col: str, dtype, fill):
        inner = df.get_column(col).explode()  # one entry per position (null for empty outer lists)
        inner = inner.drop_nulls()
        arr, _ = _padded(inner, inner.len(), fill, dtype)
        return arr

    ids_a, ids_b = flat_topk(a, "topk_ids", np.int64, -1), flat_topk(b, "topk_ids", np.int64, -1)
    lp_a = flat_topk(a, "topk_logprobs", np.float32, np.nan)
    lp_b = flat_topk(b, "topk_logprobs", np.float32, np.nan)
    # positions < min length of each row, in the flattened (row, position) order of each table
    common = np.minimum(len_a, len_b)
    pos_a = np.concatenate([[0], np.cumsum(len_a)[:-1]]) if n else np.zeros(0, np.int64)
    pos_b = np.concatenate([[0], np.cumsum(len_b)[:-1]]) if n else np.zeros(0, np.int64)
    offs = np.arange(int(common.sum())) - np.repeat(np.cumsum(common) - common, common)
    sel_a = np.repeat(pos_a, common) + offs
    sel_b = np.repeat(pos_b, common) + offs
    same_shape = (len_a == len_b).all() and lp_a.shape == lp_b.shape
    logprobs_identical = bool(same_shape and np.array_equal(lp_a.view(np.uint32), lp_b.view(np.uint32)))
    topk_ids_identical = bool(same_shape and np.array_equal(ids_a, ids_b))
    k = min(lp_a.shape[1], lp_b.shape[1]) if sel_a.size else 0
    delta = np.abs(lp_a[sel_a, :k].astype(np.float64) - lp_b[sel_b, :k].astype(np.float64)) if k else np.zeros(0)
    return {
        "n_rows": n,
        "tokens_identical": bool(not rows_tok_differ.any()),
        "n_rows_tokens_differ": int(rows_tok_differ.sum()),
        "topk_ids_identical": topk_ids_identical,
        "logprobs_identical": logprobs_identical,
        "max_abs_delta_logprob": float(np.nanmax(delta)) if delta.size and np.isfinite(delta).any() else 0.0,
        "n_positions_compared": int(sel_a.size),
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m lrmrepro.stats.noise_floor A/generations.parquet B/generations.parquet``: the same comparison for
    any two runs of the same items (a run and its repeat, TP 1 and TP 2, a variant packed and dequantized), as JSON;
    with ``--scores`` each run's accuracy from the scores.parquet beside it."""
    import argparse
    import json

    ap = argparse.ArgumentParser(prog="python -m lrmrepro.stats.noise_floor", description=main.__doc__)
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--scores", action="store_true", help="add each run's accuracy (scores.parquet beside it)")
    args = ap.parse_args(argv)
    out = noise_floor(args.a, args.b)
    if args.scores:
        for key, path in (("accuracy_a", args.a), ("accuracy_b", args.b)):
            scores = io.read_parquet(Path(path).with_name("scores.parquet"), columns=["correct"])
            out[key] = float(scores.get_column("correct").mean())
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
