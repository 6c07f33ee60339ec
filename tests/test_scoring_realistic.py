"""Scorers on realistic long R1-style outputs (thousands of characters of reasoning, tentative answers mid-way, the
final answer at the end), with the variants real runs produce: truncated inside the reasoning (finish_reason
``length``, no ``</think>``), truncated after the think block closed, untagged (no think tags), and markdown/LaTeX
emphasis around the answer. One block per answer format."""

import json

import polars as pl
import pytest

from helpers_outputs import complete, cut, reasoning
from lrmrepro.scoring import EXTRACTION_RULES, score_table, score_text, scoring_stats
from lrmrepro.scoring.extract import fallback_line, strip_emphasis
from lrmrepro.scoring.squad import normalize_answer


def both(fmt, text, gold, aliases=(), truncated=True, **kw):
    return (score_text(fmt, text, gold, aliases, truncated=truncated, policy="strict", **kw),
            score_text(fmt, text, gold, aliases, truncated=truncated, policy="lenient", **kw))


# ------------------------------------------------------------------------------------------------ emphasis helper
@pytest.mark.parametrize("raw,stripped", [
    ("Answer: **D**", "Answer: D"),
    ("**Answer:** (B)", "Answer: (B)"),
    ("**Final Answer**: True", "Final Answer: True"),
    (r"$\boxed{\textbf{(C)}}$", r"$\boxed{(C)}$"),
    ("__Answer__: *B*", "Answer: B"),
    ("***D***", "D"),
    (r"\emph{\textit{Paris}}", "Paris"),
    ("2*3*4 = 24 and x**2 + y**2 and z^* w^*", "2*3*4 = 24 and x**2 + y**2 and z^* w^*"),  # math is kept
    ("a * b * c", "a * b * c"),
])
def test_strip_emphasis(raw, stripped):
    assert strip_emphasis(raw) == stripped


# ------------------------------------------------------------------------------------------------ boxed_int (AIME)
AIME_THINK = reasoning("how many ordered pairs satisfy the two conditions of the problem",
                       [r"So that gives $\boxed{210}$? Hmm, no, I think I double counted the symmetric pairs.",
                        "Then the count is 198, so maybe the answer is 198. Wait, I forgot the pairs on the diagonal."],
                       chars=7000, seed=1)
AIME_FINAL = ("To count the pairs we split them by the value of the first coordinate.\n\n1. Pairs off the diagonal: 198.\n"
              "2. Pairs on the diagonal: 6.\n\nAdding these gives 204.\n\n**Final Answer**\n\\[\n\\boxed{204}\n\\]")


def test_boxed_int_long_outputs():
    assert len(AIME_THINK) > 6000
    s = score_text("boxed_int", complete(AIME_THINK, AIME_FINAL), "204", truncated=False)
    assert (s.extracted, s.correct, s.rule) == ("204", True, "boxed")
    # truncated inside the reasoning: strict = no answer; lenient credits the tentative box from the middle
    strict, lenient = both("boxed_int", cut(AIME_THINK, 0.5), "204")
    assert (strict.extracted, strict.correct, strict.rule) == (None, False, "truncated")
    assert (lenient.extracted, lenient.rule) == ("210", "boxed")
    # truncated after </think>, before the final box: the reasoning is never searched under strict
    strict, lenient = both("boxed_int", cut(complete(AIME_THINK, AIME_FINAL), 0.985), "204")
    assert "</think>" in cut(complete(AIME_THINK, AIME_FINAL), 0.985)
    assert (strict.extracted, strict.rule) == (None, "none") and lenient.extracted == "210"
    # not truncated: both policies agree
    text = complete(AIME_THINK, AIME_FINAL)
    assert score_text("boxed_int", text, "204", policy="lenient") == score_text("boxed_int", text, "204")


