"""Peak memory of the transformers backend with a real-size vocabulary: top-k per step (the backend) against keeping
generate's full-vocabulary logits (``output_logits=True``, the backend before it took the top-k by a hook).

A random-init Qwen2 with a 151,936-token vocabulary (Qwen2's), hidden size 128, 2 layers; batch 8, 2,048 new tokens
(forced: no EOS), greedy, fp32. Each variant runs in its own process; peak RSS is the process's ``ru_maxrss``.
Goal: the backend's peak RSS < 1.5 GB. The full-logits variant needs about 8 × 2,048 × 151,936 × 4 bytes = 10 GB
for the logits alone and more than twice that at its peak (stacking and ``log_softmax`` copy them: killed by the
kernel at 24 GB on a 24 GiB machine); ``--skip-full`` leaves it out on machines with less than about 32 GB.

    .venv/bin/python benchmarks/generation_memory.py [--new-tokens 2048] [--batch 8] [--skip-full]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL_GB = 1.5

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {src!r})
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM
from lrmrepro.generate import transformers_backend as tb
from lrmrepro.generate.common import Decoding, TOP_K

torch.manual_seed(0)
torch.set_num_threads(2)
cfg = Qwen2Config(vocab_size=151936, hidden_size=128, intermediate_size=512, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                  tie_word_embeddings=False, eos_token_id=None, pad_token_id=0)
model = Qwen2ForCausalLM(cfg).eval()
ids = torch.randint(1, 151936, ({batch}, 32))
mask = torch.ones_like(ids)
kw = dict(max_new_tokens={new}, min_new_tokens={new}, do_sample=False, num_beams=1, temperature=None, top_p=None,
          top_k=None, return_dict_in_generate=True, pad_token_id=0, eos_token_id=None)
t0 = time.perf_counter()
if {full}:
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=mask, output_logits=True, **kw)
    lp, top = torch.log_softmax(torch.stack(out.logits, dim=1).float(), -1).topk(TOP_K, -1)
else:
    rec = tb._TopKRecorder(model, max_steps={new})
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=mask, **kw)
    rec.remove()
    top, lp = rec.stacked(out.sequences.shape[1] - 32)
print(json.dumps({{"peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
                  "seconds": time.perf_counter() - t0, "topk_shape": list(top.shape)}}))
"""


def run(full: bool, batch: int, new: int) -> dict:
    code = CHILD.format(src=str(ROOT / "src"), batch=batch, new=new, full=full)
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--new-tokens", type=int, default=2048)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--skip-full", action="store_true", help="do not run the full-logits variant (~10 GB)")
    args = p.parse_args()
    topk = run(False, args.batch, args.new_tokens)
    print(f"top-k hook (the backend):     {topk}")
    if not args.skip_full:
        full = run(True, args.batch, args.new_tokens)
        print(f"full logits (output_logits): {full}")
        if "peak_rss_gb" in full and "peak_rss_gb" in topk:
            print(f"ratio full / top-k peak RSS: {full['peak_rss_gb'] / topk['peak_rss_gb']:.1f}")
    ok = "peak_rss_gb" in topk and topk["peak_rss_gb"] < GOAL_GB
    print(f"goal: backend peak RSS < {GOAL_GB} GB -> {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
