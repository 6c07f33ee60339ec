"""profiles/slurm through a real single-node SLURM cluster (scripts/local-slurm/start.sh, run as root; fake GPUs).

The test copies profiles/slurm and changes only the site-specific values (partition names, memory and CPUs that fit
this node) and the status polling (no accounting daemon here: squeue instead of sacct). Everything else (executor,
rule resources -> --gpus) is the project's profile. Slow: ~30-60 s (each SLURM job costs two
nested Snakemake start-ups)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "slurm"

pytestmark = pytest.mark.slow


def _can_start_slurm() -> str | None:
    if os.geteuid() != 0:
        return "the local SLURM cluster is started as root (scripts/local-slurm/start.sh)"
    if shutil.which("apt-get") is None and shutil.which("slurmctld") is None:
        return "no slurm-wlm and no apt-get to install it"
    return None


DAEMONS = ("slurmd", "slurmctld", "munged")


def running_daemons() -> dict[str, int]:
    """The local cluster's daemons that are running, by the PID files scripts/local-slurm/start.sh keeps."""
    run = Path(os.environ.get("LRMREPRO_SLURM_BASE", "/tmp/lrmrepro-slurm")) / "run"
    out = {}
    for name in DAEMONS:
        try:
            pid = int((run / f"{name}.pid").read_text().split()[0])
            if Path(f"/proc/{pid}/comm").read_text().strip() == name:
                out[name] = pid
        except (OSError, ValueError, IndexError):
            continue
    return out


@pytest.fixture(scope="module")
def slurm_cluster():
    """The local cluster, left as it was found: daemons this fixture started are stopped after the module's tests
    (and checked to be gone); a cluster that was already up is used and left running."""
    why = _can_start_slurm()
    if why:
        pytest.skip(why)
    before = running_daemons()
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "local-slurm" / "start.sh")], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "LRMREPRO_FAKE_GPUS": "2"})
    started = {name: pid for name, pid in running_daemons().items() if name not in before}
    try:
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        yield started
    finally:
        if started:
            subprocess.run(["bash", str(ROOT / "scripts" / "local-slurm" / "stop.sh"), *started], timeout=120,
                           capture_output=True)
        alive = {name: pid for name, pid in started.items() if Path(f"/proc/{pid}").exists()
                 and Path(f"/proc/{pid}/comm").read_text().strip() == name}
        assert not alive, f"daemons this test session started outlive it: {alive}"


def local_profile(dest: Path) -> Path:
    """profiles/slurm with this node's partition and sizes, and squeue status polling."""
    prof = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    small = {"slurm_partition": "debug", "mem_mb": 200, "runtime": 5}
    prof["default-resources"] = {**prof["default-resources"], **small, "cpus_per_task": 1}
    prof["set-resources"] = {rule: {**res, **small, **({"cpus_per_gpu": 1} if "cpus_per_gpu" in res else {})}
                             for rule, res in prof["set-resources"].items()}
    prof.update({"slurm-status-command": "squeue", "slurm-init-seconds-before-status-checks": 1, "jobs": 4,
                 "latency-wait": 5, "retries": 0, "keep-going": False})
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "config.yaml").write_text(yaml.safe_dump(prof))
    return dest


def _lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


def _submitted_rules(log: str) -> list[str]:
    """The rules whose jobs the run submitted to SLURM, from the per-job log paths the executor prints (an engine's
    rule `generate_<engine>` counted as `generate`)."""
    rules = re.findall(r"has been submitted with SLURM jobid \d+ \(log: \S*/slurm_logs/rule_([^/]+)/", log)
    return sorted("generate" if r.startswith("generate_") else r for r in rules)


def test_profile_gpu_requests_and_cpu_jobs(slurm_cluster, tmp_path):
    work = tmp_path / "wf"
    shutil.copytree(FIXTURE, work)
    profile = local_profile(tmp_path / "profile")
    snakemake = Path(sys.executable).with_name("snakemake")
    cmd = ["timeout", "-k", "20", "300", str(snakemake), "--profile", str(profile), "--snakefile",
           str(work / "Snakefile"), "--directory", str(work), "--config", "gpu_model=fake"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=work)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = work / "out"
    a, b, tp, score = (_lines(out / f) for f in ("generate_a.txt", "generate_b.txt", "tp.txt", "score.txt"))
    # each job ran exactly once
    assert len(a) == len(b) == len(tp) == len(score) == 1
    # generation jobs: one SLURM job each (one engine per job), each with one GPU
    assert a[0][0] != b[0][0] and a[0][0] != "", (a, b)
    assert a[0][1] != "unset" and len(a[0][1].split(",")) == 1 and len(b[0][1].split(",")) == 1
    # tensor parallel = 2: one job, both GPUs visible to it
    assert tp[0][1] == "0,1", tp
    assert tp[0][0] not in (a[0][0], score[0][0])
    # CPU stage: its own SLURM job, no GPU
    assert score[0][1] == "unset" and score[0][0] != a[0][0]


