"""Rule compression_info: method, nominal bits, sparsity, effective bits and decoder weights of every compressed
variant, from the checkpoints' meta.json (so compression tables and figures need no checkpoint afterwards). The
uncompressed row's effective bits and weights are measured on the base checkpoint with the same definitions (e.g.
32 bits for an fp32 checkpoint)."""
import json
from pathlib import Path

from lrmrepro import io
from lrmrepro.compress.inspect import weight_stats
from lrmrepro.figures.compression import compression_info
from lrmrepro.runlog import rule_log

with rule_log(snakemake):
    metas = {name: json.loads((Path(ckpt) / "meta.json").read_text())
             for name, ckpt in zip(snakemake.params.names, snakemake.input.checkpoints)}
    base = weight_stats(snakemake.input.base, snakemake.input.base)
    io.write_parquet(compression_info(metas, base_bits=base["effective_bits"],
                                      base_weights=base["linear_weight_elements"]), snakemake.output.info)
