"""The task records (lrmrepro.tasks.registry) and the answer-format registry (lrmrepro.scoring.formats.FORMATS) are
the one home of their facts: the schema's enums, the docs' tables and the configuration's defaults say the same,
and a bad gold answer fails task preparation (docs/architecture.md, "Where each fact lives")."""

import copy
import dataclasses
import json
import re
from pathlib import Path

import pytest
import yaml

from lrmrepro.config import ConfigError, load_schema, validate_config
from lrmrepro.prompts import PROMPT_STYLES
from lrmrepro.scoring import ANSWER_FORMATS, score_text
from lrmrepro.scoring.formats import FORMATS, AnswerFormat, Item
from lrmrepro.tasks import loaders, registry, synthetic
from lrmrepro.tasks.gold import GOLD_RULES, GoldAnswerError, check_gold
from lrmrepro.tasks.prepare import prepare_items_with_source

ROOT = Path(__file__).resolve().parents[1]
FX = ROOT / "tests" / "fixtures" / "benchmarks"


# ------------------------------------------------------------------------------------------------ schema and docs
def test_the_schema_names_registries_and_copies_none():
    """The schema's enums of registered names are filled from the registries (lrmrepro.registries): every registry is
    used, every field gets the registry's names in order, and no literal enum of the schema file repeats one."""
    from lrmrepro.paths import SCHEMA
    from lrmrepro.registries import REGISTRIES, names, registry_fields

    raw = yaml.safe_load(SCHEMA.read_text())
    fields = registry_fields(raw)
    assert set(fields.values()) == set(REGISTRIES)
    filled = load_schema()
    for path, name in fields.items():
        node = filled
        for part in path.strip("/").split("/"):
            node = node[int(part)] if isinstance(node, list) else node[part]
        assert node["enum"] == list(names(name)) and node["enum"], path

    def literal_enums(node):
        if isinstance(node, dict):
            if isinstance(node.get("enum"), list):
                yield node["enum"]
            for v in node.values():
                yield from literal_enums(v)
        elif isinstance(node, list):
            for v in node:
                yield from literal_enums(v)

    registered = {frozenset(names(r)) for r in REGISTRIES}
    assert not [e for e in literal_enums(raw) if frozenset(map(str, e)) in registered]
    tasks = filled["properties"]["tasks"]["additionalProperties"]["properties"]
    assert tasks["generator"]["enum"] == list(registry.generator_names()) == list(synthetic.TASKS)
    assert tasks["benchmark"]["enum"] == list(registry.benchmark_names())
    assert tasks["prompt_style"]["enum"] == list(PROMPT_STYLES)
    # the defaults are the records', not the schema's
    assert "default" not in tasks["prompt_style"] and "default" not in tasks["max_new_tokens"]


def _table(text: str, header_start: str) -> list[list[str]]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def test_docs_task_tables_are_the_records():
    text = (ROOT / "docs" / "tasks.md").read_text()
    rows = _table(text, "| task | default hub id")
    assert [r[0] for r in rows] == list(registry.benchmark_names())
    for name, where, _, fmt, style, tokens in rows:
        rec = registry.BENCHMARKS[name]
        inside = f"{rec.split}, {rec.config}" if rec.config else rec.split
        assert where.startswith(f"{rec.hub} ({inside}"), (name, where)
        assert (fmt, style, int(tokens)) == (f"`{rec.answer_format}`", rec.prompt_style, rec.max_new_tokens), name
    rows = _table(text, "| generator | like")
    assert [r[0] for r in rows] == list(registry.generator_names())
    for name, like, fmt, style, tokens in rows:
        rec = registry.GENERATORS[name]
        assert (like, fmt, style, int(tokens)) == (rec.like, f"`{rec.answer_format}`", rec.prompt_style,
                                                   rec.max_new_tokens), name


def test_docs_answer_format_lists_are_the_registry():
    rules = _table((ROOT / "docs" / "tasks.md").read_text(), "| format | extraction")
    assert [r[0] for r in rules] == [f"`{f}`" for f in FORMATS]
    items = _table((ROOT / "docs" / "architecture.md").read_text(), "| column | type | meaning |")
    listed = next(r[2] for r in items if r[0] == "`answer_format`")
    assert re.findall(r"`(\w+)`", listed) == list(FORMATS)


