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


def job_parser(doc: str, model_help: str) -> argparse.ArgumentParser:
    """The arguments every engine job's command line takes (this one's and ``vllm_cli``'s)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help=model_help)
    p.add_argument("--job", required=True, help="the run specs as JSON, or @path to a JSON file")
    p.add_argument("--log", required=True, help="log file")
    p.add_argument("--code", default=None, help="code fingerprint of the rule (part of every resume key)")
    return p


def parse_args(argv=None):
    p = job_parser(__doc__, "what the engine loads (llamacpp: the GGUF model's folder)")
    p.add_argument("--options", default="{}", help="the engine's options as JSON")
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

    run_engine(args.model, load_job(args.job), code=args.code, log=logging.getLogger("generate"),
               options=json.loads(args.options))
    return 0


if __name__ == "__main__":
    sys.exit(main())
