"""Which modules a compressed variant keeps in full precision: the config's ``ignore`` list, the importance stage's
protection spec (the protection loop), or the complement of ``only`` (the verification experiment: quantize one
module group at a time)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

from safetensors import safe_open

from .protect import fused_group, matches


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


def complete_groups(selected: Iterable[str], names: Sequence[str]) -> list[str]:
    """Add the other members of every fused group (q/k/v, gate/up) that has a selected member."""
    chosen = {member for name in selected for member in fused_group(name, names)} | set(selected)
    return [n for n in names if n in chosen]


def ignore_for_only(model_dir: str | Path, only: Sequence[str]) -> list[str]:
    names = decoder_linear_names(model_dir)
    selected = [n for n in names if any(matches(n, e) for e in only)]
    missing = [e for e in only if not any(matches(n, e) for n in names)]
    if missing:
        raise ValueError(f"compressions.*.only: {missing} match no decoder linear module (names look like {names[:3]})")
    quantized = set(complete_groups(selected, names))
    return [n for n in names if n not in quantized]


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
