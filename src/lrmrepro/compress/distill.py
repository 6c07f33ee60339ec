"""Distillation (``method: distill``): a smaller student trained on the teacher's output distribution.

Loss per supervised token (the teacher logit distribution in addition to the regular token prediction loss)::

    loss = alpha * T^2 * KL(softmax(z_teacher / T) || softmax(z_student / T)) + (1 - alpha) * CE(student, data)

averaged over the supervised positions of a batch (the T^2 keeps the gradient scale of the soft term independent of
T, as in Hinton et al. 2015). CE is the default model's own training loss (:func:`lrmrepro.models.train._loss`), on
the data's next tokens. Data: texts (by default the teacher's ``train_corpus.jsonl``), each split at
``completion_after`` into a prompt (not supervised) and a completion (supervised); a text without it (a fact
document) is supervised on every token. Batching and collation are the default model's
(:func:`lrmrepro.models.train._batches`, :func:`lrmrepro.models.train._collate`): length-bucketed batches,
deterministic in the seed; the texts are a seeded sample of ``steps × batch_size`` of them (all when fewer).

Training runs in transformers' ``Trainer`` (AdamW, linear warmup and cosine decay, gradient clipping at 1.0,
resumable from its checkpoints); :class:`DistillTrainer` only replaces the loss. Bit-reproducible on one torch build
and thread count: the batches are fixed in advance, there is no dropout, and the student's initialisation is
seeded. The training state is saved every ``checkpoint_every`` steps in ``state_dir``; a rerun with the same
settings resumes from the last one (weights, optimizer, scheduler, data position) and ends with the same weights as
an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from .. import io
from ..models.train import _batches, _collate, _loss
from .distill_config import evenly_spaced

log = logging.getLogger(__name__)

#: teacher files copied into the student's checkpoint (the tokenizer is saved by the tokenizer itself)
EXTRA_FILES = ("train_corpus.jsonl", "chat_template.jinja", "generation_config.json")
MLP = ("gate_proj", "up_proj", "down_proj")


# --- the loss
def distill_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, soft: Any,
                 alpha: float, temperature: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(loss, kl, ce)``: see the module docstring. ``labels``: -100 where not supervised (the next-token target of
    position t is ``labels[t + 1]``); ``soft``: the choice-point targets of :func:`lrmrepro.models.train._collate`
    (their positions count as supervised for the KL term too)."""
    ce = _loss(student_logits, labels, soft)
    mask = labels[:, 1:] != -100
    rows, pos = soft[0], soft[1]
    if rows.numel():
        mask = mask.clone()
        mask[rows, pos - 1] = True
    t = temperature
    s_logp = torch.log_softmax(student_logits[:, :-1][mask].float() / t, dim=-1)
    t_logp = torch.log_softmax(teacher_logits[:, :-1][mask].float() / t, dim=-1)
    kl = (t_logp.exp() * (t_logp - s_logp)).sum(-1).mean() if mask.any() else s_logp.sum() * 0
    return alpha * t * t * kl + (1 - alpha) * ce, kl, ce


# --- the data
def encode_texts(texts: Sequence[str], tokenizer: Any, completion_after: str | None,
                 max_seq_len: int) -> list[tuple[list[int], int, list]]:
    """``(token ids, prompt length, [])`` per text, the form :func:`lrmrepro.models.train._collate` takes: the prompt
    is the text up to and including the first ``completion_after`` (none: empty), tokenized apart from the
    completion as at generation time; truncated to ``max_seq_len``; texts with no supervised token are dropped."""
    eos = tokenizer.eos_token or ""
    splits = []
    for text in texts:
        text = text[: -len(eos)] if eos and text.endswith(eos) else text
        cut = text.find(completion_after) if completion_after else -1
        cut = cut + len(completion_after) if cut >= 0 else 0
        splits.append((text[:cut], text[cut:] + eos))
    prompts = tokenizer([p for p, _ in splits], add_special_tokens=False)["input_ids"]
    completions = tokenizer([c for _, c in splits], add_special_tokens=False)["input_ids"]
    out = []
    for p_ids, c_ids in zip(prompts, completions):
        ids = (p_ids + c_ids)[:max_seq_len]
        if len(ids) > len(p_ids) + 1 or (not p_ids and len(ids) > 1):
            out.append((ids, len(p_ids), []))
    return out


class BatchList(torch.utils.data.Dataset):
    """One item per training step: the document indices of that step's batch (fixed in advance)."""

    def __init__(self, batches: list[list[int]]):
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> list[int]:
        return self.batches[i]


