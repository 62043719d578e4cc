# dltrain: `make install`, `make demo`, `make test`, `make lint`. Everything installs into .venv from nothing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-all lint schema clean-runs bench bench-quick bench-smoke

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# Trains a CNN on scikit-learn's bundled 8x8 digits (offline), then scores it on the held-out test split.
demo: install
	@run=$$($(BIN)/dltrain fit configs/digits_cnn.yaml | tee /dev/stderr | sed -n 's/^run: //p'); \
	  test -n "$$run" && $(BIN)/dltrain evaluate "$$run"

# The everyday suite: every test but the slow ones (about 6 minutes on 2 cores).
test: install
	$(BIN)/python -m pytest -m "not slow"

# Everything, slow tests included (Fashion-MNIST training, real-fault resume, multi-worker): what CI runs.
test-all: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check dltrain tests
	$(BIN)/mypy dltrain

schema: install
	$(BIN)/dltrain config schema --output dltrain.schema.json

# The benchmark (bench/README.md): dltrain vs plain Keras vs PyTorch on Fashion-MNIST, 45-75 minutes on
# 2 cores; writes bench/RESULTS.md. bench-quick: one round and fewer runs; bench-smoke: 2,048 images, minutes.
BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python bench/run.py --mode full

bench-quick: $(BENCH_STAMP)
	$(BIN)/python bench/run.py --mode quick

bench-smoke: $(BENCH_STAMP)
	$(BIN)/python bench/run.py --mode smoke
