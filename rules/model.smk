# 1. model: install the embedded default model (shipped in embedded/default, checked against its sha256), train it
#    anew, or fetch one from the hub / a local path / a GGUF file. A GGUF model is kept as it is for llama.cpp
#    (fetch_gguf) and dequantized into torch weights for the other engines (fetch_model).


rule embedded_model:
    input:
        shipped=embedded_model_files,
    output:
        model=directory("results/models/{model}/none"),
    wildcard_constraints:
        model=_alternatives(models_with_source("embedded")),
    params:
        code=code_of("embedded_model.py"),
    conda:
        "../envs/core.yaml"
    log:
        "logs/embedded_model/{model}.log",
    benchmark:
        "results/benchmarks/embedded_model/{model}.tsv"
    script:
        "../workflow_scripts/embedded_model.py"


rule train_default_model:
    output:
        model=directory("results/models/{model}/none"),
    wildcard_constraints:
        model=_alternatives(models_with_source("train")),
    params:
        train=config["train"],
        code=code_of("train_default_model.py"),
    threads: config["train"]["threads"]
    conda:
        "../envs/core.yaml"
    log:
        "logs/train_default_model/{model}.log",
    benchmark:
        "results/benchmarks/train_default_model/{model}.tsv"
    script:
        "../workflow_scripts/train_default_model.py"


rule fetch_model:
    output:
        model=directory("results/models/{model}/none"),
    wildcard_constraints:
        model=_alternatives(models_with_source("hub", "local", "gguf")),
    params:
        spec=model_spec,
        code=code_of("fetch_model.py"),
    conda:
        "../envs/core.yaml"
    log:
        "logs/fetch_model/{model}.log",
    benchmark:
        "results/benchmarks/fetch_model/{model}.tsv"
    script:
        "../workflow_scripts/fetch_model.py"


rule fetch_gguf:
    output:
        model=directory(GGUF),
    wildcard_constraints:
        model=_alternatives(models_with_source("gguf")) or "(?!)",
    params:
        spec=model_spec,
        code=code_of("fetch_gguf.py"),
    conda:
        "../envs/core.yaml"
    log:
        "logs/fetch_gguf/{model}.log",
    benchmark:
        "results/benchmarks/fetch_gguf/{model}.tsv"
    script:
        "../workflow_scripts/fetch_gguf.py"
