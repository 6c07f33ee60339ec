"""The embedded default model: shipped, checked by sha256, installed by the workflow; training stays reproducible."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from lrmrepro import io
from lrmrepro.config import ConfigError, validate_config
from lrmrepro.models import embedded
from lrmrepro.models.train import TrainConfig, train_default_model

ROOT = Path(__file__).resolve().parents[1]


def _default_config():
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def test_the_shipped_files_match_their_recorded_sha256():
    meta = embedded.verify()
    assert {"model.safetensors", "config.json", "tokenizer.json", "train_corpus.jsonl"} <= set(meta["files"])
    assert meta["stage"] == "train_default_model"
    # the training record: settings, loss curve, machine, versions
    assert meta["config"]["steps"] == len(meta["loss_curve_every_50"]) * 50
    assert meta["hardware"]["cpu_model"] and meta["packages"]["torch"]


def test_the_default_config_is_the_shipped_models_training():
    cfg = validate_config(_default_config())
    assert cfg["models"]["default"]["source"] == "embedded"
    assert embedded.train_mismatch(cfg["train"]) is None


def test_a_study_that_changes_training_settings_of_the_embedded_model_is_refused():
    cfg = _default_config()
    cfg["train"]["steps"] = 1234
    with pytest.raises(ConfigError, match=r"train\.steps: 1234.*embedded.*trained with 3000.*source: train"):
        validate_config(cfg)
    cfg["models"]["default"]["source"] = "train"  # a model trained with these settings is fine
    validate_config(cfg)


def _copy_shipped(dest: Path) -> Path:
    shutil.copytree(embedded.EMBEDDED_DIR, dest)
    return dest


def test_a_modified_shipped_file_is_an_error_naming_it(tmp_path):
    folder = _copy_shipped(tmp_path / "shipped")
    with open(folder / "model.safetensors", "r+b") as f:
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 1]))
    with pytest.raises(embedded.EmbeddedModelError, match=r"model\.safetensors was modified: sha256"):
        embedded.install(tmp_path / "out", folder)
    assert not (tmp_path / "out").exists()  # nothing half-installed
    (folder / "model.safetensors").unlink()
    with pytest.raises(embedded.EmbeddedModelError, match=r"model\.safetensors is missing"):
        embedded.verify(folder)


def test_install_copies_the_checkpoint_and_records_its_training(tmp_path):
    info = embedded.install(tmp_path / "none")
    for name, digest in info["files"].items():
        assert io.file_sha256(tmp_path / "none" / name) == digest
    assert info["training"]["config"] == embedded.train_config()
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tmp_path / "none")
    assert sum(p.numel() for p in model.parameters()) == info["training"]["n_parameters"]


def test_ship_makes_a_verified_folder_from_a_trained_checkpoint(tiny_trained_model, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_trained_model, ckpt)
    with pytest.raises(embedded.EmbeddedModelError, match="not a train_default_model checkpoint"):
        io.write_json({"stage": "fetch_model"}, ckpt / "meta.json")
        embedded.ship(ckpt, tmp_path / "bad")
    io.write_json({"stage": "train_default_model", "config": {"steps": 4}}, ckpt / "meta.json")
    meta = embedded.ship(ckpt, tmp_path / "shipped")
    assert "meta.json" not in meta["files"] and "model.safetensors" in meta["files"]
    assert embedded.verify(tmp_path / "shipped")["config"] == {"steps": 4}


def test_training_twice_gives_bit_identical_weights(tmp_path):
    """`source: train` stays reproducible on one machine (same torch build and thread count)."""
    import torch

    torch.set_num_threads(1)
    cfg = TrainConfig(steps=5, train_per_task=20, fact_repeats=1, batch_size=8, num_layers=2, vocab_size=400, threads=1)
    train_default_model(cfg, tmp_path / "a", progress=False)
    train_default_model(cfg, tmp_path / "b", progress=False)
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for name in ("tokenizer.json", "train_corpus.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_the_workflow_installs_the_shipped_model_and_refuses_a_modified_one(tmp_path):
    from test_workflow import copy_workflow

    workflow = copy_workflow(tmp_path / "workflow")
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy2(ROOT / "config.yaml", run / "config.yaml")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(workflow / "Snakefile"), "--directory", str(run), "--cores", "1",
           "results/models/default/none"]
    env = {**os.environ, "PYTHONPATH": str(workflow / "src")}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "train_default_model" not in proc.stderr
    out = run / "results/models/default/none"
    meta = io.read_json(out / "meta.json")
    assert meta["stage"] == "embedded_model" and meta["files"] == embedded.shipped_meta()["files"]
    # a modified shipped file: Snakemake reruns the install (its input changed), which refuses it by name
    with open(workflow / "embedded/default/config.json", "a") as f:
        f.write("\n")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode != 0
    log = (run / "logs/embedded_model/default.log").read_text()
    assert "embedded/default/config.json was modified" in log + proc.stderr


def test_context_lengths_and_the_max_new_tokens_check(tmp_path):
    from lrmrepro.models.context import ContextError, check_max_new_tokens, context_length, model_contexts

    (tmp_path / "gemma").mkdir()
    (tmp_path / "gemma" / "config.json").write_text('{"text_config": {"max_position_embeddings": 8192}}')
    models = {"default": {"source": "embedded"}, "g": {"source": "local", "path": str(tmp_path / "gemma")},
              "hub": {"source": "hub", "id": "org/not-fetched"}}
    contexts = model_contexts(models, str(tmp_path / "results/models/{model}/{compression}"))
    assert contexts == {"default": 1024, "g": 8192, "hub": None}
    tasks = {"t": {"max_new_tokens": 2000}, "u": {"max_new_tokens": 10**9}}
    check_max_new_tokens([("g", "t"), ("hub", "u")], tasks, contexts)  # fits; not known yet: not checked
    with pytest.raises(ContextError, match=r"tasks.t.max_new_tokens: 2000 does not fit model 'default'.*1024 tokens"):
        check_max_new_tokens([("default", "t")], tasks, contexts)
    assert context_length(tmp_path / "nothing") is None
