"""Generation with llama.cpp (``llama-cpp-python``'s bindings of libllama), GGUF models as they are: no conversion to
torch weights, the file's own quantization types and llama.cpp's own kernels. The same table as the other engines.

Semantics (shared with the other backends through ``common`` and ``loop``):

- prompts are cut into consecutive chunks of ``batch_size``; a chunk's prompts are decoded *together*, as llama.cpp's
  server decodes its parallel slots: one context with ``n_seq_max = batch_size × n`` sequences, every step one
  ``llama_decode`` of one token per unfinished sequence (the batch the runtime axes of llama.cpp's own issues
  change). Prompt processing puts the chunk's prompt tokens into ``llama_decode`` calls of at most ``n_batch``
  tokens (llama.cpp cuts each into graphs of ``n_ubatch``).
- each run (batch size) gets its own context (KV cache of ``batch_size × n`` sequences of the run's longest prompt +
  ``max_new_tokens``, rounded up to 256 cells): a run's numerics depend on its own settings only, never on the other
  batch sizes of its job. The cache is cleared between chunks.
- prompts are the templated text (the GGUF's own chat template, ``tokenizer.chat_template``, rendered as
  transformers renders a template) tokenized by llama.cpp with special tokens parsed and no BOS added (the template
  writes what the model needs), as the other backends tokenize with ``add_special_tokens=False``.
- top-k (k=5) log-probabilities: the log-softmax (fp32) of the raw logits of each generated position, rank 1 first
  (equal log-probabilities: lower token id first), as the other backends.
- greedy: the argmax of the logits (the first one among equal values, as llama.cpp's greedy sampler). Sampling:
  temperature and top-p on the logits in numpy (float64), each sequence drawing from its own generator seeded with
  ``chunk_seed(chunk_seed(chunk_seed(seed, chunk_idx), i), s)`` (prompt ``i`` of the chunk, sample ``s``), so a
  resumed run, or the same prompt in another batch, samples with the same random stream.
- generation stops at an end-of-generation token of the vocabulary (``llama_vocab_is_eog``: EOS and end-of-turn),
  which ends ``token_ids`` (finish reason ``stop``), or after ``max_new_tokens`` (``length``). The text is llama.cpp's
  detokenization of the generated ids without special tokens.
- ``parallel`` is the thread count (``n_threads`` and ``n_threads_batch``) on a CPU hardware label; on a GPU label
  the number of GPUs the model's layers are split across (``n_gpu_layers`` all, ``split_mode`` of the profile).
- the runtime profile (``llamacpp.runtimes.<name>``: n_batch, n_ubatch, KV cache type, flash attention, unified KV
  cache, GPU layers, split mode) is in the resume key and in meta.json with llama.cpp's build (``system_info``).

llama_cpp is imported lazily: the module's pure parts (prompt templates, top-k, sampling, the profile) load anywhere.
"""

from __future__ import annotations

import ctypes
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from . import common
from .cache import FROM_ENVIRONMENT
from .common import TOP_K, Decoding, chunk_seed
from .loop import Stopwatch, generate_chunks

log = logging.getLogger(__name__)

#: llama.cpp's KV cache types by the names the configuration uses (ggml's ``enum ggml_type`` values)
KV_TYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8, "bf16": 30}
#: KV cache types llama.cpp runs without flash attention (a quantized V cache needs it)
UNQUANTIZED_KV = ("f32", "f16", "bf16")
#: llama.cpp's split modes (``enum llama_split_mode``)
SPLIT_MODES = {"none": 0, "layer": 1, "row": 2}
#: KV cells are allocated in multiples of this (llama.cpp pads its cache to 256)
KV_PAD = 256


