"""Behaviour labels, hooks, difference of means, attribution patching, ranking/protection specs, figures."""

from __future__ import annotations

import json

import polars as pl
import pytest
import torch
from torch import nn

from lrmrepro.importance import behaviours as beh
from lrmrepro.importance.attribution import attribution_patching
from lrmrepro.importance.dom import DomAccumulator, difference_of_means, load_vectors, save_vectors
from lrmrepro.importance.hooks import ActivationRecorder, decoder_linear_modules
from lrmrepro.importance.protect import protected_spec, single_module_specs
from lrmrepro.importance.ranking import rank_modules, select_protected

torch.set_num_threads(1)

TRACES = [
    ("Start with 21.\n21 + 2 = 23.\nWait, 21 + 2 = 24.\nLet me check: the result is 24.\n</think>\n\\boxed{24}"),
    ("Nomo was born in Rito.\nRecall that Rito is located in Gukaka.\nHmm, I am not sure yet. Maybe it is Gukakish.\n"
     "So the answer is Gukakish.\n</think>\n\\boxed{Gukakish}"),
    ("Anna is a snark.\nAll snarks are glims, so Anna is a glim.\nWait, that is wrong. I know that glims are red.\n"
     "Let me verify: Anna is red.\nSo the conclusion is True.\n</think>\n\\boxed{True}"),
]


@pytest.fixture(scope="module")
def tokenizer():
    from lrmrepro.models.tokenizer import train_tokenizer
    from lrmrepro.tasks import synthetic

    texts = [e.question + e.completion for t in synthetic.TASKS for e in synthetic.make_split(t, 15, 0, "train")]
    return train_tokenizer(texts + TRACES, 400)


@pytest.fixture(scope="module")
def generations():
    return [{"id": f"q{i}", "sample_idx": 0, "prompt": f"Question {i}?\n<think>\n", "text": t}
            for i, t in enumerate(TRACES)]


def tiny_qwen2(vocab: int, layers: int = 2, seed: int = 0):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=vocab, hidden_size=128, intermediate_size=256, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    return Qwen2ForCausalLM(cfg).eval()


# ------------------------------------------------------------------------------------------------ labeller


def test_rule_labels_known_sentences():
    cases = {
        "Wait, 21 + 2 = 24.": "backtracking",
        "Alternatively, we could count.": "backtracking",
        "Hmm, I am not sure yet.": "uncertainty_estimation",
        "Maybe it is 5.": "uncertainty_estimation",
        "Let me check: the result is 24.": "example_testing",
        "Let me verify the sum.": "example_testing",
        "Recall that Rito is located in Gukaka.": "adding_knowledge",
        "I know that glims are red.": "adding_knowledge",
        "21 + 2 = 23.": "deduction",
        "Waiting room is free.": "deduction",      # word boundary: "Waiting" is not "Wait"
    }
    for sentence, label in cases.items():
        assert beh.rule_label(sentence) == label, sentence
    assert beh.rule_label("Start with 21.", first=True) == "initializing"
    # first matching behaviour in table order wins
    assert beh.rule_label("Wait, maybe not.") == "backtracking"


def test_segments_exclude_answer_and_tags():
    text = "<think>\nA is 1. B is 2.5 now.\nWait, C.\n</think>\n\\boxed{3}"
    segs = beh.split_segments(text, *beh.reasoning_region(text))
    assert [s.text for s in segs] == ["A is 1.", "B is 2.5 now.", "Wait, C."]
    assert all(text[s.start:s.end] == s.text for s in segs)


def test_spans_match_offsets(tokenizer, generations):
    spans = pl.from_arrow(beh.label_generations(generations, tokenizer))
    assert spans.columns == [f.name for f in beh.SPAN_SCHEMA]
    labels = spans.filter(pl.col("id") == "q2")["behaviour"].to_list()
    assert labels == ["initializing", "deduction", "backtracking", "adding_knowledge", "example_testing", "deduction"]
    for r in spans.iter_rows(named=True):
        g = generations[int(r["id"][1:])]
        enc = beh.encode_trace(tokenizer, g["prompt"], g["text"])
        full, off = enc["full_text"], enc["offsets"]
        assert full[r["char_start"]:r["char_end"]] == r["text"]
        assert r["char_start"] >= len(g["prompt"])
        ts, te = r["tok_start"], r["tok_end"]
        # the token span covers the segment's characters, and its first/last tokens overlap them
        assert off[ts][0] <= r["char_start"] < off[ts][1]
        assert off[te - 1][0] < r["char_end"] <= off[te - 1][1]
        assert r["text"] in tokenizer.decode(enc["input_ids"][ts:te])
        assert ts >= enc["completion_start"]


