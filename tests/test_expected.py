"""The default run's expected tables: recorded per hardware label, compared byte for byte."""

import json

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
    # a table the recording does not hold (a rule newer than it) is listed, not compared
    assert not any("extra.md" in d for d in diffs)
    assert expected.unrecorded(other, tmp_path / "expected") == ["tables/extra.md"]


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


AVX2 = {"cpu_model": "AMD EPYC", "gpus": [], "cpu_flags": ["avx", "avx2", "fma", "sse4_1"], "isa_env": {},
        "torch_cpu_capability": "AVX2"}
AVX512 = {**AVX2, "cpu_flags": sorted(AVX2["cpu_flags"] + ["avx512f", "avx512bw", "avx512vl", "avx512dq",
                                                          "avx512_vnni", "avx512_bf16"]),
          "torch_cpu_capability": "AVX512"}


def _with_runs(root, *machines):
    for i, machine in enumerate(machines):
        folder = root / f"generations/default/none/arith/bf16/transformers-p1-bs{4 * (i + 1)}-x/greedy"
        folder.mkdir(parents=True)
        (folder / "generations.meta.json").write_text(json.dumps({"hardware": machine}))
    return root


def _record(expected_root, machine, table3="| a | 1 |\n"):
    from lrmrepro import hardware as hw

    run = _with_runs(_results(expected_root.parent / f"src-{hw.label_of(machine)}", table3), machine)
    found = expected.results_identity(run)
    expected.record(run, expected_root / found["label"], identity=found)
    return found


def test_a_run_is_compared_only_with_tables_of_its_own_identity(tmp_path, capsys):
    docs = tmp_path / "docs"
    assert _record(docs, AVX2)["label"] == "cpu-amd-epyc-avx2"
    args = ["compare", "--expected", str(docs), "--config", str(tmp_path / "none.yaml")]
    # an AVX-512 run with other numbers: told that nothing is recorded for its identity, with the nearest one
    run = _with_runs(_results(tmp_path / "run", table3="| a | 2 |\n"), AVX512, AVX512)
    assert expected.main([*args, "--results", str(run)]) == expected.NOT_RECORDED
    out = capsys.readouterr().out
    assert out.startswith("no tables recorded for cpu-amd-epyc-avx512bf16 (numerics identity")
    assert "nearest recorded identity is cpu-amd-epyc-avx2" in out
    assert "isa: 'avx2' vs 'avx512bf16'" in out and "aten_capability: 'avx2' vs 'avx512'" in out
    assert "differs: " not in out  # no diff of the tables
    # recorded for its identity: compared byte for byte, and a difference is a difference
    _record(docs, AVX512)
    assert expected.main([*args, "--results", str(run)]) == 1
    assert "1 of the tables differ from" in capsys.readouterr().out
    same = _with_runs(_results(tmp_path / "same"), AVX512)
    assert expected.main([*args, "--results", str(same)]) == 0
    assert "byte for byte" in capsys.readouterr().out
    # the same label under a dispatch cap (MKL) is another identity: not compared
    capped = _with_runs(_results(tmp_path / "capped"), {**AVX512, "isa_env": {"MKL_CBWR": "AVX2"}})
    assert expected.main([*args, "--results", str(capped)]) == expected.NOT_RECORDED
    assert "nearest recorded identity is cpu-amd-epyc-avx512bf16" in capsys.readouterr().out
    # naming the label compares with that folder whatever the identity
    assert expected.main([*args, "--results", str(capped), "--label", "cpu-amd-epyc-avx512bf16"]) == 0


def test_runs_of_two_identities_or_of_the_old_labels_are_not_compared(tmp_path, capsys):
    args = ["compare", "--expected", str(tmp_path / "docs")]
    mixed = _with_runs(_results(tmp_path / "mixed"), AVX2, AVX512)
    assert expected.main([*args, "--results", str(mixed)]) == expected.NOT_RECORDED
    assert "generated on 2 numerics identities" in capsys.readouterr().out
    old = _with_runs(_results(tmp_path / "old"), {"cpu_model": "AMD EPYC", "gpus": []})
    assert expected.main([*args, "--results", str(old)]) == expected.NOT_RECORDED
    assert "recorded no instruction-set facts" in capsys.readouterr().out


def test_every_documented_folder_records_its_identity_under_its_label():
    from lrmrepro import hardware as hw

    for label, found in expected.recorded_identities().items():
        assert found["label"] == label and not hw.is_legacy_label(label)
        assert found["identity"]["isa"] and label.endswith("-" + found["identity"]["isa"])
        table = (expected.EXPECTED / label / "summary/accuracy.md").read_text()
        assert f"| {label} |" in table and table.count(f"| {label} |") == table.count("\n") - 2
    assert {p.name for p in expected.EXPECTED.iterdir() if p.is_dir()} == set(expected.recorded_identities())
