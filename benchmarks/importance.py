"""Benchmark of difference of means and attribution patching on a model of the embedded default's size.

Qwen2 with hidden 128, 4 layers, intermediate 512, 4 heads / 2 KV heads, random weights, a byte-level BPE
tokenizer (vocab 512) trained on the synthetic tasks' text; traces = synthetic training completions of the four
tasks (prompt in the ``raw_think`` style), labelled by the rule-based labeller. Prints seconds and peak memory
per 1k trace tokens (all prompt+completion tokens fed to the model) for each stage. Peak memory is the increase
of the process's resident-set high-water mark over the stage (reset through /proc/self/clear_refs before it).

    python benchmarks/importance.py [--traces 200] [--threads 1]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import polars as pl
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from lrmrepro.importance.attribution import attribution_patching
from lrmrepro.importance.behaviours import BEHAVIOURS, encode_trace, label_generations
from lrmrepro.importance.dom import difference_of_means
from lrmrepro.models.tokenizer import train_tokenizer
from lrmrepro.prompts import RAW_SUFFIX
from lrmrepro.tasks import synthetic


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def _reset_peak() -> int:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    return _status("VmRSS")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--traces", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    per_task = max(1, args.traces // len(synthetic.TASKS))
    exs = [e for t in synthetic.TASKS for e in synthetic.make_split(t, per_task, 1, "train")]
    tok = train_tokenizer([e.question + e.completion for e in exs], 512)
    gens = [{"id": str(i), "sample_idx": 0, "prompt": e.question + RAW_SUFFIX, "text": e.completion}
            for i, e in enumerate(exs)]
    t0 = time.perf_counter()
    spans = label_generations(gens, tok)
    t_label = time.perf_counter() - t0
    n_tokens = sum(len(encode_trace(tok, g["prompt"], g["text"])["input_ids"]) for g in gens)
    seg = pl.from_arrow(spans).filter(pl.col("behaviour").is_in(BEHAVIOURS))

    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tok), hidden_size=128, intermediate_size=512,
                                         num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2)).eval()
    base = _reset_peak()
    t0 = time.perf_counter()
    dom = difference_of_means(model, tok, gens, spans)
    t_dom = time.perf_counter() - t0
    mem_dom = _status("VmHWM") - base
    base = _reset_peak()
    t0 = time.perf_counter()
    attribution_patching(model, tok, gens, spans, dom.vectors)
    t_attr = time.perf_counter() - t0
    mem_attr = _status("VmHWM") - base

    k = n_tokens / 1000
    print(f"traces {len(gens)}, tokens {n_tokens}, behaviour segments {seg.height} "
          f"({dict(seg.group_by('behaviour').len().iter_rows())}), modules {len(next(iter(dom.vectors.values())))}, "
          f"threads {args.threads}")
    print(f"label        {t_label:8.3f} s   {t_label / k:7.4f} s/1k tok")
    print(f"dom          {t_dom:8.3f} s   {t_dom / k:7.4f} s/1k tok   peak +{mem_dom / 2**20:7.1f} MiB "
          f"({mem_dom / 2**20 / k:.2f} MiB/1k tok)")
    print(f"attribution  {t_attr:8.3f} s   {t_attr / k:7.4f} s/1k tok   peak +{mem_attr / 2**20:7.1f} MiB "
          f"({mem_attr / 2**20 / k:.2f} MiB/1k tok; {t_attr / max(seg.height, 1) * 1000:.1f} ms/segment)")


if __name__ == "__main__":
    main()
