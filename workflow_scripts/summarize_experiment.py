"""Rule summarize_experiment: the accuracy summary restricted to one experiment's runs."""
import polars as pl

from lrmrepro import io
from lrmrepro.runlog import rule_log
from lrmrepro.stats.labels import LABELS

with rule_log(snakemake):
    runs = pl.DataFrame([{k: r[k] for k in LABELS} for r in snakemake.params.runs])
    io.write_parquet(io.read_parquet(snakemake.input.summary).join(runs, on=LABELS, how="semi"), snakemake.output.summary)
