"""Rule importance_traces: the reasoning traces of the chosen tasks, concatenated into one generations table."""
import pyarrow as pa

from lrmrepro import io
from lrmrepro.runlog import rule_log

with rule_log(snakemake) as log:
    tables = [io.read_arrow(p) for p in snakemake.input.generations]
    traces = pa.concat_tables(tables)
    io.write_parquet(traces, snakemake.output.traces)
    log.info("%d traces from %d generation files", traces.num_rows, len(tables))
