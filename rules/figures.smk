# 9. figures: rebuilt from summary / stats artifacts alone (never from generations).


rule figure_accuracy:
    input:
        summary=S("summary/accuracy.parquet"),
    output:
        report(
            expand(S("figures/accuracy.{ext}"), ext=figure_formats()),
            caption="../docs/report/accuracy.rst",
            category="Accuracy",
        ),
    params:
        code=code_of("figure_accuracy.py"),
    conda:
        "../envs/core.yaml"
    log:
        SLOG("figures/accuracy.log"),
    benchmark:
        S("benchmarks/figures/accuracy.tsv")
    script:
        "../workflow_scripts/figure_accuracy.py"


rule figures_nondeterminism:
    input:
        metrics=S("stats/{experiment}/metrics.parquet"),
        divergence=S("stats/{experiment}/divergence.parquet"),
    output:
        table3_csv=S("tables/{experiment}/table3_std_acc.csv"),
        table3_md=S("tables/{experiment}/table3_std_acc.md"),
        table4_csv=S("tables/{experiment}/table4_std_output_length.csv"),
        table4_md=S("tables/{experiment}/table4_std_output_length.md"),
        figure4_png=report(S("figures/{experiment}/figure4_std_top1_prob.png"),
                           caption="../docs/report/figure4.rst", category="Nondeterminism",
                           subcategory="{experiment}", labels={"figure": "4: Avg_Std@top1_prob"}),
        figure4_pdf=S("figures/{experiment}/figure4_std_top1_prob.pdf"),
        figure5_png=report(S("figures/{experiment}/figure5_div_index.png"),
                           caption="../docs/report/figure5.rst", category="Nondeterminism",
                           subcategory="{experiment}", labels={"figure": "5: Div_Index"}),
        figure5_pdf=S("figures/{experiment}/figure5_div_index.pdf"),
    params:
        code=code_of("figures_nondeterminism.py"),
    conda:
        "../envs/core.yaml"
    log:
        SLOG("figures_nondeterminism/{experiment}.log"),
    benchmark:
        S("benchmarks/figures_nondeterminism/{experiment}.tsv")
    script:
        "../workflow_scripts/figures_nondeterminism.py"


rule table_pass1_std:
    input:
        metrics=S("stats/{experiment}/metrics.parquet"),
    output:
        table5_csv=S("tables/{experiment}/table5_pass1_std.csv"),
        table5_md=S("tables/{experiment}/table5_pass1_std.md"),
    params:
        code=code_of("table_pass1_std.py"),
    conda:
        "../envs/core.yaml"
    log:
        SLOG("table_pass1_std/{experiment}.log"),
    benchmark:
        S("benchmarks/table_pass1_std/{experiment}.tsv")
    script:
        "../workflow_scripts/table_pass1_std.py"


rule compression_info:
    input:
        base=experiment_base_checkpoint,
        checkpoints=experiment_checkpoints,
    output:
        info=S("summary/{experiment}/compression_info.parquet"),
    params:
        names=experiment_compressed_names,
        code=code_of("compression_info.py"),
    conda:
        "../envs/core.yaml"
    log:
        SLOG("compression_info/{experiment}.log"),
    benchmark:
        S("benchmarks/compression_info/{experiment}.tsv")
    script:
        "../workflow_scripts/compression_info.py"


rule figures_compression:
    input:
        summary=S("summary/{experiment}/accuracy.parquet"),
        info=S("summary/{experiment}/compression_info.parquet"),
        effects=S("stats/{experiment}/compression_effects.parquet"),
    output:
        table_md=S("tables/{experiment}/compression_main_results.md"),
        table_csv=S("tables/{experiment}/compression_main_results.csv"),
        bits_png=report(S("figures/{experiment}/bits_vs_accuracy.png"), caption="../docs/report/bits.rst",
                        category="Compression", subcategory="{experiment}", labels={"figure": "bits vs accuracy"}),
        bits_pdf=S("figures/{experiment}/bits_vs_accuracy.pdf"),
        effects_png=report(S("figures/{experiment}/compression_vs_noise.png"), caption="../docs/report/effects.rst",
                           category="Compression", subcategory="{experiment}",
                           labels={"figure": "effect vs runtime noise"}),
        effects_pdf=S("figures/{experiment}/compression_vs_noise.pdf"),
    params:
        decoding=experiment_first_decoding,
        code=code_of("figures_compression.py"),
    conda:
        "../envs/core.yaml"
    log:
        SLOG("figures_compression/{experiment}.log"),
    benchmark:
        S("benchmarks/figures_compression/{experiment}.tsv")
    script:
        "../workflow_scripts/figures_compression.py"


