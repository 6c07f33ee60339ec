"""Stage entry points: label a generations file, score a model's modules, emit the protected spec."""

from __future__ import annotations

import os
import resource
import time
from typing import Any, Iterable

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from .. import io
from .attribution import attribution_patching
from .behaviours import BEHAVIOURS, LABELS, SPAN_SCHEMA, judge_labeller, label_generations
from .dom import difference_of_means, save_vectors
from .protect import protected_spec, write_spec
from .ranking import SCORES, rank_modules

LABELLERS = ("rules", "judge")


def load_tokenizer(model_dir: str | os.PathLike) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir))


def label_file(generations_path: str | os.PathLike, tokenizer_dir: str | os.PathLike, out_path: str | os.PathLike,
               *, labeller: str = "rules", judge_generate: Any = None) -> dict[str, Any]:
    """Span table for a generations parquet; ``labeller='judge'`` needs ``judge_generate(prompts) -> texts``."""
    if labeller not in LABELLERS:
        raise ValueError(f"labeller must be one of {LABELLERS}, got {labeller!r}")
    if labeller == "judge" and judge_generate is None:
        raise ValueError("labeller 'judge' needs a judge_generate(prompts) -> texts callable")
    gens = pq.read_table(generations_path, columns=["id", "sample_idx", "prompt", "text"])
    tok = load_tokenizer(tokenizer_dir)
    spans = label_generations(gens, tok, labeller=judge_labeller(judge_generate) if labeller == "judge" else None)
    io.write_parquet(spans, out_path)
    counts = pl.from_arrow(spans).group_by("behaviour").len().sort("behaviour")
    return {"labeller": labeller, "n_traces": gens.num_rows, "n_segments": spans.num_rows,
            "segments_per_behaviour": dict(counts.iter_rows())}


def score_model(model_dir: str | os.PathLike, generations_path: str | os.PathLike, spans_path: str | os.PathLike,
                out_scores: str | os.PathLike, out_vectors: str | os.PathLike | None = None, *,
                behaviours: Iterable[str] = BEHAVIOURS, negative: str = "tokens", max_tokens: int | None = None,
                device: str = "cpu") -> dict[str, Any]:
    """DoM + attribution patching of ``model_dir`` (loaded in fp32) on the labelled traces; writes the scores
    table (one row per behaviour × module) and optionally the DoM vectors. Returns figures for meta.json."""
    from ..layercast import load_model

    behaviours = tuple(behaviours)
    unknown = [b for b in behaviours if b not in LABELS]
    if unknown:
        raise ValueError(f"unknown behaviours {unknown}; allowed: {', '.join(LABELS)}")
    gens = pq.read_table(generations_path, columns=["id", "sample_idx", "prompt", "text"])
    spans = pq.read_table(spans_path)
    tok = load_tokenizer(model_dir)
    model = load_model(model_dir, "fp32").to(device)
    t0 = time.perf_counter()
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
                        weight_fraction: float | None = None, source: dict[str, Any] | None = None) -> dict[str, Any]:
    """Rank the modules of a scores table and write the protected compression spec (JSON)."""
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    ranking = rank_modules(pl.read_parquet(scores_path), score=score, behaviour=behaviour)
    spec = protected_spec(ranking, recipe, k=k, weight_fraction=weight_fraction,
                          source={**(source or {}), "scores": str(scores_path), "score": score,
                                  "behaviour": behaviour})
    write_spec(spec, out_path)
    return spec


__all__ = ["label_file", "score_model", "protect_from_scores", "SPAN_SCHEMA"]
