"""Dequantized execution (lrmrepro.compress.dequantize, `execution: dequantized`): a compressed checkpoint's dense
copy holds exactly the quantizer's values; single-module quantization is exact; packed execution of a fused group
quantized in part is refused for vLLM when the DAG is built."""

from __future__ import annotations

import json

import pytest

from helpers_compress import TINY_CALIBRATION
from lrmrepro.compress.run import compress_model


@pytest.fixture(scope="module")
def w3(tiny_trained_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("dq") / "gptq_w3a16"
    compress_model(tiny_trained_model, out, recipe="gptq_w3a16", calibration=TINY_CALIBRATION)
    return out


def test_the_dense_copy_holds_exactly_the_quantizers_values(w3, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, CompressedTensorsConfig

    from lrmrepro.compress.dequantize import dequantize_checkpoint
    from lrmrepro.compress.schemes import scheme_of_checkpoint

    info = dequantize_checkpoint(w3, tmp_path / "dense")
    assert info["source_scheme"] == "W3A16" and scheme_of_checkpoint(tmp_path / "dense") == "none"
    assert "quantization_config" not in json.loads((tmp_path / "dense" / "config.json").read_text())
    # 3-bit groups: at most 8 distinct values in a row of 128 (one group); the tokenizer travels with it
    assert info["first_linear_distinct_values_row0"] <= 8 * -(-info["first_linear_row_length"] // 128)
    assert (tmp_path / "dense" / "tokenizer.json").exists()
    dense = AutoModelForCausalLM.from_pretrained(tmp_path / "dense").state_dict()
    packed = AutoModelForCausalLM.from_pretrained(
        w3, quantization_config=CompressedTensorsConfig(dequantize=True)).state_dict()
    assert set(dense) <= set(packed) and all(torch.equal(dense[k], packed[k]) for k in dense)
    linear = [k for k in dense if k.endswith("_proj.weight")]
    assert linear and len(dense) == len([k for k in packed if not k.rsplit(".", 1)[-1].startswith(("weight_", "input_"))])


def test_only_quantizes_exactly_the_modules_named(tiny_trained_model):
    from lrmrepro.compress.selection import decoder_linear_names, ignore_for_only, incomplete_groups

    names = decoder_linear_names(tiny_trained_model)
    up = "model.layers.1.mlp.up_proj"
    ignore = ignore_for_only(tiny_trained_model, [up])
    assert set(names) - set(ignore) == {up}  # gate_proj stays in full precision: the paper's 32_up, not 32_gate+up
    assert incomplete_groups([up]) == [up]
    assert incomplete_groups(["model.layers.1.mlp.up_proj", "model.layers.1.mlp.gate_proj"]) == []
    assert incomplete_groups(["model.layers.0.self_attn.v_proj"]) == ["model.layers.0.self_attn.v_proj"]
    assert incomplete_groups(["model.layers.0.mlp.down_proj", "re:.*up_proj"]) == []


def test_packed_vllm_with_a_fused_group_in_part_is_refused_and_dequantized_is_not():
    from lrmrepro.compressions import Compression
    from lrmrepro.generate.gate import check_engines
    from lrmrepro.generate.vllm_support import UnsupportedRun
    from lrmrepro.runs import Engine

    cfg = {"models": {"m": {"source": "embedded"}}}
    engine = Engine(model="m", compression="up32", precision="bf16", backend="vllm", parallel=1, hardware="h100",
                    decoding="greedy")
    packed = {"up32": Compression("up32", "recipe", recipe="gptq_w4a16", only=["model.layers.31.mlp.up_proj"])}
    with pytest.raises(UnsupportedRun, match=r"up_proj without the rest of its fused group.*execution: dequantized"):
        check_engines([engine], cfg, packed)
    dense = {"up32": Compression("up32", "recipe", recipe="gptq_w3a16", only=["model.layers.31.mlp.up_proj"],
                                 execution="dequantized")}
    check_engines([engine], cfg, dense)  # W3A16 and a group in part: fine as a dense copy
    with pytest.raises(UnsupportedRun, match="W3A16"):
        check_engines([engine], cfg, {"up32": Compression("up32", "recipe", recipe="gptq_w3a16")})


def test_a_dequantized_variant_is_planned_through_its_dense_copy(tmp_path):
    """The DAG: `dequantize` makes results/dequantized/<model>/<variant> from the compressed checkpoint, and the vLLM
    engine of a W3A16 variant (which vLLM has no kernel for) loads that copy; a packed single-module variant on
    vLLM stops the DAG build naming the key and `execution: dequantized`."""
    import subprocess
    import sys

    import yaml

    from conftest import ROOT

    cfg = yaml.safe_load((ROOT / ".test" / "config.yaml").read_text())
    cfg.pop("importance")
    cfg["compressions"] = {"w3": {"recipe": "gptq_w3a16", "execution": "dequantized"},
                           "up1": {"recipe": "gptq_w4a16", "only": ["model.layers.1.mlp.up_proj"]}}
    cfg["experiments"] = {"deq": {"models": ["default"], "tasks": ["arith"], "compressions": ["w3"],
                                  "precisions": ["fp32"], "backend": "vllm", "parallel": [2], "batch_sizes": [2]}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))

    def dry(*args):
        return subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-n", "-p", *args],
                              cwd=tmp_path, capture_output=True, text=True, timeout=300)

    proc = dry()
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "rule dequantize:" in out and "output: results/dequantized/default/w3" in out
    assert "--model results/dequantized/default/w3 " in out  # the vLLM engine job's command
    cfg["experiments"]["deq"]["compressions"] = ["up1"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = dry()
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "compressions.up1.only quantizes model.layers.1.mlp.up_proj" in out
    assert "execution: dequantized" in out


def test_a_single_component_variant_quantizes_that_module_alone(tiny_trained_model, tmp_path):
    """The paper's 32_up on the tiny model: layer 1's up_proj quantized to 4 bits, its fused partner gate_proj and
    every other module bit-identical to the base model in the dense copy; without leave to split the fused group
    (a packed variant meant for vLLM) the compression is refused."""
    import torch
    from transformers import AutoModelForCausalLM

    from lrmrepro.compress.dequantize import dequantize_checkpoint
    from lrmrepro.compress.selection import ignore_for_only

    up = "model.layers.1.mlp.up_proj"
    ignore = ignore_for_only(tiny_trained_model, [up])
    with pytest.raises(ValueError, match="splits fused groups"):
        compress_model(tiny_trained_model, tmp_path / "refused", recipe="gptq_w4a16", ignore=ignore,
                       calibration=TINY_CALIBRATION)
    compress_model(tiny_trained_model, tmp_path / "c_up", recipe="gptq_w4a16", ignore=ignore,
                   calibration=TINY_CALIBRATION, allow_split_groups=True)
    dequantize_checkpoint(tmp_path / "c_up", tmp_path / "dense")
    base = AutoModelForCausalLM.from_pretrained(tiny_trained_model).state_dict()
    dense = AutoModelForCausalLM.from_pretrained(tmp_path / "dense").state_dict()
    changed = sorted(k for k in base if not torch.equal(base[k], dense[k].to(base[k].dtype)))
    assert changed == [f"{up}.weight"]


def test_transformers_on_several_gpus_is_refused_naming_vllm():
    from lrmrepro.generate.gate import check_engines
    from lrmrepro.generate.vllm_support import UnsupportedRun
    from lrmrepro.runs import Engine

    engine = Engine(model="m", compression="none", precision="bf16", backend="transformers", parallel=4,
                    hardware="a100", decoding="greedy")
    with pytest.raises(UnsupportedRun, match="parallel=4 on a GPU label with the transformers backend.*backend vllm"):
        check_engines([engine], {"models": {"m": {"source": "embedded"}}}, {})
    cpu = Engine(model="m", compression="none", precision="bf16", backend="transformers", parallel=2,
                 hardware="cpu-amd-epyc-avx2", decoding="greedy")
    check_engines([cpu], {"models": {"m": {"source": "embedded"}}}, {})  # CPU threads
