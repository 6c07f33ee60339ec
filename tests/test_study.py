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


def test_compressions_are_typed_once_and_answer_what_the_rules_ask(study):
    cfg = study.config
    assert list(study.compressions) == list(cfg["compressions"])
    for name, comp in study.compressions.items():
        entry = cfg["compressions"][name]
        # the rule params are the config's own objects: Snakemake's params trigger sees the same values
        assert comp.ignore is entry["ignore"] and comp.only is entry["only"]
        assert comp.recipe == entry.get("recipe") and comp.sparsity == entry.get("sparsity")
        assert comp.distilled == (entry.get("method") == "distill")
    protected = study.compressions["gptq_w3a16_protected"]
    assert protected.protect_from == "none" and protected.protect_spec("default") == \
        "results/importance/default/protect_spec.json"
    transferred = study.compressions["gptq_w3a16_protected_from_w4"]
    assert transferred.protect_spec("default") == "results/importance/default/gptq_w4a16/protect_spec.json"
    assert study.compressions["gptq_w4a16"].protect_spec("default") is None
    assert study.compressions["gptq_w4a16"].backend == "llmcompressor" and study.compressions["any3"].backend == "anyq"
    assert study.compressions["distill_half"].backend is None and study.compressions["distill_half"].scheme == "none"
    assert set(study.compressions_of("distill")) == {"distill_half", "distill_quarter"}
    assert set(study.compressions_of("recipe")) | set(study.compressions_of("distill")) == set(cfg["compressions"])


def test_task_groups_and_weight_count_experiments_come_from_the_task_records(study):
    assert study.task_groups(["arith", "multihop", "logic", "timeline"]) == (["multihop"], ["arith", "logic", "timeline"])
    # the compression experiment has pruned and distilled variants, multihop and a reasoning task
    assert [e.name for e in study.weight_count_experiments()] == ["compression"]
