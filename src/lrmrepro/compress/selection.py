"""Which modules a compressed variant keeps in full precision: the config's ``ignore`` list, the importance stage's
protection spec (the protection loop), or the complement of ``only`` (the paper's single-component variants:
exactly the modules named are quantized; :func:`incomplete_groups` says which fused groups that leaves in part,
which vLLM cannot run packed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

from safetensors import safe_open

from .protect import FUSED_GROUPS, matches


def decoder_linear_names(model_dir: str | Path) -> list[str]:
    """Names of the decoder linear modules (``model.layers.*.<...>_proj``) of a dense checkpoint, from its
    safetensors headers (no model is built)."""
    names: list[str] = []
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as st:
            names += [k[: -len(".weight")] for k in st.keys() if k.endswith("_proj.weight") and ".layers." in k]
    if not names:
        raise ValueError(f"{model_dir}: no decoder linear weights (*.layers.*_proj.weight) in its safetensors files")
    return sorted(set(names))


def incomplete_groups(only: Sequence[str]) -> list[str]:
    """The plain module names of ``only`` whose fused group (q/k/v, gate/up: vLLM runs each as one matmul) is not
    named whole, read from the names alone (``re:`` patterns are not judged)."""
    named = {e for e in only if not e.startswith("re:")}
    out = []
    for name in sorted(named):
        parent, _, leaf = name.rpartition(".")
        for group in FUSED_GROUPS:
            if leaf in group and any(f"{parent}.{g}" not in named for g in group):
                out.append(name)
    return out


def ignore_for_only(model_dir: str | Path, only: Sequence[str]) -> list[str]:
    """Every decoder linear module but those ``only`` names: exactly those are quantized (a fused group is not
    completed; a packed checkpoint with a group in part is refused for vLLM when the DAG is built)."""
    names = decoder_linear_names(model_dir)
    selected = {n for n in names if any(matches(n, e) for e in only)}
    missing = [e for e in only if not any(matches(n, e) for n in names)]
    if missing:
        raise ValueError(f"compressions.*.only: {missing} match no decoder linear module (names look like {names[:3]})")
    return [n for n in names if n not in selected]


def ignore_list(model_dir: str | Path, ignore: Sequence[str] = (), only: Sequence[str] = (),
                protect_spec: str | Path | None = None) -> tuple[list[str], dict]:
    """The final ignore list and a note of where it came from (for meta.json)."""
    out = list(ignore)
    note: dict = {"config_ignore": list(ignore)}
    if protect_spec:
        spec = json.loads(Path(protect_spec).read_text())
        out += [m for m in spec["ignore"] if m not in out]
        note["importance_spec"] = {"ignore": spec["ignore"], "source": spec.get("source")}
    if only:
        out = ignore_for_only(model_dir, only)
        note["only"] = list(only)
    return out, note
