"""Hardware labels: what a run's ``hardware`` label claims, what decides its numerics, and whether a machine is it.

A run's label is a path component of its artifacts and the hardware axis of the nondeterminism statistics (Table 3
of "Give Me FP32 or Give Me Death?"). ``auto`` resolves to the detected label of the machine that builds the DAG
(``provenance.hardware_label``, :func:`label_of` of this machine):

- with a GPU, ``gpu-<first GPU's name>`` as a slug; cluster studies name GPU labels after the SLURM gres types
  (``a100``, ``l40s``: :data:`ALIASES`), which the profile requests;
- without one, ``cpu-<CPU model>-<ISA>``: the model as a slug and the instruction-set level that the CPU kernels
  dispatch to (:func:`cpu_isa`), e.g. ``cpu-amd-epyc-avx2`` or ``cpu-amd-epyc-avx512bf16``. Two machines that
  report the same model name can run other kernels: torch's own kernels dispatch on its CPU capability (AVX2 or
  AVX512) and oneDNN, which computes torch's bf16 matrix products on AVX-512 CPUs, on its ISA ladder (AVX512_CORE,
  +VNNI, +BF16, +FP16, AMX); an AVX-512 BF16 EPYC gave other bf16 results than an AVX2 EPYC of the same name.

The label is a name; the **numerics identity** (:func:`identity`) is every recorded fact that selects kernels: for
a CPU the model, the ISA level, torch's capability and the environment variables that change the dispatch in ways
the ISA level does not say (:data:`ISA_ENV` but :data:`ISA_CAPS`, MKL's switches); for a GPU the devices, compute capability, CUDA runtime, cuBLAS and cuDNN builds and the TF32
settings. Every run records them (``provenance.hardware``); the statistics refuse to pool runs that share a label
but not an identity, and ``lrmrepro.expected`` compares tables only with ones recorded on the same identity.

An explicit label must be true of the machine a job runs on: it equals the detected label, or it is a name in the
alias map whose patterns match the device name (:data:`ALIASES`, extended or overridden by the study's
``hardware_aliases``). A label that does not match fails the generation job before the model loads; the
statistics check each run's recorded device against its label again.
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

#: the AVX-512 subsets that torch's AVX512 capability and oneDNN's AVX512_CORE require
AVX512_CORE = ("avx512f", "avx512bw", "avx512vl", "avx512dq")
#: oneDNN's x86 ISA ladder, highest first: (label token, oneDNN's name as ONEDNN_MAX_CPU_ISA spells it, the
#: /proc/cpuinfo flags it needs). The first entry whose flags the CPU has is the level its kernels use.
ISA_LADDER: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("amxfp16", "AVX512_CORE_AMX_FP16",
     (*AVX512_CORE, "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16", "amx_fp16")),
    ("amx", "AVX512_CORE_AMX", (*AVX512_CORE, "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")),
    ("avx512fp16", "AVX512_CORE_FP16", (*AVX512_CORE, "avx512_vnni", "avx512_bf16", "avx512_fp16")),
    ("avx512bf16", "AVX512_CORE_BF16", (*AVX512_CORE, "avx512_vnni", "avx512_bf16")),
    ("avx512vnni", "AVX512_CORE_VNNI", (*AVX512_CORE, "avx512_vnni")),
    ("avx512", "AVX512_CORE", AVX512_CORE),
    ("avx2vnni", "AVX2_VNNI", ("avx2", "fma", "avx_vnni")),
    ("avx2", "AVX2", ("avx2", "fma")),
    ("avx", "AVX", ("avx",)),
    ("sse41", "SSE41", ("sse4_1",)),
)
#: torch's CPU capabilities on x86 (torch.backends.cpu.get_cpu_capability), lowest first
ATEN_LEVELS = ("default", "avx2", "avx512")
#: Arm: (token, the /proc/cpuinfo "Features" it needs), highest first
ARM_LADDER = (("sve2", ("sve2",)), ("sve", ("sve",)), ("neon", ("asimd",)))
#: the /proc/cpuinfo flags a label or identity is derived from (everything else the CPU reports is irrelevant here)
RELEVANT_FLAGS = tuple(sorted({f for _, _, flags in ISA_LADDER for f in flags} | {"fma", "bf16", "i8mm"}
                              | {f for _, flags in ARM_LADDER for f in flags}))
#: environment variables that cap or change which CPU kernels run (torch's ATen dispatch, oneDNN, MKL's code path
#: and its conditional numerical reproducibility mode): recorded with every run, part of its identity
ISA_ENV = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ONEDNN_DEFAULT_FPMATH_MODE",
           "MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR", "MKL_DEBUG_CPU_TYPE")
#: the ones whose effect the ISA facts already say (``isa``, ``onednn_isa``, ``aten_capability``): a CPU capped to
#: AVX2 is the AVX2 level, whichever way it got there (measured: the AVX-512 EPYC with ONEDNN_MAX_CPU_ISA=AVX2 and
#: ATEN_CPU_CAPABILITY=avx2 reproduces the AVX2 EPYC's 17 tables byte for byte, docs/results-default.md)
ISA_CAPS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
#: environment variables that change GPU numerics (TF32, cuBLAS workspaces and reduction order)
GPU_ENV = ("NVIDIA_TF32_OVERRIDE", "CUBLAS_WORKSPACE_CONFIG", "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE")


class HardwareMismatch(RuntimeError):
    pass


def on_cpu(label: str) -> bool:
    """A CPU's label (``cpu-<model>-<isa>``); any other label names a GPU type (which SLURM jobs then request)."""
    return label.startswith("cpu-")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()