@pytest.mark.parametrize("final,rule", [
    ("Adding the two cases, the answer is **204**.", "anchor"),
    ("**Answer:** 204", "anchor"),
    ("Answer: $\\boxed{\\textbf{204}}$", "boxed"),
    ("__Final answer__: 204 pairs", "anchor"),
])
def test_boxed_int_untagged_and_emphasis(final, rule):
    text = AIME_THINK.replace(r"$\boxed{210}$", "210") + "\n\n" + final  # untagged: no think tags at all
    s = score_text("boxed_int", text, "204", truncated=False)
    assert (s.extracted, s.correct, s.rule) == ("204", True, rule)


# ------------------------------------------------------------------------------------------------ boxed_math (MATH-500)
MATH_THINK = reasoning("the probability that the two dice show a sum of at least nine, given the conditions",
                       [r"So the probability is $\boxed{\frac{2}{3}}$? That seems too large.",
                        "Recounting the favourable outcomes, I now get 3/4, which looks more plausible."],
                       chars=6500, seed=2)


@pytest.mark.parametrize("final", [
    "**Final Answer:** $\\frac{3}{4}$",
    "The probability is $\\boxed{\\dfrac{3}{4}}$.",
    "**Final Answer**\n\n$$\\boxed{0.75}$$",
])
def test_boxed_math_long_outputs(final):
    s = score_text("boxed_math", complete(MATH_THINK, final), r"\frac{3}{4}", truncated=False)
    assert s.correct and s.rule in ("boxed", "anchor")
    strict, lenient = both("boxed_math", cut(MATH_THINK, 0.6), r"\frac{3}{4}")
    assert (strict.extracted, strict.rule) == (None, "truncated")
    assert lenient.extracted == r"\frac{2}{3}" and not lenient.correct


# ------------------------------------------------------------------------------------------------ option_letter (BBH)
TEMPORAL_THINK = reasoning("between what times Sarah could have gone to the bakery, given when she was seen",
                           ["So the answer is (A)? No wait, she was seen at the park from 9am.",
                            "Then it must be (C). Hmm, but (C) overlaps with the office visit."],
                           chars=8000, seed=3)
TEMPORAL_SUMMARY = ("Sarah was seen at the park from 9am to 11am and at the office from 11am to 2pm. The bakery "
                    "closes at 6pm, and she was free from 2pm to 6pm.\n\n")


@pytest.mark.parametrize("final,rule", [
    ("Answer: **B**", "anchor"),
    ("**Answer:** (B)", "anchor"),
    ("**Final Answer**: B) 2pm to 6pm", "anchor"),
    ("$\\boxed{\\textbf{(B)}}$", "boxed"),
    ("So she went between 2pm and 6pm.\n\n**B**", "last_mention"),
    ("The only free slot is *(B)* 2pm to 6pm.", "last_mention"),
])
def test_option_letter_long_outputs_with_emphasis(final, rule):
    text = complete(TEMPORAL_THINK, TEMPORAL_SUMMARY + final)
    assert len(text) > 8000
    s = score_text("option_letter", text, "(B)", truncated=False)
    assert (s.extracted, s.correct, s.rule) == ("(B)", True, rule)


def test_option_letter_truncated_and_untagged():
    strict, lenient = both("option_letter", cut(TEMPORAL_THINK, 0.5), "(B)")
    assert (strict.extracted, strict.correct, strict.rule) == (None, False, "truncated")
    assert (lenient.extracted, lenient.rule) == ("(A)", "anchor")   # "So the answer is (A)?" from the middle
    # a model that loops until the limit after closing its reasoning: the final part is searched, not the loop
    looping = complete(TEMPORAL_THINK, TEMPORAL_SUMMARY + "**Answer:** (B)\n\n" + "Let me check again. " * 300)
    assert score_text("option_letter", looping, "(B)", truncated=True).extracted == "(B)"
    # untagged (reasoning model prompted without <think>): the whole text is the final segment
    untagged = TEMPORAL_THINK + "\n\n" + TEMPORAL_SUMMARY + "Answer: **B**"
    assert score_text("option_letter", untagged, "(B)", truncated=False).extracted == "(B)"
    assert score_text("option_letter", untagged, "(B)", truncated=None).extracted == "(B)"  # unknown finish reason


