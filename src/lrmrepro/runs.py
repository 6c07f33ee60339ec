"""Runs: the points of the experiment grid, where their artifacts live, and the engines that generate them.

A *run* is one generation: nine labels (:attr:`Run.LABELS`) name it, and its artifacts live in one folder,
:attr:`Run.FOLDER`, whose Snakemake wildcards are named exactly like the labels::

    results/generations/{model}/{compression}/{task}/{precision}/{backend}-p{parallel}-bs{batch_size}-{hardware}/{decoding}

Everything that names a run (the rules' paths and wildcards, the run refs of the summary and statistics stages,
their table columns) uses these labels. ``expand_runs`` turns the ``experiments`` section of a validated
configuration into runs; ``engines`` groups them into model loads. Pure Python (no third-party imports): the
workflow imports it while it builds the DAG, and the vLLM environment's job code imports it too.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterable, Mapping

from .generate.engines import BACKENDS as ENGINE_BACKENDS, backend_label

#: a model's checkpoint folder: ``none`` is the uncompressed model, any other compression a compressed variant
CHECKPOINT = "results/models/{model}/{compression}"
#: the dense copy of a compressed variant whose execution is ``dequantized`` (rule dequantize)
DEQUANTIZED = "results/dequantized/{model}/{compression}"
#: a GGUF model as it is, for the llamacpp backend (rule fetch_gguf): its file, or every part of a split one
GGUF = "results/gguf/{model}"
#: a task's evaluation items (rule prepare_task)
TASK_ITEMS = "results/tasks/{task}.parquet"
#: the generation backends (``vllm_batch_invariant``: vLLM with ``VLLM_BATCH_INVARIANT=1``); the schema's enum equals it
BACKENDS = ENGINE_BACKENDS  # the generation engines' backend names (lrmrepro.generate.engines)


#: a repeated run of a decoding (``decoding.<name>.runs``): run i ≥ 2 has the label ``<name>_run<i>``
RUN_SUFFIX = re.compile(r"^(?P<name>.+)_run(?P<index>[2-9]|[1-9]\d+)$")


def decoding_labels(name: str, spec: Mapping[str, Any]) -> list[str]:
    """The run labels of decoding ``name``: the name itself (run 1) and ``<name>_run2`` … ``<name>_run<runs>``."""
    return [name, *[f"{name}_run{i}" for i in range(2, int(spec.get("runs", 1)) + 1)]]


def split_decoding(label: str, decodings: Mapping[str, Any]) -> tuple[str, int]:
    """(decoding name, run index from 1) of a run's decoding label; ``decodings``: the configuration's entries."""
    if label in decodings:
        return label, 1
    m = RUN_SUFFIX.match(label)
    if m and m["name"] in decodings and int(m["index"]) <= int(decodings[m["name"]].get("runs", 1)):
        return m["name"], int(m["index"])
    raise ValueError(f"decoding label {label!r} names no decoding (allowed: {', '.join(decodings)} and their "
                     "_run<i> repeats up to runs)")


def is_greedy(temperature: float) -> bool:
    """Decoding at temperature 0 is greedy (argmax; ``n`` must then be 1): the one place this is decided."""
    return temperature == 0


@dataclass(frozen=True)
class Run:
    """One generation run: a point of an experiment grid."""

    model: str
    compression: str
    task: str
    precision: str
    backend: str
    parallel: int
    batch_size: int
    hardware: str
    decoding: str

    #: the labels of a run, in path order (the dataclass fields)
    LABELS: ClassVar[tuple[str, ...]]
    #: the labels of the runtime configuration: what varies across the configurations the nondeterminism statistics
    #: compare (a *group* is the run's other labels)
    RUNTIME_LABELS: ClassVar[tuple[str, ...]] = ("backend", "parallel", "batch_size", "hardware")
    #: the labels whose values are integers (the rest are strings)
    INTEGER_LABELS: ClassVar[tuple[str, ...]] = ("parallel", "batch_size")
    RUNTIME: ClassVar[str] = "{backend}-p{parallel}-bs{batch_size}-{hardware}"
    #: the run folder below :attr:`ROOT`, with a wildcard per label (log and benchmark paths use it too)
    PATTERN: ClassVar[str] = "{model}/{compression}/{task}/{precision}/" + RUNTIME + "/{decoding}"
    ROOT: ClassVar[str] = "results/generations"
    FOLDER: ClassVar[str] = f"{ROOT}/{PATTERN}"

    @property
    def runtime(self) -> str:
        return self.RUNTIME.format(**self.labels())

    @property
    def folder(self) -> str:
        return self.FOLDER.format(**self.labels())

    @property
    def generations(self) -> str:
        return f"{self.folder}/generations.parquet"

    @property
    def scores(self) -> str:
        return f"{self.folder}/scores.parquet"

    @property
    def meta(self) -> str:
        return f"{self.folder}/generations.meta.json"

    def labels(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_wildcards(cls, wildcards: Mapping[str, Any]) -> "Run":
        """The run a job's wildcards name (the labels are the artifact path, nothing more)."""
        return cls(**{k: int(wildcards[k]) if k in cls.INTEGER_LABELS else str(wildcards[k]) for k in cls.LABELS})

    def ref(self) -> dict[str, Any]:
        """Labels plus artifact paths: what summary and statistics stages consume."""
        return {**self.labels(), "generations": self.generations, "scores": self.scores, "meta": self.meta}


