"""Generation with Hugging Face transformers (CPU here; CUDA where available).

Semantics shared with the vLLM backend (see ``common``): prompts are cut into consecutive chunks of
``batch_size``; each chunk is one batched ``model.generate`` call with left padding. ``parallel`` is the number
of intra-op threads (``torch.set_num_threads``), which changes the reduction order of the matmuls on CPU; on a
CUDA device it must be 1 (tensor parallelism is the vLLM backend's job).

Top-k log-probabilities are the log-softmax (in fp32) of the model's raw logits at each generated position, i.e.
before temperature / top-p processing, matching vLLM's default raw logprobs. They are taken by a forward hook on the
model at every decoding step, which keeps only the top-k (memory O(batch × steps × k)); ``output_logits=True`` would
keep the full-vocabulary logits of every step of the whole batch (8 × 2,048 × 151,936 floats = 10 GB for a Qwen
vocabulary). The hook sees the same tensor generate's ``output_logits`` returns (the last position's logits, in
fp32), so the values are identical (tested; ``benchmarks/generation_memory.py`` measures the memory).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from transformers import AutoTokenizer

from ..layercast import load_model
from .common import TOP_K, Decoding, chunk_seed, store_key
from .cache import FROM_ENVIRONMENT
from .loop import Stopwatch, generate_chunks


class _TopKRecorder:
    """A forward hook on the model that keeps the top-k log-probabilities of the last position's logits at every
    call (one call per generated token); nothing else of the logits is kept.

    The top-k of each step are written into buffers allocated once for ``max_steps`` steps. Keeping one small tensor
    per step instead (two 160-byte tensors next to a freed 4.8 MB logits block, every step) fragments glibc's heap:
    measured on a 151,936-token vocabulary, batch 8, the process grew by one logits block per step, 9.7 GB after
    2,048 steps, as if the full logits had been kept (``benchmarks/generation_memory.py``)."""

    def __init__(self, model: torch.nn.Module, max_steps: int, k: int = TOP_K):
        self.k, self.max_steps, self.steps = k, max_steps, 0
        self.ids: torch.Tensor | None = None
        self.lps: torch.Tensor | None = None
        self.handle = model.register_forward_hook(self._hook)

    def _hook(self, module, args, output) -> None:
        logits = output.logits if hasattr(output, "logits") else output[0]
        last = logits[:, -1, :].to(dtype=torch.float32, copy=True)  # as generate's raw `next_token_logits`
        lp, ids = torch.log_softmax(last, dim=-1).topk(self.k, dim=-1)
        if self.ids is None:
            self.ids = torch.empty((last.shape[0], self.max_steps, self.k), dtype=ids.dtype)
            self.lps = torch.empty((last.shape[0], self.max_steps, self.k), dtype=torch.float32)
        if self.steps == self.ids.shape[1]:  # more calls than announced: grow (not expected from generate)
            self.ids = torch.cat([self.ids, torch.empty_like(self.ids)], dim=1)
            self.lps = torch.cat([self.lps, torch.empty_like(self.lps)], dim=1)
        self.ids[:, self.steps] = ids.cpu()
        self.lps[:, self.steps] = lp.cpu()
        self.steps += 1

    def stacked(self, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """[rows, steps, k] ids and logprobs of the first ``steps`` calls (the prefill call is the first step)."""
        if self.ids is None or steps > self.steps:
            raise ValueError(f"asked for {steps} steps, recorded {self.steps}")
        return self.ids[:, :steps], self.lps[:, :steps]

    def remove(self) -> None:
        self.handle.remove()


def _generate_chunk(model, tokenizer, prompts: Sequence[str], decoding: Decoding, device: torch.device):
    enc = tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False).to(device)
    kwargs: dict[str, Any] = dict(
        max_new_tokens=decoding.max_new_tokens,
        return_dict_in_generate=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    if decoding.greedy:
        kwargs.update(do_sample=False, num_beams=1, temperature=None, top_p=None, top_k=None)
    else:
        kwargs.update(do_sample=True, temperature=decoding.temperature, top_p=decoding.top_p, top_k=0,
                      num_return_sequences=decoding.n)
    recorder = _TopKRecorder(model, max_steps=decoding.max_new_tokens)
    try:
        with torch.inference_mode():
            out = model.generate(**enc, **kwargs)
    finally:
        recorder.remove()
    prompt_len = enc["input_ids"].shape[1]
    new_tokens = out.sequences[:, prompt_len:].cpu()
    top_ids, top_lp = recorder.stacked(new_tokens.shape[1])
    return new_tokens, top_ids, top_lp


def _rows(ids, prompts, chunk_idx, new_tokens, top_ids, top_lp, n, eos_id, tokenizer) -> list[dict[str, Any]]:
    rows = []
    for r in range(new_tokens.shape[0]):
        seq = new_tokens[r].tolist()
        length, finish = len(seq), "length"
        if eos_id in seq:
            length, finish = seq.index(eos_id) + 1, "stop"
        token_ids = seq[:length]
        rows.append({
            "id": ids[r // n],
            "sample_idx": r % n,
            "chunk_idx": chunk_idx,
            "prompt": prompts[r // n],
            "text": tokenizer.decode(token_ids, skip_special_tokens=True),
            "token_ids": token_ids,
            "output_length": length,
            "finish_reason": finish,
            "topk_ids": top_ids[r, :length].tolist(),
            "topk_logprobs": top_lp[r, :length].tolist(),
        })
    return rows


def load(model_dir: str | Path, precision: str, device: str = "cpu"):
    model_dir = Path(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = load_model(model_dir, precision).to(device)
    model.eval()
    return model, tokenizer


def engine_versions() -> dict[str, str]:
    """The versions that change what this engine computes (part of every resume and cache key)."""
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__}


class TransformersGenerator:
    """One loaded model for one (model, precision, threads, device): ``generate_table`` may be called for several
    prompt sets (every task of a grid point) and batch sizes without reloading the model, with the same results as
    a freshly loaded model (the weights and the thread count are all a call depends on; tested)."""

    def __init__(self, model_dir: str | Path, *, precision: str, parallel: int, device: str | None = None):
        self.model_dir = Path(model_dir)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if self.device.startswith("cuda") and parallel != 1:
            raise ValueError(
                f"runtime parallel={parallel} on the transformers backend means CPU threads; on CUDA use parallel 1, "
                "or the vllm backend for tensor parallelism")
        self.precision, self.parallel = precision, parallel
        torch.set_num_threads(parallel)
        t0 = time.perf_counter()
        self.model, self.tokenizer = load(self.model_dir, precision, self.device)
        self.load_seconds = time.perf_counter() - t0

    def generate_table(self, prompts: Sequence[str], ids: Sequence[str], *, batch_size: int, decoding: Decoding,
                       output: str | Path, progress: bool = True, code: str | None = None,
                       cache: Any = FROM_ENVIRONMENT) -> dict[str, Any]:
        """Generate for all prompts and write ``output`` (generations parquet). Returns figures for ``meta.json``.

        Finished chunks of an interrupted run are kept (``ChunkStore``) and skipped on a rerun with the same run
        and the same ``code`` (the generate rule's code fingerprint); ``cache``: the generation cache
        (:mod:`lrmrepro.generate.cache`; default ``$LRMREPRO_CACHE``)."""
        if len(prompts) != len(ids):
            raise ValueError("prompts and ids differ in length")
        torch.set_num_threads(self.parallel)
        key = store_key(self.model_dir, prompts, ids, backend="transformers", precision=self.precision,
                        parallel=self.parallel, batch_size=batch_size, decoding=decoding, device=self.device,
                        **engine_versions())
        device = torch.device(self.device)

        def generate_chunk(chunk_idx: int, span: range, clock: Stopwatch) -> list[dict[str, Any]]:
            torch.manual_seed(chunk_seed(decoding.seed, chunk_idx))
            chunk_prompts = [prompts[i] for i in span]
            with clock:
                new_tokens, top_ids, top_lp = _generate_chunk(self.model, self.tokenizer, chunk_prompts, decoding,
                                                              device)
            return _rows([ids[i] for i in span], chunk_prompts, chunk_idx, new_tokens, top_ids, top_lp, decoding.n,
                         self.tokenizer.eos_token_id, self.tokenizer)

        figures = generate_chunks(prompts, ids, batch_size=batch_size, output=output, key=key, code=code,
                                  generate_chunk=generate_chunk, progress=progress, cache=cache,
                                  desc=f"generate {self.precision} bs{batch_size} p{self.parallel}")
        return {
            "backend": "transformers",
            "device": self.device,
            "torch_threads": torch.get_num_threads(),
            "model_load_seconds": self.load_seconds,
            **figures,
        }


def open_engine(model_dir: str, job: Any, *, code: str | None, options: Mapping[str, Any],
                log: logging.Logger) -> Any:
    """The transformers engine of a job (:func:`lrmrepro.generate.engine_job.run_engine`): the model loaded once,
    each task prompted once. ``options``: ``cache`` (None: no generation cache, e.g. the noise floor's second
    generation, which must not be a copy of the first)."""
    from .engine_job import OpenEngine, prepare

    gen = TransformersGenerator(model_dir, precision=job.engine.precision, parallel=job.engine.parallel)
    cache = options.get("cache", FROM_ENVIRONMENT)

    def generate(item: Any) -> dict[str, Any]:
        return gen.generate_table(item.prompts, item.ids, batch_size=item.spec.run.batch_size,
                                  decoding=item.spec.decoding, output=item.spec.output, progress=False, code=code,
                                  cache=cache)

    return OpenEngine(prepare(job, gen.tokenizer), generate)
