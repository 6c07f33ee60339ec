"""Configuration: schema validation with readable errors, defaults, cross-references, and the experiment grid.

``validate_config`` checks ``config.yaml`` against ``schemas/config.schema.yaml`` and fills in the schema's
defaults; an error names the key (as a dotted path) and the allowed values. ``expand_runs`` turns the
``experiments`` section into the list of generation runs (one per grid point), the single source of truth for
every path the Snakefile asks for.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "config.schema.yaml"
PRECISIONS = ("bf16", "fp16", "fp32", "layercast")


def vllm_python(basedir: str | Path) -> str:
    """Interpreter of the vLLM environment: ``$LRMREPRO_VLLM_PYTHON``, else ``.venvs/vllm-cpu/bin/python`` of the
    checkout (made by scripts/setup-env-vllm.sh). vLLM has its own environment because it pins other
    compressed-tensors/transformers versions than llm-compressor."""
    import os

    return os.environ.get("LRMREPRO_VLLM_PYTHON") or str(Path(basedir) / ".venvs" / "vllm-cpu" / "bin" / "python")


class ConfigError(ValueError):
    """A configuration error; the message names the key and what is allowed."""


def load_schema(path: str | Path = SCHEMA_PATH) -> dict:
    return yaml.safe_load(Path(path).read_text())


def _dotted(path: Any) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<top level>"


def _explain(err: jsonschema.ValidationError) -> str:
    key = _dotted(err.absolute_path)
    v = err.validator
    if v == "enum":
        return f"config key {key}: {err.instance!r} is not allowed; allowed values: {', '.join(map(str, err.validator_value))}"
    if v == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed)) if isinstance(err.instance, dict) else []
        return f"config key {key}: unknown key(s) {', '.join(extra)}; allowed keys: {', '.join(allowed)}"
    if v == "required":
        return f"config key {key}: {err.message}"
    if v in ("propertyNames", "pattern"):
        return f"config key {key}: {err.message} (names may use letters, digits, '_' and '.'; 'none' is reserved)"
    return f"config key {key}: {err.message}"


def _fill_defaults(instance: Any, schema: dict, root: dict) -> None:
    """Fill ``default`` values of object properties, recursively (also into additionalProperties objects)."""
    if "$ref" in schema:
        ref = schema["$ref"].split("/")[1:]
        target = root
        for part in ref:
            target = target[part]
        schema = target
    if not isinstance(instance, dict) or schema.get("type") not in (None, "object"):
        return
    for key, sub in schema.get("properties", {}).items():
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if key in instance:
            _fill_defaults(instance[key], sub, root)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key, value in instance.items():
            if key not in schema.get("properties", {}):
                _fill_defaults(value, extra, root)


def validate_config(config: dict, schema_path: str | Path = SCHEMA_PATH) -> dict:
    """Validate, fill defaults, check cross-references. Returns a new dict; raises ConfigError."""
    config = copy.deepcopy(config)
    schema = load_schema(schema_path)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(list(e.absolute_path)), str(e.absolute_path)))
    if errors:
        best = jsonschema.exceptions.best_match(errors)
        raise ConfigError(_explain(best))
    _fill_defaults(config, schema, schema)
    _check_references(config)
    _check_importance(config)
    return config


def _check_references(config: dict) -> None:
    models, tasks = config["models"], config["tasks"]
    comps = ["none", *config.get("compressions", {})]
    for name, m in models.items():
        need = {"hub": "id", "local": "path", "gguf": "gguf"}.get(m["source"])
        if need and need not in m:
            raise ConfigError(f"config key models.{name}.{need}: required for source {m['source']!r}")
    for name, t in tasks.items():
        if t["source"] == "synthetic" and t.get("generator", name) not in ("arith", "timeline", "logic", "multihop"):
            raise ConfigError(
                f"config key tasks.{name}.generator: {t.get('generator', name)!r} is not a synthetic generator; "
                "allowed values: arith, timeline, logic, multihop")
    for ename, exp in config["experiments"].items():
        for key, allowed in (("models", list(models)), ("tasks", list(tasks)), ("compressions", comps),
                             ("decoding", list(config["decoding"]))):
            for i, value in enumerate(exp.get(key, [])):
                if value not in allowed:
                    raise ConfigError(
                        f"config key experiments.{ename}.{key}[{i}]: {value!r} is not defined; allowed values: {', '.join(allowed)}")
        for dname in exp["decoding"]:
            d = config["decoding"][dname]
            if d["temperature"] == 0 and d["n"] != 1:
                raise ConfigError(f"config key decoding.{dname}.n: greedy decoding (temperature 0) needs n = 1")


def _check_importance(config: dict) -> None:
    imp = config.get("importance")
    needs = [n for n, c in config.get("compressions", {}).items() if c.get("protect_from_importance")]
    if imp is None:
        if needs:
            raise ConfigError(f"config key compressions.{needs[0]}.protect_from_importance: needs an `importance` section")
        return
    for key, allowed in (("experiment", list(config["experiments"])), ("decoding", list(config["decoding"]))):
        if imp[key] not in allowed:
            raise ConfigError(f"config key importance.{key}: {imp[key]!r} is not defined; allowed values: {', '.join(allowed)}")
    for key, allowed in (("tasks", list(config["tasks"])), ("models", list(config["models"])),
                         ("compare", list(config.get("compressions", {})))):
        for i, v in enumerate(imp.get(key, [])):
            if v not in allowed:
                raise ConfigError(f"config key importance.{key}[{i}]: {v!r} is not defined; allowed values: {', '.join(allowed)}")
    protect = imp.get("protect", {})
    if needs and len([k for k in ("k", "weight_fraction") if k in protect]) != 1:
        raise ConfigError("config key importance.protect: give exactly one of k, weight_fraction "
                          f"(compressions {', '.join(needs)} protect the importance stage's top modules)")
    for name in config.get("compressions", {}):
        c = config["compressions"][name]
        if c.get("only") and (c.get("ignore") or c.get("protect_from_importance")):
            raise ConfigError(f"config key compressions.{name}.only: cannot be combined with ignore / protect_from_importance")


def load_config(path: str | Path) -> dict:
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    return validate_config(raw or {})


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

    @property
    def runtime(self) -> str:
        return f"{self.backend}-p{self.parallel}-bs{self.batch_size}-{self.hardware}"

    @property
    def folder(self) -> str:
        return f"results/generations/{self.model}/{self.compression}/{self.task}/{self.precision}/{self.runtime}/{self.decoding}"

    @property
    def generations(self) -> str:
        return f"{self.folder}/generations.parquet"

    @property
    def scores(self) -> str:
        return f"{self.folder}/scores.parquet"

    def labels(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_wildcards(cls, wildcards: Any) -> "Run":
        """The run a generation job's wildcards name (the labels are the artifact path, nothing more)."""
        return cls(wildcards["model"], wildcards["compression"], wildcards["task"], wildcards["precision"],
                   wildcards["backend"], int(wildcards["parallel"]), int(wildcards["batch"]), wildcards["hw"],
                   wildcards["decoding"])

    def ref(self) -> dict[str, Any]:
        """Labels plus artifact paths: what summary and statistics stages consume."""
        return {**self.labels(), "generations": self.generations, "scores": self.scores}


def expand_runs(config: dict, experiment: str | None = None,
                resolve_hardware: Callable[[str], str] = lambda h: h) -> list[Run]:
    """All runs of one experiment (or of all experiments, deduplicated, in config order)."""
    names = [experiment] if experiment else list(config["experiments"])
    seen: dict[Run, None] = {}
    for name in names:
        exp = config["experiments"][name]
        for combo in itertools.product(exp["models"], exp["compressions"], exp["tasks"], exp["precisions"],
                                       exp["parallel"], exp["batch_sizes"], exp["hardware"], exp["decoding"]):
            model, comp, task, prec, par, bs, hw, dec = combo
            seen.setdefault(Run(model, comp, task, prec, exp["backend"], par, bs, resolve_hardware(hw), dec))
    return list(seen)
