"""Tables and figures of the nondeterminism study from a hand-built metrics frame."""

import polars as pl
import pytest

import numpy as np

from lrmrepro.figures.nondeterminism import figure4, figure5, metric_table, value_axis_scale, write_table
from lrmrepro.stats.nondeterminism import DIVERGENCE_SCHEMA, METRICS_SCHEMA


def metrics_frame():
    rows = []
    for model in ("A", "B"):
        for task in ("aime", "math"):
            for j, prec in enumerate(("fp32", "bf16", "layercast", "fp16")):
                for n in (1, 4):
                    rows.append({
                        "model": model, "compression": "none", "task": task, "precision": prec,
                        "decoding": "greedy" if n == 1 else "sample", "n_configs": 12, "n_problems": 30,
                        "n_samples": n, "ddof": 1, "acc_mean": 0.5, "std_acc": 0.01 * (j + 1),
                        "pass1_mean": 0.5, "pass1_std": 0.001 * (j + 1), "mean_output_length": 100.0,
                        "avg_std_output_length": 10.0 * j if n == 1 else None,
                        "n_identical": j if n == 1 else None, "n_diverging": 30 - j if n == 1 else None,
                        "div_index_mean": 50.0 if n == 1 else None, "div_index_median": 40.0 if n == 1 else None,
                        "avg_std_top1_prob": 0.002 * j if n == 1 else None,
                    })
    return pl.DataFrame(rows, schema=METRICS_SCHEMA)


def test_tables(tmp_path):
    m = metrics_frame()
    t3 = metric_table(m, "std_acc", "greedy", 100)
    assert t3.get_column("model").to_list() == ["A", "B"]
    assert t3.columns[1:5] == ["aime/bf16", "aime/fp16", "aime/fp32", "aime/layercast"]
    # bf16 is j=1 -> std_acc 0.02 -> 2 %
    assert t3.filter(pl.col("model") == "A").get_column("aime/bf16")[0] == pytest.approx(2.0)
    t5 = write_table(m, "table5", tmp_path / "t5.csv", tmp_path / "t5.md")
    assert "aime (n=4, 12 configs)/fp32" in t5.columns  # a Pass@1 std names its number of configurations
    assert t5.filter(pl.col("model") == "B").get_column("math (n=4, 12 configs)/fp16")[0] == pytest.approx(0.4)
    md = (tmp_path / "t5.md").read_text()
    assert "| A |" in md and "Pass@1" in md
    assert pl.read_csv(tmp_path / "t5.csv").shape == t5.shape
    write_table(m, "table4", tmp_path / "t4.csv", tmp_path / "t4.md")
    assert "| 0 |" in (tmp_path / "t4.md").read_text() or " 0 |" in (tmp_path / "t4.md").read_text()
    with pytest.raises(ValueError, match="unknown table"):
        write_table(m, "table9", tmp_path / "x.csv", tmp_path / "x.md")


def test_figures(tmp_path):
    m = metrics_frame()
    figure4(m, [tmp_path / "f4.png", tmp_path / "f4.pdf"])
    rows = []
    for prec, divs in (("bf16", [3, 5, 8, None]), ("fp32", [40, None, None, None])):
        for i, d in enumerate(divs):
            rows.append({"model": "A", "compression": "none", "task": "math", "precision": prec, "decoding": "greedy",
                         "id": f"p{i}", "n_configs": 12, "identical": d is None, "div_index": d,
                         "top1_positions": d or 10, "std_top1_prob": 0.01, "std_output_length": 1.0,
                         "min_output_length": 10, "max_output_length": 12})
    figure5(pl.DataFrame(rows, schema=DIVERGENCE_SCHEMA), [tmp_path / "f5.png", tmp_path / "f5.pdf"])
    for f in ("f4.png", "f4.pdf", "f5.png", "f5.pdf"):
        assert (tmp_path / f).stat().st_size > 1000
    assert (tmp_path / "f4.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "f5.pdf").read_bytes()[:4] == b"%PDF"
    with pytest.raises(ValueError, match="empty"):
        figure5(pl.DataFrame(schema=DIVERGENCE_SCHEMA), [tmp_path / "x.png"])


def test_figure4_uses_a_log_axis_when_precisions_differ_by_orders_of_magnitude():
    # the default run: bf16 ~6e-5, fp32 and LayerCast ~4e-8 (a linear axis shows them as empty)
    assert value_axis_scale(np.array([6e-5, 1e-5, 4e-8, 3e-8, 0.0])) == "log"
    assert value_axis_scale(np.array([0.002, 0.004, 0.006, 0.0])) == "linear"
    assert value_axis_scale(np.array([0.0, 0.0])) == "linear"
