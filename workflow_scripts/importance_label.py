"""Rule importance_label: behaviour segments of the traces (rule-based cue phrases), as a span table
(spans.meta.json is written next to it; only the checkpoint's tokenizer is read)."""
from pathlib import Path

from lrmrepro.importance.run import label_file
from lrmrepro.provenance import Timer, write_meta
from lrmrepro.runlog import rule_log

with rule_log(snakemake) as log:
    p = snakemake.params
    with Timer() as t:
        info = label_file(snakemake.input.generations, snakemake.input.model, snakemake.output.spans,
                          labeller=p.labeller)
    log.info("%d segments in %d traces: %s", info["n_segments"], info["n_traces"], info["segments_per_behaviour"])
    write_meta(Path(snakemake.output.spans).with_suffix(".meta.json"), "importance_label", {"labeller": p.labeller},
               code=p.code, wall_seconds=t.seconds, **info)
