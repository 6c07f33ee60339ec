"""Rule preflight_transformers: a few tokens through the transformers engine job's own code on this node, and the
environment it detected (lrmrepro.generate.preflight)."""
from lrmrepro.generate.preflight import run
from lrmrepro.runlog import rule_log

with rule_log(snakemake) as log:
    run(snakemake.input.model, dict(snakemake.params.point), snakemake.output.report, log=log)
