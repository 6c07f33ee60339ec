"""Rule table_runs: accuracy over a decoding's independent runs (mean, std across runs, CI), from the scores."""
from lrmrepro import io
from lrmrepro.runlog import rule_log
from lrmrepro.stats.repeated_runs import markdown, over_runs

with rule_log(snakemake):
    table = over_runs(list(snakemake.params.runs), dict(snakemake.params.decodings))
    io.write_parquet(table, snakemake.output.parquet)
    io.write_text(markdown(table), snakemake.output.md)
