"""The generation engines, as a table: what each is, which config backends it serves, where it runs.

An engine is one module that implements ``open_engine(model_dir, job, *, code, options, log) -> OpenEngine``
(:mod:`lrmrepro.generate.engine_job`): load the model once for the job's grid point, prepare its runs' prompts,
and generate one run's table (through :func:`lrmrepro.generate.loop.generate_chunks`, which calls the engine for
one chunk at a time). :func:`lrmrepro.generate.engine_job.run_engine` is the one entry point of every engine job;
an engine with an environment of its own runs it in that interpreter through a thin command line (``cli``).

Adding an engine: its module, and an entry here (the configuration's ``backend`` names, checked by the schema,
come from :data:`ENGINES`; what it can execute is checked while the DAG is built, as
:mod:`lrmrepro.generate.vllm_support` does for vLLM). Pure Python: nothing of an engine is imported here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class EngineKind:
    name: str
    #: the module implementing ``open_engine``
    module: str
    #: configuration backend name -> options it sets (``vllm_batch_invariant``: vLLM with batch-invariant kernels)
    backends: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: the extra environment its jobs run in (:data:`lrmrepro.environment.EXTRA_ENVIRONMENTS`); None: the core one,
    #: in the rule's own process
    environment: str | None = None
    #: the command line (a module run with ``python -m``) of an engine with an environment of its own
    cli: str | None = None


#: every engine, in the order the configuration's backend names are listed
ENGINES: dict[str, EngineKind] = {e.name: e for e in [
    EngineKind("transformers", "lrmrepro.generate.transformers_backend", {"transformers": {}}),
    EngineKind("vllm", "lrmrepro.generate.vllm_backend",
               {"vllm": {"batch_invariant": False}, "vllm_batch_invariant": {"batch_invariant": True}},
               environment="vllm", cli="lrmrepro.generate.vllm_cli"),
]}

#: the configuration's backend names (``experiments.<name>.backend``), each served by one engine
BACKENDS: tuple[str, ...] = tuple(b for e in ENGINES.values() for b in e.backends)


def engine_of(backend: str) -> EngineKind:
    """The engine that serves the configuration backend ``backend``."""
    for engine in ENGINES.values():
        if backend in engine.backends:
            return engine
    raise ValueError(f"unknown backend {backend!r}; allowed values: {', '.join(BACKENDS)}")
