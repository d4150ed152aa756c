# tanet-lightning: `make help` lists the targets.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tanet-installed
ARGS ?=
# pytest-xdist: one worker per core (at most 4: each runs training processes); a test file, or a test
# class (a documented-commands workspace), runs whole in one worker, longest first by the durations the
# last sessions measured (tests/durations.py); `make test XDIST=` runs in one process
XDIST ?= -n auto --maxprocesses 4 --dist loadscope --no-loadscope-reorder
PYTEST := $(PY) -m pytest -q $(XDIST)

.PHONY: help install test test-quick test-all train lint bench complexity gpu-check

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the package with its dev extra (editable)

# the tiers follow from the two cost markers (tests/README.md)
test: $(STAMP)  ## what CI runs: all but the slow tests, README/experiments commands included (budget: 8 min on 2 cores)
	$(PYTEST) -m "not slow"

test-quick: $(STAMP)  ## the inner loop: neither slow nor heavy (no processes, trainings, documented commands; budget: 2 min)
	$(PYTEST) -m "not slow and not heavy"

test-all: $(STAMP)  ## every test, slow ones included
	$(PYTEST)

train: $(STAMP)  ## the main job: TANet on the embedded synthetic motion data (ARGS="key=value ...")
	$(PY) -m tanet_lightning.train $(ARGS)

complexity: $(STAMP)  ## the paper's Table 2 FLOPs/params, measured
	$(PY) -m tanet_lightning.complexity

bench: $(STAMP)  ## speed benchmarks (prints ratios measured side by side)
	$(PY) benchmarks/temporal_modules.py
	$(PY) benchmarks/data_loading.py
	$(PY) benchmarks/streaming.py
	$(PY) benchmarks/main_job.py

gpu-check: $(STAMP)  ## on a CUDA machine: every GPU path checked and measured in <= 8 min (gpu_check.json/.md)
	$(PY) benchmarks/gpu_check.py

lint: $(STAMP)  ## ruff, and the import layers (import-linter contract in pyproject.toml)
	$(PY) -m ruff check src tests benchmarks
	$(VENV)/bin/lint-imports
