"""Rules table_fp_sums, table_datasets and table_pass1_std_all: the papers' exhibits that are not one experiment's
statistics (lrmrepro.figures.exhibits): Table 2 computed, the tasks of the study, one Pass@1-std table across tasks."""
import polars as pl

from lrmrepro import io
from lrmrepro.figures import exhibits
from lrmrepro.figures.nondeterminism import TABLES, table_markdown
from lrmrepro.runlog import rule_log

with rule_log(snakemake):
    out = snakemake.output
    if snakemake.rule == "table_fp_sums":
        rows = exhibits.fp_sum_rows()
        io.write_text(exhibits.fp_sum_markdown(rows), out.md)
    elif snakemake.rule == "table_datasets":
        counts = {name: io.read_parquet(path, columns=["id"]).height
                  for name, path in zip(snakemake.params.names, snakemake.input.tasks)}
        rows = exhibits.dataset_rows(dict(snakemake.params.tasks), counts)
        io.write_text(exhibits.dataset_markdown(rows), out.md)
    else:  # table_pass1_std_all
        wide = exhibits.pass1_std_all({name: io.read_parquet(path)
                                       for name, path in zip(snakemake.params.experiments, snakemake.input.metrics)})
        io.write_text(table_markdown(wide, TABLES["table5"][3] + ", every sampled experiment of the study"), out.md)
        rows = wide.to_dicts()
    with io.atomic_path(out.csv, ".csv") as tmp:
        pl.DataFrame(rows).write_csv(tmp)
