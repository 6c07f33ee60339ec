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

Which runs vLLM can execute is :mod:`lrmrepro.generate.vllm_support` (vLLM-free: the workflow refuses an unsupported
run while building the DAG); the engine's setup is :mod:`lrmrepro.generate.vllm_engine`. vLLM is imported lazily.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from . import common
from .common import TOP_K, Decoding, chunk_seed
from .cache import FROM_ENVIRONMENT
from .loop import Stopwatch, generate_chunks
from .vllm_engine import detect_device, engine_kwargs, gpu_info, needed_model_len, prepare_environment, \
    register_layercast
from ..compress.schemes import scheme_of_checkpoint
from ..hardware import isa_of_label
from ..provenance import hardware_label
from .vllm_support import check_batch_invariant_gpu, check_supported

log = logging.getLogger(__name__)


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


def encode(tokenizer: Any, prompts: Sequence[str]) -> list[list[int]]:
    """The prompts' token ids as the engine gets them (no special tokens added: the prompts are already templated)."""
    return [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]


def _vllm_version() -> str:
    import vllm

    return vllm.__version__


class VllmGenerator:
    """One vLLM engine for one (model, precision, tensor-parallel size, engine options, decoding seed / n):
    ``generate_table`` may be called for several prompt sets (every task of a grid point) and every batch size up
    to ``max_batch_size`` without reloading the model (the batch size is the chunk size of each call, not an engine
    setting; a test checks that the results equal those of an engine of its own).

    ``max_model_len`` must cover the longest prompt + max_new_tokens of every later call (``needed_model_len``).
    ``tokenizer``: the checkpoint's tokenizer, where the caller has loaded it already. Raises ``UnsupportedRun``
    before loading anything when the combination cannot run."""

    def __init__(self, model_dir: str | Path, *, precision: str, parallel: int, max_batch_size: int, n: int = 1,
                 seed: int = 0, max_model_len: int, batch_invariant: bool = False, enforce_eager: bool | None = None,
                 cache_root: str | Path | None = None, tokenizer: Any = None) -> None:
        if parallel < 1 or max_batch_size < 1:
            raise ValueError(f"parallel and max_batch_size must be >= 1, got {parallel}, {max_batch_size}")
        self.model_dir = Path(model_dir)
        self.device = detect_device()
        self.scheme = scheme_of_checkpoint(self.model_dir)
        check_supported(precision, self.scheme, self.device, batch_invariant=batch_invariant, parallel=parallel,
                        cpu_isa=isa_of_label(hardware_label()) if self.device == "cpu" else None)
        if batch_invariant and self.device == "cuda":
            check_batch_invariant_gpu()
        self.env = prepare_environment(self.device, batch_invariant=batch_invariant, cache_root=cache_root,
                                       parallel=parallel)
        self.eager = (self.device == "cpu") if enforce_eager is None else enforce_eager
        if precision == "layercast":
            register_layercast(parallel)
        self.precision, self.parallel, self.max_batch_size = precision, parallel, max_batch_size
        self.n, self.seed, self.batch_invariant, self.max_model_len = n, seed, batch_invariant, max_model_len
        if tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        self.tokenizer = tokenizer
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
        return encode(self.tokenizer, prompts)

    def generate_table(self, prompts: Sequence[str], ids: Sequence[str], *, batch_size: int, decoding: Decoding,
                       output: str | Path, progress: bool = True, code: str | None = None,
                       encoded: Sequence[Sequence[int]] | None = None, cache: Any = FROM_ENVIRONMENT) -> dict[str, Any]:
        """Generate for all prompts and write ``output``; finished chunks of an interrupted run with the same key and
        ``code`` (the generate rule's code fingerprint) are skipped. ``encoded``: the prompts' token ids, where the
        caller has them already (``encode``); else the prompts are tokenized here."""
        if len(prompts) != len(ids):
            raise ValueError("prompts and ids differ in length")
        if not 1 <= batch_size <= self.max_batch_size:
            raise ValueError(f"batch_size {batch_size} is outside 1..{self.max_batch_size} (the engine's max_batch_size)")
        if decoding.n != self.n or decoding.seed != self.seed:
            raise ValueError(f"this engine was built for n={self.n}, seed={self.seed}; got decoding {decoding}")
        if encoded is None:
            encoded = self.encode(prompts)
        elif len(encoded) != len(prompts):
            raise ValueError("encoded and prompts differ in length")
        needed_model_len(self.model_dir, [len(e) for e in encoded], decoding.max_new_tokens)
        if max((len(e) for e in encoded), default=0) + decoding.max_new_tokens > self.max_model_len:
            raise ValueError(f"prompts + max_new_tokens exceed the engine's max_model_len {self.max_model_len}")
        from vllm.inputs import TokensPrompt

        key = store_key(self.model_dir, prompts, ids, precision=self.precision, parallel=self.parallel,
                        batch_size=batch_size, decoding=decoding, device=self.device,
                        batch_invariant=self.batch_invariant, enforce_eager=self.eager, vllm_version=_vllm_version())

        def generate_chunk(chunk_idx: int, span: range, clock: Stopwatch) -> list[dict[str, Any]]:
            requests = [TokensPrompt(prompt_token_ids=encoded[i]) for i in span]
            params = sampling_params(decoding, chunk_idx, len(span))
            with clock:
                outputs = self.llm.generate(requests, params, use_tqdm=False)
            return rows_from_outputs(outputs, [ids[i] for i in span], [prompts[i] for i in span], chunk_idx,
                                     self.tokenizer)

        figures = generate_chunks(prompts, ids, batch_size=batch_size, output=output, key=key, code=code,
                                  generate_chunk=generate_chunk, progress=progress, cache=cache,
                                  desc=f"vllm {self.precision} bs{batch_size} tp{self.parallel}")
        return {**self.engine_meta(), **figures}

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is not None:
            core = getattr(llm.llm_engine, "engine_core", None)  # stops the engine-core process / workers
            if core is not None and callable(getattr(core, "shutdown", None)):
                core.shutdown()
            self.llm = None