def collator(encoded: list, pad_id: int):
    def collate(items: list[list[int]]) -> dict[str, torch.Tensor]:
        ids, mask, labels, (rows, pos, alt_ids, alt_w) = _collate(encoded, items[0], pad_id)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels, "soft_rows": rows, "soft_pos": pos,
                "alt_ids": alt_ids, "alt_w": alt_w}

    return collate


# --- the student
def build_student(teacher: Any, spec: dict[str, Any], seed: int) -> tuple[Any, dict[str, Any]]:
    """The student model and a description of how it was made (for meta.json)."""
    from transformers import AutoModelForCausalLM

    if "path" in spec or "hub" in spec:
        source = spec.get("path") or spec["hub"]
        student = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
        if student.config.vocab_size != teacher.config.vocab_size:
            raise ValueError(f"student {source}: vocabulary of {student.config.vocab_size} tokens, the teacher's has "
                             f"{teacher.config.vocab_size}; distillation needs the teacher's tokenizer")
        return student, {"init": "checkpoint", "source": source}
    tcfg = teacher.config
    n_teacher = tcfg.num_hidden_layers
    layers = spec.get("layers", n_teacher)
    init = spec.get("init", "teacher")
    layer_map = list(spec.get("layer_map") or evenly_spaced(n_teacher, layers))
    if layers > n_teacher or max(layer_map) >= n_teacher:
        raise ValueError(f"student: layers {layers} / layer_map {layer_map} do not fit the teacher's {n_teacher} layers")
    cfg = tcfg.__class__.from_dict(tcfg.to_dict())
    cfg.num_hidden_layers = layers
    if getattr(tcfg, "layer_types", None):
        cfg.layer_types = [tcfg.layer_types[i] for i in layer_map]
    for key in ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads"):
        if key in spec:
            setattr(cfg, key, spec[key])
    if "hidden_size" in spec or "num_attention_heads" in spec:
        cfg.head_dim = cfg.hidden_size // cfg.num_attention_heads
    torch.manual_seed(seed)
    student = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    made = {"init": init, "layers": layers, "hidden_size": cfg.hidden_size, "intermediate_size": cfg.intermediate_size}
    if init == "teacher":
        made |= {"layer_map": layer_map, **_copy_from_teacher(teacher, student, layer_map, cfg.intermediate_size)}
    return student, made


def _copy_from_teacher(teacher: Any, student: Any, layer_map: list[int], width: int) -> dict[str, Any]:
    """Copy every student tensor from the teacher: embeddings, final norm and lm_head as they are, student layer j
    from teacher layer ``layer_map[j]``; a narrower MLP keeps the ``width`` neurons of largest
    ``|gate_i| * |up_i| * |down_:,i|`` (L2 norms of the neuron's rows / column), in the teacher's order."""
    t_state = teacher.state_dict()
    kept: dict[int, list[int]] = {}
    with torch.no_grad():
        for key, tensor in student.state_dict().items():
            parts = key.split(".")
            if "layers" in parts:
                at = parts.index("layers") + 1
                j = int(parts[at])
                parts[at] = str(layer_map[j])
                source = t_state[".".join(parts)]
                if source.shape != tensor.shape and any(m in parts for m in MLP):
                    if j not in kept:
                        kept[j] = _top_neurons(t_state, ".".join(parts[: at + 1]), width)
                    idx = torch.tensor(kept[j])
                    source = source[:, idx] if "down_proj" in parts else source[idx]
            else:
                source = t_state[key]
            if source.shape != tensor.shape:
                raise ValueError(f"student tensor {key} {tuple(tensor.shape)}: the teacher's is {tuple(source.shape)}; "
                                 "init: teacher needs the teacher's hidden size and heads (use init: fresh)")
            tensor.copy_(source)
    return {"mlp_neurons_kept": {str(j): len(v) for j, v in kept.items()}} if kept else {}


def _top_neurons(state: dict[str, torch.Tensor], prefix: str, width: int) -> list[int]:
    gate, up = state[f"{prefix}.mlp.gate_proj.weight"], state[f"{prefix}.mlp.up_proj.weight"]
    down = state[f"{prefix}.mlp.down_proj.weight"]
    score = gate.float().norm(dim=1) * up.float().norm(dim=1) * down.float().norm(dim=0)
    return sorted(torch.argsort(score, descending=True, stable=True)[:width].tolist())


def decoder_weights(model: Any) -> int:
    """Elements of the 2-D weights of the decoder layers (the linear modules; what pruning counts)."""
    return sum(p.numel() for n, p in model.named_parameters() if ".layers." in n and p.dim() == 2)


