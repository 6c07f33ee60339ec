"""Every compressed variant on vLLM through the workflow (vLLM's CPU build): a 3-bit GPTQ variant and a
single-component variant (one up_proj, its fused gate_proj left in full precision) run as their dense copies
(`execution: dequantized`), which vLLM has no packed kernel for; W8A8 runs packed (vLLM's int8 kernel) and
dequantized, and the two are compared. Slow: five vLLM engine starts (~40-60 s each on 2 cores)."""

import json
import os

import polars as pl
import pytest

from test_vllm_workflow import pytestmark, vllm_study  # noqa: F401  (slow; skipped without the vLLM environment)


@pytest.fixture(scope="module")
def compressed_run(tmp_path_factory):
    def variants(cfg):
        cfg.pop("importance")
        cfg["calibration"] = {"source": "model_corpus", "num_samples": 8, "max_seq_len": 64}
        cfg["tasks"] = {"arith": {"source": "synthetic", "n": 4, "max_new_tokens": 12}}
        cfg["compressions"] = {
            "w3": {"recipe": "gptq_w3a16", "execution": "dequantized"},
            "up1": {"recipe": "gptq_w4a16", "only": ["model.layers.1.mlp.up_proj"], "execution": "dequantized"},
            "w8a8": {"recipe": "w8a8_int8"},
            "w8a8_dense": {"recipe": "w8a8_int8", "execution": "dequantized"},
        }
        cfg["experiments"] = {"on_vllm": {"models": ["default"], "tasks": ["arith"],
                                          "compressions": ["none", "w3", "up1", "w8a8", "w8a8_dense"],
                                          "precisions": ["bf16"], "backend": "vllm", "parallel": [1],
                                          "batch_sizes": [2], "decoding": ["greedy"]}}

    return vllm_study(tmp_path_factory.mktemp("vllm-compressed"), variants, timeout=1500)


def _meta(run, compression):
    return json.loads(next((run / f"results/generations/default/{compression}").rglob("generations.meta.json"))
                      .read_text())


def test_3_bit_and_single_component_variants_run_on_vllm_as_dense_copies(compressed_run):
    _, run = compressed_run
    summary = pl.read_parquet(run / "results/summary/accuracy.parquet")
    assert set(summary["compression"]) == {"none", "w3", "up1", "w8a8", "w8a8_dense"}
    assert set(summary["backend"]) == {"vllm"}
    for name, scheme in (("w3", "W3A16"), ("up1", "W4A16")):
        dense = run / "results/dequantized/default" / name
        assert json.loads((dense / "meta.json").read_text())["source_scheme"] == scheme
        meta = _meta(run, name)
        assert meta["compression_scheme"] == "none" and meta["quantization"] is None  # vLLM loaded the dense copy
    packed = _meta(run, "w8a8")
    assert packed["compression_scheme"] == "W8A8"  # vLLM's int8 kernel
    assert _meta(run, "w8a8_dense")["compression_scheme"] == "none"


def test_packed_and_dequantized_w8a8_are_compared(compressed_run):
    """The comparison the docs table is made with (python -m lrmrepro.stats.noise_floor): same items, both runs
    scored; whether their outputs differ is what it measures (not asserted: numerics)."""
    import subprocess
    import sys

    workflow, run = compressed_run
    a, b = (next((run / f"results/generations/default/{c}").rglob("generations.parquet")) for c in ("w8a8", "w8a8_dense"))
    env = {**os.environ, "PYTHONPATH": str(workflow / "src")}
    out = subprocess.run([sys.executable, "-m", "lrmrepro.stats.noise_floor", "--scores", str(a), str(b)],
                         capture_output=True, text=True, env=env, check=True).stdout
    cmp = json.loads(out)
    assert cmp["n_rows"] == 4 and 0 <= cmp["n_rows_tokens_differ"] <= 4
    assert 0.0 <= cmp["accuracy_a"] <= 1.0 and 0.0 <= cmp["accuracy_b"] <= 1.0
