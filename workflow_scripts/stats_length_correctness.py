"""Rule stats_length_correctness: output length of correct vs wrong answers per group, from scores and generations."""
from lrmrepro import io
from lrmrepro.runlog import rule_log
from lrmrepro.stats.length_correctness import length_correctness, load_samples
from lrmrepro.stats.pooling import check_pooling

with rule_log(snakemake) as log:
    p = snakemake.params
    pooling = dict(p.pooling)
    check_pooling(p.runs, allow_mixed=pooling["allow_mixed"], aliases=pooling["aliases"])
    samples = load_samples(list(p.runs))
    table = length_correctness(samples, resamples=int(p.resamples), seed=int(p.seed), level=float(p.level))
    io.write_parquet(samples, snakemake.output.samples)
    io.write_parquet(table, snakemake.output.table)
    log.info("%d samples, %d groups: %s", samples.height, table.height,
             dict(table.get_column("verdict").value_counts().iter_rows()))
