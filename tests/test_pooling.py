"""A stats group never pools runs of different engine software, code, or hardware other than its label."""

import json
import logging

import polars as pl
import pytest

from lrmrepro import hardware as hw
from lrmrepro import io
from lrmrepro.figures.nondeterminism import metric_table, write_table
from lrmrepro.generate.engine_job import check_job, run_engine
from lrmrepro.provenance import hardware
from lrmrepro.stats.pooling import MixedEnvironment, check_pooling

GROUP = dict(model="m", compression="none", task="arith", precision="bf16", decoding="greedy")
A100 = {"cpu_model": "AMD EPYC 7763", "gpus": ["NVIDIA A100-SXM4-80GB"], "gpu_driver": "550.54", "torch_cuda": "12.8"}
L40S = {"cpu_model": "Intel Xeon", "gpus": ["NVIDIA L40S"], "gpu_driver": "560.1", "torch_cuda": "12.8"}
PACKAGES = {"torch": "2.13.0", "transformers": "5.17.0", "tokenizers": "0.23.3", "vllm": "0.32.0",
            "compressed-tensors": "0.19.0"}


def _run(tmp_path, i, *, hardware_label="a100", machine=A100, packages=None, backend="vllm", code="abc", **group):
    folder = tmp_path / f"run{i}"
    folder.mkdir()
    io.write_json({"stage": "generate", "packages": {**PACKAGES, **(packages or {})}, "hardware": machine,
                   "code_fingerprint": code}, folder / "generations.meta.json")
    return {**GROUP, **group, "backend": backend, "parallel": 1, "batch_size": 8 * (i + 1),
            "hardware": hardware_label, "generations": str(folder / "generations.parquet"),
            "scores": str(folder / "scores.parquet"), "meta": str(folder / "generations.meta.json")}


def test_a_group_of_one_environment_passes_and_records_it(tmp_path):
    refs = [_run(tmp_path, i) for i in range(3)]
    out = check_pooling(refs)
    assert out.height == 1 and out["mixed_environment"].to_list() == [""]
    env = json.loads(out["environment"][0])
    assert env["packages.vllm"] == "0.32.0" and env["torch_cuda"] == "12.8" and env["device"] == "NVIDIA A100-SXM4-80GB"


def test_a_run_of_another_engine_version_is_refused_naming_run_field_and_values(tmp_path):
    refs = [_run(tmp_path, 0), _run(tmp_path, 1, packages={"vllm": "0.33.0"}), _run(tmp_path, 2)]
    with pytest.raises(MixedEnvironment) as err:
        check_pooling(refs)
    msg = str(err.value)
    assert "field packages.vllm" in msg and "'0.32.0'" in msg and "'0.33.0'" in msg
    assert str(tmp_path / "run0") in msg and str(tmp_path / "run1") in msg
    assert "allow_mixed_environments" in msg
    # with the override the group is computed and flagged
    out = check_pooling(refs, allow_mixed=True)
    assert out["mixed_environment"][0] == "packages.vllm 0.32.0 vs 0.33.0"
    assert json.loads(out["environment"][0])["packages.vllm"] == ["0.32.0", "0.33.0"]


@pytest.mark.parametrize("field, change", [
    ("packages.transformers", {"packages": {"transformers": "5.18.0"}}),
    ("torch_cuda", {"machine": {**A100, "torch_cuda": "12.9"}}),
    ("code_fingerprint", {"code": "def"}),
])
def test_every_compared_field_is_checked(tmp_path, field, change):
    refs = [_run(tmp_path, 0), _run(tmp_path, 1, **change)]
    with pytest.raises(MixedEnvironment, match=f"field {field}"):
        check_pooling(refs)


def test_what_differs_by_design_is_not_a_mismatch(tmp_path):
    """Hardware labels and drivers differ across a group's configurations by design; backends run in environments
    of their own (vLLM's pins are not the core environment's)."""
    refs = [_run(tmp_path, 0), _run(tmp_path, 1, hardware_label="l40s", machine=L40S),
            _run(tmp_path, 2, backend="transformers", packages={"torch": "2.12.0", "compressed-tensors": "0.18.0"}),
            _run(tmp_path, 3, backend="transformers", packages={"torch": "2.12.0", "compressed-tensors": "0.18.0"})]
    out = check_pooling(refs)
    assert out["mixed_environment"].to_list() == [""]
    assert json.loads(out["environment"][0])["gpu_driver"] == ["550.54", "560.1"]
    # groups are separate: another task may have other versions
    other = _run(tmp_path, 4, task="logic", packages={"vllm": "0.33.0"})
    assert check_pooling([*refs, other]).height == 2


