"""Progress of long jobs (lrmrepro.progress): plain lines in a job's log, a bar on a terminal."""

from __future__ import annotations

import logging

import pytest

from lrmrepro import progress
from lrmrepro.progress import Progress, track


@pytest.fixture
def every_update(monkeypatch):
    monkeypatch.setattr(progress, "EVERY_SECONDS", 0.0)


def _lines(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "lrmrepro.progress"]


def test_plain_lines_say_unit_i_of_n_the_rate_and_the_eta(caplog, every_update):
    with caplog.at_level(logging.INFO, logger="lrmrepro.progress"):
        with Progress("distill -> results/models/m/d", 4, done=1, unit="step", bar=False) as p:
            for _ in range(3):
                p.update(note="loss 1.2345")
    lines = _lines(caplog)
    assert [line.split(": step ")[1].split(",")[0] for line in lines] == ["2 of 4", "3 of 4", "4 of 4"]
    assert all(line.startswith("distill -> results/models/m/d: ") and "steps/s" in line and ", loss 1.2345" in line
               for line in lines)
    assert lines[-1].endswith("ETA 00:00:00")


def test_lines_are_rate_limited_but_the_last_one_always_comes(caplog):
    with caplog.at_level(logging.INFO, logger="lrmrepro.progress"):
        list(track(range(50), "DoM", 50, unit="trace"))
    lines = _lines(caplog)
    assert lines == [lines[-1]] and lines[-1].startswith("DoM: trace 50 of 50, ")


def test_a_log_file_gets_lines_and_a_terminal_gets_a_bar(monkeypatch, caplog, every_update):
    monkeypatch.setattr(progress, "on_terminal", lambda: True)
    with caplog.at_level(logging.INFO, logger="lrmrepro.progress"):
        with Progress("generate", 3) as p:
            assert p.bar is not None
            p.update(tokens=10, model_seconds=1.0)
    assert _lines(caplog) == []
    monkeypatch.setattr(progress, "on_terminal", lambda: False)
    with caplog.at_level(logging.INFO, logger="lrmrepro.progress"):
        with Progress("generate", 3) as p:
            assert p.bar is None
            p.update(tokens=120, model_seconds=2.0)
    assert _lines(caplog) == ["generate: chunk 1 of 3, 60 tokens/s, ETA " + _lines(caplog)[0].rsplit("ETA ", 1)[1]]


def test_importance_passes_report_traces(caplog, every_update):
    """The importance passes iterate traces through iter_traces(progress=...): a line per trace here."""
    import polars as pl

    from lrmrepro.importance.traces import iter_traces

    from transformers import AutoTokenizer

    from lrmrepro.paths import EMBEDDED

    tok = AutoTokenizer.from_pretrained(EMBEDDED)
    gens = pl.DataFrame({"id": ["a", "b"], "sample_idx": [0, 0], "prompt": ["p", "p"], "text": ["x y", "z"]})
    spans = pl.DataFrame(schema={"id": pl.Utf8, "sample_idx": pl.Int64, "behaviour": pl.Utf8, "segment_idx": pl.Int64,
                                 "char_start": pl.Int64, "char_end": pl.Int64, "tok_start": pl.Int64,
                                 "tok_end": pl.Int64, "text": pl.Utf8})
    with caplog.at_level(logging.INFO, logger="lrmrepro.progress"):
        traces = list(iter_traces(gens, spans, tok, progress="difference of means"))
    assert len(traces) == 2
    assert [line.split(",")[0] for line in _lines(caplog)] == ["difference of means: trace 1 of 2",
                                                               "difference of means: trace 2 of 2"]
