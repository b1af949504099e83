# Two commands on a fresh machine: `make train` and `make test`. Both create .venv and install the package.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: train test lint bench docs clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip uninstall --quiet --yes hydra-optuna-sweeper 2>/dev/null || true  # its plugin also claims hydra/sweeper=optuna
	touch $(STAMP)

# the quickstart (scikit-learn's 8x8 digits: a minute on the CPU, no download); ARGS="experiment=paper_mnist" is
# the paper's MNIST run; any Hydra overrides go in ARGS="..."
train: $(STAMP)  ## the quickstart; ARGS="experiment=paper_mnist" for the paper's MNIST run
	$(VENV)/bin/advnets-train $(ARGS)

# one pytest worker per core (at most 4), each test to the next free worker (the SLURM and PostgreSQL modules each on
# one worker, the long end-to-end tests first: tests/conftest.py); the 30 slowest tests listed at the end
TEST_WORKERS ?= -n auto --maxprocesses 4 --dist loadgroup --durations=30

test: $(STAMP)  ## the whole test suite (set ADVNETS_DATA_DIR to a folder with MNIST/raw for the MNIST tests)
	$(PY) -m pytest -q $(TEST_WORKERS) $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples

bench: $(STAMP)
	$(PY) benchmarks/train_throughput.py
	$(PY) benchmarks/parzen_speed.py

docs: $(STAMP)  ## the documentation site (docs/, mkdocs.yml) into site/; --strict: a broken link fails
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache site
