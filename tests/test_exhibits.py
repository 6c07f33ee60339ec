"""The papers' exhibits that are computed rather than measured (lrmrepro.figures.exhibits): Table 2's bit patterns,
the dataset table, one Pass@1-std table across experiments."""

import polars as pl
import pytest

from lrmrepro.figures.exhibits import dataset_markdown, dataset_rows, fp_sum_markdown, fp_sum_rows, pass1_std_all


def test_table2_bit_patterns_are_the_papers():
    """The two examples of the reproducibility paper's Table 2: 0.1 - 0.1 + 0.2 differs with the order in FP32 and
    BF16 (last mantissa bits 01 vs 10); 0.0016 + 0.0027 + 1.0 is one FP32 pattern in both orders and two in BF16
    (…1 vs …0). The slides print that FP32 pattern as 00111111000000001000110011100111: the same mantissa, but an
    exponent of 01111110 (a value near 0.5); 1.0043 has exponent 127 = 01111111, the slides' string lost a bit."""
    rows = {(r["example"].split(" = ")[1], r["order"], r["precision"]): r for r in fp_sum_rows()}
    ex1, ex2 = "0.1, -0.1, 0.2", "0.0016, 0.0027, 1"
    assert rows[(ex1, "a + b + c", "fp32")]["bits"].endswith("01") and rows[(ex1, "a + c + b", "fp32")]["bits"].endswith("10")
    assert rows[(ex1, "a + b + c", "bf16")]["bits"].replace(" ", "") == "0011111001001101"
    assert rows[(ex1, "a + c + b", "bf16")]["bits"].replace(" ", "") == "0011111001001110"
    for order in ("a + b + c", "a + c + b"):
        assert rows[(ex2, order, "fp32")]["bits"].replace(" ", "") == "00111111100000001000110011100111"
    assert rows[(ex2, "a + b + c", "bf16")]["bits"][-1] == "1" and rows[(ex2, "a + c + b", "bf16")]["bits"][-1] == "0"
    assert rows[(ex2, "a + b + c", "fp32")]["orders_agree"] and not rows[(ex2, "a + b + c", "bf16")]["orders_agree"]
    assert rows[(ex1, "a + b + c", "fp32")]["value"] == pytest.approx(0.2, abs=1e-7)
    text = fp_sum_markdown(fp_sum_rows())
    assert text.count("\n| a, b, c") == 12 and "FP16" in text


def test_dataset_table_names_source_items_metric_and_skill():
    tasks = {"gsm8k": {"source": "benchmark", "path": "data/gsm8k/test.jsonl", "prompt_style": "chat_boxed",
                       "max_new_tokens": 256},
             "musique": {"source": "benchmark", "prompt_style": "raw_think", "max_new_tokens": 32768},
             "arith": {"source": "synthetic", "prompt_style": "chat_boxed", "max_new_tokens": 24}}
    rows = {r["task"]: r for r in dataset_rows(tasks, {"gsm8k": 24, "musique": 100, "arith": 16})}
    assert rows["gsm8k"]["source"] == "gsm8k: local file data/gsm8k/test.jsonl" and rows["gsm8k"]["items"] == 24
    assert rows["musique"]["source"].startswith("musique: ") and "(" in rows["musique"]["source"]
    assert rows["arith"]["source"] == "synthetic: arith"
    assert rows["gsm8k"]["metric"] == "boxed_int"  # the answer format GSM8K is scored with
    assert "| musique |" in dataset_markdown(list(rows.values()))


def _metrics(model, task, precision, value, n=4):
    return pl.DataFrame({"model": [model], "compression": ["none"], "task": [task], "precision": [precision],
                         "n_samples": [n], "n_configs": [4], "pass1_std": [value]})


