"""Rule importance_scores: difference of means + attribution patching of every decoder linear module of a checkpoint
(base or compressed) on the labelled traces; scores.meta.json is written next to the scores."""
from pathlib import Path

import torch

from lrmrepro.importance.run import score_model
from lrmrepro.provenance import Timer, write_meta
from lrmrepro.runlog import rule_log

with rule_log(snakemake) as log:
    torch.set_num_threads(max(1, int(snakemake.threads)))
    p = snakemake.params
    cfg = {"negative": p.negative, "max_tokens": p.max_tokens, "behaviours": list(p.behaviours)}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with Timer() as t:
        info = score_model(snakemake.input.model, snakemake.input.generations, snakemake.input.spans,
                           snakemake.output.scores, snakemake.output.vectors, device=device, **cfg)
    log.info("DoM %.1f s, attribution %.1f s", info["dom_seconds"], info["attribution_seconds"])
    write_meta(Path(snakemake.output.scores).with_suffix(".meta.json"), "importance_scores", cfg, code=p.code,
               wall_seconds=t.seconds, device=device, **info)
