# 7. stats: nondeterminism across runtime configurations (Std@Acc, Avg_Std@Output_Length, Div_Index,
#    Avg_Std@top1_prob, Pass@1 std, pass@k) per (model, compression, task, precision, decoding) of an experiment.
#    Definitions: docs/metrics.md.


rule stats_nondeterminism:
    input:
        scores=experiment_scores,
        generations=experiment_generations,
        metas=experiment_metas,
    output:
        metrics=S("stats/{experiment}/metrics.parquet"),
        divergence=S("stats/{experiment}/divergence.parquet"),
        passk=S("stats/{experiment}/passk.parquet"),
        meta=S("stats/{experiment}/meta.json"),
    params:
        runs=experiment_run_refs,
        ks=pass_at_ks,
        pooling=POOLING,
        code=code_of("stats_nondeterminism.py"),
    conda:
        "../envs/core.yaml"
    log:
        SLOG("stats_nondeterminism/{experiment}.log"),
    benchmark:
        S("benchmarks/stats_nondeterminism/{experiment}.tsv")
    script:
        "../workflow_scripts/stats_nondeterminism.py"


rule noise_floor:
    input:
        first=noise_floor_run,
        repeat=noise_floor_repeat,
    output:
        report=report(S("stats/{experiment}/noise_floor.json"), category="Nondeterminism",
                      subcategory="{experiment}", labels={"table": "noise floor"}),
    params:
        run=noise_floor_labels,
        code=code_of("noise_floor.py"),
    conda:
        "../envs/core.yaml"
    log:
        SLOG("noise_floor/{experiment}.log"),
    benchmark:
        S("benchmarks/noise_floor/{experiment}.tsv")
    script:
        "../workflow_scripts/noise_floor.py"


# beyond the papers: why a greedy output diverged (near-tie or confident flip at the divergence point), and how often
# each run passed through a near-tie at all
rule stats_divergence:
    input:
        generations=experiment_generations,
        metas=experiment_metas,
    output:
        points=S("stats/{experiment}/divergence_points.parquet"),
        exposure=S("stats/{experiment}/divergence_exposure.parquet"),
        meta=S("stats/{experiment}/divergence.meta.json"),
    params:
        runs=experiment_run_refs,
        near_tie_sigmas=config["statistics"]["near_tie_sigmas"],
        pooling=POOLING,
        code=code_of("stats_divergence.py"),
    conda:
        "../envs/core.yaml"
    log:
        SLOG("stats_divergence/{experiment}.log"),
    benchmark:
        S("benchmarks/stats_divergence/{experiment}.tsv")
    script:
        "../workflow_scripts/stats_divergence.py"


# beyond the papers: is a compression's accuracy change larger than the runtime noise of the uncompressed model?
rule compression_effects:
    input:
        scores=experiment_scores,
        metas=experiment_metas,
        noise=noise_summary,
    output:
        effects=S("stats/{experiment}/compression_effects.parquet"),
    params:
        runs=experiment_run_refs,
        noise_experiment=noise_experiment,
        resamples=config["statistics"]["bootstrap_resamples"],
        seed=config["statistics"]["bootstrap_seed"],
        level=config["statistics"]["ci_level"],
        pooling=POOLING,
        code=code_of("compression_effects.py"),
    conda:
        "../envs/core.yaml"
    log:
        SLOG("compression_effects/{experiment}.log"),
    benchmark:
        S("benchmarks/compression_effects/{experiment}.tsv")
    script:
        "../workflow_scripts/compression_effects.py"


# beyond the papers: do wrong answers think longer? Output length of correct vs wrong answers per group (runtime
# configurations pooled), with a bootstrap CI of the difference over problems; from scores and generations only
rule stats_length_correctness:
    input:
        scores=experiment_scores,
        generations=experiment_generations,
        metas=experiment_metas,
    output:
        table=S("stats/{experiment}/length_correctness.parquet"),
        samples=S("stats/{experiment}/length_samples.parquet"),
    params:
        runs=experiment_run_refs,
        resamples=config["statistics"]["bootstrap_resamples"],
        seed=config["statistics"]["bootstrap_seed"],
        level=config["statistics"]["ci_level"],
        pooling=POOLING,
        code=code_of("stats_length_correctness.py"),
    conda:
        "../envs/core.yaml"
    log:
        SLOG("stats_length_correctness/{experiment}.log"),
    benchmark:
        S("benchmarks/stats_length_correctness/{experiment}.tsv")
    script:
        "../workflow_scripts/stats_length_correctness.py"


# the papers' protocol: a sampled decoding run several times (decoding.<name>.runs), the mean over the runs
rule table_runs:
    input:
        scores=experiment_scores,
    output:
        parquet=S("stats/{experiment}/accuracy_over_runs.parquet"),
        md=S("tables/{experiment}/accuracy_over_runs.md"),
    params:
        runs=experiment_run_refs,
        decodings=config["decoding"],
        code=code_of("table_runs.py"),
    conda:
        "../envs/core.yaml"
    log:
        SLOG("table_runs/{experiment}.log"),
    benchmark:
        S("benchmarks/table_runs/{experiment}.tsv")
    script:
        "../workflow_scripts/table_runs.py"
