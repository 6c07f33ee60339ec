"""Rule importance_protect: the protected compression spec (JSON: recipe, ignore, source) from the base model's
module ranking: the top k modules, or a weight budget (importance.protect), completed to fused groups."""
from lrmrepro.importance.run import protect_from_scores
from lrmrepro.runlog import rule_log

with rule_log(snakemake) as log:
    p = snakemake.params
    spec = protect_from_scores(snakemake.input.scores, snakemake.output.spec, recipe=p.recipe, score=p.score,
                               behaviour=p.behaviour, k=p.k, weight_fraction=p.weight_fraction,
                               source={"wildcards": dict(snakemake.wildcards)})
    log.info("protect %d modules (%.2f%% of decoder linear weights): %s", len(spec["ignore"]),
             100 * spec["source"]["protected_fraction"], spec["ignore"])
