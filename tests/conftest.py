import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def tiny_trained_model(tmp_path_factory) -> Path:
    """The embedded default model's trainer on a tiny budget (seconds): a real Qwen2 checkpoint + tokenizer."""
    import torch

    from lrmrepro.models.train import TrainConfig, train_default_model

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("models") / "tiny"
    cfg = TrainConfig(steps=4, train_per_task=30, fact_repeats=1, batch_size=8, num_layers=2, vocab_size=400, threads=1)
    train_default_model(cfg, out, progress=False)
    return out
