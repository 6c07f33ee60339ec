# 9. figures: rebuilt from summary / stats artifacts alone (never from generations).


rule figure_accuracy:
    input:
        summary="results/summary/accuracy.parquet",
    output:
        report(
            expand("results/figures/accuracy.{ext}", ext=figure_formats()),
            caption="../docs/report/accuracy.rst",
            category="Accuracy",
        ),
    params:
        code=code_of("figure_accuracy.py"),
    conda:
        "../envs/core.yaml"
    log:
        "logs/figures/accuracy.log",
    benchmark:
        "results/benchmarks/figures/accuracy.tsv"
    script:
        "../workflow_scripts/figure_accuracy.py"


rule figures_nondeterminism:
    input:
        metrics="results/stats/{experiment}/metrics.parquet",
        divergence="results/stats/{experiment}/divergence.parquet",
    output:
        table3_csv="results/tables/{experiment}/table3_std_acc.csv",
        table3_md=report("results/tables/{experiment}/table3_std_acc.md", category="Nondeterminism",
                         subcategory="{experiment}", labels={"table": "3: Std@Acc"}),
        table4_csv="results/tables/{experiment}/table4_std_output_length.csv",
        table4_md=report("results/tables/{experiment}/table4_std_output_length.md", category="Nondeterminism",
                         subcategory="{experiment}", labels={"table": "4: Avg_Std@Output_Length"}),
        figure4_png=report("results/figures/{experiment}/figure4_std_top1_prob.png",
                           caption="../docs/report/figure4.rst", category="Nondeterminism",
                           subcategory="{experiment}", labels={"figure": "4: Avg_Std@top1_prob"}),
        figure4_pdf="results/figures/{experiment}/figure4_std_top1_prob.pdf",
        figure5_png=report("results/figures/{experiment}/figure5_div_index.png",
                           caption="../docs/report/figure5.rst", category="Nondeterminism",
                           subcategory="{experiment}", labels={"figure": "5: Div_Index"}),
        figure5_pdf="results/figures/{experiment}/figure5_div_index.pdf",
    params:
        code=code_of("figures_nondeterminism.py"),
    conda:
        "../envs/core.yaml"
    log:
        "logs/figures_nondeterminism/{experiment}.log",
    benchmark:
        "results/benchmarks/figures_nondeterminism/{experiment}.tsv"
    script:
        "../workflow_scripts/figures_nondeterminism.py"


rule table_pass1_std:
    input:
        metrics="results/stats/{experiment}/metrics.parquet",
    output:
        table5_csv="results/tables/{experiment}/table5_pass1_std.csv",
        table5_md=report("results/tables/{experiment}/table5_pass1_std.md", category="Nondeterminism",
                         subcategory="{experiment}", labels={"table": "5: Pass@1 std"}),
    params:
        code=code_of("table_pass1_std.py"),
    conda:
        "../envs/core.yaml"
    log:
        "logs/table_pass1_std/{experiment}.log",
    benchmark:
        "results/benchmarks/table_pass1_std/{experiment}.tsv"
    script:
        "../workflow_scripts/table_pass1_std.py"


rule compression_info:
    input:
        base=experiment_base_checkpoint,
        checkpoints=experiment_checkpoints,
    output:
        info="results/summary/{experiment}/compression_info.parquet",
    params:
        names=experiment_compressed_names,
        code=code_of("compression_info.py"),
    conda:
        "../envs/core.yaml"
    log:
        "logs/compression_info/{experiment}.log",
    benchmark:
        "results/benchmarks/compression_info/{experiment}.tsv"
    script:
        "../workflow_scripts/compression_info.py"


rule figures_compression:
    input:
        summary="results/summary/{experiment}/accuracy.parquet",
        info="results/summary/{experiment}/compression_info.parquet",
        effects="results/stats/{experiment}/compression_effects.parquet",
    output:
        table_md=report("results/tables/{experiment}/compression_main_results.md", category="Compression",
                        subcategory="{experiment}", labels={"table": "main results"}),
        table_csv="results/tables/{experiment}/compression_main_results.csv",
        bits_png=report("results/figures/{experiment}/bits_vs_accuracy.png", caption="../docs/report/bits.rst",
                        category="Compression", subcategory="{experiment}", labels={"figure": "bits vs accuracy"}),
        bits_pdf="results/figures/{experiment}/bits_vs_accuracy.pdf",
        effects_png=report("results/figures/{experiment}/compression_vs_noise.png", caption="../docs/report/effects.rst",
                           category="Compression", subcategory="{experiment}",
                           labels={"figure": "effect vs runtime noise"}),
        effects_pdf="results/figures/{experiment}/compression_vs_noise.pdf",
    params:
        decoding=experiment_first_decoding,
        code=code_of("figures_compression.py"),
    conda:
        "../envs/core.yaml"
    log:
        "logs/figures_compression/{experiment}.log",
    benchmark:
        "results/benchmarks/figures_compression/{experiment}.tsv"
    script:
        "../workflow_scripts/figures_compression.py"


