"""Rule importance_change: a compressed variant's importance heatmap, and its change against the base model."""

from lrmrepro.figures.importance import importance_change_heatmaps, importance_heatmaps
from lrmrepro.runlog import rule_log
from lrmrepro import io

with rule_log(snakemake):
    value = snakemake.params.value
    scores = io.read_parquet(snakemake.input.scores)
    importance_heatmaps(scores, list(snakemake.output.heatmap), value=value)
    importance_change_heatmaps(io.read_parquet(snakemake.input.base_scores), scores, list(snakemake.output.change),
                               value=value)
