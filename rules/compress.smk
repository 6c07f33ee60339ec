# 2. compress: llm-compressor `oneshot` with a recipe from recipes/, saved as a compressed-tensors checkpoint.
#    Protected variants keep the modules of `ignore` in full precision.


rule compress:
    input:
        model=base_checkpoint,
        protect_spec=protect_spec_input,
    output:
        model=directory("results/models/{model}/{compressed}"),
    params:
        recipe=recipe_name,
        ignore=protected_modules,
        only=quantize_only,
        sparsity=target_sparsity,
        calibration=config["calibration"],
        seed=config["calibration"]["seed"],
        code=code_of("compress.py"),
    threads: workflow.cores
    conda:
        "../envs/core.yaml"
    log:
        "logs/compress/{model}/{compressed}.log",
    benchmark:
        "results/benchmarks/compress/{model}/{compressed}.tsv"
    script:
        "../workflow_scripts/compress.py"
