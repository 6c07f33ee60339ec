"""Difference of means (DoM) of every decoder linear module's output, per reasoning behaviour.

For behaviour c and module m with output activation a_m(t) ∈ R^d at token position t:

    ā_m(s)   = (1/|s|) Σ_{t∈s} a_m(t)                          (span average over a segment's tokens)
    D+_c     = all segments labelled c (every trace)
    u_m^c    = (1/|D+_c|) Σ_{s∈D+_c} ā_m(s)  −  μ_m^-

The negative mean μ_m^- ("negative" argument):

* ``tokens`` (default): the mean of a_m(t) over ALL token positions of all traces, pooled (each token weighs
  the same; long traces weigh more);
* ``traces``: the slide's set form: mean over traces j of the trace's own span average ā_m(trace_j) (each trace
  weighs the same; this is what the public reference code computes).

"Token positions of a trace" are the completion tokens (the first token ending after the prompt through the last
token).

Scores per (c, m): ``dom_norm`` = ‖u_m^c‖₂ and ``dom_score`` = ‖u_m^c‖₂ / RMS_m with
RMS_m = sqrt( Σ_t ‖a_m(t)‖₂² / N ) over the same N token positions as μ^- (``tokens``): the length of u relative to
the typical output vector length, so modules of different widths and scales are comparable.

Every behaviour has its own accumulators (a dict per behaviour, created separately; nothing aliased).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

import pyarrow as pa
import torch

from .behaviours import BEHAVIOURS
from .hooks import ActivationRecorder, decoder_linear_modules, module_layer, module_type, module_weight_numel
from .traces import iter_traces

NEGATIVE_SETS = ("tokens", "traces")


class DomAccumulator:
    """Streaming sums (float64) for the difference of means; one independent accumulator per behaviour."""

    def __init__(self, module_names: Iterable[str], behaviours: Iterable[str] = BEHAVIOURS):
        self.modules = list(module_names)
        self.behaviours = tuple(behaviours)
        if len(set(self.behaviours)) != len(self.behaviours):
            raise ValueError(f"duplicate behaviours in {self.behaviours}")
        self.pos_sum: dict[str, dict[str, torch.Tensor]] = {b: {} for b in self.behaviours}
        self.pos_count: dict[str, int] = {b: 0 for b in self.behaviours}
        self.trace_sum: dict[str, torch.Tensor] = {}
        self.n_traces = 0
        self.tok_sum: dict[str, torch.Tensor] = {}
        self.tok_sq: dict[str, float] = {m: 0.0 for m in self.modules}
        self.n_tokens = 0

    @staticmethod
    def _add(store: dict[str, torch.Tensor], key: str, value: torch.Tensor) -> None:
        if key in store:
            store[key] += value
        else:
            store[key] = value.detach().to(torch.float64).clone()

    def add_trace(self, outputs: dict[str, torch.Tensor], spans: Iterable[tuple[str, int, int]],
                  neg_start: int, neg_end: int) -> None:
        """``outputs[m]``: (seq, d) activations of one trace; ``spans``: (behaviour, tok_start, tok_end);
        token positions [neg_start, neg_end) form the trace's contribution to the negative set."""
        spans = [s for s in spans if s[0] in self.pos_count]
        if neg_end <= neg_start:
            return
        for m in self.modules:
            a = outputs[m].to(torch.float64)
            neg = a[neg_start:neg_end]
            self._add(self.tok_sum, m, neg.sum(0))
            self._add(self.trace_sum, m, neg.mean(0))
            self.tok_sq[m] += float((neg * neg).sum())
            for b, ts, te in spans:
                self._add(self.pos_sum[b], m, a[ts:te].mean(0))
        for b, _, _ in spans:
            self.pos_count[b] += 1
        self.n_traces += 1
        self.n_tokens += neg_end - neg_start

    def negative_mean(self, module: str, negative: str) -> torch.Tensor:
        if negative == "tokens":
            return self.tok_sum[module] / self.n_tokens
        if negative == "traces":
            return self.trace_sum[module] / self.n_traces
        raise ValueError(f"negative must be one of {NEGATIVE_SETS}, got {negative!r}")

    def rms(self, module: str) -> float:
        return math.sqrt(self.tok_sq[module] / self.n_tokens) if self.n_tokens else float("nan")

    def vectors(self, negative: str = "tokens") -> dict[str, dict[str, torch.Tensor]]:
        """u[behaviour][module] (float64); behaviours without any segment are absent."""
        if negative not in NEGATIVE_SETS:
            raise ValueError(f"negative must be one of {NEGATIVE_SETS}, got {negative!r}")
        if self.n_traces == 0:
            raise ValueError("difference of means: no trace had any token position")
        return {b: {m: self.pos_sum[b][m] / self.pos_count[b] - self.negative_mean(m, negative) for m in self.modules}
                for b in self.behaviours if self.pos_count[b] > 0}


