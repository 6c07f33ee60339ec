# Shared by all rule files -- the study (read, validated and built once), wildcard constraints, input functions and
# the final targets. What the grid means (runs, engines, experiments) is lrmrepro.study.Study; this file only asks it.
import json
import os
import re
import sys
from pathlib import Path

# The Snakefile imports the package from this checkout; job_environment (below) makes every job do the same.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from snakemake.exceptions import WorkflowError

from lrmrepro import fingerprint
from lrmrepro.config import ConfigError, load_study
from lrmrepro.environment import job_environment, missing_environments, needed_environments
from lrmrepro.generate import preflight
from lrmrepro.generate.engines import backend_labels, engine_of
from lrmrepro.generate.preflight import engine_options
from lrmrepro.generate.gate import check_engines
from lrmrepro.generate.vllm_support import UnsupportedRun
from lrmrepro.hardware import HardwareMismatch, check_planned_cpu_labels, on_cpu
from lrmrepro.precision import PRECISIONS
from lrmrepro.provenance import hardware_label, machine_record
from lrmrepro.relabel import LegacyResults, check_results
from lrmrepro.models.context import ContextError, check_max_new_tokens, model_contexts
from lrmrepro.runs import CHECKPOINT, DEQUANTIZED, GGUF, TASK_ITEMS, Engine, Run, decoding_labels
from lrmrepro.study import Study, StudyError, study_folders, study_name

# --- the study's configuration: config.yaml of the working directory, or the file(s) given with --configfile,
#     which replace it (they are never merged into config.yaml's grid). --config KEY=VALUE overrides either.
#     Snakemake starts every cluster job with the same --configfiles and --config, so a job reads the same study.
#     Read strictly (a YAML error names file and line, a duplicate key is refused), validated against the schema
#     with defaults filled in, and cross-checked (recipes, benchmark files, names) before any job is planned
#     (lrmrepro.config.load_study: the one validation); then built into the Study (lrmrepro.study), once.
STUDY_FILES = [str(f) for f in workflow.overwrite_configfiles] or ["config.yaml"]
_HARDWARE = None


def resolve_hardware(label):
    """`auto` -> this machine's accelerator (or CPU model) as a slug; anything else is kept as given."""
    global _HARDWARE
    if label != "auto":
        return label
    if _HARDWARE is None:
        _HARDWARE = hardware_label()
    return _HARDWARE


try:
    _validated = load_study(STUDY_FILES, dict(workflow.config_settings.config), workdir=".")
    config.clear()
    config.update(_validated)
    # experiments, their runs (each grid expanded once), the engines (one model load per grid point, the
    # importance stage's traces included), every run's scoring policy (a run two experiments share gets one)
    STUDY = Study(config, resolve_hardware)
    # the study's own statistics, tables, figures and summary (per-run artifacts are shared by every study)
    STUDY_NAME = study_name(config, STUDY_FILES)
    STUDY_RESULTS, STUDY_LOGS = study_folders(STUDY_NAME)
    config["study"] = STUDY_NAME  # for the report's landing page (docs/report/workflow.rst)
    config["this_machine"] = resolve_hardware("auto")  # what `auto` meant when this DAG was built
    # runs under a CPU label from before labels named the ISA are renamed or moved away, never run beside
    check_results("results", {run.hardware for run in STUDY.runs})
    # a CPU label names the numerics: runs under another CPU's label are made on that CPU, never generated here
    check_planned_cpu_labels({r.hardware: r.generations for r in sorted(STUDY.runs, key=lambda r: r.generations,
                                                                         reverse=True)
                              if on_cpu(r.hardware) and not os.path.exists(r.generations)},
                             machine_record(), STUDY.hardware_aliases)
    # no task asks a model for more new tokens than its context holds (where its config can be read already)
    check_max_new_tokens({(r.model, r.task) for runs in STUDY.engines.values() for r in runs}, config["tasks"],
                         model_contexts(config["models"], CHECKPOINT))
except (ConfigError, StudyError, ContextError, HardwareMismatch) as err:
    raise WorkflowError(f"invalid configuration ({', '.join(STUDY_FILES)}): {err}") from None
except LegacyResults as err:
    raise WorkflowError(str(err)) from None
