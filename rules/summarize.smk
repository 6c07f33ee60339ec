# 6. summarize: one accuracy table over every run of every experiment.


rule summarize:
    input:
        scores=all_scores(),
        generations=all_generations(),
    output:
        parquet=S("summary/accuracy.parquet"),
        csv=S("summary/accuracy.csv"),
        md=S("summary/accuracy.md"),
        meta=S("summary/accuracy.meta.json"),
    params:
        runs=all_run_refs(),
        statistics=config["statistics"],
        code=code_of("summarize.py"),
    conda:
        "../envs/core.yaml"
    log:
        SLOG("summarize/accuracy.log"),
    benchmark:
        S("benchmarks/summarize/accuracy.tsv")
    script:
        "../workflow_scripts/summarize.py"


rule summarize_experiment:
    input:
        summary=S("summary/accuracy.parquet"),
    output:
        summary=S("summary/{experiment}/accuracy.parquet"),
        md=S("summary/{experiment}/accuracy.md"),
    params:
        runs=experiment_run_refs,
        code=code_of("summarize_experiment.py"),
    conda:
        "../envs/core.yaml"
    log:
        SLOG("summarize_experiment/{experiment}.log"),
    benchmark:
        S("benchmarks/summarize_experiment/{experiment}.tsv")
    script:
        "../workflow_scripts/summarize_experiment.py"


# every Markdown table of the study (summary, tables) also as an HTML page, which the report shows inline (a file
# conversion of a fraction of a second: run in Snakemake's own process, on the submitting host)
rule table_html:
    input:
        md=S("{table}.md"),
    output:
        html=report(S("{table}.html"), caption="../docs/report/table.rst", category="Tables",
                    labels={"table": "{table}"}),
    wildcard_constraints:
        table=r"(summary|tables)/[^.]+",
    params:
        code=module_code("lrmrepro.figures.html"),
    log:
        SLOG("table_html/{table}.log"),
    benchmark:
        S("benchmarks/table_html/{table}.tsv")
    run:
        from lrmrepro.figures.html import write_page

        write_page(input.md, output.html, wildcards.table, log[0])