def test_a_hardware_label_that_lies_is_refused(tmp_path):
    refs = [_run(tmp_path, 0), _run(tmp_path, 1, hardware_label="a100", machine=L40S)]
    with pytest.raises(MixedEnvironment, match=r"field hardware: labelled 'a100', generated on 'NVIDIA L40S'"):
        check_pooling(refs)
    assert "hardware label a100 on NVIDIA L40S" in check_pooling(refs, allow_mixed=True)["mixed_environment"][0]
    # a study's own alias makes the label true of both, but one label then names two numerics identities: refused
    with pytest.raises(MixedEnvironment, match=r"label 'a100' names two numerics identities: .* differ in devices: "
                                               r"\['NVIDIA A100-SXM4-80GB'\] vs \['NVIDIA L40S'\]"):
        check_pooling(refs, aliases={"a100": ["A100", "L40S"]})


def test_the_table_says_what_was_mixed_only_when_something_was(tmp_path):
    metrics = pl.DataFrame({**{k: [v, v] for k, v in GROUP.items()}, "task": ["arith", "logic"],
                            "n_samples": [1, 1], "n_configs": [3, 3], "std_acc": [0.01, 0.02],
                            "mixed_environment": ["", "packages.vllm 0.32.0 vs 0.33.0"]})
    wide = metric_table(metrics, "std_acc", "greedy", 100.0)
    assert wide["mixed_environment"].to_list() == ["logic/bf16: packages.vllm 0.32.0 vs 0.33.0"]
    write_table(metrics, "table3", tmp_path / "t.csv", tmp_path / "t.md")
    assert "| mixed_environment |" in (tmp_path / "t.md").read_text()
    clean = metrics.with_columns(pl.lit("").alias("mixed_environment"))
    assert "mixed_environment" not in metric_table(clean, "std_acc", "greedy", 100.0).columns


def test_hardware_labels_and_aliases():
    assert hw.label_of({"gpus": ["NVIDIA A100-SXM4-80GB"]}) == "gpu-a100-sxm4-80gb"
    assert hw.label_of({"gpus": [], "cpu_model": "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz"}) == \
        "cpu-intel-xeon-platinum-8375c"
    assert hw.matches("a100", A100) and hw.matches("a100-80gb", A100) and not hw.matches("a100-40gb", A100)
    assert hw.matches("gpu-a100-sxm4-80gb", A100)
    assert hw.matches("l40s", L40S) and not hw.matches("l40", L40S) and not hw.matches("l4", L40S)
    assert not hw.matches("a100", {**A100, "gpus": ["NVIDIA A100-SXM4-80GB", "NVIDIA L40S"]})  # every GPU
    assert not hw.matches("h100", {"gpus": [], "cpu_model": "AMD EPYC"})
    with pytest.raises(hw.HardwareMismatch, match=r"'a100' does not match this machine: it has 'NVIDIA L40S'"):
        hw.check("a100", L40S)


def _spec(tmp_path, label):
    return [{"run": {**GROUP, "backend": "transformers", "parallel": 1, "batch_size": 2, "hardware": label},
             "tasks_parquet": str(tmp_path / "items.parquet"), "prompt_style": "chat_boxed",
             "decoding": {"max_new_tokens": 4}, "output": str(tmp_path / "g.parquet"),
             "meta": str(tmp_path / "g.meta.json"), "hardware_patterns": list(hw.ALIASES.get(label, ()))}]


def test_a_run_labelled_with_hardware_the_machine_lacks_fails_before_the_model_loads(tmp_path):
    with pytest.raises(hw.HardwareMismatch, match="'a100' does not match this machine"):
        check_job(_spec(tmp_path, "a100"))
    # the engine job checks before loading: a missing model is never reached
    with pytest.raises(hw.HardwareMismatch):
        run_engine(str(tmp_path / "no-such-model"), _spec(tmp_path, "a100"), code=None,
                                log=logging.getLogger("t"))
    check_job(_spec(tmp_path, hw.label_of(hardware())))  # this machine's own label passes


