"""Rule importance_change: a compressed variant's importance heatmap, and its change against the base model."""
import polars as pl

from lrmrepro.figures.importance import importance_change_heatmaps, importance_heatmaps
from lrmrepro.runlog import rule_log

with rule_log(snakemake):
    value = snakemake.params.value
    scores = pl.read_parquet(snakemake.input.scores)
    importance_heatmaps(scores, list(snakemake.output.heatmap), value=value)
    importance_change_heatmaps(pl.read_parquet(snakemake.input.base_scores), scores, list(snakemake.output.change),
                               value=value)
