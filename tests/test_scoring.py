"""Scorer behaviour on tricky outputs, per answer format."""

import json

import polars as pl
import pytest

from lrmrepro.scoring import ANSWER_FORMATS, Score, score_table, score_text
from lrmrepro.scoring.extract import EXTRACTION_RULES, boxed_contents
from lrmrepro.scoring.formats import math_equal
from lrmrepro.scoring.squad import normalize_answer, token_f1


def test_boxed_brace_matching_nested_and_truncated():
    assert boxed_contents(r"a \boxed{\frac{1}{2}} b \boxed{x^{2}+1}") == [r"\frac{1}{2}", "x^{2}+1"]
    assert boxed_contents(r"\boxed{\frac{1}{2") == []  # unclosed: dropped


@pytest.mark.parametrize("text,gold,extracted,correct", [
    (r"so \boxed{18}.", "18", "18", True),
    (r"first \boxed{17} then corrected: \boxed{18}", "18", "18", True),          # last box wins
    (r"\boxed{1,000}", "1000", "1,000", True),                                    # commas
    (r"\boxed{\$18.00}", "18", r"\$18.00", True),                                 # $ and .00
    (r"\boxed{033}", "33", "033", True),                                          # leading zeros (AIME)
    (r"\boxed{18 \text{ dollars}}", "18", r"18 \text{ dollars}", True),           # unit
    (r"\boxed{2.5}", "2", "2.5", False),                                          # not an integer
    (r"\boxed{-4}", "4", "-4", False),
    ("The answer is 1,234.", "1234", "1,234", True),                              # anchored fallback
    ("Answer: $42$", "42", "42", True),
    ("blah\n#### 72", "72", "72", True),                                          # GSM8K style
    ("I computed 18 eggs but", "18", None, False),                               # unanchored number: no answer
    (r"... so the total is \boxed{1", "1", None, False),                          # truncated box
    ("", "5", None, False),
    (r"<think>maybe \boxed{3}</think> The answer is \boxed{4}", "4", "4", True),  # final answer overrides think
    (r"<think>it is \boxed{3}</think>", "3", "3", True),                          # nothing after think: use think
])
def test_boxed_int(text, gold, extracted, correct):
    s = score_text("boxed_int", text, gold)
    assert (s.extracted, s.correct) == (extracted, correct)
    assert s.em is None and s.f1 is None


@pytest.mark.parametrize("text,gold,extracted,correct", [
    (r"\boxed{\frac{1}{2}}", "0.5", r"\frac{1}{2}", True),
    (r"\boxed{0.5}", r"\frac{1}{2}", "0.5", True),
    (r"\boxed{\dfrac{1}{3}}", r"\frac{1}{2}", r"\dfrac{1}{3}", False),
    (r"\boxed{(3,\pi/2)}", r"\left( 3, \frac{\pi}{2} \right)", r"(3,\pi/2)", True),
    (r"a \boxed{2} b \boxed{\sqrt{2}}", r"\sqrt{2}", r"\sqrt{2}", True),
    (r"\boxed{\text{Evelyn}}", r"\text{Evelyn}", r"\text{Evelyn}", True),
    (r"\boxed{x^{2}+2x+1}", "(x+1)^2", "x^{2}+2x+1", True),
    ("The final answer is $\\frac{3}{4}$.", "0.75", "\\frac{3}{4}", True),
    (r"\boxed{\frac{3}{", "0.75", None, False),
    ("no answer at all", "1", None, False),
    ("", "1", None, False),
])
def test_boxed_math(text, gold, extracted, correct):
    s = score_text("boxed_math", text, gold)
    assert (s.extracted, s.correct) == (extracted, correct)


