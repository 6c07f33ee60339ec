"""Nondeterminism statistics across runtime configurations ("Give Me FP32 or Give Me Death?", Yuan et al. 2025).

A *group* is one (model, compression, task, precision, decoding); a *configuration* within it is one
(backend, parallel, batch_size, hardware). Every metric compares the configurations of one group. Definitions,
formulas and the choices made are in docs/metrics.md; in short (C configurations, P problems):

- ``std_acc``                Std@Acc: std over configurations of accuracy (``ddof`` parameter, default 1).
- ``avg_std_output_length``  per problem std over configurations of output length, mean over problems.
- ``div_index_*``            Div_Index: per problem first position where the greedy token sequences are not all
                             equal (a proper prefix diverges at its own length); identical problems are counted in
                             ``n_identical`` and get no index.
- ``avg_std_top1_prob``      per problem and position < Div_Index (all positions of identical problems), std over
                             configurations of exp(top-1 logprob); mean over positions, then over problems.
- ``pass1_mean``/``pass1_std`` Pass@1 per configuration (mean over problems of c/n), mean / std over configurations.

Token-level metrics (output length, Div_Index, top-1 prob) are computed for groups with one sample per problem
(greedy) and are null for sampling groups. Everything is vectorised with numpy / polars / pyarrow: the only Python
loops run over groups and over configurations, never over tokens.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, NamedTuple, Sequence

import numpy as np
import polars as pl
import pyarrow as pa

from .labels import CONFIG_KEYS, CONFIG_SCHEMA, GROUP_KEYS, GROUP_SCHEMA, LABELS
from .. import io

DEFAULT_DDOF = 1

RUNS_SCHEMA = {
    **GROUP_SCHEMA, **CONFIG_SCHEMA,
    "id": pl.String, "sample_idx": pl.Int32, "output_length": pl.Int32, "correct": pl.Boolean,
    "token_ids": pl.List(pl.Int32), "top1_logprob": pl.List(pl.Float32),
}


# --------------------------------------------------------------------------------------------------------------
# loading


def _check_ref(ref: Mapping[str, Any], i: int) -> None:
    missing = [k for k in LABELS + ["generations", "scores"] if k not in ref]
    if missing:
        raise ValueError(f"run ref #{i} lacks key(s) {missing}; a run ref needs {LABELS + ['generations', 'scores']}")


def load_run(ref: Mapping[str, Any]) -> pl.DataFrame:
    """One run (generations + scores parquet) as rows of the runs frame (see ``RUNS_SCHEMA``)."""
    gens = io.read_parquet(ref["generations"], columns=["id", "sample_idx", "token_ids", "output_length",
                                                         "topk_logprobs"])
    scores = io.read_parquet(ref["scores"], columns=["id", "sample_idx", "correct"])
    df = gens.join(scores, on=["id", "sample_idx"], how="left", validate="1:1")
    if df.get_column("correct").null_count():
        raise ValueError(f"{ref['scores']}: no score for {df.get_column('correct').null_count()} generation row(s) "
                         f"of {ref['generations']}")
    df = df.with_columns(
        pl.col("topk_logprobs").list.eval(pl.element().list.first()).alias("top1_logprob"),
        *[pl.lit(ref[k]).alias(k) for k in LABELS],
    )
    return df.select([pl.col(k).cast(t) for k, t in RUNS_SCHEMA.items()])


def load_runs(run_refs: Iterable[Mapping[str, Any]]) -> pl.DataFrame:
    """Concatenate runs into the long runs frame: one row per (group, configuration, problem, sample).

    Each run ref is a dict with the labels ``model, compression, task, precision, backend, parallel, batch_size,
    hardware, decoding`` and the paths ``generations`` and ``scores``."""
    refs = list(run_refs)
    if not refs:
        raise ValueError("load_runs: no run refs given")
    for i, ref in enumerate(refs):
        _check_ref(ref, i)
    return pl.concat([load_run(r) for r in refs], how="vertical")


# --------------------------------------------------------------------------------------------------------------
# small numerics


def std(values: np.ndarray, ddof: int = DEFAULT_DDOF, axis: int | None = None) -> np.ndarray | float:
    """numpy std with the given ddof; NaN where fewer than ``ddof + 1`` values (instead of a warning)."""
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[axis] if axis is not None else values.size
    if n - ddof <= 0:
        shape = np.delete(values.shape, axis) if axis is not None else ()
        return np.full(shape, np.nan) if axis is not None else float("nan")
    return np.std(values, ddof=ddof, axis=axis)


def pass_at_k(n: np.ndarray | int, c: np.ndarray | int, k: int) -> np.ndarray:
    """Unbiased pass@k (Chen et al. 2021): 1 - C(n-c, k) / C(n, k), vectorised over problems.

    Computed in the numerically stable product form 1 - prod_{i=n-c+1}^{n} (1 - k/i) via cumulative log sums;
    1 where n - c < k. Raises ValueError where k > n."""
    n = np.asarray(n, dtype=np.int64)
    c = np.asarray(c, dtype=np.int64)
    n, c = np.broadcast_arrays(n, c)
    if k < 1:
        raise ValueError(f"pass@k needs k >= 1, got {k}")
    if (n < k).any():
        raise ValueError(f"pass@{k} needs at least k samples per problem, got n = {int(n.min())}")
    if ((c < 0) | (c > n)).any():
        raise ValueError("pass@k needs 0 <= c <= n")
    n_max = int(n.max()) if n.size else 0
    i = np.arange(1, n_max + 1, dtype=np.float64)
    terms = np.zeros_like(i)
    terms[i > k] = np.log1p(-k / i[i > k])  # only i > k are ever used
    cum = np.concatenate([[0.0], np.cumsum(terms)])  # cum[j] = sum_{i<=j, i>k} log(1 - k/i)
    lo = n - c
    prod = np.exp(cum[n] - cum[np.maximum(lo, 0)])
    return np.where(lo < k, 1.0, 1.0 - prod)


def _padded(col: pl.Series, n_rows: int, fill, dtype) -> tuple[np.ndarray, np.ndarray]:
    """A list column as a dense [n_rows, max_len] array padded with ``fill``, and the row lengths."""
    arr = col.to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    lengths = arr.value_lengths().fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    values = arr.flatten().to_numpy(zero_copy_only=False)
    width = int(lengths.max()) if n_rows else 0
    out = np.full((n_rows, max(width, 1)), fill, dtype=dtype)
    if values.size:
        starts = np.cumsum(lengths) - lengths
        flat = np.arange(values.size, dtype=np.int64) + np.repeat(np.arange(n_rows, dtype=np.int64) * out.shape[1]
                                                                  - starts, lengths)
        out.reshape(-1)[flat] = values
    return out, lengths


# --------------------------------------------------------------------------------------------------------------
# one group


class Aligned(NamedTuple):
    """A group's rows sorted by (configuration, id, sample_idx) (``_config``: the configuration's index), its
    configurations, their number C, the number of problems P, samples per problem n and the group labels."""

    rows: pl.DataFrame
    configs: pl.DataFrame
    n_conf: int
    n_problems: int
    n_samples: int
    labels: dict[str, Any]


def _aligned(group: pl.DataFrame) -> Aligned:
    """Sort a group's rows by (configuration, id, sample_idx) and check that every configuration has the same
    (id, sample_idx) rows."""
    configs = group.select(CONFIG_KEYS).unique().sort(CONFIG_KEYS).with_row_index("_config")
    rows = group.join(configs, on=CONFIG_KEYS, how="left").sort(["_config", "id", "sample_idx"])
    n_conf = configs.height
    counts = rows.group_by("_config").len().sort("_config").get_column("len").to_numpy()
    label = {k: group.get_column(k)[0] for k in GROUP_KEYS}
    if (counts != counts[0]).any():
        raise ValueError(f"group {label}: configurations have different numbers of rows {counts.tolist()} "
                         f"(configs {configs.drop('_config').rows()})")
    per = int(counts[0])
    keys = rows.select(pl.col("id").rank("dense").cast(pl.Int64) * 1_000_003 + pl.col("sample_idx").cast(pl.Int64))
    keys = keys.to_series().to_numpy().reshape(n_conf, per)
    bad = np.nonzero((keys != keys[0]).any(axis=1))[0]
    if bad.size:
        raise ValueError(f"group {label}: configuration {configs.drop('_config').row(int(bad[0]))} does not have the "
                         f"same (id, sample_idx) rows as {configs.drop('_config').row(0)}")
    if (np.diff(keys[0]) == 0).any():
        raise ValueError(f"group {label}: duplicate (id, sample_idx) rows within a configuration")
    n_problems = rows.filter(pl.col("_config") == 0).get_column("id").n_unique()
    if per % n_problems:
        raise ValueError(f"group {label}: problems have different numbers of samples")
    return Aligned(rows, configs, n_conf, n_problems, per // n_problems, label)


def _greedy_arrays(rows: pl.DataFrame, n_conf: int, n_problems: int, ddof: int) -> dict[str, np.ndarray]:
    """Per-problem Div_Index, identical flag and mean top-1-prob std for a group with one sample per problem."""
    n_rows = rows.height
    tokens, lengths = _padded(rows.get_column("token_ids"), n_rows, -1, np.int32)
    width = tokens.shape[1]
    tokens = tokens.reshape(n_conf, n_problems, width)
    lengths = lengths.reshape(n_conf, n_problems)
    # a position differs when any configuration's token (or padding -1) differs from configuration 0's
    differs = np.zeros((n_problems, width), dtype=bool)
    for c in range(1, n_conf):
        differs |= tokens[c] != tokens[0]
    del tokens
    identical = ~differs.any(axis=1)
    div_index = np.where(identical, -1, differs.argmax(axis=1))
    del differs
    # positions whose top-1 prob std enters the mean: < Div_Index, or the common length for identical problems
    limit = np.where(identical, lengths[0], div_index)

    logp, lp_len = _padded(rows.get_column("top1_logprob"), n_rows, np.nan, np.float32)
    lp_len = lp_len.reshape(n_conf, n_problems)
    short = (lp_len < np.minimum(lengths, limit[None, :])).any(axis=0)
    if short.any():
        raise ValueError(f"top1_logprob shorter than token_ids for {int(short.sum())} problem(s)")
    logp = logp[:, : max(int(limit.max(initial=0)), 1)].reshape(n_conf, n_problems, -1)
    span = logp.shape[2]
    mask = np.arange(span)[None, :] < limit[:, None]
    mean = np.zeros((n_problems, span))
    for c in range(n_conf):
        mean += np.exp(logp[c], dtype=np.float64)
    mean /= n_conf
    ss = np.zeros((n_problems, span))
    for c in range(n_conf):
        ss += (np.exp(logp[c], dtype=np.float64) - mean) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        pos_std = np.sqrt(ss / (n_conf - ddof)) if n_conf - ddof > 0 else np.full_like(ss, np.nan)
        n_pos = mask.sum(axis=1)
        top1_std = np.where(n_pos > 0, np.where(mask, pos_std, 0.0).sum(axis=1) / np.maximum(n_pos, 1), np.nan)
    return {
        "identical": identical,
        "div_index": div_index,
        "top1_positions": n_pos,
        "top1_std": top1_std,
        "len_std": std(lengths, ddof, axis=0),
        "len_min": lengths.min(axis=0),
        "len_max": lengths.max(axis=0),
    }


def _group_metrics(aligned: Aligned, ddof: int) -> tuple[dict[str, Any], pl.DataFrame | None]:
    """A group's metrics row and (greedy groups) its per-problem divergence rows."""
    rows, _, n_conf, n_problems, n_samples, labels = aligned
    per_config = (rows.group_by("_config").agg(pl.col("correct").cast(pl.Float64).mean().alias("acc"))
                  .sort("_config").get_column("acc").to_numpy())
    # Pass@1 per configuration: mean over problems of c/n
    pass1 = (rows.group_by(["_config", "id"]).agg(pl.col("correct").cast(pl.Float64).mean().alias("p"))
             .group_by("_config").agg(pl.col("p").mean()).sort("_config").get_column("p").to_numpy())
    out: dict[str, Any] = {
        **labels,
        "n_configs": n_conf, "n_problems": n_problems, "n_samples": n_samples, "ddof": ddof,
        "acc_mean": float(per_config.mean()), "std_acc": float(std(per_config, ddof)),
        "pass1_mean": float(pass1.mean()), "pass1_std": float(std(pass1, ddof)),
        "mean_output_length": float(rows.get_column("output_length").mean()),
        "avg_std_output_length": None, "n_identical": None, "n_diverging": None,
        "div_index_mean": None, "div_index_median": None, "avg_std_top1_prob": None,
    }
    if n_samples != 1:
        return out, None
    g = _greedy_arrays(rows, n_conf, n_problems, ddof)
    div = g["div_index"][~g["identical"]]
    out.update({
        "avg_std_output_length": float(np.mean(g["len_std"])) if n_conf - ddof > 0 else None,
        "n_identical": int(g["identical"].sum()),
        "n_diverging": int(div.size),
        "div_index_mean": float(div.mean()) if div.size else None,
        "div_index_median": float(np.median(div)) if div.size else None,
        "avg_std_top1_prob": float(np.nanmean(g["top1_std"])) if np.isfinite(g["top1_std"]).any() else None,
    })
    ids = rows.filter(pl.col("_config") == 0).get_column("id")
    per_problem = pl.DataFrame({
        **{k: [labels[k]] * n_problems for k in GROUP_KEYS},
        "id": ids,
        "n_configs": np.full(n_problems, n_conf, dtype=np.int64),
        "identical": g["identical"],
        "div_index": g["div_index"].astype(np.int64),
        "top1_positions": g["top1_positions"].astype(np.int64),
        "std_top1_prob": g["top1_std"],
        "std_output_length": g["len_std"],
        "min_output_length": g["len_min"].astype(np.int64),
        "max_output_length": g["len_max"].astype(np.int64),
    }).with_columns(pl.col("std_top1_prob").fill_nan(None),
                    pl.when(pl.col("identical")).then(None).otherwise(pl.col("div_index")).alias("div_index"))
    return out, per_problem


