"""The embedded default model: a checkpoint of the workflow's own ``train_default_model`` rule, shipped in the
repository (``embedded/default/``) so that every machine starts from the same weights.

Training is bit-reproducible on one machine but not across CPU kinds (MKL/oneDNN pick other kernels with and
without AVX-512: ``docs/default-model.md``), so ``source: train`` on another CPU gives another model. ``source:
embedded`` (the default) copies the shipped files instead, each checked against the sha256 recorded in the shipped
``meta.json``; a file that differs is an error naming it.

``python -m lrmrepro.models.embedded ship <checkpoint> [--dest embedded/default]`` makes the shipped folder from a
finished ``results/models/<model>/none`` of a ``source: train`` run (its ``meta.json`` is the training record).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

from .. import io
from ..paths import EMBEDDED, ROOT

EMBEDDED_DIR = EMBEDDED
META = "meta.json"
# training settings that do not change the weights' definition (threads change the kernels' summation order, and
# so the weights, but they are part of the recorded machine setup, not of the study's `train` section)
NOT_COMPARED = ("threads",)


class EmbeddedModelError(RuntimeError):
    pass


def _rel(path: Path) -> Path:
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def shipped_meta(folder: str | Path = EMBEDDED_DIR) -> dict[str, Any]:
    path = Path(folder) / META
    if not path.exists():
        raise EmbeddedModelError(
            f"the embedded default model is missing ({path} does not exist): restore it with `git checkout -- "
            f"{_rel(Path(folder))}` in a clone of lrmrepro, or set `models.<name>.source: train` to train one")
    return io.read_json(path)


def shipped_files(folder: str | Path = EMBEDDED_DIR) -> list[Path]:
    """The shipped files, as recorded in the shipped meta.json (the inputs of the rule that installs them)."""
    return [Path(folder) / name for name in sorted(shipped_meta(folder)["files"])]


def train_config(folder: str | Path = EMBEDDED_DIR) -> dict[str, Any]:
    """The ``train`` section the shipped model was trained with (the training rule's config slice)."""
    return dict(shipped_meta(folder)["config"])


def train_mismatch(study_train: dict[str, Any], folder: str | Path = EMBEDDED_DIR) -> tuple[str, Any, Any] | None:
    """The first ``train`` key (sorted) where the study differs from the shipped model's training, as ``(key, the
    study's value, the shipped value)``; None when they agree. Synthetic tasks hold out the training questions of
    the ``train`` section, so a study that reads another one would evaluate the shipped model on questions chosen
    for a model it does not have."""
    shipped = train_config(folder)
    for key in sorted(set(study_train) | set(shipped)):
        if key in NOT_COMPARED:
            continue
        if study_train.get(key) != shipped.get(key):
            return key, study_train.get(key), shipped.get(key)
    return None


def verify(folder: str | Path = EMBEDDED_DIR) -> dict[str, Any]:
    """Check every shipped file against its recorded sha256; returns the shipped meta. A missing, extra-modified or
    changed file is an error that names it."""
    folder = Path(folder)
    meta = shipped_meta(folder)
    for name, want in sorted(meta["files"].items()):
        path = folder / name
        if not path.exists():
            raise EmbeddedModelError(f"embedded model file {path} is missing (recorded in {folder / META})")
        got = io.file_sha256(path)
        if got != want:
            raise EmbeddedModelError(
                f"embedded model file {path} was modified: sha256 {got}, shipped {want} (recorded in "
                f"{folder / META}). Restore it with `git checkout -- {_rel(path)}`; "
                f"to use other weights, give them as `source: local` or retrain with `source: train`")
    return meta


def install(out_dir: str | Path, folder: str | Path = EMBEDDED_DIR) -> dict[str, Any]:
    """Copy the verified shipped checkpoint into ``out_dir`` (atomically) and return provenance for its meta.json:
    the shipped training record (config, loss curve, machine, versions) and the files' sha256."""
    folder = Path(folder)
    meta = verify(folder)
    with io.atomic_dir(out_dir) as tmp:
        for name in meta["files"]:
            shutil.copy2(folder / name, tmp / name)
    for name, want in meta["files"].items():  # the copy, too (a full disk truncates silently)
        if io.file_sha256(Path(out_dir) / name) != want:
            raise EmbeddedModelError(f"copy of embedded model file {name} into {out_dir} differs from the shipped file")
    return {"source": "embedded", "shipped_from": str(folder), "files": meta["files"], "training": meta}


def ship(checkpoint: str | Path, dest: str | Path = EMBEDDED_DIR) -> dict[str, Any]:
    """Make the shipped folder from a trained checkpoint folder (``results/models/<model>/none`` of ``source:
    train``): its files, and a meta.json = the training rule's meta.json plus the sha256 of every file."""
    checkpoint, dest = Path(checkpoint), Path(dest)
    training = io.read_json(checkpoint / META)
    if training.get("stage") != "train_default_model":
        raise EmbeddedModelError(f"{checkpoint} is not a train_default_model checkpoint (its meta.json says stage "
                                 f"{training.get('stage')!r})")
    files = sorted(p.name for p in checkpoint.iterdir() if p.is_file() and p.name != META and not p.name.startswith("."))
    with io.atomic_dir(dest) as tmp:
        for name in files:
            shutil.copy2(checkpoint / name, tmp / name)
        io.write_json({**training, "files": {name: io.file_sha256(tmp / name) for name in files}}, tmp / META)
    return io.read_json(dest / META)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lrmrepro.models.embedded", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_ship = sub.add_parser("ship", help="make the shipped folder from a trained checkpoint")
    p_ship.add_argument("checkpoint")
    p_ship.add_argument("--dest", default=str(EMBEDDED_DIR))
    p_verify = sub.add_parser("verify", help="check the shipped files against their sha256")
    p_verify.add_argument("--folder", default=str(EMBEDDED_DIR))
    args = parser.parse_args(argv)
    if args.cmd == "ship":
        meta = ship(args.checkpoint, args.dest)
        print(f"shipped {len(meta['files'])} files to {args.dest}")
    else:
        meta = verify(args.folder)
        print(f"{len(meta['files'])} files match their sha256")


if __name__ == "__main__":
    main()
