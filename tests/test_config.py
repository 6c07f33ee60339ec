import copy
from pathlib import Path

import pytest
import yaml

from lrmrepro.config import ConfigError, expand_runs, validate_config

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


@pytest.mark.parametrize("path", [".test/config.yaml", "configs/smollm2-cpu.yaml"])
def test_shipped_configs_are_valid(path):
    validate_config(yaml.safe_load((ROOT / path).read_text()))


@pytest.mark.parametrize(
    "mutate, key, allowed",
    [
        (lambda c: c["experiments"]["precision_grid"].__setitem__("precisions", ["bf17"]),
         "experiments.precision_grid.precisions[0]", "bf16, fp16, fp32, layercast"),
        (lambda c: c["models"]["default"].__setitem__("source", "ftp"), "models.default.source", "train, hub, local, gguf"),
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
    """A generation job knows its run from the path's wildcards alone (rules/generate.smk, RUN_FOLDER)."""
    import re

    from lrmrepro.config import Run

    run = expand_runs(validate_config(cfg), resolve_hardware=lambda h: "cpu-x")[-1]
    pattern = (r"results/generations/(?P<model>[^/]+)/(?P<compression>[^/]+)/(?P<task>[^/]+)/(?P<precision>[^/]+)/"
               r"(?P<backend>[a-z_]+)-p(?P<parallel>\d+)-bs(?P<batch>\d+)-(?P<hw>[A-Za-z0-9-]+)/(?P<decoding>[^/]+)")
    wildcards = re.fullmatch(pattern, run.folder).groupdict()
    assert Run.from_wildcards(wildcards) == run
    assert isinstance(Run.from_wildcards(wildcards).parallel, int)