def slug(device: str, gpu: bool) -> str:
    """``gpu-`` or ``cpu-`` and the device name without vendor noise, as a slug (48 characters at most)."""
    name = re.sub(r"\(R\)|\(TM\)|CPU|Processor|NVIDIA|@.*$", "", device, flags=re.I)
    return (("gpu-" if gpu else "cpu-") + _slug(name))[:48] or "unknown"


def cpu_isa(flags: Any, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The instruction-set facts of a CPU with the /proc/cpuinfo ``flags`` under the environment ``env``:

    - ``isa``: the label token, oneDNN's level (x86: :data:`ISA_LADDER`, capped by ``ONEDNN_MAX_CPU_ISA`` /
      ``DNNL_MAX_CPU_ISA``), or the Arm level (:data:`ARM_LADDER`, ``+bf16`` where the CPU has it);
    - ``onednn_isa``: oneDNN's name of that level (x86);
    - ``aten``: torch's ATen capability as torch derives it (AVX512: the AVX-512 F/BW/VL/DQ subsets and FMA;
      AVX2: AVX2 and FMA), capped by ``ATEN_CPU_CAPABILITY``."""
    flags = set(flags or ())
    env = dict(env or {})
    if "asimd" in flags or "sve" in flags:  # Arm: torch and oneDNN levels are not derived here (torch's is recorded)
        token = next((t for t, need in ARM_LADDER if set(need) <= flags), "neon")
        return {"isa": token + ("bf16" if "bf16" in flags else "")}
    ladder = [entry for entry in ISA_LADDER if set(entry[2]) <= flags]
    if not ladder:
        return {"isa": "unknownisa"} if not flags else {"isa": "sse", "onednn_isa": "NONE", "aten": "default"}
    cap = (env.get("ONEDNN_MAX_CPU_ISA") or env.get("DNNL_MAX_CPU_ISA") or "").upper()
    names = [name for _, name, _ in ISA_LADDER]
    if cap in names:  # the CPU's level, or the cap where it is lower (ALL / DEFAULT / unknown values: no cap)
        ladder = [e for e in ladder if names.index(e[1]) >= names.index(cap)] or ladder[-1:]
    token, onednn, _ = ladder[0]
    aten = ("avx512" if set(AVX512_CORE) | {"fma"} <= flags else "avx2" if {"avx2", "fma"} <= flags else "default")
    asked = (env.get("ATEN_CPU_CAPABILITY") or "").lower()
    if asked in ATEN_LEVELS and ATEN_LEVELS.index(asked) < ATEN_LEVELS.index(aten):
        aten = asked
    return {"isa": token, "onednn_isa": onednn, "aten": aten}


def _implied_aten(token: str) -> str:
    return "avx512" if token.startswith(("avx512", "amx")) else "avx2" if token.startswith("avx2") else "default"


def isa_suffix(machine: Mapping[str, Any]) -> str | None:
    """The label's ISA part for a recorded CPU machine: oneDNN's level, and torch's capability where it is not the
    one that level implies (``-aten<level>``: torch recorded or capped otherwise). None: nothing recorded (a run
    made before labels named the ISA)."""
    if "cpu_flags" not in machine:
        return None
    facts = cpu_isa(machine["cpu_flags"], machine.get("isa_env"))
    aten = str(machine.get("torch_cpu_capability") or facts.get("aten") or "").lower()
    if "aten" in facts and aten and aten != _implied_aten(facts["isa"]):
        return f"{facts['isa']}-aten{aten}"
    return facts["isa"]


def device_name(hardware: Mapping[str, Any]) -> tuple[str, bool]:
    """(the device that computes, whether it is a GPU) of a ``provenance.hardware()`` record: the first GPU, else
    the CPU model."""
    gpus = hardware.get("gpus") or []
    return (gpus[0], True) if gpus else (str(hardware.get("cpu_model") or "unknown"), False)


def label_of(hardware: Mapping[str, Any]) -> str:
    """The detected label of a recorded machine (what ``auto`` resolves to there): ``gpu-<name>``, or
    ``cpu-<model>-<isa>`` (the model shortened so that the ISA part is always whole). A CPU record without flags
    (made before labels named the ISA) gets the old ``cpu-<model>`` label: :func:`is_legacy_label` of it holds."""
    device, gpu = device_name(hardware)
    suffix = None if gpu else isa_suffix(hardware)
    if suffix is None:
        return slug(device, gpu)
    return slug(device, gpu)[:47 - len(suffix)].rstrip("-") + "-" + suffix


def is_legacy_label(label: str) -> bool:
    """A detected CPU label of the form used before labels named the ISA (``cpu-amd-epyc``): a ``cpu-`` label whose
    last part is no ISA level. Aliases and GPU labels are never legacy."""
    if not on_cpu(label):
        return False
    last = label.rsplit("-", 2)
    tokens = {t for t, _, _ in ISA_LADDER} | {t + b for t, _ in ARM_LADDER for b in ("", "bf16")} | {"sse",
                                                                                                     "unknownisa"}
    return not (last[-1] in tokens or (len(last) == 3 and last[-2] in tokens and last[-1].startswith("aten")))


def isa_of_label(label: str) -> str | None:
    """The ISA level a CPU label names (``cpu-amd-epyc-avx512bf16`` -> ``avx512bf16``; ``...-avx2-atenavx2`` ->
    ``avx2``); None for GPU, legacy and alias labels."""
    if not on_cpu(label) or is_legacy_label(label):
        return None
    parts = label.split("-")
    return parts[-2] if parts[-1].startswith("aten") else parts[-1]


def has_avx512(isa: str | None) -> bool:
    """Whether an ISA level includes AVX-512 (F/BW/VL/DQ): the level vLLM's CPU build needs for its WNA16 kernels."""
    return bool(isa) and (isa.startswith("avx512") or isa.startswith("amx"))


