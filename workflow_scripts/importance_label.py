"""Rule importance_label: behaviour segments of a generations file (rule-based cue phrases), as a span table.

input: generations (generations.parquet), model (checkpoint folder; only its tokenizer is read)
output: spans (spans.parquet; spans.meta.json written next to it)
params: labeller ("rules"; "judge" needs a generation callable and is not wired into the workflow), code"""
from pathlib import Path

from lrmrepro.importance.run import label_file
from lrmrepro.provenance import Timer, write_meta
from lrmrepro.runlog import rule_log

with rule_log(snakemake) as log:
    p = snakemake.params
    labeller = getattr(p, "labeller", "rules")
    with Timer() as t:
        info = label_file(snakemake.input.generations, snakemake.input.model, snakemake.output.spans, labeller=labeller)
    log.info("%d segments in %d traces: %s", info["n_segments"], info["n_traces"], info["segments_per_behaviour"])
    out = Path(snakemake.output.spans)
    write_meta(out.with_suffix(".meta.json"), "importance_label", {"labeller": labeller}, code=p.code,
               wall_seconds=t.seconds, **info)
