"""scripts/gpu_check.py (the GPU check of docs/gpu-validation.md) runs end to end; here on the CPU with the tiny test
model, so that it works on the day a GPU is at hand."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_runs_on_cpu(tiny_trained_model, tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--model", str(tiny_trained_model),
                           "--out", str(tmp_path), "--device", "cpu", "--n", "2", "--batch-sizes", "1", "2",
                           "--max-new", "6"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "gpu_check.json").read_text())
    assert len(summary["grid"]) == 4 * 4
    assert {r["precision"] for r in summary["grid"]} == {"bf16", "fp16", "fp32", "layercast"}
    assert all(r["problems"] == 2 and len(r["accuracy_by_batch"]) == 2 for r in summary["grid"])
    lc = summary["layercast"]
    assert lc["layercast_linears_bf16"] > 0 and lc["non_bf16_linears"] == []
    assert lc["max_abs_logit_diff_vs_reference"] < 1e-4
    assert "| bf16 | arith |" in (tmp_path / "gpu_check.md").read_text()
