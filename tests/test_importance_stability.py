"""The two importance formulations (project, reference) and the rank stability (bootstrap over traces, agreement)."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch

from lrmrepro.importance import behaviours as beh
from lrmrepro.importance.attribution import attribution_patching
from lrmrepro.importance.dom import difference_of_means
from lrmrepro.importance.formulation import FormulationStats, collect_stats, reference_rows
from lrmrepro.importance.hooks import ActivationRecorder, decoder_linear_modules
from lrmrepro.importance.run import join_scores
from lrmrepro.importance.stability import (bootstrap_weights, comparison_table, ranks, spearman, stability_table,
                                           top_k_overlap)
from test_importance import PLANTED, generations, planted_model, tiny_qwen2, tokenizer  # noqa: F401 (fixtures)

torch.set_num_threads(1)
SCORE_COLS = ("dom_norm", "dom_score", "attribution", "attribution_signed", "attribution_mean_abs")


def _close(a: pl.DataFrame, b: pl.DataFrame, rel: float = 1e-9) -> None:
    assert a.columns == b.columns
    for c in a.columns:
        x, y = a[c].to_numpy(), b[c].to_numpy()
        if x.dtype.kind == "f":
            assert np.array_equal(np.isnan(x), np.isnan(y)), c
            scale = np.nanmax(np.abs(y)) if np.isfinite(y).any() else 1.0
            assert np.nanmax(np.abs(x - y)) <= rel * max(scale, 1e-300), c
        else:
            assert (x == y).all(), c


@pytest.mark.parametrize("negative", ["tokens", "traces"])
def test_project_statistics_reproduce_dom_and_attribution(tokenizer, generations, negative):  # noqa: F811
    """The per-trace statistics (per trace and pooled) give the project formulation's scores.parquet."""
    model = tiny_qwen2(len(tokenizer), seed=3)
    spans = beh.label_generations(generations, tokenizer)
    dom = difference_of_means(model, tokenizer, generations, spans, negative=negative)
    want = pl.from_arrow(join_scores(dom.table, attribution_patching(model, tokenizer, generations, spans, dom.vectors)))
    for per_trace in (True, False):
        st = collect_stats(model, tokenizer, generations, spans, negative=negative, per_trace=per_trace,
                           formulations=("project",))["project"]
        _close(pl.from_arrow(st.table()), want, rel=1e-9)
    torch.testing.assert_close(st.info["vectors"]["backtracking"][PLANTED], dom.vectors["backtracking"][PLANTED])


def test_reference_formulation_matches_hand_computation(tokenizer, generations):  # noqa: F811
    """The public scripts' formulas recomputed by hand for one module and behaviour: negative = mean over traces of
    the mean over all tokens; positive = mean over traces with the behaviour of the mean over rows [ts−5, te−1);
    u rescaled to ‖overall mean‖; attribution = mean over segments of |u · mean grad| with the input cut at te−1 and
    the transformers label loss on [ts, te−1)."""
    model = tiny_qwen2(len(tokenizer), seed=5)
    spans = beh.label_generations(generations, tokenizer)
    name, b = "model.layers.0.mlp.gate_proj", "backtracking"
    mod = {name: dict(model.named_modules())[name]}
    sp = pl.from_arrow(spans)
    neg, pos, allacts, segs = [], [], [], []
    for g in generations:
        enc = beh.encode_trace(tokenizer, g["prompt"], g["text"])
        ids = torch.tensor([enc["input_ids"]])
        with torch.no_grad(), ActivationRecorder(model, mod) as rec:
            model(input_ids=ids)
        a = rec.outputs[name][0].double()
        neg.append(a.mean(0))
        allacts.append(a)
        mine = sp.filter((pl.col("id") == g["id"]) & (pl.col("behaviour") == b)).sort("segment_idx")
        rows = []
        for r in mine.iter_rows(named=True):
            rows += list(range(r["tok_start"] - 5, r["tok_end"] - 1))
            segs.append((ids, r["tok_start"], r["tok_end"]))
        if rows:
            pos.append(a[rows].mean(0))
    assert len(pos) == 2 and len(segs) == 2
    u = torch.stack(pos).mean(0) - torch.stack(neg).mean(0)
    abar = torch.cat(allacts).mean(0)
    u_ref = u * abar.norm() / u.norm()
    vals = []
    for ids, ts, te in segs:
        cut = ids[:, :te - 1]
        labels = cut.clone()
        labels[0, :ts] = -100
        with ActivationRecorder(model, mod, keep_graph=True) as rec:
            emb = model.get_input_embeddings()(cut).detach().requires_grad_(True)
            loss = model(inputs_embeds=emb, labels=labels).loss
            (grad,) = torch.autograd.grad(loss, [rec.outputs[name]])
        vals.append(float(grad[0, ts:te - 1].double().mean(0) @ u_ref))
    st = collect_stats(model, tokenizer, generations, spans, per_trace=False, formulations=("reference",))["reference"]
    t = pl.from_arrow(st.table())
    row = t.filter((pl.col("behaviour") == b) & (pl.col("module") == name)).row(0, named=True)
    assert row["dom_norm"] == pytest.approx(float(u.norm()), rel=1e-9)
    assert row["n_attr_segments"] == 2
    assert row["attribution_mean_abs"] == pytest.approx(np.mean(np.abs(vals)), rel=1e-4)
    assert row["attribution"] == pytest.approx(abs(np.mean(vals)), rel=1e-4)
    torch.testing.assert_close(st.info["vectors"][b][name], u_ref)
    # the per-trace collection gives the same full-sample scores
    per = collect_stats(model, tokenizer, generations, spans, formulations=("reference",))["reference"]
    _close(pl.from_arrow(per.table()), t, rel=1e-9)
    assert reference_rows([("b", 7, 10), ("x", 1, 3), ("b", 2, 4)], "b") == [2, 3, 4, 5, 6, 7, 8, 0, 1, 2]


