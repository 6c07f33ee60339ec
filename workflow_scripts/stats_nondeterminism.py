"""Rule stats_nondeterminism: metrics across runtime configurations, per-problem divergence, pass@k (parquet + meta)."""
from lrmrepro import io
from lrmrepro.provenance import Timer, write_meta
from lrmrepro.runlog import rule_log
from lrmrepro.stats.labels import GROUP_KEYS
from lrmrepro.stats.pooling import check_pooling
from lrmrepro.stats.nondeterminism import DEFAULT_DDOF, load_runs, nondeterminism_tables

with rule_log(snakemake) as log:
    refs = list(snakemake.params.runs)
    ks = [int(k) for k in snakemake.params.ks]
    pooling = dict(snakemake.params.pooling)
    with Timer() as t:
        environments = check_pooling(refs, allow_mixed=pooling["allow_mixed"], aliases=pooling["aliases"])
        tables = nondeterminism_tables(load_runs(refs), ks)
        metrics = tables.metrics.join(environments, on=GROUP_KEYS, how="left")
    io.write_parquet(metrics, snakemake.output.metrics)
    io.write_parquet(tables.divergence, snakemake.output.divergence)
    io.write_parquet(tables.passk, snakemake.output.passk)
    log.info("%d runs -> %d groups", len(refs), metrics.height)
    write_meta(snakemake.output.meta, "stats_nondeterminism", {"n_runs": len(refs), "ddof": DEFAULT_DDOF, "ks": ks,
                                                               "pooling": pooling},
               code=snakemake.params.code, wall_seconds=t.seconds, n_groups=metrics.height)
