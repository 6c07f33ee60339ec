"""Calibration data for llm-compressor: a seeded sample of texts, tokenized and truncated.

Spec (the ``calibration`` config block)::

    {"source": "model_corpus" | "<hub dataset id>" | "<path to .jsonl with a text field>",
     "num_samples": int, "max_seq_len": int, "seed": int,
     # optional: "text_field" (default "text"), "split" (hub datasets, default "train")}

``model_corpus`` reads ``<model_dir>/train_corpus.jsonl`` (the embedded model's training text). The sample is
``random.Random(seed).sample`` over the non-empty texts (without replacement); when fewer texts exist than
``num_samples`` all are used and the meta records the count actually used. Each text is tokenized on its own
(no special tokens added, no concatenation) and truncated to ``max_seq_len`` tokens.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

REQUIRED = ("source", "num_samples", "max_seq_len")
OPTIONAL = ("seed", "text_field", "split")


def validate_spec(spec: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise ValueError(f"calibration: expected a mapping with keys {list(REQUIRED + OPTIONAL)}, got {spec!r}")
    missing = [k for k in REQUIRED if k not in spec]
    unknown = [k for k in spec if k not in REQUIRED + OPTIONAL]
    if missing or unknown:
        raise ValueError(f"calibration: missing keys {missing}, unknown keys {unknown}; allowed keys: "
                         f"{list(REQUIRED + OPTIONAL)}")
    for key in ("num_samples", "max_seq_len"):
        if not isinstance(spec[key], int) or isinstance(spec[key], bool) or spec[key] < 1:
            raise ValueError(f"calibration.{key} must be a positive integer, got {spec[key]!r}")
    if not isinstance(spec["source"], str) or not spec["source"]:
        raise ValueError(f"calibration.source must be 'model_corpus', a hub dataset id or a .jsonl path, "
                         f"got {spec['source']!r}")
    return {"seed": 0, "text_field": "text", "split": "train", **spec}


def _read_jsonl(path: Path, field: str) -> list[str]:
    texts = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if field not in row:
                raise ValueError(f"{path}:{lineno}: no {field!r} field (keys: {sorted(row)})")
            texts.append(str(row[field]))
    return texts


def load_texts(spec: dict[str, Any], model_dir: str | os.PathLike) -> tuple[list[str], str]:
    """All candidate texts of the source, and a description of where they came from."""
    spec = validate_spec(spec)
    source, field = spec["source"], spec["text_field"]
    if source == "model_corpus":
        path = Path(model_dir) / "train_corpus.jsonl"
        if not path.exists():
            raise FileNotFoundError(f"calibration.source=model_corpus but {path} does not exist (only the embedded "
                                    "default model ships its training text; name a dataset or a .jsonl file instead)")
        return _read_jsonl(path, field), str(path)
    if source.endswith(".jsonl") or Path(source).exists():
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"calibration.source: file {path} does not exist")
        return _read_jsonl(path, field), str(path)
    import datasets

    ds = datasets.load_dataset(source, split=spec["split"])
    if field not in ds.column_names:
        raise ValueError(f"calibration: dataset {source!r} has no column {field!r} (columns: {ds.column_names}); "
                         "set calibration.text_field")
    return [str(t) for t in ds[field]], f"hub:{source}[{spec['split']}]"


def sample_texts(texts: list[str], num_samples: int, seed: int) -> list[str]:
    texts = [t for t in texts if t.strip()]
    if len(texts) <= num_samples:
        return texts
    return random.Random(seed).sample(texts, num_samples)


def build_calibration(spec: dict[str, Any], model_dir: str | os.PathLike, tokenizer) -> tuple[Any, dict[str, Any]]:
    """A tokenized ``datasets.Dataset`` (input_ids, attention_mask) and its description for meta.json."""
    import datasets

    spec = validate_spec(spec)
    texts, origin = load_texts(spec, model_dir)
    chosen = sample_texts(texts, spec["num_samples"], spec["seed"])
    if not chosen:
        raise ValueError(f"calibration: source {origin} has no non-empty texts")
    enc = tokenizer(chosen, add_special_tokens=False, truncation=True, max_length=spec["max_seq_len"])
    ds = datasets.Dataset.from_dict({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})
    lengths = [len(ids) for ids in enc["input_ids"]]
    info = {
        "source": spec["source"], "resolved_source": origin, "seed": spec["seed"],
        "num_samples_requested": spec["num_samples"], "num_samples": len(chosen), "max_seq_len": spec["max_seq_len"],
        "num_tokens": sum(lengths), "mean_tokens_per_sample": sum(lengths) / len(lengths),
    }
    return ds, info
