"""End to end: the whole workflow on the reduced .test config, in a temporary copy of the workflow."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW_PARTS = ["Snakefile", "rules", "workflow_scripts", "schemas", "recipes", "envs", "docs/report", "src", "profiles",
                  "embedded"]


def copy_workflow(dest: Path) -> Path:
    """A copy of the workflow's parts at `dest` (what a user's clone has): the tests run it in a temporary place."""
    for part in WORKFLOW_PARTS:
        src = ROOT / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        elif src.exists():
            (dest / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / part)
    return dest


def snakemake_command(args, cwd, workflow, cores=2):
    """(command, environment) of a Snakemake run of the workflow copy ``workflow`` in ``cwd``."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(workflow / "Snakefile"), "--directory", str(cwd),
           "--cores", str(cores), *args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(workflow / "src")}
    return cmd, env


def study_folders(base, mutate):
    """A workflow copy under ``base`` and a run folder whose config.yaml is the .test study changed by
    ``mutate(cfg)``; returns (workflow, run)."""
    import yaml

    workflow = copy_workflow(base / "workflow")
    run = base / "run"
    run.mkdir()
    cfg = yaml.safe_load((ROOT / ".test" / "config.yaml").read_text())
    mutate(cfg)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    return workflow, run


def _snakemake(args, cwd, workflow, check=True, timeout=1500):
    cmd, env = snakemake_command(args, cwd, workflow)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        logs = "\n".join(f"== {p}\n{p.read_text()[-3000:]}" for p in (cwd / "logs").rglob("*.log")) if (cwd / "logs").exists() else ""
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}\n{logs[-8000:]}")
    return proc


def _planned_rules(cwd, workflow):
    return _planned_rules_of(cwd, workflow, [])


def _planned_rules_of(cwd, workflow, args):
    out = _snakemake(["-n", "--quiet", "rules", *args], cwd, workflow).stdout
    rules = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] not in ("total", "job"):
            rules[parts[0]] = int(parts[1])
    return rules


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("wf")
    workflow = copy_workflow(base / "workflow")
    run = base / "run"
    run.mkdir()
    shutil.copy2(ROOT / ".test" / "config.yaml", run / "config.yaml")
    (run / "data").mkdir()
    shutil.copy2(ROOT / "tests/fixtures/benchmarks/gsm8k_test.jsonl", run / "data/gsm8k_test.jsonl")
    _snakemake([], run, workflow)
    return workflow, run