# ------------------------------------------------------------------------------------------------ tfu (FOLIO)
FOLIO_THINK = reasoning("whether the conclusion follows from the premises about the talent shows",
                        ["So the conclusion would be True? Hmm, only if Bonnie is a student.",
                         "If she is not, it may be Uncertain. Let me check the last premise."],
                        chars=6000, seed=4)


@pytest.mark.parametrize("final,rule", [
    ("**Final Answer**: False", "anchor"),
    ("The conclusion is therefore **False**.", "last_mention"),
    ("$\\boxed{\\textbf{False}}$", "boxed"),
    ("**Answer:** *False*", "anchor"),
])
def test_tfu_long_outputs(final, rule):
    s = score_text("tfu", complete(FOLIO_THINK, "The premises exclude Bonnie from the students.\n\n" + final), "False",
                   truncated=False)
    assert (s.extracted, s.correct, s.rule) == ("False", True, rule)
    strict, lenient = both("tfu", cut(FOLIO_THINK, 0.5), "False")
    assert (strict.extracted, strict.rule) == (None, "truncated")
    assert (lenient.extracted, lenient.rule) == ("True", "last_mention")


# ------------------------------------------------------------------------------------------------ short_text (MuSiQue)
GOLD, ALIASES = "University of California, Los Angeles", ["UCLA"]
MUSIQUE_THINK = reasoning("where the director of the film about the Space Needle was educated",
                          ["So the answer is Stanford University? No, that was the producer.",
                           "Maybe it is the University of Washington, since the film is set in Seattle."],
                          chars=7000, seed=5)
LONG_LINE = ("The film was directed by John Graham, who was educated at the University of California, Los Angeles "
             "(UCLA).")


def test_short_text_untagged_plain_sentence_gets_credit():
    # a non-reasoning model (or one prompted without <think>): no tags, no box, no "Answer:" line
    text = MUSIQUE_THINK.replace("So the answer is", "So perhaps it is") + "\n\n" + LONG_LINE + "\n"
    assert "</think>" not in text and "answer" not in text.lower()
    s = score_text("short_text", text, GOLD, ALIASES, truncated=False)
    assert s.rule == "fallback_line" and s.extracted.endswith("Los Angeles (UCLA)")
    assert 0.4 < s.f1 < 1.0 and s.em == 0.0            # used to score 0 F1: nothing was extracted


@pytest.mark.parametrize("final", [
    f"University of California, Los Angeles\n\n{LONG_LINE}",          # short line first, then the long one
    f"{LONG_LINE}\n\nSo, the University of California, Los Angeles.",  # long line, then a short one
    f"{LONG_LINE}\n\n**University of California, Los Angeles**",
])
def test_short_text_prefers_the_concise_candidate(final):
    s = score_text("short_text", complete(MUSIQUE_THINK, final), GOLD, ALIASES, truncated=False)
    assert (normalize_answer(s.extracted), s.em, s.rule) == (normalize_answer(GOLD), 1.0, "fallback_line")
    assert len(s.extracted) < len(LONG_LINE) / 2


def test_short_text_final_part_beats_tentative_anchor_in_reasoning():
    # the reasoning holds "So the answer is Stanford University?"; the final part states the answer plainly
    text = complete(MUSIQUE_THINK, "Based on the reasoning above:\n\n" + LONG_LINE)
    s = score_text("short_text", text, GOLD, ALIASES, truncated=False)
    assert "Stanford" not in s.extracted and s.rule == "fallback_line" and s.f1 > 0.4
    # a long last line of several sentences: its last sentence is the candidate
    many = ("The film is about the Space Needle in Seattle, which was built for the 1962 World's Fair. Its director "
            "was John Graham. He studied at UCLA.")
    assert score_text("short_text", complete(MUSIQUE_THINK, many), GOLD, ALIASES).extracted == "He studied at UCLA"


