"""Jobs die with their Snakemake process; unlocking is refused while a run is alive (lrmrepro.jobguard)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from lrmrepro import jobguard
from conftest import ROOT

# a stand-in for Snakemake: a process whose program is named `snakemake`, starting a job like Snakemake's script
# jobs (python .snakemake/scripts/<tmp>.py in the same working directory) that guards itself and starts a
# long-running grandchild
FAKE_SNAKEMAKE = """import subprocess, sys, time
job = subprocess.Popen([sys.executable, sys.argv[1]])
print(job.pid, flush=True)
time.sleep(600)
"""
JOB = """import subprocess, sys, time
sys.path.insert(0, {src!r})
from lrmrepro import jobguard
assert jobguard.guard_job(poll=0.2) is not None, "no snakemake ancestor found"
grandchild = subprocess.Popen(["sleep", "600"])
open({beat!r}, "w").write(str(grandchild.pid))
while True:
    time.sleep(0.1)
"""


def _start(tmp_path: Path) -> tuple[subprocess.Popen, psutil.Process, int]:
    fake = tmp_path / "bin" / "snakemake"
    fake.parent.mkdir()
    fake.write_text(FAKE_SNAKEMAKE)
    beat = tmp_path / "grandchild.pid"
    script = tmp_path / ".snakemake" / "scripts" / "tmpjob.generate.py"
    script.parent.mkdir(parents=True)
    script.write_text(JOB.format(src=str(ROOT / "src"), beat=str(beat)))
    sched = subprocess.Popen([sys.executable, str(fake), ".snakemake/scripts/tmpjob.generate.py"],
                             cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    job = psutil.Process(int(sched.stdout.readline()))
    for _ in range(100):
        if beat.exists() and beat.read_text():
            break
        time.sleep(0.1)
    return sched, job, int(beat.read_text())


def _kill(*pids: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_job_and_its_children_stop_when_snakemake_is_killed(tmp_path):
    sched, job, grandchild = _start(tmp_path)
    try:
        assert job.is_running() and psutil.pid_exists(grandchild)
        assert {p.pid for p in jobguard.live_runs(tmp_path)} == {sched.pid, job.pid}
        assert jobguard.unlock(tmp_path) == 1  # refused while the run is alive
        os.kill(sched.pid, signal.SIGKILL)  # what an OOM kill or `kill -9` of Snakemake does
        sched.wait()
        gone, alive = psutil.wait_procs([job], timeout=10)
        assert not alive, "the orphaned job kept running"
        for _ in range(50):
            if not psutil.pid_exists(grandchild) or psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the job's child process outlived it")
        assert jobguard.live_runs(tmp_path) == []
    finally:
        _kill(sched.pid, job.pid, grandchild)


def test_unlock_names_the_live_processes(tmp_path, capsys):
    sched, job, grandchild = _start(tmp_path)
    try:
        assert jobguard.main(["unlock", "--directory", str(tmp_path)]) == 1
        err = capsys.readouterr().err
        assert "a run is alive there" in err and f"pid {sched.pid}:" in err and f"pid {job.pid}:" in err
    finally:
        _kill(sched.pid, job.pid, grandchild)


def test_a_script_run_by_hand_is_not_guarded():
    assert jobguard.scheduler() is None or jobguard._is_snakemake(jobguard.scheduler())
