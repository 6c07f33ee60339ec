"""Every registry of names that a configuration may use, in one table: the schema's enums are filled from it.

Each name is defined once, in code, beside what it names: the synthetic generators' and benchmarks' records
(:mod:`lrmrepro.tasks`), prompt styles (:mod:`lrmrepro.prompts`), precisions (:mod:`lrmrepro.precision`),
generation backends (the engines' table, :mod:`lrmrepro.generate.engines`), compression methods (:mod:`lrmrepro.compressions`). The schema
(``schemas/config.schema.yaml``) names the registry of a field with ``x-registry: <name>`` instead of listing the
names; :func:`fill_enums` (called by :func:`lrmrepro.config.load_schema`) writes the ``enum`` there. So adding a task,
a prompt style or an engine is an edit of its own module, and a config naming something unknown is refused with the
registry's names (``allowed values: ...``).
"""

from __future__ import annotations

from typing import Any, Callable


def _generators() -> tuple[str, ...]:
    from .tasks.synthetic import GENERATORS

    return tuple(GENERATORS)


def _benchmarks() -> tuple[str, ...]:
    from .tasks.loaders import BENCHMARKS

    return tuple(BENCHMARKS)


def _prompt_styles() -> tuple[str, ...]:
    from .prompts import PROMPT_STYLES

    return tuple(PROMPT_STYLES)


def _precisions() -> tuple[str, ...]:
    from .precision import PRECISIONS

    return tuple(PRECISIONS)


def _backends() -> tuple[str, ...]:
    from .generate.engines import ENGINES

    return tuple(b for e in ENGINES.values() for b in e.backends)


def _compression_methods() -> tuple[str, ...]:
    from .compressions import METHODS

    return tuple(METHODS)


#: registry name (the schema's ``x-registry``) -> its names, in registration order (imported when asked)
REGISTRIES: dict[str, Callable[[], tuple[str, ...]]] = {
    "generators": _generators,
    "benchmarks": _benchmarks,
    "prompt_styles": _prompt_styles,
    "precisions": _precisions,
    "backends": _backends,
    "compression_methods": _compression_methods,
}


def names(registry: str) -> tuple[str, ...]:
    """The names of one registry; a ValueError names the registries there are."""
    if registry not in REGISTRIES:
        raise ValueError(f"unknown registry {registry!r}; registries: {', '.join(REGISTRIES)}")
    return REGISTRIES[registry]()


def fill_enums(node: Any) -> Any:
    """Write ``enum: [names]`` beside every ``x-registry: <registry>`` of a schema (in place; returns it)."""
    if isinstance(node, dict):
        if "x-registry" in node:
            node["enum"] = list(names(node["x-registry"]))
        for value in node.values():
            fill_enums(value)
    elif isinstance(node, list):
        for value in node:
            fill_enums(value)
    return node


def registry_fields(node: Any, path: str = "") -> dict[str, str]:
    """Where the schema names a registry: schema path -> registry name."""
    out: dict[str, str] = {}
    if isinstance(node, dict):
        if "x-registry" in node:
            out[path] = node["x-registry"]
        for key, value in node.items():
            out.update(registry_fields(value, f"{path}/{key}"))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out.update(registry_fields(value, f"{path}/{i}"))
    return out
