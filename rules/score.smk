# 5. score: per-sample extracted answer, extraction rule and correctness (EM/F1 for short-text answers), under the
#    run's truncation policy (strict or lenient, docs/tasks.md).


rule score:
    input:
        generations=f"results/generations/{RUN_FOLDER}/generations.parquet",
        tasks=TASK_ITEMS,
    output:
        scores=f"results/generations/{RUN_FOLDER}/scores.parquet",
        meta=f"results/generations/{RUN_FOLDER}/scores.meta.json",
    params:
        allow_weak_sandbox=config["sandbox"]["allow_weak_isolation"],
        policy=scoring_policy,
        code=code_of("score.py"),
    conda:
        "../envs/core.yaml"
    log:
        f"logs/score/{RUN_FOLDER}.log",
    benchmark:
        f"results/benchmarks/score/{RUN_FOLDER}.tsv"
    script:
        "../workflow_scripts/score.py"
