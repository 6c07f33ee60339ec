"""Real benchmark loaders: one function per benchmark turns the raw rows (a local file or a Hugging Face dataset) into
the task-items schema (docs/architecture.md, "Task items"); :data:`BENCHMARKS` holds one record per benchmark
(:class:`lrmrepro.tasks.record.TaskRecord`: loader, default dataset version, answer format, default prompt style and
token budget). Adding a benchmark is one record there plus its loader function. Per-task question layouts and gold
formats are described in docs/tasks.md."""

from __future__ import annotations

import base64
import io
import json
import logging
import pickle
import random
import re
import zlib
from pathlib import Path
from typing import Any, Iterable

import polars as pl

from ..io import file_sha256
from .items import items_frame
from .record import TaskRecord


class BenchmarkUnavailable(RuntimeError):
    """The benchmark's data cannot be loaded (no local file given, hub unreachable and not cached)."""


log = logging.getLogger(__name__)

# FOLIO exists in two releases whose validation splits differ in size and in stories (docs/tasks.md, "Dataset
# versions"); the row count of a validation split says which one was loaded.
FOLIO_RELEASES = {
    203: "hub yale-nlp/FOLIO validation (203 rows): the release the compression paper evaluated",
    204: ("GitHub Yale-LILY/FOLIO data/v0.0 folio-validation.jsonl (204 rows): an earlier release with different "
          "stories, not the compression paper's"),
}


# ------------------------------------------------------------------------------------------------ raw rows
def _read_file(path: str | Path) -> list[dict[str, Any]]:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"benchmark file {str(p)!r} does not exist")
    suffix = p.suffix.lower()
    if suffix == ".jsonl":
        return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
    if suffix == ".json":
        data = json.loads(p.read_text())
        if isinstance(data, dict):  # BIG-Bench-Hard style {"examples": [...]}, or {"data": [...]}
            for key in ("examples", "data", "rows"):
                if isinstance(data.get(key), list):
                    return data[key]
            raise ValueError(f"{p}: JSON object without an 'examples'/'data'/'rows' list")
        return list(data)
    if suffix == ".parquet":
        return pl.read_parquet(p).to_dicts()
    raise ValueError(f"benchmark file {str(p)!r}: unsupported extension {suffix!r}; allowed: .jsonl, .json, .parquet")


