"""Benchmark loaders on small fixtures copied from the real files (tests/fixtures/benchmarks/README.md)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from lrmrepro.scoring import score_text
from lrmrepro.tasks.items import ITEM_SCHEMA
from lrmrepro.tasks.loaders import BENCHMARKS, decode_lcb_tests, load_benchmark

FX = Path(__file__).parent / "fixtures" / "benchmarks"


def load(name, file, **kw):
    df = load_benchmark(name, {"path": str(FX / file)}, **kw)
    assert df.schema == pl.Schema(ITEM_SCHEMA)
    assert df.get_column("id").n_unique() == df.height
    assert set(df.get_column("answer_format")) == {BENCHMARKS[name].answer_format}
    return df


def test_gsm8k_gold_from_hash_line():
    df = load("gsm8k", "gsm8k_test.jsonl")
    assert df.get_column("gold").to_list() == ["18", "3", "70000"]
    assert df.row(0, named=True)["question"].startswith("Janet")


def test_aime24_and_limit():
    df = load("aime24", "aime24_test.jsonl", limit=1)
    assert df.height == 1 and df.row(0, named=True)["gold"] == "204" and df.row(0, named=True)["id"] == "aime24-60"


def test_math500_keeps_latex_gold_and_metadata():
    r = load("math500", "math500_test.jsonl").row(0, named=True)
    assert r["gold"] == r"\left( 3, \frac{\pi}{2} \right)" and r["id"] == "test/precalculus/807.json"
    assert json.loads(r["metadata"]) == {"level": 2, "subject": "Precalculus"}
    assert score_text("boxed_math", r"\boxed{(3, \frac{\pi}{2})}", r["gold"]).correct


def test_folio_question_layout():
    r = load("folio", "folio_validation.jsonl").row(0, named=True)
    assert r["gold"] == "Uncertain"
    q = r["question"]
    assert q.startswith("Premises:\nIf people perform") and "\nConclusion: Bonnie performs in school talent shows often.\n" in q
    assert q.endswith("True, False, or Uncertain?")


def test_temporal_options_in_question():
    df = load("temporal", "temporal_sequences.json")
    r = df.row(0, named=True)
    assert r["gold"] == "(A)" and "Options:\n(A) 6pm to 9pm" in r["question"]


def test_musique_seeded_sample_and_aliases():
    a = load("musique", "musique_dev_questions.json", seed=1, limit=5)
    b = load("musique", "musique_dev_questions.json", seed=1, limit=5)
    c = load("musique", "musique_dev_questions.json", seed=2, limit=5)
    assert a.equals(b) and a.height == 5 and not a.get_column("id").equals(c.get_column("id"))
    full = load("musique", "musique_dev_questions.json")  # default sample size 100 > 8 rows: all
    assert full.height == 8 and sum(len(x) > 0 for x in full.get_column("aliases").to_list()) >= 2


def test_musique_open_book_option():
    closed = load("musique", "musique_with_paragraphs.json").row(0, named=True)
    opened = load("musique", "musique_with_paragraphs.json", options={"open_book": True}).row(0, named=True)
    assert "Paragraphs:" not in closed["question"]
    assert opened["question"].startswith("Paragraphs:\nJournal of Mathematical Physics: ")
    assert opened["question"].endswith("Question: " + closed["question"])


def test_livecodebench_tests_release_and_difficulty(tmp_path):
    df = load("livecodebench", "livecodebench_handmade.jsonl")
    assert df.get_column("id").to_list() == ["lcb-fx001", "lcb-fx002", "lcb-fx003"]
    m0 = json.loads(df.row(0, named=True)["metadata"])
    assert [t["input"] for t in m0["tests"]] == ["1 2\n", "100 200\n"]  # public + decoded private
    assert "```python" in df.row(0, named=True)["question"] and "class Solution" in df.row(1, named=True)["question"]
    assert json.loads(df.row(1, named=True)["metadata"])["fn_name"] == "twoSum"
    assert load("livecodebench", "livecodebench_handmade.jsonl", options={"release": "release_v1"}).height == 1
    assert load("livecodebench", "livecodebench_handmade.jsonl", options={"difficulty": ["medium", "hard"]}).height == 2
    with pytest.raises(ValueError, match="easy, medium, hard"):
        load("livecodebench", "livecodebench_handmade.jsonl", options={"difficulty": ["trivial"]})
    # the scorer runs the decoded tests
    good = "```python\na, b = map(int, input().split())\nprint(a + b)\n```"
    r = df.row(0, named=True)
    assert score_text("program", good, r["gold"], metadata=json.loads(r["metadata"])).correct


def test_lcb_private_tests_refuse_objects():
    import base64, pickle, zlib
    evil = base64.b64encode(zlib.compress(pickle.dumps(Path("/")))).decode()
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        decode_lcb_tests(evil)


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="aime24"):
        load_benchmark("aime25", {"path": "x.jsonl"})
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_benchmark("gsm8k", {"path": str(tmp_path / "nope.jsonl")})
    (tmp_path / "g.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match=".parquet"):
        load_benchmark("gsm8k", {"path": str(tmp_path / "g.csv")})
    (tmp_path / "g.jsonl").write_text(json.dumps({"question": "q", "answer": "no final line"}) + "\n")
    with pytest.raises(ValueError, match="####"):
        load_benchmark("gsm8k", {"path": str(tmp_path / "g.jsonl")})


def test_parquet_source(tmp_path):
    rows = [json.loads(l) for l in (FX / "gsm8k_test.jsonl").read_text().splitlines()]
    pl.DataFrame(rows).write_parquet(tmp_path / "g.parquet")
    assert load_benchmark("gsm8k", {"path": str(tmp_path / "g.parquet")}).get_column("gold").to_list() == ["18", "3", "70000"]


def test_offline_hub_without_cache_names_dataset_and_config_key(tmp_path):
    code = ("from lrmrepro.tasks.loaders import load_benchmark, BenchmarkUnavailable\n"
            "try:\n    load_benchmark('folio', {})\nexcept BenchmarkUnavailable as e:\n    print('ERR', e)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120).stdout
    assert out.startswith("ERR") and "yale-nlp/FOLIO" in out and "tasks.folio.path" in out


# --- dataset versions: where the items came from (the task's meta.json records it)
from lrmrepro.tasks.loaders import FOLIO_RELEASES, load_benchmark_with_source  # noqa: E402


def _folio_rows(n):
    base = [json.loads(line) for line in (FX / "folio_validation.jsonl").read_text().splitlines()]
    return [base[i % len(base)] for i in range(n)]


def test_file_source_is_recorded_with_its_hash():
    import hashlib

    df, info = load_benchmark_with_source("gsm8k", {"path": str(FX / "gsm8k_test.jsonl")}, limit=2)
    assert df.height == 2
    assert info == {"source": "file", "path": str(FX / "gsm8k_test.jsonl"),
                    "sha256": hashlib.sha256((FX / "gsm8k_test.jsonl").read_bytes()).hexdigest(),
                    "source_rows": 3, "items": 2}


@pytest.mark.parametrize("n,warned", [(204, True), (203, False), (3, False)])
def test_folio_release_recognised_by_validation_rows(tmp_path, caplog, n, warned):
    path = tmp_path / "folio.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in _folio_rows(n)))
    with caplog.at_level("WARNING", logger="lrmrepro.tasks.loaders"):
        df, info = load_benchmark_with_source("folio", {"path": str(path)})
    assert df.height == n and info["source_rows"] == n and info["release"] == FOLIO_RELEASES.get(n)
    assert ("204 rows" in caplog.text and "yale-nlp/FOLIO (203 validation rows" in caplog.text) == warned


def test_folio_hub_default_records_id_split_and_commit(monkeypatch):
    """The documented default: hub yale-nlp/FOLIO, validation split, 203 rows (the compression paper's release)."""
    import datasets

    sha = "0123456789abcdef0123456789abcdef01234567"
    rows = [{"story_id": i // 3, "premises": "All wugs are blue.\nRimo is a wug.", "premises-FOL": "",
             "conclusion": "Rimo is blue.", "conclusion-FOL": "", "label": "True", "example_id": i} for i in range(203)]
    calls = []

    def fake_load_dataset(hub, config, split, **kw):
        calls.append((hub, config, split, kw))
        ds = datasets.Dataset.from_list(rows)
        ds.info.download_checksums = {f"hf://datasets/{hub}@{sha}/validation.jsonl": {"num_bytes": 1}}
        return ds

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    df, info = load_benchmark_with_source("folio", {})
    assert calls == [("yale-nlp/FOLIO", None, "validation", {})]
    assert info == {"source": "hub", "id": "yale-nlp/FOLIO", "split": "validation", "config": None, "revision": None,
                    "resolved_revision": sha, "source_rows": 203, "release": FOLIO_RELEASES[203], "items": 203}
    assert df.row(0, named=True)["id"] == "folio-0" and df.row(0, named=True)["question"].startswith("Premises:\nAll")
