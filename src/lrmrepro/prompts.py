"""Prompt styles of the two papers.

- ``chat_boxed`` ("Give Me FP32 or Give Me Death?"): the model's chat template with one user turn holding the
  question followed by ``BOXED_INSTRUCTION``; the template's generation prompt is appended
  (``add_generation_prompt=True``). Reasoning models' templates open the ``<think>`` block themselves.
- ``raw_think`` ("When Reasoning Meets Compression"): no chat template; the question followed by ``RAW_SUFFIX``,
  ending in ``<think>\\n`` so that the model starts reasoning at once.
- ``chat_return_boxed`` (the public code of "Give Me FP32 or Give Me Death?" for MATH500 and AIME, after SkyThought's
  math template): the chat template with one user turn ``"Return your final response within \\boxed{}. {question}"``,
  no system prompt, and the generation prompt.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

PROMPT_STYLES = ("chat_boxed", "raw_think", "chat_return_boxed")

BOXED_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
RAW_SUFFIX = "\n" + BOXED_INSTRUCTION + "\n<think>\n"


def check_style(style: str) -> str:
    if style not in PROMPT_STYLES:
        raise ValueError(f"unknown prompt style {style!r}; allowed: {', '.join(PROMPT_STYLES)}")
    return style


RETURN_BOXED_PREFIX = "Return your final response within \\boxed{}. "


def user_message(question: str, style: str = "chat_boxed") -> str:
    if style == "chat_return_boxed":
        return RETURN_BOXED_PREFIX + question
    return f"{question}\n{BOXED_INSTRUCTION}"


def build_prompt(question: str, style: str, tokenizer: Any | None = None) -> str:
    """The exact prompt text for one question."""
    check_style(style)
    if style == "raw_think":
        return question + RAW_SUFFIX
    if tokenizer is None or getattr(tokenizer, "chat_template", None) is None:
        raise ValueError(f"prompt style {style!r} needs a tokenizer with a chat template; use 'raw_think' for models "
                         "without one")
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": user_message(question, style)}], tokenize=False, add_generation_prompt=True
    )


def build_prompts(questions: Iterable[str], style: str, tokenizer: Any | None = None) -> list[str]:
    return [build_prompt(q, style, tokenizer) for q in questions]


def build_prompts_for_items(items: Any, style: str, tokenizer: Any | None = None) -> list[str]:
    """Prompts for a task-items table (polars DataFrame or list of mappings with a ``question`` field)."""
    if hasattr(items, "get_column"):
        questions: Sequence[str] = items.get_column("question").to_list()
    else:
        questions = [m["question"] for m in items]  # type: ignore[index]
    return build_prompts(questions, style, tokenizer)
