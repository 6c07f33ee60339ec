"""Rule figures_nondeterminism: Tables 3-5 (CSV + markdown) and Figures 4-5 (PNG + PDF) from the stats parquet only."""
import polars as pl

from lrmrepro.figures.nondeterminism import figure4, figure5, write_table
from lrmrepro.runlog import rule_log

with rule_log(snakemake):
    out = snakemake.output
    metrics = pl.read_parquet(snakemake.input.metrics)
    for name in ("table3", "table4", "table5"):
        write_table(metrics, name, out[f"{name}_csv"], out[f"{name}_md"])
    figure4(metrics, [out.figure4_png, out.figure4_pdf])
    figure5(pl.read_parquet(snakemake.input.divergence), [out.figure5_png, out.figure5_pdf])
