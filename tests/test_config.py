import copy
import re
from pathlib import Path

import pytest
import yaml

from lrmrepro.config import ConfigError, validate_config
from lrmrepro.runs import Run, expand_runs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cfg():
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def test_default_config_is_valid_and_defaults_are_filled(cfg):
    out = validate_config(cfg)
    assert out["tasks"]["arith"]["prompt_style"] == "chat_boxed"
    assert out["train"]["hidden_size"] == 128
    assert out["experiments"]["compression"]["decoding"] == ["greedy"]
    assert out["calibration"]["seed"] == 0


@pytest.mark.parametrize("path", [".test/config.yaml", *sorted(str(p.relative_to(ROOT))
                                                                 for p in (ROOT / "configs").glob("*.yaml"))])
def test_shipped_configs_are_valid(path):
    load_study([ROOT / path])


@pytest.mark.parametrize(
    "mutate, key, allowed",
    [
        (lambda c: c["experiments"]["precision_grid"].__setitem__("precisions", ["bf17"]),
         "experiments.precision_grid.precisions[0]", "bf16, fp16, fp32, layercast"),
        (lambda c: c["models"]["default"].__setitem__("source", "ftp"), "models.default.source", "embedded, train, hub, local, gguf"),
        (lambda c: c["tasks"]["arith"].__setitem__("prompt_style", "chatty"), "tasks.arith.prompt_style",
         "chat_boxed, raw_think"),
        (lambda c: c["experiments"]["compression"].__setitem__("tasks", ["arith", "physics"]),
         "experiments.compression.tasks[1]", "arith, timeline, logic, multihop"),
        (lambda c: c["experiments"]["compression"].__setitem__("compressions", ["gptq_w2"]),
         "experiments.compression.compressions[0]", "none, gptq_w4a16"),
        (lambda c: c["experiments"]["compression"].__setitem__("batch_size", [8]),
         "experiments.compression", "batch_sizes"),
        (lambda c: c["train"].__setitem__("hidden_size", 200), "train.hidden_size", "multiple of 128"),
    ],
)
def test_bad_config_names_key_and_allowed_values(cfg, mutate, key, allowed):
    bad = copy.deepcopy(cfg)
    mutate(bad)
    with pytest.raises(ConfigError) as err:
        validate_config(bad)
    assert key in str(err.value)
    assert allowed in str(err.value)


def test_greedy_with_several_samples_is_refused(cfg):
    cfg["decoding"]["greedy"]["n"] = 4
    with pytest.raises(ConfigError, match="decoding.greedy.n"):
        validate_config(cfg)


def test_hub_model_needs_id(cfg):
    cfg["models"]["big"] = {"source": "hub"}
    with pytest.raises(ConfigError, match="models.big.id"):
        validate_config(cfg)


def test_schema_lists_the_precisions_and_backends_of_the_package():
    """The schema keeps its own enums (they document the configuration); they must equal the package's lists, from
    which the workflow's wildcard constraints are made."""
    from lrmrepro.config import load_schema
    from lrmrepro.precision import PRECISIONS
    from lrmrepro.runs import BACKENDS

    experiment = load_schema()["properties"]["experiments"]["additionalProperties"]["properties"]
    assert tuple(experiment["precisions"]["items"]["enum"]) == PRECISIONS
    assert tuple(experiment["backend"]["enum"]) == BACKENDS


def test_expand_runs_is_the_grid(cfg):
    c = validate_config(cfg)
    grid = expand_runs(c, "precision_grid", resolve_hardware=lambda h: "cpu-x")
    exp = c["experiments"]["precision_grid"]
    assert len(grid) == len(exp["tasks"]) * len(exp["precisions"]) * len(exp["parallel"]) * len(exp["batch_sizes"])
    r = grid[0]
    assert r.generations == (f"results/generations/default/none/{r.task}/{r.precision}/"
                             f"transformers-p{r.parallel}-bs{r.batch_size}-cpu-x/greedy/generations.parquet")
    everything = expand_runs(c, resolve_hardware=lambda h: "cpu-x")
    assert len(everything) == len(set(everything))  # overlapping grid points are generated once


def test_run_from_wildcards_inverts_the_artifact_path(cfg):
    """A job knows its run from the path's wildcards alone (Run.FOLDER, wildcards named like the labels); the folder
    format is the one existing artifacts have."""
    import re

    run = expand_runs(validate_config(cfg), resolve_hardware=lambda h: "cpu-x")[-1]
    pattern = (r"results/generations/(?P<model>[^/]+)/(?P<compression>[^/]+)/(?P<task>[^/]+)/(?P<precision>[^/]+)/"
               r"(?P<backend>[a-z_]+)-p(?P<parallel>\d+)-bs(?P<batch_size>\d+)-(?P<hardware>[A-Za-z0-9-]+)/(?P<decoding>[^/]+)")
    wildcards = re.fullmatch(pattern, run.folder).groupdict()
    assert Run.from_wildcards(wildcards) == run
    assert isinstance(Run.from_wildcards(wildcards).parallel, int)
    assert set(re.findall(r"{(\w+)}", Run.FOLDER)) == set(Run.LABELS)
    assert Run.FOLDER.format(**wildcards) == run.folder