# ------------------------------------------------------------------------------------------------ the registries
def test_every_record_names_a_format_and_a_prompt_style_that_exist():
    assert ANSWER_FORMATS == tuple(FORMATS) and list(GOLD_RULES) == list(FORMATS)
    assert all(isinstance(f, AnswerFormat) and f.name == n for n, f in FORMATS.items())
    for rec in [*registry.GENERATORS.values(), *registry.BENCHMARKS.values()]:
        assert rec.answer_format in FORMATS, rec.name
        assert rec.prompt_style in PROMPT_STYLES, rec.name
        assert rec.max_new_tokens >= 1 and callable(rec.build)
    assert not set(registry.GENERATORS) & set(registry.BENCHMARKS)
    assert synthetic.TASKS == ("arith", "timeline", "logic", "multihop")  # the embedded model's training order


@pytest.mark.parametrize("fmt, good, bad", [
    ("boxed_int", ["204", "-3", "+7", "007"], ["one", "1/2", "2.5", "$5", ""]),
    ("boxed_math", [r"\frac{1}{2}", "x+1"], ["", "  "]),
    ("option_letter", ["(A)", "B", "( D )", "(c)"], ["(E)", "AB", "", "2pm"]),
    ("tfu", ["True", "False", "Uncertain", "Unknown", "true"], ["Maybe", "", "True or False"]),
    ("short_text", ["Paris"], ["", " "]),
])
def test_gold_rules_and_that_scoring_accepts_every_gold_they_accept(fmt, good, bad):
    for g in good:
        check_gold(fmt, g)
        FORMATS[fmt].check_gold(g, Item())
        score_text(fmt, rf"\boxed{{{g}}}", g)  # the scorer normalises it (no raise)
    for g in bad:
        with pytest.raises(GoldAnswerError, match=fmt):
            check_gold(fmt, g)
        with pytest.raises(ValueError):
            score_text(fmt, "x", g)


def test_option_letters_come_from_the_item():
    check_gold("option_letter", "(E)", {"letters": "ABCDE"})
    with pytest.raises(GoldAnswerError, match=r"one of \(A\), \(B\), \(C\), \(D\)"):
        check_gold("option_letter", "(E)")


# ------------------------------------------------------------------------------------------------ prepare_task
def test_a_wrong_gold_answer_fails_prepare_task_naming_task_item_and_format(tmp_path):
    rows = [{"question": "Two eggs?", "answer": "so #### 2"}, {"question": "How many?", "answer": "#### eighteen"}]
    path = tmp_path / "gsm8k.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(GoldAnswerError) as err:
        prepare_items_with_source("my_gsm8k", {"source": "benchmark", "benchmark": "gsm8k", "path": str(path)})
    msg = str(err.value)
    assert "task 'my_gsm8k'" in msg and "item 'gsm8k-00001' (index 1)" in msg and "'boxed_int'" in msg
    assert "'eighteen' is not an integer" in msg


def test_a_wrong_gold_answer_of_a_synthetic_task_fails_prepare_task(monkeypatch):
    rec = synthetic.GENERATORS["arith"]
    monkeypatch.setitem(synthetic.GENERATORS, "arith", dataclasses.replace(rec, answer_format="tfu"))
    with pytest.raises(GoldAnswerError, match=r"task 'arith', item 'arith-00000' \(index 0\), answer format 'tfu'"):
        prepare_items_with_source("arith", {"source": "synthetic", "n": 2}, {})


def test_scorer_options_reach_the_items_and_their_gold_check(monkeypatch, tmp_path):
    data = json.loads((FX / "temporal_sequences.json").read_text())
    data["examples"][0]["target"] = "(E)"
    path = tmp_path / "temporal.json"
    path.write_text(json.dumps(data))
    spec = {"source": "benchmark", "benchmark": "temporal", "path": str(path)}
    with pytest.raises(GoldAnswerError, match="index 0"):
        prepare_items_with_source("temporal", spec)
    rec = loaders.BENCHMARKS["temporal"]
    monkeypatch.setitem(loaders.BENCHMARKS, "temporal", dataclasses.replace(rec, scorer_options={"letters": "ABCDE"}))
    items, _ = prepare_items_with_source("temporal", spec)
    meta = json.loads(items.row(0, named=True)["metadata"])
    assert meta["letters"] == "ABCDE"
    assert score_text("option_letter", r"\boxed{(E)}", "(E)", metadata=meta).correct