@pytest.mark.parametrize("final,extracted,rule", [
    ("**Answer:** University of California, Los Angeles", GOLD, "anchor"),
    ("The answer is $\\boxed{\\text{UCLA}}$.", "UCLA", "boxed"),
    ("### Final answer\nThe answer is: __UCLA__", "UCLA", "anchor"),
])
def test_short_text_emphasis(final, extracted, rule):
    s = score_text("short_text", complete(MUSIQUE_THINK, final), GOLD, ALIASES, truncated=False)
    assert (s.extracted, s.em, s.rule) == (extracted, 1.0, rule)


def test_short_text_truncated():
    strict, lenient = both("short_text", cut(MUSIQUE_THINK, 0.5), GOLD, ALIASES)
    assert (strict.extracted, strict.em, strict.f1, strict.rule) == (None, 0.0, 0.0, "truncated")
    assert lenient.extracted == "Stanford University? No, that was the producer" and lenient.rule == "anchor"


def test_fallback_line_rules():
    assert fallback_line("\n\n") is None
    assert fallback_line("Explanation:\n") is None                        # a heading is no answer
    assert fallback_line("Thus, Paris.") == "Paris"
    assert fallback_line("- In conclusion, the Eiffel Tower\n") == "the Eiffel Tower"
    assert fallback_line("Paris\nSome words.\nMore words.\nParis is the capital.") == "Paris"
    assert fallback_line("UCLA\n\nThe director studied at the Univ", truncated=True) == "UCLA"  # cut line dropped
    assert fallback_line("The director studied at the Univ", truncated=True) is None


# ------------------------------------------------------------------------------------------------ program (LiveCodeBench)
_PROG_META = {"tests": [{"input": "2 3\n", "output": "5\n"}]}
DRAFT = "Maybe something like this:\n```python\na, b = map(int, input().split())\nprint(a * b)\n```\nNo, that multiplies."
LCB_THINK = reasoning("how to read two integers and print their sum", [DRAFT], chars=5000, seed=6)


def test_program_long_outputs():
    good = "Here is the solution:\n```python\na, b = map(int, input().split())\nprint(a + b)\n```"
    s = score_text("program", complete(LCB_THINK, good), "", metadata=_PROG_META, truncated=False)
    assert s.correct and s.rule == "code_block"
    s = score_text("program", cut(LCB_THINK, 0.8), "", metadata=_PROG_META, truncated=True)
    assert (s.extracted, s.correct, s.rule) == (None, False, "truncated")   # the draft is never run


# ------------------------------------------------------------------------------------------------ tables and meta
def test_score_table_policies_columns_and_stats():
    items = pl.DataFrame({
        "id": ["t1", "f1", "m1"], "task": ["x"] * 3, "question": ["q"] * 3, "gold": ["(B)", "False", GOLD],
        "aliases": [[], [], ALIASES], "answer_format": ["option_letter", "tfu", "short_text"],
        "metadata": ["{}", "{}", json.dumps({})],
    })
    texts = [complete(TEMPORAL_THINK, TEMPORAL_SUMMARY + "**Answer:** (B)"), cut(FOLIO_THINK, 0.5),
             MUSIQUE_THINK + "\n\n" + LONG_LINE]
    gens = pl.DataFrame({"id": ["t1", "f1", "m1"], "sample_idx": pl.Series([0, 0, 0], dtype=pl.Int32),
                         "text": texts, "finish_reason": ["stop", "length", None]})
    strict = score_table(items, gens)
    lenient = score_table(items, gens, policy="lenient")
    assert strict.columns[-3:] == ["truncated", "think_closed", "extraction_rule"]
    assert strict.get_column("truncated").to_list() == [False, True, None]
    assert strict.get_column("think_closed").to_list() == [True, False, False]
    assert strict.get_column("extraction_rule").to_list() == ["anchor", "truncated", "anchor"]
    assert lenient.get_column("extraction_rule").to_list() == ["anchor", "last_mention", "anchor"]
    assert strict.get_column("correct").to_list() == [True, False, False]
    stats = scoring_stats(strict, "strict")
    assert stats["scoring_policy"] == "strict" and set(stats["extraction_rules"]) == set(EXTRACTION_RULES)
    assert stats["extraction_rules"]["truncated"] == 1 and stats["extraction_rules"]["anchor"] == 2
    assert stats["truncation_rate"] == pytest.approx(1 / 3) and stats["unanswered_rate"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="strict, lenient"):
        score_table(items, gens, policy="generous")


