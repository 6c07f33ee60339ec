"""Which runs may be pooled into one statistics group: same engine software, same code, truthful hardware labels.

The nondeterminism statistics are meaningful only when the configurations of a group differ in the runtime axes
they claim (backend, parallel size, batch size, hardware label) and in nothing else. Generations are not rerun when
the environment changes (package versions are recorded in each run's ``generations.meta.json``, not in rule
params), so a grid whose engine was upgraded half-way would pool two engine versions: exactly the noise the papers
warn about (vLLM's batch invariance holds "on the same hardware and the same vLLM version").

Before computing, the statistics, divergence and compression-effect stages call :func:`check_pooling`:

- within a group and backend (the backends run in different environments by design), every run must record the
  same :data:`COMPARED` values: the engine-relevant package versions, torch's CUDA runtime, and the generation
  rule's code fingerprint;
- every run's recorded device must match its hardware label (:func:`lrmrepro.hardware.matches`): the hardware
  differs across a group by design, a label that lies does not;
- the runs of a group that share a hardware label must share its numerics identity
  (:func:`lrmrepro.hardware.identity`: for a CPU its ISA level, torch's capability and the dispatch-capping
  environment; for a GPU compute capability, CUDA, cuBLAS, cuDNN and TF32), whatever their backend: one label, one
  set of kernels. An alias that matches both an AVX2 and an AVX-512 machine is refused here.

A mismatch raises :class:`MixedEnvironment` naming the runs, the field and both values, unless
``statistics.allow_mixed_environments`` is set: then each group's ``mixed_environment`` column says what was mixed.
The detected values (and the recorded-only ones: GPU driver, device) are returned per group as the ``environment``
column (JSON), which the stages write beside their statistics.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import polars as pl

from .. import hardware as hw
from .. import io
from ..provenance import ENGINE_PACKAGES, run_environment
from .labels import GROUP_KEYS, LABEL_SCHEMA

#: fields that must be equal across the runs of a group (per backend): :func:`lrmrepro.provenance.run_environment`
COMPARED = (*(f"packages.{p}" for p in ENGINE_PACKAGES), "torch_cuda", "code_fingerprint")
#: recorded, not compared (the driver may differ between node types of one cluster)
RECORDED = ("gpu_driver", "device", "detected_hardware", "numerics")


class MixedEnvironment(ValueError):
    pass


def meta_path(ref: Mapping[str, Any]) -> Path:
    """A run's generations.meta.json: the ref's ``meta``, else beside its generations."""
    return Path(ref["meta"]) if "meta" in ref else Path(ref["generations"]).with_name("generations.meta.json")


def _name(ref: Mapping[str, Any]) -> str:
    return str(Path(ref["generations"]).parent)


def check_pooling(refs: Iterable[Mapping[str, Any]], group_keys: Sequence[str] = GROUP_KEYS, *,
                  allow_mixed: bool = False, aliases: Mapping[str, Sequence[str]] | None = None) -> pl.DataFrame:
    """Check that the runs of every group (``group_keys``) may be pooled; one row per group with the group keys,
    ``environment`` (JSON: each field's value, or its sorted values where they differ) and ``mixed_environment``
    (empty, or what differs). Raises :class:`MixedEnvironment` unless ``allow_mixed``."""
    alias_map = hw.aliases(aliases)
    groups: dict[tuple, list[tuple[Mapping[str, Any], dict[str, Any]]]] = defaultdict(list)
    problems: list[str] = []
    flagged: dict[tuple, list[str]] = defaultdict(list)
    for ref in refs:
        meta = io.read_json(meta_path(ref))
        env = run_environment(meta)
        key = tuple(ref[k] for k in group_keys)
        groups[key].append((ref, env))
        if not hw.matches(str(ref["hardware"]), meta.get("hardware", {}), alias_map):
            msg = (f"run {_name(ref)}: field hardware: labelled {ref['hardware']!r}, generated on {env['device']!r} "
                   f"(detected label {env['detected_hardware']!r})")
            problems.append(msg)
            flagged[key].append(f"hardware label {ref['hardware']} on {env['device']}")
    rows = []
    for key, members in groups.items():
        environment: dict[str, Any] = {}
        for field in (*COMPARED, *RECORDED):
            values = sorted({str(e[field]) for _, e in members if e[field] is not None})
            environment[field] = values[0] if len(values) == 1 else (values or None)
        by_backend: dict[str, list] = defaultdict(list)
        for ref, env in members:
            by_backend[str(ref.get("backend", ""))].append((ref, env))
        by_label: dict[tuple[str, str], list] = defaultdict(list)
        for ref, env in members:  # the machine's facts across backends, the software's within one
            by_label[(str(ref["hardware"]), "")].append((ref, env))
            by_label[(str(ref["hardware"]), str(ref.get("backend", "")))].append((ref, env))
        for (label, backend), runs in by_label.items():
            first_ref, first = runs[0]
            facts = [json.loads(first["numerics"])]
            for ref, env in runs[1:]:
                other = json.loads(env["numerics"])
                differ = hw.identity_difference(*((hw.machine_facts(f) if not backend else hw.software_facts(f))
                                                  for f in (facts[0], other)))
                if differ:
                    problems.append(
                        f"group {dict(zip(group_keys, key))}{', backend ' + backend if backend else ''}: label "
                        f"{label!r} names two numerics identities: run {_name(first_ref)} and run {_name(ref)} differ "
                        "in " + "; ".join(differ))
                    flagged[key].append(f"label {label} on two numerics identities ({'; '.join(differ)})")
                    break
        for backend, runs in by_backend.items():
            first_ref, first = runs[0]
            for field in COMPARED:
                for ref, env in runs[1:]:
                    if env[field] != first[field]:
                        problems.append(
                            f"group {dict(zip(group_keys, key))}, backend {backend}: field {field}: run {_name(first_ref)} "
                            f"has {first[field]!r}, run {_name(ref)} has {env[field]!r}")
                        flagged[key].append(f"{field} {first[field]} vs {env[field]}")
                        break
        rows.append({**dict(zip(group_keys, key)), "environment": json.dumps(environment, sort_keys=True),
                     "mixed_environment": "; ".join(dict.fromkeys(flagged[key]))})
    if problems and not allow_mixed:
        raise MixedEnvironment(
            "runs that may not be pooled into one statistics group (the statistics would mix engine versions, code "
            "or hardware they do not label):\n  " + "\n  ".join(problems) +
            "\nRegenerate the odd runs in the group's environment (delete their folders and rerun), or set "
            "statistics.allow_mixed_environments: true to compute anyway (the tables then say what was mixed)")
    schema = {k: LABEL_SCHEMA[k] for k in group_keys}
    return pl.DataFrame(rows, schema={**schema, "environment": pl.String, "mixed_environment": pl.String})
