# 8. importance: which weights matter for reasoning. Behaviour segments of reasoning traces are labelled
#    (cue phrases); every decoder linear module is scored by difference of means and attribution patching;
#    base vs compressed importance is compared; the top modules feed back into compression (protection loop).


rule importance_traces:
    input:
        generations=importance_generations,
    output:
        traces="results/importance/{model}/{compression}/traces.parquet",
    params:
        code=code_of("importance_traces.py"),
    conda:
        "../envs/core.yaml"
    log:
        "logs/importance_traces/{model}/{compression}.log",
    benchmark:
        "results/benchmarks/importance_traces/{model}/{compression}.tsv"
    script:
        "../workflow_scripts/importance_traces.py"


rule importance_label:
    input:
        generations="results/importance/{model}/{compression}/traces.parquet",
        model=CHECKPOINT,
    output:
        spans="results/importance/{model}/{compression}/spans.parquet",
    params:
        labeller=IMPORTANCE["labeller"],
        judge=IMPORTANCE["judge"] if IMPORTANCE["labeller"] == "llm" else {},
        code=code_of("importance_label.py"),
    conda:
        "../envs/core.yaml"
    log:
        "logs/importance_label/{model}/{compression}.log",
    benchmark:
        "results/benchmarks/importance_label/{model}/{compression}.tsv"
    script:
        "../workflow_scripts/importance_label.py"


rule importance_scores:
    input:
        model=CHECKPOINT,
        generations="results/importance/{model}/{compression}/traces.parquet",
        spans="results/importance/{model}/{compression}/spans.parquet",
    output:
        scores="results/importance/{model}/{compression}/scores.parquet",
        vectors="results/importance/{model}/{compression}/dom_vectors.safetensors",
    params:
        negative=IMPORTANCE["negative"],
        behaviours=IMPORTANCE["behaviours"],
        max_tokens=IMPORTANCE["max_tokens"],
        formulation=IMPORTANCE["formulation"],
        code=code_of("importance_scores.py"),
    threads: workflow.cores
    conda:
        "../envs/core.yaml"
    log:
        "logs/importance_scores/{model}/{compression}.log",
    benchmark:
        "results/benchmarks/importance_scores/{model}/{compression}.tsv"
    script:
        "../workflow_scripts/importance_scores.py"


rule importance_stability:
    input:
        model=CHECKPOINT,
        generations="results/importance/{model}/{compression}/traces.parquet",
        spans="results/importance/{model}/{compression}/spans.parquet",
        scores="results/importance/{model}/{compression}/scores.parquet",
    output:
        stability="results/importance/{model}/{compression}/stability.parquet",
        formulations="results/importance/{model}/{compression}/formulations.parquet",
        comparison="results/importance/{model}/{compression}/comparison.parquet",
    params:
        negative=IMPORTANCE["negative"],
        behaviours=IMPORTANCE["behaviours"],
        max_tokens=IMPORTANCE["max_tokens"],
        formulation=IMPORTANCE["formulation"],
        score=IMPORTANCE["score"],
        behaviour=IMPORTANCE["behaviour"],
        k=IMPORTANCE["protect"].get("k"),
        weight_fraction=IMPORTANCE["protect"].get("weight_fraction"),
        stability=IMPORTANCE["stability"],
        code=code_of("importance_stability.py"),
    threads: workflow.cores
    conda:
        "../envs/core.yaml"
    log:
        "logs/importance_stability/{model}/{compression}.log",
    benchmark:
        "results/benchmarks/importance_stability/{model}/{compression}.tsv"
    script:
        "../workflow_scripts/importance_stability.py"


rule importance_stability_report:
    input:
        stability="results/importance/{model}/{compression}/stability.parquet",
        comparison="results/importance/{model}/{compression}/comparison.parquet",
    output:
        table=S("tables/importance/{model}/{compression}/stability.md"),
        figure=report(
            expand(S("figures/importance/{{model}}/{{compression}}/rank_stability.{ext}"), ext=figure_formats()),
            caption="../docs/report/importance_stability.rst", category="Importance", subcategory="{model} / {compression}",
        ),
    params:
        formulation=IMPORTANCE["formulation"],
        score=IMPORTANCE["score"],
        behaviour=IMPORTANCE["behaviour"],
        code=code_of("importance_stability_report.py"),
    conda:
        "../envs/core.yaml"
    log:
        SLOG("importance_stability_report/{model}/{compression}.log"),
    benchmark:
        S("benchmarks/importance_stability_report/{model}/{compression}.tsv")
    script:
        "../workflow_scripts/importance_stability_report.py"


