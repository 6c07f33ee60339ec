"""Rule figures_nondeterminism: Tables 3-4 and Figures 4-5 of the greedy runs, from the stats parquet only."""

from lrmrepro.figures.nondeterminism import figure4, figure5, write_table
from lrmrepro.runlog import rule_log
from lrmrepro import io

with rule_log(snakemake):
    out = snakemake.output
    metrics = io.read_parquet(snakemake.input.metrics)
    write_table(metrics, "table3", out.table3_csv, out.table3_md)
    write_table(metrics, "table4", out.table4_csv, out.table4_md)
    figure4(metrics, [out.figure4_png, out.figure4_pdf])
    figure5(io.read_parquet(snakemake.input.divergence), [out.figure5_png, out.figure5_pdf])
