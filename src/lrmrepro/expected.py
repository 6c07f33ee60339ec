"""The default run's expected tables, per numerics identity: record them from a finished run, compare a run with them.

``docs/results/<hardware label>/`` holds the Markdown tables of a documented ``make run`` (``results/tables/**/*.md``
and ``results/summary/accuracy.md``) and ``identity.json``: the label and numerics identity
(:func:`lrmrepro.hardware.identity`: CPU model, ISA level, torch's capability, dispatch-capping environment) of
the machine that made them. With the embedded model's weights fixed, a run on the same identity must reproduce
them byte for byte; ``make check-results`` says which files differ (and where) when it does not. A run is compared
only with tables recorded on its own identity (read from its runs' ``generations.meta.json``): where none are
recorded, ``compare`` says so, names the nearest recorded identity and what differs, and exits with status 3
instead of listing every table as different.

  python -m lrmrepro.expected record [--results results] [--label LABEL]   # after a documented run
  python -m lrmrepro.expected compare [--results results] [--label LABEL]
      # exit 0: byte for byte; 1: tables differ; 3: no tables recorded for this identity

A recorded folder also holds ``study.json``: the sha256 of the ``config.yaml`` it was recorded with. Tables recorded
for another version of the default study (more experiments, other variants) cannot match; ``compare`` then says so
first, so that a difference is not mistaken for a numerical one.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from . import hardware as hw
from .paths import EXPECTED_RESULTS

EXPECTED = EXPECTED_RESULTS
#: the tables a run is compared by (relative to results/): every table the figures stage writes, and the accuracy summary
PATTERNS = ("tables/**/*.md", "summary/accuracy.md")
#: the recorded study's identity, beside its tables
STUDY = "study.json"
#: the numerics identity of the machine that recorded the tables, beside them
IDENTITY = "identity.json"
#: compare's exit status when no tables are recorded for the run's identity (1: tables differ)
NOT_RECORDED = 3


class IdentityError(ValueError):
    pass


def results_identity(results: str | Path) -> dict[str, Any] | None:
    """``{"label", "identity"}`` of the machine the runs of ``results`` were generated on (their
    ``generations.meta.json``); None when it holds no runs. Raises :class:`IdentityError` when its runs were made on
    several identities, or before labels named the ISA (no flags recorded)."""
    found: dict[str, dict[str, Any]] = {}
    for meta in sorted(Path(results).glob("generations/**/generations.meta.json")):
        machine = json.loads(meta.read_text()).get("hardware", {})
        ident = hw.identity(machine)
        found.setdefault(json.dumps(ident, sort_keys=True), {"label": hw.label_of(machine), "identity": ident,
                                                            "example": str(meta.parent)})
    if not found:
        return None
    if len(found) > 1:
        raise IdentityError(f"the runs of {results} were generated on {len(found)} numerics identities (e.g. " +
                            "; ".join(f"{v['label']} at {v['example']}" for v in found.values()) +
                            "): compare one machine's results, or name the label with --label")
    (only,) = found.values()
    if hw.is_legacy_label(only["label"]):
        raise IdentityError(f"the runs of {results} recorded no instruction-set facts (made before hardware labels "
                            f"named the ISA; e.g. {only['example']}): their numerics identity is unknown. Rerun the "
                            "workflow into a new results folder, or name the label with --label")
    return {"label": only["label"], "identity": only["identity"]}


def recorded_identities(expected: str | Path = EXPECTED) -> dict[str, dict[str, Any]]:
    """label -> the recorded identity.json of each documented folder that has one."""
    out = {}
    for folder in sorted(Path(expected).iterdir()) if Path(expected).is_dir() else []:
        if (folder / IDENTITY).is_file():
            out[folder.name] = json.loads((folder / IDENTITY).read_text())
    return out


def nearest(identity: dict[str, Any], recorded: dict[str, dict[str, Any]]) -> tuple[str, list[str]] | None:
    """The recorded label whose identity differs from ``identity`` in the fewest facts (the machine's facts first),
    with what differs; None when nothing is recorded."""
    if not recorded:
        return None

    def distance(label: str) -> tuple[int, int, str]:
        other = recorded[label]["identity"]
        return (len(hw.identity_difference(hw.machine_facts(identity), hw.machine_facts(other))),
                len(hw.identity_difference(identity, other)), label)

    best = min(recorded, key=distance)
    return best, hw.identity_difference(recorded[best]["identity"], identity)


def study_of(config: str | Path) -> dict[str, str]:
    """What identifies the study a run was made from: its config file's sha256."""
    return {"config": Path(config).name, "config_sha256": hashlib.sha256(Path(config).read_bytes()).hexdigest()}


def study_mismatch(expected: str | Path, config: str | Path) -> str | None:
    """A sentence when ``expected`` was recorded for another version of the study ``config`` (None: the same, or
    not recorded)."""
    path = Path(expected) / STUDY
    if not path.is_file():
        return None
    recorded, now = json.loads(path.read_text()), study_of(config)
    if recorded.get("config_sha256") == now["config_sha256"]:
        return None
    return (f"the tables of {Path(expected).name} were recorded for another version of the default study "
            f"({recorded.get('config')} sha256 {recorded.get('config_sha256', '?')[:12]}, "
            f"{recorded.get('note', 'no note')}; this checkout's: {now['config_sha256'][:12]}): rows of experiments "
            "or variants added since differ without any numerical cause; re-record them on that kind of machine")


def tables(results: str | Path) -> list[Path]:
    """The compared tables of a results folder, relative to it, sorted."""
    results = Path(results)
    return sorted({p.relative_to(results) for pattern in PATTERNS for p in results.glob(pattern) if p.is_file()})


def record(results: str | Path, dest: str | Path, config: str | Path | None = None,
           identity: dict[str, Any] | None = None) -> list[Path]:
    """Copy the tables of ``results`` to ``dest`` (replacing what was there); with ``config``, the study's identity
    too, with ``identity`` (``{"label", "identity"}``) the machine's."""
    results, dest = Path(results), Path(dest)
    found = tables(results)
    if not found:
        raise FileNotFoundError(f"no tables under {results} (patterns {', '.join(PATTERNS)}): run the workflow first")
    if dest.exists():
        shutil.rmtree(dest)
    for rel in found:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(results / rel, dest / rel)
    if config is not None:
        (dest / STUDY).write_text(json.dumps(study_of(config), indent=1) + "\n")
    if identity is not None:
        (dest / IDENTITY).write_text(json.dumps(identity, indent=1, sort_keys=True) + "\n")
    return found


def compare(results: str | Path, expected: str | Path) -> list[str]:
    """What differs between the tables of ``results`` and the recorded ``expected`` ones: one entry per missing or
    different file (with a unified diff). Empty: every recorded table is there, byte-identical. Tables the recording
    does not hold (made by rules added after it was recorded) are not compared: :func:`unrecorded` lists them."""
    results, expected = Path(results), Path(expected)
    if not expected.is_dir():
        raise FileNotFoundError(f"no expected tables at {expected}: this hardware label has no documented run")
    have, want = set(tables(results)), set(tables(expected))
    out = [f"missing from {results}: {rel}" for rel in sorted(want - have)]
    for rel in sorted(have & want):
        a, b = (expected / rel).read_bytes(), (results / rel).read_bytes()
        if a != b:
            diff = difflib.unified_diff(a.decode().splitlines(), b.decode().splitlines(), f"expected/{rel}",
                                        f"results/{rel}", lineterm="", n=0)
            out.append(f"differs: {rel}\n" + "\n".join(diff))
    return out


def not_recorded(identity: dict[str, Any], expected: str | Path = EXPECTED) -> str:
    """The message for a run whose identity has no recorded tables: the nearest recorded one and what differs."""
    near = nearest(identity["identity"], recorded_identities(expected))
    text = (f"no tables recorded for {identity['label']} (numerics identity "
            f"{json.dumps(identity['identity'], sort_keys=True)})")
    if near is None:
        return text + f"; none are recorded under {expected}"
    label, differ = near
    return (text + f"; the nearest recorded identity is {label} ({Path(expected) / label}), which differs in: "
            + "; ".join(differ) + ". Tables of another identity are expected to differ (bf16 above all): record "
            "this machine's with `python -m lrmrepro.expected record` after a fresh-clone make run")


def unrecorded(results: str | Path, expected: str | Path) -> list[str]:
    """The tables of ``results`` the recording ``expected`` does not hold (newer than the recording: not compared)."""
    return sorted(str(p) for p in set(tables(Path(results))) - set(tables(Path(expected))))


def main(argv: list[str] | None = None) -> int:
    from .provenance import hardware

    p = argparse.ArgumentParser(prog="python -m lrmrepro.expected", description=__doc__.split("\n\n")[0])
    p.add_argument("cmd", choices=["record", "compare"])
    p.add_argument("--results", default="results")
    p.add_argument("--label", default=None,
                   help="hardware label (default: the one the runs of --results were generated on, else this "
                        "machine's); naming it compares with that folder whatever its identity")
    p.add_argument("--config", default="config.yaml", help="the study the run was made from (default: config.yaml)")
    p.add_argument("--expected", default=str(EXPECTED), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    expected = Path(args.expected)
    try:
        found = results_identity(args.results)
    except IdentityError as err:
        if args.label is None:
            print(f"error: {err}")
            return NOT_RECORDED
        found = None
    if found is None:
        machine = hardware()
        found = {"label": hw.label_of(machine), "identity": hw.identity(machine)}
    label = args.label or found["label"]
    dest = expected / label
    if args.cmd == "record":
        done = record(args.results, dest, args.config, found)
        print(f"recorded {len(done)} tables of {args.results} as {dest} (identity {found['label']})")
        return 0
    recorded = recorded_identities(expected).get(label)
    if args.label is None and (recorded is None or hw.identity_difference(recorded["identity"], found["identity"])):
        print(not_recorded(found, expected))
        return NOT_RECORDED
    diffs = compare(args.results, dest)
    mismatch = study_mismatch(dest, args.config)
    if mismatch:
        print(f"note: {mismatch}")
    newer = unrecorded(args.results, dest)
    if newer:
        print(f"note: {len(newer)} tables are not recorded for {label} (made by rules newer than the recording; "
              f"not compared; `python -m lrmrepro.expected record` after a documented run adds them): "
              + ", ".join(newer))
    if diffs:
        print(f"{len(diffs)} of the tables differ from {dest}:\n" + "\n".join(diffs))
        return 1
    print(f"all {len(tables(dest))} tables of {args.results} equal {dest} byte for byte")
    return 0


if __name__ == "__main__":
    sys.exit(main())