METRICS_SCHEMA = {
    **GROUP_SCHEMA,
    "n_configs": pl.Int64, "n_problems": pl.Int64, "n_samples": pl.Int64, "ddof": pl.Int64,
    "acc_mean": pl.Float64, "std_acc": pl.Float64, "pass1_mean": pl.Float64, "pass1_std": pl.Float64,
    "mean_output_length": pl.Float64, "avg_std_output_length": pl.Float64,
    "n_identical": pl.Int64, "n_diverging": pl.Int64, "div_index_mean": pl.Float64, "div_index_median": pl.Float64,
    "avg_std_top1_prob": pl.Float64,
}

DIVERGENCE_SCHEMA = {
    **GROUP_SCHEMA, "id": pl.String, "n_configs": pl.Int64, "identical": pl.Boolean,
    "div_index": pl.Int64, "top1_positions": pl.Int64, "std_top1_prob": pl.Float64,
    "std_output_length": pl.Float64, "min_output_length": pl.Int64, "max_output_length": pl.Int64,
}


def _groups(runs: pl.DataFrame) -> list[pl.DataFrame]:
    missing = [k for k in RUNS_SCHEMA if k not in runs.columns]
    if missing:
        raise ValueError(f"runs frame lacks column(s) {missing}; build it with load_runs")
    if runs.height == 0:
        raise ValueError("runs frame is empty")
    return runs.sort(GROUP_KEYS).partition_by(GROUP_KEYS, maintain_order=True)


