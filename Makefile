# Two entry points: `make demo` (set up, run the demo workflow end to end) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 2
# DeepSpeed compiles its C++ ops on first use; keep them with the checkout.
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/.cache/torch_extensions
# Every pip call, build environments included, must keep torch at 2.13.0.
export PIP_CONSTRAINT := $(CURDIR)/envs/constraints.txt

.PHONY: setup browser demo test clean

$(VENV)/.installed: envs/requirements.txt envs/constraints.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -c envs/constraints.txt -r envs/requirements.txt
	$(BIN)/pip install --no-deps --no-build-isolation -e .
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/snakemake --cores $(CORES) --configfile config/demo.yaml
	@echo "Report: results/report/index.html   Metrics: results/metrics.csv"

# The report is tested in a real browser: Debian's Chromium (nothing downloads a browser build).
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "Installing Debian's chromium for the report's browser test"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "chromium is missing: 'sudo apt-get install chromium', or the report's browser test fails"; \
	  fi; }

test: setup browser
	$(BIN)/python -m pytest

clean:
	rm -rf results logs .snakemake
