"""Two formulations of difference of means + attribution patching, from per-trace sufficient statistics.

``project`` is the stage's own formulation (:mod:`.dom`, :mod:`.attribution`; docs/importance.md §3–4).
``reference`` follows the public scripts of "When Reasoning Meets Compression" (psunlpgroup/Compression-Effects,
``compute_u.py`` and ``compute_attpatching.py``; docs/importance.md §4b):

* negative set: per trace, the mean of a_m(t) over ALL its tokens (prompt + output); μ⁻ = mean of these over traces;
* positive set: per trace that has segments of c, the mean over the rows ``[ts − 5, te − 1)`` of each such segment
  (the 5 tokens before the segment, the segment without its last token; rows of several segments concatenated,
  an overlap counted twice), and the positive mean = the mean of these per-trace means over those traces;
* u = positive − negative, rescaled to the length of the overall mean activation ā_m (all tokens of all traces,
  pooled): u_ref = u · ‖ā_m‖ / ‖u‖;
* attribution: per segment, the next-token loss of the tokens ``[ts, te − 1)`` with the input cut at ``te − 1``, the
  gradient averaged over the same positions and dotted with u_ref, |·| per segment, averaged over the segments.

Both formulations are written as sums over traces, so one DoM forward and one attribution forward per trace give
everything, and a bootstrap over traces only re-weights the traces' statistics (:mod:`.stability`). For each trace
j (a "group"; all traces form one group for a point estimate), module m and behaviour b the collector keeps the
vectors P_bj (positive sums), N_j (negative sums) and, for ``reference``, A_j (sum over all tokens), with their
counts c_bj, n_j, L_j; with weights w_j (1 for the full sample, multinomial counts for a resample):

    u_b(w) = Σ_j w_j P_bj / Σ_j w_j c_bj − Σ_j w_j N_j / Σ_j w_j n_j

‖u‖² and u·ḡ_i (ḡ_i: segment i's mean gradient) are then quadratic / linear in w through the Gram matrices
P·P, P·N, N·N, A·A and the products P·ḡ_i, N·ḡ_i, which are all that is stored (memory: M·(B+2)·G² + S·M·2G
numbers; the per-trace vectors, (2B + 3)·G·Σd float64 numbers, live only while scoring).

Before summing, every activation is shifted by a per-module constant z (the first trace's mean): u does not change
(both means move by z) and the Gram expansion of ‖u‖² loses fewer digits to the common mean of the activations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import pyarrow as pa
import torch

from .behaviours import BEHAVIOURS
from .dom import NEGATIVE_SETS
from .hooks import ActivationRecorder, decoder_linear_modules, module_layer, module_type, module_weight_numel
from .traces import iter_traces
from ..progress import track

FORMULATIONS = ("project", "reference")
#: the reference's positive rows start this many tokens before each segment
REFERENCE_CONTEXT = 5
#: the columns of ``scores.parquet`` (both formulations)
SCORE_COLUMNS = ("behaviour", "module", "layer", "module_type", "n_params", "n_segments", "dom_norm", "dom_score",
                 "n_attr_segments", "attribution", "attribution_signed", "attribution_mean_abs")


@dataclass
class FormulationStats:
    """Sufficient statistics of one formulation over G groups (float64 numpy arrays)."""
    formulation: str
    modules: list[str]
    behaviours: tuple[str, ...]
    n_params: dict[str, int]
    PP: np.ndarray                 # (M, B, G, G)  P_bg · P_bh
    PN: np.ndarray                 # (M, B, G, G)  P_bg · N_h
    NN: np.ndarray                 # (M, G, G)
    c: np.ndarray                  # (B, G)        positive counts
    n: np.ndarray                  # (G,)          negative counts
    Q: np.ndarray                  # (M, G)        Σ ‖a‖² over the RMS positions
    nQ: np.ndarray                 # (G,)
    n_segments: np.ndarray         # (B,)          segments of each behaviour in the DoM (full sample)
    seg_b: np.ndarray              # (S,)          attribution segments: behaviour index
    seg_g: np.ndarray              # (S,)          group
    HP: np.ndarray                 # (S, M, G)     P_{b_i, g} · ḡ_i
    HN: np.ndarray                 # (S, M, G)     N_g · ḡ_i
    AA: np.ndarray | None = None   # (M, G, G)     reference: A_g · A_h
    L: np.ndarray | None = None    # (G,)          reference: tokens per group
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_groups(self) -> int:
        return int(self.n.shape[0])

    def scores(self, w: np.ndarray) -> dict[str, np.ndarray]:
        """Score arrays (R, M, B) for weights ``w`` (R, G): dom_norm, dom_score, attribution, attribution_signed,
        attribution_mean_abs (NaN where a behaviour has no segment under the weights)."""
        w = np.asarray(w, dtype=np.float64)
        if w.ndim != 2 or w.shape[1] != self.n_groups:
            raise ValueError(f"weights must have shape (R, {self.n_groups}), got {w.shape}")
        with np.errstate(divide="ignore", invalid="ignore"):
            cp = w @ self.c.T                                            # (R, B)
            cn = w @ self.n                                              # (R,)
            quad = lambda mat: np.einsum("rg,...gh,rh->r...", w, mat, w, optimize=True)  # noqa: E731
            uu = (quad(self.PP) / cp[:, None, :] ** 2 - 2 * quad(self.PN) / (cp[:, None, :] * cn[:, None, None])
                  + quad(self.NN)[:, :, None] / cn[:, None, None] ** 2)  # (R, M, B)
            norm = np.sqrt(np.clip(uu, 0, None))
            norm = np.where(cp[:, None, :] > 0, norm, np.nan)
            rms = np.sqrt((w @ self.Q.T) / (w @ self.nQ)[:, None])       # (R, M)
            dom_score = np.where(rms[:, :, None] > 0, norm / rms[:, :, None], np.nan)
            R, M, B = norm.shape
            signed = np.full((R, M, B), np.nan)
            mean_abs = np.full((R, M, B), np.nan)
            scale = None
            if self.formulation == "reference":
                scale = np.sqrt(np.clip(quad(self.AA), 0, None)) / (w @ self.L)[:, None]   # ‖ā‖ (R, M)
            for bi in range(B):
                sel = np.flatnonzero(self.seg_b == bi)
                if sel.size == 0:
                    continue
                ws = w[:, self.seg_g[sel]]                               # (R, S)
                den = ws.sum(1)                                          # (R,)
                udg = (np.einsum("rg,smg->rsm", w, self.HP[sel]) / cp[:, bi, None, None]
                       - np.einsum("rg,smg->rsm", w, self.HN[sel]) / cn[:, None, None])
                nb = norm[:, None, :, bi]                                # (R, 1, M)
                g = np.where(nb > 0, udg / nb, 0.0)
                if scale is not None:
                    g = g * scale[:, None, :]
                ok = den > 0
                signed[ok, :, bi] = (np.einsum("rs,rsm->rm", ws, g) / den[:, None])[ok]
                mean_abs[ok, :, bi] = (np.einsum("rs,rsm->rm", ws, np.abs(g)) / den[:, None])[ok]
        return {"dom_norm": norm, "dom_score": dom_score, "attribution": np.abs(signed),
                "attribution_signed": signed, "attribution_mean_abs": mean_abs}

    def table(self) -> pa.Table:
        """The full-sample scores in the columns and row order of ``scores.parquet`` (needs all groups weight 1)."""
        s = {k: v[0] for k, v in self.scores(np.ones((1, self.n_groups))).items()}
        n_attr = np.bincount(self.seg_b, minlength=len(self.behaviours)) if self.seg_b.size else \
            np.zeros(len(self.behaviours), dtype=int)
        rows = []
        for bi, b in enumerate(self.behaviours):
            has_u = self.n_segments[bi] > 0
            for mi, m in enumerate(self.modules):
                na = int(n_attr[bi]) if has_u else 0
                rows.append({"behaviour": b, "module": m, "layer": module_layer(m), "module_type": module_type(m),
                             "n_params": int(self.n_params.get(m, 0)), "n_segments": int(self.n_segments[bi]),
                             "dom_norm": float(s["dom_norm"][mi, bi]), "dom_score": float(s["dom_score"][mi, bi]),
                             "n_attr_segments": na,
                             "attribution": float(s["attribution"][mi, bi]) if na else float("nan"),
                             "attribution_signed": float(s["attribution_signed"][mi, bi]) if na else float("nan"),
                             "attribution_mean_abs": float(s["attribution_mean_abs"][mi, bi]) if na
                             else float("nan")})
        import polars as pl

        # through polars, as the project formulation's table (join_scores): the same column types in scores.parquet
        return pl.from_arrow(pa.Table.from_pylist(rows)).to_arrow()


def reference_rows(spans: Iterable[tuple[str, int, int]], behaviour: str) -> list[int]:
    """The reference's positive rows of one trace for ``behaviour``: ``[max(0, ts − 5), te − 1)`` of each of its
    segments, concatenated in segment order (duplicates kept: an overlap counts twice, as in the reference; the
    reference would wrap a negative start around, this clamps at 0)."""
    rows: list[int] = []
    for b, ts, te in spans:
        if b == behaviour:
            rows += range(max(0, ts - REFERENCE_CONTEXT), te - 1)
    return rows


class _Side:
    """Per-group vectors of one formulation while scoring: P (B, G, d), N (G, d), A (G, d) per module."""

    def __init__(self, dims: dict[str, int], n_beh: int, groups: int, reference: bool):
        f64 = torch.float64
        self.P = {m: torch.zeros(n_beh, groups, d, dtype=f64) for m, d in dims.items()}
        self.N = {m: torch.zeros(groups, d, dtype=f64) for m, d in dims.items()}
        self.A = {m: torch.zeros(groups, d, dtype=f64) for m, d in dims.items()} if reference else None
        self.Q = np.zeros((len(dims), groups))
        self.c = np.zeros((n_beh, groups))
        self.n = np.zeros(groups)
        self.nQ = np.zeros(groups)
        self.L = np.zeros(groups)
        self.n_segments = np.zeros(n_beh, dtype=np.int64)
        self.seg: list[tuple[int, int, np.ndarray, np.ndarray]] = []   # (b, g, HP (M, G), HN (M, G))


def collect_stats(model: torch.nn.Module, tokenizer: Any, generations: Any, spans: Any, *,
                  behaviours: Iterable[str] = BEHAVIOURS, negative: str = "tokens", max_tokens: int | None = None,
                  per_trace: bool = True, formulations: Iterable[str] = FORMULATIONS,
                  add_special_tokens: bool = False) -> dict[str, FormulationStats]:
    """One DoM forward and one attribution forward (with a backward per segment and formulation) per trace.

    ``per_trace``: one group per trace (what the bootstrap needs); else all traces in one group (a point estimate
    only, with memory independent of the number of traces). ``negative`` applies to ``project`` only (the reference
    has its own negative set)."""
    behaviours = tuple(behaviours)
    formulations = tuple(formulations)
    bad = [f for f in formulations if f not in FORMULATIONS]
    if bad or not formulations:
        raise ValueError(f"formulations must be a non-empty subset of {FORMULATIONS}, got {formulations}")
    if negative not in NEGATIVE_SETS:
        raise ValueError(f"negative must be one of {NEGATIVE_SETS}, got {negative!r}")
    bidx = {b: i for i, b in enumerate(behaviours)}
    mods = decoder_linear_modules(model)
    names = list(mods)
    traces = [t for t in iter_traces(generations, spans, tokenizer, add_special_tokens=add_special_tokens,
                                     max_tokens=max_tokens)]
    G = len(traces) if per_trace else 1
    dims = {m: int(getattr(mod, "out_features", 0) or mod.weight.shape[0]) for m, mod in mods.items()}
    sides = {f: _Side(dims, len(behaviours), G, f == "reference") for f in formulations}
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    z: dict[str, torch.Tensor] = {}
    model.eval()
    # --- pass 1: difference-of-means statistics -------------------------------------------------------------
    with torch.no_grad(), ActivationRecorder(model, mods) as rec:
        for j, tr in enumerate(track(traces, "importance statistics, pass 1 of 2", len(traces), unit="trace")):
            g = j if per_trace else 0
            n_tok, cs = len(tr.input_ids), tr.completion_start
            if n_tok == 0:
                continue
            rec.clear()
            model(input_ids=torch.tensor([tr.input_ids], device=device), use_cache=False)
            spans_in = [s for s in tr.spans if s[0] in bidx]
            ref_rows = {b: reference_rows(spans_in, b) for b in behaviours} if "reference" in sides else {}
            for mi, m in enumerate(names):
                a = rec.outputs[m][0].float().cpu().to(torch.float64)
                if m not in z:
                    z[m] = a.mean(0)
                a_s = a - z[m]
                if "project" in sides and n_tok > cs:
                    sd = sides["project"]
                    neg = a_s[cs:]
                    sd.N[m][g] += neg.sum(0) if negative == "tokens" else neg.mean(0)
                    sd.Q[mi, g] += float((a[cs:] * a[cs:]).sum())
                    for b, ts, te in spans_in:
                        sd.P[m][bidx[b], g] += a_s[ts:te].mean(0)
                if "reference" in sides:
                    sd = sides["reference"]
                    sd.N[m][g] += a_s.mean(0)
                    sd.A[m][g] += a.sum(0)
                    sd.Q[mi, g] += float((a * a).sum())
                    for b, rows in ref_rows.items():
                        if rows:
                            sd.P[m][bidx[b], g] += a_s[rows].mean(0)
            if "project" in sides and n_tok > cs:
                sd = sides["project"]
                sd.n[g] += (n_tok - cs) if negative == "tokens" else 1
                sd.nQ[g] += n_tok - cs
                for b, _, _ in spans_in:
                    sd.c[bidx[b], g] += 1
                    sd.n_segments[bidx[b]] += 1
            if "reference" in sides:
                sd = sides["reference"]
                sd.n[g] += 1
                sd.nQ[g] += n_tok
                sd.L[g] += n_tok
                for b, rows in ref_rows.items():
                    if rows:
                        sd.c[bidx[b], g] += 1
                for b, _, _ in spans_in:
                    sd.n_segments[bidx[b]] += 1
    # --- pass 2: attribution (one forward per trace, one backward per segment and formulation) --------------
    embed = model.get_input_embeddings()
    with ActivationRecorder(model, mods, keep_graph=True) as rec:
        for j, tr in enumerate(track(traces, "importance statistics, pass 2 of 2", len(traces), unit="trace")):
            g = j if per_trace else 0
            todo = []   # (formulation, behaviour index, loss positions [lo, hi))
            for b, ts, te in tr.spans:
                if b not in bidx or ts < 1:
                    continue
                if "project" in sides and sides["project"].c[bidx[b]].sum() > 0:
                    todo.append(("project", bidx[b], ts, te))
                if "reference" in sides and te - 1 > ts and sides["reference"].c[bidx[b]].sum() > 0:
                    todo.append(("reference", bidx[b], ts, te - 1))
            if not todo:
                continue
            end = max(hi for *_, hi in todo)
            ids = torch.tensor([tr.input_ids[:end]], device=device)
            rec.clear()
            with torch.enable_grad():
                emb = embed(ids).detach().to(dtype).requires_grad_(True)
                logits = model(inputs_embeds=emb, use_cache=False).logits[0].float()
                outs = [rec.outputs[m] for m in names]
                for k, (f, bi, lo, hi) in enumerate(todo):
                    # under the causal mask, the reference's input cut at te − 1 changes nothing at positions < te − 1
                    loss = torch.nn.functional.cross_entropy(logits[lo - 1:hi - 1], ids[0, lo:hi])
                    grads = torch.autograd.grad(loss, outs, retain_graph=k < len(todo) - 1, allow_unused=True)
                    sd = sides[f]
                    hp = np.zeros((len(names), G))
                    hn = np.zeros((len(names), G))
                    for mi, (m, gr) in enumerate(zip(names, grads)):
                        if gr is None:
                            continue
                        gbar = gr[0, lo:hi].to(torch.float64).mean(0).cpu()
                        hp[mi] = (sd.P[m][bi] @ gbar).numpy()
                        hn[mi] = (sd.N[m] @ gbar).numpy()
                    sd.seg.append((bi, g, hp, hn))
            del logits, outs, emb
            rec.clear()
    n_params = module_weight_numel(model)
    out = {}
    for f, sd in sides.items():
        PP = np.stack([torch.einsum("bgd,bhd->bgh", sd.P[m], sd.P[m]).numpy() for m in names])
        PN = np.stack([torch.einsum("bgd,hd->bgh", sd.P[m], sd.N[m]).numpy() for m in names])
        NN = np.stack([(sd.N[m] @ sd.N[m].T).numpy() for m in names])
        AA = np.stack([(sd.A[m] @ sd.A[m].T).numpy() for m in names]) if sd.A is not None else None
        S = len(sd.seg)
        out[f] = FormulationStats(
            formulation=f, modules=names, behaviours=behaviours, n_params=n_params, PP=PP, PN=PN, NN=NN,
            c=sd.c, n=sd.n, Q=sd.Q, nQ=sd.nQ, n_segments=sd.n_segments,
            seg_b=np.array([s[0] for s in sd.seg], dtype=np.int64), seg_g=np.array([s[1] for s in sd.seg], dtype=np.int64),
            HP=np.stack([s[2] for s in sd.seg]) if S else np.zeros((0, len(names), G)),
            HN=np.stack([s[3] for s in sd.seg]) if S else np.zeros((0, len(names), G)),
            AA=AA, L=sd.L if f == "reference" else None,
            info={"formulation": f, "n_traces": len(traces), "groups": G, "n_attr_segments": S,
                  "negative": negative if f == "project" else "per-trace mean over all tokens"})
        if not per_trace:
            out[f].info["vectors"] = _vectors(sd, names, behaviours, f)
    return out


def _vectors(sd: _Side, names: list[str], behaviours: tuple[str, ...], f: str) -> dict[str, dict[str, torch.Tensor]]:
    """u[behaviour][module] of a one-group collection (for ``reference``: rescaled to ‖ā‖, as the reference saves)."""
    out: dict[str, dict[str, torch.Tensor]] = {}
    for bi, b in enumerate(behaviours):
        if sd.c[bi, 0] <= 0:
            continue
        out[b] = {}
        for m in names:
            u = sd.P[m][bi, 0] / sd.c[bi, 0] - sd.N[m][0] / sd.n[0]
            if f == "reference":
                nu = torch.linalg.vector_norm(u)
                u = u * (torch.linalg.vector_norm(sd.A[m][0] / sd.L[0]) / nu) if nu > 0 else u
            out[b][m] = u
    return out