@pytest.mark.parametrize("text,gold,extracted,correct", [
    ("Premise 2 is True... so the conclusion is False.", "False", "False", True),
    ("<think>It seems True. Maybe True.</think>\nThe answer is Uncertain.", "Uncertain", "Uncertain", True),
    ("<think>answer: False</think> \\boxed{True}", "True", "True", True),
    (r"\boxed{\text{Uncertain}}", "Uncertain", "Uncertain", True),
    ("the answer is unknown", "Uncertain", "Uncertain", True),                    # Unknown == Uncertain
    ("Answer: true", "True", "True", True),
    ("<think>so it is False", "True", "False", False),                          # truncated think: last word
    ("I cannot decide", "True", None, False),
    ("", "False", None, False),
])
def test_tfu(text, gold, extracted, correct):
    s = score_text("tfu", text, gold)
    assert (s.extracted, s.correct) == (extracted, correct)


@pytest.mark.parametrize("text,gold,extracted,correct", [
    (r"\boxed{(B)}", "(B)", "(B)", True),
    (r"\boxed{B}", "B", "(B)", True),
    ("So the answer is C.", "(C)", "(C)", True),
    ("Options (A) and (D) fail; the answer is (B) 2pm to 6pm", "(B)", "(B)", True),
    ("(A) is wrong, (C) is wrong, so (D)", "(D)", "(D)", True),
    ("<think>(A)? </think>The answer is (C)", "(A)", "(C)", False),
    ("The answer is E", "(A)", None, False),
    ("", "(A)", None, False),
])
def test_option_letter(text, gold, extracted, correct):
    s = score_text("option_letter", text, gold)
    assert (s.extracted, s.correct) == (extracted, correct)


def test_short_text_normalisation():
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert normalize_answer("An apple, a day") == "apple day"
    assert token_f1("Barack Obama", "Obama") == pytest.approx(2 / 3)


@pytest.mark.parametrize("text,gold,aliases,extracted,em,f1", [
    ("<think>hmm</think>\nAnswer: The Beatles.", "Beatles", (), "The Beatles", 1.0, 1.0),
    (r"so \boxed{Miquette Giraudy}", "Miquette Giraudy", (), "Miquette Giraudy", 1.0, 1.0),
    ("Answer: Steve", "Miquette Giraudy", ("Steve Hillage",), "Steve", 0.0, pytest.approx(2 / 3)),
    ("Answer: USA", "United States", ("USA", "U.S."), "USA", 1.0, 1.0),             # alias
    ("<think>x</think>Paris\n\nParis is the capital of France.", "paris", (), "Paris", 1.0, 1.0),  # concise line
    ("<think>x</think>\nSome notes first.\nParis", "paris", (), "Paris", 1.0, 1.0),  # last line after think
    ("\\boxed{Rome}. Wait. Answer: Paris", "Paris", (), "Paris", 1.0, 1.0),        # later anchor wins
    ("I think it is Paris", "Paris", (), "Paris", 1.0, 1.0),                        # untagged: fallback line
    ("", "Paris", (), None, 0.0, 0.0),
])
def test_short_text(text, gold, aliases, extracted, em, f1):
    s = score_text("short_text", text, gold, aliases)
    assert s.extracted == extracted and s.em == em and s.f1 == f1 and s.correct == (em == 1.0)


def test_unknown_format_and_bad_gold_raise():
    with pytest.raises(ValueError, match="boxed_int"):
        score_text("multiple_choice", "x", "1")
    with pytest.raises(ValueError, match="not an integer"):
        score_text("boxed_int", r"\boxed{1}", "one")


def test_none_text_is_wrong_not_an_error():
    for fmt, gold in [("boxed_int", "1"), ("boxed_math", "1"), ("tfu", "True"), ("option_letter", "(A)"),
                      ("short_text", "x"), ("program", "")]:
        s = score_text(fmt, None, gold, metadata={"tests": [{"input": "", "output": "1"}]})
        assert s == Score(None, False, *((0.0, 0.0) if fmt == "short_text" else (None, None)))
    assert set(ANSWER_FORMATS) == {"boxed_int", "boxed_math", "option_letter", "tfu", "short_text", "program"}


_PROG_META = {"tests": [{"input": "2 3\n", "output": "5\n"}, {"input": "10 -4\n", "output": "6"}]}


