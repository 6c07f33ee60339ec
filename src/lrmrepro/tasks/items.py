"""The item table of a task (schema: docs/architecture.md, "Task items"): every loader and generator writes it."""

from __future__ import annotations

from typing import Any

import polars as pl

ITEM_SCHEMA = {
    "id": pl.String, "task": pl.String, "question": pl.String, "gold": pl.String,
    "aliases": pl.List(pl.String), "answer_format": pl.String, "metadata": pl.String,
}


def items_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=ITEM_SCHEMA)
