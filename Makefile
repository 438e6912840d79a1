# Two entry points: `make demo` (set up, run the demo workflow end to end) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 2
# DeepSpeed compiles its C++ ops on first use; keep them with the checkout.
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/.cache/torch_extensions
# Every install, build environments included, must keep torch at 2.13.0.
export PIP_CONSTRAINT := $(CURDIR)/envs/constraints.txt
export UV_CONSTRAINT := $(PIP_CONSTRAINT)
export UV_BUILD_CONSTRAINT := $(PIP_CONSTRAINT)
# uv installs the pinned requirements in half a minute, where pip took over three (it downloads
# and unpacks in parallel). It reads no pip configuration, so pip's find-links (where a machine may
# keep a local torch build) are handed to it.
UV := uv==0.13.8
FIND_LINKS ?= $(or $(PIP_FIND_LINKS),$(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null))
UV_PIP := $(BIN)/uv pip install --python $(BIN)/python $(foreach links,$(FIND_LINKS),--find-links $(links))
# uv compiles no bytecode at install (compiling all of it took 40 s); the first job to import a
# module writes its bytecode instead. Where PYTHONDONTWRITEBYTECODE is set, no job would, and
# each would compile torch and transformers anew (the demo took 15 minutes instead of 9).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: setup browser slurm demo estimate bench lint test clean

$(VENV)/.installed: envs/requirements.txt envs/constraints.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(UV)
	$(UV_PIP) -r envs/requirements.txt
	$(BIN)/pip install --no-deps --no-build-isolation -e .
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/snakemake --cores $(CORES) --configfile config/demo.yaml
	@echo "Report: results/report/index.html   Metrics: results/metrics.csv"

# What a config will cost before it is submitted: GPU-hours and disk, read offline.
#   make estimate CONFIG=config/wikimia.yaml ARGS="--texts 776 --words-per-text 32 --gpu h200"
CONFIG ?= config/demo.yaml
ARGS ?=
estimate: setup
	$(BIN)/python -m paramdelta.estimate --configfile $(CONFIG) $(ARGS)

# The performance benchmarks (docs/performance.md), one after another: about 15 minutes on 2 cores.
bench: setup
	$(UV_PIP) -q -r envs/bench.txt
	$(BIN)/python benchmarks/bench_training.py
	$(BIN)/python benchmarks/bench_training.py --budget 10 --repeats 1
	$(BIN)/python benchmarks/bench_training.py --parallel-texts 25 --repeats 1
	$(BIN)/python benchmarks/bench_stores.py
	$(BIN)/python benchmarks/bench_planning.py
	$(BIN)/python benchmarks/bench_fast_path.py

# The report is tested in a real browser: Debian's Chromium (nothing downloads a browser build).
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "Installing Debian's chromium for the report's browser test"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "chromium is missing: 'sudo apt-get install chromium', or the report's browser test fails"; \
	  fi; }

# The SLURM tests run the workflow through a real one-node cluster (Debian's slurmctld,
# slurmd and munge, started by tests/test_slurm.py); it needs root, and is skipped otherwise.
slurm:
	@if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "Installing Debian's slurmctld, slurmd, slurm-client and munge for the SLURM tests"; \
	  slurm/local-cluster.sh install; \
	else \
	  echo "SLURM is not installed and this is not root on Debian: the SLURM tests will be skipped"; \
	fi

# The conventions, checked before the tests (CI runs `make test`): ruff (lint and format) over
# the Python, snakefmt over the Snakefile and rules/, and `snakemake --lint` with the demo and
# the cluster config (tools/lint_workflow.py). Every check runs; the failed ones are named last.
# Fixes: `ruff check --fix .`, `ruff format .`, `snakefmt Snakefile rules/`.
LINT_CONFIGS := config/demo.yaml config/wikimia.yaml config/attribution.yaml
lint: setup
	@failed=""; \
	echo "== ruff check"; $(BIN)/ruff check . || failed="$$failed, ruff check"; \
	echo "== ruff format --check"; $(BIN)/ruff format --check . || failed="$$failed, ruff format --check"; \
	echo "== snakefmt --check"; $(BIN)/snakefmt --check Snakefile rules/ || failed="$$failed, snakefmt --check"; \
	echo "== snakemake --lint"; $(BIN)/python tools/lint_workflow.py $(LINT_CONFIGS) || failed="$$failed, snakemake --lint"; \
	if [ -n "$$failed" ]; then echo "make lint: FAILED: $${failed#, }" >&2; exit 1; fi; \
	echo "make lint: all checks passed"

test: lint browser slurm
	$(BIN)/python -m pytest

clean:
	rm -rf results logs .snakemake
