# 6. summarize: one accuracy table over every run of every experiment.


rule summarize:
    input:
        scores=all_scores(),
        generations=all_generations(),
    output:
        parquet="results/summary/accuracy.parquet",
        csv="results/summary/accuracy.csv",
        md="results/summary/accuracy.md",
        meta="results/summary/accuracy.meta.json",
    params:
        runs=all_run_refs(),
        statistics=config["statistics"],
        code=code_of("summarize.py"),
    conda:
        "../envs/core.yaml"
    log:
        "logs/summarize/accuracy.log",
    benchmark:
        "results/benchmarks/summarize/accuracy.tsv"
    script:
        "../workflow_scripts/summarize.py"


rule summarize_experiment:
    input:
        summary="results/summary/accuracy.parquet",
    output:
        summary="results/summary/{experiment}/accuracy.parquet",
    params:
        runs=experiment_run_refs,
        code=code_of("summarize_experiment.py"),
    conda:
        "../envs/core.yaml"
    log:
        "logs/summarize_experiment/{experiment}.log",
    benchmark:
        "results/benchmarks/summarize_experiment/{experiment}.tsv"
    script:
        "../workflow_scripts/summarize_experiment.py"
