"""Distillation (method: distill): the student's size, the loss against a hand computation, bit-identical reruns,
resumption after a kill, refusals of bad student specs while the DAG is built, and the paper config's entry."""

import copy
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from lrmrepro.compress.distill import build_student, decoder_weights, distill_loss, distill_model
from lrmrepro.config import ConfigError, load_schema, read_yaml, validate_config, _fill_defaults

ROOT = Path(__file__).resolve().parents[1]
ATTN = 128 * 128 * 2 + 128 * 64 * 2  # q, o: 128 x 128; k, v: 64 x 128 (2 of 4 heads of 32)


def settings(**over):
    schema = load_schema()
    s = {}
    _fill_defaults(s, schema["definitions"]["distill_settings"], schema)
    return {**s, "steps": 6, "batch_size": 4, "warmup": 2, "checkpoint_every": 3, "threads": 1, **over}


@pytest.fixture(scope="module")
def teacher(tiny_trained_model):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_trained_model, dtype=torch.float32)


def test_student_is_smaller_as_configured(teacher):
    t_state = teacher.state_dict()
    assert decoder_weights(teacher) == 2 * (ATTN + 3 * 128 * 512)
    half, made = build_student(teacher, {"layers": 1}, seed=0)
    assert decoder_weights(half) == ATTN + 3 * 128 * 512 == decoder_weights(teacher) // 2
    assert made["layer_map"] == [0] and half.config.num_hidden_layers == 1
    assert all(torch.equal(v, t_state[k]) for k, v in half.state_dict().items())  # layer 0 and the rest, as they are
    last, made = build_student(teacher, {"layers": 1, "layer_map": [1], "intermediate_size": 128}, seed=0)
    assert decoder_weights(last) == ATTN + 3 * 128 * 128
    assert sum(p.numel() for p in last.parameters()) < sum(p.numel() for p in half.parameters())
    st = last.state_dict()
    assert torch.equal(st["model.layers.0.self_attn.q_proj.weight"], t_state["model.layers.1.self_attn.q_proj.weight"])
    # the MLP keeps 128 of the teacher's 512 neurons: rows of gate/up and the matching columns of down
    gate, t_gate = st["model.layers.0.mlp.gate_proj.weight"], t_state["model.layers.1.mlp.gate_proj.weight"]
    rows = [next(i for i in range(512) if torch.equal(t_gate[i], r)) for r in gate]
    assert rows == sorted(rows) and len(set(rows)) == 128
    assert torch.equal(st["model.layers.0.mlp.down_proj.weight"], t_state["model.layers.1.mlp.down_proj.weight"][:, rows])
    fresh, made = build_student(teacher, {"layers": 1, "hidden_size": 64, "num_attention_heads": 2,
                                          "num_key_value_heads": 1, "intermediate_size": 128, "init": "fresh"}, seed=0)
    assert made["init"] == "fresh" and "layer_map" not in made
    assert decoder_weights(fresh) == 64 * 64 * 2 + 64 * 32 * 2 + 3 * 64 * 128
    again, _ = build_student(teacher, {"layers": 1, "hidden_size": 64, "num_attention_heads": 2,
                                       "num_key_value_heads": 1, "intermediate_size": 128, "init": "fresh"}, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), again.state_dict().values()))


def test_loss_matches_a_hand_computation():
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 4, 5), torch.randn(2, 4, 5)
    labels = torch.tensor([[-100, -100, 3, 1], [-100, 2, 4, -100]])  # prompt of 2 tokens, then of 1; padding
    soft = (torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), torch.zeros(1, 1, dtype=torch.long),
            torch.zeros(1, 1))
    alpha, T = 0.3, 2.0
    kls, ces = [], []
    for b in range(2):
        for t in range(3):  # logits at t predict the token at t + 1
            y = int(labels[b, t + 1])
            if y == -100:
                continue
            s = [float(v) for v in student[b, t]]
            q = [float(v) for v in teacher[b, t]]
            zs = math.log(sum(math.exp(v) for v in s))
            ces.append(-(s[y] - zs))
            ps = [math.exp(v / T) for v in s]
            pt = [math.exp(v / T) for v in q]
            ps = [v / sum(ps) for v in ps]
            pt = [v / sum(pt) for v in pt]
            kls.append(sum(p * math.log(p / r) for p, r in zip(pt, ps)))
    kl, ce = sum(kls) / len(kls), sum(ces) / len(ces)
    loss, got_kl, got_ce = distill_loss(student, teacher, labels, soft, alpha, T)
    assert len(kls) == 4
    assert float(got_kl) == pytest.approx(kl, rel=1e-5) and float(got_ce) == pytest.approx(ce, rel=1e-5)
    assert float(loss) == pytest.approx(alpha * T * T * kl + (1 - alpha) * ce, rel=1e-5)
    # the student equal to the teacher: no KL term left
    assert float(distill_loss(teacher, teacher, labels, soft, 1.0, T)[0]) == pytest.approx(0.0, abs=1e-6)