def test_one_pass1_std_table_across_experiments():
    wide = pass1_std_all({"exp_a": _metrics("m", "aime24", "bf16", 0.02),
                          "exp_b": _metrics("m", "math500", "bf16", 0.01)})
    assert wide.columns == ["model", "aime24 (n=4, 4 configs)/bf16", "math500 (n=4, 4 configs)/bf16"]
    assert wide.row(0) == ("m", pytest.approx(2.0), pytest.approx(1.0))
    # the same cell in two experiments: each row named with its experiment
    both = pass1_std_all({"exp_a": _metrics("m", "aime24", "bf16", 0.02), "exp_b": _metrics("m", "aime24", "bf16", 0.03)})
    assert sorted(both["model"]) == ["exp_a: m", "exp_b: m"]


def test_runtime_factor_figure_draws_each_varying_factor(tmp_path):
    """One pair of panel rows (accuracy, length) per runtime factor the grid varies; constant factors are left
    out; a grid of one configuration is refused."""
    from lrmrepro.figures.runtime_factors import runtime_factor_figure

    rows = []
    for prec in ("bf16", "fp32"):
        for bs in (1, 4, 8):
            for hw in ("a100", "h100"):
                rows.append({"model": "m", "compression": "none", "task": "aime24", "precision": prec, "backend": "vllm",
                             "parallel": 1, "batch_size": bs, "hardware": hw, "decoding": "greedy", "n_items": 30,
                             "n_samples": 30, "accuracy": 0.3 + 0.01 * bs, "mean_output_length": 900.0 + bs})
    summary = pl.DataFrame(rows)
    out = [tmp_path / "f.png", tmp_path / "f.pdf"]
    assert runtime_factor_figure(summary, out) == ["batch_size", "hardware"]
    assert all(p.stat().st_size > 1000 for p in out)
    with pytest.raises(ValueError, match="one runtime configuration"):
        runtime_factor_figure(summary.filter((pl.col("batch_size") == 1) & (pl.col("hardware") == "a100")), out)


def _point(pid, bs, ref, token, div, hw="cpu-x"):
    return {"model": "m", "compression": "none", "task": "gsm8k", "precision": "bf16", "decoding": "greedy",
            "id": pid, "div_index": div, "backend": "transformers", "parallel": 1, "batch_size": bs, "hardware": hw,
            "reference": ref, "token": token, "top1_logprob": -0.69, "top2_logprob": -0.71, "margin": 0.02,
            "in_all_top5": True, "noise_sigma": 0.01, "threshold": 0.03, "flip": "near-tie"}


def test_the_worked_divergence_example_prefers_a_changed_answer_at_another_batch_size():
    from lrmrepro.figures.divergence_example import example_markdown, pick

    points = pl.DataFrame([_point("q1", 1, True, 10, 5), _point("q1", 8, False, 11, 5),      # same answer
                           _point("q2", 1, True, 20, 40), _point("q2", 8, False, 21, 40),    # answer changes
                           _point("q2", 1, False, 22, 40, hw="cpu-y")])                      # another hardware
    right = {("q2", 1, "cpu-x"): True, ("q2", 8, "cpu-x"): False, ("q2", 1, "cpu-y"): False}

    def correct(group, config, pid):
        return right.get((pid, config[2], config[3]), True)

    ex = pick(points, correct)
    assert (ex["id"], ex["other"]["batch_size"], ex["other"]["hardware"]) == ("q2", 8, "cpu-x")
    cfg = lambda r: tuple(r[k] for k in ("backend", "parallel", "batch_size", "hardware"))  # noqa: E731
    texts = {(cfg(ex["reference"]), "q2"): "Let me add 12 and 7. That is 19. \\boxed{19}",
             (cfg(ex["other"]), "q2"): "Let me add 12 and 7. That is 9. \\boxed{9}"}
    answers = {(cfg(ex["reference"]), "q2"): ("19", True), (cfg(ex["other"]), "q2"): ("9", False)}
    page = example_markdown(ex, texts, answers, "grid", 3)
    assert "agree on the first 40 tokens" in page and "| transformers p1 bs8 cpu-x | 21 | 0.5016 |" in page
    assert "Let me add 12 and 7. That is " in page and "9. \\boxed{9}" in page and "| 19 | yes |" in page
    assert pick(points.clear(), correct) is None
    assert "No problem's greedy output diverged across the 4 runtime" in example_markdown(None, {}, {}, "grid", 4)
