"""Backend-independent parts of generation: chunking, sampling settings, the parquet schema, resumable chunk store.

Both backends (transformers here, vLLM in ``vllm_backend``) cut the prompts into *consecutive* chunks of
``batch_size`` prompts and make one batched call per chunk (the batching semantics of "Give Me FP32 or Give Me
Death?"), and write exactly the same table.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq

from .. import io
from ..runs import is_greedy

TOP_K = 5

GENERATION_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("sample_idx", pa.int32()),
        ("chunk_idx", pa.int32()),
        ("prompt", pa.string()),
        ("text", pa.string()),
        ("token_ids", pa.list_(pa.int32())),
        ("output_length", pa.int32()),
        ("finish_reason", pa.string()),
        ("topk_ids", pa.list_(pa.list_(pa.int32()))),
        ("topk_logprobs", pa.list_(pa.list_(pa.float32()))),
    ]
)


@dataclass(frozen=True)
class Decoding:
    """Decoding settings of one ``decoding`` config entry.

    ``temperature == 0`` means greedy (then ``n`` must be 1). ``seed`` seeds sampling; each chunk is seeded with
    ``chunk_seed(seed, chunk_idx)`` so that a resumed run samples exactly what an uninterrupted one would.
    """

    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    n: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"decoding.max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"decoding.temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"decoding.top_p must be in (0, 1], got {self.top_p}")
        if self.greedy and self.n != 1:
            raise ValueError(f"decoding.n must be 1 for greedy decoding (temperature 0), got {self.n}")

    @property
    def greedy(self) -> bool:
        return is_greedy(self.temperature)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def chunk_seed(seed: int, chunk_idx: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{chunk_idx}".encode()).digest()[:4], "little")


def chunks(n_items: int, batch_size: int) -> list[range]:
    """Consecutive index ranges of ``batch_size`` items (the last one may be shorter)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return [range(start, min(start + batch_size, n_items)) for start in range(0, n_items, batch_size)]


def model_identity(model_dir: str | Path) -> str:
    """What identifies a checkpoint in a resume key: its ``meta.json`` config hash and size (written by the model
    and compress stages), else its resolved path."""
    meta = Path(model_dir) / "meta.json"
    if meta.exists():
        return json.loads(meta.read_text()).get("config_hash", "") + ":" + str(meta.stat().st_size)
    return str(Path(model_dir).resolve())


def store_key(model_dir: str | Path, prompts: Sequence[str], ids: Sequence[str], *, backend: str, precision: str,
              parallel: int, batch_size: int, decoding: "Decoding", device: str, **engine: Any) -> dict[str, Any]:
    """Everything about a run that determines its result (both backends; ``engine``: backend-specific settings such
    as the vLLM version): the ``ChunkStore`` key, to which the store adds the code fingerprint."""
    return {
        "model": model_identity(model_dir), "prompts": hashlib.sha256("\x00".join(prompts).encode()).hexdigest(),
        "ids": list(ids), "precision": precision, "parallel": parallel, "batch_size": batch_size,
        "decoding": decoding.as_dict(), "backend": backend, "device": device, **engine,
    }


def rows_to_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=GENERATION_SCHEMA)


