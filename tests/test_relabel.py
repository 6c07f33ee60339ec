"""Runs under a CPU label from before labels named the ISA: refused before anything runs, renamed on request."""

import json

import pytest

from lrmrepro import io, relabel

EPYC = {"cpu_model": "AMD EPYC", "gpus": [], "cpu_flags": ["avx", "avx2", "fma", "sse4_1"], "isa_env": {}}
RUNTIMES = ("transformers-p1-bs4", "transformers-p1-bs12")


def _legacy_results(root, label="cpu-amd-epyc", cpu_model="AMD EPYC"):
    for runtime in RUNTIMES:
        for decoding in ("greedy", "sample"):
            folder = root / f"generations/default/none/arith/bf16/{runtime}-{label}/{decoding}"
            folder.mkdir(parents=True)
            (folder / "generations.parquet").write_bytes(b"PAR1 stands in")
            io.write_json({"config": {"run": {"hardware": label}}, "detected_hardware": label,
                           "hardware": {"cpu_model": cpu_model, "gpus": []}}, folder / "generations.meta.json")
    (root / "preflight/transformers/bf16/p1").mkdir(parents=True)
    (root / f"preflight/transformers/bf16/p1/{label}.json").write_text("{}")
    return root


def test_old_labels_are_refused_with_how_to_rename_them(tmp_path):
    results = _legacy_results(tmp_path / "results")
    found = relabel.legacy_runs(results)
    assert list(found) == ["cpu-amd-epyc"] and len(found["cpu-amd-epyc"]) == 2
    with pytest.raises(relabel.LegacyResults) as err:
        relabel.check_results(results, {"cpu-amd-epyc-avx2"})
    msg = str(err.value)
    assert "cpu-amd-epyc: 2 run configurations" in msg and "Nothing was run" in msg
    assert f"python -m lrmrepro.relabel --from cpu-amd-epyc --results {results}" in msg
    assert f"mv {results} {results}-cpu-amd-epyc" in msg
    relabel.check_results(results, {"cpu-amd-epyc"})  # a study that still names the old label (an alias) uses them
    relabel.check_results(tmp_path / "nothing-here")


def test_relabel_renames_every_run_and_records_what_it_asserted(tmp_path):
    results = _legacy_results(tmp_path / "results")
    planned = relabel.relabel(results, "cpu-amd-epyc", "cpu-amd-epyc-avx2", EPYC, dry_run=True)
    assert len(planned) == 3 and relabel.legacy_runs(results)  # nothing renamed
    relabel.relabel(results, "cpu-amd-epyc", "cpu-amd-epyc-avx2", EPYC)
    assert relabel.legacy_runs(results) == {}
    runs = sorted(results.glob("generations/*/*/*/*/*/*/generations.meta.json"))
    assert len(runs) == 4 and all("-cpu-amd-epyc-avx2/" in str(p) for p in runs)
    meta = json.loads(runs[0].read_text())
    assert meta["config"]["run"]["hardware"] == "cpu-amd-epyc-avx2" == meta["detected_hardware"]
    assert meta["hardware"]["cpu_flags"] == EPYC["cpu_flags"]
    assert "recorded no CPU flags" in meta["hardware"]["cpu_flags_asserted"]
    assert (results / "preflight/transformers/bf16/p1/cpu-amd-epyc-avx2.json").is_file()
    relabel.check_results(results, {"cpu-amd-epyc-avx2"})


def test_relabel_refuses_runs_of_another_machine_and_mixing(tmp_path):
    other = _legacy_results(tmp_path / "other", cpu_model="Intel(R) Xeon(R) Processor")
    with pytest.raises(relabel.LegacyResults, match="was generated on 'Intel\\(R\\) Xeon\\(R\\) Processor'"):
        relabel.relabel(other, "cpu-amd-epyc", "cpu-amd-epyc-avx2", EPYC)
    with pytest.raises(relabel.LegacyResults, match="not 'cpu-intel-xeon' followed by an ISA level"):
        relabel.relabel(other, "cpu-intel-xeon", "cpu-amd-epyc-avx2", EPYC)
    results = _legacy_results(tmp_path / "results")
    (results / f"generations/default/none/arith/bf16/{RUNTIMES[0]}-cpu-amd-epyc-avx2").mkdir()
    with pytest.raises(relabel.LegacyResults, match="exists already"):
        relabel.relabel(results, "cpu-amd-epyc", "cpu-amd-epyc-avx2", EPYC)
    assert len(relabel.legacy_runs(results)["cpu-amd-epyc"]) == 2  # nothing half-renamed
