"""Throughput of math-verify scoring (answer_format boxed_math): samples/s.

Two sets, scored under the default (strict) truncation policy:

- ``short``: N synthetic outputs, a quarter each: boxed correct answer in an equivalent form (a 6-digit decimal for
  a fraction), boxed wrong answer, unboxed "The answer is a/b", truncated box. Every output has its own numbers
  (a/b with a < 1000, b < 1000), so neither the memoised math-verify parse nor latex2sympy's cache is hit by
  repetition: the cost of a fresh answer.
- ``long``: N/5 R1-style outputs of about 15,000 characters (reasoning with tentative boxed answers mid-way, then
  ``</think>`` and an emphasised final answer), a quarter each: complete with a box, complete with
  ``**Final Answer:** $a/b$``, untagged (no think tags, ``**Answer:** $\boxed{a/b}$``), truncated inside the
  reasoning (finish_reason length; no answer under the strict policy).

``hostile``: outputs written to stall or crash a scorer (a 5,000-digit boxed integer, 50,000 unit words before the
number, 20,000 nested boxes), each scored in every answer format; goal: each under 0.5 s (before the fix: the
first raised, the second took 44.6 s, the third 1.3 s and 1.57 GB).

Usage: python benchmarks/scoring.py [N]   (default 10000)
"""

from __future__ import annotations

import random
import sys
import time

from lrmrepro.scoring import score_text


def synthetic_outputs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        a, b = rng.randint(1, 999), rng.randint(2, 999)
        gold = f"\\frac{{{a}}}{{{b}}}"
        reasoning = f"We compute step {i}: {a} divided by {b}. " * 3
        kind = i % 4
        if kind == 0:
            text = reasoning + f"So the answer is $\\boxed{{{a / b:.6f}}}$."          # equivalent decimal
        elif kind == 1:
            text = reasoning + f"Hence \\boxed{{\\dfrac{{{a + 1}}}{{{b}}}}}."         # wrong
        elif kind == 2:
            text = reasoning + f"The answer is {a}/{b}."                              # unboxed, correct
        else:
            text = reasoning + "so the result is \\boxed{\\frac{" + str(a)           # truncated
        out.append((text, gold))
    return out


_STEPS = [
    "Okay, so I need to find the value of the expression. Let me write down what I know first.",
    "Hmm, let me double-check that step, because it is easy to make an arithmetic slip here.",
    "Wait, maybe I should approach it differently and compare both results at the end.",
    "Let me verify this with a small example: if the numbers were smaller, the same method gives the right value.",
    "So far we have {a} in the numerator and {b} in the denominator, and nothing cancels yet.",
    "Actually, no, that contradicts the previous line, so let me recompute the denominator carefully.",
]


def long_outputs(n: int, seed: int = 1, chars: int = 15_000) -> list[tuple[str, str, bool]]:
    """``(text, gold, truncated)`` of R1-style long outputs (see the module docstring)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        a, b = rng.randint(1, 999), rng.randint(2, 999)
        gold = f"\\frac{{{a}}}{{{b}}}"
        paras, size = [], 0
        while size < chars:
            para = " ".join(rng.choice(_STEPS).format(a=a, b=b) for _ in range(5))
            if len(paras) % 7 == 3:
                para += f" So maybe the answer is $\\boxed{{\\frac{{{a + len(paras)}}}{{{b}}}}}$? Let me check again."
            paras.append(para)
            size += len(para) + 2
        think = "\n\n".join(paras)
        kind = i % 4
        if kind == 0:
            text = f"{think}\n</think>\n\nPutting it together, the value is\n\n$$\\boxed{{\\dfrac{{{a}}}{{{b}}}}}$$"
        elif kind == 1:
            text = f"{think}\n</think>\n\nThe fraction does not simplify.\n\n**Final Answer:** ${a}/{b}$"
        elif kind == 2:
            text = f"{think}\n\n**Answer:** $\\boxed{{{a}/{b}}}$"                              # untagged
        else:
            text = think[: len(think) * 2 // 3]                                              # cut at the limit
        out.append((text, gold, kind == 3))
    return out


def main(n: int = 10_000) -> None:
    data = synthetic_outputs(n)
    t0 = time.perf_counter()
    correct = sum(score_text("boxed_math", text, gold).correct for text, gold in data)
    dt = time.perf_counter() - t0
    print(f"short: scored {n} outputs in {dt:.2f} s: {n / dt:.0f} samples/s (accuracy {correct / n:.3f})")
    m = max(n // 5, 4)
    long = long_outputs(m)
    chars = sum(len(t) for t, _, _ in long) / m
    t0 = time.perf_counter()
    correct = sum(score_text("boxed_math", text, gold, truncated=trunc).correct for text, gold, trunc in long)
    dt = time.perf_counter() - t0
    print(f"long: scored {m} outputs of {chars:,.0f} characters on average in {dt:.2f} s: {m / dt:.0f} samples/s "
          f"(accuracy {correct / m:.3f})")


HOSTILE = {
    "5,000-digit integer": r"Thinking... \boxed{" + "7" * 5000 + "}",
    "50,000 unit words": r"\boxed{" + "a " * 50000 + "1}",
    "20,000 nested boxes": r"\boxed{" * 20000 + "1" + "}" * 20000,
}
HOSTILE_GOAL_S = 0.5


def hostile() -> bool:
    """Each hostile output in each answer format but ``program``: seconds, against the goal."""
    met = True
    for name, text in HOSTILE.items():
        for fmt, gold in (("boxed_int", "1"), ("boxed_math", "1"), ("short_text", "Paris"), ("option_letter", "(A)"),
                          ("tfu", "True")):
            t0 = time.perf_counter()
            score_text(fmt, text, gold)
            dt = time.perf_counter() - t0
            met &= dt < HOSTILE_GOAL_S
            print(f"hostile {name} / {fmt}: {dt:.3f} s (goal < {HOSTILE_GOAL_S} s{'' if dt < HOSTILE_GOAL_S else ': MISSED'})")
    return met


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
    hostile()