@pytest.mark.parametrize("loop", [r"\boxed{", r"\boxed{\frac{1}{2", " **x", " __x", "*"])
def test_degenerate_loops_are_scored_in_linear_time(loop):
    """An output that loops on an unclosed box or emphasis marker until the limit (200k characters) used to take
    minutes (quadratic rescans); every format now scores it in well under a second."""
    import time

    text = reasoning("the sum", [], chars=2000) + loop * (200_000 // len(loop))
    t0 = time.perf_counter()
    for fmt, gold in (("boxed_int", "1"), ("boxed_math", "1"), ("option_letter", "(A)"), ("tfu", "True"),
                      ("short_text", "x")):
        score_text(fmt, text, gold, truncated=True, policy="lenient")
    assert time.perf_counter() - t0 < 5.0


# ------------------------------------------------------------------------------------------------ every format, every variant
CASES = {  # format: (reasoning with a wrong tentative answer, final part, gold, wrong tentative as extracted)
    "boxed_int": (AIME_THINK, AIME_FINAL, "204", "210"),
    # (a box beats an anchor within a segment: untagged, the reasoning's tentative box would win over an unboxed
    # final answer, docs/tasks.md)
    "boxed_math": (MATH_THINK, "**Final Answer:** $\\boxed{\\textbf{0.75}}$", r"\frac{3}{4}", r"\frac{2}{3}"),
    "option_letter": (TEMPORAL_THINK, TEMPORAL_SUMMARY + "Answer: **B**", "(B)", "(A)"),
    "tfu": (FOLIO_THINK, "**Final Answer**: False", "False", "True"),
    "short_text": (MUSIQUE_THINK, "**Answer:** University of California, Los Angeles", GOLD,
                   "Stanford University? No, that was the producer"),
}


@pytest.mark.parametrize("fmt", list(CASES))
def test_every_format_complete_truncated_and_untagged(fmt):
    think, final_part, gold, tentative = CASES[fmt]
    aliases = ALIASES if fmt == "short_text" else ()
    finished = complete(think, final_part)
    assert len(finished) > 5000
    for policy in ("strict", "lenient"):                                   # finished: the policies agree
        s = score_text(fmt, finished, gold, aliases, truncated=False, policy=policy)
        assert s.correct and s.rule in ("boxed", "anchor"), (policy, s)
    untagged = think.replace("</think>", "") + "\n\n" + final_part         # no think tags at all
    assert score_text(fmt, untagged, gold, aliases, truncated=False).correct
    inside = cut(think, 0.5)                                               # cut inside the reasoning
    s = score_text(fmt, inside, gold, aliases, truncated=True)
    assert (s.extracted, s.correct, s.rule) == (None, False, "truncated")
    assert score_text(fmt, inside, gold, aliases, truncated=True, policy="lenient").extracted == tentative
    # the same text with an unknown finish reason is not treated as truncated
    assert score_text(fmt, inside, gold, aliases, truncated=None).extracted == tentative
    after = complete(think, "Let me summarise the reasoning once more. " * 20)[:-7]   # cut after </think>
    s = score_text(fmt, after, gold, aliases, truncated=True)
    assert s.extracted is None and s.rule == "none" and not s.correct     # the reasoning is not searched
