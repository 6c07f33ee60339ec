# 4. generate: one run = (model, compression, task, precision, runtime configuration, decoding). Prompts are cut
#    into consecutive chunks of `batch_size` prompts, one batched call per chunk. Runtime configuration = backend,
#    parallel (transformers: CPU threads; vLLM: tensor-parallel GPUs), batch size and hardware label.
#
#    One engine per grid point: the runs that differ only in task and batch size share one model load (the batch
#    size is not an engine setting), so each engine is one job (a rule `generate_<engine>`), which writes every run's
#    own generations.parquet, meta.json and resumable chunk store (lrmrepro.generate.engine_job).

for _engine, _runs in ENGINES.items():
    if engine_of(_engine.backend).cli is None:  # an engine of the core environment, in the rule's own process

        rule:
            name:
                _engine.rule
            input:
                model=STUDY.engine_checkpoint(_engine),
                tasks=engine_task_items(_runs),
                preflight=preflight_of(_engine),
            output:
                generations=[r.generations for r in _runs],
                meta=[r.meta for r in _runs],
            params:
                runs=[run_spec(r) for r in _runs],
                code=code_of("generate.py"),
            threads: _engine.parallel
            resources:
                **profile_resources("generate"),
            conda:
                "../envs/core.yaml"
            log:
                f"logs/generate/{_engine.slug}.log",
            benchmark:
                f"results/benchmarks/generate/{_engine.slug}.tsv"
            script:
                "../workflow_scripts/generate.py"

    elif engine_of(_engine.backend).name == "vllm":  # vLLM, in its own environment through its command line

        rule:
            name:
                _engine.rule
            input:
                model=STUDY.engine_checkpoint(_engine),
                tasks=engine_task_items(_runs),
                preflight=preflight_of(_engine),
            output:
                generations=[r.generations for r in _runs],
                meta=[r.meta for r in _runs],
            params:
                job=json.dumps([run_spec(r) for r in _runs]),
                batch_invariant="--batch-invariant" if _engine.backend == "vllm_batch_invariant" else "",
                enforce_eager=str(config["vllm"]["enforce_eager"]).lower(),
                code=module_code("lrmrepro.generate.vllm_cli"),
            threads: vllm_threads(_engine)
            resources:
                **profile_resources("generate_vllm"),
                gpu=gpu_count(_engine),
                gpu_model=gpu_model(_engine),
            conda:
                "../envs/vllm-cpu.yaml"
            log:
                f"logs/generate/{_engine.slug}.log",
            benchmark:
                f"results/benchmarks/generate/{_engine.slug}.tsv"
            shell:
                '"$LRMREPRO_VLLM_PYTHON" -m lrmrepro.generate.vllm_cli --model {input.model} --job {params.job:q}'
                " --code {params.code} {params.batch_invariant} --enforce-eager {params.enforce_eager} --log {log}"
                " 2>> {log}"

    else:  # llama.cpp, in its own environment through the engines' command line; its runtime profile as options

        rule:
            name:
                _engine.rule
            input:
                model=STUDY.engine_checkpoint(_engine),
                tasks=engine_task_items(_runs),
                preflight=preflight_of(_engine),
            output:
                generations=[r.generations for r in _runs],
                meta=[r.meta for r in _runs],
            params:
                job=json.dumps([run_spec(r) for r in _runs]),
                options=json.dumps(engine_options(_engine.backend, config)),
                code=module_code("lrmrepro.generate.engine_cli"),
            threads: vllm_threads(_engine)
            resources:
                **profile_resources("generate_llamacpp"),
                gpu=gpu_count(_engine),
                gpu_model=gpu_model(_engine),
            conda:
                "../envs/llamacpp.yaml"
            log:
                f"logs/generate/{_engine.slug}.log",
            benchmark:
                f"results/benchmarks/generate/{_engine.slug}.tsv"
            shell:
                '"$LRMREPRO_LLAMACPP_PYTHON" -m lrmrepro.generate.engine_cli --model {input.model} --job {params.job:q}'
                " --options {params.options:q} --code {params.code} --log {log} 2>> {log}"