rule importance_protect:
    input:
        scores="results/importance/{model}/none/scores.parquet",
        stability="results/importance/{model}/none/stability.parquet",
        formulations="results/importance/{model}/none/formulations.parquet",
    output:
        spec="results/importance/{model}/protect_spec.json",
    params:
        recipe="any",
        score=IMPORTANCE["score"],
        behaviour=IMPORTANCE["behaviour"],
        k=IMPORTANCE["protect"].get("k"),
        weight_fraction=IMPORTANCE["protect"].get("weight_fraction"),
        formulation=IMPORTANCE["formulation"],
        code=code_of("importance_protect.py"),
    conda:
        "../envs/core.yaml"
    log:
        "logs/importance_protect/{model}.log",
    benchmark:
        "results/benchmarks/importance_protect/{model}.tsv"
    script:
        "../workflow_scripts/importance_protect.py"


# the protection transferred across bit widths: the same protected set, from a compressed variant's ranking (its
# traces, importance.compare) instead of the uncompressed model's; compressions.<name>.protect_from_importance:
# {model: <variant>}
rule importance_protect_from_variant:
    input:
        scores="results/importance/{model}/{compressed}/scores.parquet",
    output:
        spec="results/importance/{model}/{compressed}/protect_spec.json",
    params:
        recipe="any",
        score=IMPORTANCE["score"],
        behaviour=IMPORTANCE["behaviour"],
        k=IMPORTANCE["protect"].get("k"),
        weight_fraction=IMPORTANCE["protect"].get("weight_fraction"),
        formulation=IMPORTANCE["formulation"],
        code=code_of("importance_protect.py"),
    conda:
        "../envs/core.yaml"
    log:
        "logs/importance_protect/{model}/{compressed}.log",
    benchmark:
        "results/benchmarks/importance_protect/{model}/{compressed}.tsv"
    script:
        "../workflow_scripts/importance_protect.py"


rule importance_heatmap:
    input:
        scores="results/importance/{model}/{compression}/scores.parquet",
    output:
        heatmap=report(
            expand(S("figures/importance/{{model}}/{{compression}}/heatmap.{ext}"), ext=figure_formats()),
            caption="../docs/report/importance.rst", category="Importance", subcategory="{model} / {compression}",
        ),
    params:
        value=IMPORTANCE["score"],
        code=code_of("importance_heatmap.py"),
    conda:
        "../envs/core.yaml"
    log:
        SLOG("importance_heatmap/{model}/{compression}.log"),
    benchmark:
        S("benchmarks/importance_heatmap/{model}/{compression}.tsv")
    script:
        "../workflow_scripts/importance_heatmap.py"


rule importance_change:
    input:
        scores="results/importance/{model}/{compressed}/scores.parquet",
        base_scores="results/importance/{model}/none/scores.parquet",
    output:
        heatmap=expand(S("figures/importance/{{model}}/{{compressed}}/heatmap_of_change.{ext}"),
                       ext=figure_formats()),
        change=report(
            expand(S("figures/importance/{{model}}/{{compressed}}/change_vs_base.{ext}"), ext=figure_formats()),
            caption="../docs/report/importance_change.rst", category="Importance", subcategory="{model} / {compressed}",
        ),
    params:
        value=IMPORTANCE["score"],
        code=code_of("importance_change.py"),
    conda:
        "../envs/core.yaml"
    log:
        SLOG("importance_change/{model}/{compressed}.log"),
    benchmark:
        S("benchmarks/importance_change/{model}/{compressed}.tsv")
    script:
        "../workflow_scripts/importance_change.py"


rule protection_figure:
    input:
        accuracy=protection_summary,
        scores=protection_base_scores,
    output:
        heatmap=expand(S("figures/importance/protection_ranking.{ext}"), ext=figure_formats()),
        protection=report(
            expand(S("figures/importance/protection.{ext}"), ext=figure_formats()),
            caption="../docs/report/protection.rst", category="Importance",
        ),
    params:
        value=IMPORTANCE["score"],
        figure=IMPORTANCE.get("protection_figure"),
        code=code_of("protection_figure.py"),
    conda:
        "../envs/core.yaml"
    log:
        SLOG("protection_figure/protection.log"),
    benchmark:
        S("benchmarks/protection_figure/protection.tsv")
    script:
        "../workflow_scripts/protection_figure.py"
