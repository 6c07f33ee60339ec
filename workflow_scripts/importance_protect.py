"""Rule importance_protect: protected compression spec from a scores table (and optionally single-module specs).

input: scores (scores.parquet of the model whose modules are ranked)
output: spec (JSON: {"recipe", "ignore", "source"}); optional single_module (folder of one spec per module)
params: recipe (base recipe name), score ("attribution"|"attribution_mean_abs"|"dom_score"|"dom_norm"),
        behaviour (a behaviour or "mean"), k (int) or weight_fraction (0<f<1) — exactly one,
        single_modules (list of module names, or None = all; used with output single_module), expand_groups (bool)"""
from lrmrepro.importance.run import protect_from_scores, single_module_spec_files
from lrmrepro.runlog import rule_log

with rule_log(snakemake) as log:
    p = snakemake.params
    spec = protect_from_scores(snakemake.input.scores, snakemake.output.spec, recipe=p.recipe,
                               score=getattr(p, "score", "attribution"), behaviour=getattr(p, "behaviour", "mean"),
                               k=getattr(p, "k", None), weight_fraction=getattr(p, "weight_fraction", None),
                               source={"wildcards": dict(snakemake.wildcards)})
    log.info("protect %d modules (%.2f%% of decoder linear weights): %s", len(spec["ignore"]),
             100 * spec["source"]["protected_fraction"], spec["ignore"])
    if hasattr(snakemake.output, "single_module"):
        paths = single_module_spec_files(snakemake.input.scores, snakemake.output.single_module, recipe=p.recipe,
                                         modules=getattr(p, "single_modules", None),
                                         expand_groups=bool(getattr(p, "expand_groups", True)))
        log.info("%d single-module specs", len(paths))
