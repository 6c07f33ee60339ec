"""The report's table pages (lrmrepro.figures.html) and the per-experiment summary table (stats.summary)."""

from __future__ import annotations

import polars as pl

from lrmrepro.figures.html import markdown_page, write_page
from lrmrepro.stats.summary import SUMMARY_SCHEMA, experiment_markdown


def test_a_markdown_table_becomes_a_page_with_its_rows_and_notes(tmp_path):
    md = ("# Std@Acc (%)\n\nNotes with `code` and <script>alert(1)</script>.\n\n"
          "| model | arith/bf16 | arith/fp32 |\n|---|---|---|\n| default | 1.25 | 0 |\n| other | 2 | 0 |\n")
    (tmp_path / "t.md").write_text(md)
    write_page(tmp_path / "t.md", tmp_path / "t.html", "tables/x/table3", tmp_path / "log")
    page = (tmp_path / "t.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<title>tables/x/table3</title>" in page
    assert page.count("<tr>") == 3 and "<td>1.25</td>" in page and "<th>arith/bf16</th>" in page
    assert "<script>" not in page and "&lt;script&gt;" in page  # raw HTML in a table's notes is shown, not run
    assert "<code>code</code>" in page


def test_an_experiments_summary_shows_only_the_columns_that_apply():
    base = {"model": "default", "compression": "none", "backend": "transformers", "parallel": 1,
            "hardware": "cpu-x-avx2", "decoding": "greedy", "n_items": 32, "n_samples": 32, "em": None, "f1": None,
            "mean_output_length": 90.26, "truncated_fraction": 0.0, "accuracy_ci_low": 0.2, "accuracy_ci_high": 0.5}
    rows = [{**base, "task": "arith", "precision": p, "batch_size": b, "accuracy": a}
            for p, b, a in (("bf16", 8, 0.34375), ("bf16", 16, 0.3125), ("fp32", 8, 0.34375))]
    df = pl.DataFrame(rows, schema=SUMMARY_SCHEMA)
    md = experiment_markdown(df, "precision_grid")
    header = next(line for line in md.splitlines() if line.startswith("| "))
    assert header == ("| precision | batch_size | n_items | n_samples | accuracy | accuracy_ci_low | accuracy_ci_high | "
                      "mean_output_length | truncated_fraction |")
    assert "model `default`" in md and "task `arith`" in md and "Not measured for these tasks, so not shown: em, f1" in md
    assert "| bf16 | 8 | 32 | 32 | 34.4 | 20 | 50 | 90.3 | 0 |" in md