AVX2_EPYC = {"cpu_model": "AMD EPYC", "gpus": [], "cpu_flags": ["avx", "avx2", "fma", "sse4_1"], "isa_env": {},
             "torch_cpu_capability": "AVX2"}
AVX512_EPYC = {**AVX2_EPYC, "cpu_flags": sorted(AVX2_EPYC["cpu_flags"] + ["avx512f", "avx512bw", "avx512vl",
                                                                        "avx512dq", "avx512_vnni", "avx512_bf16"]),
               "torch_cpu_capability": "AVX512"}


def test_one_label_on_two_cpu_isas_is_refused_naming_both_runs(tmp_path):
    """An alias that matches every EPYC (the old label's meaning): an AVX2 and an AVX-512 BF16 run share it, and
    the statistics refuse to pool them, naming both runs and what differs."""
    refs = [_run(tmp_path, 0, hardware_label="cpu-epyc", machine=AVX2_EPYC, backend="transformers"),
            _run(tmp_path, 1, hardware_label="cpu-epyc", machine=AVX512_EPYC, backend="transformers")]
    epyc = {"cpu-epyc": ["EPYC"]}
    with pytest.raises(MixedEnvironment) as err:
        check_pooling(refs, aliases=epyc)
    msg = str(err.value)
    assert "label 'cpu-epyc' names two numerics identities" in msg
    assert str(tmp_path / "run0") in msg and str(tmp_path / "run1") in msg
    assert "isa: 'avx2' vs 'avx512bf16'" in msg and "onednn_isa: 'AVX2' vs 'AVX512_CORE_BF16'" in msg
    # the override still works, and marks the table
    out = check_pooling(refs, aliases=epyc, allow_mixed=True)
    assert "label cpu-epyc on two numerics identities (" in out["mixed_environment"][0]
    assert "isa: 'avx2' vs 'avx512bf16'" in out["mixed_environment"][0]
    # each under its own detected label: the hardware axis, pooled by design
    own = [_run(tmp_path, 2, hardware_label="cpu-amd-epyc-avx2", machine=AVX2_EPYC, backend="transformers"),
           _run(tmp_path, 3, hardware_label="cpu-amd-epyc-avx512bf16", machine=AVX512_EPYC, backend="transformers")]
    assert check_pooling(own)["mixed_environment"].to_list() == [""]
    # a dispatch cap set for one run only: same label (the cap is MKL's), another identity
    capped = {**AVX512_EPYC, "isa_env": {"MKL_ENABLE_INSTRUCTIONS": "AVX2"}}
    with pytest.raises(MixedEnvironment, match=r"env: \{\} vs \{'MKL_ENABLE_INSTRUCTIONS': 'AVX2'\}"):
        check_pooling([own[1], _run(tmp_path, 4, hardware_label="cpu-amd-epyc-avx512bf16", machine=capped,
                                    backend="transformers")])


def test_gpu_software_facts_are_compared_per_backend_and_the_driver_not_at_all(tmp_path):
    a100 = {**A100, "gpu_compute_capability": ["8.0"], "cublas": "nvidia-cublas-cu12 12.8.4.1", "cudnn": "90800",
            "tf32": {"matmul": False, "cudnn": True, "float32_matmul_precision": "highest"}}
    other_env = {**a100, "cublas": "nvidia-cublas-cu12 12.9.1.4", "gpu_driver": "560.1"}
    # vLLM's environment has its own cuBLAS: a backend of its own may; the driver differs by node
    refs = [_run(tmp_path, 0, machine=a100), _run(tmp_path, 1, machine=a100),
            _run(tmp_path, 2, machine=other_env, backend="transformers")]
    assert check_pooling(refs)["mixed_environment"].to_list() == [""]
    # within one backend, TF32 switched on for one run is another numerics identity
    tf32 = {**a100, "tf32": {**a100["tf32"], "matmul": True}}
    with pytest.raises(MixedEnvironment, match=r"backend vllm: label 'a100' names two numerics identities: .* "
                                               r"differ in tf32.matmul: False vs True"):
        check_pooling([*refs, _run(tmp_path, 3, machine=tf32)])
    # and another compute capability under the same label, whatever the backend
    sm90 = {**other_env, "gpu_compute_capability": ["9.0"]}
    with pytest.raises(MixedEnvironment, match=r"compute_capability: \['8.0'\] vs \['9.0'\]"):
        check_pooling([*refs, _run(tmp_path, 4, machine=sm90, backend="transformers")])
