"""Rule importance_label: behaviour segments of the traces (rule-based cue phrases, or an LLM judge through an
OpenAI-compatible endpoint: importance.labeller), as a span table (spans.meta.json is written next to it with the
judge's endpoint, model, request counts and agreement with the rules; only the checkpoint's tokenizer is read)."""
import os
from pathlib import Path

from lrmrepro.importance.run import label_file
from lrmrepro.provenance import Timer, write_meta
from lrmrepro.runlog import rule_log

with rule_log(snakemake) as log:
    p = snakemake.params
    judge = None
    if p.labeller == "llm":
        from lrmrepro.importance.llm_judge import JudgeConfig, LlmJudge

        judge = LlmJudge(JudgeConfig(**dict(p.judge)), cache_dir=os.environ.get("LRMREPRO_CACHE"))
    with Timer() as t:
        info = label_file(snakemake.input.generations, snakemake.input.model, snakemake.output.spans,
                          labeller=p.labeller, judge=judge)
    log.info("%d segments in %d traces: %s", info["n_segments"], info["n_traces"], info["segments_per_behaviour"])
    if judge is not None:
        log.info("judge %s at %s: %s; agreement with the rules: %s", judge.config.model, judge.config.base_url,
                 info["judge_stats"], {b: round(a["kappa"], 3) for b, a in info["agreement_with_rules"].items()})
    write_meta(Path(snakemake.output.spans).with_suffix(".meta.json"), "importance_label", {"labeller": p.labeller},
               code=p.code, wall_seconds=t.seconds, **info)
