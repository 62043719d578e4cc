# dltrain: `make install`, `make demo`, `make test`, `make lint`. Everything installs into .venv from nothing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-fast lint schema clean-runs

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

# The whole suite, slow Fashion-MNIST tests included (they skip when the dataset is not installed).
test: install
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

lint: install
	$(BIN)/ruff check dltrain tests
	$(BIN)/mypy dltrain

schema: install
	$(BIN)/dltrain config schema --output dltrain.schema.json
