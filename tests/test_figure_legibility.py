"""Figures stay legible at any grid size: no label runs into a neighbouring panel, no two series share a look."""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl
import pytest

from lrmrepro.stats.labels import LABELS


def _summary(n_variants: int, tasks=("arith", "timeline", "logic", "multihop"), configs=(6, 8, 12)) -> pl.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    comps = [f"variant_{i:02d}" for i in range(n_variants // 2)]
    for comp, prec in itertools.product(comps, ("bf16", "fp32")):
        for task, bs in itertools.product(tasks, configs):
            rows.append({"model": "default", "compression": comp, "task": task, "precision": prec,
                         "backend": "transformers", "parallel": 1, "batch_size": bs, "hardware": "cpu-x-avx2",
                         "decoding": "greedy", "accuracy": float(rng.uniform(0.2, 0.9))})
    return pl.DataFrame(rows)


def _overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_the_accuracy_figure_has_one_labelled_row_per_variant_at_22_variants(tmp_path):
    """22 variants x 4 tasks (the default study's size): a heatmap with every cell annotated, every row labelled,
    and no two row labels overlapping, instead of 22 bars per task on a 10-colour cycle."""
    import matplotlib.pyplot as plt

    from lrmrepro.figures import accuracy

    captured = {}
    real_save = accuracy.save_figure

    def keep(fig, outputs):
        captured["fig"] = fig
        fig.canvas.draw()
        captured["labels"] = [t.get_window_extent() for t in fig.axes[0].get_yticklabels()]
        captured["texts"] = [t.get_text() for t in fig.axes[0].texts]
        real_save(fig, outputs)

    accuracy.save_figure = keep
    try:
        frame = accuracy.accuracy_figure(_summary(22), [tmp_path / "acc.png"])
    finally:
        accuracy.save_figure = real_save
    assert (tmp_path / "acc.png").stat().st_size > 0
    assert frame.height == 22 * 4 and len(captured["texts"]) == 22 * 4
    assert all("±" in t for t in captured["texts"])  # three configurations per cell: their std is shown
    boxes = captured["labels"]
    assert len(boxes) == 22 and not any(_overlap(a, b) for a, b in itertools.combinations(boxes, 2))
    plt.close("all")


def test_importance_colour_bars_do_not_run_into_the_next_panel():
    from lrmrepro.figures.importance import heatmap_figure

    rows = [{"behaviour": b, "layer": layer, "module_type": t, "module": f"model.layers.{layer}.{t}",
             "attribution": 1e-5 * (1 + layer + i)}
            for b in ("uncertainty_estimation", "adding_knowledge", "backtracking", "example_testing")
            for layer in range(8) for i, t in enumerate(("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                          "up_proj", "down_proj"))]
    fig = heatmap_figure(pl.DataFrame(rows), "attribution", "importance")
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(panels) == len(bars) == 4
    for bar, nxt in zip(bars, panels[1:]):
        label_boxes = [t.get_window_extent(r) for t in bar.get_yticklabels() if t.get_text()]
        label_boxes.append(bar.yaxis.get_offset_text().get_window_extent(r))
        nxt_box = nxt.get_tightbbox(r)
        assert not any(_overlap(b, nxt_box) for b in label_boxes)


def test_div_index_histograms_are_filled(monkeypatch):
    """Filled, translucent histograms per precision (neighbouring bins no longer merge into one outline)."""
    from matplotlib.patches import Polygon, Rectangle

    from lrmrepro.figures import nondeterminism as nd
    from lrmrepro.stats.nondeterminism import DIVERGENCE_SCHEMA

    rows = []
    for prec, divs in (("bf16", [3, 5, 8, 9, 30, None]), ("fp32", [40, 41, None, None, None, None])):
        for i, d in enumerate(divs):
            rows.append({"model": "A", "compression": "none", "task": "math", "precision": prec, "decoding": "greedy",
                         "id": f"q{i}", "sample_idx": 0, "div_index": d, "identical": d is None})
    captured = {}
    monkeypatch.setattr(nd, "save_figure", lambda fig, outputs: captured.setdefault("fig", fig))
    nd.figure5(pl.DataFrame([{k: r.get(k) for k in DIVERGENCE_SCHEMA} for r in rows], schema=DIVERGENCE_SCHEMA), [])
    ax = captured["fig"].axes[0]
    filled = [p for p in ax.patches if isinstance(p, Polygon) and p.get_fill()]
    outlined = [p for p in ax.patches if isinstance(p, Rectangle) and not p.get_fill()]
    assert len(filled) == 2 and all(0 < p.get_alpha() < 1 for p in filled)
    assert len({tuple(p.get_facecolor()[:3]) for p in filled}) == 2  # one colour per precision
    assert outlined and all(p.get_width() < 1e9 for p in outlined)