def _read_hub(name: str, hub: str, split: str, config: str | None,
              extra: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    hint = (f"pass a local copy instead: set tasks.{name}.path in config.yaml to a .jsonl/.json/.parquet file of the "
            f"dataset {hub!r}")
    try:
        import datasets
    except ImportError as e:
        raise BenchmarkUnavailable(f"benchmark {name!r}: the 'datasets' package is not installed; {hint}") from e
    try:
        ds = datasets.load_dataset(hub, config, split=split, **extra)
    except Exception as e:  # offline, no cache, gated, renamed, ... : all mean "not available here"
        raise BenchmarkUnavailable(
            f"benchmark {name!r}: could not load dataset {hub!r} (config={config!r}, split={split!r}) from the "
            f"Hugging Face hub or its cache ({type(e).__name__}: {str(e)[:200]}); {hint}") from e
    return [dict(r) for r in ds], _resolved_revision(ds, hub)


def _resolved_revision(ds: Any, hub: str) -> str | None:
    """The hub commit the rows were read from, when the datasets library recorded it (its data-file URLs are
    ``hf://datasets/<id>@<commit>/...``); None otherwise."""
    urls = list(getattr(getattr(ds, "info", None), "download_checksums", None) or {})
    for url in urls:
        m = re.search(re.escape(hub) + r"@([0-9a-f]{40})/", str(url))
        if m:
            return m.group(1)
    return None


def _get(row: dict[str, Any], *keys: str, default: Any = None) -> Any:
    """First present key, case-insensitive (hub copies capitalise differently: ``Problem`` vs ``problem``)."""
    lower = {k.lower(): v for k, v in row.items()}
    for k in keys:
        if k.lower() in lower and lower[k.lower()] is not None:
            return lower[k.lower()]
    return default


def _need(row: dict[str, Any], name: str, *keys: str) -> Any:
    v = _get(row, *keys)
    if v is None:
        raise ValueError(f"benchmark {name!r}: row without any of the fields {keys}; fields present: {sorted(row)}")
    return v


# ------------------------------------------------------------------------------------------------ per benchmark
def _int_str(s: Any) -> str:
    t = str(s).replace(",", "").strip()
    return str(int(float(t))) if re.fullmatch(r"-?\d+(\.0+)?", t) else t


def _aime24(rows, opts):
    if rows and _get(rows[0], "url") is not None and any("2024" in str(_get(r, "url", default="")) for r in rows):
        rows = [r for r in rows if "2024" in str(_get(r, "url", default=""))]  # AI-MO/aimo-validation-aime: all years
    for i, r in enumerate(rows):
        yield {"id": f"aime24-{_get(r, 'id', default=i)}", "question": _need(r, "aime24", "problem", "question"),
               "gold": _int_str(_need(r, "aime24", "answer")), "metadata": {"url": _get(r, "url")}}


def _math500(rows, opts):
    for i, r in enumerate(rows):
        yield {"id": str(_get(r, "unique_id", default=f"math500-{i:05d}")), "question": _need(r, "math500", "problem"),
               "gold": str(_need(r, "math500", "answer")),
               "metadata": {"subject": _get(r, "subject"), "level": _get(r, "level")}}


def _gsm8k(rows, opts):
    for i, r in enumerate(rows):
        ans = str(_need(r, "gsm8k", "answer"))
        if "####" not in ans:
            raise ValueError(f"benchmark 'gsm8k': answer of row {i} has no '#### N' final line: {ans[-80:]!r}")
        yield {"id": f"gsm8k-{i:05d}", "question": _need(r, "gsm8k", "question"),
               "gold": _int_str(ans.rsplit("####", 1)[1]), "metadata": {}}


FOLIO_SUFFIX = "Based on the premises, is the conclusion True, False, or Uncertain?"


def folio_question(premises: Iterable[str] | str, conclusion: str) -> str:
    if isinstance(premises, str):
        premises = [p for p in premises.splitlines() if p.strip()]
    lines = "\n".join(p.strip() for p in premises)
    return f"Premises:\n{lines}\nConclusion: {conclusion.strip()}\n{FOLIO_SUFFIX}"


def _folio(rows, opts):
    for i, r in enumerate(rows):
        label = str(_need(r, "folio", "label")).strip()
        label = {"unknown": "Uncertain"}.get(label.lower(), label)
        rid = _get(r, "example_id")
        yield {"id": f"folio-{rid if rid is not None else f'{i:05d}'}",
               "question": folio_question(_need(r, "folio", "premises"), _need(r, "folio", "conclusion")),
               "gold": label, "metadata": {"story_id": _get(r, "story_id")}}


def _temporal(rows, opts):
    for i, r in enumerate(rows):
        yield {"id": f"temporal-{i:05d}", "question": str(_need(r, "temporal", "input")).strip(),
               "gold": str(_need(r, "temporal", "target")).strip(), "metadata": {}}


def _musique(rows, opts):
    rows = [r for r in rows if _get(r, "answerable", default=True)]
    open_book = bool(opts.get("open_book", False))
    for r in rows:
        q = str(_need(r, "musique", "question")).strip()
        paragraphs = _get(r, "paragraphs") or []
        if open_book and paragraphs:
            ctx = "\n\n".join(f"{p.get('title', '')}: {p.get('paragraph_text', '')}" for p in paragraphs)
            q = f"Paragraphs:\n{ctx}\n\nQuestion: {q}"
        yield {"id": str(_need(r, "musique", "id")), "question": q, "gold": str(_need(r, "musique", "answer")),
               "aliases": [str(a) for a in (_get(r, "answer_aliases") or [])],
               "metadata": {"hops": len(_get(r, "question_decomposition") or []) or None,
                            "open_book": open_book and bool(paragraphs)}}


class _StrOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module, name):  # the field is a pickled str: refuse any object construction
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name} in LiveCodeBench test cases")


def decode_lcb_tests(field: Any) -> list[dict[str, Any]]:
    """LiveCodeBench test cases: a JSON list, or (private tests) base64(zlib(pickle(json string)))."""
    if field is None or field == "":
        return []
    if isinstance(field, list):
        return field
    s = str(field)
    try:
        return json.loads(s)
    except json.JSONDecodeError:
        raw = _StrOnlyUnpickler(io.BytesIO(zlib.decompress(base64.b64decode(s)))).load()
        return json.loads(raw)


LCB_STDIN_INSTRUCTION = ("Read the inputs from stdin, solve the problem and write the answer to stdout (do not directly "
                         "test on the sample inputs). Enclose your code within delimiters as follows.\n"
                         "```python\n# YOUR CODE HERE\n```")