class ChunkStore:
    """Finished chunks (and, with a cache, finished tables) of one run, kept so that an interrupted, killed or grown
    job never generates them again.

    The key hashes everything that determines the result: the run (model, prompts, decoding, precision, runtime and
    the engine's versions; ``key_material``, the backend's ``store_key``), the code fingerprint of the generate
    stage (``code``) and the numerics identity of this machine (:func:`lrmrepro.hardware.identity`: a job requeued on another kind of node
    never resumes another kind's chunks). A rerun after any change (another key) starts over, so one table never
    mixes two code versions, engines or kinds of hardware.

    - Without ``cache``: chunks live in ``.<output name>.partial/<key>/`` beside the output (Snakemake removes the
      declared output of a failed job, not this folder); ``finalize`` writes the output and removes the folder.
    - With ``cache`` (a folder; the workflow's is ``$LRMREPRO_CACHE``, :mod:`lrmrepro.generate.cache`): chunks live
      in ``<cache>/generations/<key>/``, and ``finalize`` also keeps the finished table there (``table.parquet``,
      with ``key.json`` saying what it is): a job killed after some of its runs finished, or rerun because its grid
      grew, copies those runs' tables instead of generating them (:meth:`cached`).
    """

    def __init__(self, output: str | Path, key_material: Any, *, code: str | None, cache: str | Path | None = None):
        from ..hardware import identity
        from ..provenance import hardware

        self.output = Path(output)
        material = {"run": key_material, "code": code, "numerics": identity(hardware())}
        key = hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()[:16]
        self.cache = Path(cache) if cache else None
        if self.cache is None:
            self.root = self.output.parent / f".{self.output.name}.partial"
            self.dir = self.root / key
            self.dir.mkdir(parents=True, exist_ok=True)
            for stale in self.root.iterdir():
                if stale.is_dir() and stale.name != key:
                    shutil.rmtree(stale, ignore_errors=True)
        else:
            self.root = self.cache / "generations"
            self.dir = self.root / key
            self.dir.mkdir(parents=True, exist_ok=True)
            if not (self.dir / "key.json").exists():
                io.write_json({**material, "first_output": str(self.output)}, self.dir / "key.json")

    def _path(self, chunk_idx: int) -> Path:
        return self.dir / f"chunk-{chunk_idx:06d}.parquet"

    @property
    def table_path(self) -> Path:
        return self.dir / "table.parquet"

    def cached(self) -> pa.Table | None:
        """The finished table of this key, written to the output (None: not finished before; never without a
        cache)."""
        if self.cache is None or not self.table_path.exists():
            return None
        try:
            io.check_artifact(self.table_path)
        except io.ArtifactError as e:  # a damaged cache entry is a miss, never a table
            logging.getLogger(__name__).warning("cache entry discarded: %s", e)
            self.table_path.unlink(missing_ok=True)
            return None
        table = pq.read_table(self.table_path, schema=GENERATION_SCHEMA)
        io.write_parquet(table, self.output)
        return table

    def done(self, chunk_idx: int) -> bool:
        return self._path(chunk_idx).exists()

    def finished_chunks(self) -> list[int]:
        return sorted(int(p.stem.split("-")[1]) for p in self.dir.glob("chunk-*.parquet"))

    def write(self, chunk_idx: int, rows: Sequence[dict[str, Any]]) -> None:
        io.write_parquet(rows_to_table(rows), self._path(chunk_idx), record=False)

    def finalize(self, n_chunks: int) -> pa.Table:
        missing = [i for i in range(n_chunks) if not self.done(i)]
        if missing and self.cache is not None and self.table_path.exists():
            # another job of the same key (a second study sharing the cache) finished the run meanwhile and removed
            # its chunks: its table is this run's
            return self.cached()
        if missing:
            raise RuntimeError(f"cannot finalize {self.output}: chunks {missing[:10]} not generated")
        table = pa.concat_tables([pq.read_table(self._path(i), schema=GENERATION_SCHEMA) for i in range(n_chunks)])
        if self.cache is None:
            io.write_parquet(table, self.output)
            shutil.rmtree(self.root, ignore_errors=True)
            return table
        io.write_parquet(table, self.table_path)  # the cache's copy first: a kill after this loses nothing
        io.write_parquet(table, self.output)
        for i in range(n_chunks):
            self._path(i).unlink(missing_ok=True)
        return table


def throughput(table: pa.Table, new_lengths: Iterable[int], seconds: float) -> dict[str, float]:
    """``generated_tokens``: tokens of the whole table (resumed chunks included); ``tokens_this_attempt`` and
    ``tokens_per_s``: what this attempt generated, in ``seconds`` of generation."""
    new = sum(int(n) for n in new_lengths)
    return {"generated_tokens": int(pa.compute.sum(table.column("output_length")).as_py() or 0),
            "tokens_this_attempt": new, "tokens_per_s": new / seconds if seconds > 0 else float("nan")}
