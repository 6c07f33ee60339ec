"""The typed study (lrmrepro.study): what the rules ask of an experiment, answered on the shipped configs."""

from pathlib import Path

import pytest
import yaml

from lrmrepro.config import load_study, main, validate_config
from lrmrepro.runs import Run, expand_runs
from lrmrepro.study import Study, StudyError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def study():
    return Study(load_study([ROOT / "config.yaml"]), resolve_hardware=lambda h: "cpu-x" if h == "auto" else h)


def test_runs_are_each_experiments_grid_once_in_config_order(study):
    cfg = study.config
    for name, exp in study.experiments.items():
        assert list(exp.runs) == expand_runs(cfg, name, resolve_hardware=lambda h: "cpu-x")
    assert study.runs == expand_runs(cfg, resolve_hardware=lambda h: "cpu-x")
    # precision_grid and compression share the uncompressed bf16 / bs16 runs: counted once
    shared = set(study.experiments["precision_grid"].runs) & set(study.experiments["compression"].runs)
    assert shared and len(study.runs) == len({r for e in study.experiments.values() for r in e.runs})


def test_what_each_experiment_produces(study):
    grid, sampling, comp = (study.experiments[n] for n in ("precision_grid", "sampling_grid", "compression"))
    assert (grid.greedy, grid.sampled, grid.stats, grid.compares_compressions) == (True, False, True, False)
    assert (sampling.greedy, sampling.sampled) == (False, True)
    assert comp.compares_compressions and comp.sparsity_sweep and not comp.stats
    assert "none" not in comp.compressed and comp.noise_from == "precision_grid"
    assert [e.name for e in study.stats_experiments()] == ["precision_grid", "sampling_grid", "compressed_runtime_grid"]
    assert [e.name for e in study.compression_experiments()] == ["compression", "compressed_runtime_grid"]
    assert [e.name for e in study.sparsity_experiments()] == ["compression"]


def test_noise_floor_run_is_the_first_greedy_transformers_run(study):
    run = study.experiments["precision_grid"].noise_floor_run
    assert run == study.experiments["precision_grid"].runs[0] and run.decoding == "greedy"
    assert study.experiments["sampling_grid"].noise_floor_run is None  # sampled only: no noise floor


def test_decoding_spec_takes_the_tasks_max_new_tokens(study):
    run = study.experiments["sampling_grid"].runs[0]
    spec = study.decoding_spec(run)
    assert spec["temperature"] == 0.7 and spec["n"] == 4
    assert spec["max_new_tokens"] == study.config["tasks"][run.task]["max_new_tokens"]


def test_engines_group_runs_and_include_the_importance_traces(study):
    assert {r for runs in study.engines.values() for r in runs} == set(study.runs) | set(study.importance_runs)
    for engine, runs in study.engines.items():
        assert {(r.task, r.batch_size) for r in runs} and all(r.precision == engine.precision for r in runs)
    imp = study.importance_reference_runs("default", "none")
    assert imp and {r.task for r in imp} == set(study.config["importance"]["tasks"])
    assert all(isinstance(r, Run) and r.compression == "none" for r in imp)


def test_scoring_conflict_is_refused_by_the_config_check_command(tmp_path, capsys):
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["experiments"]["compression"]["scoring"] = "lenient"
    validate_config(cfg)  # each experiment is valid on its own
    with pytest.raises(StudyError):
        Study(validate_config(cfg))
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    assert main([str(path), "--workdir", str(ROOT)]) == 1
    assert "experiments.compression.scoring: 'lenient'" in capsys.readouterr().err
