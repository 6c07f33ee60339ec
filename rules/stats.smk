# 7. stats: nondeterminism across runtime configurations (Std@Acc, Avg_Std@Output_Length, Div_Index,
#    Avg_Std@top1_prob, Pass@1 std, pass@k) per (model, compression, task, precision, decoding) of an experiment.
#    Definitions: docs/metrics.md.


rule stats_nondeterminism:
    input:
        scores=experiment_scores,
        generations=experiment_generations,
    output:
        metrics="results/stats/{experiment}/metrics.parquet",
        divergence="results/stats/{experiment}/divergence.parquet",
        passk="results/stats/{experiment}/passk.parquet",
        meta="results/stats/{experiment}/meta.json",
    params:
        runs=experiment_run_refs,
        ks=pass_at_ks,
        code=code_of("stats_nondeterminism.py"),
    conda:
        "../envs/core.yaml"
    log:
        "logs/stats_nondeterminism/{experiment}.log",
    benchmark:
        "results/benchmarks/stats_nondeterminism/{experiment}.tsv"
    script:
        "../workflow_scripts/stats_nondeterminism.py"


rule noise_floor:
    input:
        first=noise_floor_run,
        repeat=noise_floor_repeat,
    output:
        report=report("results/stats/{experiment}/noise_floor.json", category="Nondeterminism",
                      subcategory="{experiment}", labels={"table": "noise floor"}),
    params:
        run=noise_floor_labels,
        code=code_of("noise_floor.py"),
    conda:
        "../envs/core.yaml"
    log:
        "logs/noise_floor/{experiment}.log",
    benchmark:
        "results/benchmarks/noise_floor/{experiment}.tsv"
    script:
        "../workflow_scripts/noise_floor.py"
