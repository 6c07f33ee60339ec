"""Rule summarize_experiment: the accuracy summary restricted to one experiment's runs (parquet, and a Markdown
table with only the columns that apply)."""
import polars as pl

from lrmrepro import io
from lrmrepro.runlog import rule_log
from lrmrepro.stats.labels import LABELS
from lrmrepro.stats.summary import experiment_markdown

with rule_log(snakemake):
    runs = pl.DataFrame([{k: r[k] for k in LABELS} for r in snakemake.params.runs])
    summary = io.read_parquet(snakemake.input.summary).join(runs, on=LABELS, how="semi")
    io.write_parquet(summary, snakemake.output.summary)
    io.write_text(experiment_markdown(summary, snakemake.wildcards.experiment), snakemake.output.md)
