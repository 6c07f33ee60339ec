"""Train the embedded default model: a small Qwen2ForCausalLM that learns the synthetic reasoning tasks.

Deterministic from ``seed`` (data, initialisation, batch order) on a given torch build and thread count. The
training corpus is: every task's training examples rendered in both prompt styles (loss on the completion only),
plus the ``multihop`` fact base as plain text (loss on every token), repeated ``fact_repeats`` times so the model
memorises it. The corpus is saved as ``train_corpus.jsonl`` in the checkpoint (calibration data for compression).

**Choice points** (``lrmrepro.tasks.synthetic``): at the token where a trace takes one of several equivalent
alternatives, the training target is the uniform distribution over the alternatives' first tokens (found by
tracing the same question along each other alternative: ``synthetic.alternatives``), not the one alternative this
trace took. That is the expected target of the sampled data without its sampling noise: the model learns to give
the alternatives equal probability, in every context, so greedy decoding meets genuine near-ties there. The rest
of the trace is teacher-forced along the path it took.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from .. import io
from ..progress import Progress
from ..prompts import RAW_SUFFIX, build_prompt, user_message
from ..tasks import synthetic
from .train_config import TrainConfig
from .tokenizer import train_tokenizer

log = logging.getLogger(__name__)


def build_corpus(cfg: TrainConfig) -> list[dict[str, Any]]:
    """Documents ``{"style", "question", "completion"}`` (task examples also keep their ``example``); fact documents
    have an empty style and prompt (loss on all tokens)."""
    rng = random.Random(f"corpus:{cfg.seed}")
    docs: list[dict[str, Any]] = []
    for exs in cfg.training_examples().values():
        for ex in exs:
            docs.append({"style": rng.choice(["chat_boxed", "raw_think"]), "question": ex.question,
                         "completion": ex.completion, "example": ex})
    if "multihop" in cfg.tasks:
        facts = synthetic.World(cfg.seed).facts()
        for _ in range(cfg.fact_repeats):
            rng.shuffle(facts)
            for i in range(0, len(facts), cfg.facts_per_doc):
                docs.append({"style": "", "question": "", "completion": " ".join(facts[i : i + cfg.facts_per_doc])})
    rng.shuffle(docs)
    return docs


def _render(doc: dict[str, str], tokenizer: Any) -> tuple[str, str]:
    if not doc["style"]:
        return "", doc["completion"] + tokenizer.eos_token
    return build_prompt(doc["question"], doc["style"], tokenizer), doc["completion"] + tokenizer.eos_token


def choice_targets(ids: list[int], alternatives: list[list[list[int]]]) -> list[tuple[int, list[int]]]:
    """``(token index, token id of every alternative there)`` per choice point of a tokenized completion ``ids``,
    the taken alternative first; ``alternatives``: per choice point, the tokenized completions along each other
    alternative. Where an alternative first differs from ``ids`` is the choice, its token there its first token."""
    out = []
    for alts in alternatives:
        position, firsts = None, []
        for other in alts:
            t = next((i for i, (a, b) in enumerate(zip(ids, other)) if a != b), min(len(ids), len(other)))
            if t >= len(ids) or t >= len(other):
                continue
            position = t if position is None else min(position, t)
            firsts.append(other[t])
        if position is not None and firsts:
            out.append((position, [ids[position], *firsts]))
    return out


def _encode(docs: list[dict[str, Any]], tokenizer: Any, world: Any = None) -> list[tuple[list[int], int, list]]:
    """(token ids, prompt length, soft targets) per document; soft targets are ``(position in the document, [token
    id per alternative])`` at the choice points of task examples (see the module docstring). Tokenized in bulk."""
    rendered = [_render(doc, tokenizer) for doc in docs]
    prompts = tokenizer([p for p, _ in rendered], add_special_tokens=False)["input_ids"]
    completions = tokenizer([c for _, c in rendered], add_special_tokens=False)["input_ids"]
    shape, flat = [], []
    for doc in docs:
        ex = doc.get("example")
        if ex is None or not ex.choices or world is None:
            shape.append([])
            continue
        alts = synthetic.alternatives(ex, world)
        shape.append([len(a) for _, a in alts])
        flat += [a.completion + tokenizer.eos_token for _, alt in alts for a in alt]
    flat_ids = tokenizer(flat, add_special_tokens=False)["input_ids"] if flat else []
    out, k = [], 0
    for (prompt, _), p_ids, c_ids, counts in zip(rendered, prompts, completions, shape):
        p_ids = p_ids if prompt else []
        groups = []
        for n in counts:
            groups.append(flat_ids[k:k + n])
            k += n
        soft = [(len(p_ids) + pos, firsts) for pos, firsts in choice_targets(c_ids, groups)]
        out.append((p_ids + c_ids, len(p_ids), soft))
    return out


def _batches(encoded: list[tuple[list[int], int]], batch_size: int, steps: int, seed: int):
    """Length-bucketed random batches (less padding), deterministic in ``seed``."""
    rng = random.Random(f"batches:{seed}")
    order = list(range(len(encoded)))
    step = 0
    while True:
        rng.shuffle(order)
        mega = batch_size * 50
        for m in range(0, len(order), mega):
            block = sorted(order[m : m + mega], key=lambda i: len(encoded[i][0]))
            groups = [block[i : i + batch_size] for i in range(0, len(block), batch_size)]
            rng.shuffle(groups)
            for g in groups:
                yield g
                step += 1
                if step >= steps:
                    return


def _collate(encoded, idx, pad_id):
    width = max(len(encoded[i][0]) for i in idx)
    ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
    labels = torch.full((len(idx), width), -100, dtype=torch.long)
    mask = torch.zeros((len(idx), width), dtype=torch.long)
    soft_rows, soft_pos, soft_ids = [], [], []
    for row, i in enumerate(idx):
        toks, n_prompt, soft = encoded[i]
        ids[row, : len(toks)] = torch.tensor(toks)
        mask[row, : len(toks)] = 1
        labels[row, n_prompt : len(toks)] = torch.tensor(toks[n_prompt:])
        for pos, alts in soft:
            labels[row, pos] = -100  # replaced by the uniform target over the alternatives
            soft_rows.append(row), soft_pos.append(pos), soft_ids.append(alts)
    k = max((len(a) for a in soft_ids), default=1)
    alt_ids = torch.tensor([a + [a[0]] * (k - len(a)) for a in soft_ids] or [[0] * k], dtype=torch.long)
    alt_w = torch.tensor([[1.0 / len(a)] * len(a) + [0.0] * (k - len(a)) for a in soft_ids] or [[0.0] * k])
    soft_t = (torch.tensor(soft_rows, dtype=torch.long), torch.tensor(soft_pos, dtype=torch.long), alt_ids, alt_w)
    return ids, mask, labels, soft_t


def _loss(logits: torch.Tensor, labels: torch.Tensor, soft) -> torch.Tensor:
    """Mean cross-entropy over the supervised positions: the next token where the label is hard, the uniform
    distribution over the alternatives' first tokens at choice points."""
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    target = labels[:, 1:]
    hard = target != -100
    nll = -logp.gather(2, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)[hard]
    rows, pos, alt_ids, alt_w = soft
    total, count = nll.sum(), hard.sum()
    if rows.numel():
        at = logp[rows, pos - 1]  # the logits at pos - 1 predict the token at pos
        total = total - (at.gather(1, alt_ids) * alt_w).sum()
        count = count + rows.numel()
    return total / count.clamp(min=1)


