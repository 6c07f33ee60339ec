"""Rule figure_sparsity_sweep: accuracy against sparsity of the pruned variants, from the experiment's summary and
compression info tables only."""
import polars as pl

from lrmrepro.figures.compression import sparsity_sweep_figure
from lrmrepro.runlog import rule_log
from lrmrepro import io

with rule_log(snakemake):
    summary = io.read_parquet(snakemake.input.summary).filter(pl.col("decoding") == snakemake.params.decoding)
    sparsity_sweep_figure(summary, io.read_parquet(snakemake.input.info),
                          [snakemake.output.sparsity_png, snakemake.output.sparsity_pdf])
