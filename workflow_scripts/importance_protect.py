"""Rule importance_protect: the protected compression spec (JSON: recipe, ignore, source) from the base model's
module ranking: the top k modules, or a weight budget (importance.protect), completed to fused groups."""
from lrmrepro.importance.run import protect_from_scores
from lrmrepro.runlog import rule_log

with rule_log(snakemake) as log:
    p = snakemake.params
    spec = protect_from_scores(snakemake.input.scores, snakemake.output.spec, recipe=p.recipe, score=p.score,
                               behaviour=p.behaviour, k=p.k, weight_fraction=p.weight_fraction,
                               source={"wildcards": dict(snakemake.wildcards)},
                               stability_path=snakemake.input.get("stability"),
                               formulations_path=snakemake.input.get("formulations"),
                               formulation=snakemake.params.get("formulation", "project"))
    if "stability" in spec:
        st = spec["stability"]
        log.info("stability: P(same set) %s; per module P(protected) %s; other formulations %s", st["p_same_set"],
                 {m["module"]: m["p_protected"] for m in st["modules"]},
                 {f: o["same_groups"] for f, o in st["other_formulations"].items()})
    log.info("protect %d modules (%.2f%% of decoder linear weights): %s", len(spec["ignore"]),
             100 * spec["source"]["protected_fraction"], spec["ignore"])
