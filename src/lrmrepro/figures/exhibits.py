"""The papers' exhibits that are not statistics of runs: computed, never typed in.

- :func:`fp_sum_rows`: the reproducibility paper's Table 2 — floating-point addition is not associative, and the
  lower the precision the more a sum's order shows: each example's three numbers summed in two orders, every
  addition rounded to FP32, FP16 and BF16 (PyTorch's tensors, round to nearest even, as the models compute), with the
  result's bit pattern (sign | exponent | mantissa) and value.
- :func:`dataset_rows`: the compression paper's dataset table (its Table 5): each task of a study with its source
  (benchmark and hub version, or synthetic generator), the items the study evaluates, the metric (the answer format
  the scorer applies), prompt style, token budget and the skill it stands for.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

#: Table 2's examples: (a, b, c); the sums a + b + c and a + c + b
FP_EXAMPLES: tuple[tuple[float, float, float], ...] = ((0.1, -0.1, 0.2), (0.0016, 0.0027, 1.0))
#: the precisions of Table 2's columns: torch dtype name, (exponent bits, mantissa bits)
FP_FORMATS = {"fp32": ("float32", 8, 23), "fp16": ("float16", 5, 10), "bf16": ("bfloat16", 8, 7)}


def bits(value: Any, dtype: str) -> str:
    """The bit pattern of a scalar tensor of ``dtype`` as ``sign exponent mantissa``."""
    import torch

    name, exp_bits, man_bits = FP_FORMATS[dtype]
    width = 1 + exp_bits + man_bits
    as_int = {32: torch.int32, 16: torch.int16}[width]
    raw = int(value.to(getattr(torch, name)).view(as_int).item()) & ((1 << width) - 1)
    text = format(raw, f"0{width}b")
    return f"{text[0]} {text[1:1 + exp_bits]} {text[1 + exp_bits:]}"


def fp_sum_rows(examples: Sequence[tuple[float, float, float]] = FP_EXAMPLES) -> list[dict[str, Any]]:
    """One row per (example, order, precision): the sum with every addition rounded to the precision, its bits and
    its value, and whether the two orders of the example give the same bits in that precision."""
    import torch

    rows = []
    for a, b, c in examples:
        for dtype, (name, _, _) in FP_FORMATS.items():
            t = {k: torch.tensor(v, dtype=getattr(torch, name)) for k, v in (("a", a), ("b", b), ("c", c))}
            sums = {"a + b + c": (t["a"] + t["b"]) + t["c"], "a + c + b": (t["a"] + t["c"]) + t["b"]}
            patterns = {order: bits(s, dtype) for order, s in sums.items()}
            for order, s in sums.items():
                rows.append({"example": f"a, b, c = {a:g}, {b:g}, {c:g}", "order": order, "precision": dtype,
                             "bits": patterns[order], "value": float(s.to(torch.float64).item()),
                             "orders_agree": len(set(patterns.values())) == 1})
    return rows


FP_TITLE = ("Table 2 (Give Me FP32 or Give Me Death?): floating-point addition is not associative. Each sum is "
            "computed with every addition rounded to the precision (PyTorch, round to nearest even); the second "
            "example differs in FP16 and BF16 only: a higher-precision type absorbs the rounding error")


def fp_sum_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    import polars as pl

    from .nondeterminism import table_markdown

    table = pl.DataFrame([{"example": r["example"], "sum order": r["order"], "precision": r["precision"].upper(),
                           "bits (sign exponent mantissa)": f"`{r['bits']}`", "value": repr(r["value"]),
                           "both orders equal": "yes" if r["orders_agree"] else "no"} for r in rows])
    return table_markdown(table, FP_TITLE)


def dataset_rows(tasks: Mapping[str, Mapping[str, Any]], item_counts: Mapping[str, int]) -> list[dict[str, Any]]:
    """One row per task of ``tasks`` (the configuration's ``tasks`` entries of the study) with the number of items
    the study evaluates (``item_counts``: rows of its prepared items table)."""
    from ..tasks.registry import record_of

    rows = []
    for name, spec in tasks.items():
        rec = record_of(name, spec)
        if spec["source"] == "synthetic":
            source = f"synthetic: {spec.get('generator', name)}"
        else:
            hub = spec.get("hub") or (rec.hub if rec else "")
            split = spec.get("split") or (rec.split if rec else "")
            source = f"{spec.get('benchmark', name)}: " + (f"local file {spec['path']}" if "path" in spec
                                                         else f"{hub} ({split})")
        rows.append({"task": name, "source": source, "items": int(item_counts[name]),
                     "metric": rec.answer_format if rec else "", "prompt_style": spec.get("prompt_style", ""),
                     "max_new_tokens": spec.get("max_new_tokens"), "skill": rec.skill if rec else "",
                     "stands_for": rec.like if rec else ""})
    return rows


DATASET_TITLE = ("The tasks of this study (the compression paper's dataset table): where the items come from, how many "
                 "are evaluated, the answer format the scorer applies (docs/tasks.md), the prompt style and token "
                 "budget, and the skill a task stands for in finding (1)")


def dataset_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    import polars as pl

    from .nondeterminism import table_markdown

    table = pl.DataFrame([{"task": r["task"], "source": r["source"], "items": str(r["items"]),
                           "metric (answer format)": r["metric"], "prompt style": r["prompt_style"],
                           "max new tokens": str(r["max_new_tokens"]), "skill": r["skill"] or "-"} for r in rows])
    return table_markdown(table, DATASET_TITLE)


def pass1_std_all(metrics: Mapping[str, Any]) -> Any:
    """One Pass@1-std table (the reproducibility paper's Table 5) across every sampled experiment of a study
    (``metrics``: experiment name -> its statistics table): rows model (/ compression), columns task/precision. Where
    two experiments hold the same (model, task, precision), their rows are named with the experiment."""
    import polars as pl

    from .nondeterminism import TABLES, metric_table

    frames = [m.with_columns(pl.lit(name).alias("experiment")) for name, m in metrics.items()]
    df = pl.concat(frames, how="diagonal_relaxed")
    sampled = df.filter(pl.col("n_samples") > 1)
    clash = sampled.group_by(["model", "compression", "task", "precision"]).agg(pl.col("experiment").n_unique())
    if (clash.get_column("experiment") > 1).any():
        df = df.with_columns((pl.col("experiment") + ": " + pl.col("model")).alias("model"))
    metric, kind, scale, _ = TABLES["table5"]
    return metric_table(df, metric, kind, scale)