LCB_STARTER_INSTRUCTION = ("You will use the following starter code to write the solution to the problem and enclose "
                           "your code within delimiters.")

_LCB_RELEASE_END = {  # contest_date upper bounds of the cumulative releases (LiveCodeBench README)
    "release_v1": "2024-03-31", "release_v2": "2024-05-31", "release_v3": "2024-07-31",
    "release_v4": "2024-09-30", "release_v5": "2025-01-31", "release_v6": "2025-04-30",
}


def _livecodebench(rows, opts):
    difficulties = opts.get("difficulty")
    if isinstance(difficulties, str):
        difficulties = [difficulties]
    allowed = {"easy", "medium", "hard"}
    if difficulties and not set(difficulties) <= allowed:
        raise ValueError(f"livecodebench option difficulty={difficulties!r}; allowed values: easy, medium, hard")
    release = opts.get("release")
    if release is not None and release not in _LCB_RELEASE_END:
        raise ValueError(f"livecodebench option release={release!r}; allowed: {', '.join(_LCB_RELEASE_END)}")
    end = opts.get("end_date") or (_LCB_RELEASE_END[release] if release else None)
    start = opts.get("start_date")
    for r in rows:
        diff = str(_get(r, "difficulty", default="")).lower()
        date = str(_get(r, "contest_date", default=""))[:10]
        if difficulties and diff not in difficulties:
            continue
        if (end and date > end) or (start and date < start):
            continue
        meta_field = _get(r, "metadata", default="{}")
        meta = json.loads(meta_field) if isinstance(meta_field, str) and meta_field else (meta_field or {})
        tests = decode_lcb_tests(_get(r, "public_test_cases")) + decode_lcb_tests(_get(r, "private_test_cases"))
        starter = _get(r, "starter_code", default="") or ""
        q = str(_need(r, "livecodebench", "question_content")).strip()
        if starter.strip():
            q += f"\n\n{LCB_STARTER_INSTRUCTION}\n```python\n{starter}\n```"
        else:
            q += f"\n\n{LCB_STDIN_INSTRUCTION}"
        yield {"id": f"lcb-{_need(r, 'livecodebench', 'question_id')}", "question": q, "gold": "",
               "metadata": {"tests": tests, "fn_name": meta.get("func_name"), "difficulty": diff,
                            "platform": _get(r, "platform"), "contest_date": date}}


def _lcb_hub_options(opts: dict[str, Any]) -> dict[str, Any]:
    """LiveCodeBench's hub dataset takes the release as ``version_tag``."""
    return {"version_tag": opts["release"]} if opts.get("release") else {}


#: musique: ``n`` (default this many) is a seeded random sample of the answerable questions
MUSIQUE_SAMPLE = 100

#: one record per benchmark: everything the workflow knows about it (lrmrepro.tasks.record.TaskRecord)
BENCHMARKS: dict[str, TaskRecord] = {r.name: r for r in [
    TaskRecord("aime24", "benchmark", "boxed_int", _aime24, "chat_boxed", hub="Maxwell-Jia/AIME_2024", split="train",
               like="AIME 2024", skill="reasoning"),
    TaskRecord("math500", "benchmark", "boxed_math", _math500, "chat_boxed", hub="HuggingFaceH4/MATH-500",
               split="test", like="MATH-500"),
    TaskRecord("gsm8k", "benchmark", "boxed_int", _gsm8k, "chat_boxed", hub="openai/gsm8k", split="test",
               config="main", like="GSM8K"),
    TaskRecord("folio", "benchmark", "tfu", _folio, "raw_think", hub="yale-nlp/FOLIO", split="validation",
               like="FOLIO", skill="reasoning"),
    TaskRecord("temporal", "benchmark", "option_letter", _temporal, "raw_think", hub="lukaemon/bbh", split="test",
               config="temporal_sequences", like="BIG-Bench Hard temporal_sequences", skill="reasoning"),
    TaskRecord("musique", "benchmark", "short_text", _musique, "raw_think", hub="dgslibisey/MuSiQue",
               split="validation", sample=MUSIQUE_SAMPLE, like="MuSiQue", skill="knowledge"),
    TaskRecord("livecodebench", "benchmark", "program", _livecodebench, "chat_boxed",
               hub="livecodebench/code_generation_lite", split="test", hub_options=_lcb_hub_options,
               like="LiveCodeBench"),
]}


