"""Rule table_divergence_example: a worked example of divergence picked from the experiment's own divergence points
(lrmrepro.figures.divergence_example), with both runs' texts and answers."""
from lrmrepro import io
from lrmrepro.figures.divergence_example import _config, example_markdown, pick
from lrmrepro.runlog import rule_log
from lrmrepro.stats.labels import CONFIG_KEYS, GROUP_KEYS

with rule_log(snakemake) as log:
    runs = list(snakemake.params.runs)
    by_labels = {(tuple(r[k] for k in GROUP_KEYS), tuple(r[k] for k in CONFIG_KEYS)): r for r in runs}
    scores: dict = {}

    def correct(group, config, pid):
        run = by_labels[(tuple(group[k] for k in GROUP_KEYS), config)]
        if run["scores"] not in scores:
            table = io.read_parquet(run["scores"], columns=["id", "sample_idx", "extracted", "correct"])
            scores[run["scores"]] = {r["id"]: (r["extracted"], r["correct"]) for r in table.iter_rows(named=True)
                                     if r["sample_idx"] == 0}
        return scores[run["scores"]].get(pid, (None, None))[1]

    example = pick(io.read_parquet(snakemake.input.points), correct)
    texts, answers = {}, {}
    if example is not None:
        for row in (example["reference"], example["other"]):
            run = by_labels[(tuple(example["group"][k] for k in GROUP_KEYS), _config(row))]
            gens = io.read_parquet(run["generations"], columns=["id", "sample_idx", "text"])
            texts[(_config(row), example["id"])] = gens.filter((gens["id"] == example["id"])
                                                               & (gens["sample_idx"] == 0))["text"][0]
            correct(example["group"], _config(row), example["id"])
            answers[(_config(row), example["id"])] = scores[run["scores"]].get(example["id"], (None, None))
        log.info("example: %s, %s vs %s", example["id"], _config(example["reference"]), _config(example["other"]))
    n_configs = len({tuple(r[k] for k in CONFIG_KEYS) for r in runs})
    io.write_text(example_markdown(example, texts, answers, snakemake.wildcards.experiment, n_configs),
                  snakemake.output.md)
