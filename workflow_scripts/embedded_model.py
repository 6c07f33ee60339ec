"""Rule embedded_model: the shipped default model (embedded/default), each file checked against its sha256."""
from lrmrepro.models.embedded import install
from lrmrepro.provenance import Timer, write_meta
from lrmrepro.runlog import rule_log

with rule_log(snakemake) as log:
    with Timer() as t:
        info = install(snakemake.output.model)
    log.info("installed the embedded model (%d files, sha256 checked), trained on %s",
             len(info["files"]), info["training"]["hardware"]["cpu_model"])
    write_meta(f"{snakemake.output.model}/meta.json", "embedded_model", {"source": "embedded"},
               code=snakemake.params.code, wall_seconds=t.seconds, **info)
