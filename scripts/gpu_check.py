"""The GPU check (scripts/gpu-check.sh): the transformers backend on CUDA with the embedded model, for the day a GPU is at
hand. Needs only PyTorch, transformers, tokenizers, numpy and this checkout's src/ (no hub, no vLLM, no polars).

1. Precision grid: bf16 / fp16 / fp32 / LayerCast × batch sizes (parallel 1, one CUDA device), greedy, on held-out
   items of the synthetic tasks: accuracy, the share of problems whose token streams differ across batch sizes, the
   mean Div_Index of those, and Avg_Std@top1_prob (the docs/metrics.md definitions, in numpy).
2. LayerCast numerics on CUDA: every decoder linear stored in bf16, and LayerCast's logits equal (teacher-forced) those
   of an fp32 model whose decoder linear weights were rounded to bf16, with TF32 off.
3. A summary: gpu_check.json and gpu_check.md in --out.

    python3 scripts/gpu_check.py --model results/models/default/none --out OUT [--device cuda] [--n 32]
Without --model, a small default model is trained first (CPU, about 2-4 minutes on 16 cores).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from lrmrepro.generate.common import Decoding  # noqa: E402
from lrmrepro.generate.transformers_backend import _generate_chunk, load  # noqa: E402
from lrmrepro.layercast import load_model  # noqa: E402
from lrmrepro.precision import PRECISIONS  # noqa: E402
from lrmrepro.prompts import build_prompts  # noqa: E402
from lrmrepro.scoring import score_text  # noqa: E402
from lrmrepro.tasks import synthetic  # noqa: E402

MAX_NEW = {"arith": 160, "timeline": 192, "logic": 160, "multihop": 112}


def items(n: int) -> dict[str, list[synthetic.Example]]:
    return {t: synthetic.make_split(t, n, 1234, "eval") for t in synthetic.TASKS}


def generate(model, tok, prompts, batch, max_new, device):
    tokens, top1 = [], []
    for start in range(0, len(prompts), batch):
        chunk = prompts[start:start + batch]
        new, _, lp = _generate_chunk(model, tok, chunk, Decoding(max_new_tokens=max_new), torch.device(device))
        for r in range(new.shape[0]):
            seq = new[r].tolist()
            length = seq.index(tok.eos_token_id) + 1 if tok.eos_token_id in seq else len(seq)
            tokens.append(seq[:length])
            top1.append(np.exp(lp[r, :length, 0].numpy().astype(np.float64)))
    return tokens, top1


def divergence(streams: list[list[list[int]]], probs: list[list[np.ndarray]]) -> dict:
    """streams[c][p]: tokens of configuration c, problem p. Div_Index and Avg_Std@top1_prob (ddof 1)."""
    n_conf, n_prob = len(streams), len(streams[0])
    div, stds = [], []
    for p in range(n_prob):
        seqs = [streams[c][p] for c in range(n_conf)]
        if all(s == seqs[0] for s in seqs):
            limit = len(seqs[0])
        else:
            limit = next(i for i in range(max(map(len, seqs)) + 1)
                         if len({tuple(s[i:i + 1]) if i < len(s) else ("end",) for s in seqs}) > 1)
            div.append(limit)
        if limit and n_conf > 1:
            mat = np.stack([probs[c][p][:limit] for c in range(n_conf)])
            stds.append(float(mat.std(axis=0, ddof=1).mean()))
    return {"problems": n_prob, "diverging": len(div), "div_index_mean": float(np.mean(div)) if div else None,
            "avg_std_top1_prob": float(np.mean(stds)) if stds else None}


def layercast_numerics(model_dir: Path, device: str, prompts: list[str]) -> dict:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    lc, tok = load(model_dir, "layercast", device)
    ref = load_model(model_dir, "fp32").to(device).eval()
    bf16_linears, other = 0, []
    with torch.no_grad():
        for name, mod in lc.named_modules():
            if type(mod).__name__ == "LayerCastLinear":
                bf16_linears += 1
                if mod.weight.dtype != torch.bfloat16:
                    other.append(name)
        for name, mod in ref.named_modules():  # the reference: fp32 math on bf16-rounded decoder weights
            if isinstance(mod, torch.nn.Linear) and ".layers." in name:
                mod.weight.copy_(mod.weight.to(torch.bfloat16).float())
                if mod.bias is not None:
                    mod.bias.copy_(mod.bias.to(torch.bfloat16).float())
        worst = 0.0
        for p in prompts:
            ids = torch.tensor([tok(p, add_special_tokens=False)["input_ids"]], device=device)
            a, b = lc(ids).logits.float(), ref(ids).logits.float()
            worst = max(worst, float((a - b).abs().max()))
    return {"layercast_linears_bf16": bf16_linears, "non_bf16_linears": other, "max_abs_logit_diff_vs_reference": worst,
            "bit_exact": worst == 0.0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--n", type=int, default=32, help="held-out items per task")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8, 16])
    ap.add_argument("--max-new", type=int, default=None, help="override the tasks' max new tokens (quick tries)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("no CUDA device: use --device cpu to try the script")
    t0 = time.perf_counter()
    model_dir = args.model
    if model_dir is None:
        from lrmrepro.models.train import TrainConfig, train_default_model

        model_dir = args.out / "model"
        torch.set_num_threads(max(1, min(16, torch.get_num_threads())))
        train_default_model(TrainConfig(steps=1500, threads=torch.get_num_threads()), model_dir, progress=False)
    tasks = items(args.n)
    summary: dict = {"device": args.device, "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda")
                     else platform.processor(), "torch": torch.__version__, "batch_sizes": args.batch_sizes,
                     "n_per_task": args.n, "grid": []}
    torch.set_num_threads(1)
    for prec in PRECISIONS:
        model, tok = load(model_dir, prec, args.device)
        for task, exs in tasks.items():
            prompts = build_prompts([e.question for e in exs], "chat_boxed", tok)
            streams, probs, accs = [], [], []
            for bs in args.batch_sizes:
                tokens, top1 = generate(model, tok, prompts, bs, args.max_new or MAX_NEW[task], args.device)
                texts = [tok.decode(t, skip_special_tokens=True) for t in tokens]
                accs.append(float(np.mean([score_text(e.answer_format, x, e.gold, e.aliases).correct
                                           for e, x in zip(exs, texts)])))
                streams.append(tokens)
                probs.append(top1)
            row = {"precision": prec, "task": task, "accuracy_by_batch": accs,
                   "std_acc": float(np.std(accs, ddof=1)) if len(accs) > 1 else None, **divergence(streams, probs)}
            summary["grid"].append(row)
            print(json.dumps(row), flush=True)
        del model
    example_prompts = build_prompts([e.question for e in tasks["arith"][:4]], "chat_boxed", tok)
    summary["layercast"] = layercast_numerics(model_dir, args.device, example_prompts)
    summary["seconds"] = time.perf_counter() - t0
    (args.out / "gpu_check.json").write_text(json.dumps(summary, indent=2))
    lines = [f"# GPU check: {summary['gpu']} (torch {summary['torch']}), {summary['seconds']:.0f} s", "",
             "| precision | task | accuracy by batch size | diverging / problems | mean Div_Index | Avg_Std@top1_prob |",
             "|---|---|---|---|---|---|"]
    for r in summary["grid"]:
        acc = ", ".join(f"{100 * a:.1f}" for a in r["accuracy_by_batch"])
        div = f"{r['div_index_mean']:.1f}" if r["div_index_mean"] is not None else "–"
        top1 = f"{r['avg_std_top1_prob']:.3g}" if r["avg_std_top1_prob"] is not None else "–"
        lines.append(f"| {r['precision']} | {r['task']} | {acc} | {r['diverging']} / {r['problems']} | {div} | {top1} |")
    lc = summary["layercast"]
    lines += ["", f"LayerCast: {lc['layercast_linears_bf16']} decoder linears stored in bf16 "
              f"(others: {lc['non_bf16_linears'] or 'none'}); max |Δlogit| vs fp32 math on bf16-rounded weights "
              f"= {lc['max_abs_logit_diff_vs_reference']:.3g} ({'bit-exact' if lc['bit_exact'] else 'not bit-exact'})"]
    (args.out / "gpu_check.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