def test_program_correct_wrong_and_truncated():
    good = "Plan.\n```python\na, b = map(int, input().split())\nprint(a + b)\n```"
    wrong = "```python\na, b = map(int, input().split())\nprint(a * b)\n```"
    assert score_text("program", good, "", metadata=_PROG_META).correct
    s = score_text("program", "```python\nprint('draft')\n```\nfinal:\n" + wrong, "", metadata=_PROG_META)
    assert not s.correct and "a * b" in s.extracted                     # last block is the one run
    assert score_text("program", "```python\nprint(5", "", metadata=_PROG_META) == Score(None, False)
    crash = "```python\nraise SystemExit(3)\n```"
    assert not score_text("program", crash, "", metadata=_PROG_META).correct


def test_program_functional():
    meta = {"fn_name": "twoSum", "tests": [{"input": "[2,7,11,15]\n9", "output": "[0, 1]", "testtype": "functional"}]}
    code = ("```python\nclass Solution:\n    def twoSum(self, nums: List[int], target: int) -> List[int]:\n"
            "        seen = {}\n        for i, x in enumerate(nums):\n            if target - x in seen:\n"
            "                return [seen[target - x], i]\n            seen[x] = i\n```")
    assert score_text("program", code, "", metadata=meta).correct
    assert not score_text("program", code.replace("[seen[target - x], i]", "[i]"), "", metadata=meta).correct


def test_score_table_schema_and_join():
    items = pl.DataFrame({
        "id": ["a", "b"], "task": ["t", "t"], "question": ["q", "q"], "gold": ["4", "Paris"],
        "aliases": [[], ["City of Paris"]], "answer_format": ["boxed_int", "short_text"], "metadata": ["{}", json.dumps({})],
    })
    gens = pl.DataFrame({"id": ["b", "a", "a"], "sample_idx": pl.Series([0, 0, 1], dtype=pl.Int32),
                         "text": ["Answer: the city of Paris", r"\boxed{4}", "truncated \\boxed{"]})
    out = score_table(items, gens)
    assert out.columns == ["id", "sample_idx", "extracted", "correct", "em", "f1", "truncated", "think_closed",
                           "extraction_rule"]
    assert out.schema["sample_idx"] == pl.Int32 and out.schema["em"] == pl.Float64
    assert out.get_column("correct").to_list() == [True, True, False]
    assert out.get_column("extracted").to_list() == ["the city of Paris", "4", None]
    assert out.get_column("em").to_list() == [1.0, None, None]
    assert out.get_column("truncated").to_list() == [None, None, None]  # no finish_reason column: unknown
    assert out.get_column("extraction_rule").to_list() == ["anchor", "boxed", "none"]
    with pytest.raises(ValueError, match="'zz'"):
        score_table(items, gens.with_columns(pl.lit("zz").alias("id")))


def test_plain_number_shortcut_agrees_with_math_verify():
    """math_equal decides plain numbers (integers, decimals, a/b, \\frac{a}{b}) without math-verify when they are
    equal or clearly apart; on random pairs (equal, near, far) its verdict is math-verify's."""
    import random
    from fractions import Fraction

    from math_verify import parse, verify

    from lrmrepro.scoring.formats import _rational, _strip_spaces, math_equal

    def forms(fr):
        out = [f"\\frac{{{fr.numerator}}}{{{fr.denominator}}}", f"{fr.numerator}/{fr.denominator}",
               f"{float(fr):.6f}", f"{float(fr):.3f}"]
        return out + ([str(fr.numerator)] if fr.denominator == 1 else [])

    rng, plain = random.Random(3), 0
    for _ in range(150):
        a = Fraction(rng.randint(-50, 999), rng.choice([1, 2, 3, 7, 12, 1000, rng.randint(1, 999)]))
        r = rng.random()
        b = a if r < 0.3 else a + Fraction(1, rng.choice([1, 100, 10**4, 10**6])) if r < 0.6 else \
            Fraction(rng.randint(-50, 999), rng.randint(1, 50))
        g, p = rng.choice(forms(a)), rng.choice(forms(b))
        if _rational(_strip_spaces(g)) is not None and _rational(_strip_spaces(p)) is not None:
            plain += 1
        assert math_equal(p, g) == bool(verify(parse(f"${g}$"), parse(f"${p}$"))), (g, p)
    assert plain > 100


