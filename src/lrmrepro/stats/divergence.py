"""Why greedy outputs diverge: the divergence point of every diverging problem, and each run's exposure to near-ties.

For a greedy group (one model, compression, task, precision) and its C runtime configurations, a problem diverges
at its Div_Index D (docs/metrics.md): the token sequences agree on positions < D and not at D. At D every
configuration saw the same context, so what differs is only the arithmetic. For each configuration at D this module
records the token it chose, its top-1 and top-2 log-probabilities and their **margin** (top-1 − top-2, in nats), and
whether its token is among every other configuration's top-5 there.

**Near-tie or confident flip.** The group's numerical noise σ is the size of the noise where it acts: the mean, over
the common positions (before D, or all positions of identical problems) at which the configurations' margins are not
all equal, of the std of the margin across configurations. The margin, not the top-1 log-probability, because a
flip is the margin changing sign: where the model is confident its top-1 log-probability is near 0 and hardly
moves while its logits, and so the margin, move by a whole rounding step. Positions where every configuration
computed the same margin bit for bit are left out of the mean and counted in ``noise_active_share``: on a CPU most
positions are bit-identical across batch sizes and the rest differ by a whole bf16 step, so a mean over all
positions would put σ far below the steps that actually flip tokens. A divergence is a *near-tie flip* when the
margin of the reference configuration (the first configuration in (backend, parallel, batch_size, hardware) order)
at D is below the threshold ``near_tie_sigmas × σ`` (default 3: margins below ~3σ are within reach of the noise),
and a *confident flip* otherwise. A group whose configurations agree bit for bit has σ = 0 and no near-ties.

**Exposure.** Per run (configuration), how often greedy decoding passed a position whose margin was below the
threshold: the share of its generated positions, and the share of problems with at least one such position. This
is the exposure to nondeterminism even where no flip happened.
"""

from __future__ import annotations

import warnings
from typing import Any, Iterable, Mapping

import numpy as np
import polars as pl
import pyarrow as pa

from .labels import CONFIG_KEYS, CONFIG_SCHEMA, GROUP_KEYS, GROUP_SCHEMA, LABELS
from .nondeterminism import DEFAULT_DDOF, _padded
from .. import io

NEAR_TIE_SIGMAS = 3.0
TOP_K = 5

POINTS_SCHEMA = {
    **GROUP_SCHEMA, "id": pl.String, "div_index": pl.Int64, **CONFIG_SCHEMA,
    "reference": pl.Boolean, "token": pl.Int64, "top1_logprob": pl.Float64, "top2_logprob": pl.Float64,
    "margin": pl.Float64, "in_all_top5": pl.Boolean, "noise_sigma": pl.Float64, "threshold": pl.Float64,
    "flip": pl.String,
}
EXPOSURE_SCHEMA = {
    **GROUP_SCHEMA, **CONFIG_SCHEMA, "noise_sigma": pl.Float64, "threshold": pl.Float64,
    "noise_active_share": pl.Float64, "positions": pl.Int64,
    "near_tie_positions": pl.Int64, "near_tie_rate": pl.Float64, "problems": pl.Int64,
    "problems_with_near_tie": pl.Int64, "diverging_problems": pl.Int64, "near_tie_flips": pl.Int64,
    "confident_flips": pl.Int64,
}


def _keys_and_tokens(ref: Mapping[str, Any]) -> tuple[pl.DataFrame, pl.Series]:
    """A run's (id, sample_idx) rows in sorted order, the permutation that sorts its file, and its token ids."""
    gens = io.read_parquet(ref["generations"], columns=["id", "sample_idx", "token_ids"]).with_row_index("row")
    gens = gens.sort(["id", "sample_idx"])
    return gens.select("id", "sample_idx", "row"), gens.get_column("token_ids")


