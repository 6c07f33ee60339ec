"""Rule figure_accuracy: accuracy bar chart from the summary table only."""

from lrmrepro.figures.accuracy import accuracy_figure
from lrmrepro.runlog import rule_log
from lrmrepro import io

with rule_log(snakemake):
    accuracy_figure(io.read_parquet(snakemake.input.summary), list(snakemake.output))
