"""Rule figures_length_correctness: the table and the length-distribution figure of correct vs wrong answers."""

from lrmrepro.figures.length_correctness import length_figure, write_table
from lrmrepro.runlog import rule_log
from lrmrepro import io

with rule_log(snakemake):
    out = snakemake.output
    write_table(io.read_parquet(snakemake.input.table), out.table_md, out.table_csv)
    length_figure(io.read_parquet(snakemake.input.samples), [out.figure_png, out.figure_pdf])
