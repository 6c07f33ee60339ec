"""Rules generate_* of the engines in the core environment (transformers), one job per engine: the model is loaded
once, then every run of the grid point (its tasks and batch sizes) writes its own generations.parquet + meta.json."""
from lrmrepro.generate.engine_job import run_engine
from lrmrepro.runlog import rule_log

with rule_log(snakemake) as log:
    # the noise floor's second generation of a run must be generated, not copied from the generation cache
    options = {"cache": None} if snakemake.rule == "generate_repeat" else None
    run_engine(snakemake.input.model, list(snakemake.params.runs), code=snakemake.params.code, log=log,
               options=options)