def test_judge_labeller_interface(tokenizer, generations):
    answers = {"Wait": "Category: backtracking", "Recall": "adding-knowledge."}

    def generate(prompts):
        return [next((a for k, a in answers.items() if f"Step: {k}" in p), "no idea") for p in prompts]

    rows = beh.label_trace(tokenizer, generations[0]["prompt"], generations[0]["text"],
                           labeller=beh.judge_labeller(generate))
    assert [r["behaviour"] for r in rows] == ["unparsed", "unparsed", "backtracking", "unparsed"]
    with pytest.raises(ValueError, match="returned 1 texts"):
        beh.judge_labeller(lambda p: ["x"])(["a", "b"])


# ---------------------------------------------------------------------------------------------------- hooks


def test_hooks_cover_every_decoder_linear(tokenizer):
    model = tiny_qwen2(len(tokenizer))
    mods = decoder_linear_modules(model)
    expected = {n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n != "lm_head"}
    assert set(mods) == expected and len(mods) == 2 * 7
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad(), ActivationRecorder(model) as rec:
        model(input_ids=ids)
    assert set(rec.outputs) == expected
    assert rec.outputs["model.layers.1.mlp.up_proj"].shape == (1, 5, 256)
    assert rec.outputs["model.layers.0.self_attn.k_proj"].shape == (1, 5, 64)
    # hooks are removed on exit
    rec.clear()
    model(input_ids=ids)
    assert rec.outputs == {}


def test_backward_hooks_capture_output_grads(tokenizer):
    model = tiny_qwen2(len(tokenizer))
    ids = torch.tensor([[1, 2, 3, 4, 5, 6]])
    with ActivationRecorder(model, keep_graph=True, capture_grads=True) as rec:
        logits = model(input_ids=ids).logits
        loss = nn.functional.cross_entropy(logits[0, :-1], ids[0, 1:])
        outs = dict(rec.outputs)
        direct = torch.autograd.grad(loss, list(outs.values()), retain_graph=True)
        loss.backward()
    for (name, _), g in zip(outs.items(), direct):
        torch.testing.assert_close(rec.grads[name], g)


# ------------------------------------------------------------------------------------------ difference of means


def test_accumulators_do_not_leak_between_behaviours():
    acc = DomAccumulator(["m"], behaviours=("backtracking", "adding_knowledge", "example_testing"))
    a = torch.arange(12, dtype=torch.float32).reshape(6, 2)    # tokens 0..5, 2 features
    acc.add_trace({"m": a}, [("backtracking", 1, 3)], 0, 6)
    acc.add_trace({"m": 10 * a}, [("adding_knowledge", 4, 6), ("backtracking", 0, 1)], 0, 6)
    assert acc.pos_sum["example_testing"] == {}
    vec = acc.vectors("tokens")
    assert set(vec) == {"backtracking", "adding_knowledge"}
    neg = torch.cat([a, 10 * a]).double().mean(0)
    torch.testing.assert_close(vec["backtracking"]["m"], (a[1:3].double().mean(0) + 10 * a[0:1].double().mean(0)) / 2 - neg)
    torch.testing.assert_close(vec["adding_knowledge"]["m"], 10 * a[4:6].double().mean(0) - neg)
    # the per-trace negative set weighs each trace equally
    torch.testing.assert_close(acc.negative_mean("m", "traces"), (a.double().mean(0) + 10 * a.double().mean(0)) / 2)
    # mutating one behaviour's sums leaves the other's alone
    acc.pos_sum["backtracking"]["m"] += 1000
    torch.testing.assert_close(acc.vectors()["adding_knowledge"]["m"], vec["adding_knowledge"]["m"])


