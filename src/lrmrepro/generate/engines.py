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
    #: the configuration section of the engine's named runtime profiles (``llamacpp.runtimes``), or None: a run of
    #: profile ``<p>`` has the backend label ``<backend>_<p>`` (profile ``default``: the backend name alone), so that
    #: the profile is a runtime label the statistics compare like batch sizes (:func:`backend_label`)
    profiles: str | None = None


#: every engine, in the order the configuration's backend names are listed
ENGINES: dict[str, EngineKind] = {e.name: e for e in [
    EngineKind("transformers", "lrmrepro.generate.transformers_backend", {"transformers": {}}),
    EngineKind("vllm", "lrmrepro.generate.vllm_backend",
               {"vllm": {"batch_invariant": False}, "vllm_batch_invariant": {"batch_invariant": True}},
               environment="vllm", cli="lrmrepro.generate.vllm_cli"),
    EngineKind("llamacpp", "lrmrepro.generate.llamacpp_backend", {"llamacpp": {}}, environment="llamacpp",
               cli="lrmrepro.generate.engine_cli", profiles="llamacpp"),
]}

#: the configuration's backend names (``experiments.<name>.backend``), each served by one engine
BACKENDS: tuple[str, ...] = tuple(b for e in ENGINES.values() for b in e.backends)


#: the name of the runtime profile of a backend label without one
DEFAULT_PROFILE = "default"


def split_backend(label: str) -> tuple[str, str]:
    """(backend, runtime profile) of a run's backend label: ``llamacpp_nb8`` -> (``llamacpp``, ``nb8``); a backend
    name alone -> (it, ``default``)."""
    if label in BACKENDS:
        return label, DEFAULT_PROFILE
    for engine in ENGINES.values():
        for backend in engine.backends:
            if engine.profiles and label.startswith(backend + "_") and label[len(backend) + 1:].isalnum():
                return backend, label[len(backend) + 1:]
    raise ValueError(f"unknown backend {label!r}; allowed values: {', '.join(BACKENDS)} (and <backend>_<runtime "
                     "profile> for " + ", ".join(e.name for e in ENGINES.values() if e.profiles) + ")")


def backend_label(backend: str, profile: str = DEFAULT_PROFILE) -> str:
    """The run label of ``backend`` in runtime profile ``profile`` (the inverse of :func:`split_backend`)."""
    return backend if profile == DEFAULT_PROFILE else f"{backend}_{profile}"


def backend_labels(config: Mapping[str, Any]) -> list[str]:
    """Every backend label a configuration can name: the backends, and each profiled engine's backends with each of
    the configuration's runtime profiles."""
    labels = list(BACKENDS)
    for engine in ENGINES.values():
        if engine.profiles:
            profiles = (config.get(engine.profiles) or {}).get("runtimes") or {}
            labels += [backend_label(b, p) for b in engine.backends for p in profiles if p != DEFAULT_PROFILE]
    return labels


def engine_of(backend: str) -> EngineKind:
    """The engine that serves the configuration backend (or backend label with a runtime profile) ``backend``."""
    name = split_backend(backend)[0]
    for engine in ENGINES.values():
        if name in engine.backends:
            return engine
    raise AssertionError(name)
