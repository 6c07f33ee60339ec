# 6. summarize: one accuracy table over every run of every experiment.


rule summarize:
    input:
        scores=all_scores(),
        generations=all_generations(),
    output:
        parquet=S("summary/accuracy.parquet"),
        csv=S("summary/accuracy.csv"),
        md=S("summary/accuracy.md"),
        meta=S("summary/accuracy.meta.json"),
    params:
        runs=all_run_refs(),
        statistics=config["statistics"],
        code=code_of("summarize.py"),
    conda:
        "../envs/core.yaml"
    log:
        SLOG("summarize/accuracy.log"),
    benchmark:
        S("benchmarks/summarize/accuracy.tsv")
    script:
        "../workflow_scripts/summarize.py"


rule summarize_experiment:
    input:
        summary=S("summary/accuracy.parquet"),
    output:
        summary=S("summary/{experiment}/accuracy.parquet"),
    params:
        runs=experiment_run_refs,
        code=code_of("summarize_experiment.py"),
    conda:
        "../envs/core.yaml"
    log:
        SLOG("summarize_experiment/{experiment}.log"),
    benchmark:
        S("benchmarks/summarize_experiment/{experiment}.tsv")
    script:
        "../workflow_scripts/summarize_experiment.py"