def _weights(ckpt: Path) -> bytes:
    return (ckpt / "model.safetensors").read_bytes()


@pytest.fixture(scope="module")
def uninterrupted(tiny_trained_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("distill") / "a"
    meta = distill_model(tiny_trained_model, out, student={"layers": 1}, settings=settings(),
                         state_dir=out.parent / "state_a")
    return out, meta


def test_student_checkpoint_and_second_run_bit_identical(tiny_trained_model, uninterrupted, tmp_path):
    from transformers import AutoModelForCausalLM

    out, meta = uninterrupted
    assert meta["linear_weight_elements"] == ATTN + 3 * 128 * 512 and meta["decoder_weight_fraction"] == 0.5
    assert meta["recipe_info"]["method"] == "distill" and meta["resumed_from"] is None
    for name in ("config.json", "tokenizer.json", "train_corpus.jsonl", "generation_config.json"):
        assert (out / name).exists(), name
    assert not (out.parent / "state_a").exists()  # the training state is removed once the checkpoint is saved
    model = AutoModelForCausalLM.from_pretrained(out)  # a plain HF checkpoint of the teacher's architecture
    assert model.config.model_type == "qwen2" and model.config.num_hidden_layers == 1 and model.config.use_cache
    again = tmp_path / "b"
    distill_model(tiny_trained_model, again, student={"layers": 1}, settings=settings(), state_dir=tmp_path / "state_b")
    assert _weights(again) == _weights(out)
    assert (again / "config.json").read_text() == (out / "config.json").read_text()
    other = tmp_path / "c"
    distill_model(tiny_trained_model, other, student={"layers": 1}, settings=settings(seed=1),
                  state_dir=tmp_path / "state_c")
    assert _weights(other) != _weights(out)


KILLER = """
import os, signal, sys
sys.path.insert(0, {src!r})
import torch
from transformers import TrainerCallback
from lrmrepro.compress.distill import distill_model

class Kill(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 5:  # after the checkpoint of step 3, before the one of step 6
            os.kill(os.getpid(), signal.SIGKILL)

distill_model({teacher!r}, {out!r}, student={{"layers": 1}}, settings={settings!r}, state_dir={state!r},
              callbacks=[Kill()])
"""


def test_killed_training_resumes_to_the_identical_checkpoint(tiny_trained_model, uninterrupted, tmp_path, caplog,
                                                              monkeypatch):
    out, state = tmp_path / "k", tmp_path / "state_k"
    code = KILLER.format(src=str(ROOT / "src"), teacher=str(tiny_trained_model), out=str(out), settings=settings(),
                         state=str(state))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert not out.exists() and sorted(p.name for p in state.glob("checkpoint-*")) == ["checkpoint-3"]
    import logging

    from lrmrepro import progress

    monkeypatch.setattr(progress, "EVERY_SECONDS", 0.0)
    with caplog.at_level(logging.INFO, logger="lrmrepro.compress.distill"):
        meta = distill_model(tiny_trained_model, out, student={"layers": 1}, settings=settings(), state_dir=state)
    assert meta["resumed_from"] == "checkpoint-3"
    assert _weights(out) == _weights(uninterrupted[0])
    # progress lines while it trains: step i of N from the resumed step on, the loss, the ETA
    steps = [r.getMessage() for r in caplog.records if f"distill -> {out}: step " in r.getMessage()]
    n = settings()["steps"]
    assert steps and steps[0].split(": step ")[1].startswith("4 of ") and steps[-1].split(": step ")[1].startswith(
        f"{n} of {n}") and steps[-1].endswith("ETA 00:00:00"), steps


def test_state_of_other_settings_is_not_resumed(tiny_trained_model, tmp_path):
    from lrmrepro.compress.distill import _prepare_state

    state = tmp_path / "s"
    (state / "checkpoint-3").mkdir(parents=True)
    (state / "checkpoint-3" / "trainer_state.json").write_text("{}")
    (state / "checkpoint-6").mkdir()  # interrupted while saving: no trainer_state.json
    (state / "settings.digest").write_text("abc\n")
    assert _prepare_state(state, "abc") == str(state / "checkpoint-3") and not (state / "checkpoint-6").exists()
    assert _prepare_state(state, "other") is None and not (state / "checkpoint-3").exists()


# --- the configuration
def _study(student, **entry):
    cfg = read_yaml(ROOT / "config.yaml")
    cfg["compressions"] = {"small": {"method": "distill", "student": student, **entry}}
    cfg["experiments"]["compression"]["compressions"] = ["none", "small"]
    cfg["experiments"].pop("compressed_runtime_grid", None)  # its variants are not defined here
    cfg.pop("importance")
    return cfg


@pytest.mark.parametrize("student, key, words", [
    ({"layers": 0}, "student.layers", "0 is less than the minimum of 1"),
    ({"layers": 5}, "student.layers", "5 is more than the 4 layers of the teacher (model default); allowed: 1 to 4"),
    ({"layer": 2}, "student", "unknown key(s) layer; allowed keys: hidden_size, hub, init"),
    ({"path": "/no/such/checkpoint"}, "student.path", "'/no/such/checkpoint' does not exist"),
    ({"path": "x", "layers": 2}, "student.layers", "is not allowed beside path"),
    ({"layers": 2, "layer_map": [0, 4]}, "student.layer_map", "from 0 to 3"),
    ({"layers": 2, "hidden_size": 64}, "student.hidden_size", "or init: fresh"),
    ({"layers": 2, "intermediate_size": 1024}, "student.intermediate_size", "allowed: 1 to 512"),
    ({}, "student", "describes no student"),
])
def test_bad_student_is_refused_naming_the_key(student, key, words):
    with pytest.raises(ConfigError) as err:
        validate_config(_study(student))
    assert str(err.value).startswith(f"config key compressions.small.{key}: ") and words in str(err.value), str(err.value)


def test_distill_entry_gets_defaults_and_refuses_recipe_keys():
    cfg = validate_config(_study({"layers": 2}, distill={"steps": 7}))
    entry = cfg["compressions"]["small"]
    assert entry["distill"]["steps"] == 7 and entry["distill"]["alpha"] == 0.5 and entry["distill"]["temperature"] == 2.0
    assert entry["student"] == {"layers": 2}  # as given (init: teacher by default, in the code)
    with pytest.raises(ConfigError, match=r"compressions.small.sparsity: 0.5 is not used by method: distill"):
        validate_config(_study({"layers": 2}, sparsity=0.5))
    recipe_entry = _study({"layers": 2})
    recipe_entry["compressions"]["plain"] = {"student": {"layers": 2}}
    with pytest.raises(ConfigError, match=r"compressions.plain: 'recipe' is a required property"):
        validate_config(recipe_entry)


def _dry_run(config: Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-n", "--quiet", "rules",
                           "--configfile", str(config)], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_bad_student_is_refused_while_the_dag_is_built(tmp_path):
    cfg = _study({"layers": 9})
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    proc = _dry_run(tmp_path / "bad.yaml", tmp_path)
    assert proc.returncode != 0
    assert "config key compressions.small.student.layers: 9 is more than the 4 layers of the teacher" in (
        proc.stderr + proc.stdout)


def test_paper_config_commented_distill_entry_dry_runs(tmp_path):
    """configs/paper-compression.yaml documents distilling one's own teacher as a commented compression entry and a
    commented experiment: uncommented, the DAG has one distill job per (teacher, student)."""
    text = (ROOT / "configs" / "paper-compression.yaml").read_text()
    uncommented = "\n".join(re.sub(r"^(\s*)# (\w+: \{.*distill.*\})$", r"\1\2", line)
                            for line in text.splitlines()) + "\n"
    assert uncommented != text
    cfg = yaml.safe_load(uncommented)
    names = {n for n, c in cfg["compressions"].items() if c.get("method") == "distill"}
    pairs = {(m, c) for e in cfg["experiments"].values() for m in e["models"] for c in e.get("compressions", [])
             if c in names}
    assert names and pairs
    (tmp_path / "paper.yaml").write_text(uncommented)
    proc = _dry_run(tmp_path / "paper.yaml", tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    counts = dict(re.findall(r"(?m)^(\w+)\s+(\d+)$", proc.stdout))
    assert int(counts["distill"]) == len(pairs)


# --- finding (1): weight count, knowledge vs reasoning
def test_weight_count_table_and_figure(tmp_path):
    import polars as pl

    from lrmrepro.figures.compression import compression_info
    from lrmrepro.figures.weight_count import weight_count_effects, weight_count_figure, write_weight_count
    from lrmrepro.tasks.registry import record_of

    labels = dict(model="m", precision="bf16", backend="transformers", parallel=1, batch_size=8, hardware="cpu-x",
                  decoding="greedy")
    # knowledge (multihop) loses 20 of 40 problems in both variants; reasoning: arith loses 4, logic and timeline 0
    base = {"multihop": [True] * 30 + [False] * 10, "arith": [True] * 20 + [False] * 20,
            "logic": [True] * 40, "timeline": [i % 2 == 0 for i in range(40)]}
    worse = {"multihop": [True] * 10 + [False] * 30, "arith": [True] * 16 + [False] * 24,
             "logic": [True] * 40, "timeline": base["timeline"]}
    refs = []
    for comp, tasks in (("none", base), ("sparsegpt_50", worse), ("distill_half", worse), ("gptq_w4a16", base)):
        for task, correct in tasks.items():
            path = tmp_path / f"{comp}-{task}.parquet"
            pl.DataFrame({"id": [f"q{i:03d}" for i in range(40)], "correct": correct}).write_parquet(path)
            refs.append({**labels, "compression": comp, "task": task, "scores": str(path)})
    metas = {"sparsegpt_50": {"recipe_info": {"method": "sparsegpt"}, "sparsity": 0.5, "effective_bits": 32.0,
                              "linear_weight_elements": 1000, "measured_sparsity_dense": 0.5},
             "distill_half": {"recipe_info": {"method": "distill"}, "effective_bits": 32.0,
                              "linear_weight_elements": 400, "measured_sparsity_dense": 0.0},
             "gptq_w4a16": {"recipe_info": {"method": "gptq", "weight_bits": 4}, "effective_bits": 4.2,
                            "linear_weight_elements": 1000}}
    info = compression_info(metas, base_bits=32, base_weights=1000)
    assert dict(info.select("compression", "decoder_weights").iter_rows()) == {
        "sparsegpt_50": 500, "distill_half": 400, "gptq_w4a16": 1000, "none": 1000}
    skills = {t: record_of(t, {"source": "synthetic"}).skill for t in base}  # the workflow: Study.task_groups
    knowledge = [t for t in base if skills[t] == "knowledge"]
    reasoning = [t for t in base if skills[t] == "reasoning"]
    assert knowledge == ["multihop"] and reasoning == ["arith", "logic", "timeline"]
    eff = weight_count_effects(refs, info, knowledge, reasoning, resamples=200, seed=0)
    rows = {(r["compression"], r["group"]): r for r in eff.iter_rows(named=True)}
    assert set(rows) == {(c, g) for c in ("sparsegpt_50", "distill_half") for g in ("knowledge", "reasoning")}
    assert rows[("distill_half", "knowledge")]["delta"] == pytest.approx(-0.5)
    assert rows[("distill_half", "reasoning")]["delta"] == pytest.approx(-0.1 / 3)
    assert rows[("distill_half", "reasoning")]["weight_fraction"] == pytest.approx(0.4)
    assert rows[("sparsegpt_50", "knowledge")]["kind"] == "pruning"
    table = write_weight_count(eff, tmp_path / "w.md", tmp_path / "w.csv")
    assert table.get_column("knowledge Δ − reasoning Δ").to_list() == pytest.approx([-50 + 10 / 3] * 2)
    assert "| m | distill_half | distillation | 400 | 40.0 |" in (tmp_path / "w.md").read_text()
    weight_count_figure(eff, [tmp_path / "w.png"])
    assert (tmp_path / "w.png").stat().st_size > 0
