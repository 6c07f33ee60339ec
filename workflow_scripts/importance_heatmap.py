"""Rule importance_heatmap: the importance of every decoder linear module per behaviour (layer × module type)."""

from lrmrepro.figures.importance import importance_heatmaps
from lrmrepro.runlog import rule_log
from lrmrepro import io

with rule_log(snakemake):
    importance_heatmaps(io.read_parquet(snakemake.input.scores), list(snakemake.output.heatmap),
                        value=snakemake.params.value)