def _flat(arr: pa.ChunkedArray | pa.Array) -> pa.Array:
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def _topk_columns(ref: Mapping[str, Any], order: np.ndarray, width: int, positions: np.ndarray,
                  ) -> tuple[np.ndarray, np.ndarray, list[list[int] | None]]:
    """One run's top-1 and top-2 log-probabilities as dense [problems, width] arrays (NaN past a sequence's end or
    where fewer candidates were stored), rows in ``order`` (file rows of the sorted problems), and its top-k ids at
    ``positions`` (one per problem, -1: not needed; None where the sequence ended). One read of the file, numpy on
    arrow's flat buffers: no per-token Python objects."""
    table = io.read_arrow(ref["generations"], columns=["topk_ids", "topk_logprobs"])
    lps, ids = _flat(table.column("topk_logprobs")), _flat(table.column("topk_ids"))
    inner = lps.values.offsets.to_numpy()  # per position: its candidates in the flat list of values
    values = lps.values.values.to_numpy(zero_copy_only=False)
    k, first, last = np.diff(inner), inner[:-1], max(values.size - 1, 0)
    has = values.size > 0

    def dense(per_position: np.ndarray) -> np.ndarray:  # one value per position -> [problems, width], sorted rows
        rows = pl.Series(pa.ListArray.from_arrays(lps.offsets, pa.array(per_position, type=pa.float32())))
        out, _ = _padded(rows, len(order), np.nan, np.float32)
        if out.shape[1] > width:
            raise ValueError(f"{ref['generations']}: more top-k positions than generated tokens")
        return np.pad(out, ((0, 0), (0, width - out.shape[1])), constant_values=np.nan)[order]

    top1 = dense(np.where((k >= 1) & has, values[np.minimum(first, last)] if has else np.nan, np.nan))
    top2 = dense(np.where((k >= 2) & has, values[np.minimum(first + 1, last)] if has else np.nan, np.nan))
    id_outer, id_inner = ids.offsets.to_numpy(), ids.values.offsets.to_numpy()
    id_values = ids.values.values.to_numpy(zero_copy_only=False)
    at_div: list[list[int] | None] = []
    for p, d in enumerate(positions):
        row = order[p]
        if d < 0 or d >= id_outer[row + 1] - id_outer[row]:
            at_div.append(None)
            continue
        i = id_outer[row] + d
        at_div.append(id_values[id_inner[i]:id_inner[i + 1]].tolist())
    return top1, top2, at_div


def _group_refs(refs: Iterable[Mapping[str, Any]]) -> dict[tuple, list[Mapping[str, Any]]]:
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for ref in refs:
        groups.setdefault(tuple(ref[k] for k in GROUP_KEYS), []).append(ref)
    return {k: sorted(v, key=lambda r: tuple(r[c] for c in CONFIG_KEYS)) for k, v in groups.items()}


