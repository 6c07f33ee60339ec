"""Seconds and peak memory of each compression method on a (tiny) model.

Usage: python benchmarks/compress.py [MODEL_DIR] [--methods gptq_w4a16 ...] [--samples 8] [--seq-len 64]
Without MODEL_DIR a tiny random Qwen2 (hidden 128, 2 layers) is built in a temporary folder. Each method runs in a
fresh Python process (so the peak RSS is that method's alone, model load and llm-compressor import included; for the
GPTQModel methods, the larger of that process and the GPTQModel environment's process it starts); `seconds` is the
method's own time (llm-compressor: load + oneshot; ANY4/ANY3 and GPTQModel: quantization, saving and checks),
`wall` the whole child process. GPTQModel methods need `make env-gptqmodel` (or LRMREPRO_GPTQMODEL_PYTHON).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from lrmrepro.environment import job_environment  # noqa: E402

job_environment(ROOT)  # PYTHONPATH and the GPTQModel environment's interpreter, as the workflow's jobs get them

METHODS = {  # name: (recipe, sparsity)
    "gptq_w4a16": ("gptq_w4a16", None), "gptq_w3a16": ("gptq_w3a16", None), "awq_w4a16": ("awq_w4a16", None),
    "awq_w3a16": ("awq_w3a16", None), "rtn_w8a16": ("rtn_w8a16", None), "w8a8_int8": ("w8a8_int8", None),
    "fp8_dynamic": ("fp8_dynamic", None), "sparsegpt_50": ("sparsegpt_unstructured", 0.5),
    "sparsegpt_2of4": ("sparsegpt_2of4", None), "dynamic_w3_mixed": ("dynamic_w3_mixed", None),
    # ANY4/ANY3 (lrmrepro.compress.anyq); GPTAQ and GPTQ with GPTQModel in its own environment (make env-gptqmodel)
    "any4": ("any4", None), "any3": ("any3", None), "gptaq_w4a16": ("gptaq_w4a16", None),
    "gptaq_w3a16": ("gptaq_w3a16", None), "gptqmodel_w4a16": ("gptqmodel_w4a16", None),
    "gptqmodel_w3a16": ("gptqmodel_w3a16", None),
}

CHILD = """
import json, sys, torch
sys.path.insert(0, {src!r})
torch.set_num_threads({threads})
from lrmrepro.compress.run import compress_model
meta = compress_model({model!r}, {out!r}, recipe={recipe!r}, sparsity={sparsity!r},
                      calibration={{"source": "model_corpus", "num_samples": {samples}, "max_seq_len": {seq}}})
print("RESULT " + json.dumps({{k: meta[k] for k in ("compress_seconds", "peak_rss_bytes", "size_on_disk_bytes",
                                                    "effective_bits")}}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir", nargs="?", help="HF checkpoint with train_corpus.jsonl (default: build a tiny one)")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model_dir
        if model is None:
            from lrmrepro.compress.tiny import build_tiny_qwen2

            model = str(build_tiny_qwen2(Path(tmp) / "tiny"))
        print(f"model {model}; calibration {args.samples} x {args.seq_len} tokens; {args.threads} thread(s)")
        print(f"{'method':16} {'seconds':>8} {'wall':>7} {'peak RSS MiB':>13} {'disk KiB':>9} {'bits/w':>7}")
        for name in args.methods:
            recipe, sparsity = METHODS[name]
            code = CHILD.format(src=str(ROOT / "src"), threads=args.threads, model=model, out=f"{tmp}/{name}",
                                recipe=recipe, sparsity=sparsity, samples=args.samples, seq=args.seq_len)
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            wall = time.perf_counter() - t0
            lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                print(f"{name:16} FAILED (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(lines[-1][len("RESULT "):])
            print(f"{name:16} {r['compress_seconds']:8.2f} {wall:7.1f} {r['peak_rss_bytes'] / 2**20:13.0f} "
                  f"{r['size_on_disk_bytes'] / 1024:9.0f} {r['effective_bits']:7.3f}", flush=True)


if __name__ == "__main__":
    main()
