"""Preflight: one short job per distinct (backend, precision, parallel size, hardware label) of a study, run before
the grid, so that a wrong CUDA build, a missing LayerCast plugin, an unsupported batch-invariant GPU or a hardware
label that is not true of the node is found in minutes, not when each of a grid's engine jobs starts.

A preflight job loads a model of the study (its uncompressed checkpoint) and generates a few tokens for two items of
one of its tasks through the same entry point as the real engine jobs (``engine_job.run_engine``: hardware check
before the model loads, LayerCast, the batch-invariant flag, tensor parallelism), then writes ``results/preflight/<backend>/<precision>/p<parallel>/<hardware>.json``: status, what it generated, and
the detected environment (package versions, torch's CUDA runtime, device, driver, detected hardware label).

The grid's engine jobs of a hardware label that needs a preflight (``preflight.required``: ``gpu`` = GPU labels,
``all``, ``none``) take that file as input: they do not start until their preflight passed.

  python -m lrmrepro.generate.preflight --model M --spec '{...}' --out OUT.json --log LOG   (the vLLM environment)
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

#: prompts per preflight (one batch) and tokens generated for each
N_ITEMS = 2
MAX_NEW_TOKENS = 4


REQUIRED = ("gpu", "all", "none")


def needs_preflight(required: str, hardware_label: str) -> bool:
    """``preflight.required``: gpu = every GPU label (a ``cpu-*`` label is the machine that builds the DAG or one
    like it), all = every label, none = no label."""
    if required not in REQUIRED:
        raise ValueError(f"preflight.required must be one of {', '.join(REQUIRED)}, got {required!r}")
    from ..hardware import on_cpu

    return required == "all" or (required == "gpu" and not on_cpu(hardware_label))


def engine_options(backend: str, config: dict[str, Any]) -> dict[str, Any]:
    """The options of an engine job that come from the configuration's engine section: llama.cpp's runtime profile
    (``runtime``: the settings of ``llamacpp.runtimes.<profile>``, or none for the default profile: the schema's
    defaults, :class:`lrmrepro.generate.llamacpp_backend.Runtime`)."""
    from .engines import DEFAULT_PROFILE, engine_of, split_backend

    kind = engine_of(backend)
    if not kind.profiles:
        return {}
    profile = split_backend(backend)[1]
    if profile == DEFAULT_PROFILE:
        return {"runtime": {}}
    return {"runtime": dict(config[kind.profiles]["runtimes"][profile])}


def points(engines: dict[Any, list[Any]], config: dict[str, Any], aliases: dict[str, tuple[str, ...]],
           tasks_parquet: str) -> dict[tuple[str, str, int, str], dict[str, Any]]:
    """The preflight points of a study's engines (:attr:`lrmrepro.study.Study.engines`): one per distinct (backend,
    precision, parallel size, hardware label), with the model and first task of the first engine there.
    ``aliases``: hardware label -> device-name patterns; ``tasks_parquet``: the task items' path pattern."""
    out: dict[tuple[str, str, int, str], dict[str, Any]] = {}
    for engine, runs in engines.items():
        key = (engine.backend, engine.precision, engine.parallel, engine.hardware)
        if key not in out:
            task = runs[0].task
            out[key] = {"backend": engine.backend, "precision": engine.precision, "parallel": engine.parallel,
                        "hardware": engine.hardware, "hardware_patterns": list(aliases.get(engine.hardware, ())),
                        "model": engine.model, "task": task, "prompt_style": config["tasks"][task]["prompt_style"],
                        "tasks_parquet": tasks_parquet.format(task=task),
                        "enforce_eager": config["vllm"]["enforce_eager"], **engine_options(engine.backend, config)}
    return out


def job_spec(point: dict[str, Any], workdir: str | Path) -> list[dict[str, Any]]:
    """The engine job of a preflight point (``point``: backend, precision, parallel, hardware, hardware_patterns, model,
    tasks_parquet, prompt_style): one run of ``N_ITEMS`` items, greedy, ``MAX_NEW_TOKENS`` tokens, in ``workdir``."""

    from .. import io

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    items = workdir / "items.parquet"
    io.write_parquet(io.read_parquet(point["tasks_parquet"]).head(N_ITEMS), items)
    run = {"model": point["model"], "compression": "none", "task": point["task"], "precision": point["precision"],
           "backend": point["backend"], "parallel": int(point["parallel"]), "batch_size": N_ITEMS,
           "hardware": point["hardware"], "decoding": "preflight"}
    return [{"run": run, "tasks_parquet": str(items), "prompt_style": point["prompt_style"],
             "decoding": {"max_new_tokens": MAX_NEW_TOKENS, "temperature": 0.0, "top_p": 1.0, "n": 1, "seed": 0},
             "output": str(workdir / "generations.parquet"), "meta": str(workdir / "generations.meta.json"),
             "hardware_patterns": list(point.get("hardware_patterns", ()))}]


def report(point: dict[str, Any], spec: dict[str, Any], seconds: float) -> dict[str, Any]:
    """What a passed preflight writes: the point, what it generated, and the environment it detected."""

    from .. import io
    from ..provenance import run_environment

    meta = io.read_json(spec["meta"])
    gens = io.read_parquet(spec["output"], columns=["id", "output_length"])
    return {"status": "passed", "point": {k: point[k] for k in ("backend", "precision", "parallel", "hardware")},
            "model": point["model"], "task": point["task"], "items": gens.height,
            "tokens": int(gens.get_column("output_length").sum()), "seconds": round(seconds, 2),
            "environment": run_environment(meta), "packages": meta["packages"], "hardware": meta["hardware"]}


def run(model_dir: str | Path, point: dict[str, Any], out: str | Path, *, log: logging.Logger) -> dict[str, Any]:
    """Run the preflight of ``point`` with the model at ``model_dir``; write ``out`` (JSON) when it passes."""
    from .. import io

    out = Path(out)
    workdir = out.with_suffix(".work")
    shutil.rmtree(workdir, ignore_errors=True)  # a preflight never resumes: it is the check that a job can start
    spec = job_spec(point, workdir)
    t0 = time.perf_counter()
    from .engine_job import run_engine

    options = {} if point.get("enforce_eager") is None else {
        "enforce_eager": {"auto": None, "true": True, "false": False}[str(point["enforce_eager"]).lower()]}
    if "runtime" in point:
        options = {"runtime": point["runtime"]}
    run_engine(str(model_dir), spec, code=None, log=log, options=options)
    result = report(point, spec[0], time.perf_counter() - t0)
    io.write_json(result, out)
    shutil.rmtree(workdir, ignore_errors=True)
    log.info("preflight %s passed: %d tokens in %.1f s on %s", out, result["tokens"], result["seconds"],
             result["environment"]["device"])
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--spec", required=True, help="the preflight point as JSON")
    p.add_argument("--out", required=True)
    p.add_argument("--log", required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=[logging.FileHandler(args.log), logging.StreamHandler(sys.stderr)])
    run(args.model, json.loads(args.spec), args.out, log=logging.getLogger("preflight"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
