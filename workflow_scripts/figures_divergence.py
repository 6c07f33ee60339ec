"""Rule figures_divergence: the divergence diagnostics table and the margin-at-divergence figure."""

from lrmrepro.figures.divergence import margin_figure, write_diagnostics
from lrmrepro.runlog import rule_log
from lrmrepro import io

with rule_log(snakemake):
    points = io.read_parquet(snakemake.input.points)
    exposure = io.read_parquet(snakemake.input.exposure)
    write_diagnostics(points, exposure, snakemake.output.table_md, snakemake.output.table_csv)
    margin_figure(points, [snakemake.output.figure_png, snakemake.output.figure_pdf])