# --- training
def _progress_callback(what: str, steps: int) -> Any:
    """A TrainerCallback reporting step i of N, the loss and the ETA through :class:`lrmrepro.progress.Progress`
    (Trainer's own bar is off: in a job's log it is a stream of carriage returns)."""
    from transformers import TrainerCallback

    from ..progress import Progress

    class _Report(TrainerCallback):
        def __init__(self) -> None:
            self.progress: Progress | None = None
            self.loss = ""

        def on_train_begin(self, args, state, control, **kw):  # noqa: ANN001
            self.progress = Progress(what, steps, state.global_step, unit="step", logger=log)

        def on_log(self, args, state, control, logs=None, **kw):  # noqa: ANN001
            if logs and "loss" in logs:
                self.loss = f"loss {logs['loss']:.4f}"

        def on_step_end(self, args, state, control, **kw):  # noqa: ANN001
            if self.progress is not None:
                self.progress.update(state.global_step - self.progress.done, note=self.loss)

        def on_train_end(self, args, state, control, **kw):  # noqa: ANN001
            if self.progress is not None:
                self.progress.close()

    return _Report()


def _trainer_class():
    from transformers import Trainer

    class DistillTrainer(Trainer):
        """transformers' Trainer with the distillation loss; the teacher is frozen and never wrapped or saved."""

        def __init__(self, *args, teacher, alpha: float, temperature: float, **kwargs):
            super().__init__(*args, **kwargs)
            self.teacher, self.alpha, self.temperature = teacher, alpha, temperature
            self.model_accepts_loss_kwargs = False
            self._parts: list[tuple[float, float]] = []

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            ids, mask = inputs["input_ids"], inputs["attention_mask"]
            out = model(input_ids=ids, attention_mask=mask)
            with torch.no_grad():
                teacher_logits = self.teacher(input_ids=ids, attention_mask=mask).logits
            soft = (inputs["soft_rows"], inputs["soft_pos"], inputs["alt_ids"], inputs["alt_w"])
            loss, kl, ce = distill_loss(out.logits, teacher_logits, inputs["labels"], soft, self.alpha,
                                        self.temperature)
            self._parts.append((float(kl.detach()), float(ce.detach())))
            return (loss, out) if return_outputs else loss

        def log(self, logs: dict[str, float], *args, **kwargs) -> None:
            if "loss" in logs and self._parts:
                logs = {**logs, "kl": round(sum(k for k, _ in self._parts) / len(self._parts), 4),
                        "ce": round(sum(c for _, c in self._parts) / len(self._parts), 4)}
                self._parts = []
            super().log(logs, *args, **kwargs)

    return DistillTrainer


def settings_digest(student: dict[str, Any], settings: dict[str, Any], teacher_dir: Path) -> str:
    """What a resumable state belongs to: the student spec, the settings (threads included) and the teacher's
    weights; a state of other ones is discarded."""
    h = hashlib.sha256(json.dumps({"student": student, "settings": settings}, sort_keys=True).encode())
    for f in sorted(teacher_dir.glob("*.safetensors")):
        h.update(io.file_sha256(f).encode())
    return h.hexdigest()[:16]


