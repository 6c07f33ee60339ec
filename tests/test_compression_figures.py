"""Compression table and figures from a hand-built summary frame."""

from __future__ import annotations

import polars as pl
import pytest

from lrmrepro.figures.compression import (bits_accuracy_figure, compression_info, main_results_table,
                                          sparsity_sweep_figure, write_main_results)

METAS = {
    "gptq_w4a16": {"recipe_info": {"method": "gptq", "weight_bits": 4}, "sparsity": None, "effective_bits": 4.2},
    "gptq_w3a16": {"recipe_info": {"method": "gptq", "weight_bits": 3}, "sparsity": None, "effective_bits": 3.2},
    "sparsegpt_50": {"recipe_info": {"method": "sparsegpt", "weight_bits": None, "sparsity": 0.5}, "sparsity": 0.5,
                     "effective_bits": 16.0},
    "sparsegpt_80": {"recipe_info": {"method": "sparsegpt", "weight_bits": None}, "sparsity": 0.8,
                     "effective_bits": 16.0},
}
ACC = {  # compression -> (arith, logic, multihop EM, multihop F1)
    "none": (0.8, 0.6, 0.5, 0.7), "gptq_w4a16": (0.7, 0.6, 0.4, 0.6), "gptq_w3a16": (0.2, 0.1, 0.0, 0.1),
    "sparsegpt_50": (0.5, 0.4, 0.2, 0.3), "sparsegpt_80": (0.0, 0.1, 0.0, 0.0),
}


def summary() -> pl.DataFrame:
    rows = []
    for comp, (a, lg, em, f1) in ACC.items():
        for prec, delta in (("bf16", 0.0), ("fp32", 0.1)):  # two precisions: the table averages over them
            base = dict(model="default", compression=comp, precision=prec, backend="transformers", parallel=1,
                        batch_size=8, hardware="cpu-x", decoding="greedy", n_items=10, n_samples=1,
                        mean_output_length=20.0)
            rows.append({**base, "task": "arith", "accuracy": a + delta, "em": None, "f1": None})
            rows.append({**base, "task": "logic", "accuracy": lg, "em": None, "f1": None})
            rows.append({**base, "task": "multihop", "accuracy": em, "em": em, "f1": f1})
    return pl.DataFrame(rows)


def test_info_adds_uncompressed_row():
    info = compression_info(METAS)
    row = info.filter(pl.col("compression") == "none").row(0, named=True)
    assert row == {"compression": "none", "method": "none", "bits": 16, "sparsity": 0.0, "effective_bits": 16.0,
                   "decoder_weights": None}
    assert info.filter(pl.col("compression") == "sparsegpt_50").get_column("sparsity").item() == 0.5


def test_main_results_table(tmp_path):
    table = write_main_results(summary(), compression_info(METAS), tmp_path / "t.md", tmp_path / "t.csv")
    assert table.get_column("compression").to_list()[0] == "none"
    assert {"arith", "logic", "average", "multihop EM", "multihop F1"} <= set(table.columns)
    assert "multihop" not in table.columns  # short-text tasks get EM/F1, not accuracy, and stay out of the average
    w4 = table.filter(pl.col("compression") == "gptq_w4a16").row(0, named=True)
    assert w4["arith"] == pytest.approx(75.0)  # mean of bf16 70 % and fp32 80 %
    assert w4["average"] == pytest.approx((75.0 + 60.0) / 2)
    assert w4["multihop EM"] == pytest.approx(40.0) and w4["multihop F1"] == pytest.approx(60.0)
    md = (tmp_path / "t.md").read_text()
    assert md.startswith("| model | compression |") and "| default | gptq_w4a16 | gptq | 4 |" in md
    assert pl.read_csv(tmp_path / "t.csv").height == len(ACC)


def test_main_results_table_shows_truncation_when_summary_has_it():
    df = summary().with_columns(pl.when(pl.col("compression") == "gptq_w3a16").then(0.5).otherwise(0.0)
                                .alias("truncated_fraction"))
    table = main_results_table(df, compression_info(METAS))
    assert table.columns[-1] == "truncated"
    w3 = table.filter(pl.col("compression") == "gptq_w3a16").row(0, named=True)
    assert w3["truncated"] == pytest.approx(50.0) and w3["arith"] == pytest.approx(25.0)
    assert "truncated" not in main_results_table(summary(), compression_info(METAS)).columns


def test_missing_info_row_fails():
    with pytest.raises(ValueError, match=r"no row for compressions \['gptq_w3a16'\]"):
        main_results_table(summary(), compression_info({k: v for k, v in METAS.items() if k != "gptq_w3a16"}))


def test_sparsity_sweep_figure(tmp_path):
    outs = [tmp_path / "sweep.png", tmp_path / "sweep.pdf"]
    data = sparsity_sweep_figure(summary(), compression_info(METAS), outs)
    arith = data.filter(pl.col("task") == "arith").sort("sparsity")
    assert arith.get_column("sparsity").to_list() == [0.0, 0.5, 0.8]
    assert arith.get_column("accuracy").to_list() == pytest.approx([85.0, 55.0, 5.0])
    assert all(p.stat().st_size > 1000 for p in outs)
    assert outs[0].read_bytes()[:4] == b"\x89PNG" and outs[1].read_bytes()[:4] == b"%PDF"


def test_bits_accuracy_figure(tmp_path):
    outs = [tmp_path / "bits.png", tmp_path / "bits.pdf"]
    data = bits_accuracy_figure(summary(), compression_info(METAS), outs)
    assert sorted(data.get_column("compression").to_list()) == ["gptq_w3a16", "gptq_w4a16", "none"]
    assert all(p.exists() for p in outs)
    with pytest.raises(ValueError, match="x must be"):
        bits_accuracy_figure(summary(), compression_info(METAS), outs, x="size")
