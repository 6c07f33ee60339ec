"""Rule fetch_model: a hub id, a local checkpoint folder or a GGUF file, as an HF checkpoint folder."""
from lrmrepro.models.fetch import fetch_model
from lrmrepro.provenance import Timer, write_meta
from lrmrepro.runlog import rule_log

with rule_log(snakemake):
    with Timer() as t:
        info = fetch_model(dict(snakemake.params.spec), snakemake.output.model)
    write_meta(f"{snakemake.output.model}/meta.json", "fetch_model", dict(snakemake.params.spec),
               code=snakemake.params.code, wall_seconds=t.seconds, **info)