def test_tables_and_figures_are_produced(finished_run):
    workflow, run = finished_run
    summary = pl.read_parquet(run / "results/summary/accuracy.parquet")
    # .test grid: precision_grid 2 tasks x 2 precisions x 2 batch sizes = 8 runs; compression: 3 variants x 2
    # decodings = 6 runs; the fp32/bs6/greedy/arith point is shared by both grids -> 13 distinct runs
    assert summary.height == 13
    assert set(summary.get_column("compression")) == {"none", "rtn_w8a16", "rtn_w8a16_protected"}
    assert summary.get_column("accuracy").is_between(0, 1).all()
    assert (summary.get_column("n_items") == 6).all()
    sampled = summary.filter(pl.col("decoding") == "sample")
    assert (sampled.get_column("n_samples") == 12).all()
    mh = summary.filter(pl.col("task") == "multihop")
    assert mh.get_column("f1").is_not_null().all()
    assert (run / "results/figures/accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run / "results/figures/accuracy.pdf").read_bytes()[:4] == b"%PDF"
    assert "| model |" in (run / "results/summary/accuracy.md").read_text()
    # nondeterminism statistics, Tables 3-5 and Figures 4-5
    metrics = pl.read_parquet(run / "results/stats/precision_grid/metrics.parquet")
    assert metrics.height == 4  # 2 tasks x 2 precisions
    assert (metrics.get_column("n_configs") == 2).all()
    assert "std_acc" in metrics.columns and "div_index_mean" in metrics.columns
    floor = json.loads((run / "results/stats/precision_grid/noise_floor.json").read_text())
    assert floor["tokens_identical"] is True  # the same configuration twice on CPU: bit-identical
    for name in ("table3_std_acc.md", "table4_std_output_length.md"):
        assert (run / "results/tables/precision_grid" / name).exists()
    for name in ("figure4_std_top1_prob.png", "figure5_div_index.png"):
        assert (run / "results/figures/precision_grid" / name).stat().st_size > 1000
    # compression table and figure
    table = (run / "results/tables/compression/compression_main_results.md").read_text()
    assert "rtn_w8a16" in table
    assert (run / "results/figures/compression/bits_vs_accuracy.png").exists()
    # importance: heatmap, change vs base, protection spec, protection figure
    assert (run / "results/figures/importance/default/none/heatmap.png").exists()
    assert (run / "results/figures/importance/default/rtn_w8a16/change_vs_base.png").exists()
    assert (run / "results/figures/importance/protection.png").exists()


def test_report_opens_with_the_methods_page(finished_run):
    """`snakemake --report`: the workflow-level `report:` page (docs/report/workflow.rst) describes the method."""
    workflow, run = finished_run
    _snakemake(["--report", str(run / "report.html"), "--report-stylesheet",
                str(workflow / "docs/report/style.css")], run, workflow)
    html = (run / "report.html").read_text()
    assert "When Reasoning Meets Compression" in html and "Avg_Std@top1_prob" in html
    # the landing page: the study and what ran first; the stylesheet that starts it at its top; tables as pages
    assert "This study: default" in html and "What ran." in html and "align-items: flex-start" in html
    assert "accuracy.html" in html


def test_every_artifact_has_provenance(finished_run):
    _, run = finished_run
    metas = [m for m in (run / "results/generations").rglob("generations.meta.json") if m.parent.name != "repeat"]
    assert len(metas) == 13
    meta = json.loads(metas[0].read_text())
    for key in ("config_hash", "code_fingerprint", "packages", "hardware", "git_commit", "wall_seconds", "tokens_per_s"):
        assert key in meta
    assert meta["packages"]["torch"].startswith("2.13")
    model_meta = json.loads((run / "results/models/default/none/meta.json").read_text())
    assert model_meta["stage"] == "train_default_model" and model_meta["n_parameters"] > 0
    comp_meta = json.loads((run / "results/models/default/rtn_w8a16/meta.json").read_text())
    assert comp_meta["stage"] == "compress"
    # the protection loop closed: the protected variant keeps the importance stage's top module(s) untouched
    spec = json.loads((run / "results/importance/default/protect_spec.json").read_text())
    prot_meta = json.loads((run / "results/models/default/rtn_w8a16_protected/meta.json").read_text())
    assert spec["ignore"] and prot_meta["config"]["ignore"] == spec["ignore"]
    assert prot_meta["protection"]["all_identical"] is True
    assert json.loads((run / "results/tasks/arith.meta.json").read_text())["dataset"]["source"] == "synthetic"
    for log in ("train_default_model/default.log", "summarize/accuracy.log"):
        assert (run / "logs" / log).stat().st_size > 0


def test_rerun_is_a_noop(finished_run):
    workflow, run = finished_run
    assert _planned_rules(run, workflow) == {}


def test_one_generation_job_per_engine(finished_run):
    """The runs that differ only in task and batch size are generated by one job (one model load): the precision
    grid's bf16 and fp32 engines (the compression experiment's uncompressed greedy runs share the fp32 one), the
    uncompressed sampled engine, and greedy + sampled engines of rtn_w8a16 and its protected variant (the importance
    traces share the sampled engines): 7 jobs for 23 runs. Each run has its own meta.json naming its engine's tasks
    and batch sizes."""
    workflow, run = finished_run
    jobs = [p.stem for p in (run / "results/benchmarks/generate").glob("*.tsv")]
    assert len(jobs) == 7, jobs
    meta = json.loads(next((run / "results/generations/default/none/arith/bf16").glob(
        "transformers-p1-bs2-*/greedy/generations.meta.json")).read_text())
    assert meta["tasks_in_engine"] == ["arith", "multihop"] and meta["batch_sizes_in_engine"] == [2, 6]
    assert meta["runs_in_engine"] == 4


def test_scoring_code_change_reruns_scoring_not_generation(finished_run):
    workflow, run = finished_run
    scoring = workflow / "src/lrmrepro/scoring/__init__.py"
    original = scoring.read_text()
    try:
        scoring.write_text(original + "\n# a change in the scorers\n")
        planned = _planned_rules(run, workflow)
    finally:
        scoring.write_text(original)
    assert planned.get("score") == 13
    assert "summarize" in planned
    assert not any(r.startswith("generate") for r in planned)
    assert "train_default_model" not in planned and "compress" not in planned


def test_scores_carry_rule_truncation_and_policy(finished_run):
    _, run = finished_run
    folders = [p.parent for p in (run / "results/generations").rglob("scores.parquet")]
    assert len(folders) == 13
    scores = pl.read_parquet(folders[0] / "scores.parquet")
    assert scores.columns == ["id", "sample_idx", "extracted", "correct", "em", "f1", "truncated", "think_closed",
                              "extraction_rule"]
    gens = pl.read_parquet(folders[0] / "generations.parquet")
    assert scores.get_column("truncated").to_list() == (gens.get_column("finish_reason") == "length").to_list()
    meta = json.loads((folders[0] / "scores.meta.json").read_text())
    assert meta["scoring_policy"] == "strict" and sum(meta["extraction_rules"].values()) == scores.height
    assert meta["truncation_rate"] == pytest.approx(scores.get_column("truncated").mean())
    assert "truncated_fraction" in (run / "results/summary/accuracy.md").read_text()


def test_scoring_policy_change_rescores_without_generating(finished_run):
    import yaml

    workflow, run = finished_run
    original = (run / "config.yaml").read_text()
    cfg = yaml.safe_load(original)
    for exp in cfg["experiments"].values():
        exp["scoring"] = "lenient"
    try:
        (run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        planned = _planned_rules(run, workflow)
    finally:
        (run / "config.yaml").write_text(original)
    assert planned.get("score") == 13 and "summarize" in planned
    assert "generate" not in planned and "prepare_task" not in planned


def test_figures_regenerate_from_artifacts_alone(finished_run):
    workflow, run = finished_run
    for f in (run / "results/figures").glob("accuracy.*"):
        f.unlink()
    planned = _planned_rules(run, workflow)
    assert planned == {"figure_accuracy": 1, "all": 1}
    _snakemake([], run, workflow)
    assert (run / "results/figures/accuracy.png").exists()


def test_benchmark_task_is_prepared_by_the_workflow(finished_run):
    workflow, run = finished_run
    _snakemake(["results/tasks/gsm8k.parquet"], run, workflow)
    items = pl.read_parquet(run / "results/tasks/gsm8k.parquet")
    assert items.height == 3
    assert set(items.get_column("answer_format")) == {"boxed_int"}
    assert items.get_column("gold").str.contains(r"^-?\d+$").all()
    dataset = json.loads((run / "results/tasks/gsm8k.meta.json").read_text())["dataset"]  # which data, which version
    assert dataset["source"] == "file" and dataset["path"] == "data/gsm8k_test.jsonl" and len(dataset["sha256"]) == 64
    assert dataset["source_rows"] == 3 and dataset["items"] == 3 and dataset["benchmark"] == "gsm8k"


def _study(run, name, mutate, study="default"):
    """A study file `name` in the run folder: config.yaml changed by `mutate`, writing its statistics, tables and
    figures where the default study does (`study: default`) unless another study name is given."""
    import yaml

    cfg = yaml.safe_load((run / "config.yaml").read_text())
    if study is not None:
        cfg["study"] = study
    mutate(cfg)
    (run / name).write_text(yaml.safe_dump(cfg, sort_keys=False))
    return str(run / name)


def test_a_study_file_replaces_the_default_config(finished_run):
    """`--configfile study.yaml` is the whole study: config.yaml's grid is not merged in (locally and in every
    cluster job, which gets the same --configfiles)."""
    workflow, run = finished_run

    def only_precision(cfg):
        for key in ("compressions", "importance"):
            cfg.pop(key)
        cfg["experiments"].pop("compression")

    study = _study(run, "study.yaml", only_precision)
    out = _snakemake(["-n", "--forceall", "--quiet", "rules", "--configfile", study], run, workflow).stdout
    planned = {line.split()[0] for line in out.splitlines() if len(line.split()) == 2 and line.split()[1].isdigit()}
    assert any(r.startswith("generate_") for r in planned) and "stats_nondeterminism" in planned
    assert not planned & {"compress", "importance_scores", "figures_compression"}, planned


@pytest.mark.parametrize("mutate, expected", [
    (lambda c: c["compressions"]["rtn_w8a16"].__setitem__("recipe", "rtn_w9a16"), "compressions.rtn_w8a16.recipe"),
    (lambda c: c["importance"].__setitem__("behaviour", "daydreaming"), "importance.behaviour"),
    (lambda c: c["tasks"].__setitem__("gsm8k_b", {"source": "benchmark", "benchmark": "gsm8k",
                                                  "path": "data/missing.jsonl"}) or
     c["experiments"]["compression"]["tasks"].append("gsm8k_b"), "tasks.gsm8k_b.path"),
    # more new tokens than the embedded model's context (1,024) holds: refused naming the key, not a 160-GB job
    (lambda c: c["tasks"]["arith"].__setitem__("max_new_tokens", 1000000000), "tasks.arith.max_new_tokens: 1000000000"),
])
def test_config_errors_stop_the_workflow_before_any_job(finished_run, mutate, expected):
    """A bad study is refused while the DAG is built: no job starts, no finished artifact is touched."""
    workflow, run = finished_run
    checkpoint = run / "results/models/default/rtn_w8a16"
    before = checkpoint.stat().st_mtime_ns
    study = _study(run, "bad.yaml", mutate)
    proc = _snakemake(["--configfile", study], run, workflow, check=False)
    assert proc.returncode != 0
    said = proc.stdout + proc.stderr
    assert expected in said and "invalid configuration" in said, said[-2000:]
    assert checkpoint.is_dir() and checkpoint.stat().st_mtime_ns == before



def test_a_missing_extra_environment_stops_the_run_before_any_job(finished_run):
    """A GPTAQ compression needs the GPTQModel environment: when it is missing, the run stops at its start with the
    command that makes it, before any job (not after the jobs that precede the compression); a dry run plans on."""
    workflow, run = finished_run

    def with_gptaq(cfg):
        cfg["compressions"]["gptaq_w4a16"] = {"recipe": "gptaq_w4a16"}
        cfg["experiments"]["compression"]["compressions"].append("gptaq_w4a16")

    study = _study(run, "gptaq.yaml", with_gptaq)
    env_before = os.environ.get("LRMREPRO_GPTQMODEL_PYTHON")
    os.environ["LRMREPRO_GPTQMODEL_PYTHON"] = str(run / "no-such-env/bin/python")
    try:
        planned = _snakemake(["-n", "--configfile", study], run, workflow)
        proc = _snakemake(["--configfile", study], run, workflow, check=False)
    finally:
        if env_before is None:
            os.environ.pop("LRMREPRO_GPTQMODEL_PYTHON")
        else:
            os.environ["LRMREPRO_GPTQMODEL_PYTHON"] = env_before
    assert "compress" in planned.stdout
    said = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "make env-gptqmodel" in said and "gptaq_w4a16" in said, said[-2000:]
    assert not (run / "logs/compress/default/gptaq_w4a16.log").exists()
    assert not (run / "results/models/default/gptaq_w4a16").exists()


def test_duplicate_key_in_config_yaml_is_refused(tmp_path, finished_run):
    workflow, run = finished_run
    bad = tmp_path / "dup"
    bad.mkdir()
    text = (run / "config.yaml").read_text() + "\ndecoding:\n  greedy: {temperature: 0.5}\n"
    (bad / "config.yaml").write_text(text)
    proc = _snakemake(["-n"], bad, workflow, check=False)
    assert proc.returncode != 0 and "key 'decoding' appears twice" in proc.stdout + proc.stderr


def test_scores_meta_records_the_sandbox_isolation(finished_run):
    _, run = finished_run
    meta = json.loads(next((run / "results/generations").rglob("scores.meta.json")).read_text())
    assert meta["sandbox_isolation"] == "not used"  # no code task in the .test grid


def _copy_run(run, dest):
    """A copy of the finished run (results, logs, Snakemake's metadata) for a test that changes artifacts."""
    shutil.copytree(run, dest, symlinks=True)
    return dest


def test_preflight_runs_every_point_of_the_study(finished_run):
    """`snakemake preflight`: one short job per (backend, precision, parallel, hardware label), through the engine
    job's own code; its report records the environment it found."""
    workflow, run = finished_run
    _snakemake(["preflight"], run, workflow)
    reports = sorted((run / "results/preflight").rglob("*.json"))
    # .test: transformers, bf16 and fp32, 1 thread, this machine's label
    assert [r.relative_to(run / "results/preflight").parts[:3] for r in reports] == \
        [("transformers", "bf16", "p1"), ("transformers", "fp32", "p1")]
    rep = json.loads(reports[0].read_text())
    assert rep["status"] == "passed" and rep["items"] == 2 and rep["tokens"] > 0
    assert rep["environment"]["packages.transformers"] and rep["environment"]["detected_hardware"] == reports[0].stem
    assert not list((run / "results/preflight").rglob("*.work"))


def test_a_failed_preflight_blocks_the_grid_of_its_label(finished_run):
    """A grid labelled with hardware this machine is not (a100 on a CPU): its preflight fails, naming the label and
    the machine, and no engine job of that label starts."""
    workflow, run = finished_run

    def on_a100(cfg):
        for key in ("compressions", "importance"):
            cfg.pop(key)
        cfg["experiments"] = {"a100_grid": {**cfg["experiments"]["precision_grid"], "precisions": ["fp32"],
                                            "hardware": ["a100"], "stats": False}}

    study = _study(run, "a100.yaml", on_a100)
    proc = _snakemake(["--configfile", study], run, workflow, check=False)
    assert proc.returncode != 0
    log = (run / "logs/preflight/transformers/fp32/p1/a100.log").read_text()
    assert "HardwareMismatch" in log and "'a100' does not match this machine" in log, log[-2000:]
    assert not list((run / "results/generations").rglob("*-a100/*/generations.parquet"))
    assert not list((run / "logs/generate").glob("*a100*"))
    # told otherwise (preflight.required: none), the engine job itself refuses the label before loading the model
    proc = _snakemake(["--configfile", study, "--config", "preflight={'required': 'none'}"], run, workflow,
                      check=False)
    assert proc.returncode != 0
    gen_log = next((run / "logs/generate").glob("*a100*")).read_text()
    assert "HardwareMismatch" in gen_log and "'a100' does not match this machine" in gen_log
    assert not list((run / "results/generations").rglob("*-a100/*/generations.parquet"))


def test_stats_refuse_a_group_that_pools_two_engine_versions(finished_run, tmp_path):
    """One run of a group says another transformers version: the statistics stop with the run, the field and both
    values; with statistics.allow_mixed_environments they are computed and the table says what was mixed."""
    workflow, _ = finished_run
    run = _copy_run(finished_run[1], tmp_path / "run")
    metas = sorted((run / "results/generations/default/none/arith/bf16").rglob("generations.meta.json"))
    meta = json.loads(metas[0].read_text())
    meta["packages"]["transformers"] = "5.99.0"
    metas[0].write_text(json.dumps(meta))
    target = "results/tables/precision_grid/table3_std_acc.md"
    proc = _snakemake([target], run, workflow, check=False)
    assert proc.returncode != 0
    log = (run / "logs/stats_nondeterminism/precision_grid.log").read_text()
    assert "field packages.transformers" in log and "'5.99.0'" in log and str(metas[0].parent.relative_to(run)) in log, log[-2000:]
    allow = _study(run, "mixed.yaml", lambda cfg: cfg.setdefault("statistics", {}).update(allow_mixed_environments=True))
    _snakemake([target, "--configfile", allow], run, workflow)
    table = (run / target).read_text()
    assert "| mixed_environment |" in table and "arith/bf16: packages.transformers" in table
    metrics = pl.read_parquet(run / "results/stats/precision_grid/metrics.parquet")
    flagged = metrics.filter(pl.col("mixed_environment") != "")
    assert flagged.select("task", "precision").unique().rows() == [("arith", "bf16")]
    assert "5.99.0" in flagged["mixed_environment"][0] and "5.99.0" in flagged["environment"][0]


def test_runs_under_a_label_from_before_the_isa_are_refused_then_relabelled_without_regenerating(finished_run,
                                                                                                  tmp_path):
    """A results folder made when CPU labels were `cpu-<model>` (runs recording no CPU flags): the workflow refuses
    to plan anything and says how to rename them; `python -m lrmrepro.relabel` renames them to this machine's label,
    and the next run regenerates nothing (only what reads the runs' paths is recomputed)."""
    from lrmrepro import hardware as hw
    from lrmrepro.provenance import cpu_model, hardware_label

    workflow, _ = finished_run
    run = _copy_run(finished_run[1], tmp_path / "run")
    label = hardware_label()
    model_part = hw.slug(cpu_model(), gpu=False)
    generated = sorted((run / "results/generations").rglob(f"*-{label}"))
    assert generated
    for folder in generated:  # as the old code left them: old label, no flags recorded
        for meta_path in folder.glob("*/generations.meta.json"):
            meta = json.loads(meta_path.read_text())
            meta["config"]["run"]["hardware"] = meta["detected_hardware"] = model_part
            for key in ("cpu_flags", "isa_env", "torch_cpu_capability"):
                meta["hardware"].pop(key, None)
            meta_path.write_text(json.dumps(meta))
        folder.rename(folder.with_name(folder.name[: -len(label)] + model_part))
    proc = _snakemake(["-n"], run, workflow, check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "from before labels named the instruction set" in out and f"--from {model_part}" in out, out[-3000:]
    assert not list((run / "results/generations").rglob(f"*-{label}"))
    env = {**os.environ, "PYTHONPATH": str(workflow / "src")}
    done = subprocess.run([sys.executable, "-m", "lrmrepro.relabel", "--from", model_part], cwd=run, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"renamed {len(generated)} folders" in done.stdout
    planned = _planned_rules(run, workflow)
    assert not [r for r in planned if r.startswith("generate") or r in ("score", "compress", "distill")], planned
    assert sorted((run / "results/generations").rglob(f"*-{label}")) == generated


def test_a_scores_table_changed_behind_snakemakes_back_is_found_and_refused(finished_run, tmp_path):
    """Issue 34's probe: a valid scores.parquet with rows dropped, its mtime kept (`touch -r`), goes into nothing:
    `python -m lrmrepro.verify` lists it with the rebuild command, and summarize, forced to run, refuses it naming
    the file and the rule that makes it; the command it names rebuilds the file and the run passes."""
    import polars as pl

    workflow, _ = finished_run
    run = _copy_run(finished_run[1], tmp_path / "run")
    scores = sorted((run / "results/generations").rglob("scores.parquet"))[0]
    rel = scores.relative_to(run)
    st = scores.stat()
    pl.read_parquet(scores).head(3).write_parquet(scores)
    os.utime(scores, ns=(st.st_atime_ns, st.st_mtime_ns))
    env = {**os.environ, "PYTHONPATH": str(workflow / "src")}
    checked = subprocess.run([sys.executable, "-m", "lrmrepro.verify"], cwd=run, env=env, capture_output=True,
                             text=True)
    assert checked.returncode == 1 and f"{rel} is not the file its producer wrote" in checked.stdout, checked.stdout
    assert f"--forcerun {rel}" in checked.stdout
    proc = _snakemake(["--forcerun", "summarize", "results/summary/accuracy.md"], run, workflow, check=False)
    log = (run / "logs/summarize/accuracy.log").read_text()
    assert proc.returncode != 0 and f"{rel} is not the file its producer wrote" in log and "rule score" in log
    _snakemake(["--forcerun", str(rel), "results/summary/accuracy.md"], run, workflow)
    assert subprocess.run([sys.executable, "-m", "lrmrepro.verify"], cwd=run, env=env).returncode == 0


def test_a_second_study_leaves_the_first_studys_results_untouched(finished_run, tmp_path):
    """A study from another file writes its statistics, tables, figures and summary under results/studies/<file
    name>/ and its logs under logs/studies/<name>/; the runs it shares with the default study are not regenerated,
    and the default study's tables stay byte for byte what they were, with nothing to do afterwards."""
    workflow, _ = finished_run
    run = _copy_run(finished_run[1], tmp_path / "run")
    first = {p: p.read_bytes() for p in (run / "results").rglob("*")
             if p.is_file() and not p.is_relative_to(run / "results/studies")
             and p.parts[len(run.parts) + 1] in ("summary", "tables", "figures", "stats")}
    assert any(p.name == "accuracy.md" for p in first)

    def two_precisions(cfg):  # the first precision kept: the noise floor's run is the default study's
        for key in ("compressions", "importance"):
            cfg.pop(key)
        grid = cfg["experiments"]["precision_grid"]
        cfg["experiments"] = {"precision_grid": {**grid, "precisions": [grid["precisions"][0], "fp32"]}}

    study = _study(run, "two-precisions.yaml", two_precisions, study=None)
    planned = _planned_rules_of(run, workflow, ["--configfile", study])
    assert not [r for r in planned if r.startswith("generate") or r in ("score", "compress")], planned
    _snakemake(["--configfile", study], run, workflow)
    own = run / "results/studies/two-precisions"
    summary = pl.read_parquet(own / "summary/accuracy.parquet")
    assert summary["precision"].n_unique() == 2 and (own / "stats/precision_grid/metrics.parquet").exists()
    assert (own / "summary/precision_grid/accuracy.html").exists()
    assert (run / "logs/studies/two-precisions/summarize/accuracy.log").exists()
    assert {p: p.read_bytes() for p in first} == first
    assert "Nothing to be done" in _snakemake(["-n"], run, workflow).stdout + _snakemake(["-n"], run, workflow).stderr


def test_make_figures_reruns_the_figure_rules_and_nothing_upstream(finished_run):
    """What `make figures` runs on a finished study: the figure and table rules and the HTML pages of their tables;
    no generation, scoring, statistics or summary."""
    from test_make_figures import figure_rules_in_makefile

    workflow, run = finished_run
    defined = set(_snakemake(["--list-rules"], run, workflow).stdout.split())
    rules = sorted(figure_rules_in_makefile() & defined)
    planned = _planned_rules_of(run, workflow, ["--rerun-triggers", "mtime", "params", "input", "--forcerun", *rules,
                                                "--"])
    assert set(planned) - {"all"} <= set(rules) | {"table_html"}, planned
    assert {"figure_accuracy", "figures_nondeterminism", "table_html"} <= set(planned)


def test_a_cpu_label_of_another_machine_is_refused_when_the_dag_is_built(finished_run, tmp_path):
    """A study naming another CPU kind's label for runs that are not here would generate them on this CPU under
    that label: refused before anything runs, naming the label, this machine's label and a missing file."""
    from lrmrepro.provenance import hardware_label

    workflow, _ = finished_run
    run = _copy_run(finished_run[1], tmp_path / "run")
    foreign = "cpu-intel-xeon-avx2" if hardware_label() != "cpu-intel-xeon-avx2" else "cpu-amd-epyc-avx2"

    def two_machines(cfg):
        cfg["experiments"]["precision_grid"]["hardware"] = ["auto", foreign]

    proc = _snakemake([f"--configfile={_study(run, 'two.yaml', two_machines)}", "-n"], run, workflow, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"hardware label '{foreign}' is not this machine's ('{hardware_label()}'" in out, out[-2000:]
    assert f"-{foreign}/greedy/generations.parquet" in out and "Nothing was run" in out


def test_a_grown_grid_and_a_failed_job_generate_only_what_is_missing(finished_run, tmp_path):
    """The generation cache (lrmrepro.generate.cache, in the working directory's .lrmrepro-cache): a batch size added
    to the precision grid reruns its engine jobs, which copy the finished runs' tables and generate only the new
    runs; an engine job's outputs deleted (what Snakemake does to every output of a failed or killed job) come back
    from the cache without generating."""
    import yaml

    workflow, _ = finished_run
    run = _copy_run(finished_run[1], tmp_path / "run")
    assert list((run / ".lrmrepro-cache" / "generations").glob("*/table.parquet"))

    def grown(cfg):
        cfg["experiments"]["precision_grid"]["batch_sizes"] = [2, 4, 6]

    study = _study(run, "grown.yaml", grown)
    _snakemake([f"--configfile={study}", "results/stats/precision_grid/metrics.parquet"], run, workflow)
    grid = run / "results/generations/default/none/arith/bf16"
    metas = {p.parent.parent.name.split("-")[2]: json.loads(p.read_text())
             for p in grid.glob("transformers-p1-bs*/greedy/generations.meta.json")}
    assert {bs: m["cache"] for bs, m in metas.items()} == {"bs2": "hit", "bs4": "miss", "bs6": "hit"}
    assert metas["bs2"]["tokens_this_attempt"] == 0 and metas["bs4"]["tokens_this_attempt"] > 0
    # every output of the fp32 engine job removed, as after a failure: all of them from the cache
    fp32 = sorted((run / "results/generations/default/none").glob("*/fp32/transformers-p1-bs*/greedy"))
    before = {p: (p / "generations.parquet").read_bytes() for p in fp32}
    for p in fp32:
        (p / "generations.parquet").unlink()
        (p / "generations.meta.json").unlink()
    _snakemake([f"--configfile={study}", *[str((p / "generations.parquet").relative_to(run)) for p in fp32]], run,
               workflow)
    for p in fp32:
        assert json.loads((p / "generations.meta.json").read_text())["cache"] == "hit", p
        assert (p / "generations.parquet").read_bytes() == before[p]
    listed = subprocess.run([sys.executable, "-m", "lrmrepro.generate.cache", "list"], cwd=run, capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": str(workflow / "src")})
    assert listed.returncode == 0 and "finished" in listed.stdout and ".lrmrepro-cache" in listed.stdout
    assert yaml.safe_load((run / "grown.yaml").read_text())["experiments"]["precision_grid"]["batch_sizes"] == [2, 4, 6]


def test_a_checkout_moved_with_its_results_has_nothing_to_do(finished_run, tmp_path):
    """No absolute path in a recorded input, param or log name: the workflow and its finished run moved together
    to another folder dry-run to "Nothing to be done" (the embedded model's inputs are relative to the working
    directory)."""
    workflow, run = finished_run
    moved = tmp_path / "elsewhere"
    shutil.copytree(workflow.parent, moved, symlinks=True)
    out = _snakemake(["-n"], moved / run.name, moved / workflow.name).stdout
    assert "Nothing to be done" in out, out[-3000:]


def test_the_default_target_refills_holes(finished_run, tmp_path):
    """A per-run generations file and an intermediate statistics table removed while what was made from them is
    still there: plain `snakemake` makes them again (the generations from the cache), not "Nothing to be done"."""
    workflow, _ = finished_run
    run = _copy_run(finished_run[1], tmp_path / "run")
    gen = next((run / "results/generations/default/none/multihop/bf16").glob("*-bs6-*/greedy/generations.parquet"))
    points = run / "results/stats/precision_grid/divergence_points.parquet"
    before = gen.read_bytes()
    gen.unlink()
    points.unlink()
    planned = _planned_rules(run, workflow)
    assert "stats_divergence" in planned and any(r.startswith("generate_default_none_bf16") for r in planned), planned
    _snakemake([], run, workflow)
    assert gen.read_bytes() == before and points.exists()
    assert json.loads(gen.with_name("generations.meta.json").read_text())["cache"] == "hit"


def test_the_noise_floors_second_generation_is_generated_not_copied(finished_run):
    """The repeat run of the noise floor bypasses the generation cache: a copy of the first generation would make
    the noise floor zero by construction."""
    _, run = finished_run
    repeat = next((run / "results/generations").rglob("repeat/generations.meta.json"))
    meta = json.loads(repeat.read_text())
    assert meta["cache"] == "off" and meta["tokens_this_attempt"] > 0