def _check_ddof(ddof: int) -> int:
    if ddof not in (0, 1):
        raise ValueError(f"ddof must be 0 (population std) or 1 (sample std), got {ddof!r}")
    return ddof


PASSK_SCHEMA = {
    **GROUP_SCHEMA, "k": pl.Int64, "n_samples": pl.Int64, "n_configs": pl.Int64, "n_problems": pl.Int64,
    "ddof": pl.Int64, "pass_at_k_mean": pl.Float64, "pass_at_k_std": pl.Float64, "pass_at_k_min": pl.Float64,
    "pass_at_k_max": pl.Float64,
}


def _check_ks(ks: Sequence[int]) -> list[int]:
    if not ks or any(int(k) < 1 for k in ks):
        raise ValueError(f"ks must be a non-empty list of integers >= 1, got {ks!r}")
    return sorted({int(k) for k in ks})


def _pass_at_k_rows(aligned: Aligned, ks: Sequence[int], ddof: int) -> list[dict[str, Any]]:
    """A group's pass@k rows, one per k (sorted, distinct)."""
    rows, _, n_conf, n_problems, n_samples, labels = aligned
    per = (rows.group_by(["_config", "id"]).agg(pl.col("correct").sum().alias("c"), pl.len().alias("n"))
           .sort(["_config", "id"]))
    c = per.get_column("c").to_numpy().reshape(n_conf, n_problems)
    out = []
    for k in ks:
        vals = None if k > n_samples else pass_at_k(n_samples, c, k).mean(axis=1)
        out.append({**labels, "k": k, "n_samples": n_samples, "n_configs": n_conf, "n_problems": n_problems,
                    "ddof": ddof,
                    "pass_at_k_mean": None if vals is None else float(vals.mean()),
                    "pass_at_k_std": None if vals is None else float(std(vals, ddof)),
                    "pass_at_k_min": None if vals is None else float(vals.min()),
                    "pass_at_k_max": None if vals is None else float(vals.max())})
    return out


