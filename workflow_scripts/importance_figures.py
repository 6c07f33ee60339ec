"""Rule importance_figures: heatmaps of a scores table; optionally the change vs a base scores table and the
protection bar chart.

input: scores; optional base_scores (then output change), optional accuracy (summary accuracy.parquet; then
output protection)
output: heatmap (list: .png/.pdf), optional change (list), optional protection (list)
params: value (score column, default "attribution"); for protection: uncompressed ("none"), unprotected,
        protected (name or list), model (optional filter)"""
import polars as pl

from lrmrepro.figures.importance import importance_change_heatmaps, importance_heatmaps, protection_figure
from lrmrepro.runlog import rule_log

with rule_log(snakemake):
    p = snakemake.params
    value = getattr(p, "value", "attribution")
    scores = pl.read_parquet(snakemake.input.scores)
    importance_heatmaps(scores, list(snakemake.output.heatmap), value=value)
    if hasattr(snakemake.input, "base_scores"):
        importance_change_heatmaps(pl.read_parquet(snakemake.input.base_scores), scores, list(snakemake.output.change),
                                   value=value)
    if hasattr(snakemake.input, "accuracy"):
        protection_figure(pl.read_parquet(snakemake.input.accuracy), list(snakemake.output.protection),
                          uncompressed=getattr(p, "uncompressed", "none"), unprotected=p.unprotected,
                          protected=p.protected, model=getattr(p, "model", None))