def identity(hardware: Mapping[str, Any]) -> dict[str, Any]:
    """The numerics identity of a recorded machine: the facts that select the kernels a run computed with. Runs
    that share a label must share it to be pooled; tables are compared only with ones recorded on it. Recorded,
    not part of it: the GPU driver (cuBLAS ships with the CUDA runtime), thread counts, the platform string."""
    device, gpu = device_name(hardware)
    if gpu:
        return {"kind": "gpu", "devices": list(hardware.get("gpus") or []),
                "compute_capability": hardware.get("gpu_compute_capability"),
                "cuda": hardware.get("torch_cuda"), "cublas": hardware.get("cublas"), "cudnn": hardware.get("cudnn"),
                "tf32": hardware.get("tf32"), "env": dict(hardware.get("gpu_env") or {})}
    facts = cpu_isa(hardware.get("cpu_flags"), hardware.get("isa_env")) if "cpu_flags" in hardware else {}
    return {"kind": "cpu", "device": device, "isa": facts.get("isa"), "onednn_isa": facts.get("onednn_isa"),
            "aten_capability": str(hardware.get("torch_cpu_capability") or facts.get("aten") or "").lower() or None,
            "env": {k: v for k, v in (hardware.get("isa_env") or {}).items() if k not in ISA_CAPS}}


