"""Shared fixtures-as-functions for the compression tests."""

from __future__ import annotations

TINY_CALIBRATION = {"source": "model_corpus", "num_samples": 8, "max_seq_len": 64, "seed": 0}


def generate_tokens(model_dir, n: int = 4) -> list[int]:
    """Load a checkpoint with plain transformers and greedily generate ``n`` tokens."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    ids = tok("the cat sat on", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=n, min_new_tokens=n, do_sample=False)
    return out[0, ids["input_ids"].shape[1]:].tolist()
