"""The command line of an engine job in an environment of its own (``python -m lrmrepro.generate.engine_cli``), run
with that environment's python from a `shell:` rule (the llamacpp engine; vLLM has its own, ``vllm_cli``, for its
engine flags and its spawned workers): one job generates every run of a grid point, each into its own
generations.parquet, meta.json and resumable chunk store (``lrmrepro.generate.engine_job.run_engine``).

  .venvs/llamacpp/bin/python -m lrmrepro.generate.engine_cli --model M --job '[{run spec}, ...]' --log L \\
      [--code FP] [--options '{"runtime": {...}}']

``--job @file.json`` reads the run specs from a file; ``--options``: the engine's options as JSON (llamacpp: its
runtime profile). A thin command line: the job is ``engine_job.run_engine``.
"""

import argparse
import json
import logging
import sys


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="what the engine loads (llamacpp: the GGUF model's folder)")
    p.add_argument("--job", required=True, help="the run specs as JSON, or @path to a JSON file")
    p.add_argument("--log", required=True, help="log file")
    p.add_argument("--code", default=None, help="code fingerprint of the rule (part of every resume key)")
    p.add_argument("--options", default="{}", help="the engine's options as JSON")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from .vllm_cli import job_setup, load_job

    job_setup(args.log)
    from .engine_job import run_engine

    run_engine(args.model, load_job(args.job), code=args.code, log=logging.getLogger("generate"),
               options=json.loads(args.options))
    return 0


if __name__ == "__main__":
    sys.exit(main())
