"""Rules figures_nondeterminism (greedy: Tables 3-4, Figures 4-5) and table_pass1_std (sampling: Table 5), from
the stats parquet only."""
import polars as pl

from lrmrepro.figures.nondeterminism import figure4, figure5, write_table
from lrmrepro.runlog import rule_log

with rule_log(snakemake):
    out = snakemake.output
    metrics = pl.read_parquet(snakemake.input.metrics)
    for name in ("table3", "table4", "table5"):
        if f"{name}_md" in out.keys():
            write_table(metrics, name, out[f"{name}_csv"], out[f"{name}_md"])
    if "figure4_png" in out.keys():
        figure4(metrics, [out.figure4_png, out.figure4_pdf])
        figure5(pl.read_parquet(snakemake.input.divergence), [out.figure5_png, out.figure5_pdf])