def test_difference_of_means_matches_manual(tokenizer, generations, tmp_path):
    model = tiny_qwen2(len(tokenizer))
    spans = beh.label_generations(generations, tokenizer)
    res = difference_of_means(model, tokenizer, generations, spans)
    name = "model.layers.1.mlp.up_proj"
    pos, neg = [], []
    for g in generations:
        enc = beh.encode_trace(tokenizer, g["prompt"], g["text"])
        with torch.no_grad(), ActivationRecorder(model) as rec:
            model(input_ids=torch.tensor([enc["input_ids"]]))
        a = rec.outputs[name][0].double()
        neg.append(a[enc["completion_start"]:])
        for r in pl.from_arrow(spans).filter((pl.col("id") == g["id"]) & (pl.col("behaviour") == "backtracking")).iter_rows(named=True):
            pos.append(a[r["tok_start"]:r["tok_end"]].mean(0))
    manual = torch.stack(pos).mean(0) - torch.cat(neg).mean(0)
    torch.testing.assert_close(res.vectors["backtracking"][name], manual)
    t = pl.from_arrow(res.table)
    row = t.filter((pl.col("behaviour") == "backtracking") & (pl.col("module") == name)).row(0, named=True)
    assert row["n_segments"] == 2 and row["n_params"] == 128 * 256
    rms = torch.cat(neg).pow(2).sum(1).mean().sqrt()
    assert row["dom_score"] == pytest.approx(float(manual.norm() / rms), rel=1e-6)
    save_vectors(res.vectors, tmp_path / "v.safetensors")
    back = load_vectors(tmp_path / "v.safetensors")
    torch.testing.assert_close(back["backtracking"][name], manual.float())


def test_spans_from_other_generations_are_rejected(tokenizer, generations):
    spans = beh.label_generations(generations, tokenizer)
    other = [dict(g, text=g["text"].replace("Wait", "Halt")) for g in generations]
    with pytest.raises(ValueError, match="does not match the re-encoded trace"):
        difference_of_means(tiny_qwen2(len(tokenizer)), tokenizer, other, spans)


# ------------------------------------------------------------------------------------- attribution patching

PLANTED = "model.layers.1.mlp.up_proj"


def planted_model(vocab: int, gain: float = 1e5):
    """Every path from a module output to the loss is cut except through layer 1's MLP, and layer 1's gate is
    amplified: o_proj = 0 in every layer (attention outputs are exactly 0, so their ũ = 0, and q/k/v get exactly
    zero gradient), layer 0's down_proj = 0 (its gate/up get zero gradient, its output is 0). Left: layer 1's
    gate/up/down, whose MLP output (∝ G) dominates the residual stream, so the final RMSNorm makes δ = ∂L/∂h ~ 1/G.
    Then ∂L/∂down = δ ~ 1/G, ∂L/∂gate = up ⊙ silu'(gate) ⊙ W_downᵀδ ~ 1/G, but ∂L/∂up = silu(gate) ⊙ W_downᵀδ ~ G/G
    = O(1): up_proj's score exceeds every other module's by a factor of order G (ũ is unit length, so the DoM
    scale does not enter)."""
    model = tiny_qwen2(vocab, layers=2, seed=1)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
        model.model.layers[0].mlp.down_proj.weight.zero_()
        model.model.layers[1].mlp.gate_proj.weight.mul_(gain)
    return model


def test_attribution_ranks_planted_module_first(tokenizer, generations):
    model = planted_model(len(tokenizer))
    spans = beh.label_generations(generations, tokenizer)
    dom = difference_of_means(model, tokenizer, generations, spans)
    attr = pl.from_arrow(attribution_patching(model, tokenizer, generations, spans, dom.vectors))
    for b in beh.BEHAVIOURS:
        sub = attr.filter(pl.col("behaviour") == b).sort("attribution", descending=True)
        assert sub["n_attr_segments"][0] > 0
        assert sub["module"][0] == PLANTED, b
        assert sub["attribution"][0] > 10 * sub["attribution"][1], b
        # modules with a cut path score exactly zero
        cut = sub.filter(~pl.col("module").str.starts_with("model.layers.1.mlp."))
        assert cut["attribution"].abs().max() == 0.0
    ranking = rank_modules(attr, "attribution", "mean")
    assert ranking["module"][0] == PLANTED and ranking["rank"][0] == 1