class NondeterminismTables(NamedTuple):
    """The three tables of the stats_nondeterminism stage."""

    metrics: pl.DataFrame  #: one row per group (``METRICS_SCHEMA``)
    divergence: pl.DataFrame  #: one row per (greedy group, problem) (``DIVERGENCE_SCHEMA``)
    passk: pl.DataFrame  #: one row per (group, k) (``PASSK_SCHEMA``)


def _tables(runs: pl.DataFrame, ddof: int, ks: Sequence[int] | None, metrics: bool = True) -> NondeterminismTables:
    """One pass over the groups: each group is aligned once and its metrics (with ``metrics``) and pass@k rows
    (with ``ks``) come from that alignment."""
    _check_ddof(ddof)
    ks = _check_ks(ks) if ks is not None else []
    rows: list[dict[str, Any]] = []
    parts: list[pl.DataFrame] = []
    passk: list[dict[str, Any]] = []
    for group in _groups(runs):
        aligned = _aligned(group)
        if metrics:
            row, per_problem = _group_metrics(aligned, ddof)
            rows.append(row)
            if per_problem is not None:
                parts.append(per_problem.select([pl.col(k).cast(t) for k, t in DIVERGENCE_SCHEMA.items()]))
        passk.extend(_pass_at_k_rows(aligned, ks, ddof))
    return NondeterminismTables(pl.DataFrame(rows, schema=METRICS_SCHEMA),
                                pl.concat(parts) if parts else pl.DataFrame(schema=DIVERGENCE_SCHEMA),
                                pl.DataFrame(passk, schema=PASSK_SCHEMA))


