"""Jobs die with their scheduler; a lock is removed only when no run is alive.

Snakemake starts every job as a child process. When Snakemake itself is killed (``kill -9``, an out-of-memory kill
of the head process, a closed SSH session without ``nohup``), its jobs are orphaned and go on writing into
``results/``; ``snakemake --unlock`` then succeeds, and the next run deletes or mixes their outputs. Two guards:

- :func:`guard_job` (every workflow script, through :func:`lrmrepro.runlog.rule_log`): finds the Snakemake process
  that started the job and watches it; when it is gone, the job terminates its own child processes (a vLLM engine
  process, a compiler) and exits. The next run redoes the job: finished generations come back from the generation
  cache, not from the GPU.
- :func:`live_runs` / ``python -m lrmrepro.jobguard unlock`` (``make unlock``): lists the Snakemake processes and
  jobs alive in a working directory and refuses to unlock while any is, naming them; otherwise runs
  ``snakemake --unlock``.

psutil (already required by Snakemake) reads the process table: portable across Linux and macOS, and exact about
process identity (a pid and its start time, so a recycled pid is not mistaken for the scheduler).
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Sequence

import psutil

log = logging.getLogger(__name__)

#: seconds between two looks at the scheduler
POLL_SECONDS = 1.0
#: seconds a child process gets after SIGTERM before SIGKILL
GRACE_SECONDS = 5.0


def _is_snakemake(proc: psutil.Process) -> bool:
    try:
        argv = proc.cmdline()
    except (psutil.Error, OSError):
        return False
    # `snakemake ...`, `python .../bin/snakemake ...`, `python -m snakemake ...`
    return any(Path(a).name == "snakemake" for a in argv[:3]) or argv[1:3] == ["-m", "snakemake"]


def scheduler() -> psutil.Process | None:
    """The nearest ancestor of this process that is a Snakemake process (None when run by hand)."""
    try:
        for parent in psutil.Process(os.getpid()).parents():
            if _is_snakemake(parent):
                return parent
    except psutil.Error:
        pass
    return None


def _stop_children(timeout: float = GRACE_SECONDS) -> int:
    try:
        children = psutil.Process(os.getpid()).children(recursive=True)
    except psutil.Error:
        return 0
    for c in children:
        try:
            c.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(children, timeout=timeout)
    for c in alive:
        try:
            c.kill()
        except psutil.Error:
            pass
    return len(children)


def guard_job(poll: float = POLL_SECONDS, exit_code: int = 143) -> threading.Thread | None:
    """Watch the Snakemake process that started this job (a daemon thread); when it is gone, stop this job's child
    processes and exit with ``exit_code``. Returns the thread, or None when no Snakemake process started this job."""
    sched = scheduler()
    if sched is None:
        return None
    pid, started = sched.pid, sched.create_time()

    def alive() -> bool:
        try:
            p = psutil.Process(pid)
            return p.create_time() == started and p.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def watch() -> None:
        stop = threading.Event()
        while not stop.wait(poll):
            if not alive():
                n = _stop_children()
                log.error("the Snakemake process %d that started this job is gone: stopped %d child process(es) and "
                          "exiting, so that no orphan writes into the results (the next run redoes this job; "
                          "finished generations come back from the generation cache)", pid, n)
                for h in logging.getLogger().handlers:
                    h.flush()
                os._exit(exit_code)

    t = threading.Thread(target=watch, name="lrmrepro-jobguard", daemon=True)
    t.start()
    return t


def live_runs(workdir: str | os.PathLike) -> list[psutil.Process]:
    """Snakemake processes and their jobs alive in ``workdir`` (their working directory), this process excluded."""
    root = os.path.realpath(workdir)
    me = os.getpid()
    found = []
    for p in psutil.process_iter(["pid", "cmdline", "cwd"]):
        try:
            if p.pid == me or p.info["cwd"] is None or os.path.realpath(p.info["cwd"]) != root:
                continue
            argv = p.info["cmdline"] or []
            if _is_snakemake(p) or any(".snakemake/scripts/" in a for a in argv):
                found.append(p)
        except (psutil.Error, OSError):
            continue
    return found


def unlock(workdir: str | os.PathLike, snakemake_args: Sequence[str] = ()) -> int:
    """``snakemake --unlock`` in ``workdir`` unless a run is alive there (then 1, naming its processes)."""
    alive = live_runs(workdir)
    if alive:
        listed = "\n".join(f"  pid {p.pid}: {' '.join(p.info['cmdline'] or [])[:160]}" for p in alive)
        print(f"not unlocking {os.path.realpath(workdir)}: a run is alive there\n{listed}\n"
              "Wait for it to end, or stop it first (kill <pid>; its jobs stop with it), then unlock again.",
              file=sys.stderr)
        return 1
    cmd = [str(Path(sys.executable).with_name("snakemake")), "--unlock", *snakemake_args]
    return subprocess.run(cmd, cwd=workdir).returncode


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lrmrepro.jobguard",
                                 description="Remove Snakemake's lock only when no run is alive in the directory.")
    sub = ap.add_subparsers(dest="command", required=True)
    u = sub.add_parser("unlock", help="snakemake --unlock, refused while a run is alive here")
    u.add_argument("--directory", default=".", help="the working directory (default: .)")
    u.add_argument("snakemake_args", nargs="*", help="passed to snakemake after --unlock (e.g. --configfile=...)")
    sub.add_parser("live", help="list the Snakemake processes and jobs alive here").add_argument("--directory",
                                                                                            default=".")
    args = ap.parse_args(argv)
    if args.command == "live":
        for p in live_runs(args.directory):
            print(p.pid, " ".join(p.info["cmdline"] or []))
        return 0
    return unlock(args.directory, args.snakemake_args)


if __name__ == "__main__":
    sys.exit(main())
