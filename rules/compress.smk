# 2. compress: llm-compressor `oneshot` with a recipe from recipes/, saved as a compressed-tensors checkpoint.
#    Protected variants keep the modules of `ignore` in full precision. Distilled variants (`method: distill`): a
#    smaller student trained on the teacher, saved in the same place as a plain checkpoint.


rule compress:
    input:
        model=base_checkpoint,
        protect_spec=protect_spec_input,
    output:
        model=directory("results/models/{model}/{compressed}"),
    wildcard_constraints:
        compressed=compressions_of("recipe"),
    params:
        recipe=lambda wildcards: compression(wildcards).recipe,
        ignore=lambda wildcards: compression(wildcards).ignore,
        only=lambda wildcards: compression(wildcards).only,
        execution=lambda wildcards: compression(wildcards).execution,
        sparsity=lambda wildcards: compression(wildcards).sparsity,
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


# the training state (resumable: a killed job restarts from its last state) lives beside the outputs, not in them,
# so that Snakemake does not remove it with the incomplete output; the job removes it once the checkpoint is saved
rule distill:
    input:
        model=base_checkpoint,
    output:
        model=directory("results/models/{model}/{compressed}"),
    wildcard_constraints:
        compressed=compressions_of("distill"),
    params:
        student=lambda wildcards: compression(wildcards).student,
        settings=lambda wildcards: compression(wildcards).distill,
        state="results/distill_state/{model}/{compressed}",
        code=code_of("distill.py"),
    threads: lambda wildcards: compression(wildcards).distill["threads"]
    conda:
        "../envs/core.yaml"
    log:
        "logs/distill/{model}/{compressed}.log",
    benchmark:
        "results/benchmarks/distill/{model}/{compressed}.tsv"
    script:
        "../workflow_scripts/distill.py"


# dequantized execution (`execution: dequantized`): the compressed checkpoint rewritten as a dense one holding exactly
# the quantizer's values, which every engine runs at any tensor-parallel size (lrmrepro.compress.dequantize)
rule dequantize:
    input:
        model=CHECKPOINT.replace("{compression}", "{compressed}"),
    output:
        model=directory(DEQUANTIZED.replace("{compression}", "{compressed}")),
    wildcard_constraints:
        compressed=_alternatives(STUDY.dequantized_compressions()) or "(?!)",
    params:
        code=code_of("dequantize.py"),
    conda:
        "../envs/core.yaml"
    log:
        "logs/dequantize/{model}/{compressed}.log",
    benchmark:
        "results/benchmarks/dequantize/{model}/{compressed}.tsv"
    script:
        "../workflow_scripts/dequantize.py"

