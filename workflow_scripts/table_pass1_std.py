"""Rule table_pass1_std: Table 5 (Pass@1 std across runtime configurations) of the sampled runs, from the stats
parquet only."""

from lrmrepro.figures.nondeterminism import write_table
from lrmrepro.runlog import rule_log
from lrmrepro import io

with rule_log(snakemake):
    out = snakemake.output
    write_table(io.read_parquet(snakemake.input.metrics), "table5", out.table5_csv, out.table5_md)