def _profile_run(tmp_path: Path, *targets: str, study: dict | None = None) -> tuple[Path, str]:
    """The project's workflow through the local profile in a new run folder with the .test config (and `study`, given
    with --configfile, when there is one); returns the folder and the run's Snakemake log."""
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy2(ROOT / ".test" / "config.yaml", run / "config.yaml")
    extra = []
    if study is not None:
        (run / "study.yaml").write_text(yaml.safe_dump(study))
        extra = ["--configfile", str(run / "study.yaml")]
    profile = local_profile(tmp_path / "profile")
    snakemake = Path(sys.executable).with_name("snakemake")
    cmd = ["timeout", "-k", "20", "600", str(snakemake), "--profile", str(profile), "--snakefile",
           str(ROOT / "Snakefile"), "--directory", str(run), *targets, *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=run)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = max((run / ".snakemake" / "log").glob("*.snakemake.log"), key=lambda p: p.stat().st_mtime).read_text()
    return run, log


def test_real_workflow_stages_run_as_slurm_jobs(slurm_cluster, tmp_path):
    """The project's own workflow (the .test config) through the profile: model training runs as a SLURM job, task
    preparation (a download for hub benchmarks) on the submitting host, and their artifacts appear (a few jobs only:
    each costs ~10 s of nested start-ups)."""
    run, log = _profile_run(tmp_path, "results/tasks/arith.parquet", "results/models/default/none")
    assert (run / "results/tasks/arith.parquet").exists()
    assert (run / "results/models/default/none/config.json").exists()
    # the jobs went through SLURM: the run's log names the SLURM run and each job's SLURM job id
    assert "SLURM run ID" in log
    assert _submitted_rules(log) == ["train_default_model"], log[-2000:]
    assert "localrule prepare_task:" in log


def test_a_custom_study_means_the_same_in_every_slurm_job(slurm_cluster, tmp_path):
    """`--configfile study.yaml` through the profile: each SLURM job reads the same study as the submitting run
    (config.yaml's default grid is never merged in), so `summarize` waits for the study's runs only, and writes
    where the study's own results go (results/studies/study/)."""
    cfg = yaml.safe_load((ROOT / ".test" / "config.yaml").read_text())
    for key in ("compressions", "importance"):
        cfg.pop(key)
    cfg["tasks"] = {"arith": {"source": "synthetic", "n": 3, "max_new_tokens": 8}}
    cfg["experiments"] = {"mini": {"models": ["default"], "tasks": ["arith"], "precisions": ["fp32"],
                                   "parallel": [1], "batch_sizes": [3], "decoding": ["greedy"]}}
    # config.yaml (the .test defaults) stays in the folder: a job must not merge it in
    run, log = _profile_run(tmp_path, "results/studies/study/summary/accuracy.md", study=cfg)
    import polars as pl

    assert not (run / "results/summary").exists()
    summary = pl.read_parquet(run / "results/studies/study/summary/accuracy.parquet")
    assert summary.height == 1 and summary["batch_size"].to_list() == [3]
    assert _submitted_rules(log) == ["generate", "score", "summarize", "train_default_model"], log[-2000:]
    assert "localrule prepare_task:" in log


def test_preflight_runs_as_slurm_jobs(slurm_cluster, tmp_path):
    """`snakemake preflight --profile ...`: each preflight point is a SLURM job of its own (the kind of node the grid's
    engine jobs get), and its report records the node's environment."""
    run, log = _profile_run(tmp_path, "preflight")
    assert _submitted_rules(log) == ["preflight_transformers", "preflight_transformers", "train_default_model"], log[-2000:]
    reports = sorted((run / "results/preflight").rglob("*.json"))
    assert len(reports) == 2 and all(json.loads(r.read_text())["status"] == "passed" for r in reports)


def test_stop_script_stops_only_the_daemons_it_is_given(slurm_cluster):
    """What the fixture relies on to leave a cluster as it found it: `stop.sh slurmd` ends slurmd alone, and
    start.sh brings it back without touching the daemons that were up."""
    before = running_daemons()
    assert {"slurmd", "slurmctld"} <= set(before), before
    subprocess.run(["bash", str(ROOT / "scripts" / "local-slurm" / "stop.sh"), "slurmd"], check=True, timeout=120,
                   capture_output=True)
    after = running_daemons()
    assert "slurmd" not in after and after.get("slurmctld") == before["slurmctld"]
    assert not Path(f"/proc/{before['slurmd']}").exists()
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "local-slurm" / "start.sh")], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "LRMREPRO_FAKE_GPUS": "2"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    again = running_daemons()
    assert again.get("slurmctld") == before["slurmctld"] and "slurmd" in again
    if "slurmd" in slurm_cluster:  # the fixture started slurmd: it stops the new one too
        slurm_cluster["slurmd"] = again["slurmd"]