rule figure_sparsity_sweep:
    input:
        summary=S("summary/{experiment}/accuracy.parquet"),
        info=S("summary/{experiment}/compression_info.parquet"),
    output:
        sparsity_png=report(S("figures/{experiment}/sparsity_sweep.png"), caption="../docs/report/sparsity.rst",
                            category="Compression", subcategory="{experiment}", labels={"figure": "sparsity sweep"}),
        sparsity_pdf=S("figures/{experiment}/sparsity_sweep.pdf"),
    params:
        decoding=experiment_first_decoding,
        code=code_of("figure_sparsity_sweep.py"),
    conda:
        "../envs/core.yaml"
    log:
        SLOG("figure_sparsity_sweep/{experiment}.log"),
    benchmark:
        S("benchmarks/figure_sparsity_sweep/{experiment}.tsv")
    script:
        "../workflow_scripts/figure_sparsity_sweep.py"


rule figures_divergence:
    input:
        points=S("stats/{experiment}/divergence_points.parquet"),
        exposure=S("stats/{experiment}/divergence_exposure.parquet"),
    output:
        table_md=S("tables/{experiment}/divergence_diagnostics.md"),
        table_csv=S("tables/{experiment}/divergence_diagnostics.csv"),
        figure_png=report(S("figures/{experiment}/divergence_margins.png"), caption="../docs/report/divergence.rst",
                          category="Nondeterminism", subcategory="{experiment}",
                          labels={"figure": "margin at divergence"}),
        figure_pdf=S("figures/{experiment}/divergence_margins.pdf"),
    params:
        code=code_of("figures_divergence.py"),
    conda:
        "../envs/core.yaml"
    log:
        SLOG("figures_divergence/{experiment}.log"),
    benchmark:
        S("benchmarks/figures_divergence/{experiment}.tsv")
    script:
        "../workflow_scripts/figures_divergence.py"


rule figures_length_correctness:
    input:
        table=S("stats/{experiment}/length_correctness.parquet"),
        samples=S("stats/{experiment}/length_samples.parquet"),
    output:
        table_md=S("tables/{experiment}/length_correctness.md"),
        table_csv=S("tables/{experiment}/length_correctness.csv"),
        figure_png=report(S("figures/{experiment}/length_correctness.png"),
                          caption="../docs/report/length_correctness.rst", category="Output length",
                          subcategory="{experiment}", labels={"figure": "length of correct vs wrong answers"}),
        figure_pdf=S("figures/{experiment}/length_correctness.pdf"),
    params:
        code=code_of("figures_length_correctness.py"),
    conda:
        "../envs/core.yaml"
    log:
        SLOG("figures_length_correctness/{experiment}.log"),
    benchmark:
        S("benchmarks/figures_length_correctness/{experiment}.tsv")
    script:
        "../workflow_scripts/figures_length_correctness.py"


# beyond the papers: nondeterminism of compressed models, per compression (a stats experiment with several
# compressions and greedy decoding); from the stats stage's artifacts only
rule figures_compressed_nondeterminism:
    input:
        metrics=S("stats/{experiment}/metrics.parquet"),
        points=S("stats/{experiment}/divergence_points.parquet"),
        exposure=S("stats/{experiment}/divergence_exposure.parquet"),
    output:
        table_md=S("tables/{experiment}/compressed_nondeterminism.md"),
        table_csv=S("tables/{experiment}/compressed_nondeterminism.csv"),
        figure_png=report(S("figures/{experiment}/diverging_share.png"),
                          caption="../docs/report/diverging_share.rst", category="Nondeterminism",
                          subcategory="{experiment}", labels={"figure": "diverging share per compression"}),
        figure_pdf=S("figures/{experiment}/diverging_share.pdf"),
    params:
        compressions=lambda wildcards: EXPERIMENTS[wildcards.experiment].compressions,
        code=code_of("figures_compressed_nondeterminism.py"),
    conda:
        "../envs/core.yaml"
    log:
        SLOG("figures_compressed_nondeterminism/{experiment}.log"),
    benchmark:
        S("benchmarks/figures_compressed_nondeterminism/{experiment}.tsv")
    script:
        "../workflow_scripts/figures_compressed_nondeterminism.py"