def train_default_model(cfg: TrainConfig, out_dir: str | Path, progress: bool = True) -> dict[str, Any]:
    """Train and save the model (HF format, ``save_pretrained``) with its tokenizer and ``train_corpus.jsonl``.
    Returns training figures for ``meta.json``."""
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    docs = build_corpus(cfg)
    # the tokenizer sees the text as the model will (instruction and prompt scaffolding included), so that
    # recurring phrases become single tokens and sequences stay short
    texts = [(user_message(_d["question"]) + RAW_SUFFIX + _d["completion"]) if _d["style"] else _d["completion"]
             for _d in docs]
    whole = synthetic.TIMELINE_TOKENS if "timeline" in cfg.tasks else ()
    tokenizer = train_tokenizer(texts, cfg.vocab_size, whole_tokens=whole)
    encoded = _encode(docs, tokenizer, synthetic.World(cfg.seed))
    pad_id = tokenizer.pad_token_id
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_kv_heads,
        max_position_embeddings=1024, rope_theta=10000.0, tie_word_embeddings=False,
        bos_token_id=None, eos_token_id=tokenizer.eos_token_id, pad_token_id=pad_id,
    )
    model = Qwen2ForCausalLM(config)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))

    def lr_at(step: int) -> float:
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        frac = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))

    losses: list[float] = []
    tokens = 0
    bar = Progress(f"train default model -> {out_dir}", cfg.steps, unit="step", logger=log,
                   bar=None if progress else False)
    for step, idx in enumerate(_batches(encoded, cfg.batch_size, cfg.steps, cfg.seed)):
        ids, mask, labels, soft = _collate(encoded, idx, pad_id)
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        loss = _loss(model(input_ids=ids, attention_mask=mask).logits, labels, soft)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        tokens += int(mask.sum())
        bar.update(note=f"loss {sum(losses[-50:]) / len(losses[-50:]):.3f}")
    bar.close()
    model.eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = pad_id
    seconds = time.perf_counter() - t0
    with io.atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        with open(tmp / "train_corpus.jsonl", "w") as f:
            for doc in docs:
                prompt, completion = _render(doc, tokenizer)
                f.write(json.dumps({"text": prompt + completion}) + "\n")
    return {
        "train_config": asdict(cfg),
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "n_documents": len(docs),
        "choice_point_targets": sum(len(e[2]) for e in encoded),
        "train_tokens": tokens,
        "final_loss_mean_last_50": sum(losses[-50:]) / len(losses[-50:]),
        "loss_curve_every_50": [round(sum(losses[i : i + 50]) / len(losses[i : i + 50]), 4) for i in range(0, len(losses), 50)],
        "seconds": seconds,
    }
