# lrmrepro: how compression and numerical precision change the reasoning of large reasoning models.
#
# Method, as a DAG:
#   1. model      obtain the model (the embedded default as shipped, trained anew, or from the hub / a local path)
#   2. compress   compress it with llm-compressor recipes (quantization, pruning, protected variants)
#   3. tasks      materialise the evaluation items of every task
#   4. generate   generate under every precision x runtime configuration (text, token ids, top-k logprobs)
#   5. score      score every generation
#   6. summarize  accuracy table over all runs
#   7. stats      nondeterminism statistics across runtime configurations
#   8. importance which modules matter for reasoning; the top ones feed back into step 2 (protection)
#   9. figures    tables and figures, from summary and stats artifacts only
from snakemake.utils import min_version

min_version("9.0")


# the methods page of `snakemake --report`
report: "docs/report/workflow.rst"


# The configuration (config.yaml, or the files given with --configfile, which replace it) is read, validated and
# cross-checked in rules/common.smk before any job is planned.
include: "rules/common.smk"
include: "rules/model.smk"
include: "rules/compress.smk"
include: "rules/tasks.smk"
include: "rules/generate.smk"
include: "rules/score.smk"
include: "rules/summarize.smk"
include: "rules/stats.smk"
if IMPORTANCE:  # a study without an `importance` section has no importance stage
    include: "rules/importance.smk"
include: "rules/figures.smk"


# downloads (hub models, hub benchmarks) run on the submitting host: cluster nodes often have no internet; copying
# the embedded model is a file copy; a table's HTML page a file conversion
localrules:
    embedded_model,
    fetch_model,
    prepare_task,
    table_html,


rule all:
    input:
        final_targets(),
    default_target: True