def test_planted_mean_shift_ranks_first_under_both_formulations(tokenizer, generations):  # noqa: F811
    """A module whose output moves by a large constant on the backtracking segments (and the 5 tokens before
    them) has the largest DoM under both formulations; a module with the only strong gradient path has the largest
    attribution under both."""
    from lrmrepro.importance.traces import iter_traces

    model = tiny_qwen2(len(tokenizer), seed=2)
    spans = beh.label_generations(generations, tokenizer)
    segs = {tuple(t.input_ids): [s for s in t.spans if s[0] == "backtracking"]
            for t in iter_traces(generations, spans, tokenizer)}
    name = "model.layers.1.self_attn.v_proj"
    state: dict = {}

    def pre(module, args, kwargs):
        ids = kwargs.get("input_ids")
        state["ids"] = tuple(ids[0].tolist()) if ids is not None else None

    def shift(module, inputs, output):
        out = output.clone()
        for _, ts, te in segs.get(state.get("ids"), []):
            out[0, max(0, ts - 5):te] += 50.0
        return out

    handles = [model.register_forward_pre_hook(pre, with_kwargs=True),
               dict(model.named_modules())[name].register_forward_hook(shift)]
    try:
        st = collect_stats(model, tokenizer, generations, spans)
    finally:
        for h in handles:
            h.remove()
    for f, s in st.items():
        t = pl.from_arrow(s.table()).filter(pl.col("behaviour") == "backtracking")
        for col in ("dom_score", "dom_norm"):
            top = t.sort(col, descending=True)
            assert top["module"][0] == name, (f, col)
            assert top[col][0] > 2 * top[col][1], (f, col)
    # the planted gradient path (test_importance.planted_model): under project (unit ũ) layer 1's up_proj ranks
    # first by far; the reference's u has length ‖ā_m‖, which is ∝ the gain for the amplified gate and the down
    # projection, so the gain cancels there: the three layer-1 MLP modules lead and every cut path scores exactly 0
    model = planted_model(len(tokenizer))
    for f, s in collect_stats(model, tokenizer, generations, spans, per_trace=False).items():
        t = pl.from_arrow(s.table())
        for b in ("backtracking", "example_testing"):
            for col in ("attribution", "attribution_mean_abs"):
                top = t.filter(pl.col("behaviour") == b).sort(col, descending=True)
                if f == "project":
                    assert top["module"][0] == PLANTED, (f, b, col)
                    assert top[col][0] > 10 * top[col][1], (f, b, col)
                assert set(top["module"].head(3)) == {f"model.layers.1.mlp.{p}" for p in ("gate_proj", "up_proj",
                                                                                             "down_proj")}, (f, b)
                assert top[col][3:].abs().max() == 0.0, (f, b, col)


def _synthetic_stats(means: np.ndarray, noise: float, n_traces: int, seed: int = 0) -> FormulationStats:
    """Constructed statistics: module m's positive sum per trace = means[m] + noise · N(0, 1) in d = 4 dimensions
    (one segment per trace), negative = 0; its dom_norm is ≈ ‖means[m]‖."""
    rng = np.random.default_rng(seed)
    M, d = len(means), 4
    P = means[:, None, None, :] + noise * rng.standard_normal((M, 1, n_traces, d))      # (M, B=1, G, d)
    N = np.zeros((M, n_traces, d))
    mods = [f"model.layers.{i}.mlp.down_proj" for i in range(M)]
    return FormulationStats(
        formulation="project", modules=mods, behaviours=("backtracking",), n_params={m: 10 for m in mods},
        PP=np.einsum("mbgd,mbhd->mbgh", P, P), PN=np.einsum("mbgd,mhd->mbgh", P, N), NN=np.einsum("mgd,mhd->mgh", N, N),
        c=np.ones((1, n_traces)), n=np.ones(n_traces), Q=np.ones((M, n_traces)), nQ=np.ones(n_traces),
        n_segments=np.array([n_traces]), seg_b=np.zeros(0, dtype=np.int64), seg_g=np.zeros(0, dtype=np.int64),
        HP=np.zeros((0, M, n_traces)), HN=np.zeros((0, M, n_traces)))


