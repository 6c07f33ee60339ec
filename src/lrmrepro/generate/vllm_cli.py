"""Rule generate_vllm: the command line the vLLM environment's python runs (``python -m lrmrepro.generate.vllm_cli``)
from a `shell:` rule.

vLLM starts its engine and workers with `spawn`, which re-imports the main module: everything runs under the
`__main__` guard. Arguments mirror the transformers rule's inputs, params and outputs:

  .venvs/vllm-cpu/bin/python -m lrmrepro.generate.vllm_cli --model M --tasks-parquet T --output O --meta J \
      --precision P --parallel N --batch-size B --decoding-json '{...}' --prompt-style S --log L \
      [--run-json '{...}'] [--code FP] [--batch-invariant]

Several tasks with one engine (one model load): give --tasks-parquet, --output, --meta, --decoding-json,
--prompt-style and --run-json once per task, in the same order (a single --decoding-json / --prompt-style /
--run-json applies to every task). The decodings may differ only in max_new_tokens.
"""

import argparse
import json
import logging
import sys


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="checkpoint folder (HF format, optionally compressed-tensors)")
    p.add_argument("--tasks-parquet", required=True, nargs="+", help="task items table (results/tasks/{task}.parquet)")
    p.add_argument("--output", required=True, nargs="+", help="generations.parquet to write")
    p.add_argument("--meta", required=True, nargs="+", help="generations.meta.json to write")
    p.add_argument("--precision", required=True, choices=["bf16", "fp16", "fp32", "layercast"])
    p.add_argument("--parallel", type=int, required=True, help="tensor-parallel size (GPUs)")
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--decoding-json", required=True, nargs="+", help="Decoding fields as JSON (max_new_tokens, temperature, ...)")
    p.add_argument("--prompt-style", required=True, nargs="+")
    p.add_argument("--log", required=True, help="log file")
    p.add_argument("--run-json", default=None, nargs="+", help="the run labels (recorded in meta.json)")
    p.add_argument("--code", default=None, help="code fingerprint of the generate stage")
    p.add_argument("--batch-invariant", action="store_true", help="VLLM_BATCH_INVARIANT=1 (GPU only)")
    p.add_argument("--enforce-eager", choices=["auto", "true", "false"], default="auto",
                   help="auto: eager on CPU, compiled + CUDA graphs on GPU")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=[logging.FileHandler(args.log), logging.StreamHandler(sys.stderr)])
    log = logging.getLogger("generate_vllm")

    import polars as pl
    from transformers import AutoTokenizer

    from ..prompts import build_prompts_for_items
    from ..provenance import Timer, hardware_label, write_meta
    from .common import Decoding
    from .vllm_backend import VllmGenerator, needed_model_len

    n_tasks = len(args.tasks_parquet)

    def per_task(values, name):
        if values is None:
            return [None] * n_tasks
        if len(values) == 1:
            return values * n_tasks
        if len(values) != n_tasks:
            raise SystemExit(f"--{name}: give 1 or {n_tasks} values (one per --tasks-parquet), got {len(values)}")
        return values

    if len(args.output) != n_tasks or len(args.meta) != n_tasks:
        raise SystemExit(f"--output and --meta need one value per --tasks-parquet ({n_tasks})")
    decodings = [Decoding(**json.loads(d)) for d in per_task(args.decoding_json, "decoding-json")]
    styles = per_task(args.prompt_style, "prompt-style")
    runs = [json.loads(r) if r else {"precision": args.precision, "backend": "vllm", "parallel": args.parallel,
                                     "batch_size": args.batch_size} for r in per_task(args.run_json, "run-json")]
    if len({(d.n, d.seed, d.temperature, d.top_p) for d in decodings}) != 1:
        raise SystemExit("tasks sharing one engine must share decoding n, seed, temperature and top_p")
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    jobs = []
    for path, style in zip(args.tasks_parquet, styles):
        items = pl.read_parquet(path)
        prompts = build_prompts_for_items(items, style, tokenizer)
        jobs.append((items.get_column("id").to_list(), prompts))
    max_len = max(needed_model_len(args.model, [len(tokenizer(p, add_special_tokens=False)["input_ids"])
                                                for p in prompts], dec.max_new_tokens)
                  for (_, prompts), dec in zip(jobs, decodings))
    detected = hardware_label()
    for run in runs:
        if run.get("hardware") not in (None, detected):
            log.warning("hardware label %r differs from this machine (%s); the label is kept, the machine is "
                        "recorded", run["hardware"], detected)
    eager = {"auto": None, "true": True, "false": False}[args.enforce_eager]
    gen = VllmGenerator(args.model, precision=args.precision, parallel=args.parallel, batch_size=args.batch_size,
                        n=decodings[0].n, seed=decodings[0].seed, max_model_len=max_len,
                        batch_invariant=args.batch_invariant, enforce_eager=eager)
    try:
        for (ids, prompts), decoding, style, run, out, meta in zip(jobs, decodings, styles, runs, args.output,
                                                                   args.meta):
            with Timer() as t:
                figures = gen.generate_table(prompts, ids, decoding=decoding, output=out, progress=False,
                                             code=args.code)
            log.info("%s: %.1f tokens/s", out, figures["tokens_per_s"])
            write_meta(meta, "generate", {"run": run, "decoding": decoding.as_dict(), "prompt_style": style,
                                          "batch_invariant": args.batch_invariant},
                       code=args.code, wall_seconds=t.seconds, detected_hardware=detected,
                       tasks_in_engine=n_tasks, **figures)
    finally:
        gen.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
