# 5. score: per-sample extracted answer, extraction rule and correctness (EM/F1 for short-text answers), under the
#    run's truncation policy (strict or lenient, docs/tasks.md).


rule score:
    input:
        generations=f"{Run.FOLDER}/generations.parquet",
        tasks=TASK_ITEMS,
    output:
        scores=f"{Run.FOLDER}/scores.parquet",
        meta=f"{Run.FOLDER}/scores.meta.json",
    params:
        allow_weak_sandbox=config["sandbox"]["allow_weak_isolation"],
        policy=scoring_policy,
        code=code_of("score.py"),
    conda:
        "../envs/core.yaml"
    log:
        f"logs/score/{Run.PATTERN}.log",
    benchmark:
        f"results/benchmarks/score/{Run.PATTERN}.tsv"
    script:
        "../workflow_scripts/score.py"
