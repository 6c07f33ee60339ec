"""Stage entry points: label a generations file, score a model's modules, emit the protected spec."""

from __future__ import annotations

import os
import resource
import time
from typing import Any, Iterable

import numpy as np
import polars as pl
import pyarrow as pa

from .. import io
from .attribution import attribution_patching
from .behaviours import BEHAVIOURS, LABELS, SPAN_SCHEMA, judge_labeller, label_generations
from .dom import difference_of_means, save_vectors
from .formulation import FORMULATIONS, collect_stats
from .protect import protected_spec, write_spec
from .ranking import SCORES, rank_modules
from .stability import comparison_table, protection_record, stability_table

LABELLERS = ("rules", "judge", "llm")


def load_tokenizer(model_dir: str | os.PathLike) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir))


def label_file(generations_path: str | os.PathLike, tokenizer_dir: str | os.PathLike, out_path: str | os.PathLike,
               *, labeller: str = "rules", judge_generate: Any = None, judge: Any = None) -> dict[str, Any]:
    """Span table for a generations parquet; ``labeller='judge'`` needs ``judge_generate(prompts) -> texts``,
    ``labeller='llm'`` an :class:`lrmrepro.importance.llm_judge.LlmJudge` (``judge``): every trace's segments are
    labelled through its endpoint (concurrently, cached), and the figures include its request counts, provenance
    and agreement with the rule labeller per behaviour."""
    from .behaviours import reasoning_region, rule_label, split_segments

    if labeller not in LABELLERS:
        raise ValueError(f"labeller must be one of {LABELLERS}, got {labeller!r}")
    if labeller == "judge" and judge_generate is None:
        raise ValueError("labeller 'judge' needs a judge_generate(prompts) -> texts callable")
    if labeller == "llm" and judge is None:
        raise ValueError("labeller 'llm' needs an LlmJudge (importance.judge)")
    gens = io.read_arrow(generations_path, columns=["id", "sample_idx", "prompt", "text"])
    tok = load_tokenizer(tokenizer_dir)
    extra: dict[str, Any] = {}
    if labeller == "llm":
        from .llm_judge import agreement

        segments = [[s.text for s in split_segments(t, *reasoning_region(t))] for t in gens.column("text").to_pylist()]
        labels = judge.label_traces(segments)
        pending = iter(labels)
        spans = label_generations(gens, tok, labeller=lambda texts: next(pending))
        rules = [rule_label(s, first=i == 0) for trace in segments for i, s in enumerate(trace)]
        extra = {"judge": judge.config.provenance(), "judge_stats": dict(judge.stats),
                 "agreement_with_rules": agreement([x for t in labels for x in t], rules, BEHAVIOURS)}
    else:
        spans = label_generations(gens, tok, labeller=judge_labeller(judge_generate) if labeller == "judge" else None)
    io.write_parquet(spans, out_path)
    counts = pl.from_arrow(spans).group_by("behaviour").len().sort("behaviour")
    return {"labeller": labeller, "n_traces": gens.num_rows, "n_segments": spans.num_rows,
            "segments_per_behaviour": dict(counts.iter_rows()), **extra}


