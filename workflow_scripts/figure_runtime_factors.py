"""Rule figure_runtime_factors: accuracy and output length per runtime factor, from an experiment's summary only."""

from lrmrepro import io
from lrmrepro.figures.runtime_factors import runtime_factor_figure
from lrmrepro.runlog import rule_log

with rule_log(snakemake) as log:
    factors = runtime_factor_figure(io.read_parquet(snakemake.input.summary), list(snakemake.output))
    log.info("factors drawn: %s", ", ".join(factors))
