# Two commands on a fresh machine (Python >= 3.11 and make):
#   make run    set up .venv, run the whole DAG at local scale (offline), render the report
#   make test   set up .venv, run every test (packages + workflow)
# Both go through `make setup`, which only builds .venv, and are idempotent.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 2
PACKAGES := optim_theory seesaw_train serving diffusion
PIP := $(BIN)/python -m pip install --disable-pip-version-check -c constraints.txt
STAMP := $(VENV)/.fulcrum-installed
# ci and local scales never touch the network.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MPLBACKEND=Agg

.PHONY: setup run test lint clean-results slurm-up slurm-down

setup: $(STAMP)

$(STAMP): constraints.txt requirements-workflow.txt $(foreach p,$(PACKAGES) fulcrum_core,packages/$(p)/pyproject.toml)
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "fulcrum needs Python >= 3.11 (set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	# The CPU build of torch first, pinned, so no dependency can pull a CUDA build.
	$(PIP) torch==2.13.0
	$(PIP) -r requirements-workflow.txt $(foreach p,$(PACKAGES),-e packages/$(p)[test])
	# The packages depend on fulcrum-core by path; make it editable for development.
	$(PIP) --no-deps -e packages/fulcrum_core
	touch $@

run: setup
	$(OFFLINE) $(BIN)/snakemake --cores $(CORES) all
	$(OFFLINE) $(BIN)/snakemake --cores $(CORES) --report results/report.html
	@echo "figures under results/, ledger: results/claims.md, report: results/report.html"

test: setup
	$(OFFLINE) PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/snakemake --lint

clean-results:
	rm -rf results .snakemake

# A one-node Slurm cluster on this machine for tests/test_slurm.py (root; installs with apt-get once).
slurm-up:
	bash tests/slurm/cluster.sh start

slurm-down:
	bash tests/slurm/cluster.sh stop