@dataclass(frozen=True)
class Runtime:
    """A llama.cpp runtime profile (``llamacpp.runtimes.<name>``; the schema holds the defaults) and the job's
    threads / GPUs: every context setting of a run that can change its numerics."""

    n_batch: int = 512
    n_ubatch: int = 512
    kv_cache: str = "f16"
    flash_attn: bool = False
    kv_unified: bool = True
    n_gpu_layers: int | None = None
    split_mode: str = "layer"
    #: CPU threads (a CPU label) or GPUs (a GPU label): the run's ``parallel``
    parallel: int = 1
    gpu: bool = False

    def __post_init__(self) -> None:
        if self.kv_cache not in KV_TYPES:
            raise ValueError(f"kv_cache {self.kv_cache!r}; allowed values: {', '.join(KV_TYPES)}")
        if self.split_mode not in SPLIT_MODES:
            raise ValueError(f"split_mode {self.split_mode!r}; allowed values: {', '.join(SPLIT_MODES)}")
        if self.kv_cache not in UNQUANTIZED_KV and not self.flash_attn:
            raise ValueError(f"kv_cache {self.kv_cache!r} needs flash_attn: true (llama.cpp quantizes the V cache only "
                             "with flash attention)")
        if not 1 <= self.n_ubatch <= self.n_batch:
            raise ValueError(f"n_ubatch {self.n_ubatch} must be in 1..n_batch ({self.n_batch})")
        if self.parallel < 1:
            raise ValueError(f"parallel must be >= 1, got {self.parallel}")

    @property
    def gpu_layers(self) -> int:
        """Layers offloaded: the profile's, else all (-1) on a GPU label and none on a CPU label."""
        if self.n_gpu_layers is not None:
            return self.n_gpu_layers
        return -1 if self.gpu else 0

    @property
    def threads(self) -> int:
        """llama.cpp's threads (``n_threads``, ``n_threads_batch``): the run's ``parallel``: its CPU threads on a CPU
        label; on a GPU label its GPU count, one host thread per GPU."""
        return self.parallel

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "gpu_layers": self.gpu_layers}


# --- prompts: the GGUF's chat template, rendered as transformers renders one


class GgufChatTemplate:
    """The part of a tokenizer ``lrmrepro.prompts`` uses (``chat_template``, ``apply_chat_template``), from a GGUF's
    metadata: its ``tokenizer.chat_template`` rendered with jinja2 in a sandbox with ``trim_blocks`` and
    ``lstrip_blocks`` and the ``raise_exception`` helper, as transformers renders a template, with the file's BOS and
    EOS token texts. (Tested: the prompts equal transformers' for the same GGUF.)"""

    def __init__(self, template: str | None, bos_token: str = "", eos_token: str = ""):
        self.chat_template = template
        self.bos_token, self.eos_token = bos_token, eos_token

    def apply_chat_template(self, messages: list[dict[str, str]], *, tokenize: bool = False,
                            add_generation_prompt: bool = True) -> str:
        if tokenize:
            raise ValueError("GgufChatTemplate renders text only (tokenize=False)")
        if self.chat_template is None:
            raise ValueError("this GGUF file has no tokenizer.chat_template")
        from jinja2.exceptions import TemplateError
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message: str) -> None:
            raise TemplateError(message)

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = raise_exception
        return env.from_string(self.chat_template).render(
            messages=messages, add_generation_prompt=add_generation_prompt, bos_token=self.bos_token,
            eos_token=self.eos_token)


