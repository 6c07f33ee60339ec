# 4. generate: one run = (model, compression, task, precision, runtime configuration, decoding).
#    Prompts are cut into consecutive chunks of `batch` prompts, one batched call per chunk.
#    Runtime configuration = backend, parallel (transformers: CPU threads; vLLM: tensor-parallel GPUs),
#    batch size and hardware label.

RUN_FOLDER = "{model}/{compression}/{task}/{precision}/{backend}-p{parallel}-bs{batch}-{hw}/{decoding}"


rule generate:
    input:
        model=CHECKPOINT,
        tasks=TASK_ITEMS,
    output:
        generations=f"results/generations/{RUN_FOLDER}/generations.parquet",
        meta=f"results/generations/{RUN_FOLDER}/generations.meta.json",
    wildcard_constraints:
        backend="transformers",
    params:
        decoding=decoding_spec,
        prompt_style=prompt_style,
        code=code_of("generate.py"),
    threads: generation_threads
    conda:
        "../envs/core.yaml"
    log:
        f"logs/generate/{RUN_FOLDER}.log",
    benchmark:
        f"results/benchmarks/generate/{RUN_FOLDER}.tsv"
    script:
        "../workflow_scripts/generate.py"


rule generate_vllm:
    input:
        model=CHECKPOINT,
        tasks=TASK_ITEMS,
    output:
        generations=f"results/generations/{RUN_FOLDER}/generations.parquet",
        meta=f"results/generations/{RUN_FOLDER}/generations.meta.json",
    wildcard_constraints:
        backend="vllm|vllm_batch_invariant",
    params:
        run_json=run_labels_json,
        decoding_json=decoding_json,
        prompt_style=prompt_style,
        batch_invariant=batch_invariant_flag,
        code=module_code("lrmrepro.generate.vllm_cli"),
    threads: generation_threads
    group:
        "generate"
    resources:
        gpu=gpu_count,
        gpu_model=gpu_model,
    conda:
        "../envs/vllm-cpu.yaml"
    log:
        f"logs/generate/{RUN_FOLDER}.log",
    benchmark:
        f"results/benchmarks/generate/{RUN_FOLDER}.tsv"
    shell:
        '"$LRMREPRO_VLLM_PYTHON" -m lrmrepro.generate.vllm_cli --model {input.model} --tasks-parquet {input.tasks}'
        " --output {output.generations} --meta {output.meta} --precision {wildcards.precision}"
        " --parallel {wildcards.parallel} --batch-size {wildcards.batch} --decoding-json {params.decoding_json:q}"
        " --prompt-style {params.prompt_style} --run-json {params.run_json:q} --code {params.code}"
        " {params.batch_invariant} --log {log} 2>> {log}"


rule generate_repeat:
    input:
        model=CHECKPOINT,
        tasks=TASK_ITEMS,
    output:
        generations=f"results/generations/{RUN_FOLDER}/repeat/generations.parquet",
        meta=f"results/generations/{RUN_FOLDER}/repeat/generations.meta.json",
    wildcard_constraints:
        backend="transformers",
    params:
        decoding=decoding_spec,
        prompt_style=prompt_style,
        code=code_of("generate.py"),
    threads: generation_threads
    conda:
        "../envs/core.yaml"
    log:
        f"logs/generate_repeat/{RUN_FOLDER}.log",
    benchmark:
        f"results/benchmarks/generate_repeat/{RUN_FOLDER}.tsv"
    script:
        "../workflow_scripts/generate.py"
