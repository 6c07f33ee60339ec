"""Rescoring generations made elsewhere (other tools, other clusters) with the workflow's scorers.

Input layouts (docs/tasks.md, "Rescoring outputs made elsewhere"):

- a folder of ``.txt`` files, one output each: the file's path relative to the folder without ``.txt`` is the item
  id (``--align id``; subfolders allow ids with ``/`` such as MATH-500's ``test/algebra/1.json``) or an integer
  position (``--align order``: ``0.txt``, ``1.txt``, ... sorted numerically, consecutive from 0 or 1);
- a JSONL (or a JSON list) of objects with an id field and a text field, auto-detected among :data:`ID_FIELDS` and
  :data:`TEXT_FIELDS` unless named; the text may be a list (several samples); an optional ``finish_reason``;
- lm-evaluation-harness samples files (``samples_<task>_<date>.jsonl``: ``doc_id`` = the document's position in
  the task, ``resps`` = nested lists of generations, one row per sample, ``sample_idx`` = position in the
  flattened list).

Alignment: by id (every output id must be an item id; items without an output are reported and not scored) or by
order (the k-th output unit is the k-th item; refused unless the counts are equal). The result is the workflow's
``scores.parquet`` schema, scored by :func:`lrmrepro.scoring.score_table` under a truncation policy.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import polars as pl

ID_FIELDS = ("id", "doc_id", "question_id", "unique_id")
TEXT_FIELDS = ("text", "output", "response", "completion", "generation")
LAYOUTS = ("txt_folder", "jsonl", "lm_eval")
OUTPUT_SCHEMA = {"key": pl.String, "sample_idx": pl.Int32, "text": pl.String, "finish_reason": pl.String}


class AlignmentError(ValueError):
    """Outputs cannot be aligned with the task's items (counts differ, unknown ids, no id or text field)."""


def _names(values: list[Any], limit: int = 5) -> str:
    shown = ", ".join(repr(v) for v in values[:limit])
    return shown + (f", ... ({len(values)} in all)" if len(values) > limit else "")


def _lookup(row: dict[str, Any], field: str) -> Any:
    """``row[field]``, else the same key inside lm-eval's ``doc`` (the benchmark's own row)."""
    if field in row:
        return row[field]
    doc = row.get("doc")
    return doc.get(field) if isinstance(doc, dict) else None


def _read_json_rows(path: Path) -> list[dict[str, Any]]:
    text = path.read_text()
    if path.suffix.lower() == ".json":
        data = json.loads(text)
        if not isinstance(data, list):
            raise AlignmentError(f"{path}: expected a JSON list of objects")
        return data
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise AlignmentError(f"{path}, line {n}: not JSON ({err.msg})") from None
    return rows


def _flatten(x: Any) -> list[Any]:
    if isinstance(x, (list, tuple)):
        return [y for item in x for y in _flatten(item)]
    return [x]


