"""A model's context length, read from its checkpoint's ``config.json`` without loading it; and the planning check
that no task asks a model for more new tokens than its context holds (a ``max_new_tokens: 1000000000`` otherwise
passed validation and died in the generation job allocating 160 GB, naming no key)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping

#: config.json keys that hold the context length, by model family
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")


class ContextError(ValueError):
    pass


def context_length(checkpoint: str | Path) -> int | None:
    """The context length of the checkpoint folder ``checkpoint`` (None: no config.json there yet, e.g. a hub model
    not fetched, or no known key)."""
    path = Path(checkpoint) / "config.json"
    if not path.is_file():
        return None
    config = json.loads(path.read_text())
    for cfg in (config, config.get("text_config") or {}):
        for key in CONTEXT_KEYS:
            if isinstance(cfg.get(key), int) and cfg[key] > 0:
                return int(cfg[key])
    return None


def model_contexts(models: Mapping[str, Mapping[str, Any]], checkpoint: str) -> dict[str, int | None]:
    """The context length of every model of a study, where its config can be read before anything runs: the shipped
    model, a local folder, else the workflow's own copy once it exists (``checkpoint``: the pattern
    ``results/models/{model}/{compression}``); None where not known yet."""
    from ..paths import EMBEDDED

    out: dict[str, int | None] = {}
    for name, spec in models.items():
        folder = {"embedded": EMBEDDED, "local": spec.get("path")}.get(spec["source"]) or \
            checkpoint.format(model=name, compression="none")
        out[name] = context_length(folder)
    return out


def check_max_new_tokens(uses: Iterable[tuple[str, str]], tasks: Mapping[str, Mapping[str, Any]],
                         contexts: Mapping[str, int | None]) -> None:
    """Raise :class:`ContextError` naming ``tasks.<task>.max_new_tokens`` when a (model, task) of the study (``uses``)
    asks for at least as many new tokens as the model's context (``contexts``; None: not known yet, not checked)."""
    for model, task in sorted(set(uses)):
        limit, asked = contexts.get(model), int(tasks[task]["max_new_tokens"])
        if limit is not None and asked >= limit:
            raise ContextError(
                f"config key tasks.{task}.max_new_tokens: {asked} does not fit model {model!r}, whose context holds "
                f"{limit} tokens (prompt and output together); allowed: 1 to {limit - 1}, less the prompt's length")
