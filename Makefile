# tanet-lightning: `make help` lists the targets.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tanet-installed
ARGS ?=

.PHONY: help install test test-all train lint bench complexity

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the package with its dev extra (editable)

test: $(STAMP)  ## the fast suite CI runs (CPU, a few minutes)
	$(PY) -m pytest -m "not slow" -q

test-all: $(STAMP)  ## every test, slow ones included
	$(PY) -m pytest -q

train: $(STAMP)  ## the main job: TANet on the embedded synthetic motion data (ARGS="key=value ...")
	$(PY) -m tanet_lightning.train $(ARGS)

complexity: $(STAMP)  ## the paper's Table 2 FLOPs/params, measured
	$(PY) -m tanet_lightning.complexity

bench: $(STAMP)  ## speed benchmarks (prints ratios measured side by side)
	$(PY) benchmarks/temporal_modules.py
	$(PY) benchmarks/data_loading.py
	$(PY) benchmarks/main_job.py

lint: $(STAMP)  ## ruff
	$(PY) -m ruff check src tests benchmarks
