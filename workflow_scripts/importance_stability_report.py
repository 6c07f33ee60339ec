"""Rule importance_stability_report: the rank-stability table (markdown) and figure (ranks with bootstrap
intervals, both formulations)."""

from lrmrepro.figures.importance import rank_stability_figure, stability_markdown
from lrmrepro.io import write_text
from lrmrepro.runlog import rule_log
from lrmrepro import io

with rule_log(snakemake):
    p = snakemake.params
    st = io.read_parquet(snakemake.input.stability)
    write_text(stability_markdown(st, io.read_parquet(snakemake.input.comparison), score=p.score,
                                  behaviour=p.behaviour, formulation=p.formulation), snakemake.output.table)
    rank_stability_figure(st, list(snakemake.output.figure), score=p.score, formulation=p.formulation)