# --- every configuration error of the trust issue, each reported before any job runs, naming key, value, allowed
from lrmrepro.config import load_study, read_yaml  # noqa: E402


def _write(tmp_path, text, name="study.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_duplicate_yaml_key_is_refused_with_its_line(tmp_path):
    p = _write(tmp_path, "decoding:\n  greedy: {temperature: 0}\n  greedy: {temperature: 0.7, n: 4}\n")
    with pytest.raises(ConfigError) as err:
        read_yaml(p)
    msg = str(err.value)
    assert str(p) in msg and "line 3" in msg and "'greedy' appears twice" in msg and "first at line 2" in msg


def test_yaml_syntax_error_names_file_line_and_column(tmp_path):
    p = _write(tmp_path, "models:\n  default: {source: train\ntasks: {}\n")
    with pytest.raises(ConfigError) as err:
        read_yaml(p)
    assert str(p) in str(err.value) and re.search(r"line \d+, column \d+", str(err.value))


def test_unknown_recipe_is_refused_naming_the_key(cfg):
    cfg["compressions"]["gptq_w4a16"]["recipe"] = "gptq_w5a16"
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    msg = str(err.value)
    assert "compressions.gptq_w4a16.recipe" in msg and "'gptq_w5a16'" in msg and "gptq_w4a16, " in msg


def test_unknown_importance_behaviour_is_refused(cfg):
    cfg["importance"]["behaviour"] = "daydreaming"
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    msg = str(err.value)
    assert "importance.behaviour" in msg and "'daydreaming'" in msg and "mean, uncertainty_estimation" in msg


@pytest.mark.parametrize("key, value", [("unprotected", "gptq_w9"), ("protected", ["gptq_w3a16_protected", "awq_w1"])])
def test_unknown_compression_in_protection_figure_is_refused(cfg, key, value):
    cfg["importance"]["protection_figure"][key] = value
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    msg = str(err.value)
    assert f"importance.protection_figure.{key}" in msg and "is not a compression of experiment 'compression'" in msg
    assert "none, gptq_w4a16" in msg


def test_missing_benchmark_path_is_refused_naming_the_key(cfg, tmp_path):
    cfg["tasks"]["gsm8k"] = {"source": "benchmark", "path": "data/nowhere.jsonl", "n": 3}
    cfg["experiments"]["compression"]["tasks"].append("gsm8k")
    cfg["experiments"]["precision_grid"]["tasks"].append("gsm8k")  # its noise grid has the task too
    with pytest.raises(ConfigError) as err:
        validate_config(cfg, workdir=tmp_path)
    msg = str(err.value)
    assert "tasks.gsm8k.path" in msg and "'data/nowhere.jsonl'" in msg and "does not exist" in msg
    # a task whose items were already prepared needs its data file no more (figures rebuild from artifacts)
    (tmp_path / "results" / "tasks").mkdir(parents=True)
    (tmp_path / "results" / "tasks" / "gsm8k.parquet").write_bytes(b"")
    validate_config(cfg, workdir=tmp_path)


def test_hardware_label_hint_lists_what_the_pattern_allows(cfg):
    cfg["experiments"]["precision_grid"]["hardware"] = ["a100_80gb"]
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    msg = str(err.value)
    assert "experiments.precision_grid.hardware[0]" in msg and "'a100_80gb'" in msg
    assert "letters, digits and '-' only" in msg and "'_'" not in msg.split("allowed:")[1]


def test_reserved_compression_name_is_explained(cfg):
    cfg["compressions"]["none"] = {"recipe": "gptq_w4a16"}
    with pytest.raises(ConfigError, match=r"compressions: 'none' is not allowed \('none' is reserved"):
        validate_config(cfg)


def test_batch_invariant_is_a_backend_not_a_runtime_key(cfg):
    cfg["experiments"]["precision_grid"]["batch_invariant"] = True
    with pytest.raises(ConfigError, match="unknown key.*batch_invariant.*allowed keys: backend"):
        validate_config(cfg)
    del cfg["experiments"]["precision_grid"]["batch_invariant"]
    cfg["experiments"]["precision_grid"]["backend"] = "vllm_batch_invariant"
    validate_config(cfg)


def test_study_file_replaces_defaults_and_overrides_merge(tmp_path):
    study = _write(tmp_path, (ROOT / ".test" / "config.yaml").read_text())
    out = load_study([study], {"train": {"steps": 3}})
    assert set(out["experiments"]) == {"precision_grid", "compression"}  # nothing of config.yaml's grid
    assert out["train"]["steps"] == 3 and out["train"]["num_layers"] == 2


def test_scoring_policy_default_and_conflict_on_a_shared_run(cfg):
    from lrmrepro.study import Study, StudyError

    c = validate_config(cfg)
    assert {e["scoring"] for e in c["experiments"].values()} == {"strict"}  # the default
    cfg["experiments"]["compression"]["scoring"] = "lenient"
    cfg["experiments"]["compressed_runtime_grid"]["scoring"] = "lenient"  # shares the bf16 / fp32 bs16 / bs32 runs
    # precision_grid and compression share the bf16 / p1 / bs16 / greedy runs of the uncompressed model
    with pytest.raises(StudyError, match=r"experiments\.compression\.scoring: 'lenient', but experiment "
                                         r"'precision_grid' sets 'strict' .*results/generations/default/none/arith/"
                                         r"bf16/transformers-p1-bs16-auto/greedy"):
        Study(validate_config(cfg))
    # the same refusal where hardware labels only coincide once `auto` is resolved
    cfg["experiments"]["precision_grid"]["hardware"] = ["cpu-x"]
    Study(validate_config(cfg))
    with pytest.raises(StudyError, match="transformers-p1-bs16-cpu-x/greedy"):
        Study(validate_config(cfg), resolve_hardware=lambda h: "cpu-x")
    cfg["experiments"]["precision_grid"]["scoring"] = "lenient"
    cfg["experiments"]["sampling_grid"]["scoring"] = "lenient"
    policies = Study(validate_config(cfg)).scoring_policies
    assert set(policies.values()) == {"lenient"}
    cfg["experiments"]["compression"]["scoring"] = "generous"
    with pytest.raises(ConfigError, match="strict, lenient"):
        validate_config(cfg)


def test_noise_from_must_name_a_stats_experiment(cfg):
    cfg["experiments"]["compression"]["noise_from"] = "compression"
    with pytest.raises(ConfigError, match="experiments.compression.noise_from: 'compression' is not an experiment "
                                          "with stats: true; allowed values: precision_grid"):
        validate_config(cfg)
    cfg["experiments"]["compression"]["noise_from"] = "precision_grid"
    assert validate_config(cfg)["statistics"]["bootstrap_resamples"] == 1000


def test_statistics_over_one_runtime_configuration_are_refused(cfg):
    cfg["experiments"]["precision_grid"].update(batch_sizes=[16], parallel=[1], hardware=["auto"])
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    msg = str(err.value)
    assert "config key experiments.precision_grid.stats: true" in msg and "one runtime configuration" in msg
    assert "batch_sizes [16]" in msg and "stats: false" in msg


def test_a_noise_grid_without_the_experiments_tasks_is_refused(cfg):
    cfg["experiments"]["precision_grid"]["tasks"] = ["arith"]
    cfg["experiments"].pop("compressed_runtime_grid", None)
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    msg = str(err.value)
    assert "config key experiments.compression.noise_from: 'precision_grid' has no runs of task(s)" in msg
    assert "logic" in msg and "timeline" in msg


def test_every_error_of_a_config_is_reported_at_once(cfg):
    """Two schema errors are named together; so are cross-reference errors of different kinds (an undefined task,
    a missing recipe, a noise_from without the experiment's tasks), each naming its key."""
    bad = copy.deepcopy(cfg)
    bad["experiments"]["precision_grid"]["precisions"] = ["bf17"]
    bad["tasks"]["arith"]["prompt_style"] = "chatty"
    with pytest.raises(ConfigError) as e:
        validate_config(bad)
    assert str(e.value).startswith("2 errors:")
    assert {m.split(":")[0] for m in e.value.errors} == {
        "config key experiments.precision_grid.precisions[0]", "config key tasks.arith.prompt_style"}
    bad = copy.deepcopy(cfg)
    bad["experiments"]["compression"]["tasks"].append("nonesuch")
    bad["compressions"]["gptq_w4a16"]["recipe"] = "gptq_w9a16"
    bad["experiments"]["compressed_runtime_grid"]["tasks"] = ["arith"]
    bad["experiments"]["precision_grid"]["tasks"] = ["timeline", "logic", "multihop"]
    bad["experiments"]["compressed_runtime_grid"]["compressions"] = ["w8a8_int8", "gptq_w4a16"]
    with pytest.raises(ConfigError) as e:
        validate_config(bad)
    keys = [m.split(":")[0] for m in e.value.errors]
    assert "config key experiments.compression.tasks[4]" in keys
    assert "config key compressions.gptq_w4a16.recipe" in keys
    assert "config key experiments.compressed_runtime_grid.noise_from" in keys
    assert "config key experiments.compressed_runtime_grid.compressions" in keys  # no uncompressed model to compare with
    assert str(e.value).startswith(f"{len(keys)} errors:") and len(keys) >= 3