def _group(refs: list[Mapping[str, Any]], near_tie_sigmas: float, ddof: int) -> tuple[list[dict], list[dict]]:
    loaded = [_keys_and_tokens(r) for r in refs]
    keys = loaded[0][0].select("id", "sample_idx")
    for r, (k, _) in zip(refs, loaded):
        if not k.select("id", "sample_idx").equals(keys):
            raise ValueError(f"{r['generations']}: not the same (id, sample_idx) rows as {refs[0]['generations']}")
    if keys.get_column("sample_idx").max() != 0:
        return [], []  # sampling groups have no divergence point
    n_conf, n_prob = len(loaded), keys.height
    ids = keys.get_column("id").to_list()
    tokens, lengths = [], []
    for _, t in loaded:
        a, n = _padded(t, n_prob, -1, np.int32)
        tokens.append(a), lengths.append(n)
    width = max(t.shape[1] for t in tokens)
    tokens = np.stack([np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=-1) for a in tokens])
    lengths = np.stack(lengths)  # (C, P)
    differs = (tokens != tokens[0]).any(axis=0)  # (P, W)
    identical = ~differs.any(axis=1)
    div = np.where(identical, -1, differs.argmax(axis=1))
    limit = np.where(identical, lengths[0], div)
    top1 = np.full((n_conf, n_prob, width), np.nan, dtype=np.float32)
    top2 = np.full_like(top1, np.nan)
    tk_ids = []
    for c, (r, (k, _)) in enumerate(zip(refs, loaded)):
        a, b, at_div = _topk_columns(r, k.get_column("row").to_numpy(), width, div)
        top1[c], top2[c] = a, b
        tk_ids.append(at_div)
    del loaded

    # the group's noise: the std over configurations of the margin, averaged over the common positions where the
    # configurations' margins differ at all (module docstring)
    pos = np.arange(width)[None, :]
    common = pos < limit[:, None]
    margins = top1 - top2  # (C, P, W)
    sigma, active_share = 0.0, 0.0
    if n_conf - ddof > 0 and n_conf > 1:
        with warnings.catch_warnings():  # all-NaN columns past every sequence's end
            warnings.simplefilter("ignore", RuntimeWarning)
            sd = np.nan_to_num(np.nanstd(margins.astype(np.float64), axis=0, ddof=ddof))
        active = common & (sd > 0)
        if active.any():
            sigma = float(sd[active].mean())
        active_share = float(active.sum() / max(common.sum(), 1))
    threshold = near_tie_sigmas * sigma
    generated = pos[None, :, :] < lengths[:, :, None]
    near = generated & (margins < threshold)

    labels = {k: refs[0][k] for k in GROUP_KEYS}
    points: list[dict] = []
    div_rows = np.nonzero(~identical)[0]
    if div_rows.size:
        for p in div_rows:
            d = int(div[p])
            ref_margin = margins[0, p, d] if d < lengths[0, p] else np.nan
            flip = "ended" if np.isnan(ref_margin) else ("near_tie" if ref_margin < threshold else "confident")
            for c, r in enumerate(refs):
                has = d < lengths[c, p]
                tok = int(tokens[c, p, d]) if has else None
                others = [set(tk_ids[o][p] or []) for o in range(n_conf) if o != c]
                points.append({
                    **labels, "id": ids[p], "div_index": d, **{k: r[k] for k in CONFIG_KEYS},
                    "reference": c == 0, "token": tok,
                    "top1_logprob": float(top1[c, p, d]) if has else None,
                    "top2_logprob": float(top2[c, p, d]) if has and np.isfinite(top2[c, p, d]) else None,
                    "margin": float(margins[c, p, d]) if has and np.isfinite(margins[c, p, d]) else None,
                    "in_all_top5": bool(has and all(tok in o for o in others)),
                    "noise_sigma": sigma, "threshold": threshold, "flip": flip,
                })
    exposure = [{
        **labels, **{k: r[k] for k in CONFIG_KEYS}, "noise_sigma": sigma, "threshold": threshold,
        "noise_active_share": active_share,
        "positions": int(generated[c].sum()), "near_tie_positions": int(near[c].sum()),
        "near_tie_rate": float(near[c].sum() / max(generated[c].sum(), 1)),
        "problems": n_prob, "problems_with_near_tie": int(near[c].any(axis=1).sum()),
    } for c, r in enumerate(refs)]
    return points, exposure


def divergence_points(run_refs: Iterable[Mapping[str, Any]], *, near_tie_sigmas: float = NEAR_TIE_SIGMAS,
                      ddof: int = DEFAULT_DDOF) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(points, exposure) of every greedy group of the runs (run refs as for ``nondeterminism.load_runs``):
    ``points`` has one row per (diverging problem, configuration) (``POINTS_SCHEMA``), ``exposure`` one row per
    run (``EXPOSURE_SCHEMA``). Sampling groups are skipped."""
    if near_tie_sigmas < 0:
        raise ValueError(f"near_tie_sigmas must be >= 0, got {near_tie_sigmas}")
    refs = list(run_refs)
    for i, ref in enumerate(refs):
        missing = [k for k in LABELS + ["generations"] if k not in ref]
        if missing:
            raise ValueError(f"run ref #{i} lacks key(s) {missing}")
    points, exposure = [], []
    for group in _group_refs(refs).values():
        p, e = _group(group, near_tie_sigmas, ddof)
        points += p
        exposure += e
    return pl.DataFrame(points, schema=POINTS_SCHEMA), pl.DataFrame(exposure, schema=EXPOSURE_SCHEMA)


def flip_summary(points: pl.DataFrame) -> pl.DataFrame:
    """Per (model, compression, task, precision): diverging problems by flip class and the quantiles of the
    reference margin at the divergence point (the table per precision)."""
    ref = points.filter(pl.col("reference"))
    return (ref.group_by(GROUP_KEYS).agg(
        pl.len().alias("diverging"),
        (pl.col("flip") == "near_tie").sum().alias("near_tie_flips"),
        (pl.col("flip") == "confident").sum().alias("confident_flips"),
        pl.col("threshold").first(),
        pl.col("margin").quantile(0.1).alias("margin_q10"),
        pl.col("margin").median().alias("margin_median"),
        pl.col("margin").quantile(0.9).alias("margin_q90"),
        pl.col("in_all_top5").mean().alias("share_in_all_top5"),
    ).sort(GROUP_KEYS))
