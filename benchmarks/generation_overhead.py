"""Overhead of the `generate` stage over a bare `model.generate` loop on the same chunks.

Both sides: same model, precision, thread count, prompts, chunks of `--batch-size`, greedy, same max_new_tokens.
The stage additionally computes top-k logprobs, decodes, builds rows, writes each chunk (resumability) and the
final parquet. Goal: ratio <= 1.05. Prints seconds, ratio and tokens/s. Bare and stage runs alternate; the
ratio is taken between the fastest run of each side (the least disturbed by other load on a shared machine;
run-to-run noise here is about +-10 %), the median ratio is printed too.
    .venv/bin/python benchmarks/generation_overhead.py [--model results/models/default/none] [--n 64]
Without --model (or if it does not exist) a small model is trained first (about a minute).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from lrmrepro.generate.common import Decoding, chunks  # noqa: E402
from lrmrepro.generate.transformers_backend import TransformersGenerator, load  # noqa: E402
from lrmrepro.prompts import build_prompts  # noqa: E402
from lrmrepro.tasks.synthetic import make_split  # noqa: E402


def bare_loop(model, tok, prompts, batch_size, max_new_tokens):
    tokens = 0
    for span in chunks(len(prompts), batch_size):
        enc = tok([prompts[i] for i in span], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                 temperature=None, top_p=None, top_k=None,
                                 pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        tokens += int((out[:, enc["input_ids"].shape[1]:] != tok.pad_token_id).sum())
    return tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "results/models/default/none"))
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    model_dir = Path(args.model)
    if not (model_dir / "config.json").exists():
        from lrmrepro.models.train import TrainConfig, train_default_model

        model_dir = Path(tempfile.mkdtemp()) / "model"
        print(f"no model at {args.model}: training a small one at {model_dir}")
        train_default_model(TrainConfig(steps=150, train_per_task=500, fact_repeats=4), model_dir, progress=False)
    tok = AutoTokenizer.from_pretrained(model_dir)
    questions = [e.question for t in ("arith", "timeline", "logic", "multihop")
                 for e in make_split(t, args.n // 4, seed=0, split="eval")]
    prompts = build_prompts(questions, "chat_boxed", tok)
    ids = [f"q{i}" for i in range(len(prompts))]
    torch.set_num_threads(args.threads)
    model, tok = load(model_dir, args.precision)
    bare_loop(model, tok, prompts[: args.batch_size], args.batch_size, 8)  # warm-up
    bare, stage = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        tokens = bare_loop(model, tok, prompts, args.batch_size, args.max_new_tokens)
        bare.append(time.perf_counter() - t0)
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            gen = TransformersGenerator(model_dir, precision=args.precision, parallel=args.threads)
            meta = gen.generate_table(prompts, ids, batch_size=args.batch_size,
                                      decoding=Decoding(max_new_tokens=args.max_new_tokens),
                                      output=Path(d) / "g.parquet", progress=False)
            total = time.perf_counter() - t0
            stage.append(total - meta["model_load_seconds"])
    b, s = min(bare), min(stage)
    print(f"prompts={len(prompts)} batch_size={args.batch_size} max_new_tokens={args.max_new_tokens} "
          f"threads={args.threads} precision={args.precision}")
    print(f"bare model.generate loop: {b:.2f} s, {tokens / b:.0f} tokens/s (fastest of {args.repeats})")
    print(f"generate stage (excl. model load {meta['model_load_seconds']:.2f} s): {s:.2f} s, "
          f"{meta['generated_tokens'] / s:.0f} tokens/s")
    print(f"ratio stage/bare: {s / b:.3f} (goal <= 1.05); ratio of medians "
          f"{statistics.median(stage) / statistics.median(bare):.3f}")


if __name__ == "__main__":
    main()
