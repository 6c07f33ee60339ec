"""Rule importance_stability: both formulations' scores from per-trace statistics, the bootstrap over traces of
the module ranks and the agreement of the rankings (stability.meta.json is written next to the table)."""
from pathlib import Path

import torch

from lrmrepro.importance.run import stability_file
from lrmrepro.provenance import Timer, write_meta
from lrmrepro.runlog import rule_log

with rule_log(snakemake) as log:
    torch.set_num_threads(max(1, int(snakemake.threads)))
    p = snakemake.params
    cfg = {"negative": p.negative, "max_tokens": p.max_tokens, "behaviours": list(p.behaviours),
           "formulation": p.formulation, "score": p.score, "behaviour": p.behaviour, "k": p.k,
           "weight_fraction": p.weight_fraction, **dict(p.stability)}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    i, o = snakemake.input, snakemake.output
    with Timer() as t:
        info = stability_file(i.model, i.generations, i.spans, i.scores, o.stability, o.formulations, o.comparison,
                              device=device, **cfg)
    log.info("statistics %.1f s, bootstrap %.1f s", info["collect_seconds"], info["bootstrap_seconds"])
    write_meta(Path(o.stability).with_suffix(".meta.json"), "importance_stability", cfg, code=p.code,
               wall_seconds=t.seconds, device=device, **info)