@dataclass
class DomResult:
    vectors: dict[str, dict[str, torch.Tensor]]      # u[behaviour][module]
    table: pa.Table                                  # one row per (behaviour, module)
    info: dict[str, Any] = field(default_factory=dict)


def dom_table(acc: DomAccumulator, vectors: dict[str, dict[str, torch.Tensor]],
              n_params: dict[str, int] | None = None) -> pa.Table:
    rows = []
    for b in acc.behaviours:
        for m in acc.modules:
            u = vectors.get(b, {}).get(m)
            norm = float(torch.linalg.vector_norm(u)) if u is not None else float("nan")
            rms = acc.rms(m)
            rows.append({"behaviour": b, "module": m, "layer": module_layer(m), "module_type": module_type(m),
                         "n_params": int((n_params or {}).get(m, 0)), "n_segments": acc.pos_count[b],
                         "dom_norm": norm, "dom_score": norm / rms if rms > 0 else float("nan")})
    return pa.Table.from_pylist(rows)


def difference_of_means(model: torch.nn.Module, tokenizer: Any, generations: Any, spans: Any, *,
                        behaviours: Iterable[str] = BEHAVIOURS, negative: str = "tokens", max_tokens: int | None = None, add_special_tokens: bool = False) -> DomResult:
    """DoM vectors and scores over the traces of ``generations`` labelled by ``spans`` (one forward per trace,
    batch size 1, no padding)."""
    if negative not in NEGATIVE_SETS:
        raise ValueError(f"negative must be one of {NEGATIVE_SETS}, got {negative!r}")
    modules = decoder_linear_modules(model)
    acc = DomAccumulator(modules, behaviours)
    device = next(model.parameters()).device
    model.eval()
    with torch.no_grad(), ActivationRecorder(model, modules) as rec:
        for tr in iter_traces(generations, spans, tokenizer, add_special_tokens=add_special_tokens,
                              max_tokens=max_tokens, progress="difference of means"):
            if not tr.input_ids:
                continue
            rec.clear()
            model(input_ids=torch.tensor([tr.input_ids], device=device), use_cache=False)
            outs = {m: o[0].float().cpu() for m, o in rec.outputs.items()}
            acc.add_trace(outs, tr.spans, tr.completion_start, len(tr.input_ids))
    vecs = acc.vectors(negative)
    info = {"negative": negative, "n_traces": acc.n_traces,
            "n_tokens": acc.n_tokens, "n_segments": dict(acc.pos_count)}
    return DomResult(vecs, dom_table(acc, vecs, module_weight_numel(model)), info)


def unit(u: torch.Tensor) -> torch.Tensor:
    """u / ‖u‖₂, and the zero vector for u = 0 (a module whose output never differs scores 0)."""
    n = torch.linalg.vector_norm(u)
    return u / n if n > 0 else torch.zeros_like(u)


def save_vectors(vectors: dict[str, dict[str, torch.Tensor]], path: Any) -> None:
    """DoM vectors as safetensors (float32), keys ``"<behaviour>|<module>"``, written atomically."""
    from safetensors.torch import save_file

    from ..io import atomic_path

    flat = {f"{b}|{m}": v.to(torch.float32).contiguous() for b, mods in vectors.items() for m, v in mods.items()}
    with atomic_path(path, ".safetensors") as tmp:
        save_file(flat, str(tmp))


def load_vectors(path: Any) -> dict[str, dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    out: dict[str, dict[str, torch.Tensor]] = {}
    for key, v in load_file(str(path)).items():
        b, m = key.split("|", 1)
        out.setdefault(b, {})[m] = v
    return out
