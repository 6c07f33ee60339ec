"""Configuration: loading (strict YAML), schema validation with readable errors, defaults, cross-references.

``validate_config`` checks ``config.yaml`` against ``schemas/config.schema.yaml`` and fills in the schema's
defaults, and a task's ``prompt_style`` and ``max_new_tokens`` from its record (:mod:`lrmrepro.tasks.registry`); an
error names the key (as a dotted path) and the allowed values. ``load_study`` reads a study's files the way the
workflow does. The grid the configuration describes (experiments, runs, engines, each run's scoring policy) is a
:class:`lrmrepro.study.Study` built from the validated configuration.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Iterable

import jsonschema
import yaml

from .compress.distill_config import DistillConfigError, check_distill_entries
from .paths import SCHEMA
from .registries import fill_enums
from .runs import is_greedy
from .tasks import registry

SCHEMA_PATH = SCHEMA


class ConfigError(ValueError):
    """A configuration error; the message names the key and what is allowed. Several errors found at once are one
    ConfigError listing each (``errors``)."""

    def __init__(self, message: str, errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or [message]

    @classmethod
    def of(cls, messages: list[str]) -> "ConfigError":
        if len(messages) == 1:
            return cls(messages[0])
        return cls(f"{len(messages)} errors:\n" + "\n".join(f"  - {m}" for m in messages), messages)


def load_schema(path: str | Path = SCHEMA_PATH) -> dict:
    """The configuration schema, with the enums of its ``x-registry`` fields filled from the registries
    (:mod:`lrmrepro.registries`)."""
    return fill_enums(yaml.safe_load(Path(path).read_text()))


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
    if v == "not" and isinstance(err.validator_value, dict) and "const" in err.validator_value:
        return (f"config key {key}: {err.instance!r} is not allowed ({err.instance!r} is reserved: the uncompressed "
                "model)")
    if v in ("propertyNames", "pattern"):
        pattern = err.schema.get("pattern") if v == "pattern" else (err.validator_value or {}).get("pattern")
        name = err.instance if v == "pattern" else None
        if v == "propertyNames":  # the offending name is not in the error's path: find it
            bad = [n for n in (err.instance or {}) if isinstance(n, str) and pattern and not re.match(pattern, n)]
            name = bad[0] if bad else None
        reserved = " ('none' is reserved)" if v == "propertyNames" and name == "none" else ""
        return (f"config key {key}: {name!r} is not allowed{reserved}; allowed: {pattern_hint(pattern)}"
                if pattern else f"config key {key}: {err.message}")
    return f"config key {key}: {err.message}"


def pattern_hint(pattern: str) -> str:
    """Plain words for a name pattern of the schema (``^[A-Za-z0-9_.]+$`` -> letters, digits, '_' and '.')."""
    m = re.fullmatch(r"\^\[(.*)\]\+\$", pattern)
    if not m:
        return f"names matching {pattern}"
    body, words = m.group(1), []
    for chunk, word in (("A-Za-z", "letters"), ("0-9", "digits")):
        if chunk in body:
            words.append(word)
            body = body.replace(chunk, "")
    words += [f"{c!r}" for c in body]
    return (", ".join(words[:-1]) + " and " + words[-1] if len(words) > 1 else words[0]) + " only"


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


def validate_config(config: dict, schema_path: str | Path = SCHEMA_PATH, *, workdir: str | Path | None = None) -> dict:
    """Validate, fill defaults, check cross-references. Returns a new dict; raises ConfigError.

    With ``workdir`` (the directory the workflow runs in), files the configuration names are checked too:
    benchmark ``path``s of the tasks an experiment uses (unless their items were already prepared there)."""
    config = copy.deepcopy(config)
    schema = load_schema(schema_path)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(list(e.absolute_path)), str(e.absolute_path)))
    if errors:
        # every key that is wrong, each with its most telling error (one key can fail several schema branches)
        by_key: dict[tuple, list[jsonschema.ValidationError]] = {}
        for e in errors:
            by_key.setdefault(tuple(e.absolute_path), []).append(e)
        raise ConfigError.of([_explain(jsonschema.exceptions.best_match(errs)) for errs in by_key.values()])
    _fill_defaults(config, schema, schema)
    found: list[str] = []

    def check(fn, *args) -> None:
        """Run one cross-check, keeping its errors; a check that fails only because of an error already found
        (a name that is not defined) adds nothing."""
        try:
            fn(*args)
        except ConfigError as err:
            found.extend(err.errors)
        except DistillConfigError as err:
            found.append(str(err))
        except (KeyError, TypeError, AttributeError):
            if not found:
                raise

    check(_check_references, config)
    check(_fill_task_defaults, config)
    check(_check_recipes, config)
    # method: distill entries (lrmrepro.compress.distill_config)
    check(lambda: check_distill_entries(config, schema, workdir, fill_defaults=_fill_defaults))
    check(_check_importance, config)
    if workdir is not None:
        check(_check_files, config, Path(workdir))
    if found:
        raise ConfigError.of(list(dict.fromkeys(found)))
    return config


def _check_recipes(config: dict) -> None:
    from .compress.recipes import available_recipes, recipes_dir

    names = available_recipes()
    bad = [f"config key compressions.{name}.recipe: {entry['recipe']!r} is not a recipe; allowed values "
           f"(files {recipes_dir()}/<name>.yaml): {', '.join(names) or '(none)'}"
           for name, entry in config.get("compressions", {}).items()
           if entry.get("method") != "distill" and entry["recipe"] not in names]
    if bad:
        raise ConfigError.of(bad)


def used_tasks(config: dict) -> list[str]:
    """Tasks some experiment (or the importance stage) generates for, in config order."""
    used = {t for exp in config["experiments"].values() for t in exp["tasks"]}
    used |= set((config.get("importance") or {}).get("tasks", []))
    return [t for t in config["tasks"] if t in used]


def _check_files(config: dict, workdir: Path) -> None:
    for name in used_tasks(config):
        spec = config["tasks"][name]
        if spec["source"] != "benchmark" or "path" not in spec:
            continue
        if (workdir / "results" / "tasks" / f"{name}.parquet").exists():
            continue  # already prepared: the data file is not needed again
        path = Path(spec["path"])
        full = path if path.is_absolute() else workdir / path
        if not full.is_file():
            raise ConfigError(
                f"config key tasks.{name}.path: {spec['path']!r} does not exist (looked at {full}); give a local copy "
                f"of the benchmark ({spec.get('benchmark', name)}: see docs/tasks.md for the row format), or remove "
                "`path` to load it from the Hugging Face hub")


def _check_llamacpp(ename: str, exp: dict, config: dict) -> list[str]:
    """What an experiment on llama.cpp (backend llamacpp) needs, and runtime profiles used only there."""
    bad = []
    profiles = (config.get("llamacpp") or {}).get("runtimes") or {}
    if exp["backend"] != "llamacpp":
        if exp["runtimes"] != ["default"]:
            bad.append(f"config key experiments.{ename}.runtimes: {exp['runtimes']} is for backend llamacpp (its "
                       f"runtime profiles); this experiment's backend is {exp['backend']!r}")
        return bad
    for i, name in enumerate(exp["runtimes"]):
        if name != "default" and name not in profiles:
            bad.append(f"config key experiments.{ename}.runtimes[{i}]: {name!r} is not a runtime profile; allowed "
                       f"values: {', '.join(['default', *profiles])} (define it under llamacpp.runtimes)")
    for i, model in enumerate(exp["models"]):
        source = config["models"].get(model, {}).get("source")
        if source is not None and source != "gguf":
            bad.append(f"config key experiments.{ename}.models[{i}]: {model!r} has source {source!r}; backend "
                       "llamacpp runs GGUF models (source gguf): give the model as a GGUF file or hub repository and "
                       "quantization, or use backend transformers or vllm")
    for i, comp in enumerate(exp["compressions"]):
        if comp != "none":
            bad.append(f"config key experiments.{ename}.compressions[{i}]: {comp!r}: backend llamacpp runs GGUF models "
                       "as they are (a GGUF quantization is a model of its own: models.<name>.quant); allowed "
                       "values: none")
    for i, precision in enumerate(exp["precisions"]):
        if precision != "fp32":
            bad.append(f"config key experiments.{ename}.precisions[{i}]: {precision!r}: llama.cpp computes in the "
                       "types its GGUF tensors and kernels fix (activations in fp32 on CPU); allowed values: fp32 "
                       "(vary llamacpp.runtimes.<profile>.kv_cache for the KV cache's type)")
    for name, prof in profiles.items():
        if prof.get("kv_cache", "f16") not in ("f32", "f16", "bf16") and not prof.get("flash_attn"):
            bad.append(f"config key llamacpp.runtimes.{name}.kv_cache: {prof['kv_cache']!r} needs flash_attn: true "
                       "(llama.cpp quantizes the V cache only with flash attention); allowed without it: f32, f16, bf16")
        if prof.get("n_ubatch", 512) > prof.get("n_batch", 512):
            bad.append(f"config key llamacpp.runtimes.{name}.n_ubatch: {prof['n_ubatch']} is larger than n_batch "
                       f"{prof.get('n_batch', 512)}; allowed: at most n_batch")
    return bad


def _check_references(config: dict) -> None:
    """Every name an experiment uses is defined, and each entry is consistent; every problem found is reported."""
    bad: list[str] = []
    models, tasks = config["models"], config["tasks"]
    comps = ["none", *config.get("compressions", {})]
    for name, m in models.items():
        need = {"hub": "id", "local": "path", "gguf": "gguf"}.get(m["source"])
        if m["source"] == "gguf" and "id" in m:
            need = "quant"  # a hub repository of GGUF files: which quantization
            if "gguf" in m:
                bad.append(f"config key models.{name}.gguf: {m['gguf']!r} given with id {m['id']!r}; a GGUF model is "
                           "either a file (gguf) or a hub repository and quantization name (id and quant)")
        elif "quant" in m:
            bad.append(f"config key models.{name}.quant: {m['quant']!r} is for source gguf with id (a hub repository "
                       f"of GGUF files), not source {m['source']!r}" + (" with a file" if m["source"] == "gguf" else ""))
        if need and need not in m:
            bad.append(f"config key models.{name}.{need}: required for source {m['source']!r}"
                       + (" with id (a hub repository of GGUF files)" if need == "quant" else ""))
        if m["source"] == "embedded":
            try:
                _check_embedded(name, config["train"])
            except ConfigError as err:
                bad.extend(err.errors)
    for name, t in tasks.items():
        if t["source"] == "synthetic" and t.get("generator", name) not in registry.GENERATORS:
            bad.append(
                f"config key tasks.{name}.generator: {t.get('generator', name)!r} is not a synthetic generator; "
                f"allowed values: {', '.join(registry.generator_names())}")
        if t["source"] == "benchmark" and t.get("benchmark", name) not in registry.BENCHMARKS:
            bad.append(
                f"config key tasks.{name}.benchmark: {t.get('benchmark', name)!r} is not a benchmark; "
                f"allowed values: {', '.join(registry.benchmark_names())}")
    for ename, exp in config["experiments"].items():
        for key, allowed in (("models", list(models)), ("tasks", list(tasks)), ("compressions", comps),
                             ("decoding", list(config["decoding"]))):
            for i, value in enumerate(exp.get(key, [])):
                if value not in allowed:
                    bad.append(
                        f"config key experiments.{ename}.{key}[{i}]: {value!r} is not defined; allowed values: {', '.join(allowed)}")
        comps_used = exp.get("compressions", ["none"])
        if len(comps_used) > 1 and "none" not in comps_used:
            bad.append(f"config key experiments.{ename}.compressions: {comps_used} has no 'none': an experiment that "
                       "compares compressions measures each against the uncompressed model (the compression table, "
                       "the effects against runtime noise); add none")
        noise = exp.get("noise_from")
        if noise is not None:
            stats_exps = [n for n, e in config["experiments"].items() if e["stats"]]
            if noise not in stats_exps:
                bad.append(f"config key experiments.{ename}.noise_from: {noise!r} is not an experiment with "
                           f"stats: true; allowed values: {', '.join(stats_exps) or '(none)'}")
            missing = [] if noise not in stats_exps else \
                [t for t in exp["tasks"] if t not in config["experiments"][noise]["tasks"]]
            if missing:
                bad.append(
                    f"config key experiments.{ename}.noise_from: {noise!r} has no runs of task(s) {', '.join(missing)} "
                    f"of this experiment (its tasks: {', '.join(config['experiments'][noise]['tasks'])}), so their "
                    "runtime noise would be missing from the compression table; add them to that grid, or pick "
                    "another noise_from")
        bad.extend(_check_llamacpp(ename, exp, config))
        if exp["stats"]:
            sizes = {k: len(exp[k]) for k in ("parallel", "batch_sizes", "hardware", "runtimes")}
            if all(n == 1 for n in sizes.values()):
                bad.append(
                    f"config key experiments.{ename}.stats: true, but its grid has one runtime configuration "
                    f"(parallel {exp['parallel']}, batch_sizes {exp['batch_sizes']}, hardware {exp['hardware']}, "
                    f"runtimes {exp['runtimes']}): the nondeterminism statistics compare two or more (every std would "
                    "be NaN); add a batch size, a parallel size, a hardware label or a runtime profile, or set "
                    "stats: false")
        for dname in exp["decoding"]:
            d = config["decoding"].get(dname)
            if d is not None and is_greedy(d["temperature"]) and d["n"] != 1:
                bad.append(f"config key decoding.{dname}.n: greedy decoding (temperature 0) needs n = 1")
            if d is not None and is_greedy(d["temperature"]) and d.get("runs", 1) != 1:
                bad.append(f"config key decoding.{dname}.runs: {d['runs']}: repeated runs of greedy decoding "
                           "(temperature 0) sample nothing (their differences are the runtime noise the statistics "
                           "measure); allowed: 1, or set a temperature")
    for dname in config["decoding"]:
        m = re.match(r"^(.+)_run\d+$", dname)
        if m and m[1] in config["decoding"]:
            bad.append(f"config key decoding.{dname}: the name of a repeated run of decoding {m[1]!r} "
                       f"(<name>_run<i>); rename it")
    if bad:
        raise ConfigError.of(list(dict.fromkeys(bad)))


def _fill_task_defaults(config: dict) -> None:
    """``prompt_style`` and ``max_new_tokens`` of a task that does not set them: its record's
    (:class:`lrmrepro.tasks.record.TaskRecord`; e.g. folio ``raw_think``), not one schema default for all."""
    for name, t in config["tasks"].items():
        record = registry.record_of(name, t)
        t.setdefault("prompt_style", record.prompt_style)
        t.setdefault("max_new_tokens", record.max_new_tokens)


def _check_embedded(name: str, train: dict) -> None:
    """A study on the shipped model must read the `train` section it was trained with: synthetic tasks hold out
    that section's training questions."""
    from .models.embedded import EmbeddedModelError, train_mismatch

    try:
        diff = train_mismatch(train)
    except EmbeddedModelError as err:
        raise ConfigError(f"config key models.{name}.source: 'embedded': {err}") from None
    if diff is not None:
        key, study, shipped = diff
        raise ConfigError(
            f"config key train.{key}: {study!r}, but the embedded model (models.{name}.source: embedded) was trained "
            f"with {shipped!r}; the synthetic tasks hold out the training questions of the `train` section, so it must "
            f"be the shipped model's. Set train.{key}: {shipped!r}, or `source: train` to train a model with these "
            "settings (docs/default-model.md)")


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
        for i, v in enumerate(imp[key]):
            if v not in allowed:
                raise ConfigError(f"config key importance.{key}[{i}]: {v!r} is not defined; allowed values: {', '.join(allowed)}")
    if imp["labeller"] == "llm":
        missing = [k for k in ("base_url", "model") if k not in imp["judge"]]
        if missing:
            raise ConfigError(f"config key importance.judge.{missing[0]}: required for labeller 'llm' (the "
                              "OpenAI-compatible endpoint and the judge model's name; docs/importance.md)")
    allowed = ["mean", *imp["behaviours"]]
    if imp["behaviour"] not in allowed:
        raise ConfigError(f"config key importance.behaviour: {imp['behaviour']!r} is not a scored behaviour; allowed "
                          f"values: {', '.join(allowed)} (mean, or one of importance.behaviours)")
    figure = imp.get("protection_figure")
    if figure:
        exp_name = figure.get("experiment", imp["experiment"])
        if exp_name not in config["experiments"]:
            raise ConfigError(f"config key importance.protection_figure.experiment: {exp_name!r} is not defined; "
                              f"allowed values: {', '.join(config['experiments'])}")
        in_exp = config["experiments"][exp_name]["compressions"]
        named = [("unprotected", figure["unprotected"])] + [
            (f"protected[{i}]", c) for i, c in enumerate(figure["protected"])]
        for key, value in named:
            if value not in in_exp:
                raise ConfigError(
                    f"config key importance.protection_figure.{key}: {value!r} is not a compression of experiment "
                    f"{exp_name!r}; allowed values: {', '.join(in_exp)}")
    for name in needs:  # {model: <variant>}: that variant's ranking, which the importance stage computes for compare
        source = config["compressions"][name]["protect_from_importance"]
        if isinstance(source, dict) and source["model"] not in imp["compare"]:
            raise ConfigError(
                f"config key compressions.{name}.protect_from_importance.model: {source['model']!r} has no importance "
                f"scores (rankings are computed for the uncompressed model, `true`, and the variants of "
                f"importance.compare); allowed values: {', '.join(imp['compare']) or '(none: importance.compare is empty)'}")
    protect = imp["protect"]
    if needs and len([k for k in ("k", "weight_fraction") if k in protect]) != 1:
        raise ConfigError("config key importance.protect: give exactly one of k, weight_fraction "
                          f"(compressions {', '.join(needs)} protect the importance stage's top modules)")
    for name in config.get("compressions", {}):
        c = config["compressions"][name]
        if c.get("only") and (c.get("ignore") or c.get("protect_from_importance")):
            raise ConfigError(f"config key compressions.{name}.only: cannot be combined with ignore / protect_from_importance")


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key that appears twice in one mapping (PyYAML keeps the last silently)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise ConfigError(f"{key_node.start_mark.name}, line {line}: key {key!r} appears twice in one mapping "
                              f"(first at line {seen[key]}); YAML would silently keep only the second")
        seen[key] = line
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(path: str | Path) -> Any:
    """A YAML file, strictly: a syntax error names the file, line and column; a duplicate key is refused."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    try:
        return yaml.load(text, Loader=_StrictLoader) if text.strip() else {}
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"config file {path}{where}: YAML syntax error: {err.problem or err.context}") from None
    except ConfigError as err:
        raise ConfigError(str(err).replace("<unicode string>", str(path), 1)) from None


def merge(base: dict, update: dict) -> dict:
    """Recursive update (as Snakemake merges --config into a config file): mappings merge, anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_study(files: Iterable[str | Path], overrides: dict | None = None, *,
               workdir: str | Path | None = None) -> dict:
    """The configuration of a study: the config files merged in order (strict YAML), then ``overrides``
    (Snakemake's ``--config KEY=VALUE``), validated with defaults filled in. Raises ConfigError."""
    study: dict = {}
    for f in files:
        data = read_yaml(f)
        if not isinstance(data, dict):
            raise ConfigError(f"config file {f}: expected a mapping of config keys at the top level, "
                              f"got {type(data).__name__}")
        study = merge(study, data)
    return validate_config(merge(study, dict(overrides or {})), workdir=workdir)


def load_config(path: str | Path) -> dict:
    return load_study([path])


def main(argv: list[str] | None = None) -> int:
    """``python -m lrmrepro.config [FILE ...]``: check a study's configuration without Snakemake (the same checks the
    workflow makes before planning any job), e.g. before submitting it to a cluster."""
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m lrmrepro.config", description=main.__doc__)
    p.add_argument("files", nargs="*", default=["config.yaml"], help="config files, merged in order (default: config.yaml)")
    p.add_argument("--workdir", default=".", help="where the workflow will run (benchmark paths are relative to it)")
    args = p.parse_args(argv)
    from .study import Study, StudyError

    try:
        study = Study(load_study(args.files, workdir=args.workdir))
    except (ConfigError, StudyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{', '.join(args.files)}: valid; {len(study.experiments)} experiments, {len(study.runs)} generation runs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
