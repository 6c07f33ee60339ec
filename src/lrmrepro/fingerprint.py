"""Code fingerprints: a hash of the source of the package modules a stage imports.

Snakemake reruns a job when its script's mtime changes, but not when a module the script imports
changes. Every rule therefore carries ``params: code=code_fingerprint(<modules>)``; with Snakemake's
default ``--rerun-triggers`` (which include ``params``), editing e.g. the scorers reruns scoring and
everything downstream of it, but never generation.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent


@lru_cache(maxsize=None)
def _hash_path(relpath: str) -> str:
    target = PACKAGE_ROOT / relpath
    files = sorted(target.rglob("*.py")) if target.is_dir() else [target]
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(PACKAGE_ROOT)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def code_fingerprint(*relpaths: str) -> str:
    """Fingerprint of package files or sub-packages, given relative to ``src/lrmrepro`` (e.g. ``"scoring"``,
    ``"generate/transformers_backend.py"``). Shared helpers (io, provenance) are deliberately excluded:
    they do not change results."""
    h = hashlib.sha256()
    for rel in sorted(relpaths):
        if not (PACKAGE_ROOT / rel).exists():
            raise FileNotFoundError(f"code_fingerprint: no module {rel!r} under {PACKAGE_ROOT}")
        h.update(rel.encode())
        h.update(_hash_path(rel).encode())
    return h.hexdigest()[:16]