rule figure_sparsity_sweep:
    input:
        summary="results/summary/{experiment}/accuracy.parquet",
        info="results/summary/{experiment}/compression_info.parquet",
    output:
        sparsity_png=report("results/figures/{experiment}/sparsity_sweep.png", caption="../docs/report/sparsity.rst",
                            category="Compression", subcategory="{experiment}", labels={"figure": "sparsity sweep"}),
        sparsity_pdf="results/figures/{experiment}/sparsity_sweep.pdf",
    params:
        decoding=experiment_first_decoding,
        code=code_of("figure_sparsity_sweep.py"),
    conda:
        "../envs/core.yaml"
    log:
        "logs/figure_sparsity_sweep/{experiment}.log",
    benchmark:
        "results/benchmarks/figure_sparsity_sweep/{experiment}.tsv"
    script:
        "../workflow_scripts/figure_sparsity_sweep.py"


rule figures_divergence:
    input:
        points="results/stats/{experiment}/divergence_points.parquet",
        exposure="results/stats/{experiment}/divergence_exposure.parquet",
    output:
        table_md=report("results/tables/{experiment}/divergence_diagnostics.md", category="Nondeterminism",
                        subcategory="{experiment}", labels={"table": "divergence diagnostics"}),
        table_csv="results/tables/{experiment}/divergence_diagnostics.csv",
        figure_png=report("results/figures/{experiment}/divergence_margins.png", caption="../docs/report/divergence.rst",
                          category="Nondeterminism", subcategory="{experiment}",
                          labels={"figure": "margin at divergence"}),
        figure_pdf="results/figures/{experiment}/divergence_margins.pdf",
    params:
        code=code_of("figures_divergence.py"),
    conda:
        "../envs/core.yaml"
    log:
        "logs/figures_divergence/{experiment}.log",
    benchmark:
        "results/benchmarks/figures_divergence/{experiment}.tsv"
    script:
        "../workflow_scripts/figures_divergence.py"


rule figures_length_correctness:
    input:
        table="results/stats/{experiment}/length_correctness.parquet",
        samples="results/stats/{experiment}/length_samples.parquet",
    output:
        table_md=report("results/tables/{experiment}/length_correctness.md", category="Output length",
                        subcategory="{experiment}", labels={"table": "length of correct vs wrong answers"}),
        table_csv="results/tables/{experiment}/length_correctness.csv",
        figure_png=report("results/figures/{experiment}/length_correctness.png",
                          caption="../docs/report/length_correctness.rst", category="Output length",
                          subcategory="{experiment}", labels={"figure": "length of correct vs wrong answers"}),
        figure_pdf="results/figures/{experiment}/length_correctness.pdf",
    params:
        code=code_of("figures_length_correctness.py"),
    conda:
        "../envs/core.yaml"
    log:
        "logs/figures_length_correctness/{experiment}.log",
    benchmark:
        "results/benchmarks/figures_length_correctness/{experiment}.tsv"
    script:
        "../workflow_scripts/figures_length_correctness.py"


# beyond the papers: nondeterminism of compressed models, per compression (a stats experiment with several
# compressions and greedy decoding); from the stats stage's artifacts only
rule figures_compressed_nondeterminism:
    input:
        metrics="results/stats/{experiment}/metrics.parquet",
        points="results/stats/{experiment}/divergence_points.parquet",
        exposure="results/stats/{experiment}/divergence_exposure.parquet",
    output:
        table_md=report("results/tables/{experiment}/compressed_nondeterminism.md", category="Nondeterminism",
                        subcategory="{experiment}", labels={"table": "per compression"}),
        table_csv="results/tables/{experiment}/compressed_nondeterminism.csv",
        figure_png=report("results/figures/{experiment}/diverging_share.png",
                          caption="../docs/report/diverging_share.rst", category="Nondeterminism",
                          subcategory="{experiment}", labels={"figure": "diverging share per compression"}),
        figure_pdf="results/figures/{experiment}/diverging_share.pdf",
    params:
        compressions=lambda wildcards: EXPERIMENTS[wildcards.experiment].compressions,
        code=code_of("figures_compressed_nondeterminism.py"),
    conda:
        "../envs/core.yaml"
    log:
        "logs/figures_compressed_nondeterminism/{experiment}.log",
    benchmark:
        "results/benchmarks/figures_compressed_nondeterminism/{experiment}.tsv"
    script:
        "../workflow_scripts/figures_compressed_nondeterminism.py"


# finding (1) of "When Reasoning Meets Compression": the weight count (pruning, distillation) against the accuracy
# of the knowledge task and of the reasoning tasks (lrmrepro.figures.weight_count; which experiments get it:
# weight_count_experiments)
rule figure_weight_count:
    input:
        scores=experiment_scores,
        info="results/summary/{experiment}/compression_info.parquet",
        noise=noise_summary,
    output:
        table_md=report("results/tables/{experiment}/weight_count_knowledge_vs_reasoning.md", category="Compression",
                        subcategory="{experiment}", labels={"table": "weight count: knowledge vs reasoning"}),
        table_csv="results/tables/{experiment}/weight_count_knowledge_vs_reasoning.csv",
        figure_png=report("results/figures/{experiment}/weight_count_knowledge_vs_reasoning.png",
                          caption="../docs/report/weight_count.rst", category="Compression",
                          subcategory="{experiment}", labels={"figure": "weight count: knowledge vs reasoning"}),
        figure_pdf="results/figures/{experiment}/weight_count_knowledge_vs_reasoning.pdf",
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
        "logs/figure_weight_count/{experiment}.log",
    benchmark:
        "results/benchmarks/figure_weight_count/{experiment}.tsv"
    script:
        "../workflow_scripts/figure_weight_count.py"
