"""R1-style long outputs for scorer tests: thousands of characters of reasoning in the style of DeepSeek-R1 distills
(self-talk, checks, "Wait," backtracking) with tentative answers mid-way, then ``</think>`` and a final answer, plus
the variants real runs produce: cut at max_new_tokens inside the reasoning, untagged (no think tags), emphasis."""

from __future__ import annotations

import random

_OPENERS = [
    "Okay, so I need to figure out {topic}. Let me start by writing down what I know.",
    "Alright, let me read the problem again carefully: {topic}.",
]
_FILLER = [
    "Let me think about this step by step, because it is easy to get confused here.",
    "First, I should make sure I understand every part of the question before computing anything.",
    "Hmm, that seems right, but let me double-check the previous step just to be safe.",
    "Wait, maybe I made a mistake there. Let me go back and recompute it more carefully.",
    "So if I consider the first condition, it restricts the possibilities quite a bit.",
    "Now, the second condition is a bit trickier, so I will handle it separately.",
    "Let me verify this with a small example, because examples often reveal an error.",
    "Okay, that example works out, so the general reasoning should be fine as well.",
    "But hold on, I should check whether there is another case I have not considered yet.",
    "Alternatively, I could approach the whole thing from the other direction and compare.",
    "Let me write the intermediate result down so that I do not lose track of it.",
    "Hmm, I'm not entirely sure about this part; let me reconsider the assumptions.",
    "Actually, no, that contradicts what I found earlier, so one of the two steps must be wrong.",
    "Let me recount everything from the beginning, slowly this time.",
    "Yes, now both approaches agree, which gives me more confidence in the result.",
]


def reasoning(topic: str, tentatives: list[str], chars: int = 6000, seed: int = 0) -> str:
    """Reasoning text of about ``chars`` characters (paragraphs of filler sentences) with each of ``tentatives``
    (e.g. "So the answer is (A)?") placed at evenly spaced points; no think tags."""
    rng = random.Random(seed)
    paragraphs = [_OPENERS[seed % len(_OPENERS)].format(topic=topic)]
    size, marks = len(paragraphs[0]), [int(chars * (i + 1) / (len(tentatives) + 1)) for i in range(len(tentatives))]
    pending = list(tentatives)
    while size < chars:
        para = " ".join(rng.choice(_FILLER) for _ in range(rng.randint(3, 6)))
        if pending and size >= marks[len(tentatives) - len(pending)]:
            para += " " + pending.pop(0)
        paragraphs.append(para)
        size += len(para) + 2
    paragraphs += pending
    return "\n\n".join(paragraphs)


def complete(think: str, final: str) -> str:
    """A finished R1 output: the reasoning (the prompt opened ``<think>``), ``</think>``, then the final part."""
    return f"{think}\n</think>\n\n{final}"


def cut(text: str, at: float = 0.6) -> str:
    """The output as max_new_tokens leaves it: cut at ``at`` of its length (mid-word)."""
    return text[: int(len(text) * at)]