RUNS = STUDY.runs
ENGINES = STUDY.engines
EXPERIMENTS = STUDY.experiments
#: the tasks the study's experiments generate for (the dataset table), and its experiments with sampled statistics
STUDY_TASKS = sorted({r.task for r in RUNS}, key=list(config["tasks"]).index)
SAMPLED_STATS = [e for e in STUDY.stats_experiments() if e.sampled]


def S(path):
    """A path of this study's own artifacts (statistics, tables, figures, summary): results/<path> for the default
    study, results/studies/<name>/<path> for another (the schema's `study`)."""
    return f"{STUDY_RESULTS}/{path}"


def SLOG(path):
    """The log of a rule that makes this study's own artifacts."""
    return f"{STUDY_LOGS}/{path}"


def scoring_policy(wildcards):
    """The run's truncation policy, strict or lenient (a params function of the score job: changing it rescores
    the run and reruns what follows, never generation). A path outside the grid gets the default, strict."""
    return STUDY.scoring_policies.get(Run.from_wildcards(wildcards), "strict")


def _alternatives(names):
    return "|".join(re.escape(n) for n in names)


wildcard_constraints:
    model=_alternatives(config["models"]),
    compression=_alternatives(["none", *config["compressions"]]),
    compressed=_alternatives(config["compressions"]) or "(?!)",
    task=_alternatives(config["tasks"]),
    precision=_alternatives(PRECISIONS),
    backend=_alternatives(backend_labels(config)),
    parallel=r"\d+",
    batch_size=r"\d+",
    hardware=r"[A-Za-z0-9-]+",
    decoding=_alternatives([lbl for d, spec in config["decoding"].items() for lbl in decoding_labels(d, spec)]),
    experiment=_alternatives(config["experiments"]),


# --- code fingerprints: each rule's `params: code=code_of("<its script>")` hashes the script and every package module
#     it imports (transitively, lrmrepro.fingerprint): a code change reruns exactly the rules whose code changed,
#     and what follows them.
def code_of(script):
    return fingerprint.code_of(Path(workflow.basedir) / "workflow_scripts" / script)


def module_code(module):
    """The same for a rule that runs a package module (`python -m <module>`)."""
    return fingerprint.code_of(module, root=Path(workflow.basedir) / "src" / "lrmrepro")


# --- models
def models_with_source(*sources):
    return [m for m, spec in config["models"].items() if spec["source"] in sources] or ["(?!)"]


def embedded_model_files(wildcards):
    """The shipped files of the embedded default model (inputs: a changed file reruns the install, which then
    refuses it by its sha256), relative to the working directory: a checkout moved with its results keeps the same
    input paths, so Snakemake's input trigger does not rerun the install and everything after it."""
    import os

    from lrmrepro.models.embedded import shipped_files

    return [os.path.relpath(p) for p in shipped_files()]


def model_spec(wildcards):
    return config["models"][wildcards.model]


def compression(wildcards):
    """The compressed variant of a job (lrmrepro.compressions.Compression)."""
    return STUDY.compressions[wildcards.compressed]


def protect_spec_input(wildcards):
    """The protection loop: a variant with protect_from_importance depends on the importance ranking (`true`: the
    uncompressed model's; `{model: <variant>}`: that compressed variant's, one of importance.compare)."""
    return compression(wildcards).protect_spec(wildcards.model) or []


def compressions_of(method):
    """Wildcard pattern of the compressions of one method (rules/compress.smk): `distill`, or `recipe` (the others)."""
    return _alternatives(STUDY.compressions_of(method)) or "(?!)"


# plain wildcard patterns rather than input functions wherever possible (CHECKPOINT, TASK_ITEMS, Run.FOLDER); Snakemake
# resolves them without a function call per job (about a tenth of the DAG build time on a 10,000-job grid,
# benchmarks/dag.py). CHECKPOINT = "results/models/{model}/{compression}" (lrmrepro.runs).
def base_checkpoint(wildcards):
    return CHECKPOINT.format(model=wildcards.model, compression="none")


# --- tasks
def task_spec(wildcards):
    return config["tasks"][wildcards.task]


def task_needs_model(wildcards):
    """Synthetic tasks exclude the embedded model's training questions: they depend on the training config."""
    return config["train"] if config["tasks"][wildcards.task]["source"] == "synthetic" else {}


# --- generation: what an engine job is told about each of its runs (lrmrepro.study.Study.run_spec)
run_spec = STUDY.run_spec


