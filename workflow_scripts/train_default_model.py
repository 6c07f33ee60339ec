"""Rule train_default_model: train the embedded tiny Qwen2 on the synthetic tasks."""
from lrmrepro.models.train import TrainConfig, train_default_model
from lrmrepro.provenance import write_meta
from lrmrepro.runlog import rule_log

with rule_log(snakemake) as log:
    cfg = TrainConfig.from_dict({**snakemake.params.train, "threads": snakemake.threads})
    figures = train_default_model(cfg, snakemake.output.model)
    log.info("final loss %.4f after %d steps (%.0f s)", figures["final_loss_mean_last_50"], cfg.steps, figures["seconds"])
    write_meta(f"{snakemake.output.model}/meta.json", "train_default_model", dict(snakemake.params.train),
               code=snakemake.params.code, wall_seconds=figures["seconds"], **figures)