# the noise floor: a greedy transformers run generated a second time, on its own
rule generate_repeat:
    input:
        model=repeat_checkpoint,
        tasks=TASK_ITEMS,
        preflight=repeat_preflight,
    output:
        generations=f"{REPEAT}.parquet",
        meta=f"{REPEAT}.meta.json",
    wildcard_constraints:
        backend="transformers",
    params:
        runs=repeat_run_spec,
        code=code_of("generate.py"),
    threads: generation_threads
    conda:
        "../envs/core.yaml"
    log:
        f"logs/generate_repeat/{Run.PATTERN}.log",
    benchmark:
        f"results/benchmarks/generate_repeat/{Run.PATTERN}.tsv"
    script:
        "../workflow_scripts/generate.py"


# preflight: a few tokens per (backend, precision, parallel size, hardware label) through the engine jobs' own code,
# on the kind of node the grid's jobs get (`snakemake preflight --profile ...` first: docs/cluster.md)
rule preflight_transformers:
    input:
        model=preflight_model,
        tasks=preflight_tasks,
    output:
        report=PREFLIGHT,
    wildcard_constraints:
        backend="transformers",
    params:
        point=preflight_point,
        code=code_of("preflight.py"),
    threads: generation_threads
    resources:
        **profile_resources("generate"),
    conda:
        "../envs/core.yaml"
    log:
        "logs/preflight/{backend}/{precision}/p{parallel}/{hardware}.log",
    benchmark:
        "results/benchmarks/preflight/{backend}/{precision}/p{parallel}/{hardware}.tsv"
    script:
        "../workflow_scripts/preflight.py"


rule preflight_vllm:
    input:
        model=preflight_model,
        tasks=preflight_tasks,
    output:
        report=PREFLIGHT,
    wildcard_constraints:
        backend="vllm|vllm_batch_invariant",
    params:
        point=lambda wc: json.dumps(preflight_point(wc)),
        code=module_code("lrmrepro.generate.preflight"),
    threads: 1
    resources:
        **profile_resources("generate_vllm"),
        gpu=lambda wc: 0 if on_cpu(wc.hardware) else int(wc.parallel),
        gpu_model=lambda wc: "" if on_cpu(wc.hardware) else wc.hardware,
    conda:
        "../envs/vllm-cpu.yaml"
    log:
        "logs/preflight/{backend}/{precision}/p{parallel}/{hardware}.log",
    benchmark:
        "results/benchmarks/preflight/{backend}/{precision}/p{parallel}/{hardware}.tsv"
    shell:
        '"$LRMREPRO_VLLM_PYTHON" -m lrmrepro.generate.preflight --model {input.model} --spec {params.point:q}'
        " --out {output.report} --log {log} 2>> {log}"


rule preflight_llamacpp:
    input:
        model=preflight_model,
        tasks=preflight_tasks,
    output:
        report=PREFLIGHT,
    wildcard_constraints:
        backend="llamacpp(_[A-Za-z0-9]+)?",
    params:
        point=lambda wc: json.dumps(preflight_point(wc)),
        code=module_code("lrmrepro.generate.preflight"),
    threads: lambda wc: int(wc.parallel) if on_cpu(wc.hardware) else 1
    resources:
        gpu=lambda wc: 0 if on_cpu(wc.hardware) else int(wc.parallel),
        gpu_model=lambda wc: "" if on_cpu(wc.hardware) else wc.hardware,
    conda:
        "../envs/llamacpp.yaml"
    log:
        "logs/preflight/{backend}/{precision}/p{parallel}/{hardware}.log",
    benchmark:
        "results/benchmarks/preflight/{backend}/{precision}/p{parallel}/{hardware}.tsv"
    shell:
        '"$LRMREPRO_LLAMACPP_PYTHON" -m lrmrepro.generate.preflight --model {input.model} --spec {params.point:q}'
        " --out {output.report} --log {log} 2>> {log}"


# the target: every preflight of the study (`snakemake preflight`)
rule preflight:
    input:
        preflight_targets(),
