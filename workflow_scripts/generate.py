"""Rule generate (transformers backend): text, token ids and top-k logprobs for every item of a task."""
import polars as pl
from transformers import AutoTokenizer

from lrmrepro.config import Run
from lrmrepro.generate.common import Decoding
from lrmrepro.generate.transformers_backend import generate_table
from lrmrepro.prompts import build_prompts_for_items
from lrmrepro.provenance import Timer, hardware_label, write_meta
from lrmrepro.runlog import rule_log

with rule_log(snakemake) as log:
    run = Run.from_wildcards(snakemake.wildcards).labels()
    items = pl.read_parquet(snakemake.input.tasks)
    tokenizer = AutoTokenizer.from_pretrained(snakemake.input.model)
    prompts = build_prompts_for_items(items, snakemake.params.prompt_style, tokenizer)
    decoding = Decoding(**snakemake.params.decoding)
    detected = hardware_label()
    if run["hardware"] != detected:
        log.warning("hardware label %r differs from this machine (%s); the label is kept, the machine is recorded",
                    run["hardware"], detected)
    with Timer() as t:
        figures = generate_table(snakemake.input.model, prompts, items.get_column("id").to_list(),
                                 precision=run["precision"], parallel=run["parallel"], batch_size=run["batch_size"],
                                 decoding=decoding, output=snakemake.output.generations,
                                 code=snakemake.params.code)
    log.info("%.1f tokens/s", figures["tokens_per_s"])
    write_meta(snakemake.output.meta, "generate", {"run": run, "decoding": decoding.as_dict(),
               "prompt_style": snakemake.params.prompt_style}, code=snakemake.params.code,
               wall_seconds=t.seconds, detected_hardware=detected, **figures)