def score_model(model_dir: str | os.PathLike, generations_path: str | os.PathLike, spans_path: str | os.PathLike,
                out_scores: str | os.PathLike, out_vectors: str | os.PathLike | None = None, *,
                behaviours: Iterable[str] = BEHAVIOURS, negative: str = "tokens", max_tokens: int | None = None,
                device: str = "cpu", formulation: str = "project") -> dict[str, Any]:
    """DoM + attribution patching of ``model_dir`` (loaded in fp32) on the labelled traces; writes the scores
    table (one row per behaviour × module) and optionally the DoM vectors. Returns figures for meta.json.
    ``formulation``: ``project`` (:mod:`.dom` + :mod:`.attribution`) or ``reference`` (the public scripts' choices,
    :mod:`.formulation`; same columns; ``negative`` does not apply)."""
    from ..layercast import load_model

    behaviours = tuple(behaviours)
    unknown = [b for b in behaviours if b not in LABELS]
    if unknown:
        raise ValueError(f"unknown behaviours {unknown}; allowed: {', '.join(LABELS)}")
    if formulation not in FORMULATIONS:
        raise ValueError(f"formulation must be one of {FORMULATIONS}, got {formulation!r}")
    gens = io.read_arrow(generations_path, columns=["id", "sample_idx", "prompt", "text"])
    spans = io.read_arrow(spans_path)
    tok = load_tokenizer(model_dir)
    model = load_model(model_dir, "fp32").to(device)
    t0 = time.perf_counter()
    if formulation == "reference":
        st = collect_stats(model, tok, gens, spans, behaviours=behaviours, max_tokens=max_tokens, per_trace=False,
                           formulations=("reference",))["reference"]
        table = st.table()
        io.write_parquet(table, out_scores)
        if out_vectors is not None:
            save_vectors(st.info.pop("vectors"), out_vectors)
        return {"formulation": formulation, "dom": {k: v for k, v in st.info.items() if k != "vectors"},
                "seconds": time.perf_counter() - t0,
                "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                "n_modules": len(st.modules)}
    dom = difference_of_means(model, tok, gens, spans, behaviours=behaviours, negative=negative,
                              max_tokens=max_tokens)
    t1 = time.perf_counter()
    attr = attribution_patching(model, tok, gens, spans, dom.vectors, behaviours=behaviours, max_tokens=max_tokens)
    t2 = time.perf_counter()
    table = join_scores(dom.table, attr)
    io.write_parquet(table, out_scores)
    if out_vectors is not None:
        save_vectors(dom.vectors, out_vectors)
    return {"dom": dom.info, "dom_seconds": t1 - t0, "attribution_seconds": t2 - t1,
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "n_modules": len({r for r in table.column("module").to_pylist()})}


def join_scores(dom_table: pa.Table, attr_table: pa.Table) -> pa.Table:
    d = pl.from_arrow(dom_table)
    a = pl.from_arrow(attr_table).select("behaviour", "module", "n_attr_segments", "attribution",
                                         "attribution_signed", "attribution_mean_abs")
    out = d.join(a, on=["behaviour", "module"], how="left", maintain_order="left")
    return out.to_arrow()


def protect_from_scores(scores_path: str | os.PathLike, out_path: str | os.PathLike, *, recipe: str,
                        score: str = "attribution", behaviour: str = "mean", k: int | None = None,
                        weight_fraction: float | None = None, source: dict[str, Any] | None = None,
                        stability_path: str | os.PathLike | None = None,
                        formulations_path: str | os.PathLike | None = None,
                        formulation: str = "project") -> dict[str, Any]:
    """Rank the modules of a scores table and write the protected compression spec (JSON).

    With ``stability_path`` (``stability.parquet`` of the same scores) and ``formulations_path``
    (``formulations.parquet``) the spec gains a top-level ``stability`` record (:func:`.stability.protection_record`:
    bootstrap probabilities of the chosen modules, and what the other formulation would protect); the other keys
    are unchanged."""
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    ranking = rank_modules(io.read_parquet(scores_path), score=score, behaviour=behaviour)
    spec = protected_spec(ranking, recipe, k=k, weight_fraction=weight_fraction,
                          source={**(source or {}), "scores": str(scores_path), "score": score,
                                  "behaviour": behaviour})
    if stability_path is not None:
        forms = io.read_parquet(formulations_path) if formulations_path is not None else None
        tables = ({f: forms.filter(pl.col("formulation") == f).drop("formulation")
                   for f in forms["formulation"].unique(maintain_order=True).to_list()} if forms is not None else {})
        spec["stability"] = protection_record(io.read_parquet(stability_path), tables, spec["ignore"],
                                              formulation=formulation, score=score, behaviour=behaviour, k=k,
                                              weight_fraction=weight_fraction)
    write_spec(spec, out_path)
    return spec


#: top-k of the stability statistics when the study protects nothing (no importance.protect)
DEFAULT_STABILITY_K = 3


def stability_file(model_dir: str | os.PathLike, generations_path: str | os.PathLike, spans_path: str | os.PathLike,
                   scores_path: str | os.PathLike, out_stability: str | os.PathLike,
                   out_formulations: str | os.PathLike, out_comparison: str | os.PathLike, *,
                   behaviours: Iterable[str] = BEHAVIOURS, negative: str = "tokens", max_tokens: int | None = None,
                   formulation: str = "project", score: str = "attribution", behaviour: str = "mean",
                   k: int | None = None, weight_fraction: float | None = None, resamples: int = 1000, seed: int = 0,
                   level: float = 0.9, device: str = "cpu") -> dict[str, Any]:
    """Both formulations' scores from per-trace statistics (``formulations.parquet``, a ``formulation`` column
    before the ``scores.parquet`` columns), the bootstrap over traces (``stability.parquet``) and the agreement
    of the rankings (``comparison.parquet``). The configured ``formulation``'s scores must equal ``scores_path``
    (the importance_scores job's): a mismatch is an error."""
    from ..layercast import load_model

    if k is None and weight_fraction is None:
        k = DEFAULT_STABILITY_K
    gens = io.read_arrow(generations_path, columns=["id", "sample_idx", "prompt", "text"])
    spans = io.read_arrow(spans_path)
    tok = load_tokenizer(model_dir)
    model = load_model(model_dir, "fp32").to(device)
    t0 = time.perf_counter()
    stats = collect_stats(model, tok, gens, spans, behaviours=behaviours, negative=negative, max_tokens=max_tokens,
                          per_trace=True)
    t1 = time.perf_counter()
    tables = {f: pl.from_arrow(st.table()) for f, st in stats.items()}
    check_same_scores(tables[formulation], io.read_parquet(scores_path))
    forms = pl.concat([t.select(pl.lit(f).alias("formulation"), pl.all()) for f, t in tables.items()])
    io.write_parquet(forms.to_arrow(), out_formulations)
    stab = stability_table(stats, resamples=resamples, seed=seed, level=level, k=k, weight_fraction=weight_fraction,
                           score=score, behaviour=behaviour)
    io.write_parquet(stab.to_arrow(), out_stability)
    own = stab.filter((pl.col("formulation") == formulation) & (pl.col("score") == score)
                      & (pl.col("behaviour") == behaviour))
    kk = int(own["k"][0]) if own.height else int(k or DEFAULT_STABILITY_K)
    io.write_parquet(comparison_table(tables, k=kk).to_arrow(), out_comparison)
    return {"collect_seconds": t1 - t0, "bootstrap_seconds": time.perf_counter() - t1, "k": kk,
            "n_traces": stats[formulation].n_groups, "n_attr_segments": {f: st.info["n_attr_segments"]
                                                                         for f, st in stats.items()},
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def check_same_scores(mine: pl.DataFrame, theirs: pl.DataFrame, rel: float = 1e-6) -> None:
    """The stability job's full-sample scores of the configured formulation against ``scores.parquet``."""
    if mine.select("behaviour", "module").rows() != theirs.select("behaviour", "module").rows():
        raise ValueError("stability: the per-trace statistics cover other (behaviour, module) rows than scores.parquet")
    for col in ("dom_norm", "dom_score", "attribution", "attribution_mean_abs"):
        a = mine[col].fill_null(float("nan")).to_numpy()
        b = theirs[col].fill_null(float("nan")).to_numpy()
        scale = max(float(np.nanmax(np.abs(b))) if np.isfinite(b).any() else 0.0, 1e-300)
        same_nan = (np.isnan(a) == np.isnan(b)).all()
        diff = float(np.nanmax(np.abs(a - b))) / scale if np.isfinite(a - b).any() else 0.0
        if not same_nan or diff > rel:
            raise ValueError(f"stability: {col} from the per-trace statistics differs from scores.parquet "
                             f"(max relative difference {diff:.2e}, NaN pattern equal: {same_nan})")


__all__ = ["label_file", "score_model", "protect_from_scores", "stability_file", "SPAN_SCHEMA"]
