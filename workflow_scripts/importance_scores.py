"""Rule importance_scores: difference of means + attribution patching of every decoder linear module.

input: model (checkpoint folder: base or compressed), generations (generations.parquet), spans (spans.parquet)
output: scores (scores.parquet), vectors (dom_vectors.safetensors); scores.meta.json written next to scores
params: negative ("tokens"|"traces"), include_prompt (bool), max_tokens (int|None),
        max_segments_per_behaviour (int|None), code; threads: torch CPU threads"""
from pathlib import Path

import torch

from lrmrepro.importance.behaviours import BEHAVIOURS
from lrmrepro.importance.run import score_model
from lrmrepro.provenance import Timer, write_meta
from lrmrepro.runlog import rule_log

with rule_log(snakemake) as log:
    torch.set_num_threads(max(1, int(snakemake.threads)))
    p = snakemake.params
    cfg = {"negative": getattr(p, "negative", "tokens"), "include_prompt": bool(getattr(p, "include_prompt", False)),
           "max_tokens": getattr(p, "max_tokens", None),
           "max_segments_per_behaviour": getattr(p, "max_segments_per_behaviour", None)}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    behaviours = tuple(getattr(p, "behaviours", None) or BEHAVIOURS)
    with Timer() as t:
        info = score_model(snakemake.input.model, snakemake.input.generations, snakemake.input.spans,
                           snakemake.output.scores, snakemake.output.vectors, device=device, behaviours=behaviours,
                           **cfg)
    log.info("DoM %.1f s, attribution %.1f s", info["dom_seconds"], info["attribution_seconds"])
    write_meta(Path(snakemake.output.scores).with_suffix(".meta.json"), "importance_scores", cfg, code=p.code,
               wall_seconds=t.seconds, device=device, **info)
