"""Atomic writes: no half-written outputs, no stale temporaries left by a kill, modes that follow the umask."""

import os
import stat
import subprocess
import sys
import textwrap

import pytest

from lrmrepro import io

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def _mode(p):
    return stat.S_IMODE(os.stat(p).st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_written_files_and_folders_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        io.write_json({"a": 1}, tmp_path / "x.json")
        io.write_text("t", tmp_path / "x.txt")
        with io.atomic_dir(tmp_path / "ckpt") as d:
            (d / "w.bin").write_bytes(b"0")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "x.json") == 0o666 & ~umask
    assert _mode(tmp_path / "x.txt") == 0o666 & ~umask
    assert _mode(tmp_path / "ckpt") == 0o777 & ~umask


def test_a_killed_write_leaves_a_temporary_that_the_next_write_removes(tmp_path):
    out = tmp_path / "big.json"
    # a writer killed between writing its temporary and renaming it
    code = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(ROOT / 'src')!r})
        from lrmrepro import io
        with io.atomic_path({str(out)!r}, ".json") as tmp:
            tmp.write_bytes(b"x" * 1_000_000)
            os.kill(os.getpid(), 9)
    """)
    proc = subprocess.run([sys.executable, "-c", code])
    assert proc.returncode == -9
    left = list(tmp_path.glob(".big.json.*.tmp"))
    assert len(left) == 1 and left[0].stat().st_size == 1_000_000 and not out.exists()
    io.write_json({"ok": True}, out)
    assert list(tmp_path.glob(".big.json.*.tmp")) == []
    assert io.read_json(out) == {"ok": True}


def test_stale_temporary_folders_of_a_checkpoint_are_removed(tmp_path):
    stale = tmp_path / ".ckpt.abc123.tmp"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"0" * 1000)
    other = tmp_path / ".other.abc.tmp"  # belongs to another output: kept
    other.write_text("x")
    with io.atomic_dir(tmp_path / "ckpt") as d:
        (d / "config.json").write_text("{}")
    assert not stale.exists() and other.exists()
    assert (tmp_path / "ckpt" / "config.json").exists()


# ------------------------------------------------------------------------------------------------ producer records
def _scores(n=32):
    import polars as pl

    return pl.DataFrame({"id": [f"q{i // 2}" for i in range(n)], "sample_idx": [i % 2 for i in range(n)],
                         "extracted": [str(i) for i in range(n)], "correct": [i % 8 < 3 for i in range(n)]})


def test_a_table_changed_behind_the_workflows_back_is_refused_where_it_is_read(tmp_path):
    """The probes of issue 34: rows dropped and written back, a truncated file restored with its mtime, a file
    replaced by an older copy with `cp -p`. Each is refused by the reader, naming the file, the rule that makes it
    and the command that rebuilds it."""
    import shutil

    path = tmp_path / "run" / "scores.parquet"
    io.set_producer("score")
    try:
        io.write_parquet(_scores(), path)
    finally:
        io.set_producer(None)
    record = io.read_record(path)
    assert record["rows"] == 32 and record["producer"] == "score" and len(record["sha256"]) == 64
    assert io.read_parquet(path).height == 32 and io.read_arrow(path, columns=["id"]).num_columns == 1
    good = tmp_path / "good.parquet"
    shutil.copy2(path, good)

    _scores().head(20).write_parquet(path)  # an edit that bypasses the workflow: a valid file, 12 rows short
    with pytest.raises(io.ArtifactError) as e:
        io.read_parquet(path)
    msg = str(e.value)
    assert str(path) in msg and "not the file its producer wrote" in msg and "rule score" in msg
    assert f"--forcerun {path}" in msg

    shutil.copy2(good, path)  # the good file back: accepted again
    assert io.read_parquet(path).height == 32
    st = os.stat(path)
    with open(path, "r+b") as f:  # truncated, then its mtime restored (touch -r)
        f.truncate(st.st_size // 2)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(io.ArtifactError, match=r"bytes, the producer wrote"):
        io.read_arrow(path)

    path.unlink()
    with pytest.raises(io.ArtifactError, match=r"scores.parquet is missing; it is made by rule score"):
        io.read_parquet(path)


def test_an_unrecorded_or_garbled_file_is_named(tmp_path):
    import polars as pl

    old = tmp_path / "old.parquet"  # from before records: read, not judged
    pl.DataFrame({"a": [1]}).write_parquet(old)
    assert io.read_parquet(old).height == 1
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"garbage, not parquet")
    with pytest.raises(io.ArtifactError, match=r"bad.parquet is unreadable as parquet"):
        io.read_parquet(bad)
    meta = tmp_path / "generations.meta.json"
    meta.write_text("\x00\x01 not json")
    with pytest.raises(io.ArtifactError, match=r"generations.meta.json is not valid JSON"):
        io.read_json(meta)


def test_chunks_are_scratch_without_records(tmp_path):
    io.write_parquet(_scores(4), tmp_path / "chunk-000000.parquet", record=False)
    assert not io.record_path(tmp_path / "chunk-000000.parquet").exists()


def test_verify_lists_every_changed_artifact_and_how_to_rebuild_it(tmp_path, capsys):
    from lrmrepro import verify

    results = tmp_path / "results"
    for name in ("a", "b", "c"):
        io.write_parquet(_scores(8), results / name / "scores.parquet")
    io.write_text("| a |\n", results / "summary" / "accuracy.md")
    assert verify.main([str(results)]) == 0
    assert "4 recorded artifacts checked" in capsys.readouterr().out
    _scores(6).write_parquet(results / "b" / "scores.parquet")
    (results / "summary" / "accuracy.md").write_text("| edited |\n")
    (results / "c" / "scores.parquet").unlink()
    assert verify.main([str(results)]) == 1
    out = capsys.readouterr().out
    assert f"{results}/b/scores.parquet is not the file" in out and f"{results}/c/scores.parquet is missing" in out
    assert f"{results}/summary/accuracy.md is not the file" in out and "a/scores.parquet" not in out.replace(
        "summary/accuracy.md", "")
    assert "3 differ from their producer's record" in out
    assert out.strip().splitlines()[-1].startswith("rebuild them and what was made from them: snakemake --cores all "
                                                  "--forcerun ")