def _prepare_state(state_dir: Path, digest: str) -> str | None:
    """The checkpoint to resume from in ``state_dir`` (None: start); a state of other settings is removed, and so is
    a checkpoint whose saving was interrupted (Trainer writes ``trainer_state.json`` last, and removes the previous
    checkpoint only after it)."""
    stamp = state_dir / "settings.digest"
    if state_dir.exists() and (not stamp.exists() or stamp.read_text().strip() != digest):
        log.info("discarding the training state in %s (other settings)", state_dir)
        shutil.rmtree(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(digest + "\n")
    complete = []
    for ckpt in state_dir.glob("checkpoint-*"):
        if (ckpt / "trainer_state.json").is_file():
            complete.append((int(ckpt.name.split("-")[1]), ckpt))
        else:
            log.info("removing %s (saving was interrupted)", ckpt)
            shutil.rmtree(ckpt)
    return str(max(complete)[1]) if complete else None


def distill_model(teacher_dir: str | Path, out_dir: str | Path, *, student: dict[str, Any], settings: dict[str, Any],
                  state_dir: str | Path, callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Distil the HF checkpoint ``teacher_dir`` into a student (``student`` spec, ``settings``: the schema's
    ``distill_settings``), saved as a plain HF checkpoint in ``out_dir`` (replaced atomically) with the teacher's
    tokenizer and extra files. ``state_dir``: the resumable training state (removed once the checkpoint is saved);
    ``callbacks``: extra ``TrainerCallback`` objects (tests). Returns the figures for meta.json."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainingArguments

    from .calibration import load_texts

    teacher_dir, state_dir = Path(teacher_dir), Path(state_dir)
    s = dict(settings)
    torch.set_num_threads(int(s["threads"]))
    gpu = torch.cuda.is_available()  # a GPU node: bf16 mixed precision, the teacher in bf16 (not bit-reproducible)
    t0 = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    teacher = AutoModelForCausalLM.from_pretrained(teacher_dir, dtype=torch.bfloat16 if gpu else torch.float32).eval()
    teacher.requires_grad_(False)
    model, made = build_student(teacher, student, int(s["seed"]))
    texts, origin = load_texts({"source": s["data"], "num_samples": 1, "max_seq_len": s["max_seq_len"],
                                "text_field": s["text_field"], "split": s["split"]}, teacher_dir)
    need = int(s["steps"]) * int(s["batch_size"])
    if len(texts) > need:  # one pass over a seeded sample: tokenizing the rest would be wasted
        texts = random.Random(f"distill:{s['seed']}").sample(texts, need)
    encoded = encode_texts(texts, tokenizer, s["completion_after"], int(s["max_seq_len"]))
    if not encoded:
        raise ValueError(f"distillation data {origin}: no text with a supervised token")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    batches = list(_batches(encoded, int(s["batch_size"]), int(s["steps"]), int(s["seed"])))
    resume = _prepare_state(state_dir, settings_digest(student, s, teacher_dir))
    if resume:
        log.info("resuming from %s", resume)
    args = TrainingArguments(
        output_dir=str(state_dir), max_steps=int(s["steps"]), per_device_train_batch_size=1,
        learning_rate=float(s["lr"]), lr_scheduler_type="cosine", warmup_steps=int(s["warmup"]),
        weight_decay=float(s["weight_decay"]), adam_beta1=0.9, adam_beta2=0.98, max_grad_norm=1.0,
        seed=int(s["seed"]), use_cpu=not gpu, bf16=gpu, save_strategy="steps", save_steps=int(s["checkpoint_every"]),
        save_total_limit=1, logging_steps=10, report_to="none", disable_tqdm=True, dataloader_num_workers=0,
        dataloader_pin_memory=False, remove_unused_columns=False, train_sampling_strategy="sequential")
    progress = _progress_callback(f"distill -> {out_dir}", int(s["steps"]))
    trainer = _trainer_class()(model=model, args=args, train_dataset=BatchList(batches),
                               data_collator=collator(encoded, pad_id), callbacks=[progress, *callbacks],
                               teacher=teacher,
                               alpha=float(s["alpha"]), temperature=float(s["temperature"]))
    teacher.to(trainer.args.device)
    trainer.train(resume_from_checkpoint=resume)
    history = [h for h in trainer.state.log_history if "loss" in h]
    model.eval()
    model.config.use_cache = getattr(teacher.config, "use_cache", True)  # Trainer turns it off while training
    with io.atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        for name in EXTRA_FILES:
            if (teacher_dir / name).exists() and not (tmp / name).exists():
                shutil.copy2(teacher_dir / name, tmp / name)
    shutil.rmtree(state_dir, ignore_errors=True)
    for parent in state_dir.parents[:2]:  # results/distill_state/{model}/ and results/distill_state/, when empty
        if parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
    from .inspect import size_on_disk
    from .run import peak_rss_bytes

    n_student, n_teacher = decoder_weights(model), decoder_weights(teacher)
    zeros = sum(int((p == 0).sum()) for n, p in model.named_parameters() if ".layers." in n and p.dim() == 2)
    return {
        # the compression table's columns (lrmrepro.figures.compression.compression_info)
        "recipe_info": {"method": "distill", "weight_bits": None, "sparsity": None}, "sparsity": None,
        "effective_bits": float(torch.finfo(next(model.parameters()).dtype).bits),
        "linear_weight_elements": n_student, "teacher_linear_weight_elements": n_teacher,
        "measured_sparsity_dense": zeros / n_student if n_student else None,
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "teacher_n_parameters": sum(p.numel() for p in teacher.parameters()),
        "decoder_weight_fraction": n_student / n_teacher if n_teacher else None,
        "student": made, "student_config": {k: getattr(model.config, k) for k in (
            "num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads")},
        "data": {"source": s["data"], "resolved_source": origin, "documents": len(encoded),
                 "train_tokens": sum(len(encoded[i][0]) for b in batches for i in b)},
        "resumed_from": Path(resume).name if resume else None,
        "loss_curve_every_10": [{k: h[k] for k in ("step", "loss", "kl", "ce") if k in h} for h in history],
        "distill_seconds": time.perf_counter() - t0, "peak_rss_bytes": peak_rss_bytes(),
        "device": str(trainer.args.device),
        "size_on_disk_bytes": size_on_disk(out_dir), "base_size_on_disk_bytes": size_on_disk(teacher_dir),
    }
