"""Rule noise_floor: the same configuration generated twice (generate and generate_repeat): bit-identical?"""
from lrmrepro import io
from lrmrepro.runlog import rule_log
from lrmrepro.stats.noise_floor import noise_floor

with rule_log(snakemake) as log:
    result = noise_floor(snakemake.input.first, snakemake.input.repeat)
    log.info("%s", result)
    io.write_json({"run": dict(snakemake.params.run), "code_fingerprint": snakemake.params.code, **result},
                  snakemake.output.report)
