# 4. generate: one run = (model, compression, task, precision, runtime configuration, decoding).
#    Prompts are cut into consecutive chunks of `batch` prompts, one batched call per chunk.
#    Runtime configuration = backend, parallel (transformers: CPU threads; vLLM: tensor-parallel GPUs),
#    batch size and hardware label.

RUN_FOLDER = "{model}/{compression}/{task}/{precision}/{backend}-p{parallel}-bs{batch}-{hw}/{decoding}"


rule generate:
    input:
        model=model_checkpoint,
        tasks=task_items,
    output:
        generations=f"results/generations/{RUN_FOLDER}/generations.parquet",
        meta=f"results/generations/{RUN_FOLDER}/generations.meta.json",
    wildcard_constraints:
        backend="transformers",
    params:
        run=run_labels,
        decoding=decoding_spec,
        prompt_style=prompt_style,
        code=CODE["generate"],
    threads: generation_threads
    conda:
        "../envs/core.yaml"
    log:
        f"logs/generate/{RUN_FOLDER}.log",
    benchmark:
        f"results/benchmarks/generate/{RUN_FOLDER}.tsv"
    script:
        "../workflow_scripts/generate.py"
