"""Runs under a CPU label from before labels named the instruction set: found before anything runs, renamed on request.

Until labels named the ISA level, a CPU run's label was ``cpu-<model>`` (``cpu-amd-epyc``): an AVX2 and an AVX-512
EPYC got the same one. A results folder of that time holds its runs under such a label; the study now resolves
``auto`` to ``cpu-<model>-<isa>``, so those runs would be neither reused nor replaced but stand beside the new
ones. The workflow refuses to plan anything while they are there (:func:`check_results`, called when the DAG is
built), saying which label and how many runs, and how to rename them:

  python -m lrmrepro.relabel --from cpu-amd-epyc [--results results] [--dry-run]

run on the machine that made them, renames every run folder (and preflight report) of the old label to this
machine's label and records in each ``generations.meta.json`` what was done. Those runs recorded no CPU flags: the
rename asserts that they were made on a machine of this identity, so it is refused unless each run's recorded CPU
model is this machine's and this machine's label extends the old one; the flags it writes are marked as asserted.
Runs made elsewhere belong in a results folder of their own (``mv results results-<old label>``), or are renamed
on a machine of their kind.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from . import hardware as hw
from . import io
from .runs import RUNTIME_FOLDER as RUNTIME, Run
#: how deep a runtime folder sits below results/generations (model/compression/task/precision/runtime)
DEPTH = Run.PATTERN.split("/").index(Run.RUNTIME)


class LegacyResults(RuntimeError):
    pass


def legacy_runs(results: str | Path = "results") -> dict[str, list[Path]]:
    """legacy label -> the runtime folders (below ``results/generations``) that carry it."""
    root = Path(results) / "generations"
    out: dict[str, list[Path]] = defaultdict(list)
    if not root.is_dir():
        return {}
    for folder in sorted(root.glob("/".join(["*"] * (DEPTH + 1)))):
        m = RUNTIME.match(folder.name)
        if folder.is_dir() and m and hw.is_legacy_label(m["hardware"]):
            out[m["hardware"]].append(folder)
    return dict(out)


def check_results(results: str | Path = "results", in_use: Any = ()) -> None:
    """Raise :class:`LegacyResults` when ``results`` holds runs under a legacy CPU label that the study does not use
    (``in_use``: its labels; a study may still name an old label with an alias); the message says how to rename or
    move them."""
    found = {k: v for k, v in legacy_runs(results).items() if k not in set(in_use)}
    if not found:
        return
    listed = "; ".join(f"{label}: {len(folders)} run configurations (e.g. {folders[0]})"
                       for label, folders in found.items())
    first = next(iter(found))
    raise LegacyResults(
        f"{results}/ holds runs under CPU labels from before labels named the instruction set ({listed}). CPU "
        f"labels are now cpu-<model>-<isa> (this machine: see `python -m lrmrepro.relabel --help`), so these runs "
        f"would neither be reused nor replaced. If they were made on a machine of this kind, rename them: "
        f"`python -m lrmrepro.relabel --from {first} --results {results}` (--dry-run shows what it renames); if "
        f"not, move them away: `mv {results} {results}-{first}`. Nothing was run")


def _rename(path: Path, old: str, new: str) -> Path:
    return path.with_name(path.name[: -len(old)] + new)


def relabel(results: str | Path, old: str, new: str, machine: dict[str, Any], *, dry_run: bool = False) -> list[str]:
    """Rename the runs (and preflight reports) of ``results`` labelled ``old`` to ``new``; ``machine``: the
    ``provenance.hardware()`` record whose CPU flags the renamed runs are asserted to have been made with. Returns
    what was (or, with ``dry_run``, would be) done."""
    if not hw.is_legacy_label(old):
        raise LegacyResults(f"--from {old!r} is not a label from before labels named the ISA")
    if not new.startswith(old + "-") or hw.is_legacy_label(new):
        raise LegacyResults(f"this machine's label {new!r} is not {old!r} followed by an ISA level: the runs of "
                            f"{old!r} were made on another CPU model; rename them on a machine of theirs")
    folders = legacy_runs(results).get(old, [])
    if not folders:
        raise LegacyResults(f"no runs labelled {old!r} under {results}/generations")
    for folder in folders:
        for meta in folder.glob("*/generations.meta.json"):
            recorded = io.read_json(meta).get("hardware", {}).get("cpu_model")
            if recorded != machine.get("cpu_model"):
                raise LegacyResults(f"{meta} was generated on {recorded!r}, this machine is "
                                    f"{machine.get('cpu_model')!r}: move those results away instead")
    done = []
    asserted = {"cpu_flags": machine.get("cpu_flags", []), "isa_env": machine.get("isa_env", {}),
                "cpu_flags_asserted": f"relabelled from {old} to {new} on {time.strftime('%Y-%m-%d')}: the run recorded "
                                      "no CPU flags; these are the relabelling machine's"}
    clash = [str(_rename(f, old, new)) for f in folders if _rename(f, old, new).exists()]
    if clash:  # checked before anything is renamed: never half a rename
        raise LegacyResults(f"{', '.join(clash)} exists already: the old and the new label's runs would mix; "
                            "nothing was renamed")
    for folder in folders:
        target = _rename(folder, old, new)
        done.append(f"{folder} -> {target}")
        if dry_run:
            continue
        for meta in folder.glob("*/generations.meta.json"):
            data = io.read_json(meta)
            data.setdefault("config", {}).setdefault("run", {})["hardware"] = new
            data["hardware"] = {**data.get("hardware", {}), **asserted}
            data["detected_hardware"] = new
            io.write_json(data, meta)
        folder.rename(target)
    for report in sorted((Path(results) / "preflight").glob(f"*/*/*/{old}.json")):
        done.append(f"{report} -> {report.with_name(new + '.json')}")
        if not dry_run:
            report.rename(report.with_name(new + ".json"))
    return done


def main(argv: list[str] | None = None) -> int:
    from .provenance import hardware

    p = argparse.ArgumentParser(prog="python -m lrmrepro.relabel", description=__doc__.split("\n\n")[0])
    p.add_argument("--from", dest="old", required=True, help="the old label (e.g. cpu-amd-epyc)")
    p.add_argument("--results", default="results")
    p.add_argument("--dry-run", action="store_true", help="say what would be renamed, rename nothing")
    args = p.parse_args(argv)
    machine = hardware()
    new = hw.label_of(machine)
    try:
        done = relabel(args.results, args.old, new, machine, dry_run=args.dry_run)
    except LegacyResults as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(("would rename" if args.dry_run else "renamed") + f" {len(done)} folders and files:\n  " + "\n  ".join(done))
    return 0


if __name__ == "__main__":
    sys.exit(main())
