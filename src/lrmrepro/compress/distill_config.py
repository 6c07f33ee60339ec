"""The ``method: distill`` entries of ``compressions``, checked while the DAG is built (no torch import here).

An entry ``{method: distill, student: {...}, distill: {...}}`` trains a smaller student on the teacher (the model of
the run) with :mod:`lrmrepro.compress.distill`. ``student`` is either an architecture derived from the teacher::

    {layers: 2}                              # 2 of the teacher's layers (evenly spaced, first and last), same width
    {layers: 2, intermediate_size: 192}      # ... MLPs cut to the 192 neurons of largest weight norm
    {layers: 2, layer_map: [0, 1]}           # which teacher layers
    {layers: 3, hidden_size: 96, num_attention_heads: 4, num_key_value_heads: 2, init: fresh}   # randomly initialised

or a given checkpoint, ``{path: <HF checkpoint folder>}`` or ``{hub: <hub id>}``, that shares the teacher's
vocabulary. ``distill`` holds the training settings (schema ``definitions.distill_settings``, defaults filled in
here, since the block is optional). Every refusal names the key: ``config key compressions.<name>.student.<key>``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ARCH_KEYS = ("layers", "layer_map", "hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads")
#: keys of a recipe entry that a distilled entry does not use (the schema fills the defaults of the last three)
RECIPE_KEYS = {"recipe": None, "sparsity": None, "ignore": [], "only": [], "protect_from_importance": False}


def is_distill(entry: dict[str, Any]) -> bool:
    return entry.get("method") == "distill"


def evenly_spaced(n_teacher: int, n_student: int) -> list[int]:
    """``n_student`` of ``n_teacher`` layer indices, the first and the last included (one layer: the first)."""
    if n_student == 1:
        return [0]
    return [round(j * (n_teacher - 1) / (n_student - 1)) for j in range(n_student)]


def teacher_shape(model: dict[str, Any], train: dict[str, Any], workdir: Path | None = None) -> dict[str, Any] | None:
    """The teacher's ``num_hidden_layers, hidden_size, intermediate_size, num_attention_heads,
    num_key_value_heads`` where they are known before any job runs (the embedded model, a `train` model, a local
    checkpoint); None for hub and GGUF models (then the job checks)."""
    keys = ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads")
    if model["source"] == "train":
        from ..models.train_config import TrainConfig

        cfg = TrainConfig(**{k: v for k, v in train.items() if k in TrainConfig.__dataclass_fields__ and k != "tasks"})
        return dict(zip(keys, (cfg.num_layers, cfg.hidden_size, cfg.intermediate_size, cfg.num_heads,
                               cfg.num_kv_heads)))
    if model["source"] == "embedded":
        from ..models.embedded import EMBEDDED_DIR

        path = EMBEDDED_DIR / "config.json"
    elif model["source"] == "local":
        path = _resolve(model["path"], workdir) / "config.json"
    else:
        return None
    if not path.is_file():
        return None
    cfg = json.loads(path.read_text())
    if not all(k in cfg for k in keys[:4]):
        return None
    return {k: cfg.get(k, cfg["num_attention_heads"]) for k in keys}


def _resolve(path: str, workdir: Path | None) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() or workdir is None else Path(workdir) / p


def check_student(name: str, student: dict[str, Any], teacher: dict[str, Any] | None, teacher_name: str = "",
                  workdir: Path | None = None) -> None:
    """Refuse a student spec that cannot give a smaller student of ``teacher`` (its shape, or None when unknown);
    ValueError naming the key, the value and what is allowed."""
    key = f"config key compressions.{name}.student"
    of = f" (model {teacher_name})" if teacher_name else ""
    given = [k for k in ("path", "hub") if k in student]
    if given:
        other = [k for k in student if k not in ("path", "hub")]
        if len(given) == 2 or other:
            bad = "hub" if len(given) == 2 else other[0]
            raise ValueError(f"{key}.{bad}: {student[bad]!r} is not allowed beside {given[0]}: a given checkpoint "
                             f"is the student as it is; give either {given[0]} alone or an architecture "
                             f"({', '.join(ARCH_KEYS)}, init)")
        if "path" in student:
            path = _resolve(student["path"], workdir)
            if not (path / "config.json").is_file():
                raise ValueError(f"{key}.path: {student['path']!r} does not exist or is not a Hugging Face checkpoint "
                                 f"folder (no {path / 'config.json'}); allowed: a local checkpoint folder with "
                                 "config.json, or `hub: <id>` for a hub checkpoint")
        return
    if not any(k in student for k in ARCH_KEYS):
        raise ValueError(f"{key}: {student!r} describes no student; allowed: layers, hidden_size or "
                         "intermediate_size smaller than the teacher's (with layer_map, num_attention_heads, "
                         "num_key_value_heads, init), or path / hub for a given checkpoint")
    init = student.get("init", "teacher")
    layers = student.get("layers")
    if teacher is not None and layers is not None and layers > teacher["num_hidden_layers"]:
        raise ValueError(f"{key}.layers: {layers} is more than the {teacher['num_hidden_layers']} layers of the "
                         f"teacher{of}; allowed: 1 to {teacher['num_hidden_layers']}")
    if "layer_map" in student:
        lm = student["layer_map"]
        if init == "fresh":
            raise ValueError(f"{key}.layer_map: {lm!r} is not allowed with init: fresh (no teacher layer is copied); "
                             "allowed: init: teacher, or no layer_map")
        if layers is not None and len(lm) != layers:
            raise ValueError(f"{key}.layer_map: {lm!r} has {len(lm)} entries for layers: {layers}; allowed: one "
                             "teacher layer index per student layer")
        n = teacher["num_hidden_layers"] if teacher else None
        if len(set(lm)) != len(lm) or lm != sorted(lm) or (n is not None and max(lm) >= n):
            raise ValueError(f"{key}.layer_map: {lm!r} is not allowed; allowed: distinct increasing teacher layer "
                             f"indices{f' from 0 to {n - 1}' if n is not None else ''}")
    if init == "teacher" and teacher is not None:
        for k in ("hidden_size", "num_attention_heads", "num_key_value_heads"):
            if k in student and student[k] != teacher[k]:
                raise ValueError(f"{key}.{k}: {student[k]} differs from the teacher's {teacher[k]}, which init: "
                                 f"teacher (copying the teacher's layers) needs; allowed: {teacher[k]}, or init: fresh")
        if student.get("intermediate_size", 0) > teacher["intermediate_size"]:
            raise ValueError(f"{key}.intermediate_size: {student['intermediate_size']} is wider than the teacher's "
                             f"{teacher['intermediate_size']}; allowed: 1 to {teacher['intermediate_size']} with "
                             "init: teacher (the MLP keeps that many of the teacher's neurons)")
    heads = student.get("num_attention_heads", teacher["num_attention_heads"] if teacher else None)
    kv = student.get("num_key_value_heads", teacher["num_key_value_heads"] if teacher else None)
    hidden = student.get("hidden_size", teacher["hidden_size"] if teacher else None)
    if heads and hidden and hidden % heads:
        raise ValueError(f"{key}.hidden_size: {hidden} is not divisible by num_attention_heads {heads}; allowed: a "
                         "multiple of the number of attention heads")
    if heads and kv and heads % kv:
        raise ValueError(f"{key}.num_key_value_heads: {kv} does not divide num_attention_heads {heads}; allowed: a "
                         "divisor of the number of attention heads")


class DistillConfigError(ValueError):
    """A distilled entry that cannot be built; the message names the key (lrmrepro.config re-raises it as its
    ConfigError: this module does not import lrmrepro.config, which imports it)."""


def check_distill_entries(config: dict[str, Any], schema: dict[str, Any], workdir: str | Path | None = None, *,
                          fill_defaults: Any) -> None:
    """Fill each distilled entry's ``distill`` block with the schema's defaults (``fill_defaults``: the config
    module's schema-default filler) and check its student against every model an experiment distils it from.
    Raises DistillConfigError naming the key."""
    ConfigError, _fill_defaults = DistillConfigError, fill_defaults

    workdir = Path(workdir) if workdir is not None else None
    for name, entry in config.get("compressions", {}).items():
        if not is_distill(entry):
            continue
        for k, default in RECIPE_KEYS.items():
            if k in entry and entry[k] != default:
                raise ConfigError(f"config key compressions.{name}.{k}: {entry[k]!r} is not used by method: distill; "
                                  "allowed: remove it (recipe keys apply to recipe entries only)")
        entry["distill"] = entry.get("distill") or {}
        _fill_defaults(entry["distill"], schema["definitions"]["distill_settings"], schema)
        models = [m for exp in config["experiments"].values() if name in exp.get("compressions", []) for m in exp["models"]]
        checked = False
        for model in dict.fromkeys(models):
            shape = teacher_shape(config["models"][model], config.get("train", {}), workdir)
            if shape is not None or not checked:
                try:
                    check_student(name, entry["student"], shape, model, workdir)
                except ValueError as err:
                    raise ConfigError(str(err)) from None
                checked = True
        if not checked:
            try:
                check_student(name, entry["student"], None, "", workdir)
            except ValueError as err:
                raise ConfigError(str(err)) from None

