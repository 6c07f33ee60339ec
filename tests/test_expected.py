"""The default run's expected tables: recorded per hardware label, compared byte for byte."""

from lrmrepro import expected


def _results(root, table3="| a | 1 |\n"):
    (root / "tables/precision_grid").mkdir(parents=True)
    (root / "summary").mkdir()
    (root / "tables/precision_grid/table3_std_acc.md").write_text(table3)
    (root / "tables/precision_grid/table3_std_acc.csv").write_text("not compared\n")
    (root / "summary/accuracy.md").write_text("| acc |\n")
    return root


def test_a_recorded_run_compares_equal_and_a_changed_byte_is_reported(tmp_path):
    run = _results(tmp_path / "run")
    found = expected.record(run, tmp_path / "expected")
    assert [str(p) for p in found] == ["summary/accuracy.md", "tables/precision_grid/table3_std_acc.md"]
    assert expected.compare(run, tmp_path / "expected") == []
    other = _results(tmp_path / "other", table3="| a | 2 |\n")
    diffs = expected.compare(other, tmp_path / "expected")
    assert len(diffs) == 1 and diffs[0].startswith("differs: tables/precision_grid/table3_std_acc.md")
    assert "-| a | 1 |" in diffs[0] and "+| a | 2 |" in diffs[0]
    (other / "summary/accuracy.md").unlink()
    (other / "tables/extra.md").write_text("x")
    diffs = expected.compare(other, tmp_path / "expected")
    assert any(d.startswith("missing from") and "accuracy.md" in d for d in diffs)
    assert any(d.startswith("not in the expected tables: tables/extra.md") for d in diffs)


def test_every_documented_label_holds_the_default_runs_tables():
    labels = [p for p in expected.EXPECTED.iterdir() if p.is_dir()]
    assert labels, "docs/results/<hardware label>/ of at least one documented make run"
    for label in labels:
        names = {str(p) for p in expected.tables(label)}
        assert "summary/accuracy.md" in names and "tables/precision_grid/table3_std_acc.md" in names, label


def test_tables_recorded_for_another_study_are_named_as_such(tmp_path):
    run = _results(tmp_path / "run")
    config = tmp_path / "config.yaml"
    config.write_text("experiments: {a: {}}\n")
    expected.record(run, tmp_path / "expected", config)
    assert expected.study_mismatch(tmp_path / "expected", config) is None
    config.write_text("experiments: {a: {}, b: {}}\n")  # an experiment added since
    note = expected.study_mismatch(tmp_path / "expected", config)
    assert note and "another version of the default study" in note and "re-record" in note
    assert expected.study_mismatch(tmp_path / "nothing-recorded", config) is None
