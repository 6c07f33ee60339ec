"""Rescoring outputs made elsewhere (python -m lrmrepro.score): every input layout, both alignments, the refusals."""

import json

import polars as pl
import pytest

from helpers_outputs import complete, cut, reasoning
from lrmrepro.score import main
from lrmrepro.scoring import SCORES_SCHEMA
from lrmrepro.scoring.external import AlignmentError, read_outputs, rescore
from lrmrepro.tasks.items import items_frame

IDS = ["folio-story1/ex1", "folio-2", "folio-3"]
GOLDS = ["False", "True", "Uncertain"]
THINK = reasoning("whether the conclusion follows from the premises",
                  ["So the conclusion would be True? Hmm, only if the last premise applies."], chars=5000, seed=7)


def final(label):
    return complete(THINK, f"The premises settle the question.\n\n**Final Answer**: {label}")


@pytest.fixture
def items(tmp_path):
    path = tmp_path / "folio.parquet"
    items_frame([{"id": i, "task": "folio", "question": "q", "gold": g, "aliases": [], "answer_format": "tfu",
                  "metadata": "{}"} for i, g in zip(IDS, GOLDS)]).write_parquet(path)
    return path


def _scores(out):
    df = pl.read_parquet(out / "scores.parquet")
    assert df.columns == list(SCORES_SCHEMA)
    return df, json.loads((out / "scores.meta.json").read_text())


def test_txt_folder_by_id_with_subfolders_and_missing_items(items, tmp_path):
    folder = tmp_path / "outs"
    (folder / "folio-story1").mkdir(parents=True)
    (folder / "folio-story1" / "ex1.txt").write_text(final("False"))   # id with a "/"
    (folder / "folio-2.txt").write_text(final("False"))
    out = tmp_path / "scored"
    assert main(["--items", str(items), "--outputs", str(folder), "--align", "id", "--out", str(out)]) == 0
    df, meta = _scores(out)
    assert df.sort("id").get_column("id").to_list() == ["folio-2", "folio-story1/ex1"]
    assert df.sort("id").get_column("correct").to_list() == [False, True]
    assert meta["aligned_by"] == "id" and meta["layout"] == "txt_folder" and meta["n_items"] == 3
    assert meta["n_items_without_output"] == 1 and meta["items_without_output"] == ["folio-3"]
    assert meta["scoring_policy"] == "strict" and meta["extraction_rules"]["anchor"] == 2
    assert df.get_column("truncated").null_count() == 2                # a .txt file has no finish reason
    summary = pl.read_parquet(out / "summary.parquet")
    assert summary.row(0, named=True)["accuracy"] == 0.5 and summary.row(0, named=True)["task"] == "folio"
    assert "truncated_fraction" in (out / "summary.md").read_text()


def test_txt_folder_by_order_and_count_refusal(items, tmp_path, capsys):
    folder = tmp_path / "outs"
    folder.mkdir()
    for k, label in enumerate(["False", "True", "Uncertain"]):
        (folder / f"{k}.txt").write_text(final(label))
    meta = rescore(items, folder, tmp_path / "ok", align_by="order")
    assert meta["accuracy"] == 1.0 and meta["n"] == 3
    (folder / "2.txt").unlink()
    with pytest.raises(AlignmentError, match="2 outputs but 3 items"):
        rescore(items, folder, tmp_path / "bad", align_by="order")
    assert main(["--items", str(items), "--outputs", str(folder), "--align", "order", "--out", str(tmp_path / "x")]) == 2
    assert "2 outputs but 3 items" in capsys.readouterr().err
    (folder / "5.txt").write_text(final("True"))
    with pytest.raises(AlignmentError, match="missing 2, 3, 4"):                 # a gap is not an order
        rescore(items, folder, tmp_path / "bad", align_by="order")


def test_jsonl_auto_fields_finish_reason_and_policy(items, tmp_path):
    path = tmp_path / "gen.jsonl"
    rows = [{"question_id": "folio-2", "response": final("True"), "finish_reason": "stop"},
            {"question_id": "folio-3", "response": cut(THINK, 0.7), "finish_reason": "length"},   # loops, cut
            {"question_id": "folio-story1/ex1", "response": final("False")}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    rescore(items, path, tmp_path / "s", align_by="id")
    df, meta = _scores(tmp_path / "s")
    assert df.get_column("truncated").to_list() == [False, True, None]        # unknown finish reason: null
    assert df.get_column("extraction_rule").to_list() == ["anchor", "truncated", "anchor"]
    assert meta["truncation_rate"] == pytest.approx(1 / 3) and meta["layout"] == "jsonl"
    rescore(items, path, tmp_path / "l", align_by="id", policy="lenient")
    lenient, _ = _scores(tmp_path / "l")
    assert lenient.get_column("extracted").to_list()[1] == "True"             # the tentative mid-reasoning


def test_jsonl_named_fields_list_texts_and_order(items, tmp_path):
    path = tmp_path / "gen.jsonl"
    rows = [{"qid": i, "outputs": [final(g), final("True")]} for i, g in zip(IDS, GOLDS)]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(AlignmentError, match="no text field .*--text-field"):
        rescore(items, path, tmp_path / "x", align_by="id")
    rescore(items, path, tmp_path / "s", align_by="id", id_field="qid", text_field="outputs")
    df, meta = _scores(tmp_path / "s")
    assert df.height == 6 and df.get_column("sample_idx").to_list() == [0, 1] * 3
    with pytest.raises(AlignmentError, match="no id field"):
        rescore(items, path, tmp_path / "y", align_by="id", text_field="outputs")
    rescore(items, path, tmp_path / "o", align_by="order", text_field="outputs")  # rows in item order
    assert _scores(tmp_path / "o")[0].get_column("id").to_list() == [i for i in IDS for _ in (0, 1)]


def test_unknown_ids_are_refused_naming_five(items, tmp_path):
    path = tmp_path / "gen.jsonl"
    path.write_text("\n".join(json.dumps({"id": f"other-{k}", "text": "x"}) for k in range(7)))
    with pytest.raises(AlignmentError, match=r"7 output ids are not item ids .*'other-0', 'other-1', 'other-2', "
                                             r"'other-3', 'other-4', \.\.\. \(7 in all\)"):
        rescore(items, path, tmp_path / "x", align_by="id")


def test_lm_eval_samples_file(items, tmp_path):
    path = tmp_path / "samples_folio_2025-01-01T00-00-00.jsonl"
    rows = [{"doc_id": k, "doc": {"premises": "...", "label": g}, "target": g, "arguments": {},
             "resps": [[final(g), final("True")]], "filtered_resps": [g, "True"], "exact_match": 1.0}
            for k, g in enumerate(GOLDS)]
    path.write_text("\n".join(json.dumps(r) for r in reversed(rows)))    # lm-eval does not promise doc order
    outputs, layout = read_outputs(path)
    assert layout == "lm_eval" and outputs.height == 6
    meta = rescore(items, path, tmp_path / "s", align_by="order")
    df, _ = _scores(tmp_path / "s")
    assert meta["layout"] == "lm_eval" and meta["n_output_items"] == 3
    first = df.filter(pl.col("id") == IDS[0]).sort("sample_idx")
    assert first.get_column("extracted").to_list() == ["False", "True"]
    assert first.get_column("correct").to_list() == [True, False]
    assert df.get_column("truncated").null_count() == 6
    short = tmp_path / "short.jsonl"
    short.write_text("\n".join(json.dumps(r) for r in rows[:2]))
    with pytest.raises(AlignmentError, match="2 outputs but 3 items"):
        rescore(items, short, tmp_path / "x", align_by="order")