# the noise floor: a run generated a second time, beside the first (rule generate_repeat)
REPEAT = f"{Run.FOLDER}/repeat/generations"


def repeat_run_spec(wildcards):
    run = Run.from_wildcards(wildcards)
    repeat = REPEAT.format(**run.labels())
    return [run_spec(run, f"{repeat}.parquet", f"{repeat}.meta.json")]


# --- preflight (lrmrepro.generate.preflight): one short job per distinct (backend, precision, parallel size,
#     hardware label), with the first model and task of an engine there; the engine jobs of a label that needs one
#     (preflight.required) take its report as input, so they start only after it passed
PREFLIGHT = "results/preflight/{backend}/{precision}/p{parallel}/{hardware}.json"


PREFLIGHT_POINTS = preflight.points(ENGINES, config, STUDY.hardware_aliases, TASK_ITEMS)


def preflight_point(wildcards):
    return PREFLIGHT_POINTS[(wildcards.backend, wildcards.precision, int(wildcards.parallel), wildcards.hardware)]


def preflight_model(wildcards):
    model = preflight_point(wildcards)["model"]
    if engine_of(wildcards.backend).name == "llamacpp":
        return GGUF.format(model=model)
    return CHECKPOINT.format(model=model, compression="none")


def preflight_tasks(wildcards):
    return preflight_point(wildcards)["tasks_parquet"]


def preflight_targets():
    return [PREFLIGHT.format(backend=b, precision=p, parallel=n, hardware=h) for b, p, n, h in PREFLIGHT_POINTS]


def preflight_of(engine):
    """The preflight report an engine job waits for: none where preflight.required says its label needs none."""
    if not preflight.needs_preflight(config["preflight"]["required"], engine.hardware):
        return []
    return [PREFLIGHT.format(backend=engine.backend, precision=engine.precision, parallel=engine.parallel,
                             hardware=engine.hardware)]


def repeat_preflight(wildcards):
    return preflight_of(Engine.of(Run.from_wildcards(wildcards)))


def engine_task_items(runs):
    return sorted({TASK_ITEMS.format(task=r.task) for r in runs})


def generation_threads(wildcards):
    """transformers: `parallel` is the number of CPU threads."""
    return int(wildcards.parallel)


def profile_resources(name):
    """The profile's `set-resources` entry for `name` (`generate`, `generate_vllm`): every engine rule of that kind
    gets it, as the engine rules are named after their engines. Snakemake keeps them as `Resource` objects, which a
    rule's `resources:` does not take: their raw values (numbers, or strings Snakemake evaluates per job)."""
    return {key: getattr(value, "raw", value)
            for key, value in workflow.resource_settings.overwrite_resources.get(name, {}).items()}


# --- the environment of every job (lrmrepro.environment.job_environment): PYTHONPATH starts with this checkout's
#     src/, so scripts, shell commands and the vLLM environment's python run the code the fingerprints were
#     computed from; LRMREPRO_VLLM_PYTHON names the vLLM environment's interpreter (vLLM and llm-compressor pin
#     different compressed-tensors, so vLLM has its own environment: scripts/setup-extra-env.sh makes
#     .venvs/vllm-cpu; on a cluster, set LRMREPRO_VLLM_PYTHON to the GPU environment's python). Neither is a param of
#     a rule, as both are paths of this checkout / machine, and a params change would rerun every job (on a fresh
#     clone elsewhere: all).
job_environment(workflow.basedir)


def gpu_count(engine):
    """SLURM `--gpus`: the tensor-parallel size of a vLLM engine on GPU hardware, none for CPU hardware."""
    return 0 if on_cpu(engine.hardware) else int(engine.parallel)


def repeat_checkpoint(wildcards):
    """The checkpoint of the noise floor's repeated run: what its engine loads (a dense copy where dequantized)."""
    return STUDY.engine_checkpoint(Engine.of(Run.from_wildcards(wildcards)))


def vllm_threads(engine):
    """Cores of a vLLM engine job: on CPU one per tensor-parallel rank (each rank is pinned to its own), on GPU 1;
    of a llama.cpp job: its threads on CPU, 1 on GPU."""
    return int(engine.parallel) if on_cpu(engine.hardware) else 1


def gpu_model(engine):
    """SLURM GPU type: the hardware label itself (name cluster hardware labels after the gres GPU types)."""
    return "" if on_cpu(engine.hardware) else engine.hardware


