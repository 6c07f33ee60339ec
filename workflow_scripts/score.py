"""Rule score: extracted answer, extraction rule and correctness for every generation, under the run's policy."""

from lrmrepro import io
from lrmrepro.provenance import Timer, write_meta
from lrmrepro.runlog import rule_log
from lrmrepro.sandbox import Limits, isolation_level, program_limits
from lrmrepro.scoring import score_table, scoring_stats

with rule_log(snakemake) as log:
    items = io.read_parquet(snakemake.input.tasks)
    gens = io.read_parquet(snakemake.input.generations, columns=["id", "sample_idx", "text", "finish_reason"])
    weak_ok = bool(snakemake.params.allow_weak_sandbox)
    policy = str(snakemake.params.policy)
    runs_code = "program" in set(items.get_column("answer_format"))
    # model-generated code runs only in a sandbox this machine can provide (refused here, before scoring, if none)
    sandbox = isolation_level(Limits(allow_weak_isolation=weak_ok)) if runs_code else "not used"
    limits_scope = program_limits(Limits(allow_weak_isolation=weak_ok)) if runs_code else "not used"
    if runs_code and limits_scope.startswith("per process"):
        log.warning("sandbox: memory and process limits are per process, not per program (%s)", limits_scope)
    with Timer() as t:
        scores = score_table(items, gens, allow_weak_sandbox=weak_ok, policy=policy)
    io.write_parquet(scores, snakemake.output.scores)
    stats = scoring_stats(scores, policy)
    log.info("accuracy %.3f over %d generations (policy %s, truncated %.3f; rules %s)", stats["accuracy"],
             scores.height, policy, stats["truncation_rate"], {k: v for k, v in stats["extraction_rules"].items() if v})
    write_meta(snakemake.output.meta, "score", {"wildcards": dict(snakemake.wildcards), "scoring_policy": policy},
               code=snakemake.params.code, wall_seconds=t.seconds, sandbox_isolation=sandbox,
               sandbox_program_limits=limits_scope, **stats)