# ------------------------------------------------------------------------------------------------ hostile outputs
HOSTILE = {
    "5,000-digit integer": r"Thinking... \boxed{" + "7" * 5000 + "}",
    "50,000 unit words": r"\boxed{" + "a " * 50000 + "1}",
    "20,000 nested boxes": r"\boxed{" * 20000 + "1" + "}" * 20000,
}


@pytest.mark.parametrize("name", list(HOSTILE))
@pytest.mark.parametrize("fmt, gold", [("boxed_int", "1"), ("boxed_math", "1"), ("short_text", "Paris"),
                                       ("option_letter", "(A)"), ("tfu", "True")])
def test_what_a_model_writes_cannot_crash_or_stall_a_scorer(name, fmt, gold):
    """Each pathological output scores (wrong here) without raising; benchmarks/scoring.py --hostile times them
    against a goal (linear extraction, bounded nesting and digit counts, no math-verify on a loop's residue)."""
    s = score_text(fmt, HOSTILE[name], gold)
    assert isinstance(s, Score) and s.rule in EXTRACTION_RULES
    if fmt in ("boxed_int", "short_text"):
        assert not s.correct


def test_a_time_bound_holds_outside_the_main_thread():
    """math-verify's own timeout (signal.alarm) does nothing outside the main thread; there the work runs in a
    worker process that is killed at the bound."""
    import concurrent.futures as cf
    import time

    from lrmrepro.scoring import bounded

    with cf.ThreadPoolExecutor(1) as ex:
        t0 = time.monotonic()
        fut = ex.submit(bounded.call, time.sleep, 60, timeout=3)
        with pytest.raises(TimeoutError, match="over 3 s"):
            fut.result()
        assert time.monotonic() - t0 < 20
        # the next call gets a fresh worker; math-verify's verdicts are the same from a thread as from the main one
        pairs = [(r"\frac{1}{2}", "0.5"), (r"\sqrt{2}", r"2^{1/2}"), ("x+1", "1+x"), ("3", r"\pi")]
        in_thread = list(ex.map(lambda pg: math_equal(*pg), pairs))
    assert in_thread == [math_equal(p, g) for p, g in pairs] == [True, True, True, False]


def test_units_digits_and_nesting_keep_real_answers():
    from lrmrepro.scoring.formats import MAX_DIGITS, normalize_int

    assert normalize_int("18 eggs") == 18 and normalize_int("18\\text{ eggs}") == 18 and normalize_int("18 dollars.") == 18
    assert normalize_int("-3") == -3 and normalize_int("x+1") is None and normalize_int("2 apples and pears") == 2
    assert normalize_int("9" * MAX_DIGITS) == int("9" * MAX_DIGITS) and normalize_int("9" * (MAX_DIGITS + 1)) is None
    deep = r"\boxed{" * 60 + "42" + "}" * 60  # 60 levels are still read
    assert boxed_contents(deep)[-1] == "42"


def test_a_row_whose_scoring_fails_scores_wrong_names_its_item_and_the_run_goes_on(monkeypatch, caplog):
    import lrmrepro.scoring as scoring

    items = pl.DataFrame({"id": ["q0", "q1"], "gold": ["4", "5"], "aliases": [None, None],
                          "answer_format": ["boxed_int", "boxed_int"], "metadata": ["", ""]})
    gens = pl.DataFrame({"id": ["q0", "q1"], "sample_idx": [0, 0], "text": [r"\boxed{4}", r"\boxed{5}"]})
    real = scoring.score_text

    def flaky(fmt, text, gold, *a, **kw):
        if gold == "5":
            raise RecursionError("maximum recursion depth exceeded")
        return real(fmt, text, gold, *a, **kw)

    monkeypatch.setattr(scoring, "score_text", flaky)
    with caplog.at_level("WARNING"):
        out = score_table(items, gens)
    assert out["correct"].to_list() == [True, False] and out["extraction_rule"].to_list() == ["boxed", "error"]
    assert "scoring item 'q1' sample 0 failed (RecursionError" in caplog.text
