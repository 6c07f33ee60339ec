"""Throughput of math-verify scoring (answer_format boxed_math): samples/s over N synthetic outputs.

Outputs: a mix of boxed correct answers (often in a different but equivalent form, e.g. 0.5 vs \\frac{1}{2}),
boxed wrong answers, unboxed "The answer is ..." answers and truncated outputs without an answer.
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


def main(n: int = 10_000) -> None:
    data = synthetic_outputs(n)
    t0 = time.perf_counter()
    correct = sum(score_text("boxed_math", text, gold).correct for text, gold in data)
    dt = time.perf_counter() - t0
    print(f"scored {n} outputs in {dt:.2f} s: {n / dt:.0f} samples/s (accuracy {correct / n:.3f})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