def check_engine_runs():
    """Every engine of the study can be executed by its backend (lrmrepro.generate.gate.check_engines)."""
    try:
        check_engines(ENGINES, config, STUDY.compressions)
    except UnsupportedRun as err:
        raise WorkflowError(str(err)) from None


def check_environments():
    """Before the first job starts (onstart; dry runs skip it): every extra environment that a job about to run
    needs exists, so a missing one stops the run at once instead of after the jobs before it (training: minutes)."""
    needed = needed_environments(workflow.dag.needrun_jobs(), ENGINES, STUDY.compressions)
    missing = missing_environments(needed)
    if missing:
        raise WorkflowError("\n".join(missing))


# --- aggregation
def all_run_refs():
    return [r.ref() for r in RUNS]


def all_scores():
    return [r.scores for r in RUNS]


def all_generations():
    return [r.generations for r in RUNS]


def experiment_run_refs(wildcards):
    return [r.ref() for r in EXPERIMENTS[wildcards.experiment].runs]


def experiment_scores(wildcards):
    return [r.scores for r in EXPERIMENTS[wildcards.experiment].runs]


def experiment_generations(wildcards):
    return [r.generations for r in EXPERIMENTS[wildcards.experiment].runs]


def experiment_metas(wildcards):
    """Each run's generations.meta.json: the environment it was generated in (lrmrepro.stats.pooling checks that a
    group's runs may be pooled)."""
    return [r.meta for r in EXPERIMENTS[wildcards.experiment].runs]


# what the statistics stages may pool (lrmrepro.stats.pooling): params of every stage that checks its groups
POOLING = {"allow_mixed": config["statistics"]["allow_mixed_environments"], "aliases": config["hardware_aliases"]}


def pass_at_ks(wildcards):
    return STUDY.pass_at_ks(wildcards.experiment)


def noise_experiment(wildcards):
    """The experiment whose runtime grid provides the noise a compression effect is compared with (or None)."""
    return EXPERIMENTS[wildcards.experiment].noise_from


def noise_summary(wildcards):
    name = noise_experiment(wildcards)
    return S(f"summary/{name}/accuracy.parquet") if name else []


def experiment_compressed_names(wildcards):
    return EXPERIMENTS[wildcards.experiment].compressed


def experiment_checkpoints(wildcards):
    """Compressed checkpoints of the experiment's first model (their meta.json gives bits and sparsity)."""
    model = EXPERIMENTS[wildcards.experiment].models[0]
    return [CHECKPOINT.format(model=model, compression=c) for c in experiment_compressed_names(wildcards)]


def experiment_base_checkpoint(wildcards):
    return CHECKPOINT.format(model=EXPERIMENTS[wildcards.experiment].models[0], compression="none")


def experiment_first_decoding(wildcards):
    return EXPERIMENTS[wildcards.experiment].decoding[0]


# --- importance (None: the study has no importance stage, and rules/importance.smk is not included); its settings
#     come with the schema's defaults filled in
IMPORTANCE = config.get("importance")


def importance_generations(wildcards):
    """The traces labelled: the importance experiment's first precision / runtime configuration, its decoding."""
    return [r.generations for r in STUDY.importance_reference_runs(wildcards.model, wildcards.compression)]


def protection_base_scores(wildcards):
    return f"results/importance/{IMPORTANCE['models'][0]}/none/scores.parquet"


def protection_summary(wildcards):
    name = IMPORTANCE["protection_figure"].get("experiment", IMPORTANCE["experiment"])
    return S(f"summary/{name}/accuracy.parquet")


def importance_targets():
    if not IMPORTANCE:
        return []
    out = []
    for model in IMPORTANCE["models"]:
        out.append(S(f"figures/importance/{model}/none/heatmap.png"))
        out.append(S(f"figures/importance/{model}/none/rank_stability.png"))
        out.append(S(f"tables/importance/{model}/none/stability.md"))
        out += [S(f"figures/importance/{model}/{c}/change_vs_base.png") for c in IMPORTANCE["compare"]]
        if IMPORTANCE["protect"]:
            out.append(f"results/importance/{model}/protect_spec.json")
    if "protection_figure" in IMPORTANCE:
        out.append(S("figures/importance/protection.png"))
    return out