def test_attribution_matches_per_segment_formula(tokenizer, generations):
    """I = |mean_i ũ·mean_t ∂L_i/∂a(t)| recomputed by hand for one module and behaviour."""
    model = tiny_qwen2(len(tokenizer), seed=3)
    spans = beh.label_generations(generations, tokenizer)
    dom = difference_of_means(model, tokenizer, generations, spans)
    attr = pl.from_arrow(attribution_patching(model, tokenizer, generations, spans, dom.vectors,
                                              behaviours=["example_testing"]))
    name = "model.layers.0.mlp.gate_proj"
    u = dom.vectors["example_testing"][name]
    u = u / u.norm()
    vals = []
    sp = pl.from_arrow(spans).filter(pl.col("behaviour") == "example_testing")
    for r in sp.iter_rows(named=True):
        g = next(x for x in generations if x["id"] == r["id"])
        ids = torch.tensor([beh.encode_trace(tokenizer, g["prompt"], g["text"])["input_ids"]])
        ts, te = r["tok_start"], r["tok_end"]
        with ActivationRecorder(model, {name: dict(model.named_modules())[name]}, keep_graph=True) as rec:
            logits = model(input_ids=ids).logits[0]
            loss = nn.functional.cross_entropy(logits[ts - 1:te - 1], ids[0, ts:te])
            (grad,) = torch.autograd.grad(loss, [rec.outputs[name]])
        vals.append(float(grad[0, ts:te].double().mean(0) @ u))
    row = attr.filter(pl.col("module") == name).row(0, named=True)
    assert row["n_attr_segments"] == len(vals) == 2
    assert row["attribution"] == pytest.approx(abs(sum(vals) / len(vals)), rel=1e-4)
    assert row["attribution_mean_abs"] == pytest.approx(sum(abs(v) for v in vals) / len(vals), rel=1e-4)
    assert attr.filter(pl.col("behaviour") != "example_testing").height == 0


# ------------------------------------------------------------------------------------- ranking and protection


def _scores():
    rows = []
    vals = {"model.layers.1.mlp.up_proj": 9.0, "model.layers.0.self_attn.o_proj": 7.0,
            "model.layers.1.self_attn.v_proj": 5.0, "model.layers.0.mlp.down_proj": 3.0}
    names = [f"model.layers.{l}.{p}" for l in (0, 1) for p in
             ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
              "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")]
    size = {"q_proj": 100, "k_proj": 50, "v_proj": 50, "o_proj": 100, "gate_proj": 400, "up_proj": 400,
            "down_proj": 400}
    for b, scale in (("backtracking", 1.0), ("adding_knowledge", 2.0)):
        for n in names:
            rows.append({"behaviour": b, "module": n, "layer": int(n.split(".")[2]), "module_type": n.rsplit(".", 1)[1],
                         "n_params": size[n.rsplit(".", 1)[1]], "attribution": scale * vals.get(n, 0.1)})
    return pl.DataFrame(rows), names


def test_spec_ignore_is_topk_expanded_to_fused_groups():
    scores, names = _scores()
    ranking = rank_modules(scores, "attribution", "mean")
    assert ranking["module"].head(4).to_list() == list(
        ["model.layers.1.mlp.up_proj", "model.layers.0.self_attn.o_proj", "model.layers.1.self_attn.v_proj",
         "model.layers.0.mlp.down_proj"])
    spec = protected_spec(ranking, "gptq_w4a16", k=3, source={"model": "tiny"})
    assert spec["recipe"] == "gptq_w4a16"
    assert spec["ignore"] == ["model.layers.1.mlp.up_proj", "model.layers.1.mlp.gate_proj",
                              "model.layers.0.self_attn.o_proj", "model.layers.1.self_attn.v_proj",
                              "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.k_proj"]
    assert spec["source"]["protected_params"] == 800 + 100 + 200
    json.dumps(spec)
    protect = pytest.importorskip("lrmrepro.compress.protect")
    assert sorted(protect.resolve_protected(names, spec["ignore"])) == sorted(spec["ignore"])
    # budget: 3000 params in total; 30 % = 900 fits gate+up (800) but not also o_proj (900 < 800 + 100? no: 900)
    assert select_protected(ranking, weight_fraction=0.3) == ["model.layers.1.mlp.up_proj",
                                                              "model.layers.1.mlp.gate_proj",
                                                              "model.layers.0.self_attn.o_proj"]
    assert select_protected(ranking, weight_fraction=0.2) == []
    assert "exceeds the weight budget" in protected_spec(ranking, "gptq_w4a16", weight_fraction=0.2)["source"]["note"]
    with pytest.raises(ValueError, match="exactly one"):
        select_protected(ranking)
    with pytest.raises(ValueError, match="behaviour must be one of"):
        rank_modules(scores, "attribution", "guessing")


