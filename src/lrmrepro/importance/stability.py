"""How stable is the module ranking: a bootstrap over traces, and the agreement between rankings.

Bootstrap: R resamples of the traces with replacement (multinomial counts w, seeded), each scored from the traces'
sufficient statistics (:meth:`.formulation.FormulationStats.scores`: no model pass per resample), ranked like
:func:`.ranking.rank_modules` (best first, ties in module order). Per formulation, score, behaviour (and ``mean``
over behaviours) and module: the full-sample rank, the median rank and the central ``level`` interval of the
resampled ranks, the probability of a rank ≤ k (``p_top_k``), and for the protection's own score/behaviour the
probability of being in the protected set (``p_protected``: :func:`.ranking.select_protected` on each resample,
fused groups included) and of the resampled protected set being exactly the full-sample one (``p_same_set``).

Agreement (:func:`comparison_table`): Spearman ρ (average ranks for ties) and the top-k overlap between any two
(formulation, score) rankings, per behaviour and for the mean.
"""

from __future__ import annotations

import itertools
from typing import Any, Iterable

import numpy as np
import polars as pl

from .formulation import FormulationStats
from .hooks import module_layer, module_type
from .ranking import SCORES, rank_modules, select_protected


def bootstrap_weights(n_groups: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n_groups) multinomial counts: each row draws n_groups traces with replacement."""
    if n_groups < 1:
        raise ValueError("bootstrap over traces: no traces")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_groups, size=(resamples, n_groups))
    w = np.zeros((resamples, n_groups))
    np.add.at(w, (np.arange(resamples)[:, None], idx), 1.0)
    return w


def ranks(values: np.ndarray) -> np.ndarray:
    """Ranks (1 = largest) along the last axis; ties keep index order; NaN values get NaN ranks (after all)."""
    v = np.asarray(values, dtype=np.float64)
    order = np.argsort(np.where(np.isnan(v), np.inf, -v), axis=-1, kind="stable")
    r = np.empty_like(v)
    np.put_along_axis(r, order, np.broadcast_to(np.arange(1, v.shape[-1] + 1, dtype=np.float64), v.shape), axis=-1)
    return np.where(np.isnan(v), np.nan, r)


def aggregate(values: np.ndarray, behaviours: tuple[str, ...], behaviour: str) -> np.ndarray:
    """(R, M, B) → (R, M): one behaviour, or ``mean`` = the mean over behaviours with a finite value."""
    if behaviour == "mean":
        with np.errstate(invalid="ignore"), _quiet():
            return np.nanmean(values, axis=2)
    return values[:, :, behaviours.index(behaviour)]


class _quiet:
    def __enter__(self):
        import warnings
        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        self._w.__exit__(*exc)


def _protected_set(order_values: np.ndarray, modules: list[str], n_params: dict[str, int], k: int | None,
                   weight_fraction: float | None) -> frozenset[str] | None:
    finite = np.flatnonzero(~np.isnan(order_values))
    if finite.size == 0:
        return None
    order = finite[np.argsort(-order_values[finite], kind="stable")]
    ranking = pl.DataFrame({"module": [modules[i] for i in order], "n_params": [n_params[modules[i]] for i in order]})
    kk = None if k is None else min(k, ranking.height)
    # the budget counts all decoder linear weights, as the protection does on the full ranking
    total = sum(n_params[m] for m in modules)
    return frozenset(select_protected(ranking, k=kk, weight_fraction=weight_fraction, total_params=total))


def stability_table(stats: dict[str, FormulationStats], *, resamples: int, seed: int = 0, level: float = 0.9,
                    k: int | None = None, weight_fraction: float | None = None, score: str = "attribution",
                    behaviour: str = "mean", scores: Iterable[str] = SCORES) -> pl.DataFrame:
    """One row per (formulation, score, behaviour or ``mean``, module); see the module docstring. ``k``: the top-k
    of ``p_top_k`` and, with ``weight_fraction`` unset, of the protection; with ``weight_fraction`` the protected
    set follows the budget and ``p_top_k`` uses ``k`` (default: the number of modules the full-sample protection
    took by rank). Every formulation uses the same resamples (the same trace counts)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    groups = {s.n_groups for s in stats.values()}
    if len(groups) != 1:
        raise ValueError(f"formulations were collected over different trace groups: {groups}")
    G = groups.pop()
    w = np.vstack([np.ones((1, G)), bootstrap_weights(G, resamples, seed)]) if resamples > 0 else np.ones((1, G))
    lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2
    rows = []
    for f, st in stats.items():
        vals = st.scores(w)
        n_params = st.n_params
        for sc in scores:
            for beh in ("mean", *st.behaviours):
                v = aggregate(vals[sc], st.behaviours, beh)           # (1 + R, M)
                if np.isnan(v[0]).all():
                    continue
                r = ranks(v)
                full, boot = r[0], r[1:]
                own = sc == score and beh == behaviour
                kk = k
                sets = None
                if own:
                    sets = [_protected_set(v[i], st.modules, n_params, k if weight_fraction is None else None,
                                           weight_fraction) for i in range(v.shape[0])]
                    if kk is None:
                        kk = len({m for m in sets[0] or ()})
                kk = kk or 1
                with _quiet():
                    med = np.nanmedian(boot, axis=0) if resamples > 0 else full
                    rlo = np.nanquantile(boot, lo_q, axis=0, method="lower") if resamples > 0 else full
                    rhi = np.nanquantile(boot, hi_q, axis=0, method="higher") if resamples > 0 else full
                    finite = (~np.isnan(boot)).sum(0)
                    ptop = np.where(finite > 0, np.nansum(boot <= kk, axis=0) / np.maximum(finite, 1), np.nan) \
                        if resamples > 0 else (full <= kk).astype(float)
                if own and resamples > 0:
                    got = [s for s in sets[1:] if s is not None]
                    pprot = {m: sum(m in s for s in got) / len(got) for m in st.modules} if got else {}
                    psame = sum(s == sets[0] for s in got) / len(got) if got else float("nan")
                else:
                    pprot, psame = {}, float("nan")
                for mi, m in enumerate(st.modules):
                    rows.append({"formulation": f, "score": sc, "behaviour": beh, "module": m,
                                 "layer": module_layer(m), "module_type": module_type(m), "n_params": int(n_params[m]),
                                 "value": float(v[0, mi]), "rank": float(full[mi]), "rank_median": float(med[mi]),
                                 "rank_lo": float(rlo[mi]), "rank_hi": float(rhi[mi]), "p_top_k": float(ptop[mi]),
                                 "p_protected": float(pprot.get(m, float("nan"))), "p_same_set": float(psame),
                                 "protected": bool(own and sets[0] is not None and m in sets[0]),
                                 "k": int(kk), "n_resamples": int(resamples), "level": float(level)})
    return pl.DataFrame(rows)


