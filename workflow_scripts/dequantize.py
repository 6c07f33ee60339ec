"""Rule dequantize: a compressed variant's dense copy (execution: dequantized), exactly the quantizer's values."""
from pathlib import Path

from lrmrepro.compress.dequantize import dequantize_checkpoint
from lrmrepro.provenance import Timer, write_meta
from lrmrepro.runlog import rule_log

with rule_log(snakemake) as log:
    with Timer() as t:
        info = dequantize_checkpoint(snakemake.input.model, snakemake.output.model)
    log.info("%s (%s) -> %s: dense %s, %d quantization parameters dropped, %.1f %% zeros", snakemake.input.model,
             info["source_scheme"], snakemake.output.model, info["dtype"], info["quantization_params_dropped"],
             100 * (info["zero_fraction"] or 0))
    write_meta(Path(snakemake.output.model) / "meta.json", "dequantize", {"source": snakemake.input.model},
               code=snakemake.params.code, wall_seconds=t.seconds, **info)