def test_single_module_specs_partition_modules():
    _, names = _scores()
    specs = single_module_specs(names, "rtn_w8a16", modules=["model.layers.1.mlp.up_proj", "model.layers.0.mlp.down_proj"])
    up = specs["layers_1_mlp_up_proj"]
    assert up["quantize"] == ["model.layers.1.mlp.gate_proj", "model.layers.1.mlp.up_proj"]
    assert sorted(up["ignore"] + up["quantize"]) == sorted(names) and not set(up["ignore"]) & set(up["quantize"])
    assert specs["layers_0_mlp_down_proj"]["quantize"] == ["model.layers.0.mlp.down_proj"]
    alone = single_module_specs(names, "rtn_w8a16", modules=["model.layers.1.mlp.up_proj"], expand_groups=False)
    assert alone["layers_1_mlp_up_proj"]["quantize"] == ["model.layers.1.mlp.up_proj"]
    with pytest.raises(ValueError, match="not decoder linear modules"):
        single_module_specs(names, "rtn_w8a16", modules=["lm_head"])


# ------------------------------------------------------------------------------------------ stage + figures


def test_stage_functions_and_figures(tokenizer, generations, tmp_path):
    import pyarrow as pa

    from lrmrepro import io
    from lrmrepro.figures.importance import importance_change_heatmaps, importance_heatmaps, protection_figure
    from lrmrepro.importance.run import label_file, protect_from_scores, score_model

    model_dir = tmp_path / "model"
    tiny_qwen2(len(tokenizer)).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    io.write_parquet(pa.Table.from_pylist(generations), tmp_path / "generations.parquet")
    info = label_file(tmp_path / "generations.parquet", model_dir, tmp_path / "spans.parquet")
    assert info["segments_per_behaviour"]["backtracking"] == 2
    meta = score_model(model_dir, tmp_path / "generations.parquet", tmp_path / "spans.parquet",
                       tmp_path / "scores.parquet", tmp_path / "dom.safetensors")
    assert meta["n_modules"] == 14
    scores = pl.read_parquet(tmp_path / "scores.parquet")
    assert scores.height == 4 * 14 and {"dom_score", "attribution", "n_params"} <= set(scores.columns)
    spec = protect_from_scores(tmp_path / "scores.parquet", tmp_path / "spec.json", recipe="gptq_w4a16", k=2)
    assert json.loads((tmp_path / "spec.json").read_text())["ignore"] == spec["ignore"]

    outs = [tmp_path / "heat.png", tmp_path / "heat.pdf"]
    importance_heatmaps(scores, outs)
    change = importance_change_heatmaps(scores, scores.with_columns(pl.col("attribution") * 2), [tmp_path / "chg.png"])
    assert change["change"].to_list() == pytest.approx(scores["attribution"].to_list())
    acc = pl.DataFrame({"model": ["m"] * 6, "compression": ["none", "none", "gptq", "gptq", "gptq_prot", "gptq_prot"],
                        "task": ["arith", "logic"] * 3, "accuracy": [0.9, 0.8, 0.5, 0.4, 0.7, 0.6]})
    protection_figure(acc, [tmp_path / "prot.png"], unprotected="gptq", protected="gptq_prot")
    with pytest.raises(ValueError, match="no accuracy rows for compressions"):
        protection_figure(acc, [tmp_path / "x.png"], unprotected="awq", protected="gptq_prot")
    for p in [*outs, tmp_path / "chg.png", tmp_path / "prot.png"]:
        assert p.stat().st_size > 1000
