"""Rule summarize: accuracy (and EM/F1, output length) per run, as parquet, CSV and markdown."""
from lrmrepro.provenance import Timer, write_meta
from lrmrepro.runlog import rule_log
from lrmrepro.stats.summary import summarize_runs, write_summary

with rule_log(snakemake) as log:
    with Timer() as t:
        ci = snakemake.params.statistics
        summary = summarize_runs(list(snakemake.params.runs), resamples=int(ci["bootstrap_resamples"]),
                                 seed=int(ci["bootstrap_seed"]), level=float(ci["ci_level"]))
    write_summary(summary, snakemake.output.parquet, snakemake.output.csv, snakemake.output.md)
    log.info("%d runs summarised", summary.height)
    write_meta(snakemake.output.meta, "summarize", {"n_runs": summary.height}, code=snakemake.params.code,
               wall_seconds=t.seconds)
