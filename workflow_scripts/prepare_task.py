"""Rule prepare_task: the evaluation items of one task, as parquet; meta.json records the dataset they came from."""
from lrmrepro import io
from lrmrepro.provenance import Timer, write_meta
from lrmrepro.runlog import rule_log
from lrmrepro.tasks.prepare import prepare_items_with_source

with rule_log(snakemake) as log:
    with Timer() as t:
        items, dataset = prepare_items_with_source(snakemake.wildcards.task, dict(snakemake.params.spec),
                                                   dict(snakemake.params.train))
    io.write_parquet(items, snakemake.output.table)
    log.info("%d items from %s", items.height, dataset)
    write_meta(snakemake.output.meta, "prepare_task", {"spec": dict(snakemake.params.spec), "train": dict(snakemake.params.train)},
               code=snakemake.params.code, wall_seconds=t.seconds, n_items=items.height, dataset=dataset)