Run.LABELS = tuple(f.name for f in dataclasses.fields(Run))
#: a run folder's runtime part (:attr:`Run.RUNTIME`) as a regular expression, one group per label: backend labels
#: are letters, digits and ``_`` (``llamacpp_nb8``), hardware labels letters, digits and ``-``
RUNTIME_FOLDER = re.compile(r"^(?P<backend>[A-Za-z0-9_]+)-p(?P<parallel>\d+)-bs(?P<batch_size>\d+)"
                            r"-(?P<hardware>[A-Za-z0-9-]+)$")


@dataclass(frozen=True)
class Engine:
    """One model load: the runs that share model, compression, precision, backend, parallel size, hardware and
    decoding, and differ only in task and batch size. The batch size is not an engine setting: one loaded model
    (a transformers model, a vLLM engine) serves every task and every batch size by sending consecutive chunks of
    ``batch_size`` prompts per call, so a grid point is generated by one job with one model load."""

    model: str
    compression: str
    precision: str
    backend: str
    parallel: int
    hardware: str
    decoding: str

    #: the run labels an engine fixes (a run's other labels, task and batch size, vary within one engine)
    LABELS: ClassVar[tuple[str, ...]]

    @classmethod
    def of(cls, run: Run) -> "Engine":
        return cls(**{k: getattr(run, k) for k in cls.LABELS})

    @property
    def slug(self) -> str:
        """A name usable as a Snakemake rule name suffix and a file name."""
        parts = [self.model, self.compression, self.precision, self.backend, f"p{self.parallel}", self.hardware,
                 self.decoding]
        return "_".join(re.sub(r"[^A-Za-z0-9]+", "_", p) for p in parts)

    @property
    def rule(self) -> str:
        """The name of its generation job's rule (``rules/generate.smk``)."""
        return f"generate_{self.slug}"

    @property
    def checkpoint(self) -> str:
        return CHECKPOINT.format(model=self.model, compression=self.compression)


Engine.LABELS = tuple(f.name for f in dataclasses.fields(Engine))
assert set(Engine.LABELS) == set(Run.LABELS) - {"task", "batch_size"}


def engines(runs: Iterable[Run]) -> dict[Engine, list[Run]]:
    """Runs grouped by engine, in run order; each engine's runs sorted by (task order of appearance, batch size).
    Raises ValueError when two engines get the same :attr:`Engine.slug` (names that differ only in punctuation)."""
    out: dict[Engine, list[Run]] = {}
    for run in runs:
        out.setdefault(Engine.of(run), []).append(run)
    slugs: dict[str, Engine] = {}
    for engine in out:
        if engine.slug in slugs:
            raise ValueError(f"engines {slugs[engine.slug]} and {engine} have the same name {engine.slug!r}; rename a "
                             "model, compression, decoding or hardware label so that they differ in letters or digits")
        slugs[engine.slug] = engine
    return out


def expand_runs(config: dict, experiment: str | None = None,
                resolve_hardware: Callable[[str], str] = lambda h: h) -> list[Run]:
    """All runs of one experiment (or of all experiments, deduplicated, in config order)."""
    names = [experiment] if experiment else list(config["experiments"])
    seen: dict[Run, None] = {}
    for name in names:
        exp = config["experiments"][name]
        # a runtime profile (llamacpp.runtimes) is part of the backend label: a runtime label like batch sizes
        backends = [backend_label(exp["backend"], p) for p in exp.get("runtimes", ["default"])]
        # repeated runs of a decoding (decoding.<name>.runs): each run its own label, seed and artifacts
        decodings = [lbl for d in exp["decoding"] for lbl in decoding_labels(d, config["decoding"].get(d, {}))]
        for combo in itertools.product(exp["models"], exp["compressions"], exp["tasks"], exp["precisions"], backends,
                                       exp["parallel"], exp["batch_sizes"], exp["hardware"], decodings):
            model, compression, task, precision, backend, parallel, batch_size, hardware, decoding = combo
            seen.setdefault(Run(model, compression, task, precision, backend, parallel, batch_size,
                                resolve_hardware(hardware), decoding))
    return list(seen)


def importance_models(config: dict, protected: Iterable[str] = ()) -> list[str]:
    """Models whose importance is computed: ``importance.models``, and every model compressed with a variant that
    protects the importance stage's top modules (``protected``: their names; its protect spec needs its own
    ranking)."""
    imp = config.get("importance") or {}
    protected = set(protected)
    needed = [m for exp in config["experiments"].values() if protected & set(exp["compressions"])
              for m in exp["models"]]
    return list(dict.fromkeys([*imp.get("models", []), *needed]))


def importance_runs(config: dict, resolve_hardware: Callable[[str], str] = lambda h: h,
                    model: str | None = None, compression: str | None = None,
                    protected: Iterable[str] = ()) -> list[Run]:
    """The runs whose traces the importance stage labels: for every importance model (:func:`importance_models`) and
    compression (``none`` and ``importance.compare``; or just ``model``/``compression``), every importance task, at
    the importance experiment's first precision and runtime configuration, with the importance decoding."""
    imp = config.get("importance")
    if not imp:
        return []
    exp = config["experiments"][imp["experiment"]]
    models = [model] if model else importance_models(config, protected)
    compressions = [compression] if compression else ["none", *imp["compare"]]
    return [Run(m, c, task, exp["precisions"][0], backend_label(exp["backend"], exp.get("runtimes", ["default"])[0]),
                exp["parallel"][0], exp["batch_sizes"][0],
                resolve_hardware(exp["hardware"][0]), imp["decoding"])
            for m in models for c in compressions for task in imp["tasks"]]