# --- one position's numbers: top-k and the next token


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log-softmax in fp32 (as the other backends' top-k)."""
    x = logits.astype(np.float32, copy=False)
    shifted = x - x.max()
    return shifted - np.float32(np.log(np.exp(shifted, dtype=np.float32).sum(dtype=np.float32)))


def topk(logits: np.ndarray, k: int = TOP_K) -> tuple[list[int], list[float]]:
    """The ``k`` most probable tokens of one position and their log-probabilities, rank 1 first (ties: lower id
    first)."""
    lp = log_softmax(logits)
    part = np.argpartition(-lp, k - 1)[:k] if k < lp.size else np.arange(lp.size)
    # every id whose value equals the k-th's could be in the top-k: order the candidates by (-lp, id) exactly
    kth = lp[part].min()
    candidates = np.flatnonzero(lp >= kth)
    order = np.lexsort((candidates, -lp[candidates]))[:k]
    ids = candidates[order]
    return [int(i) for i in ids], [float(lp[i]) for i in ids]


def next_token(logits: np.ndarray, decoding: Decoding, rng: np.random.Generator | None) -> int:
    """Greedy: the first argmax. Sampling: temperature, then the smallest set of most probable tokens whose
    probability reaches ``top_p`` (ties by id), one draw from ``rng``."""
    if decoding.greedy:
        return int(np.argmax(logits))
    assert rng is not None
    x = logits.astype(np.float64) / decoding.temperature
    p = np.exp(x - x.max())
    p /= p.sum()
    order = np.lexsort((np.arange(p.size), -p))
    if decoding.top_p < 1.0:
        keep = int(np.searchsorted(np.cumsum(p[order]), decoding.top_p) + 1)
        order = order[:keep]
    q = p[order] / p[order].sum()
    return int(order[rng.choice(q.size, p=q)])


def sequence_seed(seed: int, chunk_idx: int, prompt: int, sample: int) -> int:
    """The random stream of sample ``sample`` of prompt ``prompt`` (its position in the chunk) of chunk ``chunk_idx``."""
    return chunk_seed(chunk_seed(chunk_seed(seed, chunk_idx), prompt), sample)


def gguf_main_file(model: str | Path) -> Path:
    """The GGUF file llama.cpp opens in a model folder (rule fetch_gguf's output) or the file itself: the only
    ``.gguf`` file, or a split GGUF's first part (llama.cpp finds the other parts beside it)."""
    path = Path(model)
    if path.is_file():
        return path
    files = sorted(path.glob("*.gguf"))
    first = [f for f in files if "-00001-of-" in f.name]
    if len(first) == 1:
        return first[0]
    if len(files) == 1:
        return files[0]
    raise FileNotFoundError(f"{path}: expected one .gguf file or one split GGUF (-00001-of-N), found "
                            f"{[f.name for f in files] or 'none'}")


def store_key(model: str | Path, prompts: Sequence[str], ids: Sequence[str], *, batch_size: int,
              decoding: Decoding, runtime: Runtime, device: str, version: str, system_info: str) -> dict[str, Any]:
    """The ``ChunkStore`` key of a llama.cpp run: ``common.store_key`` plus the runtime profile and llama.cpp's
    version and build."""
    return common.store_key(model, prompts, ids, backend="llamacpp", precision="fp32", parallel=runtime.parallel,
                            batch_size=batch_size, decoding=decoding, device=device, runtime=runtime.as_dict(),
                            llama_cpp=version, system_info=system_info)


class LlamaCppGenerator:
    """One llama.cpp model for one runtime profile: ``generate_table`` for any prompts and batch size (a context of
    its own per call)."""

    def __init__(self, model: str | Path, runtime: Runtime) -> None:
        import llama_cpp
        from llama_cpp import _logger

        # llama.cpp's own messages: errors only (its load and graph reports are thousands of lines), unless asked
        _logger.set_verbose(os.environ.get("LRMREPRO_LLAMACPP_VERBOSE", "") not in ("", "0"))
        self.lib = llama_cpp
        self.runtime = runtime
        self.model_path = gguf_main_file(model)
        self.model_id = Path(model)
        llama_cpp.llama_backend_init()
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = runtime.gpu_layers
        params.split_mode = SPLIT_MODES[runtime.split_mode]
        if runtime.gpu and runtime.parallel > 1:  # the layers spread evenly over the job's GPUs
            self._split = (ctypes.c_float * llama_cpp.LLAMA_MAX_DEVICES)(*([1.0] * runtime.parallel))
            params.tensor_split = self._split
        t0 = time.perf_counter()
        self.model = llama_cpp.llama_model_load_from_file(str(self.model_path).encode(), params)
        if not self.model:
            raise RuntimeError(f"llama.cpp could not load {self.model_path}")
        self.load_seconds = time.perf_counter() - t0
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.n_ctx_train = llama_cpp.llama_model_n_ctx_train(self.model)
        self.device = "cuda" if runtime.gpu_layers != 0 and llama_cpp.llama_supports_gpu_offload() else "cpu"
        self.version = getattr(llama_cpp, "__version__", "?")
        self.system_info = llama_cpp.llama_print_system_info().decode(errors="replace").strip()

    # metadata and tokens
    def metadata(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(1 << 16)
        n = self.lib.llama_model_meta_val_str(self.model, key.encode(), buf, ctypes.sizeof(buf))
        if n < 0:
            return None
        if n >= ctypes.sizeof(buf):  # a long template: ask again with room for it
            buf = ctypes.create_string_buffer(n + 1)
            self.lib.llama_model_meta_val_str(self.model, key.encode(), buf, ctypes.sizeof(buf))
        return buf.value.decode("utf-8", errors="replace")

    def token_text(self, token: int) -> str:
        return self.lib.llama_vocab_get_text(self.vocab, token).decode("utf-8", errors="replace")

    def chat_template(self) -> GgufChatTemplate:
        bos, eos = self.lib.llama_vocab_bos(self.vocab), self.lib.llama_vocab_eos(self.vocab)
        return GgufChatTemplate(self.metadata("tokenizer.chat_template"), self.token_text(bos) if bos >= 0 else "",
                                self.token_text(eos) if eos >= 0 else "")

    def tokenize(self, text: str) -> list[int]:
        data = text.encode("utf-8")
        n_max = len(data) + 16
        buf = (self.lib.llama_token * n_max)()
        n = self.lib.llama_tokenize(self.vocab, data, len(data), buf, n_max, False, True)
        if n < 0:
            raise RuntimeError(f"llama.cpp could not tokenize a prompt of {len(data)} bytes ({n})")
        return list(buf[:n])

    def detokenize(self, tokens: Sequence[int]) -> str:
        if not tokens:
            return ""
        arr = (self.lib.llama_token * len(tokens))(*tokens)
        size = 64 * len(tokens) + 64
        buf = ctypes.create_string_buffer(size)
        n = self.lib.llama_detokenize(self.vocab, arr, len(tokens), buf, size, False, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n + 1)
            n = self.lib.llama_detokenize(self.vocab, arr, len(tokens), buf, -n + 1, False, False)
        return buf.raw[:n].decode("utf-8", errors="replace")

    def is_eog(self, token: int) -> bool:
        return bool(self.lib.llama_vocab_is_eog(self.vocab, token))

    # contexts
    def _context(self, n_seq: int, n_ctx_seq: int) -> Any:
        lib, rt = self.lib, self.runtime
        params = lib.llama_context_default_params()
        per_seq = -(-n_ctx_seq // KV_PAD) * KV_PAD
        params.n_ctx = per_seq * n_seq
        params.n_batch, params.n_ubatch = rt.n_batch, rt.n_ubatch
        params.n_seq_max = n_seq
        params.n_threads = params.n_threads_batch = rt.threads
        params.type_k = params.type_v = KV_TYPES[rt.kv_cache]
        params.kv_unified = rt.kv_unified
        params.flash_attn_type = 1 if rt.flash_attn else 0  # LLAMA_FLASH_ATTN_TYPE_ENABLED / _DISABLED
        params.no_perf = True
        ctx = lib.llama_init_from_model(self.model, params)
        if not ctx:
            raise RuntimeError(f"llama.cpp could not create a context of {n_seq} sequences × {per_seq} cells (its "
                               "reason: rerun with LRMREPRO_LLAMACPP_VERBOSE=1)")
        return ctx

    def generate_chunk(self, ctx: Any, batch: Any, encoded: Sequence[Sequence[int]], decoding: Decoding,
                       chunk_idx: int) -> list[tuple[int, int, list[int], list[list[int]], list[list[float]], str]]:
        """Decode the chunk's prompts together: (prompt, sample, token ids, top-k ids, top-k logprobs, finish)."""
        lib = self.lib
        lib.llama_memory_clear(lib.llama_get_memory(ctx), True)
        n = decoding.n
        seqs = [(i, s) for i in range(len(encoded)) for s in range(n)]
        rngs = [None if decoding.greedy else np.random.default_rng(sequence_seed(decoding.seed, chunk_idx, i, s))
                for i, s in seqs]
        # prompt processing: every sequence's prompt (n samples of a prompt: n sequences), pieces of <= n_batch tokens
        pending = [(seq, pos, tok) for seq, (i, _) in enumerate(seqs) for pos, tok in enumerate(encoded[i])]
        last_of = {seq: len(encoded[i]) - 1 for seq, (i, _) in enumerate(seqs)}
        logits_at: dict[int, int] = {}
        state: dict[int, np.ndarray] = {}
        for start in range(0, len(pending), self.runtime.n_batch):
            piece = pending[start:start + self.runtime.n_batch]
            batch.n_tokens = len(piece)
            for k, (seq, pos, tok) in enumerate(piece):
                batch.token[k], batch.pos[k], batch.n_seq_id[k] = tok, pos, 1
                batch.seq_id[k][0] = seq
                batch.logits[k] = pos == last_of[seq]
                if pos == last_of[seq]:
                    logits_at[seq] = k
            self._decode(ctx, batch)
            state.update({seq: self._logits(ctx, k) for seq, k in logits_at.items()})  # before the next decode
            logits_at.clear()
        out_ids: list[list[int]] = [[] for _ in seqs]
        top_ids: list[list[list[int]]] = [[] for _ in seqs]
        top_lps: list[list[list[float]]] = [[] for _ in seqs]
        finish = ["length"] * len(seqs)
        active = list(range(len(seqs)))
        while active:
            step = []
            for seq in active:
                logits = state[seq]
                ids, lps = topk(logits)
                tok = next_token(logits, decoding, rngs[seq])
                out_ids[seq].append(tok)
                top_ids[seq].append(ids)
                top_lps[seq].append(lps)
                if self.is_eog(tok):
                    finish[seq] = "stop"
                elif len(out_ids[seq]) < decoding.max_new_tokens:
                    step.append(seq)
            active = step
            if not active:
                break
            batch.n_tokens = len(active)
            for k, seq in enumerate(active):
                i = seqs[seq][0]
                batch.token[k], batch.pos[k], batch.n_seq_id[k] = out_ids[seq][-1], len(encoded[i]) + len(out_ids[seq]) - 1, 1
                batch.seq_id[k][0] = seq
                batch.logits[k] = True
            self._decode(ctx, batch)
            state = {seq: self._logits(ctx, k) for k, seq in enumerate(active)}
        return [(i, s, out_ids[q], top_ids[q], top_lps[q], finish[q]) for q, (i, s) in enumerate(seqs)]

    def _decode(self, ctx: Any, batch: Any) -> None:
        rc = self.lib.llama_decode(ctx, batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc} (1: no KV cache room for the batch; <0: an error)")

    def _logits(self, ctx: Any, k: int) -> np.ndarray:
        ptr = self.lib.llama_get_logits_ith(ctx, k)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()

    def generate_table(self, prompts: Sequence[str], ids: Sequence[str], *, batch_size: int, decoding: Decoding,
                       output: str | Path, encoded: Sequence[Sequence[int]] | None = None, progress: bool = True,
                       code: str | None = None, cache: Any = FROM_ENVIRONMENT) -> dict[str, Any]:
        """Generate for all prompts and write ``output`` (finished chunks of an interrupted run with the same key are
        kept); returns the figures for meta.json."""
        if encoded is None:
            encoded = [self.tokenize(p) for p in prompts]
        longest = max((len(e) for e in encoded), default=0) + decoding.max_new_tokens
        if longest > self.n_ctx_train:
            raise ValueError(f"a prompt + max_new_tokens ({longest} tokens) exceeds the model's context "
                             f"({self.n_ctx_train})")
        n_seq = batch_size * decoding.n
        key = store_key(self.model_id, prompts, ids, batch_size=batch_size, decoding=decoding, runtime=self.runtime,
                        device=self.device, version=self.version, system_info=self.system_info)
        lib = self.lib
        ctx = None
        batch = lib.llama_batch_init(max(self.runtime.n_batch, n_seq), 0, 1)

        def generate_chunk(chunk_idx: int, span: range, clock: Stopwatch) -> list[dict[str, Any]]:
            nonlocal ctx
            if ctx is None:
                ctx = self._context(n_seq, longest)
            with clock:
                results = self.generate_chunk(ctx, batch, [encoded[i] for i in span], decoding, chunk_idx)
            rows = []
            for i, s, tokens, tids, tlps, finish in results:
                rows.append({"id": ids[span[i]], "sample_idx": s, "chunk_idx": chunk_idx, "prompt": prompts[span[i]],
                             "text": self.detokenize(tokens), "token_ids": tokens, "output_length": len(tokens),
                             "finish_reason": finish, "topk_ids": tids, "topk_logprobs": tlps})
            return rows

        try:
            figures = generate_chunks(prompts, ids, batch_size=batch_size, output=output, key=key, code=code,
                                      generate_chunk=generate_chunk, progress=progress, cache=cache,
                                      desc=f"llama.cpp bs{batch_size} t{self.runtime.parallel}")
        finally:
            if ctx is not None:
                lib.llama_free(ctx)
            lib.llama_batch_free(batch)
        return {**self.engine_meta(n_seq, longest), **figures}

    def engine_meta(self, n_seq: int, n_ctx_seq: int) -> dict[str, Any]:
        from ..models.gguf import split_parts

        return {"backend": "llamacpp", "llama_cpp_python": self.version, "llama_cpp_system_info": self.system_info,
                "device": self.device, "gpu_offload_supported": bool(self.lib.llama_supports_gpu_offload()),
                "runtime": self.runtime.as_dict(), "n_seq_max": n_seq,
                "n_ctx": -(-n_ctx_seq // KV_PAD) * KV_PAD * n_seq, "gguf_file": self.model_path.name,
                "gguf_parts": len(split_parts(self.model_path)), "model_load_seconds": self.load_seconds}

    def close(self) -> None:
        if getattr(self, "model", None):
            self.lib.llama_model_free(self.model)
            self.model = None


def open_engine(model_dir: str, job: Any, *, code: str | None, options: Mapping[str, Any],
                log: logging.Logger) -> Any:
    """The llama.cpp engine of a job (:func:`lrmrepro.generate.engine_job.run_engine`): the GGUF loaded once with the
    job's runtime profile (``options["runtime"]``: the profile's settings); each task's prompts rendered with the
    file's chat template and tokenized by llama.cpp once."""
    from ..hardware import on_cpu
    from .engine_job import OpenEngine, prepare

    profile = dict(options.get("runtime") or {})
    runtime = Runtime(**profile, parallel=job.engine.parallel, gpu=not on_cpu(job.engine.hardware))
    gen = LlamaCppGenerator(model_dir, runtime)
    template = gen.chat_template()
    prepared = prepare(job, template, encode=lambda prompts: [gen.tokenize(p) for p in prompts])

    def generate(item: Any) -> dict[str, Any]:
        return gen.generate_table(item.prompts, item.ids, batch_size=item.spec.run.batch_size,
                                  decoding=item.spec.decoding, output=item.spec.output, encoded=item.token_ids,
                                  progress=False, code=code, cache=options.get("cache", FROM_ENVIRONMENT))

    return OpenEngine(prepared, generate, gen.close, {"llamacpp_runtime": runtime.as_dict()})
