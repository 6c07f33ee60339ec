"""Rule figures_compression: the main results table, the bits-vs-accuracy figure and the compression effects
against runtime noise, from the experiment's summary, compression info and effects tables only."""
import polars as pl

from lrmrepro.figures.compression import bits_accuracy_figure, effects_figure, write_main_results
from lrmrepro.runlog import rule_log
from lrmrepro import io

with rule_log(snakemake):
    decoding = pl.col("decoding") == snakemake.params.decoding
    summary = io.read_parquet(snakemake.input.summary).filter(decoding)
    info = io.read_parquet(snakemake.input.info)
    effects = io.read_parquet(snakemake.input.effects).filter(decoding)
    out = snakemake.output
    write_main_results(summary, info, out.table_md, out.table_csv, effects)
    bits_accuracy_figure(summary, info, [out.bits_png, out.bits_pdf])
    effects_figure(effects, [out.effects_png, out.effects_pdf])
