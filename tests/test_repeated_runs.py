"""Repeated runs per cell (decoding.<name>.runs): each run its own label, seed and artifacts; the table over runs."""

import polars as pl
import pytest

from lrmrepro import io
from lrmrepro.config import ConfigError, validate_config
from lrmrepro.runs import Run, decoding_labels, expand_runs, split_decoding
from lrmrepro.study import Study
from lrmrepro.stats.repeated_runs import markdown, over_runs


def _config(**sample):
    return {"models": {"m": {"source": "hub", "id": "x/y"}}, "tasks": {"arith": {"source": "synthetic", "n": 4}},
            "decoding": {"greedy": {"temperature": 0}, "sample": {"temperature": 0.6, "top_p": 0.95, **sample}},
            "experiments": {"e": {"models": ["m"], "tasks": ["arith"], "decoding": ["greedy", "sample"]}}}


def test_each_run_has_its_label_and_seed():
    cfg = validate_config(_config(runs=3, seed=5))
    labels = sorted({r.decoding for r in expand_runs(cfg)})
    assert labels == ["greedy", "sample", "sample_run2", "sample_run3"]
    assert decoding_labels("sample", {"runs": 2}) == ["sample", "sample_run2"]
    assert split_decoding("sample_run3", cfg["decoding"]) == ("sample", 3)
    with pytest.raises(ValueError, match="names no decoding"):
        split_decoding("sample_run4", cfg["decoding"])
    study = Study(cfg)
    seeds = {r.decoding: study.decoding_spec(r)["seed"] for r in expand_runs(cfg) if r.decoding.startswith("sample")}
    assert seeds == {"sample": 5, "sample_run2": 6, "sample_run3": 7}
    # the engine job's decoding has no `runs` key (a run spec is one run), and a run of one is unchanged
    assert "runs" not in study.decoding_spec(expand_runs(cfg)[0])


def test_repeated_greedy_runs_and_a_clashing_name_are_refused():
    bad = _config(runs=2)
    bad["decoding"]["greedy"]["runs"] = 3
    bad["decoding"]["sample_run2"] = {"temperature": 1.0}
    with pytest.raises(ConfigError) as err:
        validate_config(bad)
    assert "decoding.greedy.runs: 3: repeated runs of greedy decoding" in str(err.value)
    assert "decoding.sample_run2: the name of a repeated run of decoding 'sample'" in str(err.value)


def test_the_table_over_runs_means_stds_and_a_problem_bootstrap(tmp_path):
    cfg = validate_config(_config(runs=3))
    refs = []
    correct = {"sample": [1, 1, 0, 0], "sample_run2": [1, 0, 0, 0], "sample_run3": [1, 1, 1, 0]}
    for label, values in correct.items():
        run = Run("m", "none", "arith", "fp32", "transformers", 1, 8, "cpu-x", label)
        path = tmp_path / label / "scores.parquet"
        io.write_parquet(pl.DataFrame({"id": [f"q{i}" for i in range(4)], "correct": [bool(v) for v in values]}), path)
        refs.append({**run.labels(), "scores": str(path)})
    greedy = Run("m", "none", "arith", "fp32", "transformers", 1, 8, "cpu-x", "greedy")
    refs.append({**greedy.labels(), "scores": "never read"})  # a decoding of one run: not in the table
    table = over_runs(refs, cfg["decoding"], resamples=200)
    assert table.height == 1
    row = table.row(0, named=True)
    assert row["decoding"] == "sample" and row["runs"] == 3 and row["run_accuracies"] == [0.5, 0.25, 0.75]
    assert row["accuracy_mean"] == pytest.approx(0.5) and row["accuracy_std"] == pytest.approx(0.25)
    assert 0 <= row["ci_low"] <= 0.5 <= row["ci_high"] <= 1
    assert "| 3 | 50.0, 25.0, 75.0 | 50.0 | 25.0 |" in markdown(table)
