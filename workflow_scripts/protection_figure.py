"""Rule protection_figure: the base model's importance ranking (heatmap), and the accuracy of the uncompressed,
unprotected and protected variants per task (importance.protection_figure)."""

from lrmrepro.figures.importance import importance_heatmaps, protection_figure
from lrmrepro.runlog import rule_log
from lrmrepro import io

with rule_log(snakemake):
    p = snakemake.params
    importance_heatmaps(io.read_parquet(snakemake.input.scores), list(snakemake.output.heatmap), value=p.value)
    protection_figure(io.read_parquet(snakemake.input.accuracy), list(snakemake.output.protection),
                      unprotected=p.figure["unprotected"], protected=list(p.figure["protected"]))