#: the facts of an identity that belong to the machine, not to the engine's environment (torch's build decides its
#: CPU capability and carries CUDA, cuBLAS, cuDNN and TF32 defaults): compared across backends
MACHINE_FACTS = ("kind", "device", "devices", "isa", "onednn_isa", "compute_capability", "env")


def machine_facts(ident: Mapping[str, Any]) -> dict[str, Any]:
    """The machine's part of an identity (:data:`MACHINE_FACTS`)."""
    return {k: ident.get(k) for k in MACHINE_FACTS if k in ident}


def software_facts(ident: Mapping[str, Any]) -> dict[str, Any]:
    """The engine environment's part of an identity (everything but :data:`MACHINE_FACTS`): compared per backend."""
    return {k: v for k, v in ident.items() if k not in MACHINE_FACTS}


def identity_difference(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """What differs between two identities, a ``key: a vs b`` each, nested facts as ``key.sub`` (empty: the same
    numerics)."""
    out = []
    for k in sorted(set(a) | set(b)):
        x, y = a.get(k), b.get(k)
        if isinstance(x, Mapping) and isinstance(y, Mapping) and x and y:
            out += [f"{k}.{line}" for line in identity_difference(x, y)]
        elif x != y:
            out.append(f"{k}: {x!r} vs {y!r}")
    return out


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
    legacy = (f" ({label!r} is a label from before CPU labels named the instruction set: see docs/configuration.md, "
              "Hardware labels)" if is_legacy_label(label) else "")
    raise HardwareMismatch(
        f"hardware label {label!r} does not match this machine: it has {device!r} (detected label "
        f"{label_of(hardware)!r}); {known}{legacy}. Run it where the label is true (SLURM: the profile requests the "
        f"label as the GPU type), use `hardware: [auto]`, or add the device to `hardware_aliases`")


def check_planned_cpu_labels(missing: Mapping[str, str], machine: Mapping[str, Any],
                             alias_map: Mapping[str, tuple[str, ...]] | None = None) -> None:
    """Refuse, when the DAG is built, CPU-labelled runs that would have to be generated here although their label is
    not true of this machine (``machine``: ``provenance.machine_record()``). ``missing``: label -> a generations
    file of that label that does not exist yet (runs already made elsewhere and copied in are fine: nothing
    regenerates them). GPU labels are left to the engine job, which the profile sends to a node of that type."""
    for label, path in sorted(missing.items()):
        if not on_cpu(label) or matches(label, machine, alias_map):
            continue
        raise HardwareMismatch(
            f"hardware label {label!r} is not this machine's ({label_of(machine)!r}; CPU "
            f"{machine.get('cpu_model')!r}), and its runs are not here (e.g. {path}): they would be generated on "
            f"this CPU under another CPU's label, and a CPU label names the numerics. Generate them on a machine "
            f"whose label is {label!r} and copy its results/ here, use `hardware: [auto]` for this machine, or, if "
            f"{label!r} is meant to include this machine, add it to `hardware_aliases`. Nothing was run")