def test_bootstrap_far_ahead_module_is_certain_and_ties_are_wide():
    means = np.zeros((6, 4))
    means[0] = [20, 0, 0, 0]                       # far ahead
    means[1:, 0] = 1.0                             # five exchangeable modules: ties in expectation
    st = _synthetic_stats(means, noise=1.0, n_traces=40)
    kw = dict(resamples=300, seed=7, level=0.9, k=1, score="dom_norm", behaviour="backtracking",
              scores=("dom_norm",))
    tab = stability_table({"project": st}, **kw)
    again = stability_table({"project": st}, **kw)
    assert tab.equals(again)                                        # deterministic with a seed
    other = stability_table({"project": st}, **{**kw, "seed": 8})
    assert not other.equals(tab)
    t = tab.filter(pl.col("behaviour") == "backtracking").sort("module")
    lead = t.row(0, named=True)
    assert lead["rank"] == 1 and lead["p_top_k"] == 1.0 and lead["rank_lo"] == lead["rank_hi"] == 1
    assert lead["p_protected"] == 1.0 and lead["protected"] and lead["p_same_set"] == 1.0
    rest = t.slice(1)
    assert (rest["rank_hi"] - rest["rank_lo"]).min() >= 2           # ties: wide intervals
    assert rest["p_top_k"].max() == 0.0 and rest["p_protected"].max() == 0.0
    w = bootstrap_weights(40, 300, 7)
    assert w.shape == (300, 40) and (w.sum(1) == 40).all()
    # full-sample weights reproduce the table
    full = st.scores(np.ones((1, 40)))["dom_norm"][0, :, 0]
    assert t["value"].to_numpy() == pytest.approx(full)


