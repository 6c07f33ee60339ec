"""`make figures`: its rule list is every rule that draws a figure or writes a table of a study."""

from __future__ import annotations

import re

from conftest import ROOT


def figure_rules_in_makefile() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    m = re.search(r"^FIGURE_RULES := (.*?)\n(?=\S)", text, re.S | re.M)
    assert m, "FIGURE_RULES not found in the Makefile"
    return set(m.group(1).replace("\\", " ").split())


def rules_writing_figures_or_tables() -> set[str]:
    found = set()
    for path in sorted((ROOT / "rules").glob("*.smk")):
        for block in re.split(r"(?m)^(?=rule )", path.read_text()):
            m = re.match(r"rule (\w+):", block)
            out = re.search(r"(?ms)^    output:\n(.*?)(?=^    [a-z_]+:|\Z)", block)
            if m and out and re.search(r'S\(f?"(figures|tables)/', out.group(1)):
                found.add(m.group(1))
    return found


def test_make_figures_reruns_every_rule_that_draws_a_figure_or_writes_a_table():
    assert figure_rules_in_makefile() == rules_writing_figures_or_tables()
