"""Rule compress: llm-compressor oneshot with a recipe from recipes/, saved as a compressed-tensors checkpoint."""
from pathlib import Path

import torch

from lrmrepro.compress.run import compress_model
from lrmrepro.compress.selection import ignore_list
from lrmrepro.provenance import Timer, write_meta
from lrmrepro.runlog import rule_log

with rule_log(snakemake) as log:
    torch.set_num_threads(max(1, int(snakemake.threads)))
    p = snakemake.params
    spec = snakemake.input.protect_spec if snakemake.input.get("protect_spec") else None
    ignore, selection = ignore_list(snakemake.input.model, list(p.ignore or []), list(p.only or []), spec)
    config_slice = {"recipe": p.recipe, "ignore": ignore, "sparsity": p.sparsity,
                    "calibration": dict(p.calibration), "seed": int(p.seed), "selection": selection}
    with Timer() as t:
        meta = compress_model(snakemake.input.model, snakemake.output.model, recipe=p.recipe,
                              ignore=ignore, sparsity=p.sparsity,
                              calibration=config_slice["calibration"], seed=config_slice["seed"],
                              # single components, or a dense copy: a fused group may be quantized in part
                              allow_split_groups=bool(p.only) or p.execution == "dequantized")
    log.info("%s: %.2f effective bits/weight, %d bytes on disk, %.1f s; %d modules kept in full precision",
             p.recipe, meta["effective_bits"], meta["size_on_disk_bytes"], meta["compress_seconds"], len(ignore))
    write_meta(Path(snakemake.output.model) / "meta.json", "compress", config_slice, code=p.code,
               wall_seconds=t.seconds, **meta)
