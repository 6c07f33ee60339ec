"""Rules figures_compression / figure_sparsity_sweep: the main results table and the bits-vs-accuracy figure, or
the sparsity sweep, from the experiment's summary and compression info tables only."""
import polars as pl

from lrmrepro.figures.compression import bits_accuracy_figure, effects_figure, sparsity_sweep_figure, \
    write_main_results
from lrmrepro.runlog import rule_log

with rule_log(snakemake):
    summary = pl.read_parquet(snakemake.input.summary).filter(pl.col("decoding") == snakemake.params.decoding)
    info = pl.read_parquet(snakemake.input.info)
    out = snakemake.output
    if "table_md" in out.keys():
        effects = pl.read_parquet(snakemake.input.effects).filter(pl.col("decoding") == snakemake.params.decoding)
        write_main_results(summary, info, out.table_md, out.table_csv, effects)
        bits_accuracy_figure(summary, info, [out.bits_png, out.bits_pdf])
        effects_figure(effects, [out.effects_png, out.effects_pdf])
    else:
        sparsity_sweep_figure(summary, info, [out.sparsity_png, out.sparsity_pdf])