def test_spearman_and_overlap_on_constructed_rankings():
    a = np.array([5.0, 4, 3, 2, 1])
    assert spearman(a, a) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    # ties get average ranks: b's ranks 1, 2.5, 2.5, 4, 5 against 1..5
    b = np.array([1.0, 2, 2, 4, 5])
    r = np.array([1, 2.5, 2.5, 4, 5])
    expect = np.corrcoef(r, np.arange(1, 6))[0, 1]
    assert spearman(b, np.arange(1, 6)) == pytest.approx(expect)
    assert np.isnan(spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
    assert top_k_overlap(a, a, 2) == 2
    assert top_k_overlap(a, -a, 2) == 0
    assert top_k_overlap([3.0, 2, 1, 0], [3.0, 0, 2, 1], 2) == 1
    assert ranks(np.array([[1.0, np.nan, 3.0, 3.0]])).tolist()[0][0] == 3.0
    r2 = ranks(np.array([1.0, np.nan, 3.0, 3.0]))
    assert r2[2] == 1 and r2[3] == 2 and np.isnan(r2[1])               # ties keep module order
    rows = [{"behaviour": bb, "module": f"model.layers.{i}.mlp.up_proj", "layer": i, "module_type": "up_proj",
             "n_params": 1, "n_segments": 1, "dom_norm": v, "dom_score": v, "n_attr_segments": 1, "attribution": v,
             "attribution_signed": v, "attribution_mean_abs": -v} for bb in ("backtracking",) for i, v in enumerate(a)]
    cmp_ = comparison_table({"project": pl.DataFrame(rows), "reference": pl.DataFrame(rows)}, k=2)
    same = cmp_.filter((pl.col("a_score") == "attribution") & (pl.col("b_score") == "attribution")
                       & (pl.col("behaviour") == "mean"))
    assert same["spearman"][0] == pytest.approx(1.0) and same["top_k_overlap"][0] == 2
    flip = cmp_.filter((pl.col("a_formulation") == "project") & (pl.col("a_score") == "attribution")
                       & (pl.col("b_formulation") == "project") & (pl.col("b_score") == "attribution_mean_abs"))
    assert flip["spearman"].to_list() == pytest.approx([-1.0, -1.0])


def test_stage_reference_scores_stability_and_spec(tokenizer, generations, tmp_path):  # noqa: F811
    import pyarrow as pa

    from lrmrepro import io
    from lrmrepro.figures.importance import rank_stability_figure, stability_markdown
    from lrmrepro.importance.run import label_file, protect_from_scores, score_model, stability_file

    model_dir = tmp_path / "model"
    tiny_qwen2(len(tokenizer)).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    io.write_parquet(pa.Table.from_pylist(generations), tmp_path / "generations.parquet")
    label_file(tmp_path / "generations.parquet", model_dir, tmp_path / "spans.parquet")
    files = {}
    for f in ("project", "reference"):
        score_model(model_dir, tmp_path / "generations.parquet", tmp_path / "spans.parquet", tmp_path / f"{f}.parquet",
                    tmp_path / f"{f}.safetensors", formulation=f)
        files[f] = pl.read_parquet(tmp_path / f"{f}.parquet")
    assert files["project"].schema == files["reference"].schema
    out = {n: tmp_path / f"{n}.parquet" for n in ("stability", "formulations", "comparison")}
    info = stability_file(model_dir, tmp_path / "generations.parquet", tmp_path / "spans.parquet",
                          tmp_path / "project.parquet", out["stability"], out["formulations"], out["comparison"],
                          k=2, resamples=30)
    assert info["k"] == 2
    forms = pl.read_parquet(out["formulations"])
    # the stability job scores both formulations on one forward per trace (a longer prefix: float32 rounding)
    _close(forms.filter(pl.col("formulation") == "reference").drop("formulation"), files["reference"], rel=1e-6)
    with pytest.raises(ValueError, match="differs from scores.parquet"):
        stability_file(model_dir, tmp_path / "generations.parquet", tmp_path / "spans.parquet",
                       tmp_path / "reference.parquet", out["stability"], out["formulations"], out["comparison"],
                       k=2, resamples=30)
    # importance.formulation: reference: the job checks against the reference scores.parquet
    stability_file(model_dir, tmp_path / "generations.parquet", tmp_path / "spans.parquet",
                   tmp_path / "reference.parquet", tmp_path / "s2.parquet", tmp_path / "f2.parquet",
                   tmp_path / "c2.parquet", formulation="reference", k=2, resamples=10)
    s2 = pl.read_parquet(tmp_path / "s2.parquet")
    ref_spec = protect_from_scores(tmp_path / "reference.parquet", tmp_path / "r.json", recipe="gptq_w4a16", k=2)
    assert set(s2.filter((pl.col("formulation") == "reference") & pl.col("protected"))["module"]) == \
        set(ref_spec["ignore"])
    plain = protect_from_scores(tmp_path / "project.parquet", tmp_path / "plain.json", recipe="gptq_w4a16", k=2)
    spec = protect_from_scores(tmp_path / "project.parquet", tmp_path / "spec.json", recipe="gptq_w4a16", k=2,
                               stability_path=out["stability"], formulations_path=out["formulations"])
    assert {k: v for k, v in spec.items() if k != "stability"} == plain
    st = json.loads((tmp_path / "spec.json").read_text())["stability"]
    assert [m["module"] for m in st["modules"]] == spec["ignore"]
    assert all(0 <= m["p_protected"] <= 1 for m in st["modules"]) and st["n_resamples"] == 30
    assert set(st["other_formulations"]) == {"reference"}
    assert isinstance(st["other_formulations"]["reference"]["same_groups"], bool)
    stab = pl.read_parquet(out["stability"])
    md = stability_markdown(stab, pl.read_parquet(out["comparison"]))
    assert "P(top-2)" in md and "Spearman" in md
    rank_stability_figure(stab, [tmp_path / "rank.png"])
    assert (tmp_path / "rank.png").stat().st_size > 1000


def test_resample_weights_equal_scoring_the_duplicated_traces(tokenizer, generations):  # noqa: F811
    """A bootstrap resample (trace counts w) scores exactly like the trace set with each trace repeated w_j times,
    under both formulations (so the algebra on the sufficient statistics is the resample's own score)."""
    model = tiny_qwen2(len(tokenizer), seed=4)
    spans = beh.label_generations(generations, tokenizer)
    st = collect_stats(model, tokenizer, generations, spans)
    w = np.array([[2.0, 0.0, 1.0], [0.0, 1.0, 2.0]])
    for row in w:
        dup = [g for g, n in zip(generations, row) for _ in range(int(n))]
        keep = pl.from_arrow(spans).filter(pl.col("id").is_in([g["id"] for g in dup])).to_arrow()
        direct = collect_stats(model, tokenizer, dup, keep, per_trace=False)
        for f, s in st.items():
            got = s.scores(row[None, :])
            want = {k: v[0] for k, v in direct[f].scores(np.ones((1, 1))).items()}
            for col in SCORE_COLS:
                a, b = got[col][0], want[col]
                assert np.array_equal(np.isnan(a), np.isnan(b)), (f, col)
                assert np.nanmax(np.abs(a - b)) <= 1e-6 * np.nanmax(np.abs(b)), (f, col)
