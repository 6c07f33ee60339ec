"""Rule compression_effects: each compressed variant's accuracy change, its paired bootstrap CI, and the runtime
noise of the uncompressed model beside it."""
import polars as pl

from lrmrepro import io
from lrmrepro.runlog import rule_log
from lrmrepro.stats.compression_effect import compression_effects
from lrmrepro.stats.labels import LABELS
from lrmrepro.stats.pooling import check_pooling

with rule_log(snakemake) as log:
    p = snakemake.params
    # a compressed variant and the uncompressed model it is compared with: same runtime configuration, same software
    pooling = dict(p.pooling)
    check_pooling(p.runs, [k for k in LABELS if k != "compression"], allow_mixed=pooling["allow_mixed"],
                  aliases=pooling["aliases"])
    noise = io.read_parquet(snakemake.input.noise) if snakemake.input.get("noise") else None
    effects = compression_effects(list(p.runs), noise, p.noise_experiment, resamples=int(p.resamples),
                                  seed=int(p.seed), level=float(p.level))
    io.write_parquet(effects, snakemake.output.effects)
    log.info("%d effects, %d beyond runtime noise", effects.height,
             effects.filter(pl.col("verdict") == "beyond runtime noise").height)