def read_outputs(path: str | Path, *, id_field: str | None = None,
                 text_field: str | None = None) -> tuple[pl.DataFrame, str]:
    """The outputs at ``path`` as rows ``key`` (the id, or the position for order alignment), ``sample_idx``,
    ``text``, ``finish_reason`` (null when not given), in reading order; and the layout detected."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"outputs {str(path)!r} do not exist")
    rows: list[dict[str, Any]] = []
    if path.is_dir():
        files = sorted(path.rglob("*.txt"))
        if not files:
            raise AlignmentError(f"{path}: a folder of outputs must hold <id>.txt files; none found")
        for f in files:
            rows.append({"key": f.relative_to(path).as_posix()[: -len(".txt")], "sample_idx": 0,
                         "text": f.read_text(errors="replace"), "finish_reason": None})
        return pl.DataFrame(rows, schema=OUTPUT_SCHEMA), "txt_folder"
    raw = _read_json_rows(path)
    if not raw:
        raise AlignmentError(f"{path}: no outputs")
    if not all(isinstance(r, dict) for r in raw):
        raise AlignmentError(f"{path}: every line must be a JSON object")
    if "resps" in raw[0] and "doc_id" in raw[0]:  # lm-evaluation-harness samples file
        for r in raw:
            key = _lookup(r, id_field) if id_field else r["doc_id"]
            for i, t in enumerate(_flatten(r["resps"])):
                rows.append({"key": str(key), "sample_idx": i, "text": None if t is None else str(t),
                             "finish_reason": None})
        return pl.DataFrame(rows, schema=OUTPUT_SCHEMA), "lm_eval"
    fields = set().union(*(r.keys() for r in raw[:50]))
    tf = text_field or next((f for f in TEXT_FIELDS if f in fields), None)
    if tf is None or tf not in fields:
        raise AlignmentError(f"{path}: no text field ({text_field or ', '.join(TEXT_FIELDS)}) in the rows; fields "
                             f"present: {', '.join(sorted(fields))}; name it with --text-field")
    idf = id_field or next((f for f in ID_FIELDS if f in fields), None)
    seen: dict[str, int] = {}
    for n, r in enumerate(raw):
        key = str(_lookup(r, idf)) if idf and _lookup(r, idf) is not None else None
        texts = r.get(tf)
        texts = texts if isinstance(texts, list) else [texts]
        unit = key if key is not None else f"#{n}"
        for t in texts:
            rows.append({"key": key if key is not None else str(n), "sample_idx": seen.get(unit, 0),
                         "text": None if t is None else str(t), "finish_reason": r.get("finish_reason")})
            seen[unit] = seen.get(unit, 0) + 1
    return pl.DataFrame(rows, schema=OUTPUT_SCHEMA), "jsonl" if idf else "jsonl (no id field)"


def _units(outputs: pl.DataFrame) -> list[str]:
    """Distinct keys in reading order."""
    return list(dict.fromkeys(outputs.get_column("key").to_list()))


def align(items: pl.DataFrame, outputs: pl.DataFrame, how: str, layout: str,
          items_name: str = "the task items") -> tuple[pl.DataFrame, dict[str, Any]]:
    """Generations-shaped rows (``id``, ``sample_idx``, ``text``, ``finish_reason``) for the outputs, and a report
    (``aligned_by``, counts, items without an output). Raises AlignmentError when the outputs do not fit."""
    item_ids = items.get_column("id").to_list()
    units = _units(outputs)
    if how == "order":
        if layout in ("txt_folder", "lm_eval"):
            bad = [k for k in units if not re.fullmatch(r"\d+", k)]
            if bad:
                raise AlignmentError(f"order alignment needs integer positions as output names; got {_names(bad)}")
            positions = sorted(int(k) for k in units)
            base = positions[0] if positions else 0
            if len(set(positions)) != len(positions):
                raise AlignmentError(f"order alignment: output positions appear twice: {_names(units)}")
            if positions != list(range(base, base + len(positions))) or base not in (0, 1):
                missing = sorted(set(range(min(base, 1), positions[-1] + 1)) - set(positions))
                raise AlignmentError(f"order alignment: output positions must run from 0 (or 1) without gaps; "
                                     f"missing {_names(missing)}")
            order = {k: int(k) - base for k in units}
        else:
            order = {k: i for i, k in enumerate(units)}
        if len(units) != len(item_ids):
            raise AlignmentError(f"order alignment refused: {len(units)} outputs but {len(item_ids)} items in "
                                 f"{items_name}; the counts must be equal (or align by id)")
        ids = [item_ids[order[k]] for k in outputs.get_column("key").to_list()]
        missing_items: list[str] = []
    elif how == "id":
        if layout == "jsonl (no id field)":
            raise AlignmentError(f"id alignment: the rows have no id field ({', '.join(ID_FIELDS)}); name it with "
                                 "--id-field, or align by order")
        known = set(item_ids)
        unknown = [k for k in units if k not in known]
        if unknown:
            raise AlignmentError(f"id alignment refused: {len(unknown)} output ids are not item ids of {items_name}: "
                                 f"{_names(unknown)} (item ids look like {_names(item_ids, 3)})")
        ids = outputs.get_column("key").to_list()
        present = set(units)
        missing_items = [i for i in item_ids if i not in present]
    else:
        raise ValueError(f"align must be 'id' or 'order', got {how!r}")
    gens = pl.DataFrame({"id": ids, "sample_idx": outputs.get_column("sample_idx"),
                         "text": outputs.get_column("text"), "finish_reason": outputs.get_column("finish_reason")},
                        schema={"id": pl.String, "sample_idx": pl.Int32, "text": pl.String, "finish_reason": pl.String})
    dup = gens.group_by("id", "sample_idx").len().filter(pl.col("len") > 1)
    if dup.height:
        raise AlignmentError(f"two outputs for the same item and sample: {_names(dup.get_column('id').to_list())}")
    report = {"aligned_by": how, "layout": layout, "n_outputs": gens.height, "n_output_items": len(units),
              "n_items": len(item_ids), "n_items_without_output": len(missing_items),
              "items_without_output": missing_items[:50]}
    return gens, report


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    files = sorted(path.rglob("*.txt")) if path.is_dir() else [path]
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()


def rescore(items_path: str | Path, outputs_path: str | Path, out_dir: str | Path, *, align_by: str,
            policy: str = "strict", id_field: str | None = None, text_field: str | None = None,
            label: str | None = None, allow_weak_sandbox: bool = False) -> dict[str, Any]:
    """Score outputs made elsewhere against a task's items (``results/tasks/<task>.parquet``). Writes
    ``<out_dir>/scores.parquet``, ``scores.meta.json`` and ``summary.parquet`` / ``summary.md``; returns the meta."""
    from .. import io
    from ..fingerprint import code_of
    from ..provenance import Timer, write_meta
    from ..stats.summary import SUMMARY_SCHEMA, summary_row, to_markdown
    from . import score_table, scoring_stats

    items_path, outputs_path, out_dir = Path(items_path), Path(outputs_path), Path(out_dir)
    items = pl.read_parquet(items_path)
    outputs, layout = read_outputs(outputs_path, id_field=id_field, text_field=text_field)
    gens, report = align(items, outputs, align_by, layout, str(items_path))
    with Timer() as t:
        scores = score_table(items, gens, allow_weak_sandbox=allow_weak_sandbox, policy=policy)
    io.write_parquet(scores, out_dir / "scores.parquet")
    stats = scoring_stats(scores, policy)
    task = items.get_column("task")[0] if items.height else items_path.stem
    label = label or outputs_path.stem
    row = summary_row({"model": label, "compression": "external", "task": task, "precision": "external",
                       "backend": "external", "parallel": None, "batch_size": None, "hardware": "external",
                       "decoding": "external"}, scores, None)
    summary = pl.DataFrame([row], schema=SUMMARY_SCHEMA)
    io.write_parquet(summary, out_dir / "summary.parquet")
    io.write_text(to_markdown(summary), out_dir / "summary.md")
    config = {"items": str(items_path), "outputs": str(outputs_path), "outputs_sha256": _sha256(outputs_path),
              "align": align_by, "scoring_policy": policy, "id_field": id_field, "text_field": text_field}
    return write_meta(out_dir / "scores.meta.json", "rescore_external", config, code=code_of("lrmrepro.score"),
                      wall_seconds=t.seconds, **report, **stats)