def noise_floor_reference(wildcards):
    """The experiment's first greedy transformers run: generated twice for the noise floor."""
    run = EXPERIMENTS[wildcards.experiment].noise_floor_run
    if run is None:
        raise WorkflowError(f"noise floor of experiment {wildcards.experiment}: it has no greedy transformers run")
    return run


def noise_floor_run(wildcards):
    return noise_floor_reference(wildcards).generations


def noise_floor_repeat(wildcards):
    return REPEAT.format(**noise_floor_reference(wildcards).labels()) + ".parquet"


def noise_floor_labels(wildcards):
    return noise_floor_reference(wildcards).labels()


def figure_formats():
    return config["report"]["figure_formats"]


def with_html(targets):
    """The targets, and every Markdown table among them also as the HTML page the report shows inline."""
    return targets + [t[: -len(".md")] + ".html" for t in targets if t.endswith(".md")]


def final_targets():
    targets = [
        S("summary/accuracy.parquet"),
        S("summary/accuracy.md"),
        *expand(S("figures/accuracy.{ext}"), ext=figure_formats()),
        *[S(f"summary/{name}/accuracy.md") for name in EXPERIMENTS],  # one table per experiment
    ]
    for exp in STUDY.stats_experiments():
        name = exp.name
        targets.append(S(f"stats/{name}/metrics.parquet"))
        if exp.noise_floor_run is not None:
            targets.append(S(f"stats/{name}/noise_floor.json"))
        if exp.greedy:  # greedy runs: Tables 3-4, Figures 4-5, divergence diagnostics
            targets += [S(f"tables/{name}/table3_std_acc.md"), S(f"tables/{name}/table4_std_output_length.md"),
                        S(f"figures/{name}/figure4_std_top1_prob.png"),
                        S(f"tables/{name}/divergence_diagnostics.md"),
                        S(f"figures/{name}/divergence_margins.png"),
                        S(f"figures/{name}/runtime_factors.png"),
                        S(f"tables/{name}/divergence_example.md")]
            if exp.compares_compressions:  # nondeterminism per compression
                targets += [S(f"tables/{name}/compressed_nondeterminism.md"),
                            S(f"figures/{name}/diverging_share.png")]
        if exp.sampled:  # sampled runs: Table 5
            targets.append(S(f"tables/{name}/table5_pass1_std.md"))
    for exp in STUDY.compression_experiments():
        targets += [S(f"tables/{exp.name}/compression_main_results.md"),
                    S(f"figures/{exp.name}/bits_vs_accuracy.png")]
    for exp in STUDY.sparsity_experiments():
        targets += [S(f"figures/{exp.name}/sparsity_sweep.png")]
    for name, exp in EXPERIMENTS.items():  # repeated runs of a sampled decoding: the mean over runs
        if any(config["decoding"][d]["runs"] > 1 for d in exp.decoding):
            targets.append(S(f"tables/{name}/accuracy_over_runs.md"))
    for name in EXPERIMENTS:  # output length of correct vs wrong answers, every experiment
        targets += [S(f"tables/{name}/length_correctness.md"), S(f"figures/{name}/length_correctness.png")]
    for exp in STUDY.weight_count_experiments():  # finding (1): weight count, knowledge vs reasoning
        targets += [S(f"tables/{exp.name}/weight_count_knowledge_vs_reasoning.md")]
    # the papers' exhibits beside the experiments: Table 2 computed, the study's tasks, Table 5 across experiments
    targets += [S("tables/table2_fp_nonassociativity.md"), S("tables/datasets.md")]
    if len(SAMPLED_STATS) > 1:  # with one, that experiment's own Table 5 is the table across its tasks
        targets.append(S("tables/table5_pass1_std.md"))
    return with_html(targets + importance_targets()) + artifact_targets()


def artifact_targets():
    """Every scored run's artifacts and every intermediate statistics table, so that a file removed behind Snakemake's back
    (while what was made from it is still there) is made again by the default target (from the generation cache,
    for generations), not left a hole."""
    targets = [path for r in RUNS for path in (r.generations, r.meta, r.scores)]
    for exp in STUDY.stats_experiments():
        if exp.greedy:
            targets += [S(f"stats/{exp.name}/divergence_points.parquet"),
                        S(f"stats/{exp.name}/divergence_exposure.parquet")]
    return targets


check_engine_runs()


onstart:
    check_environments()
