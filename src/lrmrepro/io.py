"""Atomic artifact writing, and artifacts checked where they are read.

Every artifact is written to a temporary file in the destination directory and moved into place with
``os.replace`` (atomic on POSIX), so an interrupted job never leaves a half-written file that a later
run could mistake for a finished one.

Every table (parquet) and text table written here gets its producer's record beside it,
``.<name>.record.json``: sha256, size, row count and the rule that wrote it. :func:`read_parquet` /
:func:`read_arrow` check a table against its record before reading it, so a file truncated, edited or restored
from elsewhere behind Snakemake's back (``cp -p`` and ``touch -r`` keep Snakemake's timestamps) is refused, naming
the file, the rule that makes it and the command that rebuilds it; ``python -m lrmrepro.verify`` checks every
recorded artifact of a results folder at once.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq


def _umask() -> int:
    """The process umask, read without changing it (Linux: /proc/self/status)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: the classic two-call dance
    os.umask(mask)
    return mask


def _remove_stale(dest: Path, keep: Path) -> None:
    """Temporary files/folders of earlier writes of ``dest`` that were killed before their rename (a kill leaves
    them behind; they can be tens of MB each)."""
    for stale in dest.parent.glob(f".{glob.escape(dest.name)}.*.tmp"):
        if stale == keep:
            continue
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it onto ``path`` atomically. The file gets the mode
    a plain ``open`` would give it (0666 minus the umask), not ``mkstemp``'s 0600: results on a shared file system
    stay readable by the group."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix + ".tmp", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    _remove_stale(dest, tmp_path)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, dest)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory next to ``path``; on success replace ``path`` with it. The directory gets mode
    0777 minus the umask (``mkdtemp`` would leave 0700)."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    _remove_stale(dest, tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------------------------------------ producer records
#: the rule named in records (inherited by subprocesses, such as a vLLM engine process, through LRMREPRO_RULE)
_PRODUCER: str | None = os.environ.get("LRMREPRO_RULE")


class ArtifactError(RuntimeError):
    """An artifact that is missing, unreadable, or not the file its producer wrote."""


def set_producer(rule: str | None) -> None:
    """The rule whose job this process runs (:func:`lrmrepro.runlog.rule_log` sets it): named in every record."""
    global _PRODUCER
    _PRODUCER = rule
    if rule:
        os.environ["LRMREPRO_RULE"] = rule


def record_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p.with_name(f".{p.name}.record.json")


def read_record(path: str | os.PathLike) -> dict[str, Any] | None:
    """The producer's record of ``path`` (None: none was written, e.g. a file from before records)."""
    rp = record_path(path)
    try:
        return json.loads(rp.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{rp}: the record of {path} is unreadable ({e}); {rebuild_hint(path, None)}") from None


def rebuild_hint(path: str | os.PathLike, record: dict[str, Any] | None) -> str:
    rule = f"rule {record['producer']}" if record and record.get("producer") else "its rule"
    return (f"it is made by {rule}: rebuild it and everything made from it with "
            f"`snakemake --cores all --forcerun {path}` (`python -m lrmrepro.verify` lists every such file)")


@contextlib.contextmanager
def _recorded(path: str | os.PathLike, suffix: str, rows: int | None) -> Iterator[Path]:
    """:func:`atomic_path` that also writes the producer's record of the file (after it is in place; the old
    record is removed first, so a kill in between leaves a file without a record, never a wrong record)."""
    rp = record_path(path)
    with atomic_path(path, suffix) as tmp:
        yield tmp
        rec = {"sha256": file_sha256(tmp), "bytes": tmp.stat().st_size, "rows": rows, "producer": _PRODUCER}
        with contextlib.suppress(FileNotFoundError):
            rp.unlink()
    with atomic_path(rp, ".json") as tmp:
        tmp.write_text(json.dumps(rec, sort_keys=True) + "\n")


def check_artifact(path: str | os.PathLike, rows: int | None = None) -> dict[str, Any] | None:
    """Raise :class:`ArtifactError` when ``path`` is missing, or differs from its producer's record (bytes, sha256,
    and ``rows`` where the caller read them); returns the record (None where there is none)."""
    p = Path(path)
    record = read_record(p)
    if not p.exists():
        raise ArtifactError(f"{p} is missing; {rebuild_hint(p, record)}")
    if record is None:
        return None
    problem = None
    size = p.stat().st_size
    if size != record.get("bytes"):
        problem = f"{size} bytes, the producer wrote {record.get('bytes')}"
    elif file_sha256(p) != record.get("sha256"):
        problem = "its sha256 differs from the one the producer recorded"
    elif rows is not None and record.get("rows") is not None and rows != record["rows"]:
        problem = f"{rows} rows, the producer wrote {record['rows']}"
    if problem:
        raise ArtifactError(f"{p} is not the file its producer wrote ({problem}): it was changed after it was "
                            f"written (edited, truncated, or restored from elsewhere); {rebuild_hint(p, record)}")
    return record


def read_arrow(path: str | os.PathLike, columns: list[str] | None = None, **kw: Any) -> pa.Table:
    """A parquet artifact as a pyarrow Table, checked against its producer's record first."""
    check_artifact(path)
    try:
        return pq.read_table(path, columns=columns, **kw)
    except (OSError, ValueError, pa.ArrowException) as e:
        raise ArtifactError(f"{path} is unreadable as parquet ({e}); {rebuild_hint(path, read_record(path))}") \
            from None


def read_parquet(path: str | os.PathLike, columns: list[str] | None = None) -> Any:
    """A parquet artifact as a polars DataFrame, checked against its producer's record first."""
    import polars as pl

    return pl.from_arrow(read_arrow(path, columns=columns))


def write_parquet(table: pa.Table | Any, path: str | os.PathLike, record: bool = True) -> None:
    """Write a pyarrow Table (or a polars DataFrame) to parquet atomically, with its producer's record (``record``:
    False for a job's own scratch files, such as resumable chunks)."""
    if not isinstance(table, pa.Table):
        table = table.to_arrow()
    with (_recorded(path, ".parquet", table.num_rows) if record else atomic_path(path, ".parquet")) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def write_json(obj: Any, path: str | os.PathLike) -> None:
    with atomic_path(path, ".json") as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_text(text: str, path: str | os.PathLike) -> None:
    """Write a text artifact (a Markdown or CSV table) atomically, with its producer's record."""
    with _recorded(path, "", None) as tmp:
        tmp.write_text(text)


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes (hex), read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_json(path: str | os.PathLike) -> Any:
    """A JSON artifact (a meta.json); a missing or garbled file raises :class:`ArtifactError` naming it."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ArtifactError(f"{path} is missing; {rebuild_hint(path, None)}") from None
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{path} is not valid JSON ({e}); {rebuild_hint(path, None)}") from None
