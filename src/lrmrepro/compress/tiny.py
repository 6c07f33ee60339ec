"""A tiny randomly initialised Qwen2 checkpoint (+ tokenizer + ``train_corpus.jsonl``) for tests and benchmarks.

Sizes are multiples of 128 so that group-128 quantization applies to every linear layer.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

SENTENCES = [
    "the cat sat on the mat and looked at the bird",
    "alice is older than bob and bob is older than carol",
    "12 plus 30 equals 42 and 7 times 6 equals 42",
    "paris is the capital of france which is in europe",
    "if it rains the ground is wet so the ground is wet",
    "the river flows to the sea past the old mill",
    "every prime larger than 2 is odd but not every odd number is prime",
    "the meeting was moved from monday to wednesday afternoon",
]


def corpus_texts(n: int = 64, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(SENTENCES) for _ in range(rng.randint(2, 5))) for _ in range(n)]


def build_tiny_qwen2(out_dir: str | os.PathLike, *, seed: int = 0, hidden_size: int = 128, intermediate_size: int = 256,
                     num_layers: int = 2, vocab_size: int = 320, n_corpus: int = 64) -> Path:
    """Write a random ``Qwen2ForCausalLM`` (bf16 on disk), its tokenizer and a ``train_corpus.jsonl`` to ``out_dir``."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from ..models.tokenizer import train_tokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    texts = corpus_texts(n_corpus, seed)
    tokenizer = train_tokenizer(texts, vocab_size=vocab_size)
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=intermediate_size,
        num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        tie_word_embeddings=False, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    with open(out / "train_corpus.jsonl", "w") as f:
        for t in texts:
            f.write(json.dumps({"text": t}) + "\n")
    return out
