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