def spearman(a: Any, b: Any) -> float:
    """Spearman ρ with average ranks for ties (NaN pairs dropped); NaN with fewer than 2 pairs or no spread."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ok = ~(np.isnan(a) | np.isnan(b))
    a, b = a[ok], b[ok]
    if a.size < 2:
        return float("nan")
    ra, rb = _average_ranks(a), _average_ranks(b)
    sa, sb = ra.std(), rb.std()
    if sa == 0 or sb == 0:
        return float("nan")
    return float(((ra - ra.mean()) * (rb - rb.mean())).mean() / (sa * sb))


def _average_ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    r = np.empty(x.size)
    r[order] = np.arange(1, x.size + 1)
    for v in np.unique(x):
        tie = x == v
        if tie.sum() > 1:
            r[tie] = r[tie].mean()
    return r


def top_k_overlap(a: Any, b: Any, k: int) -> int:
    """|top-k of a ∩ top-k of b| (largest first, ties in index order, NaN last)."""
    ra, rb = ranks(np.asarray(a, dtype=np.float64)), ranks(np.asarray(b, dtype=np.float64))
    return int(np.sum((ra <= k) & (rb <= k)))


def comparison_table(tables: dict[str, Any], *, k: int, scores: Iterable[str] = SCORES) -> pl.DataFrame:
    """Agreement of every pair of (formulation, score) rankings: one row per (behaviour or ``mean``, pair), with
    ``spearman``, ``top_k_overlap`` and ``k``. ``tables``: formulation → scores table (``scores.parquet`` form)."""
    series: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    modules = None
    behaviours: list[str] = []
    for f, t in tables.items():
        df = t if isinstance(t, pl.DataFrame) else pl.from_arrow(t)
        behaviours = [b for b in dict.fromkeys(df["behaviour"].to_list())]
        for sc in scores:
            per = {}
            for beh in behaviours:
                sub = df.filter(pl.col("behaviour") == beh)
                modules = modules or sub["module"].to_list()
                if sub["module"].to_list() != modules:
                    raise ValueError("comparison: the score tables list different modules")
                per[beh] = sub[sc].cast(pl.Float64).fill_null(float("nan")).to_numpy()
            with _quiet():
                stacked = np.stack([per[b] for b in behaviours], axis=1)
                per["mean"] = np.nanmean(stacked, axis=1)
            series[(f, sc)] = per
    rows = []
    for (fa, sa), (fb, sb) in itertools.combinations(series, 2):
        for beh in ("mean", *behaviours):
            a, b = series[(fa, sa)][beh], series[(fb, sb)][beh]
            if np.isnan(a).all() or np.isnan(b).all():
                continue
            rows.append({"behaviour": beh, "a_formulation": fa, "a_score": sa, "b_formulation": fb, "b_score": sb,
                         "spearman": spearman(a, b), "top_k_overlap": top_k_overlap(a, b, k), "k": int(k)})
    return pl.DataFrame(rows)


def protection_record(stability: pl.DataFrame, formulation_scores: dict[str, Any], ignore: list[str], *,
                      formulation: str, score: str, behaviour: str, k: int | None,
                      weight_fraction: float | None) -> dict[str, Any]:
    """The stability of a protect spec's choice: per protected module the bootstrap probability of being protected
    (its fused group is protected with it, so the group's members share it) and of a top-k rank, the probability
    that the resampled protected set is exactly this one, and the set the other formulation(s) would protect with
    the same score, behaviour and k / budget."""
    own = stability.filter((pl.col("formulation") == formulation) & (pl.col("score") == score)
                           & (pl.col("behaviour") == behaviour))
    if own.height == 0:
        raise ValueError(f"stability table has no rows for {formulation}/{score}/{behaviour}")
    by = {r["module"]: r for r in own.iter_rows(named=True)}
    first = own.row(0, named=True)
    rec: dict[str, Any] = {
        "formulation": formulation, "score": score, "behaviour": behaviour, "n_resamples": first["n_resamples"],
        "k": first["k"], "level": first["level"], "p_same_set": first["p_same_set"],
        "modules": [{"module": m, "p_protected": by[m]["p_protected"], "p_top_k": by[m]["p_top_k"],
                     "rank": by[m]["rank"], "rank_median": by[m]["rank_median"],
                     "rank_interval": [by[m]["rank_lo"], by[m]["rank_hi"]]} for m in ignore if m in by],
        "other_formulations": {}}
    for f, t in formulation_scores.items():
        if f == formulation:
            continue
        ranking = rank_modules(t if isinstance(t, pl.DataFrame) else pl.from_arrow(t), score=score,
                               behaviour=behaviour)
        other = select_protected(ranking, k=k, weight_fraction=weight_fraction)
        rec["other_formulations"][f] = {"ignore": other, "same_groups": set(other) == set(ignore),
                                        "shared": [m for m in ignore if m in set(other)]}
    return rec
