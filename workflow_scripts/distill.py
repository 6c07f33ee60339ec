"""Rule distill: a smaller student trained on the teacher's distribution and the data (lrmrepro.compress.distill),
saved where and as every compressed variant is."""
from pathlib import Path

from lrmrepro.compress.distill import distill_model
from lrmrepro.provenance import Timer, write_meta
from lrmrepro.runlog import rule_log

with rule_log(snakemake) as log:
    p = snakemake.params
    config_slice = {"method": "distill", "student": dict(p.student), "distill": dict(p.settings)}
    with Timer() as t:
        meta = distill_model(snakemake.input.model, snakemake.output.model, student=config_slice["student"],
                             settings=config_slice["distill"], state_dir=p.state)
    log.info("student %s: %d of the teacher's %d decoder weights (%.0f %%), %d steps in %.1f s%s",
             meta["student_config"], meta["linear_weight_elements"], meta["teacher_linear_weight_elements"],
             100 * meta["decoder_weight_fraction"], config_slice["distill"]["steps"], meta["distill_seconds"],
             f", resumed from {meta['resumed_from']}" if meta["resumed_from"] else "")
    write_meta(Path(snakemake.output.model) / "meta.json", "distill", config_slice, code=p.code,
               wall_seconds=t.seconds, **meta)
