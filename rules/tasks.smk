# 3. tasks: materialise the evaluation items of every task (synthetic generators or real benchmark loaders).


rule prepare_task:
    output:
        table="results/tasks/{task}.parquet",
        meta="results/tasks/{task}.meta.json",
    params:
        spec=task_spec,
        train=task_needs_model,
        code=code_of("prepare_task.py"),
    conda:
        "../envs/core.yaml"
    log:
        "logs/prepare_task/{task}.log",
    benchmark:
        "results/benchmarks/prepare_task/{task}.tsv"
    script:
        "../workflow_scripts/prepare_task.py"