def open_engine(model_dir: str, job: Any, *, code: str | None, options: Mapping[str, Any],
                log: logging.Logger) -> Any:
    """The vLLM engine of a job (:func:`lrmrepro.generate.engine_job.run_engine`): each task's prompts built and
    tokenized once, for the engine's ``max_model_len`` and for generation alike; one engine for every run (their
    decodings may differ only in ``max_new_tokens``). ``options``: ``batch_invariant`` (VLLM_BATCH_INVARIANT=1),
    ``enforce_eager`` (None: eager on CPU, compiled + CUDA graphs on GPU)."""
    from transformers import AutoTokenizer

    from .engine_job import OpenEngine, prepare

    decodings = [spec.decoding for spec in job.runs]
    if len({(d.n, d.seed, d.temperature, d.top_p) for d in decodings}) != 1:
        raise SystemExit("runs sharing one engine must share decoding n, seed, temperature and top_p")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    prepared = prepare(job, tokenizer, encode=lambda prompts: encode(tokenizer, prompts))  # tokenized once
    max_len = max(needed_model_len(model_dir, [len(t) for t in item.token_ids], item.spec.decoding.max_new_tokens)
                  for item in prepared)
    batch_invariant = bool(options.get("batch_invariant"))
    gen = VllmGenerator(model_dir, precision=job.engine.precision, parallel=job.engine.parallel,
                        max_batch_size=job.max_batch_size, n=decodings[0].n, seed=decodings[0].seed,
                        max_model_len=max_len, batch_invariant=batch_invariant,
                        enforce_eager=options.get("enforce_eager"), tokenizer=tokenizer)

    def generate(item: Any) -> dict[str, Any]:
        return gen.generate_table(item.prompts, item.ids, batch_size=item.spec.run.batch_size,
                                  decoding=item.spec.decoding, output=item.spec.output, progress=False, code=code,
                                  encoded=item.token_ids, cache=options.get("cache", FROM_ENVIRONMENT))

    return OpenEngine(prepared, generate, gen.close, {"batch_invariant": batch_invariant})
