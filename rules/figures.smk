# 8. figures: rebuilt from summary / stats artifacts alone (never from generations).


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
        code=CODE["figures"],
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
        table5_csv="results/tables/{experiment}/table5_pass1_std.csv",
        table5_md=report("results/tables/{experiment}/table5_pass1_std.md", category="Nondeterminism",
                         subcategory="{experiment}", labels={"table": "5: Pass@1 std"}),
        figure4_png=report("results/figures/{experiment}/figure4_std_top1_prob.png",
                           caption="../docs/report/figure4.rst", category="Nondeterminism",
                           subcategory="{experiment}", labels={"figure": "4: Avg_Std@top1_prob"}),
        figure4_pdf="results/figures/{experiment}/figure4_std_top1_prob.pdf",
        figure5_png=report("results/figures/{experiment}/figure5_div_index.png",
                           caption="../docs/report/figure5.rst", category="Nondeterminism",
                           subcategory="{experiment}", labels={"figure": "5: Div_Index"}),
        figure5_pdf="results/figures/{experiment}/figure5_div_index.pdf",
    params:
        code=CODE["figures"],
    log:
        "logs/figures_nondeterminism/{experiment}.log",
    benchmark:
        "results/benchmarks/figures_nondeterminism/{experiment}.tsv"
    script:
        "../workflow_scripts/figures_nondeterminism.py"