def load_benchmark(name: str, source: dict[str, Any], *, seed: int = 0, limit: int | None = None,
                   options: dict[str, Any] | None = None) -> pl.DataFrame:
    """Task items of benchmark ``name``; see :func:`load_benchmark_with_source` (this drops the source record)."""
    return load_benchmark_with_source(name, source, seed=seed, limit=limit, options=options)[0]


def folio_release(source_rows: int) -> str | None:
    """Which FOLIO release a validation split of ``source_rows`` rows is (:data:`FOLIO_RELEASES`), or None."""
    return FOLIO_RELEASES.get(source_rows)


def load_benchmark_with_source(name: str, source: dict[str, Any], *, seed: int = 0, limit: int | None = None,
                               options: dict[str, Any] | None = None) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Task items of benchmark ``name`` (a key of ``BENCHMARKS``).

    ``source``: ``{"path": file}`` (.jsonl/.json/.parquet in the benchmark's published row format) or
    ``{"hub": dataset id, "split": ..., "config": ...}`` (defaults from ``BENCHMARKS``; ``{}`` = the default hub id).
    ``limit``: the first ``limit`` items in source order; for a record with ``sample`` (``musique``) it is the size
    of a seeded random sample (``random.Random(seed).sample``, default ``sample`` = 100, sorted back into source
    order).
    ``options``: ``musique``: ``open_book`` (bool); ``livecodebench``: ``release`` (``release_v1``..``release_v6``,
    a contest-date cutoff), ``difficulty`` (list of easy/medium/hard), ``start_date``/``end_date`` (ISO dates).

    Returns the items and where they came from (recorded as ``dataset`` in the task's meta.json):
    ``{source: "hub", id, split, config, revision}`` or ``{source: "file", path, sha256}``, plus ``source_rows``
    (rows read, before any filter or sample) and ``items``; for ``folio`` also ``release`` (recognised by the
    validation row count, :data:`FOLIO_RELEASES`; null when the count is neither). A local FOLIO file with the
    204-row GitHub release logs a warning: it is not the release the compression paper used."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; allowed: {', '.join(BENCHMARKS)}")
    spec = BENCHMARKS[name]
    opts = dict(options or {})
    if "path" in source:
        rows = _read_file(source["path"])
        info: dict[str, Any] = {"source": "file", "path": str(source["path"]), "sha256": file_sha256(source["path"])}
    else:
        unknown = set(source) - {"hub", "split", "config", "revision"}
        if unknown:
            raise ValueError(f"benchmark {name!r}: unknown source keys {sorted(unknown)}; allowed: path, hub, split, config")
        extra = {"revision": source["revision"]} if "revision" in source else {}
        hub = source.get("hub", spec.hub)
        if spec.hub_options is not None:
            extra.update(spec.hub_options(opts))
        split, config = source.get("split", spec.split), source.get("config", spec.config)
        rows, resolved = _read_hub(name, hub, split, config, extra)
        info = {"source": "hub", "id": hub, "split": split, "config": config, "revision": source.get("revision"),
                "resolved_revision": resolved}
    info["source_rows"] = len(rows)
    if name == "folio":
        info["release"] = folio_release(len(rows))
        if info["source"] == "file" and len(rows) == 204:
            log.warning("folio: %s has 204 rows, the GitHub Yale-LILY/FOLIO data/v0.0 validation release; the "
                        "compression paper used the hub release yale-nlp/FOLIO (203 validation rows, different "
                        "stories): remove tasks.<name>.path to load it, or give a copy of it", source["path"])
    items = list(spec.build(rows, opts))
    if spec.sample is not None:
        n = spec.sample if limit is None else limit
        if n < len(items):
            keep = sorted(random.Random(seed).sample(range(len(items)), n))
            items = [items[i] for i in keep]
    elif limit is not None:
        items = items[:limit]
    ids = [it["id"] for it in items]
    if len(set(ids)) != len(ids):
        raise ValueError(f"benchmark {name!r}: duplicate item ids in the source")
    info["items"] = len(items)
    return items_frame([
        {"id": it["id"], "task": name, "question": it["question"], "gold": it["gold"],
         "aliases": it.get("aliases", []), "answer_format": spec.answer_format,
         "metadata": json.dumps(spec.item_metadata(it["metadata"]), sort_keys=True)}
        for it in items
    ]), info
