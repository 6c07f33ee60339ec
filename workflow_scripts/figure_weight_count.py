"""Rule figure_weight_count: finding (1), accuracy change against weight count for pruning and distillation, the
knowledge task against the reasoning tasks (lrmrepro.figures.weight_count), from the experiment's scores, compression
info and the runtime grid's summary."""

from lrmrepro.figures.weight_count import weight_count_effects, weight_count_figure, write_weight_count
from lrmrepro.runlog import rule_log
from lrmrepro import io

with rule_log(snakemake) as log:
    p = snakemake.params
    refs = [r for r in p.runs if r["decoding"] == p.decoding]
    noise = io.read_parquet(snakemake.input.noise) if snakemake.input.get("noise") else None
    effects = weight_count_effects(refs, io.read_parquet(snakemake.input.info), p.knowledge, p.reasoning, noise,
                                   p.noise_experiment, resamples=int(p.resamples), seed=int(p.seed),
                                   level=float(p.level))
    table = write_weight_count(effects, snakemake.output.table_md, snakemake.output.table_csv)
    weight_count_figure(effects, [snakemake.output.figure_png, snakemake.output.figure_pdf])
    log.info("%d variants, %d effects", table.height, effects.height)
