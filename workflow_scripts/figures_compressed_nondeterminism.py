"""Rule figures_compressed_nondeterminism: the per-compression nondeterminism table and the diverging share per
compression x precision, from the stats stage's artifacts."""

from lrmrepro.figures.compressed_nondeterminism import compressed_table, diverging_share_figure, write_table
from lrmrepro.runlog import rule_log
from lrmrepro import io

with rule_log(snakemake):
    i, out = snakemake.input, snakemake.output
    table = compressed_table(io.read_parquet(i.metrics), io.read_parquet(i.points), io.read_parquet(i.exposure),
                             order=list(snakemake.params.compressions))
    write_table(table, out.table_md, out.table_csv)
    diverging_share_figure(table, [out.figure_png, out.figure_pdf])
