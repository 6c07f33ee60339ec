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