def nondeterminism_tables(runs: pl.DataFrame, ks: Sequence[int], ddof: int = DEFAULT_DDOF) -> NondeterminismTables:
    """All three tables of the stage in one pass (what ``compute_group_metrics``, ``per_problem_divergence`` and
    ``pass_at_k_table`` return, each group aligned once)."""
    return _tables(runs, ddof, ks)


def compute_group_metrics(runs: pl.DataFrame, ddof: int = DEFAULT_DDOF) -> pl.DataFrame:
    """One row per group with the metrics above (see ``METRICS_SCHEMA``); stds use ``ddof``."""
    return _tables(runs, ddof, None).metrics


def per_problem_divergence(runs: pl.DataFrame, ddof: int = DEFAULT_DDOF) -> pl.DataFrame:
    """One row per (greedy group, problem): Div_Index (null when identical), per-problem top-1-prob and
    output-length std (see ``DIVERGENCE_SCHEMA``). Sampling groups are skipped. Input of Figure 5."""
    return _tables(runs, ddof, None).divergence


def pass_at_k_table(runs: pl.DataFrame, ks: Sequence[int], ddof: int = DEFAULT_DDOF) -> pl.DataFrame:
    """Unbiased pass@k per group and k: mean and std over configurations of (mean over problems of pass@k).

    ``n_samples`` is the number of samples per problem; ks larger than it give null values."""
    return _tables(runs, ddof, ks, metrics=False).passk