def test_shipped_items_keep_their_metadata_without_scorer_options():
    items, _ = prepare_items_with_source("temporal", {"source": "benchmark", "path": str(FX / "temporal_sequences.json")})
    assert json.loads(items.row(0, named=True)["metadata"]) == {}


# ------------------------------------------------------------------------------------------------ configuration
@pytest.fixture
def cfg():
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def test_a_tasks_defaults_are_its_records(cfg):
    cfg["tasks"]["folio"] = {"source": "benchmark", "path": "x.jsonl"}
    cfg["tasks"]["folio_chat"] = {"source": "benchmark", "benchmark": "folio", "prompt_style": "chat_boxed",
                                  "max_new_tokens": 7}
    cfg["tasks"]["g"] = {"source": "benchmark", "benchmark": "gsm8k"}
    out = validate_config(cfg)["tasks"]
    assert (out["folio"]["prompt_style"], out["folio"]["max_new_tokens"]) == ("raw_think", 128)
    assert (out["folio_chat"]["prompt_style"], out["folio_chat"]["max_new_tokens"]) == ("chat_boxed", 7)
    assert out["g"]["prompt_style"] == "chat_boxed" and out["arith"]["prompt_style"] == "chat_boxed"


@pytest.mark.parametrize("task, key, allowed", [
    ({"source": "synthetic", "generator": "algebra"}, "tasks.t.generator", "arith, timeline, logic, multihop"),
    ({"source": "benchmark"}, "tasks.t.benchmark", "aime24, math500, gsm8k, folio, temporal, musique, livecodebench"),
])
def test_unknown_generator_or_benchmark_names_the_key_and_the_records(cfg, task, key, allowed):
    bad = copy.deepcopy(cfg)
    bad["tasks"]["t"] = task
    with pytest.raises(ConfigError) as err:
        validate_config(bad)
    assert key in str(err.value) and f"allowed values: {allowed}" in str(err.value)


# ------------------------------------------------------------------------------------------------ one place each
def test_adding_a_task_an_engine_or_a_compression_backend_is_one_entry(monkeypatch, tmp_path, cfg):
    """docs/architecture.md, "Adding a task, an engine, a compression backend, a metric": each is one entry of its
    own table, and the schema, the configuration check and the recipe loader know it from there."""
    from lrmrepro.compress import backends, recipes
    from lrmrepro.generate import engines

    # a task: a generator record
    monkeypatch.setitem(synthetic.GENERATORS, "algebra",
                        dataclasses.replace(synthetic.GENERATORS["arith"], name="algebra", like="an algebra task"))
    cfg["tasks"]["algebra"] = {"source": "synthetic", "generator": "algebra"}
    assert validate_config(cfg)["tasks"]["algebra"]["prompt_style"] == "chat_boxed"
    # an engine: an entry of the engines' table (its module implements open_engine)
    monkeypatch.setitem(engines.ENGINES, "llamacpp", engines.EngineKind(
        "llamacpp", "lrmrepro.generate.llamacpp_backend", {"llamacpp": {}}, environment="llamacpp",
        cli="lrmrepro.generate.llamacpp_cli"))
    experiment = load_schema()["properties"]["experiments"]["additionalProperties"]["properties"]
    assert "llamacpp" in experiment["backend"]["enum"] and engines.engine_of("llamacpp").environment == "llamacpp"
    # a compression backend: an entry of the backends' table; a recipe naming it loads
    monkeypatch.setitem(backends.BACKENDS, "hqq", backends.CompressionBackend("hqq", None, "HQQ", lambda job, out: None))
    (tmp_path / "hqq_w4.yaml").write_text("backend: hqq\nhqq: {bits: 4}\n")
    assert recipes.recipe_backend(recipes.load_recipe("hqq_w4", tmp_path)) == "hqq"
    with pytest.raises(ValueError, match="allowed values: anyq, gptqmodel, hqq"):
        (tmp_path / "bad.yaml").write_text("backend: nope\nnope: {}\n")
        recipes.load_recipe("bad", tmp_path)
