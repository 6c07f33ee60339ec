"""A study: the validated configuration as typed objects, built once, which answers the questions the rules ask.

The workflow (``rules/common.smk``) builds one :class:`Study` from the validated configuration
(:func:`lrmrepro.config.load_study`) while it plans the DAG; every rule asks it, never the raw ``experiments``
dicts: which runs an experiment has (its grid is expanded here, once), whether it is greedy, sampled, a compression
or sparsity comparison, which run is generated twice for the noise floor, which runs the importance stage labels,
the scoring policy of every run, every compressed variant (:class:`lrmrepro.compressions.Compression`) and which
tasks stand for knowledge and for reasoning (the task records' ``skill``). Pure Python (no third-party imports),
like :mod:`lrmrepro.runs`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, Callable, Iterable, Mapping

from .compressions import Compression, compressions
from .hardware import aliases
from .runs import DEQUANTIZED, GGUF, TASK_ITEMS, Engine, Run, engines, expand_runs, importance_runs, is_greedy, \
    split_decoding


#: the study whose statistics, tables, figures and summary are results/ itself
DEFAULT_STUDY = "default"


def study_name(config: Mapping[str, Any], study_files: Iterable[str]) -> str:
    """The study's name: ``config["study"]`` where set; else ``default`` for config.yaml (the working directory's
    study) and the first study file's name without its extension for any other (``configs/smollm2-cpu.yaml`` ->
    ``smollm2-cpu``)."""
    if config.get("study"):
        return str(config["study"])
    files = [str(f) for f in study_files]
    if not files or PurePath(files[0]).name == "config.yaml":
        return DEFAULT_STUDY
    return PurePath(files[0]).name.rsplit(".", 1)[0]


def study_folders(name: str) -> tuple[str, str]:
    """(results folder, logs folder) of a study's own artifacts: ``results``/``logs`` for the default study,
    ``results/studies/<name>``/``logs/studies/<name>`` for any other."""
    if name == DEFAULT_STUDY:
        return "results", "logs"
    return f"results/studies/{name}", f"logs/studies/{name}"


class StudyError(ValueError):
    """The grid is inconsistent (a run two experiments want scored differently, two engines of one name); the
    message names the key. :class:`lrmrepro.config.ConfigError` is raised instead where the config is at fault."""


@dataclass(frozen=True)
class Experiment:
    """One ``experiments.<name>`` entry of a validated configuration, with its runs."""

    name: str
    spec: Mapping[str, Any]
    runs: tuple[Run, ...]
    #: which of its decodings are greedy (temperature 0), by decoding name
    greedy_decodings: tuple[str, ...]
    #: sparsity of each of its compressions (None: not a pruned variant)
    sparsities: Mapping[str, float | None]

    def __getitem__(self, key: str) -> Any:
        return self.spec[key]

    @property
    def models(self) -> list[str]:
        return list(self.spec["models"])

    @property
    def compressions(self) -> list[str]:
        return list(self.spec["compressions"])

    @property
    def compressed(self) -> list[str]:
        """Its compressed variants (every compression but ``none``)."""
        return [c for c in self.spec["compressions"] if c != "none"]

    @property
    def decoding(self) -> list[str]:
        return list(self.spec["decoding"])

    @property
    def stats(self) -> bool:
        """Nondeterminism statistics across its runtime configurations (``stats: true``)."""
        return bool(self.spec["stats"])

    @property
    def greedy(self) -> bool:
        """Some decoding is greedy: Tables 3-4, Figures 4-5 and the divergence diagnostics."""
        return bool(self.greedy_decodings)

    @property
    def sampled(self) -> bool:
        """Some decoding samples: Table 5 (Pass@1 std)."""
        return len(self.greedy_decodings) < len(self.spec["decoding"])

    @property
    def compares_compressions(self) -> bool:
        """More than one compression in the grid: the compression table and the bits-vs-accuracy figure."""
        return len(self.spec["compressions"]) > 1

    @property
    def sparsity_sweep(self) -> bool:
        """A compression comparison with a pruned variant: the sparsity-sweep figure."""
        return self.compares_compressions and any(self.sparsities.get(c) for c in self.spec["compressions"])

    @property
    def noise_from(self) -> str | None:
        """The experiment whose runtime grid gives the noise a compression effect is compared with."""
        return self.spec.get("noise_from")

    @property
    def noise_floor_run(self) -> Run | None:
        """The run generated a second time for the noise floor: the first greedy transformers run (None: none)."""
        for run in self.runs:
            if run.backend == "transformers" and run.decoding in self.greedy_decodings:
                return run
        return None


class Study:
    """The validated configuration ``config`` as experiments, runs and engines, with hardware labels resolved by
    ``resolve_hardware`` (``auto`` -> this machine's label in the workflow). Raises :class:`StudyError` when two
    experiments give one run different scoring policies, or two engines get the same name."""

    def __init__(self, config: Mapping[str, Any], resolve_hardware: Callable[[str], str] = lambda h: h) -> None:
        self.config = config
        #: hardware label -> device-name patterns: the built-in map with the study's ``hardware_aliases``
        self.hardware_aliases = aliases(config.get("hardware_aliases"))
        greedy = tuple(name for name, d in config["decoding"].items() if is_greedy(d["temperature"]))
        self.greedy_decodings = greedy
        #: every compressed variant, typed (``compressions.<name>``)
        self.compressions: dict[str, Compression] = compressions(config)
        sparsity = {name: c.sparsity for name, c in self.compressions.items()}
        self.experiments: dict[str, Experiment] = {
            name: Experiment(name, exp, tuple(expand_runs(config, name, resolve_hardware)),
                             tuple(d for d in exp["decoding"] if d in greedy),
                             {c: sparsity.get(c) for c in exp["compressions"]})
            for name, exp in config["experiments"].items()}
        #: every run of every experiment, once, in config order
        self.runs: list[Run] = list(dict.fromkeys(r for e in self.experiments.values() for r in e.runs))
        #: the runs whose traces the importance stage labels (some are in no accuracy table)
        self.importance_runs: list[Run] = importance_runs(
            config, resolve_hardware, protected=[n for n, c in self.compressions.items() if c.protect_from])
        self.scoring_policies = self._scoring_policies()
        in_grid = set(self.runs)
        try:
            #: one engine (one model load, one job) per grid point: the runs that differ only in task and batch size
            self.engines: dict[Engine, list[Run]] = engines(
                self.runs + [r for r in self.importance_runs if r not in in_grid])
        except ValueError as err:
            raise StudyError(str(err)) from None

    def _scoring_policies(self) -> dict[Run, str]:
        policies: dict[Run, tuple[str, str]] = {}
        for name, exp in self.experiments.items():
            policy = exp["scoring"]
            for run in exp.runs:
                first = policies.setdefault(run, (name, policy))
                if first[1] != policy:
                    raise StudyError(
                        f"config key experiments.{name}.scoring: {policy!r}, but experiment {first[0]!r} sets "
                        f"{first[1]!r} and both contain the run {run.folder}; a run is scored once: give both "
                        "experiments the same scoring policy")
        return {run: policy for run, (_, policy) in policies.items()}

    # --- experiments by what they produce
    def stats_experiments(self) -> list[Experiment]:
        return [e for e in self.experiments.values() if e.stats]

    def compression_experiments(self) -> list[Experiment]:
        return [e for e in self.experiments.values() if e.compares_compressions]

    def sparsity_experiments(self) -> list[Experiment]:
        return [e for e in self.experiments.values() if e.sparsity_sweep]

    def compressions_of(self, method: str) -> list[str]:
        """The names of the compressed variants of one method (``recipe`` or ``distill``)."""
        return [name for name, c in self.compressions.items() if c.method == method]

    def engine_checkpoint(self, engine: Engine) -> str:
        """The checkpoint an engine loads: the variant's compressed checkpoint, its dense copy where the variant's
        ``execution`` is ``dequantized``, or (llama.cpp) the GGUF file(s) themselves."""
        from .generate.engines import engine_of

        if engine_of(engine.backend).name == "llamacpp":
            return GGUF.format(model=engine.model)
        comp = self.compressions.get(engine.compression)
        if comp is not None and comp.dequantized:
            return DEQUANTIZED.format(model=engine.model, compression=engine.compression)
        return engine.checkpoint

    def dequantized_compressions(self) -> list[str]:
        return [name for name, c in self.compressions.items() if c.dequantized]

    # --- tasks
    def task_groups(self, names: Iterable[str]) -> tuple[list[str], list[str]]:
        """(knowledge tasks, reasoning tasks) among the task names ``names``: by ``tasks.<name>.skill`` where the
        study sets it, else by the task record's ``skill``."""
        from .tasks.registry import record_of

        skills = {}
        for name in names:
            spec = self.config["tasks"][name]
            rec = record_of(name, spec)
            skills[name] = spec.get("skill", rec.skill if rec is not None else "")  # the study's word first
        return ([n for n, s in skills.items() if s == "knowledge"], [n for n, s in skills.items() if s == "reasoning"])

    def weight_count_experiments(self) -> list[Experiment]:
        """Compression comparisons with a knowledge and a reasoning task and a pruned or distilled variant: those
        that get the weight-count table and figure (finding (1))."""
        return [e for e in self.experiments.values()
                if e.compares_compressions and all(self.task_groups(e["tasks"]))
                and any(self.compressions[c].removes_weights for c in e.compressed)]

    # --- runs
    def decoding_spec(self, run: Run) -> dict[str, Any]:
        """The decoding settings of a run: its decoding entry and its task's ``max_new_tokens``; run i of a decoding
        with ``runs`` (label ``<name>_run<i>``) samples with seed ``seed + i - 1``."""
        name, index = split_decoding(run.decoding, self.config["decoding"])
        spec = {k: v for k, v in self.config["decoding"][name].items() if k != "runs"}
        spec["seed"] = spec.get("seed", 0) + index - 1
        return {**spec, "max_new_tokens": self.config["tasks"][run.task]["max_new_tokens"]}

    def run_spec(self, run: Run, output: str | None = None, meta: str | None = None) -> dict[str, Any]:
        """What an engine job needs to know about one of its runs (:mod:`lrmrepro.generate.engine_job`), as plain
        values (it crosses into the vLLM environment as JSON); ``hardware_patterns``: what the run's hardware label
        means, checked on the node before the model loads."""
        return {"run": run.labels(), "tasks_parquet": TASK_ITEMS.format(task=run.task),
                "prompt_style": self.config["tasks"][run.task]["prompt_style"], "decoding": self.decoding_spec(run),
                "output": output or run.generations, "meta": meta or run.meta,
                "hardware_patterns": list(self.hardware_aliases.get(run.hardware, ()))}

    def pass_at_ks(self, experiment: str) -> list[int]:
        """k values for unbiased pass@k: 1 and every power of two up to the largest n of the experiment's decodings."""
        n = max(self.config["decoding"][d]["n"] for d in self.experiments[experiment].decoding)
        return sorted({1, *[2**i for i in range(1, 12) if 2**i <= n]})

    def importance_reference_runs(self, model: str, compression: str) -> list[Run]:
        """The importance runs of one (model, compression): the traces its ranking is computed from."""
        return [r for r in self.importance_runs if r.model == model and r.compression == compression]
