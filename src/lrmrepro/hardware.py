"""Hardware labels: what a run's ``hardware`` label claims, and whether a machine is it.

A run's label is a path component of its artifacts and the hardware axis of the nondeterminism statistics (Table 3
of "Give Me FP32 or Give Me Death?"). ``auto`` resolves to the detected label of the machine that builds the DAG
(``provenance.hardware_label``, :func:`label_of` of this machine: ``gpu-<first GPU's name>`` or ``cpu-<CPU
model>``, as a slug). An explicit label must be
true of the machine a job runs on: it equals the detected label, or it is a name in the alias map whose patterns
match the device name (:data:`ALIASES`, extended or overridden by the study's ``hardware_aliases``). A label that
does not match fails the generation job before the model loads; the statistics check each run's recorded device
against its label again.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

#: label -> regular expressions (case-insensitive, searched in the device name that nvidia-smi / torch report, or
#: the CPU model). Name cluster labels after the SLURM gres GPU types (profiles/slurm uses the label as the type).
ALIASES: dict[str, tuple[str, ...]] = {
    "a100": (r"\bA100\b",),
    "a100-80gb": (r"\bA100\b.*80\s*GB",),
    "a100-40gb": (r"\bA100\b.*40\s*GB",),
    "h100": (r"\bH100\b",),
    "h200": (r"\bH200\b",),
    "gh200": (r"\bGH200\b",),
    "l40s": (r"\bL40S\b",),
    "l40": (r"\bL40\b(?!S)",),
    "l4": (r"\bL4\b",),
    "a10g": (r"\bA10G\b",),
    "a6000": (r"\bRTX A6000\b",),
    "v100": (r"\bV100\b",),
    "t4": (r"\bT4\b",),
    "mi300x": (r"\bMI300X\b",),
}


class HardwareMismatch(RuntimeError):
    pass


def on_cpu(label: str) -> bool:
    """A CPU's label (``cpu-<model>``); any other label names a GPU type (which SLURM jobs then request)."""
    return label.startswith("cpu-")


def slug(device: str, gpu: bool) -> str:
    """The detected label of a device name: ``gpu-`` or ``cpu-`` and the name without vendor noise, as a slug."""
    name = re.sub(r"\(R\)|\(TM\)|CPU|Processor|NVIDIA|@.*$", "", device, flags=re.I)
    text = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()
    return (("gpu-" if gpu else "cpu-") + text)[:48] or "unknown"


def device_name(hardware: Mapping[str, Any]) -> tuple[str, bool]:
    """(the device that computes, whether it is a GPU) of a ``provenance.hardware()`` record: the first GPU, else
    the CPU model."""
    gpus = hardware.get("gpus") or []
    return (gpus[0], True) if gpus else (str(hardware.get("cpu_model") or "unknown"), False)


def label_of(hardware: Mapping[str, Any]) -> str:
    """The detected label of a recorded machine (what ``auto`` resolves to there)."""
    return slug(*device_name(hardware))


def aliases(overrides: Mapping[str, Any] | None = None) -> dict[str, tuple[str, ...]]:
    """The alias map: the built-in :data:`ALIASES` with a study's ``hardware_aliases`` added or replacing entries."""
    out = dict(ALIASES)
    for label, patterns in (overrides or {}).items():
        out[label] = tuple([patterns] if isinstance(patterns, str) else patterns)
    return out


def matches(label: str, hardware: Mapping[str, Any], alias_map: Mapping[str, tuple[str, ...]] | None = None) -> bool:
    """Whether ``label`` is true of the recorded machine ``hardware``: it is the machine's detected label, or an
    alias whose pattern is found in the device name. Every GPU of a multi-GPU job must match."""
    if label == label_of(hardware):
        return True
    patterns = (alias_map if alias_map is not None else ALIASES).get(label)
    if not patterns:
        return False
    gpus = hardware.get("gpus") or []
    names = gpus or [str(hardware.get("cpu_model") or "")]
    return all(any(re.search(p, name, flags=re.I) for p in patterns) for name in names)


def check(label: str, hardware: Mapping[str, Any], alias_map: Mapping[str, tuple[str, ...]] | None = None) -> None:
    """Raise :class:`HardwareMismatch` when ``label`` is not true of ``hardware``, saying what the machine is."""
    if matches(label, hardware, alias_map):
        return
    device, _ = device_name(hardware)
    patterns = (alias_map if alias_map is not None else ALIASES).get(label)
    known = (f"the alias {label!r} means a device matching {' or '.join(patterns)}" if patterns else
             f"{label!r} is neither this machine's label nor an alias (hardware_aliases in the study, or "
             f"lrmrepro.hardware.ALIASES)")
    raise HardwareMismatch(
        f"hardware label {label!r} does not match this machine: it has {device!r} (detected label "
        f"{label_of(hardware)!r}); {known}. Run it where the label is true (SLURM: the profile requests the label "
        f"as the GPU type), use `hardware: [auto]`, or add the device to `hardware_aliases`")