# finding (1) of "When Reasoning Meets Compression": the weight count (pruning, distillation) against the accuracy
# of the knowledge task and of the reasoning tasks (lrmrepro.figures.weight_count; which experiments get it:
# weight_count_experiments)
rule figure_weight_count:
    input:
        scores=experiment_scores,
        info=S("summary/{experiment}/compression_info.parquet"),
        noise=noise_summary,
    output:
        table_md=S("tables/{experiment}/weight_count_knowledge_vs_reasoning.md"),
        table_csv=S("tables/{experiment}/weight_count_knowledge_vs_reasoning.csv"),
        figure_png=report(S("figures/{experiment}/weight_count_knowledge_vs_reasoning.png"),
                          caption="../docs/report/weight_count.rst", category="Compression",
                          subcategory="{experiment}", labels={"figure": "weight count: knowledge vs reasoning"}),
        figure_pdf=S("figures/{experiment}/weight_count_knowledge_vs_reasoning.pdf"),
    params:
        runs=experiment_run_refs,
        decoding=experiment_first_decoding,
        knowledge=lambda wildcards: STUDY.task_groups(EXPERIMENTS[wildcards.experiment]["tasks"])[0],
        reasoning=lambda wildcards: STUDY.task_groups(EXPERIMENTS[wildcards.experiment]["tasks"])[1],
        noise_experiment=noise_experiment,
        resamples=config["statistics"]["bootstrap_resamples"],
        seed=config["statistics"]["bootstrap_seed"],
        level=config["statistics"]["ci_level"],
        code=code_of("figure_weight_count.py"),
    conda:
        "../envs/core.yaml"
    log:
        SLOG("figure_weight_count/{experiment}.log"),
    benchmark:
        S("benchmarks/figure_weight_count/{experiment}.tsv")
    script:
        "../workflow_scripts/figure_weight_count.py"


# the papers' exhibits that are not one experiment's statistics (lrmrepro.figures.exhibits)
rule table_fp_sums:
    output:
        md=S("tables/table2_fp_nonassociativity.md"),
        csv=S("tables/table2_fp_nonassociativity.csv"),
    params:
        code=code_of("table_exhibits.py"),
    conda:
        "../envs/core.yaml"
    log:
        SLOG("table_fp_sums.log"),
    benchmark:
        S("benchmarks/table_fp_sums.tsv")
    script:
        "../workflow_scripts/table_exhibits.py"


rule table_datasets:
    input:
        tasks=[TASK_ITEMS.format(task=t) for t in STUDY_TASKS],
    output:
        md=S("tables/datasets.md"),
        csv=S("tables/datasets.csv"),
    params:
        names=STUDY_TASKS,
        tasks={t: config["tasks"][t] for t in STUDY_TASKS},
        code=code_of("table_exhibits.py"),
    conda:
        "../envs/core.yaml"
    log:
        SLOG("table_datasets.log"),
    benchmark:
        S("benchmarks/table_datasets.tsv")
    script:
        "../workflow_scripts/table_exhibits.py"


rule table_pass1_std_all:
    input:
        metrics=[S(f"stats/{e.name}/metrics.parquet") for e in SAMPLED_STATS],
    output:
        md=S("tables/table5_pass1_std.md"),
        csv=S("tables/table5_pass1_std.csv"),
    params:
        experiments=[e.name for e in SAMPLED_STATS],
        code=code_of("table_exhibits.py"),
    conda:
        "../envs/core.yaml"
    log:
        SLOG("table_pass1_std_all.log"),
    benchmark:
        S("benchmarks/table_pass1_std_all.tsv")
    script:
        "../workflow_scripts/table_exhibits.py"


rule figure_runtime_factors:
    input:
        summary=S("summary/{experiment}/accuracy.parquet"),
    output:
        png=report(S("figures/{experiment}/runtime_factors.png"), caption="../docs/report/runtime_factors.rst",
                   category="Nondeterminism", subcategory="{experiment}", labels={"figure": "runtime factors"}),
        pdf=S("figures/{experiment}/runtime_factors.pdf"),
    params:
        code=code_of("figure_runtime_factors.py"),
    conda:
        "../envs/core.yaml"
    log:
        SLOG("figure_runtime_factors/{experiment}.log"),
    benchmark:
        S("benchmarks/figure_runtime_factors/{experiment}.tsv")
    script:
        "../workflow_scripts/figure_runtime_factors.py"


rule table_divergence_example:
    input:
        points=S("stats/{experiment}/divergence_points.parquet"),
        generations=experiment_generations,
        scores=experiment_scores,
    output:
        md=S("tables/{experiment}/divergence_example.md"),
    params:
        runs=experiment_run_refs,
        code=code_of("table_divergence_example.py"),
    conda:
        "../envs/core.yaml"
    log:
        SLOG("table_divergence_example/{experiment}.log"),
    benchmark:
        S("benchmarks/table_divergence_example/{experiment}.tsv")
    script:
        "../workflow_scripts/table_divergence_example.py"
