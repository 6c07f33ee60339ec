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

from .labels import CONFIG_KEYS, CONFIG_SCHEMA, GROUP_KEYS, GROUP_SCHEMA, LABELS
from .nondeterminism import DEFAULT_DDOF, _padded

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


def _load(ref: Mapping[str, Any]) -> pl.DataFrame:
    gens = pl.read_parquet(ref["generations"], columns=["id", "sample_idx", "token_ids", "topk_logprobs"])
    return gens.select(
        "id", "sample_idx", "token_ids",
        pl.col("topk_logprobs").list.eval(pl.element().list.get(0, null_on_oob=True)).alias("top1"),
        pl.col("topk_logprobs").list.eval(pl.element().list.get(1, null_on_oob=True)).alias("top2"),
    ).sort(["id", "sample_idx"])


def _topk_at(ref: Mapping[str, Any], positions: pl.DataFrame) -> pl.DataFrame:
    """Top-k ids and logprobs of one run at the given (id -> pos) positions (null where the sequence ended)."""
    gens = pl.read_parquet(ref["generations"], columns=["id", "topk_ids", "topk_logprobs"])
    gens = gens.join(positions, on="id", how="inner")
    return gens.select(
        "id",
        pl.col("topk_ids").list.get(pl.col("pos"), null_on_oob=True).alias("ids_at"),
        pl.col("topk_logprobs").list.get(pl.col("pos"), null_on_oob=True).alias("lps_at"),
    )


def _group_refs(refs: Iterable[Mapping[str, Any]]) -> dict[tuple, list[Mapping[str, Any]]]:
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for ref in refs:
        groups.setdefault(tuple(ref[k] for k in GROUP_KEYS), []).append(ref)
    return {k: sorted(v, key=lambda r: tuple(r[c] for c in CONFIG_KEYS)) for k, v in groups.items()}


def _group(refs: list[Mapping[str, Any]], near_tie_sigmas: float, ddof: int) -> tuple[list[dict], list[dict]]:
    frames = [_load(r) for r in refs]
    keys = frames[0].select("id", "sample_idx")
    for r, f in zip(refs, frames):
        if not f.select("id", "sample_idx").equals(keys):
            raise ValueError(f"{r['generations']}: not the same (id, sample_idx) rows as {refs[0]['generations']}")
    if frames[0].get_column("sample_idx").max() != 0:
        return [], []  # sampling groups have no divergence point
    n_conf, n_prob = len(frames), frames[0].height
    ids = keys.get_column("id").to_list()
    tokens, lengths, top1, top2 = [], [], [], []
    for f in frames:
        t, n = _padded(f.get_column("token_ids"), n_prob, -1, np.int32)
        a, _ = _padded(f.get_column("top1").cast(pl.List(pl.Float32)), n_prob, np.nan, np.float32)
        b, _ = _padded(f.get_column("top2").cast(pl.List(pl.Float32)), n_prob, np.nan, np.float32)
        tokens.append(t), lengths.append(n), top1.append(a), top2.append(b)
    width = max(t.shape[1] for t in tokens)

    def stack(arrs, fill):
        return np.stack([np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=fill) for a in arrs])

    tokens, top1, top2 = stack(tokens, -1), stack(top1, np.nan), stack(top2, np.nan)
    lengths = np.stack(lengths)  # (C, P)
    differs = (tokens != tokens[0]).any(axis=0)  # (P, W)
    identical = ~differs.any(axis=1)
    div = np.where(identical, -1, differs.argmax(axis=1))
    limit = np.where(identical, lengths[0], div)

    # the group's noise: std over configurations of the top-1 logprob at common positions, mean per problem, then
    # mean over problems (as Avg_Std@top1_prob, in logprob units)
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
        at = pl.DataFrame({"id": [ids[p] for p in div_rows], "pos": div[div_rows].astype(np.int64)})
        topk = [_topk_at(r, at).sort("id") for r in refs]
        order = {i: j for j, i in enumerate(at.sort("id").get_column("id").to_list())}
        tk_ids = [t.get_column("ids_at").to_list() for t in topk]
        for p in div_rows:
            d = int(div[p])
            j = order[ids[p]]
            ref_margin = margins[0, p, d] if d < lengths[0, p] else np.nan
            flip = "ended" if np.isnan(ref_margin) else ("near_tie" if ref_margin < threshold else "confident")
            for c, r in enumerate(refs):
                has = d < lengths[c, p]
                tok = int(tokens[c, p, d]) if has else None
                others = [set(tk_ids[o][j] or []) for o in range(n_conf) if o != c]
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
