"""Rule stats_divergence: the divergence point of every diverging problem and each run's exposure to near-ties."""
from lrmrepro import io
from lrmrepro.provenance import Timer, write_meta
from lrmrepro.runlog import rule_log
from lrmrepro.stats.divergence import divergence_points
from lrmrepro.stats.pooling import check_pooling

with rule_log(snakemake) as log:
    sigmas = float(snakemake.params.near_tie_sigmas)
    pooling = dict(snakemake.params.pooling)
    with Timer() as t:
        check_pooling(snakemake.params.runs, allow_mixed=pooling["allow_mixed"], aliases=pooling["aliases"])
        points, exposure = divergence_points(list(snakemake.params.runs), near_tie_sigmas=sigmas)
    io.write_parquet(points, snakemake.output.points)
    io.write_parquet(exposure, snakemake.output.exposure)
    log.info("%d divergence points, %d runs", points.height, exposure.height)
    write_meta(snakemake.output.meta, "stats_divergence", {"near_tie_sigmas": sigmas}, code=snakemake.params.code,
               wall_seconds=t.seconds, n_points=points.height)
