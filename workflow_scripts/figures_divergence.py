"""Rule figures_divergence: the divergence diagnostics table and the margin-at-divergence figure."""
import polars as pl

from lrmrepro.figures.divergence import margin_figure, write_diagnostics
from lrmrepro.runlog import rule_log

with rule_log(snakemake):
    points = pl.read_parquet(snakemake.input.points)
    exposure = pl.read_parquet(snakemake.input.exposure)
    write_diagnostics(points, exposure, snakemake.output.table_md, snakemake.output.table_csv)
    margin_figure(points, [snakemake.output.figure_png, snakemake.output.figure_pdf])
