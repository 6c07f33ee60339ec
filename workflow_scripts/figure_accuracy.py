"""Rule figure_accuracy: accuracy bar chart from the summary table only."""
import polars as pl

from lrmrepro.figures.accuracy import accuracy_figure
from lrmrepro.runlog import rule_log

with rule_log(snakemake):
    accuracy_figure(pl.read_parquet(snakemake.input.summary), list(snakemake.output))
