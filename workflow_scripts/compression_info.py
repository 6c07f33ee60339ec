"""Rule compression_info: method, nominal bits, sparsity and effective bits of every compressed variant, from the
checkpoints' meta.json (so compression tables and figures need no checkpoint afterwards)."""
import json
from pathlib import Path

from lrmrepro import io
from lrmrepro.figures.compression import compression_info
from lrmrepro.runlog import rule_log

with rule_log(snakemake):
    metas = {name: json.loads((Path(ckpt) / "meta.json").read_text())
             for name, ckpt in zip(snakemake.params.names, snakemake.input.checkpoints)}
    io.write_parquet(compression_info(metas), snakemake.output.info)
